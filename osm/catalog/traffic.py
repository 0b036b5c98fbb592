"""Traffic settings: retries (Retry), circuit breaking and local rate limits
(UpstreamTrafficSetting), as the catalog attaches them to its answers.

The one idea: an UpstreamTrafficSetting applies to the service in its namespace whose
FQDN is its ``host`` (`MeshState.upstream_settings_for`): its connection settings
limit every client's cluster of the service (`connection_for`), its rate limits are
enforced by the proxies serving it (`rate_limits_for`). A Retry applies to the routes
its source identity uses to reach its destination services (`retries_for`).

Conflicts, as OSM resolves them: of two UpstreamTrafficSettings for one host the first
by name wins (OSM's webhook refuses the second; one created while the webhook was down
would otherwise be a coin toss); of two Retries of one source naming one destination
the first by (namespace, name) wins (OSM's ``getRetryPolicy`` returns the first it
lists). Each conflict is a warning naming both objects, under the key of the answer
that found it (``("service", id)`` / ``("identity", identity)``). Nothing here raises.
"""

from __future__ import annotations

from collections.abc import Mapping

from osm.base.identity import Identity
from osm.catalog.ids import ServiceId
from osm.catalog.policy import RateLimits, RouteRateLimit
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn
from osm.model.meta import ObjectRef
from osm.model.policy import ConnectionSettings, RetryPolicy, UpstreamTrafficSetting


def upstream_setting(
    state: MeshState, service: ServiceId, warn: Warn
) -> UpstreamTrafficSetting | None:
    """The UpstreamTrafficSetting of ``service`` (in its namespace, ``host`` its FQDN);
    with several, the first by name, and a warning naming it and each one ignored."""
    settings = state.upstream_settings_for(service.namespace, service.fqdn)
    if not settings:
        return None
    chosen = settings[0]
    for ignored in settings[1:]:
        warn(
            ("service", service),
            ignored,
            f"UpstreamTrafficSetting {ignored.namespace}/{ignored.name} is ignored: "
            f"UpstreamTrafficSetting {chosen.namespace}/{chosen.name} also sets host "
            f'"{service.fqdn}" and comes first by name; keep one per host',
        )
    return chosen


def connection_for(state: MeshState, service: ServiceId, warn: Warn) -> ConnectionSettings | None:
    """Circuit breaking of ``service``'s clusters (None: no UpstreamTrafficSetting sets
    ``connectionSettings`` for it)."""
    setting = upstream_setting(state, service, warn)
    return None if setting is None else setting.connection_settings


def rate_limits_for(state: MeshState, service: ServiceId, warn: Warn) -> RateLimits | None:
    """Local rate limits the proxies serving ``service`` enforce (None: none): the
    UpstreamTrafficSetting's ``rateLimit.local`` (TCP connections, HTTP requests per
    virtual host) and its ``httpRoutes`` that set a local limit, in their order."""
    setting = upstream_setting(state, service, warn)
    if setting is None:
        return None
    local = setting.rate_limit
    routes = tuple(
        RouteRateLimit(route.path, route.rate_limit)
        for route in setting.http_routes
        if route.rate_limit is not None
    )
    tcp = None if local is None else local.tcp
    http = None if local is None else local.http
    if tcp is None and http is None and not routes:
        return None
    return RateLimits(tcp, http, routes, origin=setting.ref)


def retries_for(
    state: MeshState, identity: Identity, warn: Warn
) -> Mapping[ServiceId, tuple[RetryPolicy, ObjectRef]]:
    """The retry policy (and the Retry that set it) per destination service for a client
    running as ``identity`` (empty: no Retry names it). The catalog asks only with
    MeshConfig ``featureFlags.enableRetryPolicy`` on.

    Retries are read in (namespace, name) order and the first naming a destination
    wins it; a later one naming the same destination is warned about, both named."""
    result: dict[ServiceId, tuple[RetryPolicy, ObjectRef]] = {}
    for retry in state.retries_from(identity):
        for destination in retry.destinations:
            service = ServiceId(destination.namespace, destination.name)
            earlier = result.get(service)
            if earlier is None:
                result[service] = (retry.retry_policy, retry.ref)
            elif earlier[1] != retry.ref:
                warn(
                    ("identity", identity),
                    retry,
                    f"Retry {retry.namespace}/{retry.name} is ignored for destination "
                    f"{service}: Retry {earlier[1].namespace}/{earlier[1].name} also "
                    f"names it for source {identity.namespace}/{identity.service_account} "
                    "and comes first by namespace and name",
                )
    return result
