"""Catalog.derive with dirty_from: a catalog for the next state keeps the answers a
change cannot alter (the very objects, and their warnings), recomputes the others, and
answers exactly what a fresh catalog answers."""

from __future__ import annotations

from typing import Any

import pytest

from osm.base.identity import DataPlane, Identity
from osm.catalog.catalog import Catalog, Dirty, dirty_from
from osm.catalog.ids import ProxyId, ServiceId
from osm.model.meta import ObjectRef
from tests.unit.catalog import meshes as m

SERVER = ServiceId("b", "server")
OTHER = ServiceId("b", "other")
GET_ANY = {"name": "any", "pathRegex": ".*", "methods": ["GET"]}
PYTHON_POD = {"osm-py.io/sidecar": DataPlane.PYTHON}


def mesh(permissive: bool) -> list[m.Doc]:
    """two_tier, plus a second service with a split, and SMI grants to the server."""
    return [
        *m.two_tier(permissive),
        m.service("b", "v1", selector={"app": "server", "v": "1"}, ports=[(80, 8080, "grpc")]),
        m.service("b", "other", selector={"app": "other"}, cluster_ip="10.96.0.11"),
        m.pod("b", "other-0", {"app": "other"}, "other", "10.0.1.3"),
        m.traffic_split("b", "s", "server", [("server", 90), ("v1", 10), ("ghost", 1)]),
        m.route_group("b", "g", [GET_ANY]),
        m.tcp_route("b", "r", [80]),
        m.traffic_target("b", "t", "server", [("a", "client")], [("HTTPRouteGroup", "g", [])]),
        m.traffic_target("b", "t2", "other", [("a", "client")], [("TCPRoute", "r", [])]),
        m.pod("a", "py-0", {"app": "client"}, "client", "10.0.0.9", annotations=PYTHON_POD),
    ]


def answers(cat: Catalog) -> dict[object, Any]:
    """Every answer a build asks for, and the warnings they gave."""
    found: dict[object, Any] = {}
    for proxy in cat.proxies():
        found[proxy.id] = (proxy, cat.policy(proxy))
        for sidecar in (DataPlane.ENVOY, DataPlane.PYTHON):
            found[(proxy.identity, sidecar)] = cat.outbound(proxy.identity, sidecar)
    found["warnings"] = cat.warnings
    return found


def derive(docs: list[m.Doc], upserts: list[m.Doc], deletes: list[ObjectRef]) -> Any:
    state = m.state(*docs)
    before = Catalog(state)
    warm = answers(before)
    after, changed = state.with_changes(upserts=m.parse(*upserts), deletes=deletes)
    dirty = dirty_from(before, after, changed)
    return before, warm, before.derive(after, dirty), dirty, after


CHANGES = [
    pytest.param([m.traffic_split("b", "s", "server", [("server", 50)])], [], id="split"),
    pytest.param([], [ObjectRef("TrafficSplit", "b", "s")], id="split deleted"),
    pytest.param(
        [m.pod("b", "server-1", {"app": "other"}, "server", "10.0.1.2")], [], id="pod moves"
    ),
    pytest.param([], [ObjectRef("Pod", "b", "server-0")], id="pod deleted"),
    pytest.param(
        [m.service("b", "server", ports=[(81, 8080, "tcp")], cluster_ip="10.96.0.10")],
        [],
        id="service port",
    ),
    pytest.param([], [ObjectRef("Service", "b", "other")], id="service deleted"),
    pytest.param([m.endpoints("b", "other", ["10.0.9.9"])], [], id="endpoints"),
    pytest.param([], [ObjectRef("HTTPRouteGroup", "b", "g")], id="route group deleted"),
    pytest.param([m.tcp_route("b", "r", [])], [], id="tcp route"),
    pytest.param(
        [m.traffic_target("b", "t3", "other", [("b", "server")], [("TCPRoute", "r", [])])],
        [],
        id="new traffic target",
    ),
    pytest.param([m.namespace("c")], [], id="namespace"),
]


@pytest.mark.parametrize("permissive", [True, False], ids=["permissive", "SMI"])
@pytest.mark.parametrize(("upserts", "deletes"), CHANGES)
def test_a_derived_catalog_answers_what_a_fresh_one_answers(
    permissive: bool, upserts: list[m.Doc], deletes: list[ObjectRef]
) -> None:
    _before, _warm, derived, _dirty, after = derive(mesh(permissive), upserts, deletes)
    assert answers(derived) == answers(Catalog(after))


def test_a_split_change_keeps_the_answers_of_other_services_as_they_were() -> None:
    upserts = [m.traffic_split("b", "s", "server", [("server", 50), ("v1", 50)])]
    before, _warm, derived, dirty, _after = derive(mesh(True), upserts, [])
    assert dirty == Dirty(services=frozenset({SERVER}))
    assert derived.service_ports(OTHER) is before.service_ports(OTHER)
    assert derived.service_ports(SERVER) != before.service_ports(SERVER)
    assert derived.identities_of(OTHER) is before.identities_of(OTHER)


def test_kept_answers_keep_their_warnings_and_recomputed_ones_replace_theirs() -> None:
    ghost = 'backend Service "b/ghost" does not exist; it gets no traffic'
    unrelated = [m.pod("a", "client-0", {"app": "client"}, "client", "10.0.0.5")]
    _before, warm, derived, _dirty, _after = derive(mesh(True), unrelated, [])
    assert ghost in {w.message for w in warm["warnings"]}
    assert derived.warnings == warm["warnings"], "nothing asked yet, nothing lost"
    fixed = [m.traffic_split("b", "s", "server", [("server", 1)])]
    _before, _warm, derived, _dirty, _after = derive(mesh(True), fixed, [])
    assert derived.warnings == []


def test_an_address_claim_warning_goes_when_the_other_claimant_does() -> None:
    """Claims depend on every service a client reaches: their warnings never carry over."""
    headless = {"selector": {"app": "x"}, "ports": [(80, 8080, "http")], "cluster_ip": "None"}
    docs = [
        m.mesh_config(True),
        m.namespace("n"),
        m.service("n", "a", **headless),
        m.service("n", "b", **headless),
        m.pod("n", "p", {"app": "x"}, "s", "10.0.0.1"),
    ]
    _before, warm, derived, dirty, _after = derive(docs, [], [ObjectRef("Service", "n", "a")])
    assert [w.ref for w in warm["warnings"]] == [ObjectRef("Service", "n", "b")]
    assert ServiceId("n", "b") not in dirty.services
    derived.outbound(Identity("n", "s"))
    assert derived.warnings == []


def test_a_mesh_config_change_derives_nothing() -> None:
    before, _warm, derived, dirty, _after = derive(mesh(True), [m.mesh_config(False)], [])
    assert dirty.everything
    assert derived.service_ports(OTHER) is not before.service_ports(OTHER)
    assert derived.proxy(ProxyId("a", "client-0")) == before.proxy(ProxyId("a", "client-0"))
