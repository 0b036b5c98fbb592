"""The catalog's rule modules on their own: pure functions of a state (or of plain
values), reporting problems through any callable. The facade's tests cover the rules;
these show the seams hold without a Catalog."""

from __future__ import annotations

from osm.base.identity import DataPlane, Identity
from osm.catalog import inbound, membership, splits
from osm.catalog.dirty import Dirty
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import (
    InboundPort,
    InboundRule,
    LocalPort,
    Proxy,
    RequestMatch,
    Upstream,
    WeightedTarget,
)
from osm.catalog.warn import Warn, WarningKey, Warnings
from osm.model.core import Pod, Service, ServicePort
from osm.model.meta import ObjectRef, Resource
from tests.unit.catalog import meshes as m

SERVER = ServiceId("b", "server")
CLIENT = Identity("a", "client")
Record = list[tuple[WarningKey, ObjectRef | None, str]]


def recorder(found: Record) -> Warn:
    def warn(key: WarningKey, resource: Resource | ObjectRef | None, message: str) -> None:
        found.append((key, resource.ref if isinstance(resource, Resource) else resource, message))

    return warn


def test_membership_is_read_off_the_state() -> None:
    state = m.state(
        *m.two_tier(),
        m.namespace("out", mesh=False),
        m.pod("out", "p", {}, "default", "10.0.9.1", annotations={"osm-py.io/sidecar": "rust"}),
    )
    assert membership.mesh_services(state) == (SERVER,)
    pods = {p.name: p for p in state.typed(Pod)}
    assert membership.pod_in_mesh(state, pods["server-0"])
    assert not membership.pod_in_mesh(state, pods["p"])
    found: Record = []
    proxy = membership.proxy_for(state, pods["server-0"], recorder(found))
    assert proxy.local_ports == (LocalPort(SERVER, 80, 8080, "http"),)
    assert found == []
    assert membership.proxy_for(state, pods["p"], recorder(found)).sidecar == "envoy"
    assert [key for key, _ref, _message in found] == [("pod", ProxyId("out", "p"))]
    assert membership.identities_of(state, SERVER) == (Identity("b", "server"),)
    assert membership.services_of(state, Identity("b", "server")) == [SERVER]


def test_split_routes_take_any_upstream_lookup() -> None:
    state = m.state(
        *m.two_tier(),
        m.service("b", "v1", selector={"app": "server"}),
        m.traffic_split("b", "s", "server", [("v1", 3), ("gone", 1)]),
    )
    apex = state.service(SERVER)
    assert isinstance(apex, Service)

    def upstream(service: Service, port: ServicePort) -> Upstream:
        return Upstream(ServiceId(service.namespace, service.name), port.port, "http", (), ())

    found: Record = []
    routes, upstreams = splits.split_routes(
        state, apex, apex.ports[0], state.splits_for(SERVER), upstream, recorder(found)
    )
    assert [route.targets for route in routes] == [(WeightedTarget(ServiceId("b", "v1"), 80, 3),)]
    assert [u.service for u in upstreams] == [ServiceId("b", "v1")]
    assert [(key, message) for key, _ref, message in found] == [
        (("service", SERVER), 'backend Service "b/gone" does not exist; it gets no traffic')
    ]


def test_inbound_policy_needs_no_state() -> None:
    server = Identity("b", "server")
    ports = (LocalPort(SERVER, 80, 8080, "http"), LocalPort(SERVER, 90, 9090, "grpc"))
    proxy = Proxy(
        ProxyId("b", "server-0"), server, "10.0.1.1", (SERVER,), ports, sidecar=DataPlane.PYTHON
    )
    narrow = RequestMatch("/books", ("GET",))
    target = ObjectRef("TrafficTarget", "b", "t")
    grants: inbound.Grants = ((inbound.HttpGrant(narrow, (CLIENT,), target, "spec.rules[0]"),), ())
    warnings = Warnings()
    policy = inbound.inbound_policy(proxy, False, grants, warnings.warn)
    assert policy.ports == (
        InboundPort(SERVER, 80, 8080, "http", (CLIENT,), (InboundRule(narrow, (CLIENT,)),)),
        InboundPort(SERVER, 90, 9090, "tcp", (), ()),
    )
    assert [w.ref for w in warnings.all()] == [target]
    assert inbound.inbound_policy(proxy, True, inbound.NO_GRANTS, warnings.warn).ports[1] == (
        InboundPort(SERVER, 90, 9090, "tcp", None, ())
    )


def test_a_change_drops_the_warnings_of_what_it_made_dirty() -> None:
    warnings = Warnings()
    warnings.warn(("service", SERVER), None, "about the server")
    warnings.warn(("identity", CLIENT), None, "about the client")
    warnings.warn(("outbound", ServiceId("b", "other")), None, "about an address")
    kept = warnings.without(Dirty(services=frozenset({SERVER})).stale)
    assert [w.message for w in kept.all()] == ["about the client"]
    assert len(warnings.all()) == 3, "the previous catalog's warnings stay"
