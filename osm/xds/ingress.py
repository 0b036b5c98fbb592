"""Ingress: the inbound listener's filter chains and routes for IngressBackends.

The one idea: each `IngressPort` a proxy serves is one filter chain on the inbound
listener (OSM's ``lds/ingress.go``) beside the mesh's mTLS chains, told apart from them
by Envoy's filter chain match alone, and one route configuration
``rds-ingress.<targetPort>`` (`names.ingress_route_config`) of routes to the local
cluster, each carrying the port's RBAC policy set.

The chain (named `IngressPort.name`) matches the destination port (the application's),
the source ranges (``source_prefix_ranges``; none: any source) and:

* http: ``transport_protocol: raw_buffer``, plaintext. The mesh chains of the port match
  TLS with the service's server name, so neither can take the other's connections.
* https: ``transport_protocol: tls`` and ``server_names`` = the SNI hosts (none: any),
  TLS ended with the proxy's ``service-cert``; the client certificate is required and
  validated against ``root-cert-for-mtls-inbound`` unless skipClientCertValidation.
  Envoy picks server names before anything else (the most specific, without going
  back), so when the SNI hosts include a mesh chain's server name both chains share
  that name, and the mesh chain of that port also matches ALPN ``osm``, which every
  mesh client sends (`cds.upstream_tls`): mesh clients keep their chain and others take
  the ingress one, whatever their source address (`mesh_alpn_ports`). Without SNI hosts
  an ingress client that sends the mesh's own server name gets the mesh chain and fails
  its handshake: list that name in sniHosts. (A proxyless gRPC client sends ALPN ``h2``,
  so it cannot reach a port whose mesh chain asks for ``osm``.)

Routes: one per request match (ingress rules in order), to ``<ns>/<svc>|<port>|local``
with route timeouts disabled as for mesh routes; every route carries the same policy set
(one policy per rule: its match and ``any`` principal for http or for https without
listed principals, else the AuthenticatedPrincipal names as ``authenticated``
principal names, which Envoy compares with the certificate's URI SANs, DNS SANs and
subject), so a request is allowed when any rule allows it, as `osm.xds.rds` does for
the mesh.

A proxy gets the chain of an ingress port only when it serves the service port the
routes lead to (its local cluster exists); one per target port, the first by service
(`served`). The service's local rate limits (`IngressPort.rate_limits`, its
UpstreamTrafficSetting) apply to ingress as to mesh traffic, with the pieces of
`osm.xds.traffic` placed as on the mesh chains: the TCP limit before the connection
manager, the HTTP limit filter after RBAC (a refused request takes no token; always
there, as on the mesh chains, so that HTTP limits change RDS only, `osm.xds.lds`), the
virtual host's limit and one route per ``httpRoutes`` path, first, with its own.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import wrappers_pb2

from osm.base.wellknown import ROUTE_TYPE
from osm.catalog.policy import InboundPolicy, IngressPort, IngressRule, TlsSettings
from osm.xds import common, names, traffic
from osm.xds import tracing as tracing_xds
from osm.xds.context import Context
from osm.xds.resources import Built, build, pack
from osm.xds.tracing import Tracing

HCM = hcm_pb2.HttpConnectionManager
HTTPS = "https"
RAW_BUFFER = "raw_buffer"
TLS = "tls"


def served(inbound: InboundPolicy) -> tuple[IngressPort, ...]:
    """The ingress ports that get a chain: those whose service port the proxy serves
    (``inbound.ports``: its local cluster exists), the first per target port."""
    local = {(port.service, port.port) for port in inbound.ports}
    seen: set[int] = set()
    result: list[IngressPort] = []
    for port in inbound.ingress:
        if (port.service, port.port) in local and port.target_port not in seen:
            seen.add(port.target_port)
            result.append(port)
    return tuple(result)


def mesh_alpn_ports(inbound: InboundPolicy) -> frozenset[int]:
    """Target ports whose mesh chains must match ALPN ``osm``: an https ingress chain on
    the port accepts one of their server names (see the module docstring)."""
    mesh_names: dict[int, set[str]] = {}
    for port in inbound.ports:
        mesh_names.setdefault(port.target_port, set()).add(port.service.fqdn)
    return frozenset(
        port.target_port
        for port in served(inbound)
        if port.protocol == HTTPS
        and mesh_names.get(port.target_port, set()) & {name.lower() for name in port.server_names}
    )


# -- listener ----------------------------------------------------------------------------
def downstream_tls(port: IngressPort, tls: TlsSettings) -> tls_pb2.DownstreamTlsContext:
    """TLS ended with the proxy's certificate; the client's required and validated
    against the mesh root unless the backend skips client certificate validation."""
    validate = not port.skip_client_cert_validation
    common_context = tls_pb2.CommonTlsContext(
        tls_params=common.tls_params(tls),
        tls_certificate_sds_secret_configs=[common.sds(names.SERVICE_CERT)],
    )
    if validate:
        common_context.validation_context_sds_secret_config.CopyFrom(
            common.sds(names.ROOT_CERT_INBOUND)
        )
    return tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=validate),
        common_tls_context=common_context,
    )


def source_range(cidr: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(cidr, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address), prefix_len=common.uint32(network.prefixlen)
    )


def filter_chain_match(port: IngressPort) -> listener_components_pb2.FilterChainMatch:
    match = listener_components_pb2.FilterChainMatch(
        destination_port=common.uint32(port.target_port),
        source_prefix_ranges=[source_range(cidr) for cidr in port.source_ip_ranges],
    )
    if port.protocol == HTTPS:
        match.transport_protocol = TLS
        match.server_names.extend(port.server_names)
    else:
        match.transport_protocol = RAW_BUFFER
    return match


def http_connection_manager(
    port: IngressPort, tracing: Tracing | None = None
) -> hcm_pb2.HttpConnectionManager:
    """Reads ``rds-ingress.<targetPort>``: RBAC (rules per route), the HTTP local rate
    limit filter (always: it limits only where the routes carry the service's HTTP
    limits), the router; the mesh's ``tracing``, if on."""
    filters = [
        hcm_pb2.HttpFilter(name=names.HTTP_RBAC, typed_config=pack(http_rbac_pb2.RBAC())),
        traffic.http_rate_limit_filter(),
        hcm_pb2.HttpFilter(name=names.ROUTER, typed_config=pack(router_pb2.Router())),
    ]
    hcm = HCM(
        stat_prefix=names.stat_prefix(f"ingress_{port.service}_{port.target_port}"),
        codec_type=HCM.AUTO,
        rds=hcm_pb2.Rds(
            config_source=common.ads(),
            route_config_name=names.ingress_route_config(port.target_port),
        ),
        http_filters=filters,
    )
    tracing_xds.add_to(hcm, tracing)
    return hcm


def ingress_chain(
    port: IngressPort, tls: TlsSettings, tracing: Tracing | None = None
) -> listener_components_pb2.FilterChain:
    """The filter chain of one ingress port: the service's TCP local rate limit, if
    any, then the HTTP connection manager."""
    chain = listener_components_pb2.FilterChain(
        name=port.name, filter_chain_match=filter_chain_match(port)
    )
    if port.protocol == HTTPS:
        chain.transport_socket.CopyFrom(common.transport_socket(downstream_tls(port, tls)))
    limits = port.rate_limits
    if limits is not None and limits.tcp is not None:
        chain.filters.append(
            traffic.tcp_rate_limit_filter(limits.tcp, names.stat_prefix(port.name))
        )
    chain.filters.append(
        listener_components_pb2.Filter(
            name=names.HTTP_CONNECTION_MANAGER,
            typed_config=pack(http_connection_manager(port, tracing)),
        )
    )
    return chain


def listener_chains(
    inbound: InboundPolicy, tls: TlsSettings, context: Context, tracing: Tracing | None = None
) -> list[listener_components_pb2.FilterChain]:
    """The ingress chains of the inbound listener (`served` ports), memoized per port."""
    return [
        context.part(
            ("ingress-chain", port, tls, tracing),
            functools.partial(ingress_chain, port, tls, tracing),
        )
        for port in served(inbound)
    ]


# -- routes ------------------------------------------------------------------------------
def principals(rule: IngressRule) -> list[rbac_pb2.Principal]:
    if rule.principals is None:
        return [rbac_pb2.Principal(any=True)]
    return [
        rbac_pb2.Principal(
            authenticated=rbac_pb2.Principal.Authenticated(principal_name=common.exact(name))
        )
        for name in rule.principals
    ]


def rbac_per_route(rules: Sequence[IngressRule]) -> http_rbac_pb2.RBACPerRoute:
    """Allows a request when any rule's match and principals allow it."""
    config = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    for index, rule in enumerate(rules):
        if rule.principals is not None and not rule.principals:
            continue  # no principal may: the policy would be empty, which Envoy refuses
        policy = rbac_pb2.Policy(
            permissions=[common.permission(rule.match)], principals=principals(rule)
        )
        config.policies[f"ingress-rule-{index}"].CopyFrom(policy)
    return http_rbac_pb2.RBACPerRoute(rbac=http_rbac_pb2.RBAC(rules=config))


def ingress_route_configuration(port: IngressPort) -> route_pb2.RouteConfiguration:
    """``rds-ingress.<targetPort>``: one virtual host (``*``), a route per request match
    to the local cluster, each with the port's RBAC policy set; with the service's HTTP
    limits, first a route per ``httpRoutes`` path with its own limit, and the virtual
    host's limit."""
    host = traffic.local_virtual_host(
        names.ingress_virtual_host(port.target_port),
        names.local_cluster(port.service, port.port),
        (rule.match for rule in port.rules),
        pack(rbac_per_route(port.rules)),
        port.rate_limits,
    )
    return route_pb2.RouteConfiguration(
        name=names.ingress_route_config(port.target_port),
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        virtual_hosts=[host],
    )


def route_resources(inbound: InboundPolicy, context: Context) -> list[Built]:
    """``rds-ingress.<targetPort>`` of every `served` port, memoized per port."""
    return [
        context.memo.get(("rds-ingress", port), functools.partial(_built_routes, port))
        for port in served(inbound)
    ]


def _built_routes(port: IngressPort) -> Built:
    config = ingress_route_configuration(port)
    return build(ROUTE_TYPE, config.name, config)
