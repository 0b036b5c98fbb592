"""Ingress chains and routes (`osm.xds.ingress`): their shape, how they sit beside the mesh
chains, real Envoy's verdict, and incremental builds.

The mesh is `xds_support.ingress_mesh`: ``b/server`` serves 80 -> 8080 and 443 -> 8443;
the controller ``ingress/nginx`` (10.1.0.5, outside the mesh) reaches 8080 in plaintext
and 8443 over TLS naming the mesh's own server name for ``server``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from osm.base.identity import Identity
from osm.base.wellknown import LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import (
    InboundPolicy,
    InboundPort,
    InboundRule,
    IngressPort,
    IngressRule,
    RateLimits,
    RequestMatch,
    RouteRateLimit,
    TlsSettings,
)
from osm.catalog.state import MeshState
from osm.model.meta import ObjectRef
from osm.model.policy import HTTPLocalRateLimit, TCPLocalRateLimit
from osm.xds import ingress, lds, names, validation
from osm.xds.context import Context
from osm.xds.generator import Generator, build_snapshots
from osm.xds.snapshot import Snapshot, Snapshots
from tests.unit.catalog import meshes as m
from tests.unit.xds import envoy_validate, xds_support

SERVER = ServiceId("b", "server")
OTHER = ServiceId("b", "other")
FQDN = SERVER.fqdn
TLS = TlsSettings()
ANY = (IngressRule(RequestMatch()),)


def ingress_port(protocol: str = "http", **fields: Any) -> IngressPort:
    fields.setdefault("rules", ANY)
    fields.setdefault("source_ip_ranges", ("10.1.0.5/32",))
    fields.setdefault("port", 80)
    return IngressPort(fields.pop("service", SERVER), 8080, protocol, **fields)


def mesh_port(service: ServiceId = SERVER, port: int = 80, target: int = 8080) -> InboundPort:
    return InboundPort(service, port, target, "http", None, (InboundRule(RequestMatch(), None),))


def dict_of(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


# -- the chain ----------------------------------------------------------------------------
CHAINS = [
    pytest.param(
        ingress_port(),
        {
            "destinationPort": 8080,
            "transportProtocol": "raw_buffer",
            "sourcePrefixRanges": [{"addressPrefix": "10.1.0.5", "prefixLen": 32}],
        },
        None,
        id="http: plaintext from the source ranges",
    ),
    pytest.param(
        ingress_port("https", server_names=("web.example.com",)),
        {
            "destinationPort": 8080,
            "transportProtocol": "tls",
            "serverNames": ["web.example.com"],
            "sourcePrefixRanges": [{"addressPrefix": "10.1.0.5", "prefixLen": 32}],
        },
        True,
        id="https: TLS with the SNI hosts, client certificate required and validated",
    ),
    pytest.param(
        ingress_port("https", source_ip_ranges=(), skip_client_cert_validation=True),
        {"destinationPort": 8080, "transportProtocol": "tls"},
        False,
        id="https skipping client certificate validation: none asked, none checked",
    ),
    pytest.param(
        ingress_port(source_ip_ranges=("192.168.0.0/16", "fd00::/8")),
        {
            "destinationPort": 8080,
            "transportProtocol": "raw_buffer",
            "sourcePrefixRanges": [
                {"addressPrefix": "192.168.0.0", "prefixLen": 16},
                {"addressPrefix": "fd00::", "prefixLen": 8},
            ],
        },
        None,
        id="ranges of both families",
    ),
]


@pytest.mark.parametrize(("port", "match", "validated"), CHAINS)
def test_ingress_chain(port: IngressPort, match: dict[str, Any], validated: bool | None) -> None:
    chain = ingress.ingress_chain(port, TLS)
    assert chain.name == port.name
    assert dict_of(chain.filter_chain_match) == match
    if validated is None:
        assert not chain.HasField("transport_socket")
    else:
        context = tls_pb2.DownstreamTlsContext()
        chain.transport_socket.typed_config.Unpack(context)
        common = context.common_tls_context
        assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["service-cert"]
        assert context.require_client_certificate.value is validated
        assert common.HasField("validation_context_sds_secret_config") is validated
        if validated:
            assert common.validation_context_sds_secret_config.name == names.ROOT_CERT_INBOUND
    hcm = hcm_pb2.HttpConnectionManager()
    chain.filters[-1].typed_config.Unpack(hcm)
    assert hcm.rds.route_config_name == "rds-ingress.8080"
    assert [f.name for f in hcm.http_filters] == [
        names.HTTP_RBAC,
        names.HTTP_LOCAL_RATE_LIMIT,
        names.ROUTER,
    ]
    assert validation.validate(chain_listener(chain)) == []


def chain_listener(chain: listener_components_pb2.FilterChain) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(name="l")
    listener.address.socket_address.address = "0.0.0.0"
    listener.address.socket_address.port_value = 15003
    listener.filter_chains.append(chain)
    return listener


LIMITED = RateLimits(
    tcp=TCPLocalRateLimit(connections=10, unit="second"),
    http=HTTPLocalRateLimit(requests=5, unit="minute"),
    routes=(RouteRateLimit("/slow", HTTPLocalRateLimit(requests=1, unit="second")),),
)


def test_the_service_rate_limits_apply_to_its_ingress_as_on_its_mesh_chains() -> None:
    """TCP limit before the connection manager; the HTTP limit filter after RBAC; the
    virtual host's limit; a route per ``httpRoutes`` path first, with its own."""
    port = dataclasses.replace(ingress_port(), rate_limits=LIMITED)
    chain = ingress.ingress_chain(port, TLS)
    assert [f.name for f in chain.filters] == [
        names.NETWORK_LOCAL_RATE_LIMIT,
        names.HTTP_CONNECTION_MANAGER,
    ]
    hcm = hcm_pb2.HttpConnectionManager()
    chain.filters[-1].typed_config.Unpack(hcm)
    assert [f.name for f in hcm.http_filters] == [
        names.HTTP_RBAC,
        names.HTTP_LOCAL_RATE_LIMIT,
        names.ROUTER,
    ]
    config = ingress.ingress_route_configuration(port)
    host = config.virtual_hosts[0]
    assert names.HTTP_LOCAL_RATE_LIMIT in host.typed_per_filter_config
    first, *rest = host.routes
    assert first.match.safe_regex.regex == "/slow"
    assert set(first.typed_per_filter_config) == {names.HTTP_RBAC, names.HTTP_LOCAL_RATE_LIMIT}
    assert rest and all(set(r.typed_per_filter_config) == {names.HTTP_RBAC} for r in rest)


def test_without_limits_the_chain_is_the_same_but_for_the_tcp_limit() -> None:
    """The HTTP limit filter stays (bucketless: it limits nothing without a route's or a
    virtual host's config), so HTTP limits change RDS only; the routes carry none."""
    unlimited = ingress.ingress_chain(ingress_port(), TLS)
    only_http = dataclasses.replace(LIMITED, tcp=None)
    limited = ingress.ingress_chain(dataclasses.replace(ingress_port(), rate_limits=only_http), TLS)
    assert [f.name for f in unlimited.filters] == [names.HTTP_CONNECTION_MANAGER]
    assert unlimited == limited
    hcm = hcm_pb2.HttpConnectionManager()
    unlimited.filters[-1].typed_config.Unpack(hcm)
    assert [f.name for f in hcm.http_filters] == [
        names.HTTP_RBAC,
        names.HTTP_LOCAL_RATE_LIMIT,
        names.ROUTER,
    ]
    host = ingress.ingress_route_configuration(ingress_port()).virtual_hosts[0]
    assert names.HTTP_LOCAL_RATE_LIMIT not in host.typed_per_filter_config
    assert all(names.HTTP_LOCAL_RATE_LIMIT not in r.typed_per_filter_config for r in host.routes)


# -- which ports get a chain, and the mesh chains beside them ------------------------------
SERVED = [
    pytest.param((mesh_port(),), (ingress_port(),), [SERVER], id="its service port is served"),
    pytest.param(
        (mesh_port(port=81),), (ingress_port(),), [], id="its service port is not: no cluster"
    ),
    pytest.param((), (ingress_port(),), [], id="no mesh port at all"),
    pytest.param(
        (mesh_port(), mesh_port(OTHER)),
        (ingress_port(), ingress_port(service=OTHER)),
        [SERVER],
        id="two services' ingress on one target port: the first",
    ),
]


@pytest.mark.parametrize(("ports", "admitted", "expected"), SERVED)
def test_served(
    ports: tuple[InboundPort, ...], admitted: tuple[IngressPort, ...], expected: list[ServiceId]
) -> None:
    inbound = InboundPolicy(Identity("b", "server"), ports, admitted)
    assert [p.service for p in ingress.served(inbound)] == expected


ALPN = [
    pytest.param(ingress_port(), set(), id="http: plaintext never meets the mesh's TLS"),
    pytest.param(
        ingress_port("https", server_names=("web.example.com",)),
        set(),
        id="https with other server names: Envoy tells them apart by SNI",
    ),
    pytest.param(ingress_port("https"), set(), id="https with any server name: the catch-all"),
    pytest.param(
        ingress_port("https", server_names=(FQDN.upper(),)),
        {8080},
        id="https sharing the mesh's server name: the mesh chain matches ALPN osm",
    ),
]


@pytest.mark.parametrize(("port", "expected"), ALPN)
def test_mesh_alpn_ports(port: IngressPort, expected: set[int]) -> None:
    inbound = InboundPolicy(Identity("b", "server"), (mesh_port(),), (port,))
    assert ingress.mesh_alpn_ports(inbound) == expected


def test_the_inbound_listener_holds_the_mesh_chains_then_the_ingress_chains() -> None:
    inbound = InboundPolicy(Identity("b", "server"), (mesh_port(),), (ingress_port(),))
    listener = lds.inbound_listener(inbound, TLS, "cluster.local", Context())
    assert listener is not None
    assert [c.name for c in listener.filter_chains] == [
        "inbound_b/server_8080_http",
        "ingress_b/server_8080_http",
    ]
    empty = InboundPolicy(Identity("b", "server"), (), ())
    assert lds.inbound_listener(empty, TLS, "cluster.local", Context()) is None


# -- routes ---------------------------------------------------------------------------------
def test_routes_lead_to_the_local_cluster_each_with_every_rule() -> None:
    books = RequestMatch("/books/.*", ("GET",))
    port = ingress_port(
        "https",
        rules=(IngressRule(books, ("nginx.ingress.cluster.local",)), IngressRule(books, ())),
    )
    config = ingress.ingress_route_configuration(port)
    assert config.name == "rds-ingress.8080"
    (host,) = config.virtual_hosts
    assert list(host.domains) == ["*"]
    assert len(host.routes) == 1  # one route per distinct match
    route = host.routes[0]
    assert route.route.cluster == "b/server|80|local"
    per_route = http_rbac_pb2.RBACPerRoute()
    route.typed_per_filter_config[names.HTTP_RBAC].Unpack(per_route)
    policies = dict_of(per_route)["rbac"]["rules"]["policies"]
    assert list(policies) == ["ingress-rule-0"]  # the rule no principal may send is left out
    assert policies["ingress-rule-0"]["principals"] == [
        {"authenticated": {"principalName": {"exact": "nginx.ingress.cluster.local"}}}
    ]
    assert validation.validate(config) == []


def test_http_routes_allow_any_principal() -> None:
    config = ingress.ingress_route_configuration(ingress_port())
    per_route = http_rbac_pb2.RBACPerRoute()
    config.virtual_hosts[0].routes[0].typed_per_filter_config[names.HTTP_RBAC].Unpack(per_route)
    (policy,) = dict_of(per_route)["rbac"]["rules"]["policies"].values()
    assert policy == {"permissions": [{"any": True}], "principals": [{"any": True}]}


# -- the whole mesh ---------------------------------------------------------------------------
def server_listener(built: Snapshots) -> listener_pb2.Listener:
    snapshot = built.snapshots[ProxyId("b", "server-0")]
    message = snapshot.of_type(LISTENER_TYPE)[names.INBOUND_LISTENER].message
    assert isinstance(message, listener_pb2.Listener)
    return message


@pytest.mark.parametrize("permissive", [True, False], ids=["permissive", "smi"])
def test_the_mesh_builds_checked_resources(permissive: bool) -> None:
    built = build_snapshots(xds_support.ingress_mesh(permissive=permissive))
    assert not built.errors
    routes = built.snapshots[ProxyId("b", "server-0")].of_type(ROUTE_TYPE)
    assert {"rds-ingress.8080", "rds-ingress.8443"} <= set(routes)
    for snapshot in built.snapshots.values():
        for url in (LISTENER_TYPE, ROUTE_TYPE):
            for resource in snapshot.of_type(url).values():
                assert validation.validate(resource.message) == [], resource.name


needs_envoy = pytest.mark.skipif(envoy_validate.ENVOY is None, reason=envoy_validate.SKIP_REASON)


def principal_only(state: MeshState) -> MeshState:
    """``server-https`` with only its AuthenticatedPrincipal source: the ingress chain on
    8443 then matches exactly what the mesh chain does but for ALPN."""
    backend = m.ingress_backend(
        "b",
        "server-https",
        [
            {
                "name": "server",
                "port": {"number": 8443, "protocol": "https"},
                "tls": {"skipClientCertValidation": False, "sniHosts": [FQDN]},
            }
        ],
        [{"kind": "AuthenticatedPrincipal", "name": xds_support.INGRESS_PRINCIPAL}],
    )
    return state.with_changes(upserts=m.parse(backend))[0]


@needs_envoy
@pytest.mark.parametrize("permissive", [True, False], ids=["permissive", "smi"])
def test_envoy_accepts_every_proxy(permissive: bool, tmp_path: Path) -> None:
    built = build_snapshots(xds_support.ingress_mesh(permissive=permissive))
    assert envoy_validate.envoy_rejects(built, tmp_path) == []


@needs_envoy
def test_envoy_accepts_an_ingress_chain_told_from_the_mesh_chain_by_alpn_only(
    tmp_path: Path,
) -> None:
    """The ingress and mesh chains of 8443 share port, server name and transport; the
    mesh chain's ALPN ``osm`` is all that tells them apart, and without it Envoy refuses
    the listener (the control): the ALPN is needed, not decoration."""
    built = build_snapshots(principal_only(xds_support.ingress_mesh(permissive=True)))
    listener = server_listener(built)
    chains = {c.name: c.filter_chain_match for c in listener.filter_chains}
    assert not chains["ingress_b/server_8443_https"].source_prefix_ranges
    assert list(chains["inbound_b/server_8443_http"].application_protocols) == ["osm"]
    assert envoy_validate.envoy_rejects(built, tmp_path) == []

    snapshot = built.snapshots[ProxyId("b", "server-0")]
    bootstrap = envoy_validate.static_bootstrap(snapshot)
    for static in bootstrap.static_resources.listeners:
        for chain in static.filter_chains:
            del chain.filter_chain_match.application_protocols[:]
    path = tmp_path / "no-alpn.json"
    path.write_text(json_format.MessageToJson(bootstrap))
    verdict = envoy_validate.validate("no-alpn", path)
    assert "duplicate matcher" in verdict or "multiple filter chains" in verdict, verdict


@needs_envoy
def test_envoy_accepts_repeated_sni_hosts_and_nested_ranges(tmp_path: Path) -> None:
    """Sources and SNI hosts as users write them: one name in two spellings, a range
    inside another, one range twice."""
    backend = m.ingress_backend(
        "b",
        "server-https",
        [
            {
                "name": "server",
                "port": {"number": 8443, "protocol": "https"},
                "tls": {"skipClientCertValidation": True, "sniHosts": ["a.example", "A.example"]},
            }
        ],
        [
            {"kind": "IPRange", "name": cidr}
            for cidr in ("10.0.0.0/8", "10.1.0.0/16", "10.1.0.0/16")
        ],
    )
    state = xds_support.ingress_mesh(permissive=True).with_changes(upserts=m.parse(backend))[0]
    assert envoy_validate.envoy_rejects(build_snapshots(state), tmp_path) == []


# -- incremental ----------------------------------------------------------------------------
def versions(built: Snapshots) -> dict[ProxyId, dict[str, str]]:
    return {p: s.resources.versions() for p, s in built.snapshots.items()}


NARROWED = m.ingress_backend(
    "b",
    "server-http",
    [{"name": "server", "port": {"number": 8080, "protocol": "http"}}],
    [{"kind": "IPRange", "name": "192.168.7.0/24"}],
)
NGINX_MOVED = m.pod("ingress", "nginx-0", {"app": "nginx"}, "nginx", "10.1.0.9")
CHANGES = [
    pytest.param([NARROWED], [], id="an IngressBackend changes"),
    pytest.param([], [ObjectRef("IngressBackend", "b", "server-https")], id="one is deleted"),
    pytest.param([NGINX_MOVED], [], id="a source Service's pod moves"),
    pytest.param(
        [m.route_group("b", "ingress-routes", [{"name": "all", "pathRegex": "/.*"}])],
        [],
        id="its HTTPRouteGroup changes",
    ),
]


@pytest.mark.parametrize(("upserts", "deletes"), CHANGES)
@pytest.mark.parametrize("permissive", [True, False], ids=["permissive", "smi"])
def test_a_change_rebuilds_the_backend_only_and_equals_a_cold_build(
    permissive: bool, upserts: list[m.Doc], deletes: list[ObjectRef]
) -> None:
    generator = Generator()
    state = xds_support.ingress_mesh(permissive=permissive)
    before = generator.build(state)
    after, changed = state.with_changes(upserts=m.parse(*upserts), deletes=deletes)
    incremental = generator.build(after, changed)
    assert incremental.changed == {ProxyId("b", "server-0")}
    assert versions(incremental) == versions(build_snapshots(after))
    client = ProxyId("a", "client-0")
    assert versions(incremental)[client] == versions(before)[client]
    old = digests(before.snapshots[ProxyId("b", "server-0")])
    new = digests(incremental.snapshots[ProxyId("b", "server-0")])
    differing = {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
    assert differing and differing <= {
        names.INBOUND_LISTENER,
        "rds-ingress.8080",
        "rds-ingress.8443",
    }


def digests(snapshot: Snapshot) -> dict[str, str]:
    """Each resource's digest by name (names are unique across types here)."""
    return {
        name: built.digest for url in PUSH_ORDER for name, built in snapshot.of_type(url).items()
    }
