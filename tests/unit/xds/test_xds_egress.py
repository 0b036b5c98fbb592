"""Egress in xDS (`osm.xds.egress`): the builders' shapes as OSM's, every resource valid
by Envoy's rules and accepted by the Python sidecar, and an Egress change rebuilding only
its source's proxies, incrementally equal to a full build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from osm.base.wellknown import CLUSTER_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE
from osm.catalog.ids import ProxyId
from osm.catalog.policy import (
    EgressCluster,
    EgressHost,
    EgressMatch,
    EgressPolicy,
    EgressRoute,
    RequestMatch,
)
from osm.catalog.state import MeshState
from osm.model.meta import ObjectRef
from osm.model.policy import ConnectionSettings, HTTPConnectionSettings, TCPConnectionSettings
from osm.xds import egress, validation
from osm.xds.context import Context
from osm.xds.generator import Generator, build_snapshots
from tests.unit.catalog import meshes as m
from tests.unit.xds import envoy_validate, xds_support
from tests.unit.xds.test_xds_snapshot import (
    all_problems,
    check_against_cold,
    python_sidecar_accepts,
)

WEB = ProxyId("shop", "web-0")


def chain_match(match: EgressMatch) -> dict[str, Any]:
    chain = egress.filter_chain(match)
    found = chain.filter_chain_match
    return {
        "name": chain.name,
        "port": found.destination_port.value,
        "ranges": [f"{r.address_prefix}/{r.prefix_len.value}" for r in found.prefix_ranges],
        "server_names": list(found.server_names),
        "application_protocols": list(found.application_protocols),
        "filter": chain.filters[0].name,
    }


HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
CHAINS = [
    (
        "http: by port and the HTTP inspector's protocols, to the HCM of rds-egress.<port>",
        EgressMatch(80, "http"),
        {"name": "egress-http.80", "port": 80, "ranges": [], "server_names": [],
         "application_protocols": ["http/1.0", "http/1.1", "h2c"], "filter": HCM},
    ),
    (
        "https: by port, SNI and address ranges, to tcp_proxy",
        EgressMatch(443, "https", ("1.2.3.0/24",), ("a.example",), "443"),
        {"name": "egress-https.443", "port": 443, "ranges": ["1.2.3.0/24"],
         "server_names": ["a.example"], "application_protocols": [], "filter": TCP_PROXY},
    ),
    (
        "tcp-server-first: by port and address ranges, to tcp_proxy",
        EgressMatch(25, "tcp-server-first", ("10.0.0.0/8",), (), "25"),
        {"name": "egress-tcp-server-first.25", "port": 25, "ranges": ["10.0.0.0/8"],
         "server_names": [], "application_protocols": [], "filter": TCP_PROXY},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "match", "expected"), CHAINS, ids=[c[0] for c in CHAINS])
def test_filter_chains(spec: str, match: EgressMatch, expected: dict[str, Any]) -> None:
    assert chain_match(match) == expected


def enabled_ranges(listener_filter: Any) -> list[tuple[int, int]]:
    """The [start, end) port ranges a listener filter runs on (its complement in [1, 65536)
    of its ``filter_disabled`` ranges)."""
    predicate = listener_filter.filter_disabled
    rules = list(predicate.or_match.rules) or ([predicate] if predicate.ByteSize() else [])
    enabled, start = [], 1
    for rule in rules:
        port_range = rule.destination_port_range
        if port_range.start > start:
            enabled.append((start, port_range.start))
        start = port_range.end
    if start < 65536:
        enabled.append((start, 65536))
    return enabled


TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
INSPECTORS = [
    ("each inspector runs on its ports only", ([443], [80, 8080]),
     {TLS_INSPECTOR: [(443, 444)], HTTP_INSPECTOR: [(80, 81), (8080, 8081)]}),
    ("no TLS port: no TLS inspector", ([], [80]), {HTTP_INSPECTOR: [(80, 81)]}),
    ("no port at all: no inspector", ([], []), {}),
    ("the first and the last port", ([1, 65535], [2]),
     {TLS_INSPECTOR: [(1, 2), (65535, 65536)], HTTP_INSPECTOR: [(2, 3)]}),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "ports", "expected"), INSPECTORS, ids=[c[0] for c in INSPECTORS])
def test_inspectors_run_only_on_their_ports(
    spec: str, ports: tuple[list[int], list[int]], expected: dict[str, list[tuple[int, int]]]
) -> None:
    filters = egress.listener_filters(*ports)
    assert {f.name: enabled_ranges(f) for f in filters} == expected


def test_an_inspector_on_every_port_has_no_filter_disabled() -> None:
    (everywhere,) = egress.listener_filters([], range(1, 65536))
    assert not everywhere.HasField("filter_disabled")


INSPECTED = [
    ("http: the HTTP inspector, tcp: none", [EgressMatch(80, "http"), EgressMatch(5432, "tcp")],
     [], (set(), {80})),
    ("https by SNI: the TLS inspector", [EgressMatch(443, "https", (), ("a.example",), "443")],
     [], ({443}, set())),
    ("https by address only: none", [EgressMatch(443, "https", ("1.2.3.0/24",), (), "443")],
     [], (set(), set())),
    ("server-first ports are never inspected (mesh or egress)",
     [EgressMatch(80, "http"), EgressMatch(8080, "http"),
      EgressMatch(25, "tcp-server-first", ("10.0.0.0/8",), (), "25")],
     [8080], (set(), {80})),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "matches", "mesh_server_first", "expected"), INSPECTED, ids=[c[0] for c in INSPECTED]
)
def test_inspected_ports(
    spec: str,
    matches: list[EgressMatch],
    mesh_server_first: list[int],
    expected: tuple[set[int], set[int]],
) -> None:
    policy = EgressPolicy(tuple(matches))
    skip = [*egress.server_first_ports(policy), *mesh_server_first]
    assert egress.inspected_ports(egress.filter_chains(policy), skip) == expected


LIMITS = ConnectionSettings(
    TCPConnectionSettings(max_connections=10, connect_timeout=2.5),
    HTTPConnectionSettings(max_requests=20, max_pending_requests=5, max_retries=1),
)
CLUSTERS = [
    (
        "a host cluster is STRICT_DNS to host:port (c-ares reads /etc/hosts)",
        EgressCluster("a.example:80", "a.example", 80),
        {"type": "STRICT_DNS", "lb": "ROUND_ROBIN", "address": ("a.example", 80),
         "timeout": 1.0, "breakers": None},
    ),
    (
        "a port cluster goes to the original destination",
        EgressCluster("443", "", 443),
        {"type": "ORIGINAL_DST", "lb": "CLUSTER_PROVIDED", "address": None, "timeout": 1.0,
         "breakers": None},
    ),
    (
        "an UpstreamTrafficSetting sets the thresholds and the connect timeout",
        EgressCluster("443", "", 443, LIMITS),
        {"type": "ORIGINAL_DST", "lb": "CLUSTER_PROVIDED", "address": None, "timeout": 2.5,
         "breakers": {"max_connections": 10, "max_requests": 20, "max_pending_requests": 5,
                      "max_retries": 1, "track_remaining": True}},
    ),
    (
        "what a setting leaves unset is OSM's 2^32-1, as for mesh clusters",
        EgressCluster("443", "", 443, ConnectionSettings(TCPConnectionSettings())),
        {"type": "ORIGINAL_DST", "lb": "CLUSTER_PROVIDED", "address": None, "timeout": 1.0,
         "breakers": {"max_connections": 2**32 - 1, "max_requests": 2**32 - 1,
                      "max_pending_requests": 2**32 - 1, "max_retries": 2**32 - 1,
                      "track_remaining": True}},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "given", "expected"), CLUSTERS, ids=[c[0] for c in CLUSTERS])
def test_clusters(spec: str, given: EgressCluster, expected: dict[str, Any]) -> None:
    cluster = egress.cluster(given)
    endpoints = cluster.load_assignment.endpoints
    address = (
        (
            endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address,
            endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value,
        )
        if endpoints
        else None
    )
    thresholds = cluster.circuit_breakers.thresholds
    assert {
        "type": cluster_pb2.Cluster.DiscoveryType.Name(cluster.type),
        "lb": cluster_pb2.Cluster.LbPolicy.Name(cluster.lb_policy),
        "address": address,
        "timeout": cluster.connect_timeout.ToNanoseconds() / 1e9,
        "breakers": {f.name: getattr(v, "value", v) for f, v in thresholds[0].ListFields()}
        if thresholds
        else None,
    } == expected
    assert cluster.name == given.name
    assert validation.validate(cluster) == []


def test_route_configuration_has_a_virtual_host_per_host() -> None:
    get = RequestMatch("/get", ("GET",))
    hosts = (
        EgressHost("a.example", 80, (EgressRoute(get, "a.example:80"),)),
        EgressHost("b.example", 80, ()),
    )
    config = egress.route_configuration(80, hosts)
    assert config.name == "rds-egress.80"
    assert [(h.name, list(h.domains), len(h.routes)) for h in config.virtual_hosts] == [
        ("egress_virtual-host|a.example", ["a.example", "a.example:80"], 1),
        ("egress_virtual-host|b.example", ["b.example", "b.example:80"], 0),
    ]
    route = config.virtual_hosts[0].routes[0]
    assert route.route.cluster == "a.example:80" and route.match.safe_regex.regex == "/get"
    assert validation.validate(config) == []


def test_resources_are_memoized_on_the_values_they_read() -> None:
    policy = EgressPolicy(
        (EgressMatch(80, "http"),),
        (EgressHost("a.example", 80, (EgressRoute(RequestMatch(), "a.example:80"),)),),
        (EgressCluster("a.example:80", "a.example", 80),),
    )
    context = Context()
    first = egress.resources(policy, context)
    assert [(b.type_url, b.name) for b in first] == [
        (ROUTE_TYPE, "rds-egress.80"),
        (CLUSTER_TYPE, "a.example:80"),
    ]
    # Equal values (origins are provenance only) give the very same resources.
    again = EgressPolicy(policy.matches, policy.http_hosts, policy.clusters)
    assert all(a is b for a, b in zip(first, egress.resources(again, context), strict=True))
    assert egress.resources(None, context) == []


# -- the egress mesh ---------------------------------------------------------------------
def test_egress_mesh_resources_are_valid_consistent_and_accepted_by_the_python_sidecar() -> None:
    built = build_snapshots(xds_support.egress_mesh())
    assert not built.errors and not built.warnings
    assert all_problems(built) == []
    for snapshot in built.snapshots.values():
        python_sidecar_accepts(snapshot)


def outbound_listener(built: Any, proxy: ProxyId) -> listener_pb2.Listener:
    message = built.snapshots[proxy].of_type(LISTENER_TYPE)["outbound-listener"].message
    assert isinstance(message, listener_pb2.Listener)
    return message


def test_only_the_egress_source_gets_egress_chains_and_inspectors() -> None:
    built = build_snapshots(xds_support.egress_mesh())
    web = outbound_listener(built, WEB)
    worker = outbound_listener(built, ProxyId("shop", "worker-0"))
    assert [c.name for c in web.filter_chains if c.name.startswith("egress-")] == [
        "egress-tcp-server-first.25",
        "egress-http.80",
        "egress-https.443",
        "egress-tcp.5432",
        "egress-http.8080",
    ]
    assert web.continue_on_listener_filters_timeout
    inspectors = {f.name: enabled_ranges(f) for f in web.listener_filters[1:]}
    # https by SNI on 443; http on 80 and 8080; not on tcp 5432, server-first 25 or 3306
    assert inspectors == {TLS_INSPECTOR: [(443, 444)], HTTP_INSPECTOR: [(80, 81), (8080, 8081)]}
    assert [c.name for c in worker.filter_chains] == ["outbound_shop/api_80_http"]
    assert [f.name for f in worker.listener_filters] == ["envoy.filters.listener.original_dst"]
    assert not worker.HasField("default_filter_chain") and not web.HasField("default_filter_chain")


def test_with_mesh_wide_egress_the_passthrough_is_all_there_is() -> None:
    """enableEgress on: Egress objects are moot, the default chain passes everything."""
    state = xds_support.egress_mesh()
    after, _ = state.with_changes(upserts=m.parse(m.mesh_config(permissive=False, egress=True)))
    web = outbound_listener(build_snapshots(after), WEB)
    assert not [c.name for c in web.filter_chains if c.name.startswith("egress-")]
    assert [f.name for f in web.listener_filters] == ["envoy.filters.listener.original_dst"]
    assert web.default_filter_chain.name == "outbound-egress-filter-chain"


EGRESS_CHANGES = [
    (
        "an Egress's ports change",
        [
            {
                "apiVersion": xds_support.POLICY_API,
                "kind": "Egress",
                "metadata": {"name": "smtp", "namespace": "shop"},
                "spec": {
                    "sources": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}],
                    "ipAddresses": ["10.20.0.0/16"],
                    "ports": [{"number": 5433, "protocol": "tcp"}],
                },
            }
        ],
        [],
    ),
    ("an Egress is deleted", [], [ObjectRef("Egress", "shop", "httpbin")]),
    ("every Egress is deleted", [], [
        ObjectRef("Egress", "shop", name) for name in ("httpbin", "httpbin-alt", "smtp")
    ]),
    (
        "the HTTPRouteGroup an Egress names changes",
        [m.route_group("shop", "httpbin-get", [{"name": "any", "pathRegex": "/anything/.*"}])],
        [],
    ),
    ("the HTTPRouteGroup an Egress names is deleted", [],
     [ObjectRef("HTTPRouteGroup", "shop", "httpbin-get")]),
    ("the UpstreamTrafficSetting an Egress names is deleted", [],
     [ObjectRef("UpstreamTrafficSetting", "shop", "httpbin-limits")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("upserts", "deletes"), [pytest.param(u, d, id=i) for i, u, d in EGRESS_CHANGES]
)
def test_an_egress_change_rebuilds_only_its_source(
    upserts: list[m.Doc], deletes: list[ObjectRef]
) -> None:
    state = xds_support.egress_mesh()
    generator = Generator()
    first = generator.build(state)
    after, changed = state.with_changes(upserts=m.parse(*upserts), deletes=deletes)
    built = generator.build(after, changed)
    assert built.stats.classes_recomputed == 1
    assert built.changed == {WEB}
    for proxy_id, snapshot in built.snapshots.items():
        if proxy_id != WEB:
            before = first.snapshots[proxy_id]
            assert all(
                snapshot.resources.types[url] is before.resources.types[url] for url in PUSH_ORDER
            )
    check_against_cold(first, built, after)
    assert all_problems(built) == []


# -- real Envoy --------------------------------------------------------------------------
def merged_egress_mesh() -> MeshState:
    """The egress mesh and Egresses the catalog must merge: a second one for httpbin.org
    on 80 (one virtual host), tcp and tcp-server-first on 5432 with the same range (one
    kept), https on 443 without hosts and by address (the union takes every name)."""

    def extra(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        sources = [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}]
        return {
            "apiVersion": xds_support.POLICY_API,
            "kind": "Egress",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"sources": sources, **spec},
        }

    state = xds_support.egress_mesh()
    docs = [
        extra("more-httpbin", {"hosts": ["httpbin.org", "example.org"],
                               "ports": [{"number": 80, "protocol": "http"}]}),
        extra("pg", {"ipAddresses": ["10.20.0.0/16"],
                     "ports": [{"number": 5432, "protocol": "tcp-server-first"}]}),
        extra("tls-by-address", {"ipAddresses": ["198.51.100.0/24"],
                                 "ports": [{"number": 443, "protocol": "https"}]}),
    ]  # fmt: skip
    after, _ = state.with_changes(upserts=m.parse(*docs))
    return after


@pytest.mark.skipif(envoy_validate.ENVOY is None, reason=envoy_validate.SKIP_REASON)
@pytest.mark.parametrize(
    "mesh", [xds_support.egress_mesh, merged_egress_mesh], ids=["egress", "merged-egress"]
)
def test_envoy_accepts_every_proxy_of_the_egress_meshes(
    mesh: Callable[[], MeshState], tmp_path: Path
) -> None:
    built = build_snapshots(mesh())
    assert not built.errors
    assert envoy_validate.envoy_rejects(built, tmp_path) == []
    for snapshot in built.snapshots.values():
        python_sidecar_accepts(snapshot)
