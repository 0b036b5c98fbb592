"""Traffic settings: retries (Retry), circuit breaking and local rate limits
(UpstreamTrafficSetting), as the catalog attaches them to its answers.

The one idea: an UpstreamTrafficSetting applies to the service in its namespace whose
FQDN is its ``host`` (`MeshState.upstream_settings_for`): its connection settings
limit every client's cluster of the service (`connection_for`), its rate limits are
enforced by the proxies serving it (`rate_limits_for`). A Retry applies to the routes
its source identity uses to reach its destination services (`retries_for`).
"""

from __future__ import annotations

from collections.abc import Mapping

from osm.base.identity import Identity
from osm.catalog.ids import ServiceId
from osm.catalog.policy import RateLimits
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn
from osm.model.meta import ObjectRef
from osm.model.policy import ConnectionSettings, RetryPolicy


def connection_for(state: MeshState, service: ServiceId, warn: Warn) -> ConnectionSettings | None:
    """Circuit breaking of ``service``'s clusters (None: Envoy's defaults)."""
    del state, service, warn
    return None


def rate_limits_for(state: MeshState, service: ServiceId, warn: Warn) -> RateLimits | None:
    """Local rate limits the proxies serving ``service`` enforce (None: none)."""
    del state, service, warn
    return None


def retries_for(
    state: MeshState, identity: Identity, warn: Warn
) -> Mapping[ServiceId, tuple[RetryPolicy, ObjectRef]]:
    """The retry policy (and the Retry that set it) per destination service for a client
    running as ``identity`` (empty: no Retry names it). The catalog asks only with
    MeshConfig ``featureFlags.enableRetryPolicy`` on."""
    del state, identity, warn
    return {}
