"""Egress: what the Egress objects naming a client let it reach outside the mesh.

The one idea: a client's Egress objects (`MeshState.egresses_from` its identity) are read
into one `EgressPolicy` (OSM's EgressTrafficPolicy): traffic matches for the outbound
listener, HTTP virtual hosts per port, and the clusters they name. Only when MeshConfig
``traffic.enableEgress`` is off (the catalog does not ask otherwise), as in OSM.
"""

from __future__ import annotations

from osm.base.identity import Identity
from osm.catalog.policy import EgressPolicy
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn


def egress_policy(state: MeshState, identity: Identity, warn: Warn) -> EgressPolicy | None:
    """The `EgressPolicy` of a client running as ``identity`` (None: no Egress names it).

    Problems (a missing HTTPRouteGroup or UpstreamTrafficSetting) are warnings under
    ``("identity", identity)``; the rest of the policy still applies.
    """
    del state, identity, warn
    return None
