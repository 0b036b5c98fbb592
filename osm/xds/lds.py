"""LDS: the listeners of a proxy, built from its policy.

Sidecars get three listeners: ``outbound-listener`` (0.0.0.0:15001; original_dst;
one filter chain per outbound service port, matched on destination port and /32s,
HTTP via RDS ``rds-outbound.<port>``, TCP via tcp_proxy; a passthrough default chain
when egress is on), ``inbound-listener`` (0.0.0.0:15003; one chain per served port,
matched on target port and the service's TLS server name, mTLS required, network RBAC
in SMI mode, then the TCP local rate limit of the service's UpstreamTrafficSetting if it
has one (after RBAC, as OSM: a refused peer takes no token), HTTP via RDS
``rds-inbound.<targetPort>`` with the HTTP RBAC filter and, always, the HTTP local rate
limit filter, TCP to the local cluster; then one chain per ingress port,
`osm.xds.ingress`) and ``inbound-prometheus-listener`` (15010). A listener
with no chain (Envoy rejects those) is left out.

The inbound HCM always holds the HTTP local rate limit filter, as OSM's always holds
RBAC and local rate limiting: the filter has no bucket of its own and limits only where
RDS gives one (`osm.xds.traffic`), so adding, changing or removing a service's HTTP
limits changes its route configurations only, never the listener. That matters: Envoy
applies a new listener to new connections only and keeps the ones already open on the
old filter chains for its drain time, whereas a new route configuration applies to
every request at once. A TCP limit is a network filter on the chain, so it does change
the listener (connections opened before keep their old chain until drained).

Proxyless gRPC clients get one ``api_listener`` per name they may dial (see
`names.grpc_listeners`), each an HCM reading ``rds-outbound.<port>`` over ADS.

Same shape as every builder module: `outbound_resources` and `inbound_resources`
take exactly the policy values (and `Settings`) they read, and the context's caches,
and return memoized `Built` listeners; for a proxyless gRPC client,
`grpc_listeners` instead of `outbound_resources`.
"""

from __future__ import annotations

import functools
import ipaddress

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from osm.base import wellknown
from osm.base.identity import ProxyKind
from osm.base.wellknown import LISTENER_TYPE
from osm.catalog.ids import ServiceId
from osm.catalog.policy import (
    EgressPolicy,
    InboundPolicy,
    InboundPort,
    OutboundPort,
    TlsSettings,
    WeightedTarget,
    is_http,
)
from osm.xds import common, ingress, names, traffic
from osm.xds import egress as egress_xds
from osm.xds import tracing as tracing_xds
from osm.xds.context import Context, Settings
from osm.xds.resources import Built, build, pack
from osm.xds.tracing import Tracing

HCM = hcm_pb2.HttpConnectionManager
SERVER_FIRST_PROTOCOL = egress_xds.SERVER_FIRST


def outbound_resources(
    ports: tuple[OutboundPort, ...],
    egress: bool,
    egress_policy: EgressPolicy | None,
    context: Context,
    tracing: Tracing | None = None,
) -> list[Built]:
    """A sidecar's outbound listener (reads ``ports``, ``egress``, ``egress_policy`` and
    ``tracing`` only, and no HTTP port's routes: `osm.xds.layers` shares it on that
    basis)."""
    # Keyed on what the listener reads (not on routes: a split change is RDS only).
    view = tuple(
        (p.service, p.port, p.protocol, p.match_ips, None if is_http(p.protocol) else p.routes)
        for p in ports
    )
    outbound = _drop_none(
        context.memo.get(
            ("lds-outbound", view, egress, egress_policy, tracing),
            lambda: _built(outbound_listener(ports, egress, context, egress_policy, tracing)),
        )
    )
    return [] if outbound is None else [outbound]


def inbound_resources(
    kind: ProxyKind, inbound: InboundPolicy, tls: TlsSettings, settings: Settings, context: Context
) -> list[Built]:
    """The inbound and prometheus listeners (sidecars only)."""
    if kind == ProxyKind.GRPC:
        return []
    memo = context.memo
    result: list[Built] = []
    trust_domain = settings.trust_domain
    tracing = settings.tracing
    listener = _drop_none(
        memo.get(
            ("lds-inbound", inbound, tls, trust_domain, tracing),
            lambda: _built(inbound_listener(inbound, tls, trust_domain, context, tracing)),
        )
    )
    if listener is not None:
        result.append(listener)
    result.append(memo.get(("lds-prometheus",), lambda: _built(prometheus_listener())))
    return result


def _built(listener: listener_pb2.Listener | None) -> Built:
    # A None listener is memoized as a sentinel Built with an empty name.
    if listener is None:
        return _NONE
    return build(LISTENER_TYPE, listener.name, listener)


_NONE = build(LISTENER_TYPE, "", listener_pb2.Listener())


def _drop_none(built: Built) -> Built | None:
    return None if built is _NONE else built


# -- pieces ------------------------------------------------------------------------------
def router_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=names.ROUTER, typed_config=pack(router_pb2.Router()))


def http_connection_manager(
    stat_prefix: str,
    route_config_name: str,
    *,
    rbac: bool = False,
    rate_limit: bool = False,
    tracing: Tracing | None = None,
) -> hcm_pb2.HttpConnectionManager:
    """An HCM that reads ``route_config_name`` over ADS and ends with the router; with
    ``rate_limit``, the local rate limit filter (after RBAC) enforces the limits its
    routes and virtual hosts carry (none: it passes every request); with ``tracing``,
    the mesh's Zipkin tracer (`osm.xds.tracing`)."""
    filters = []
    if rbac:
        # No rules here: each route carries its policy (RBACPerRoute).
        filters.append(
            hcm_pb2.HttpFilter(name=names.HTTP_RBAC, typed_config=pack(http_rbac_pb2.RBAC()))
        )
    if rate_limit:
        filters.append(traffic.http_rate_limit_filter())
    filters.append(router_filter())
    hcm = HCM(
        stat_prefix=stat_prefix,
        codec_type=HCM.AUTO,
        rds=hcm_pb2.Rds(config_source=common.ads(), route_config_name=route_config_name),
        http_filters=filters,
    )
    tracing_xds.add_to(hcm, tracing)
    return hcm


def tcp_proxy(stat_prefix: str, targets: tuple[WeightedTarget, ...]) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if len(targets) == 1:
        proxy.cluster = names.cluster(targets[0].service, targets[0].port)
    else:
        for target in targets:
            proxy.weighted_clusters.clusters.add(
                name=names.cluster(target.service, target.port), weight=target.weight
            )
    return proxy


def _filter(name: str, config: Message) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=name, typed_config=pack(config))


def _cidr(ip: str) -> address_pb2.CidrRange:
    length = 32 if ipaddress.ip_address(ip).version == 4 else 128
    return address_pb2.CidrRange(address_prefix=ip, prefix_len=common.uint32(length))


# -- outbound ----------------------------------------------------------------------------
def outbound_chain(
    port: OutboundPort, tracing: Tracing | None = None
) -> listener_components_pb2.FilterChain | None:
    """The filter chain for one outbound service port (None without addresses)."""
    if not port.match_ips:
        return None
    chain = listener_components_pb2.FilterChain(
        name=names.outbound_filter_chain(port.service, port.port, port.protocol),
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=common.uint32(port.port),
            prefix_ranges=[_cidr(ip) for ip in port.match_ips],
        ),
    )
    stat = names.stat_prefix(f"outbound_{port.service}_{port.port}")
    if is_http(port.protocol):
        hcm = http_connection_manager(stat, names.outbound_route_config(port.port), tracing=tracing)
        chain.filters.append(_filter(names.HTTP_CONNECTION_MANAGER, hcm))
    else:
        chain.filters.append(_filter(names.TCP_PROXY, tcp_proxy(stat, port.routes[-1].targets)))
    return chain


def outbound_listener(
    ports: tuple[OutboundPort, ...],
    egress: bool,
    context: Context,
    egress_policy: EgressPolicy | None = None,
    tracing: Tracing | None = None,
) -> listener_pb2.Listener | None:
    """The outbound listener; with an ``egress_policy`` (only when ``egress`` is off)
    its chains and inspectors too (`osm.xds.egress.add_to_listener`)."""
    chains = []
    for port in ports:
        routes = None if is_http(port.protocol) else port.routes
        key = (port.service, port.port, port.protocol, port.match_ips, routes, tracing)
        chain = context.part(
            ("outbound-chain", key), functools.partial(_outbound_chain, port, tracing)
        )
        if chain is not _NO_CHAIN:
            chains.append(chain)
    if not chains and not egress and egress_policy is None:
        return None
    listener = listener_pb2.Listener(
        name=names.OUTBOUND_LISTENER,
        address=common.socket_address(names.ANY_ADDRESS, wellknown.PROXY_OUTBOUND_PORT),
        traffic_direction=base_pb2.OUTBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=names.ORIGINAL_DST, typed_config=pack(original_dst_pb2.OriginalDst())
            )
        ],
        filter_chains=chains,
    )
    if egress_policy is not None:
        server_first = [p.port for p in ports if p.protocol == SERVER_FIRST_PROTOCOL]
        egress_xds.add_to_listener(listener, egress_policy, server_first, tracing)
    if egress:
        passthrough = tcp_proxy_pb2.TcpProxy(
            stat_prefix=names.PASSTHROUGH_CLUSTER, cluster=names.PASSTHROUGH_CLUSTER
        )
        listener.default_filter_chain.CopyFrom(
            listener_components_pb2.FilterChain(
                name=names.EGRESS_FILTER_CHAIN, filters=[_filter(names.TCP_PROXY, passthrough)]
            )
        )
    return listener


_NO_CHAIN = listener_components_pb2.FilterChain()


def _outbound_chain(
    port: OutboundPort, tracing: Tracing | None
) -> listener_components_pb2.FilterChain:
    chain = outbound_chain(port, tracing)
    return _NO_CHAIN if chain is None else chain


# -- inbound -----------------------------------------------------------------------------
def downstream_tls(tls: TlsSettings) -> tls_pb2.DownstreamTlsContext:
    """Server side of mesh mTLS: our certificate, peers verified against the mesh root."""
    return tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_params=common.tls_params(tls),
            tls_certificate_sds_secret_configs=[common.sds(names.SERVICE_CERT)],
            validation_context_sds_secret_config=common.sds(names.ROOT_CERT_INBOUND),
        ),
    )


def network_rbac(port: InboundPort, trust_domain: str) -> network_rbac_pb2.RBAC:
    """Connection-level allow-list of a port (no policy at all denies everyone)."""
    rules = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    if port.l4_sources:
        rules.policies["allowed-sources"].CopyFrom(
            rbac_pb2.Policy(
                permissions=[rbac_pb2.Permission(any=True)],
                principals=common.principals(port.l4_sources, trust_domain),
            )
        )
    return network_rbac_pb2.RBAC(
        stat_prefix=names.stat_prefix(f"inbound_{port.service}_{port.target_port}_rbac"),
        rules=rules,
    )


def inbound_chain(
    port: InboundPort,
    tls: TlsSettings,
    trust_domain: str,
    mesh_alpn: bool = False,
    tracing: Tracing | None = None,
) -> listener_components_pb2.FilterChain:
    """The mesh chain of one served port; ``mesh_alpn`` also matches ALPN ``osm`` (an
    ingress chain shares its server name: `ingress.mesh_alpn_ports`)."""
    chain = listener_components_pb2.FilterChain(
        name=names.inbound_filter_chain(port.service, port.target_port, port.protocol),
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=common.uint32(port.target_port),
            transport_protocol="tls",
            server_names=[port.service.fqdn],
            application_protocols=[names.ALPN_MESH] if mesh_alpn else [],
        ),
        transport_socket=common.transport_socket(downstream_tls(tls)),
    )
    if port.l4_sources is not None:
        chain.filters.append(_filter(names.NETWORK_RBAC, network_rbac(port, trust_domain)))
    limits = port.rate_limits
    if limits is not None and limits.tcp is not None:
        stats = names.inbound_rate_limit_stats(port.service, port.target_port, port.protocol)
        chain.filters.append(traffic.tcp_rate_limit_filter(limits.tcp, stats))
    stat = names.stat_prefix(f"inbound_{port.service}_{port.target_port}")
    if is_http(port.protocol):
        # The rate limit filter whether or not the service has HTTP limits: they are in
        # RDS only (see the module docstring).
        hcm = http_connection_manager(
            stat,
            names.inbound_route_config(port.target_port),
            rbac=True,
            rate_limit=True,
            tracing=tracing,
        )
        chain.filters.append(_filter(names.HTTP_CONNECTION_MANAGER, hcm))
    else:
        local = tcp_proxy_pb2.TcpProxy(
            stat_prefix=stat, cluster=names.local_cluster(port.service, port.port)
        )
        chain.filters.append(_filter(names.TCP_PROXY, local))
    return chain


def inbound_listener(
    inbound: InboundPolicy,
    tls: TlsSettings,
    trust_domain: str,
    context: Context,
    tracing: Tracing | None = None,
) -> listener_pb2.Listener | None:
    """One chain per (target port, service); a second service port with the same
    target port (same match) is left out. Then the ingress chains (`osm.xds.ingress`);
    a listener with only those exists too."""
    seen: set[tuple[int, ServiceId]] = set()
    alpn_ports = ingress.mesh_alpn_ports(inbound) if inbound.ingress else frozenset()
    chains = []
    for port in inbound.ports:
        if (port.target_port, port.service) in seen:
            continue
        seen.add((port.target_port, port.service))
        alpn = port.target_port in alpn_ports
        chains.append(
            context.part(
                ("inbound-chain", port, tls, trust_domain, alpn, tracing),
                functools.partial(inbound_chain, port, tls, trust_domain, alpn, tracing),
            )
        )
    chains.extend(ingress.listener_chains(inbound, tls, context, tracing))
    if not chains:
        return None
    return listener_pb2.Listener(
        name=names.INBOUND_LISTENER,
        address=common.socket_address(names.ANY_ADDRESS, wellknown.PROXY_INBOUND_PORT),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=names.TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
            ),
            listener_components_pb2.ListenerFilter(
                name=names.ORIGINAL_DST, typed_config=pack(original_dst_pb2.OriginalDst())
            ),
        ],
        filter_chains=chains,
    )


# -- prometheus --------------------------------------------------------------------------
def prometheus_listener() -> listener_pb2.Listener:
    """Serves the sidecar's ``/stats/prometheus`` (from the admin port) on 15010."""
    route = route_pb2.RouteConfiguration(
        name="prometheus-route",
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="prometheus",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix=names.PROMETHEUS_PATH),
                        route=route_components_pb2.RouteAction(
                            cluster=names.METRICS_CLUSTER, prefix_rewrite=names.PROMETHEUS_PATH
                        ),
                    )
                ],
            )
        ],
    )
    hcm = HCM(
        stat_prefix="prometheus",
        codec_type=HCM.AUTO,
        route_config=route,
        http_filters=[router_filter()],
    )
    return listener_pb2.Listener(
        name=names.PROMETHEUS_LISTENER,
        address=common.socket_address(names.ANY_ADDRESS, wellknown.PROXY_PROMETHEUS_PORT),
        traffic_direction=base_pb2.INBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[_filter(names.HTTP_CONNECTION_MANAGER, hcm)]
            )
        ],
    )


# -- proxyless gRPC ----------------------------------------------------------------------
def grpc_listener(name: str, port: int) -> listener_pb2.Listener:
    hcm = http_connection_manager(names.stat_prefix(name), names.outbound_route_config(port))
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(hcm))
    )


def _built_grpc_listener(name: str, port: int) -> Built:
    return build(LISTENER_TYPE, name, grpc_listener(name, port))


def grpc_listeners(
    namespace: str, ports: tuple[OutboundPort, ...], context: Context
) -> list[Built]:
    """A proxyless gRPC client's api_listeners, for every HTTP (incl. gRPC) service port
    it may call (reads the client's ``namespace`` and the ports' service, port and
    protocol)."""
    port_count: dict[ServiceId, int] = {}
    for port in ports:
        port_count[port.service] = port_count.get(port.service, 0) + 1
    result: dict[str, Built] = {}
    for port in ports:
        if not is_http(port.protocol):
            continue
        same_namespace = port.service.namespace == namespace
        for name in names.grpc_listeners(
            port.service, port.port, same_namespace, port_count[port.service] == 1
        ):
            result[name] = context.memo.get(
                ("lds-grpc", name, port.port),
                functools.partial(_built_grpc_listener, name, port.port),
            )
    return [result[name] for name in sorted(result)]
