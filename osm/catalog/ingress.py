"""Ingress: traffic from outside the mesh that IngressBackends admit to a proxy's services.

The one idea: the IngressBackends naming a service as a backend
(`MeshState.ingress_backends_for`) become one `IngressPort` per backend port (OSM's
IngressTrafficMatch and its HTTP policy), computed per service and shared by every proxy
serving it.
"""

from __future__ import annotations

from osm.catalog.ids import ServiceId
from osm.catalog.policy import IngressPort, RateLimits
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn


def ingress_ports(
    state: MeshState, service: ServiceId, rate_limits: RateLimits | None, warn: Warn
) -> tuple[IngressPort, ...]:
    """The ingress ports of ``service`` (sorted by target port), each with the service's
    ``rate_limits``; problems are warnings under ``("service", service)``."""
    del state, service, rate_limits, warn
    return ()
