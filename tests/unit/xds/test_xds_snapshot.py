"""Snapshots: every resource valid by Envoy's rules, sets consistent, identical resources
shared, incremental builds equal to full ones, and random meshes always consistent."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osm.base.identity import DataPlane, Identity
from osm.base.wellknown import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    SECRET_TYPE,
)
from osm.catalog.ids import ProxyId
from osm.catalog.state import MeshState
from osm.model.meta import ObjectRef
from osm.proxy import assembly
from osm.xds import layers, lds, names, rds, validation
from osm.xds.context import Context, Credentials, Settings
from osm.xds.generator import Generator, build_snapshots
from osm.xds.resources import build, pack
from osm.xds.snapshot import Snapshot, Snapshots, consistency_problems
from tests.unit.catalog import meshes as m
from tests.unit.xds import xds_support


def python_sidecar_accepts(snapshot: Snapshot) -> None:
    """The Python sidecar applies the whole set (a ConfigError here would be a NACK)."""
    assembly.assemble(
        {
            url: {name: built.message for name, built in snapshot.of_type(url).items()}
            for url in PUSH_ORDER
        }
    )


def all_problems(built: Snapshots) -> list[str]:
    problems = []
    seen: set[int] = set()
    for proxy_id, snapshot in built.snapshots.items():
        for url in PUSH_ORDER:
            for resource in snapshot.of_type(url).values():
                if id(resource) in seen:
                    continue
                seen.add(id(resource))
                problems += [f"{proxy_id}: {p}" for p in validation.validate(resource.message)]
    return problems


@pytest.mark.parametrize("permissive", [True, False])
def test_bookstore_resources_pass_envoy_field_rules(permissive: bool) -> None:
    built = build_snapshots(xds_support.bookstore(permissive=permissive, egress=True))
    assert len(built.snapshots) == 5
    assert all_problems(built) == []


def test_validator_catches_what_envoy_rejects() -> None:
    bad_hcm = hcm_pb2.HttpConnectionManager(stat_prefix="", http_filters=[])
    listener = listener_pb2.Listener(
        name="",
        address=lds.common.socket_address("not-an-ip", 70000),
        filter_chains=[
            lds.listener_components_pb2.FilterChain(
                filters=[lds.listener_components_pb2.Filter(name="x", typed_config=pack(bad_hcm))]
            ),
            lds.listener_components_pb2.FilterChain(),
        ],
    )
    problems = "\n".join(validation.validate(listener))
    assert "port_value: must be <= 65535" in problems
    assert "'not-an-ip' is not an IP address" in problems
    assert "stat_prefix: at least 1 characters" in problems
    assert "http_filters: empty" in problems
    assert "one of route_specifier" in problems
    assert "same filter_chain_match" in problems
    cluster = cluster_pb2.Cluster(name="c", type=cluster_pb2.Cluster.EDS)
    problems = "\n".join(validation.validate(cluster))
    assert "eds_config: required" in problems
    assert "connect_timeout" in problems


def test_regex_and_weights_are_checked() -> None:
    from envoy.config.route.v3 import route_components_pb2 as rc

    route = rc.Route(match=rc.RouteMatch(safe_regex=lds.common.regex("(unclosed")))
    route.route.weighted_clusters.clusters.add(name="a", weight=lds.common.uint32(0))
    problems = "\n".join(validation.validate(route))
    assert "not a valid regular expression for Envoy (RE2): missing )" in problems
    assert "weights sum to 0" in problems


def test_consistency_check_names_the_missing_resource() -> None:
    hcm = lds.http_connection_manager("x", "rds-outbound.80")
    listener = listener_pb2.Listener(
        name="l",
        api_listener=lds.api_listener_pb2.ApiListener(api_listener=pack(hcm)),
    )
    problems = consistency_problems({LISTENER_TYPE: {"l": build(LISTENER_TYPE, "l", listener)}})
    assert problems == [
        "Listener 'l' names RouteConfiguration 'rds-outbound.80', which is not in the snapshot"
    ]


def test_every_snapshot_is_consistent_and_complete() -> None:
    built = build_snapshots(xds_support.bookstore(permissive=False, egress=True))
    for snapshot in built.snapshots.values():
        types = {url: snapshot.of_type(url) for url in PUSH_ORDER}
        assert consistency_problems(types) == []
        eds_clusters = {
            name
            for name, b in types[CLUSTER_TYPE].items()
            if b.message.type == cluster_pb2.Cluster.EDS
        }
        assert eds_clusters == set(types[ENDPOINT_TYPE])
        assert set(snapshot.resources.types) == set(PUSH_ORDER)


def test_identical_resources_are_one_object_across_proxies() -> None:
    docs = m.two_tier(True)
    docs += [
        m.pod("a", f"client-{i}", {"app": "client"}, "client", f"10.0.0.{i + 10}")
        for i in range(1, 4)
    ]
    built = build_snapshots(m.state(*docs))
    clients = [s for p, s in built.snapshots.items() if p.namespace == "a"]
    assert len(clients) == 4
    first = clients[0]
    for other in clients[1:]:
        assert other.resources is first.resources  # same class: the whole set is shared
    server = built.snapshots[ProxyId("b", "server-0")]
    name = "b/server|80"
    assert server.of_type(CLUSTER_TYPE)[name] is first.of_type(CLUSTER_TYPE)[name]
    assert server.of_type(ENDPOINT_TYPE)[name] is first.of_type(ENDPOINT_TYPE)[name]
    assert (
        server.of_type(LISTENER_TYPE)[names.PROMETHEUS_LISTENER]
        is first.of_type(LISTENER_TYPE)[names.PROMETHEUS_LISTENER]
    )


def test_versions_are_content_hashes() -> None:
    one = build_snapshots(xds_support.bookstore(permissive=True))
    two = build_snapshots(xds_support.bookstore(permissive=True))
    for proxy_id, snapshot in one.snapshots.items():
        assert snapshot.resources.versions() == two.snapshots[proxy_id].resources.versions()
    smi = build_snapshots(xds_support.bookstore(permissive=False))
    pid = ProxyId("bookstore", "bookstore-v1-0")
    assert smi.snapshots[pid].version(ROUTE_TYPE) != one.snapshots[pid].version(ROUTE_TYPE)


def test_secrets_from_credentials_and_missing_credentials_keep_last_good() -> None:
    issued: dict[Identity, Credentials] = {}
    generator = Generator(credentials=issued.get)
    state = m.state(*m.two_tier(True))
    built = generator.build(state)
    assert set(built.errors) == set(built.snapshots) | set(built.errors)
    assert not built.snapshots
    for identity in (Identity("a", "client"), Identity("b", "server")):
        issued[identity] = Credentials(b"CERT " + str(identity).encode(), b"KEY")
    built = generator.build(state, m.state(*m.two_tier(True)).with_changes()[1])
    assert not built.errors
    secret = built.snapshots[ProxyId("a", "client-0")].of_type(SECRET_TYPE)[names.SERVICE_CERT]
    assert secret.message.tls_certificate.certificate_chain.inline_bytes == b"CERT a/client"


def test_a_new_trust_bundle_reaches_every_secret() -> None:
    """The shared upstream layer holds the outbound root certificates, so it reads the
    trust bundle: a new bundle rebuilds it (its memo key is its arguments, settings
    included), and the snapshots equal a fresh generator's."""

    def issued(identity: Identity) -> Credentials:
        return Credentials(b"CERT " + str(identity).encode(), b"KEY")

    state = xds_support.bookstore(permissive=True)
    generator = Generator(credentials=issued, trust_bundle=b"OLD")
    generator.build(state)
    rotated = generator.build(state, trust_bundle=b"NEW")
    assert contents(rotated) == contents(
        Generator(credentials=issued, trust_bundle=b"NEW").build(state)
    )
    bundles = {
        secret.message.validation_context.trusted_ca.inline_bytes
        for snapshot in rotated.snapshots.values()
        for name, secret in snapshot.of_type(SECRET_TYPE).items()
        if name != names.SERVICE_CERT
    }
    assert bundles == {b"NEW"}


def test_grpc_clients_get_api_listeners_and_provider_tls() -> None:
    docs = m.two_tier(True)
    docs.append(
        m.pod(
            "a", "g-0", {"app": "g"}, "g", "10.0.0.7", annotations={"osm-py.io/proxy-kind": "grpc"}
        )
    )
    for mtls in (True, False):
        built = build_snapshots(m.state(*docs), grpc_mtls=mtls)
        snapshot = built.snapshots[ProxyId("a", "g-0")]
        assert sorted(snapshot.of_type(LISTENER_TYPE)) == [
            "server.b",
            "server.b.svc.cluster.local",
            "server.b.svc.cluster.local:80",
            "server.b:80",
        ]
        assert list(snapshot.of_type(SECRET_TYPE)) == []
        cluster = snapshot.of_type(CLUSTER_TYPE)["b/server|80"].message
        assert cluster.HasField("transport_socket") is mtls
        assert all_problems(built) == []


# -- incremental builds ------------------------------------------------------------------
def versions(built: Snapshots) -> dict[ProxyId, dict[str, str]]:
    return {p: s.resources.versions() for p, s in built.snapshots.items()}


def split_change_mesh() -> MeshState:
    return xds_support.bookstore(permissive=False, egress=True)


def test_a_split_change_rebuilds_only_route_configurations() -> None:
    generator = Generator()
    state = split_change_mesh()
    generator.build(state)
    new_split = m.parse(
        m.traffic_split(
            "bookstore",
            "bookstore-split",
            "bookstore",
            [("bookstore-v1", 90), ("bookstore-v2", 10)],
        )
    )
    after, changed = state.with_changes(upserts=new_split)
    built = generator.build(after, changed)
    assert built.stats.resources_built == 1  # bookbuyer's rds-outbound.14001
    assert built.changed == {ProxyId("bookbuyer", "bookbuyer-0")}
    assert versions(built) == versions(build_snapshots(after))


CHANGES: list[tuple[str, list[m.Doc], list[ObjectRef]]] = [
    (
        "split weights",
        [m.traffic_split("bookstore", "bookstore-split", "bookstore", [("bookstore-v2", 1)])],
        [],
    ),
    ("split removed", [], [ObjectRef("TrafficSplit", "bookstore", "bookstore-split")]),
    ("target removed", [], [ObjectRef("TrafficTarget", "bookstore", "bookbuyer-access-bookstore")]),
    (
        "thief allowed",
        [
            m.traffic_target(
                "bookstore",
                "thief",
                "bookstore",
                [("bookthief", "bookthief")],
                [("HTTPRouteGroup", "bookstore-service-routes", [])],
            )
        ],
        [],
    ),
    (
        "route group changed",
        [
            m.route_group(
                "bookstore", "bookstore-service-routes", [{"name": "buy-a-book", "pathRegex": "/x"}]
            )
        ],
        [],
    ),
    (
        "pod added",
        [
            m.pod(
                "bookstore",
                "bookstore-v1-9",
                {"app": "bookstore", "version": "v1"},
                "bookstore",
                "10.244.9.9",
            )
        ],
        [],
    ),
    ("pod removed", [], [ObjectRef("Pod", "bookwarehouse", "bookwarehouse-0")]),
    (
        "pod relabelled",
        [
            m.pod(
                "bookstore",
                "bookstore-v2-0",
                {"app": "bookstore", "version": "v1"},
                "bookstore",
                "10.244.9.8",
            )
        ],
        [],
    ),
    ("service added", [m.service("bookbuyer", "bookbuyer", cluster_ip="10.96.9.9")], []),
    ("service removed", [], [ObjectRef("Service", "bookstore", "bookstore-v2")]),
    (
        "endpoints object",
        [m.endpoints("bookwarehouse", "bookwarehouse", ["10.1.1.1"], port=14001, port_name="http")],
        [],
    ),
    ("mode switched", [m.mesh_config(permissive=True, egress=False)], []),
]


@pytest.mark.parametrize(("upserts", "deletes"), [pytest.param(u, d, id=i) for i, u, d in CHANGES])
def test_incremental_equals_full(upserts: list[m.Doc], deletes: list[ObjectRef]) -> None:
    generator = Generator()
    state = split_change_mesh()
    generator.build(state)
    after, changed = state.with_changes(upserts=m.parse(*upserts), deletes=deletes)
    incremental = generator.build(after, changed)
    full = build_snapshots(after)
    assert versions(incremental) == versions(full)
    assert all_problems(incremental) == []


# -- random meshes -----------------------------------------------------------------------
NAMESPACES = ["n1", "n2"]
ACCOUNTS = ["s1", "s2", "s3"]
APPS = ["a1", "a2", "a3", "a4"]


@st.composite
def meshes(draw: Any) -> list[m.Doc]:
    docs: list[m.Doc] = [m.mesh_config(draw(st.booleans()), draw(st.booleans()))]
    docs += [m.namespace(ns) for ns in NAMESPACES]
    services: dict[str, list[str]] = {ns: [] for ns in NAMESPACES}
    for index in range(draw(st.integers(1, 6))):
        ns = draw(st.sampled_from(NAMESPACES))
        name = f"svc{index}"
        ports = draw(
            st.lists(
                st.tuples(
                    st.sampled_from([80, 81, 5432]),
                    st.sampled_from([8080, 8081, 5432]),
                    st.sampled_from(["http", "tcp", "grpc", "tcp-server-first"]),
                ),
                min_size=1,
                max_size=2,
                unique_by=lambda p: p[0],
            )
        )
        headless = draw(st.booleans())
        docs.append(
            m.service(
                ns,
                name,
                selector={"app": draw(st.sampled_from(APPS))},
                ports=ports,
                cluster_ip="None" if headless else f"10.96.0.{index + 1}",
            )
        )
        services[ns].append(name)
    for index in range(draw(st.integers(0, 8))):
        ns = draw(st.sampled_from(NAMESPACES))
        flavour = draw(st.integers(0, 5))
        annotations = (
            {"osm-py.io/proxy-kind": "grpc"}
            if flavour == 0
            else {"osm-py.io/sidecar": "python"}
            if flavour <= 2
            else {}
        )
        docs.append(
            m.pod(
                ns,
                f"pod{index}",
                {"app": draw(st.sampled_from(APPS))},
                draw(st.sampled_from(ACCOUNTS)),
                f"10.244.0.{index + 1}",
                ready=draw(st.booleans()),
                annotations=annotations,
            )
        )
    docs.append(m.route_group("n1", "g", [GET_ANY, {"name": "m2", "headers": {"x": "1"}}]))
    docs.append(m.tcp_route("n1", "r", draw(st.sampled_from([[], [80], [5432]]))))
    for index in range(draw(st.integers(0, 3))):
        rules = draw(
            st.sampled_from(
                [
                    [("HTTPRouteGroup", "g", [])],
                    [("TCPRoute", "r", [])],
                    [("HTTPRouteGroup", "g", ["m2"]), ("TCPRoute", "r", [])],
                ]
            )
        )
        sources = draw(
            st.lists(
                st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(ACCOUNTS)),
                min_size=1,
                max_size=2,
                unique=True,
            )
        )
        docs.append(
            m.traffic_target("n1", f"t{index}", draw(st.sampled_from(ACCOUNTS)), sources, rules)
        )
    for index in range(draw(st.integers(0, 2))):
        if not services["n1"]:
            break
        apex = draw(st.sampled_from(services["n1"]))
        backends = draw(
            st.lists(
                st.tuples(st.sampled_from([*services["n1"], "ghost"]), st.integers(0, 5)),
                min_size=1,
                max_size=3,
                unique_by=lambda b: b[0],
            )
        )
        if all(w == 0 for _, w in backends):
            backends[0] = (backends[0][0], 1)
        matches = ["g"] if draw(st.booleans()) else []
        docs.append(m.traffic_split("n1", f"split{index}", apex, backends, matches))
    return docs


GET_ANY = {"name": "m1", "pathRegex": "/api/.*", "methods": ["GET"]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meshes(), meshes())
def test_random_meshes_give_consistent_valid_snapshots(
    docs: list[m.Doc], later: list[m.Doc]
) -> None:
    state = m.state(*docs)
    generator = Generator()
    built = generator.build(state)
    assert dict(built.errors) == {}
    assert all_problems(built) == []
    for snapshot in built.snapshots.values():
        if snapshot.proxy.sidecar == DataPlane.PYTHON:
            python_sidecar_accepts(snapshot)
    # Any change, applied incrementally, gives what a full build gives.
    new = m.parse(*later)
    keep = {r.ref for r in new}
    deletes = [r.ref for r in m.parse(*docs) if r.ref not in keep]
    after, changed = state.with_changes(upserts=new, deletes=deletes)
    incremental = generator.build(after, changed)
    assert dict(incremental.errors) == {}
    assert versions(incremental) == versions(build_snapshots(after))


# -- layers and incremental bookkeeping --------------------------------------------------
def contents(built: Snapshots) -> dict[ProxyId, dict[str, Any]]:
    """Everything a proxy is served: per type, the version and name -> digest."""
    return {
        p: {
            url: (s.version(url), {n: b.digest for n, b in s.of_type(url).items()})
            for url in PUSH_ORDER
        }
        for p, s in built.snapshots.items()
    }


def check_against_cold(previous: Snapshots, incremental: Snapshots, after: MeshState) -> None:
    """An incremental build serves what a cold build serves, reports exactly the
    proxies whose content changed, and every resource's bytes are its message's
    deterministic serialization (assembled route configurations included)."""
    cold = build_snapshots(after)
    assert contents(incremental) == contents(cold)
    assert dict(incremental.errors) == dict(cold.errors)
    before = contents(previous)
    now = contents(incremental)
    expected_changed = {
        p
        for p, snapshot in incremental.snapshots.items()
        if before.get(p) != now[p] or previous.snapshots[p].proxy != snapshot.proxy
    }
    assert incremental.changed == expected_changed
    assert incremental.removed == set(previous.snapshots) - set(incremental.snapshots)
    for snapshot in incremental.snapshots.values():
        for url in PUSH_ORDER:
            typed = snapshot.of_type(url)
            assert len(typed) == len(list(typed))
            for name, resource in typed.items():
                assert resource.name == name
                assert resource.message.SerializeToString(deterministic=True) == (
                    resource.serialized
                )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meshes(), st.lists(meshes(), min_size=1, max_size=3))
def test_chains_of_changes_equal_cold_builds(docs: list[m.Doc], later: list[list[m.Doc]]) -> None:
    state = m.state(*docs)
    generator = Generator()
    previous = generator.build(state)
    current = docs
    for step in later:
        new = m.parse(*step)
        keep = {r.ref for r in new}
        deletes = [r.ref for r in m.parse(*current) if r.ref not in keep]
        after, changed = state.with_changes(upserts=new, deletes=deletes)
        incremental = generator.build(after, changed)
        check_against_cold(previous, incremental, after)
        state, previous, current = after, incremental, step


def test_permissive_split_change_rebuilds_one_route_configuration_per_namespace() -> None:
    """In permissive mode every proxy reaches the apex: the shared upstream layer is
    kept, one rds-outbound per namespace is rebuilt, and every proxy is reported."""
    state = xds_support.bookstore(permissive=True, egress=True)
    generator = Generator()
    first = generator.build(state)
    new_split = m.parse(
        m.traffic_split(
            "bookstore", "bookstore-split", "bookstore", [("bookstore-v1", 3), ("bookstore-v2", 1)]
        )
    )
    after, changed = state.with_changes(upserts=new_split)
    built = generator.build(after, changed)
    namespaces = {p.namespace for p in first.snapshots}
    assert built.stats.resources_built == len(namespaces)
    assert built.changed == set(first.snapshots)
    for proxy_id, snapshot in built.snapshots.items():
        before = first.snapshots[proxy_id]
        for url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE):
            assert snapshot.resources.types[url] is before.resources.types[url]
        assert snapshot.version(ROUTE_TYPE) != before.version(ROUTE_TYPE)
        assert snapshot.resources.layers[0] is before.resources.layers[0]  # upstreams
        assert snapshot.resources.layers[2] is before.resources.layers[2]  # inbound
    check_against_cold(first, built, after)
    # Undoing the change serves the first build's content again.
    undo = m.parse(
        m.traffic_split(
            "bookstore", "bookstore-split", "bookstore", [("bookstore-v1", 1), ("bookstore-v2", 1)]
        )
    )
    again, changed_back = after.with_changes(upserts=undo)
    assert contents(generator.build(again, changed_back)) == contents(build_snapshots(again))


def test_a_change_nobody_reaches_changes_no_proxy() -> None:
    state = split_change_mesh()
    generator = Generator()
    generator.build(state)
    outside = m.parse(m.service("elsewhere", "ghost", cluster_ip="10.96.99.99"))
    after, changed = state.with_changes(upserts=outside)
    built = generator.build(after, changed)
    assert built.changed == frozenset()
    assert built.stats.resources_built == 0


def test_a_new_policy_serving_the_same_resources_changes_no_proxy() -> None:
    """A proxyless client's resources do not show the order of a service's ports (its
    listeners are sorted by name), so reordering them changes its policy, not what it
    is served: not a change (found by the random chains below)."""
    ports_80_81 = ((80, 8080, "tcp"), (81, 8080, "http"))
    docs = [
        m.mesh_config(),
        m.namespace("n1"),
        m.namespace("n2"),
        m.service("n2", "svc", {"app": "b"}, ports_80_81, cluster_ip="10.96.0.1"),
        m.pod(
            "n1",
            "pod0",
            {"app": "a"},
            "s1",
            "10.244.0.1",
            annotations={"osm-py.io/proxy-kind": "grpc"},
        ),
    ]
    state = m.state(*docs)
    generator = Generator()
    previous = generator.build(state)
    reordered = m.service("n2", "svc", {"app": "b"}, ports_80_81[::-1], cluster_ip="10.96.0.1")
    after, changed = state.with_changes(upserts=m.parse(reordered))
    built = generator.build(after, changed)
    assert built.changed == frozenset()
    check_against_cold(previous, built, after)


def test_layered_resources_is_a_read_only_union() -> None:
    from osm.xds.snapshot import LayeredResources

    one = build(LISTENER_TYPE, "a", listener_pb2.Listener(name="a"))
    two = build(LISTENER_TYPE, "b", listener_pb2.Listener(name="b"))
    view = LayeredResources(({"a": one}, {"a": one, "b": two}), 2)
    assert list(view) == ["a", "b"]
    assert len(view) == 2
    assert view["b"] is two and "a" in view and "c" not in view
    with pytest.raises(KeyError):
        view["c"]


def test_a_memoized_layer_is_keyed_on_its_arguments() -> None:
    calls: list[Settings] = []

    @layers.memoized
    def layer(context: Context, settings: Settings, number: int) -> list[int]:
        calls.append(settings)
        return [number]

    context = Context()
    first = layer(context, Settings(), 1)
    assert layer(context, Settings(), 1) is first
    assert layer(context, Settings(trust_bundle=b"new"), 1) is not first
    assert layer(context, Settings(), 2) == [2]
    assert calls == [Settings(), Settings(trust_bundle=b"new"), Settings()]


@pytest.mark.parametrize("permissive", [True, False])
def test_pruned_reference_walk_finds_what_the_full_walk_finds(permissive: bool) -> None:
    from osm.xds import resources

    def exhaustive(message: Any) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for inner in resources.walk(message):
            finder = resources._REFERENCES.get(inner.DESCRIPTOR.full_name)
            if finder is not None:
                found.update(finder(inner))
        return found

    built = build_snapshots(xds_support.bookstore(permissive=permissive, egress=True))
    for snapshot in built.snapshots.values():
        for url in PUSH_ORDER:
            for resource in snapshot.of_type(url).values():
                assert resource.references == exhaustive(resource.message), resource.name


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((80, 20), (80, 20)),
        ((2**31 - 1, 2**31 - 1, 2**31 - 1), None),
        ((2**31 - 1, 2**31 - 1, 1), None),
        ((2**31 - 1, 0, 2**31 - 1, 5), None),
    ],
    ids=[
        "small weights are kept",
        "three maximal weights are scaled",
        "a tiny weight stays above zero",
        "a zero weight stays zero",
    ],
)
def test_weights_are_scaled_to_fit_uint32(
    weights: tuple[int, ...], expected: tuple[int, ...] | None
) -> None:
    fitted = rds.fitted_weights(weights)
    if expected is not None:
        assert fitted == expected
    assert sum(fitted) <= rds.UINT32_MAX
    assert [w == 0 for w in fitted] == [w == 0 for w in weights]
    big = [i for i, w in enumerate(weights) if w > 1000]
    for i in big:  # shares are preserved for the weights that matter
        assert abs(fitted[i] / sum(fitted) - weights[i] / sum(weights)) < 1e-6
