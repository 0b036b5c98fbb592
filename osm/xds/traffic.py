"""The Envoy pieces of OSM's traffic settings: circuit breakers and connection limits
(UpstreamTrafficSetting ``connectionSettings``), route retry policies (Retry) and local
rate limits (UpstreamTrafficSetting ``rateLimit.local`` and ``httpRoutes``).

The one idea: each policy value maps to one Envoy message here, with OSM's shapes
(``pkg/envoy/generator/cds``, ``lds/ratelimit.go``, ``rds/route_config.go``), and the
builders only place them (`cds.upstream_cluster`, `rds` routes and virtual hosts,
`lds` inbound chains); nothing here is added for a service without a policy but the
bucketless HTTP filter, which every inbound HCM holds (`http_rate_limit_filter`: then a
limit is RDS only, `osm.xds.lds`).

Where this differs from OSM, on purpose:

* a cluster without an UpstreamTrafficSetting gets no ``circuit_breakers`` (Envoy's
  defaults: 1024 connections, pending and active requests, 3 retries), where OSM sets
  every threshold to 2^32-1 on every upstream cluster. With a setting, its unset
  thresholds are OSM's 2^32-1, so what a user limits is exactly what is limited.
* ``maxRequestsPerConnection`` goes to the cluster's ``HttpProtocolOptions`` (Envoy's
  current field) rather than the deprecated ``Cluster.max_requests_per_connection``,
  and only for HTTP ports (a TCP port has no requests);
* the rate limited response's headers replace a header of the same name
  (``OVERWRITE_IF_EXISTS_OR_ADD``: OSM's ``append: false``), and its status is always
  written (429 when the setting names none).

Rate limits: the TCP one is the network filter ``envoy.filters.network.local_ratelimit``
(`tcp_rate_limit_filter`) on the served port's chain, a token bucket of connections;
the HTTP one is the HTTP filter ``envoy.filters.http.local_ratelimit`` in the inbound
HCM, with or without limits (`http_rate_limit_filter`: no bucket of its own, so it
limits only where a virtual host or a route carries a config,
`http_rate_limit_config`). Every bucket holds ``requests + burst`` tokens (capped at
2^32-1) and gets ``requests`` back per ``unit``.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import (
    local_rate_limit_pb2 as http_local_rate_limit_pb2,
)
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.local_ratelimit.v3 import (
    local_rate_limit_pb2 as network_local_rate_limit_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_status_pb2, percent_pb2, token_bucket_pb2
from google.protobuf import any_pb2, wrappers_pb2

from osm.catalog.policy import RateLimits, RequestMatch
from osm.model.policy import (
    ConnectionSettings,
    HTTPConnectionSettings,
    HTTPLocalRateLimit,
    RetryPolicy,
    TCPConnectionSettings,
    TCPLocalRateLimit,
)
from osm.xds import common, names
from osm.xds.resources import pack

UINT32_MAX = 2**32 - 1
"""OSM's threshold for what a setting leaves unset (``math.MaxUint32``)."""
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


# -- circuit breaking (CDS) -------------------------------------------------------------------
def circuit_breakers(
    connection: ConnectionSettings | None,
) -> cluster_pb2.CircuitBreakers | None:
    """The cluster's thresholds for an UpstreamTrafficSetting's ``connectionSettings``:
    one (default priority) threshold, each field the setting's limit or 2^32-1, as OSM
    writes them; None without a setting (Envoy's defaults apply)."""
    if connection is None:
        return None
    tcp = connection.tcp or TCPConnectionSettings()
    http = connection.http or HTTPConnectionSettings()

    def limit(value: int | None) -> wrappers_pb2.UInt32Value:
        return common.uint32(UINT32_MAX if value is None else value)

    threshold = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=limit(tcp.max_connections),
        max_pending_requests=limit(http.max_pending_requests),
        max_requests=limit(http.max_requests),
        max_retries=limit(http.max_retries),
        track_remaining=True,
    )
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[threshold])


def apply_connection(
    cluster: cluster_pb2.Cluster, connection: ConnectionSettings | None, http: bool
) -> None:
    """Sets ``connection``'s circuit breakers, connect timeout and (``http`` clusters)
    requests per connection on ``cluster``; leaves it as it is without settings.

    Requests per connection live in the cluster's ``HttpProtocolOptions``, which must
    name the upstream protocol: the cluster's own (HTTP/2 when it already has options,
    i.e. gRPC) or else HTTP/1.1, the protocol of a cluster without options."""
    breakers = circuit_breakers(connection)
    if connection is None or breakers is None:
        return
    cluster.circuit_breakers.CopyFrom(breakers)
    if connection.tcp is not None and connection.tcp.connect_timeout is not None:
        cluster.connect_timeout.CopyFrom(common.seconds(connection.tcp.connect_timeout))
    per_connection = (
        None if connection.http is None else connection.http.max_requests_per_connection
    )
    if not http or per_connection is None:
        return
    options = http_protocol_options_pb2.HttpProtocolOptions()
    existing = cluster.typed_extension_protocol_options.get(names.HTTP_PROTOCOL_OPTIONS)
    if existing is not None:
        existing.Unpack(options)
    else:
        options.explicit_http_config.http_protocol_options.SetInParent()
    options.common_http_protocol_options.max_requests_per_connection.value = per_connection
    cluster.typed_extension_protocol_options[names.HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))


# -- retries (RDS) ----------------------------------------------------------------------------
def retry_policy(policy: RetryPolicy) -> route_components_pb2.RetryPolicy:
    """A Retry's ``retryPolicy`` as a route's (OSM's ``buildRetryPolicy``); a per-try
    timeout of 0 is left out (each try has the route's)."""
    result = route_components_pb2.RetryPolicy(
        retry_on=policy.retry_on,
        num_retries=common.uint32(policy.num_retries),
        retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
            base_interval=common.seconds(policy.retry_backoff_base_interval)
        ),
    )
    if policy.per_try_timeout > 0:
        result.per_try_timeout.CopyFrom(common.seconds(policy.per_try_timeout))
    return result


# -- local rate limits (LDS, RDS) -------------------------------------------------------------
def token_bucket(per_unit: int, unit: str, burst: int) -> token_bucket_pb2.TokenBucket:
    return token_bucket_pb2.TokenBucket(
        max_tokens=min(per_unit + burst, UINT32_MAX),
        tokens_per_fill=common.uint32(per_unit),
        fill_interval=common.seconds(UNIT_SECONDS[unit]),
    )


def tcp_rate_limit_filter(
    limit: TCPLocalRateLimit, stat_prefix: str
) -> listener_components_pb2.Filter:
    """The network filter limiting new connections to a chain (a connection over the
    rate is closed at once)."""
    config = network_local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=stat_prefix,
        token_bucket=token_bucket(limit.connections, limit.unit, limit.burst),
    )
    return listener_components_pb2.Filter(
        name=names.NETWORK_LOCAL_RATE_LIMIT, typed_config=pack(config)
    )


def http_rate_limit_filter(
    stat_prefix: str = names.HTTP_LOCAL_RATE_LIMIT_STATS,
) -> hcm_pb2.HttpFilter:
    """The HTTP filter, without a bucket: it limits only the virtual hosts and routes
    whose ``typed_per_filter_config`` carry an `http_rate_limit_config`. Goes before
    the router (and after RBAC: a denied request takes no token)."""
    config = http_local_rate_limit_pb2.LocalRateLimit(stat_prefix=stat_prefix)
    return hcm_pb2.HttpFilter(name=names.HTTP_LOCAL_RATE_LIMIT, typed_config=pack(config))


def _percent_100() -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(
            numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
        )
    )


def http_rate_limit_config(limit: HTTPLocalRateLimit) -> any_pb2.Any:
    """A virtual host's or a route's HTTP local rate limit (its own bucket), enabled and
    enforced for every request; over the rate a request is answered with the status
    and the headers of the setting."""
    config = http_local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=names.HTTP_LOCAL_RATE_LIMIT_STATS,
        status=http_status_pb2.HttpStatus(code=limit.response_status_code),
        token_bucket=token_bucket(limit.requests, limit.unit, limit.burst),
        filter_enabled=_percent_100(),
        filter_enforced=_percent_100(),
        response_headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=name, value=value),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
            for name, value in limit.response_headers_to_add
        ],
    )
    return pack(config)


# -- served routes (RDS inbound and ingress) --------------------------------------------------
def local_virtual_host(
    name: str,
    local_cluster: str,
    matches: Iterable[RequestMatch],
    per_route: any_pb2.Any,
    limits: RateLimits | None,
) -> route_components_pb2.VirtualHost:
    """A virtual host (``*``) of routes to ``local_cluster``, one per distinct match in
    order, each with the RBAC per-route config ``per_route``; with ``limits``, first a
    route per ``httpRoutes`` path with its own limit (and the same ``per_route``, so it
    allows exactly what the others would), and the virtual host's limit."""

    def route_to_local(match: RequestMatch) -> route_components_pb2.Route:
        route = route_components_pb2.Route(
            match=common.route_match(match),
            route=route_components_pb2.RouteAction(
                cluster=local_cluster, timeout=common.seconds(0)
            ),
        )
        route.typed_per_filter_config[names.HTTP_RBAC].CopyFrom(per_route)
        return route

    routes = []
    if limits is not None:
        for limited in limits.routes:
            route = route_to_local(RequestMatch(path_regex=limited.path_regex))
            route.typed_per_filter_config[names.HTTP_LOCAL_RATE_LIMIT].CopyFrom(
                http_rate_limit_config(limited.limit)
            )
            routes.append(route)
    seen: set[RequestMatch] = set()
    for match in matches:
        if match not in seen:
            seen.add(match)
            routes.append(route_to_local(match))
    host = route_components_pb2.VirtualHost(name=name, domains=["*"], routes=routes)
    if limits is not None and limits.http is not None:
        host.typed_per_filter_config[names.HTTP_LOCAL_RATE_LIMIT].CopyFrom(
            http_rate_limit_config(limits.http)
        )
    return host
