"""LDS: a Listener -> `model.Listener`: listener filters, filter chains and their match,
downstream TLS, network RBAC and the terminal filter (tcp_proxy or the HTTP connection
manager).

The one idea: a filter chain is accepted only in the shapes the sidecar runs: optional
network RBAC and local rate limit (a connection takes a token when its chain is chosen,
as Envoy's filter does on a new connection, whatever the order), then one terminal
filter (tcp_proxy or HCM) and nothing after it; an HCM's HTTP filters are RBAC, the
local rate limit (after RBAC) and the router, last. Network filters are told apart by the type URL
of their config, HTTP filters by name.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from osm.base import wellknown
from osm.proxy import model
from osm.proxy.translate import common, rate_limit, rbac, rds
from osm.proxy.translate.walker import Walker

_PREFIX = wellknown.TYPE_PREFIX
_HCM_TYPE = _PREFIX + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_TCP_PROXY_TYPE = _PREFIX + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name
_NETWORK_RBAC_TYPE = _PREFIX + network_rbac_pb2.RBAC.DESCRIPTOR.full_name
_HTTP_RBAC_TYPE = _PREFIX + http_rbac_pb2.RBAC.DESCRIPTOR.full_name
_ROUTER_TYPE = _PREFIX + router_pb2.Router.DESCRIPTOR.full_name
_DOWNSTREAM_TLS_TYPE = _PREFIX + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_ZIPKIN_TYPE = _PREFIX + zipkin_pb2.ZipkinConfig.DESCRIPTOR.full_name
_ZIPKIN = "envoy.tracers.zipkin"
FULL_SAMPLING = 100.0

_LISTENER_FILTERS = {
    "envoy.filters.listener.original_dst": "original_dst",
    "envoy.filters.listener.tls_inspector": "tls_inspector",
    "envoy.filters.listener.http_inspector": "http_inspector",
}
_LISTENER_FILTER_TYPES = {
    _PREFIX + "envoy.extensions.filters.listener.original_dst.v3.OriginalDst": "original_dst",
    _PREFIX + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector": "tls_inspector",
    _PREFIX + "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector": (
        "http_inspector"
    ),
}

DEFAULT_MAX_REQUEST_HEADERS_KB = 60


def _downstream_tls(walker: Walker, socket: Any, path: str) -> model.DownstreamTls:
    walker.check(socket, path, ("name", "typed_config"))
    context: tls_pb2.DownstreamTlsContext = walker.unpack(
        socket.typed_config,
        f"{path}.typed_config",
        {_DOWNSTREAM_TLS_TYPE: tls_pb2.DownstreamTlsContext},
    )
    where = f"{path}.typed_config"
    walker.check(context, where, ("common_tls_context", "require_client_certificate"))
    cert, validation, default_context = common.tls_context(
        walker, context.common_tls_context, f"{where}.common_tls_context"
    )
    if cert is None:
        raise walker.fail(
            f"{where}.common_tls_context.tls_certificate_sds_secret_configs",
            "a server certificate is required",
        )
    require = context.require_client_certificate.value
    if require and validation is None:
        raise walker.fail(where, "require_client_certificate needs a validation context")
    san = (
        common.san_matchers(
            walker, default_context, f"{where}.common_tls_context.default_validation_context"
        )
        if default_context is not None
        else ()
    )
    alpn = tuple(context.common_tls_context.alpn_protocols)
    low, high = common.tls_versions(
        walker, context.common_tls_context, f"{where}.common_tls_context"
    )
    return model.DownstreamTls(cert, validation, require, alpn, san, low, high)


def _filter_chain_match(walker: Walker, message: Any, path: str) -> model.FilterChainMatch:
    walker.check(
        message,
        path,
        (
            "destination_port",
            "prefix_ranges",
            "server_names",
            "transport_protocol",
            "application_protocols",
            "source_prefix_ranges",
        ),
    )
    ranges = _cidr_ranges(walker, message.prefix_ranges, f"{path}.prefix_ranges")
    sources = _cidr_ranges(walker, message.source_prefix_ranges, f"{path}.source_prefix_ranges")
    transport = message.transport_protocol
    if transport not in ("", "tls", "raw_buffer"):
        raise walker.fail(
            f"{path}.transport_protocol", f"{transport!r} not supported (tls, raw_buffer)"
        )
    return model.FilterChainMatch(
        destination_port=(
            message.destination_port.value if message.HasField("destination_port") else None
        ),
        prefix_ranges=tuple(ranges),
        server_names=tuple(name.lower() for name in message.server_names),
        transport_protocol=transport,
        application_protocols=tuple(message.application_protocols),
        source_prefix_ranges=sources,
    )


def _cidr_ranges(
    walker: Walker, cidrs: Any, path: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    ranges: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for index, cidr in enumerate(cidrs):
        where = f"{path}[{index}]"
        walker.check(cidr, where, ("address_prefix", "prefix_len"))
        length = cidr.prefix_len.value if cidr.HasField("prefix_len") else None
        try:
            address = ipaddress.ip_address(cidr.address_prefix)
            bits = length if length is not None else address.max_prefixlen
            ranges.append(ipaddress.ip_network(f"{address}/{bits}", strict=False))
        except ValueError as error:
            raise walker.fail(where, f"invalid CIDR: {error}") from None
    return tuple(ranges)


def _tcp_proxy(walker: Walker, message: tcp_proxy_pb2.TcpProxy, path: str) -> model.TcpProxy:
    walker.check(message, path, ("stat_prefix", "cluster", "weighted_clusters", "idle_timeout"))
    which = message.WhichOneof("cluster_specifier")
    if which == "cluster":
        targets: tuple[model.WeightedTarget, ...] = (model.WeightedTarget(message.cluster, 1),)
    elif which == "weighted_clusters":
        where = f"{path}.weighted_clusters"
        walker.check(message.weighted_clusters, where, ("clusters",))
        targets = rds.weighted_targets(
            walker, message.weighted_clusters.clusters, f"{where}.clusters"
        )
    else:
        raise walker.fail(path, "a cluster specifier is required (cluster, weighted_clusters)")
    idle = (
        walker.duration(message.idle_timeout, f"{path}.idle_timeout") or None
        if message.HasField("idle_timeout")
        else 3600.0
    )
    return model.TcpProxy(message.stat_prefix, targets, idle)


def _tracing(
    walker: Walker, message: hcm_pb2.HttpConnectionManager.Tracing, path: str, server: bool
) -> model.Tracing:
    """The HCM's tracer: Zipkin over HTTP JSON only (B3 propagation, 64-bit trace ids)."""
    walker.check(message, path, ("provider", "verbose", "random_sampling"))
    provider = message.provider
    walker.check(provider, f"{path}.provider", ("name", "typed_config"))
    if provider.name != _ZIPKIN and not provider.HasField("typed_config"):
        raise walker.fail(f"{path}.provider.name", f"{provider.name!r} not supported ({_ZIPKIN})")
    where = f"{path}.provider.typed_config"
    zipkin: zipkin_pb2.ZipkinConfig = walker.unpack(
        provider.typed_config, where, {_ZIPKIN_TYPE: zipkin_pb2.ZipkinConfig}
    )
    walker.check(
        zipkin,
        where,
        (
            "collector_cluster",
            "collector_endpoint",
            "collector_endpoint_version",
            "shared_span_context",
        ),
    )
    version = zipkin_pb2.ZipkinConfig.CollectorEndpointVersion.Name(
        zipkin.collector_endpoint_version
    )
    if version != "HTTP_JSON":
        raise walker.fail(
            f"{where}.collector_endpoint_version", f"{version} not supported (HTTP_JSON)"
        )
    if zipkin.HasField("shared_span_context") and not zipkin.shared_span_context.value:
        raise walker.fail(f"{where}.shared_span_context", "false not supported (true)")
    if not zipkin.collector_cluster or not zipkin.collector_endpoint.startswith("/"):
        raise walker.fail(where, "a collector_cluster and a collector_endpoint path are required")
    sampling = (
        message.random_sampling.value if message.HasField("random_sampling") else FULL_SAMPLING
    )
    return model.Tracing(
        zipkin.collector_cluster,
        zipkin.collector_endpoint,
        min(max(sampling, 0.0), FULL_SAMPLING),
        server,
    )


def _http_connection_manager(
    walker: Walker, message: hcm_pb2.HttpConnectionManager, path: str, server: bool = False
) -> model.HttpConnectionManager:
    walker.check(
        message,
        path,
        (
            "codec_type",
            "stat_prefix",
            "rds",
            "route_config",
            "http_filters",
            "use_remote_address",
            "generate_request_id",
            "upgrade_configs",
            "max_request_headers_kb",
            "tracing",
        ),
    )
    codec = hcm_pb2.HttpConnectionManager.CodecType.Name(message.codec_type)
    if codec not in ("AUTO", "HTTP1"):
        raise walker.fail(f"{path}.codec_type", f"{codec} not supported (AUTO, HTTP1)")
    rds_name: str | None = None
    route_config: model.RouteConfig | None = None
    which = message.WhichOneof("route_specifier")
    if which == "rds":
        walker.check(message.rds, f"{path}.rds", ("config_source", "route_config_name"))
        walker.config_source(message.rds.config_source, f"{path}.rds.config_source")
        rds_name = message.rds.route_config_name
    elif which == "route_config":
        route_config = rds.route_configuration(walker, message.route_config, f"{path}.route_config")
    else:
        raise walker.fail(path, "a route specifier is required (rds, route_config)")
    rbac_filter: model.HttpRbacFilter | None = None
    local_rate_limit = False
    filters = list(message.http_filters)
    if not filters or filters[-1].name != "envoy.filters.http.router":
        raise walker.fail(f"{path}.http_filters", "must end with envoy.filters.http.router")
    for index, http_filter in enumerate(filters):
        where = f"{path}.http_filters[{index}]"
        walker.check(http_filter, where, ("name", "typed_config"))
        if http_filter.name == "envoy.filters.http.router":
            if index != len(filters) - 1:
                raise walker.fail(where, "the router must be the last HTTP filter")
            if http_filter.HasField("typed_config"):
                router = walker.unpack(
                    http_filter.typed_config,
                    f"{where}.typed_config",
                    {_ROUTER_TYPE: router_pb2.Router},
                )
                walker.check(router, f"{where}.typed_config", ())
        elif http_filter.name == "envoy.filters.http.rbac":
            config: http_rbac_pb2.RBAC = walker.unpack(
                http_filter.typed_config,
                f"{where}.typed_config",
                {_HTTP_RBAC_TYPE: http_rbac_pb2.RBAC},
            )
            walker.check(config, f"{where}.typed_config", ("rules",))
            rules = (
                rbac.rules(walker, config.rules, f"{where}.typed_config.rules")
                if config.HasField("rules")
                else None
            )
            if local_rate_limit:
                raise walker.fail(
                    where, f"{rate_limit.HTTP_FILTER} must follow envoy.filters.http.rbac"
                )
            rbac_filter = model.HttpRbacFilter(rules)
        elif http_filter.name == rate_limit.HTTP_FILTER:
            rate_limit.http_filter(walker, http_filter.typed_config, f"{where}.typed_config")
            local_rate_limit = True
        else:
            raise walker.fail(
                f"{where}.name",
                f"HTTP filter {http_filter.name!r} not supported "
                f"(envoy.filters.http.rbac, {rate_limit.HTTP_FILTER}, envoy.filters.http.router)",
            )
    websocket = False
    for index, upgrade in enumerate(message.upgrade_configs):
        where = f"{path}.upgrade_configs[{index}]"
        walker.check(upgrade, where, ("upgrade_type", "enabled"))
        if upgrade.upgrade_type.lower() != "websocket":
            raise walker.fail(
                f"{where}.upgrade_type", f"{upgrade.upgrade_type!r} not supported (websocket)"
            )
        websocket = upgrade.enabled.value if upgrade.HasField("enabled") else True
    headers_kb = (
        message.max_request_headers_kb.value
        if message.HasField("max_request_headers_kb")
        else DEFAULT_MAX_REQUEST_HEADERS_KB
    )
    return model.HttpConnectionManager(
        stat_prefix=message.stat_prefix,
        rds_name=rds_name,
        route_config=route_config,
        rbac=rbac_filter,
        use_remote_address=(
            message.use_remote_address.value if message.HasField("use_remote_address") else False
        ),
        generate_request_id=(
            message.generate_request_id.value if message.HasField("generate_request_id") else True
        ),
        websocket=websocket,
        max_request_headers_bytes=headers_kb * 1024,
        local_rate_limit=local_rate_limit,
        tracing=(
            _tracing(walker, message.tracing, f"{path}.tracing", server)
            if message.HasField("tracing")
            else None
        ),
    )


def _filter_chain(
    walker: Walker, message: Any, path: str, server: bool = False
) -> model.FilterChain:
    walker.check(message, path, ("name", "filter_chain_match", "filters", "transport_socket"))
    match = _filter_chain_match(walker, message.filter_chain_match, f"{path}.filter_chain_match")
    tls: model.DownstreamTls | None = None
    if message.HasField("transport_socket"):
        socket = message.transport_socket
        if socket.name not in ("envoy.transport_sockets.tls", "tls"):
            raise walker.fail(
                f"{path}.transport_socket.name",
                f"{socket.name!r} not supported (envoy.transport_sockets.tls)",
            )
        tls = _downstream_tls(walker, socket, f"{path}.transport_socket")
    network_rbac: model.NetworkRbac | None = None
    limit: model.LocalRateLimit | None = None
    terminal: model.TcpProxy | model.HttpConnectionManager | None = None
    filters = list(message.filters)
    for index, network_filter in enumerate(filters):
        where = f"{path}.filters[{index}]"
        walker.check(network_filter, where, ("name", "typed_config"))
        if terminal is not None:
            raise walker.fail(where, "no filter may follow the terminal filter")
        type_url = network_filter.typed_config.type_url
        if type_url == _NETWORK_RBAC_TYPE:
            config: network_rbac_pb2.RBAC = walker.unpack(
                network_filter.typed_config,
                f"{where}.typed_config",
                {_NETWORK_RBAC_TYPE: network_rbac_pb2.RBAC},
            )
            walker.check(config, f"{where}.typed_config", ("rules", "stat_prefix"))
            rules = (
                rbac.rules(walker, config.rules, f"{where}.typed_config.rules")
                if config.HasField("rules")
                else model.RbacRules("DENY", ())
            )
            network_rbac = model.NetworkRbac(config.stat_prefix, rules)
        elif type_url == rate_limit.NETWORK_TYPE:
            limit = rate_limit.network(walker, network_filter.typed_config, f"{where}.typed_config")
        elif type_url == _TCP_PROXY_TYPE:
            proxy: tcp_proxy_pb2.TcpProxy = walker.unpack(
                network_filter.typed_config,
                f"{where}.typed_config",
                {_TCP_PROXY_TYPE: tcp_proxy_pb2.TcpProxy},
            )
            terminal = _tcp_proxy(walker, proxy, f"{where}.typed_config")
        elif type_url == _HCM_TYPE:
            manager: hcm_pb2.HttpConnectionManager = walker.unpack(
                network_filter.typed_config,
                f"{where}.typed_config",
                {_HCM_TYPE: hcm_pb2.HttpConnectionManager},
            )
            terminal = _http_connection_manager(walker, manager, f"{where}.typed_config", server)
        else:
            raise walker.fail(
                f"{where}.typed_config",
                f"network filter {network_filter.name!r} ({type_url}) not supported "
                "(envoy.filters.network.rbac, envoy.filters.network.local_ratelimit, "
                "tcp_proxy, http_connection_manager)",
            )
    if terminal is None:
        raise walker.fail(f"{path}.filters", "a terminal filter (tcp_proxy or HCM) is required")
    return model.FilterChain(message.name, match, tls, network_rbac, terminal, limit)


def translate(message: listener_pb2.Listener) -> model.Listener:
    """Listener -> Listener model; raises ConfigError."""
    walker = Walker("Listener", message.name)
    walker.check(
        message,
        "",
        (
            "name",
            "address",
            "filter_chains",
            "default_filter_chain",
            "listener_filters",
            "traffic_direction",
            "use_original_dst",
            "stat_prefix",
            "continue_on_listener_filters_timeout",
        ),
    )
    walker.check(message.address, "address", ("socket_address",))
    socket_address = message.address.socket_address
    walker.check(socket_address, "address.socket_address", ("address", "port_value", "protocol"))
    seen: set[str] = set()
    disabled: dict[str, model.PortRanges] = {}
    for index, listener_filter in enumerate(message.listener_filters):
        where = f"listener_filters[{index}]"
        walker.check(listener_filter, where, ("name", "typed_config", "filter_disabled"))
        kind = _LISTENER_FILTERS.get(listener_filter.name)
        if listener_filter.HasField("typed_config"):
            kind = _LISTENER_FILTER_TYPES.get(listener_filter.typed_config.type_url)
        if kind is None:
            raise walker.fail(
                where,
                f"listener filter {listener_filter.name!r} not supported "
                f"({', '.join(sorted(_LISTENER_FILTERS))})",
            )
        seen.add(kind)
        if listener_filter.HasField("filter_disabled"):
            if kind == "original_dst":
                raise walker.fail(
                    f"{where}.filter_disabled", "the original_dst filter is always on"
                )
            disabled[kind] = _disabled_ports(
                walker, listener_filter.filter_disabled, f"{where}.filter_disabled"
            )
    server = message.traffic_direction == base_pb2.INBOUND  # Envoy's tracing direction
    chains = tuple(
        _filter_chain(walker, chain, f"filter_chains[{index}]", server)
        for index, chain in enumerate(message.filter_chains)
    )
    default_chain = (
        _filter_chain(walker, message.default_filter_chain, "default_filter_chain", server)
        if message.HasField("default_filter_chain")
        else None
    )
    use_original_dst = "original_dst" in seen or (
        message.HasField("use_original_dst") and message.use_original_dst.value
    )
    return model.Listener(
        name=message.name,
        host=socket_address.address or "0.0.0.0",
        port=socket_address.port_value,
        use_original_dst=use_original_dst,
        inspect_tls="tls_inspector" in seen,
        filter_chains=chains,
        default_filter_chain=default_chain,
        inspect_http="http_inspector" in seen,
        tls_inspector_off=disabled.get("tls_inspector", model.PortRanges()),
        http_inspector_off=disabled.get("http_inspector", model.PortRanges()),
    )


def _disabled_ports(walker: Walker, predicate: Any, path: str) -> model.PortRanges:
    """The destination ports a ``filter_disabled`` predicate names: a
    ``destination_port_range`` or an ``or_match`` of them (the shapes the sidecar runs)."""
    return model.PortRanges.of(_port_ranges(walker, predicate, path))


def _port_ranges(walker: Walker, predicate: Any, path: str) -> list[tuple[int, int]]:
    walker.check(predicate, path, ("destination_port_range", "or_match"))
    which = predicate.WhichOneof("rule")
    if which == "or_match":
        walker.check(predicate.or_match, f"{path}.or_match", ("rules",))
        ranges: list[tuple[int, int]] = []
        for index, rule in enumerate(predicate.or_match.rules):
            where = f"{path}.or_match.rules[{index}]"
            walker.check(rule, where, ("destination_port_range",))
            ranges.extend(_port_ranges(walker, rule, where))
        return ranges
    if which != "destination_port_range":
        raise walker.fail(path, "a rule is required (destination_port_range, or_match)")
    port_range = predicate.destination_port_range
    walker.check(port_range, f"{path}.destination_port_range", ("start", "end"))
    return [(port_range.start, port_range.end)]
