"""Egress: the Envoy configuration of what Egress objects let a client reach outside the
mesh (`osm.catalog.policy.EgressPolicy`), as OSM builds it.

The one idea: an `EgressPolicy` is enough to build every egress resource, and nothing
else is read, so the outbound layers that hold them are memoized on it
(`osm.xds.layers.upstream_layer`). Pieces, names from `osm.xds.names`:

* filter chains on the outbound listener (`filter_chains`), one per `EgressMatch`,
  named ``egress-<protocol>.<port>``: http by destination port and the application
  protocols ``http/1.0``, ``http/1.1``, ``h2c`` (from the HTTP inspector) to an HCM
  reading ``rds-egress.<port>``; https by port, SNI and address ranges, tcp and
  tcp-server-first by port and address ranges, to a tcp_proxy on cluster ``<port>``;
* the listener filters these need (`listener_filters`), each only on the destination
  ports where a chain matches what it reports (`inspected_ports`): the HTTP inspector
  where a chain matches ``application_protocols`` (http egress ports), the TLS
  inspector where one matches ``server_names`` (https egress ports). Mesh chains match
  by address and port only, so no other port waits for an inspector: a client that
  sends a few bytes without a newline to a tcp port would otherwise wait for the HTTP
  inspector until the listener filter timeout (15 s). An inspector is turned off on
  every other port by ``filter_disabled``, the complement of its ports as
  ``destination_port_range``s over [1, 65536) (`only_on`), and left out when no port
  needs it. Ports of server-first protocols (mesh or egress), where the client sends
  nothing until the server has spoken, are never inspected. With an inspector the
  listener goes on after its timeout (`CONTINUE_ON_INSPECTOR_TIMEOUT`), as OSM's does.
  (Envoy 1.40 injects no TLS inspector of its own into a listener whose chains match
  server names or application protocols; checked with a static listener.)
* ``rds-egress.<port>`` (`route_configuration`): a virtual host per host, domains host
  and host:port, its routes to cluster ``<host>:<port>`` (no route: Envoy answers 404);
* clusters (`cluster`): ``<host>:<port>`` STRICT_DNS to host:port, ``<port>``
  ORIGINAL_DST; circuit breakers and the connect timeout from the UpstreamTrafficSetting
  an Egress names (`osm.xds.traffic.apply_connection`, as for mesh clusters).

Name resolution: the HTTP clusters keep Envoy's default DNS resolver (c-ares). Checked
with Envoy 1.40 in a private mount and network namespace whose ``/etc/hosts`` alone
names the upstream and whose ``resolv.conf`` has no nameserver (a pod of the local
runtime, `osm.runtime.network`): a STRICT_DNS cluster resolved the name from
``/etc/hosts`` and proxied a request; so did the getaddrinfo resolver
(``envoy.network.dns_resolver.getaddrinfo``). c-ares reads the hosts file before asking
a nameserver, so no ``typed_dns_resolver_config`` is needed. The Python sidecar resolves
at connect time with the system resolver, which reads the same file.

Only with MeshConfig ``traffic.enableEgress`` off: with it on the catalog gives no
`EgressPolicy` and the listener keeps its passthrough default chain, untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from osm.base.wellknown import CLUSTER_TYPE, ROUTE_TYPE
from osm.catalog.policy import EgressCluster, EgressHost, EgressMatch, EgressPolicy
from osm.xds import common, names, traffic
from osm.xds import tracing as tracing_xds
from osm.xds.context import Context
from osm.xds.resources import Built, build, pack
from osm.xds.tracing import Tracing

HTTP = "http"
SERVER_FIRST = "tcp-server-first"
HTTP_APPLICATION_PROTOCOLS = ("http/1.0", "http/1.1", "h2c")
"""What the HTTP inspector reports for plaintext HTTP (h2 over TLS is proxied as TCP)."""
CONTINUE_ON_INSPECTOR_TIMEOUT = True
Cluster = cluster_pb2.Cluster
HCM = hcm_pb2.HttpConnectionManager


# -- the outbound listener ---------------------------------------------------------------
def filter_chains(
    policy: EgressPolicy, tracing: Tracing | None = None
) -> list[listener_components_pb2.FilterChain]:
    """One chain per match, in the policy's (port, protocol) order; HTTP ones carry the
    mesh's ``tracing``, if on."""
    return [filter_chain(match, tracing) for match in policy.matches]


def filter_chain(
    match: EgressMatch, tracing: Tracing | None = None
) -> listener_components_pb2.FilterChain:
    chain_match = listener_components_pb2.FilterChainMatch(
        destination_port=common.uint32(match.port),
        prefix_ranges=[_cidr(cidr) for cidr in match.ip_ranges],
        server_names=list(match.server_names),
    )
    stat = names.egress_stat_prefix(match.protocol, match.port)
    if match.protocol == HTTP:
        chain_match.application_protocols.extend(HTTP_APPLICATION_PROTOCOLS)
        hcm = HCM(
            stat_prefix=stat,
            codec_type=HCM.AUTO,
            rds=hcm_pb2.Rds(
                config_source=common.ads(),
                route_config_name=names.egress_route_config(match.port),
            ),
            http_filters=[
                hcm_pb2.HttpFilter(name=names.ROUTER, typed_config=pack(router_pb2.Router()))
            ],
        )
        tracing_xds.add_to(hcm, tracing)
        config: Message = hcm
        name = names.HTTP_CONNECTION_MANAGER
    else:
        config = tcp_proxy_pb2.TcpProxy(stat_prefix=stat, cluster=match.cluster)
        name = names.TCP_PROXY
    return listener_components_pb2.FilterChain(
        name=match.name,
        filter_chain_match=chain_match,
        filters=[listener_components_pb2.Filter(name=name, typed_config=pack(config))],
    )


def listener_filters(
    tls_ports: Iterable[int], http_ports: Iterable[int]
) -> list[listener_components_pb2.ListenerFilter]:
    """The TLS inspector on ``tls_ports`` only and the HTTP inspector on ``http_ports``
    only (``filter_disabled`` on every other port); an inspector without a port is left
    out."""
    result = []
    for name, config, ports in (
        (names.TLS_INSPECTOR, tls_inspector_pb2.TlsInspector(), tls_ports),
        (names.HTTP_INSPECTOR, http_inspector_pb2.HttpInspector(), http_ports),
    ):
        enabled = sorted(set(ports))
        if not enabled:
            continue
        listener_filter = listener_components_pb2.ListenerFilter(
            name=name, typed_config=pack(config)
        )
        disabled = only_on(enabled)
        if disabled is not None:
            listener_filter.filter_disabled.CopyFrom(disabled)
        result.append(listener_filter)
    return result


def inspected_ports(
    chains: Iterable[listener_components_pb2.FilterChain], server_first: Iterable[int]
) -> tuple[frozenset[int], frozenset[int]]:
    """(TLS, HTTP): the destination ports of the ``chains`` that match server names,
    and of those that match application protocols, less the ``server_first`` ports."""
    skip = set(server_first)
    tls: set[int] = set()
    http: set[int] = set()
    for chain in chains:
        match = chain.filter_chain_match
        port = match.destination_port.value
        if port in skip:
            continue
        if match.server_names:
            tls.add(port)
        if match.application_protocols:
            http.add(port)
    return frozenset(tls), frozenset(http)


def server_first_ports(policy: EgressPolicy) -> list[int]:
    return [match.port for match in policy.matches if match.protocol == SERVER_FIRST]


def add_to_listener(
    listener: listener_pb2.Listener,
    policy: EgressPolicy,
    mesh_server_first: Iterable[int],
    tracing: Tracing | None = None,
) -> None:
    """Adds the policy's chains to the outbound ``listener``, and the inspectors on the
    ports they need (never on ``mesh_server_first`` ports: mesh services whose protocol
    is server-first)."""
    chains = filter_chains(policy, tracing)
    listener.filter_chains.extend(chains)
    tls_ports, http_ports = inspected_ports(
        chains, [*server_first_ports(policy), *mesh_server_first]
    )
    inspectors = listener_filters(tls_ports, http_ports)
    if inspectors:
        listener.listener_filters.extend(inspectors)
        listener.continue_on_listener_filters_timeout = CONTINUE_ON_INSPECTOR_TIMEOUT


FIRST_PORT = 1
PORTS_END = 65536
"""Destination ports are in [FIRST_PORT, PORTS_END)."""


def only_on(
    ports: list[int],
) -> listener_components_pb2.ListenerFilterChainMatchPredicate | None:
    """The ``filter_disabled`` predicate of a listener filter that runs on the sorted
    ``ports`` only: the ``destination_port_range``s of every other port (None: every
    port is one of them)."""
    predicate = listener_components_pb2.ListenerFilterChainMatchPredicate
    rules = []
    start = FIRST_PORT
    for port in [*ports, PORTS_END]:
        if port > start:
            rules.append(
                predicate(destination_port_range=range_pb2.Int32Range(start=start, end=port))
            )
        start = max(start, port + 1)
    if not rules:
        return None
    if len(rules) == 1:
        return rules[0]
    return predicate(or_match=predicate.MatchSet(rules=rules))


def _cidr(cidr: str) -> address_pb2.CidrRange:
    address, _, length = cidr.partition("/")
    return address_pb2.CidrRange(address_prefix=address, prefix_len=common.uint32(int(length)))


# -- routes and clusters -----------------------------------------------------------------
def resources(policy: EgressPolicy | None, context: Context) -> list[Built]:
    """``rds-egress.<port>`` for each HTTP match and the egress clusters, memoized on
    the values each reads."""
    if policy is None:
        return []
    memo = context.memo
    result: list[Built] = []
    for match in policy.matches:
        if match.protocol == HTTP:
            hosts = policy.hosts_on(match.port)
            result.append(
                memo.get(
                    ("rds-egress", match.port, hosts),
                    functools.partial(_built_routes, match.port, hosts),
                )
            )
    for egress_cluster in policy.clusters:
        result.append(
            memo.get(
                ("cds-egress", egress_cluster), functools.partial(_built_cluster, egress_cluster)
            )
        )
    return result


def route_configuration(port: int, hosts: Iterable[EgressHost]) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=names.egress_route_config(port),
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=names.egress_virtual_host(host.host),
                domains=list(host.domains),
                routes=[
                    route_components_pb2.Route(
                        match=common.route_match(route.match),
                        route=route_components_pb2.RouteAction(
                            cluster=route.cluster, timeout=common.seconds(0)
                        ),
                    )
                    for route in host.routes
                ],
            )
            for host in hosts
        ],
    )


def cluster(egress_cluster: EgressCluster) -> cluster_pb2.Cluster:
    """``<host>:<port>`` resolved by DNS (see the module docstring), or ``<port>`` to
    the connection's original destination."""
    if egress_cluster.host:
        result = Cluster(
            name=egress_cluster.name,
            type=Cluster.STRICT_DNS,
            connect_timeout=common.seconds(common.CONNECT_TIMEOUT),
            lb_policy=Cluster.ROUND_ROBIN,
            load_assignment=common.single_endpoint(
                egress_cluster.name, egress_cluster.host, egress_cluster.port
            ),
        )
    else:
        result = Cluster(
            name=egress_cluster.name,
            type=Cluster.ORIGINAL_DST,
            connect_timeout=common.seconds(common.CONNECT_TIMEOUT),
            lb_policy=Cluster.CLUSTER_PROVIDED,
        )
    traffic.apply_connection(result, egress_cluster.connection, http=bool(egress_cluster.host))
    return result


def _built_routes(port: int, hosts: tuple[EgressHost, ...]) -> Built:
    config = route_configuration(port, hosts)
    return build(ROUTE_TYPE, config.name, config)


def _built_cluster(egress_cluster: EgressCluster) -> Built:
    result = cluster(egress_cluster)
    return build(CLUSTER_TYPE, result.name, result)
