"""The catalog's SMI rules, table by table: who may call whom, on which routes, where
traffic goes. Each row reads like a sentence of the spec (see the ids)."""

from __future__ import annotations

from typing import Any

import pytest

from osm.base.identity import Identity, ProxyKind
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import (
    Endpoint,
    InboundPort,
    InboundRule,
    OutboundPort,
    RequestMatch,
    WeightedTarget,
)
from tests.unit.catalog import meshes as m

CLIENT = Identity("a", "client")
OTHER = Identity("a", "other")
SERVER = ServiceId("b", "server")
GET_BOOKS = {"name": "books", "pathRegex": "/books.*", "methods": ["GET"]}
POST_BUY = {"name": "buy", "pathRegex": "/buy", "methods": ["POST", "PUT"]}
BETA = {"name": "beta", "headers": [{"X-Beta": "true"}]}
ALL_THREE = {
    "name": "all",
    "pathRegex": "/x",
    "methods": ["GET"],
    "headers": {"x-a": "1", "x-b": "2"},
}


def catalog(*extra: m.Doc, permissive: bool = False, base: list[m.Doc] | None = None) -> Catalog:
    docs = base if base is not None else m.two_tier(permissive)
    return Catalog(m.state(*docs, *extra))


def server_inbound(cat: Catalog) -> tuple[InboundPort, ...]:
    proxy = cat.proxy(ProxyId("b", "server-0"))
    assert proxy is not None
    return cat.inbound(proxy).ports


def other_client() -> m.Doc:
    return m.pod("a", "other-0", {"app": "other"}, "other", "10.0.0.2")


def tt(rules: list[tuple[str, str, list[str]]], sources: Any = (("a", "client"),)) -> m.Doc:
    return m.traffic_target("b", "t", "server", list(sources), rules)


# -- inbound ---------------------------------------------------------------------------
INBOUND_ROWS = [
    pytest.param(
        [],
        True,
        (None, (InboundRule(RequestMatch(), None),)),
        id="permissive: any authenticated identity, any request",
    ),
    pytest.param([], False, ((), ()), id="SMI without TrafficTarget: nobody"),
    pytest.param(
        [m.route_group("b", "g", [GET_BOOKS, POST_BUY]), tt([("HTTPRouteGroup", "g", [])])],
        False,
        (
            (CLIENT,),
            (
                InboundRule(RequestMatch("/books.*", ("GET",)), (CLIENT,)),
                InboundRule(RequestMatch("/buy", ("POST", "PUT")), (CLIENT,)),
            ),
        ),
        id="a rule without matches allows all of the group's matches",
    ),
    pytest.param(
        [m.route_group("b", "g", [GET_BOOKS, POST_BUY]), tt([("HTTPRouteGroup", "g", ["buy"])])],
        False,
        ((CLIENT,), (InboundRule(RequestMatch("/buy", ("POST", "PUT")), (CLIENT,)),)),
        id="a rule with matches allows only those",
    ),
    pytest.param(
        [m.route_group("b", "g", [ALL_THREE]), tt([("HTTPRouteGroup", "g", [])])],
        False,
        (
            (CLIENT,),
            (InboundRule(RequestMatch("/x", ("GET",), (("x-a", "1"), ("x-b", "2"))), (CLIENT,)),),
        ),
        id="path, methods and headers of one match are ANDed in one condition",
    ),
    pytest.param(
        [m.route_group("b", "g", [BETA]), tt([("HTTPRouteGroup", "g", [])])],
        False,
        ((CLIENT,), (InboundRule(RequestMatch("", (), (("x-beta", "true"),)), (CLIENT,)),)),
        id="a header-only match applies to any path and method (list encoding)",
    ),
    pytest.param(
        [
            other_client(),
            m.route_group("b", "g", [GET_BOOKS]),
            tt([("HTTPRouteGroup", "g", [])]),
            m.traffic_target("b", "t2", "server", [("a", "other")], [("HTTPRouteGroup", "g", [])]),
        ],
        False,
        ((CLIENT, OTHER), (InboundRule(RequestMatch("/books.*", ("GET",)), (CLIENT, OTHER)),)),
        id="two TrafficTargets on one match: sources are merged",
    ),
    pytest.param(
        [m.tcp_route("b", "r", []), tt([("TCPRoute", "r", [])])],
        False,
        ((CLIENT,), (InboundRule(RequestMatch(), (CLIENT,)),)),
        id="a TCPRoute without ports allows every port, any request on HTTP ports",
    ),
    pytest.param(
        [m.tcp_route("b", "r", [81]), tt([("TCPRoute", "r", [])])],
        False,
        ((), ()),
        id="a TCPRoute on another port allows nothing here",
    ),
    pytest.param(
        [m.tcp_route("b", "r", [8080]), tt([("TCPRoute", "r", [])])],
        False,
        ((CLIENT,), (InboundRule(RequestMatch(), (CLIENT,)),)),
        id="a TCPRoute port may name the target port",
    ),
    pytest.param(
        [tt([("HTTPRouteGroup", "missing", [])])],
        False,
        ((), ()),
        id="a rule naming a missing group allows nothing",
    ),
    pytest.param(
        [m.route_group("b", "g", [GET_BOOKS]), tt([("HTTPRouteGroup", "g", ["nope"])])],
        False,
        ((), ()),
        id="a rule naming a missing match allows nothing",
    ),
]


@pytest.mark.parametrize(("extra", "permissive", "expected"), INBOUND_ROWS)
def test_inbound_http_port(extra: list[m.Doc], permissive: bool, expected: Any) -> None:
    (port,) = server_inbound(catalog(*extra, permissive=permissive))
    assert (port.l4_sources, port.rules) == expected
    assert (port.service, port.port, port.target_port, port.protocol) == (SERVER, 80, 8080, "http")


TCP_BASE = [
    *m.two_tier(False)[:4],
    m.service("b", "server", ports=[(5432, 5432, "tcp"), (6000, 6000, "tcp")]),
    m.pod("b", "server-0", {"app": "server"}, "server", "10.0.1.1"),
]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param([], {5432: (), 6000: ()}, id="SMI: a TCP port without TCPRoute is closed"),
        pytest.param(
            [m.tcp_route("b", "r", [5432]), tt([("TCPRoute", "r", [])])],
            {5432: (CLIENT,), 6000: ()},
            id="a TCPRoute opens only its ports",
        ),
        pytest.param(
            [m.route_group("b", "g", [GET_BOOKS]), tt([("HTTPRouteGroup", "g", [])])],
            {5432: (), 6000: ()},
            id="HTTP rules do not open TCP ports",
        ),
    ],
)
def test_inbound_tcp_ports(extra: list[m.Doc], expected: dict[int, Any]) -> None:
    ports = server_inbound(catalog(*extra, base=TCP_BASE))
    assert {p.port: p.l4_sources for p in ports} == expected
    assert all(p.rules == () and p.protocol == "tcp" for p in ports)


def test_missing_references_are_warnings_not_errors() -> None:
    cat = catalog(tt([("HTTPRouteGroup", "missing", []), ("TCPRoute", "gone", [])]))
    server_inbound(cat)
    messages = [w.message for w in cat.warnings]
    assert any('HTTPRouteGroup "b/missing" does not exist' in text for text in messages)
    assert any('TCPRoute "b/gone" does not exist' in text for text in messages)


# -- outbound --------------------------------------------------------------------------
def outbound(
    cat: Catalog, identity: Identity = CLIENT
) -> dict[tuple[ServiceId, int], OutboundPort]:
    return {(p.service, p.port): p for p in cat.outbound(identity).ports}


def test_permissive_reaches_every_mesh_service_only() -> None:
    cat = catalog(
        m.namespace("c", mesh=False),
        m.service("c", "outside"),
        m.service("a", "client"),
        permissive=True,
    )
    assert set(outbound(cat)) == {(SERVER, 80), (ServiceId("a", "client"), 80)}


@pytest.mark.parametrize(
    ("sources", "reachable"),
    [
        pytest.param(
            (("a", "client"),), {(SERVER, 80)}, id="SMI: a source reaches the destination"
        ),
        pytest.param((("a", "other"),), set(), id="SMI: a non-source reaches nothing"),
    ],
)
def test_smi_outbound(sources: Any, reachable: set[Any]) -> None:
    cat = catalog(m.route_group("b", "g", [GET_BOOKS]), tt([("HTTPRouteGroup", "g", [])], sources))
    assert set(outbound(cat)) == reachable


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("http", "http"), ("tcp", "tcp"), ("tcp-server-first", "tcp-server-first"), ("grpc", "grpc")],
)
def test_protocol_from_app_protocol(protocol: str, expected: str) -> None:
    base = m.two_tier(True)
    base[4] = m.service("b", "server", ports=[(80, 8080, protocol)], cluster_ip="10.96.0.10")
    assert outbound(catalog(base=base))[(SERVER, 80)].protocol == expected


def split_mesh(*extra: m.Doc) -> Catalog:
    return catalog(
        m.service("b", "v1", selector={"app": "server", "v": "1"}),
        m.service("b", "v2", selector={"app": "server", "v": "2"}),
        m.service("b", "v3", selector={"app": "server"}, ports=[(81, 8081, "http")]),
        *extra,
        permissive=True,
    )


def default_targets(cat: Catalog) -> tuple[WeightedTarget, ...]:
    return outbound(cat)[(SERVER, 80)].routes[-1].targets


def v(name: str, weight: int) -> WeightedTarget:
    return WeightedTarget(ServiceId("b", name), 80, weight)


SPLIT_ROWS = [
    pytest.param([], (WeightedTarget(SERVER, 80, 1),), id="no split: the service itself"),
    pytest.param(
        [m.traffic_split("b", "s", "server", [("v1", 80), ("v2", 20)])],
        (v("v1", 80), v("v2", 20)),
        id="weights are kept relative",
    ),
    pytest.param(
        [m.traffic_split("b", "s", "server", [("v1", 1), ("v2", 0)])],
        (v("v1", 1),),
        id="weight 0 means no traffic: left out",
    ),
    pytest.param(
        [m.traffic_split("b", "s", "server", [("v1", 1), ("v3", 5)])],
        (v("v1", 1),),
        id="a backend without the apex port is left out",
    ),
    pytest.param(
        [m.traffic_split("b", "s", "server", [("v1", 1), ("nope", 5)])],
        (v("v1", 1),),
        id="a backend that does not exist is left out",
    ),
    pytest.param(
        [
            m.traffic_split("b", "s2", "server", [("v2", 10)]),
            m.traffic_split("b", "s1", "server", [("v1", 10), ("v2", 5)]),
        ],
        (v("v1", 10), v("v2", 15)),
        id="several splits on one apex: weights summed per backend",
    ),
    pytest.param(
        [m.traffic_split("b", "s", "server", [("v3", 5)])],
        (WeightedTarget(SERVER, 80, 1),),
        id="no usable backend: the split is ignored on that port",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), SPLIT_ROWS)
def test_traffic_split(extra: list[m.Doc], expected: Any) -> None:
    cat = split_mesh(*extra)
    assert default_targets(cat) == expected
    port = outbound(cat)[(SERVER, 80)]
    named = {t.service for r in port.routes for t in r.targets}
    assert {u.service for u in port.upstreams} == named


def test_split_warnings() -> None:
    cat = split_mesh(m.traffic_split("b", "s", "server", [("v3", 1), ("nope", 1), ("v1", 1)]))
    outbound(cat)
    messages = " | ".join(w.message for w in cat.warnings)
    assert 'backend Service "b/v3" has no port 80' in messages
    assert 'backend Service "b/nope" does not exist' in messages


def test_split_matches_go_first_and_the_rest_to_the_apex() -> None:
    cat = split_mesh(
        m.route_group("b", "canary", [BETA]),
        m.traffic_split("b", "s", "server", [("v2", 1)], matches=["canary"]),
    )
    routes = outbound(cat)[(SERVER, 80)].routes
    assert [(r.match, r.targets) for r in routes] == [
        (RequestMatch("", (), (("x-beta", "true"),)), (v("v2", 1),)),
        (None, (WeightedTarget(SERVER, 80, 1),)),
    ]


def test_split_with_matches_and_split_without() -> None:
    cat = split_mesh(
        m.route_group("b", "canary", [BETA]),
        m.traffic_split("b", "a-matched", "server", [("v2", 1)], matches=["canary"]),
        m.traffic_split("b", "b-plain", "server", [("v1", 3)]),
    )
    routes = outbound(cat)[(SERVER, 80)].routes
    assert [r.targets for r in routes] == [(v("v2", 1),), (v("v1", 3),)]


# -- endpoints -------------------------------------------------------------------------
def test_endpoints_object_ready_addresses_only() -> None:
    cat = catalog(m.endpoints("b", "server", ["10.1.0.1"], ["10.1.0.2"]), permissive=True)
    upstream = outbound(cat)[(SERVER, 80)].upstreams[0]
    assert upstream.endpoints == (Endpoint("10.1.0.1", 8080),)


def test_endpoints_fall_back_to_ready_pods() -> None:
    base = m.two_tier(True)
    base.append(m.pod("b", "server-2", {"app": "server"}, "server", "10.0.1.3", ready=False))
    base.append(m.pod("b", "server-3", {"app": "server"}, "server", ""))
    upstream = outbound(catalog(base=base))[(SERVER, 80)].upstreams[0]
    assert upstream.endpoints == (Endpoint("10.0.1.1", 8080), Endpoint("10.0.1.2", 8080))
    assert upstream.identities == (Identity("b", "server"),)


def test_named_target_port_resolved_per_pod() -> None:
    base = m.two_tier(True)[:4]
    base.append(m.service("b", "server", ports=[(80, "web", "http")]))
    base.append(
        m.pod(
            "b",
            "server-0",
            {"app": "server"},
            "server",
            "10.0.1.1",
            container_ports=[("web", 9000)],
        )
    )
    cat = catalog(base=base)
    assert outbound(cat)[(SERVER, 80)].upstreams[0].endpoints == (Endpoint("10.0.1.1", 9000),)
    assert server_inbound(cat)[0].target_port == 9000


def test_headless_service_matched_on_endpoint_ips() -> None:
    base = m.two_tier(True)
    base[4] = m.service("b", "server", cluster_ip="None")
    port = outbound(catalog(base=base))[(SERVER, 80)]
    assert port.match_ips == ("10.0.1.1", "10.0.1.2")
    assert port.cluster_ip == ""


def test_shared_address_goes_to_the_first_service_with_a_warning() -> None:
    base = m.two_tier(True)
    base[4] = m.service("b", "server", cluster_ip="None")
    base.append(m.service("b", "zz", selector={"app": "server"}, cluster_ip="None"))
    cat = catalog(base=base)
    ports = outbound(cat)
    assert ports[(SERVER, 80)].match_ips == ("10.0.1.1", "10.0.1.2")
    assert ports[(ServiceId("b", "zz"), 80)].match_ips == ()
    assert any("also an address" in w.message for w in cat.warnings)


# -- proxies ---------------------------------------------------------------------------
def test_proxies_are_the_pods_of_the_mesh() -> None:
    cat = catalog(
        m.namespace("c", mesh=False),
        m.pod("c", "plain", {"app": "x"}, "default", "10.0.3.1"),
        m.pod(
            "c",
            "opted-in",
            {"app": "x"},
            "default",
            "10.0.3.2",
            annotations={"openservicemesh.io/sidecar-injection": "enabled"},
        ),
        m.pod(
            "a",
            "grpc-0",
            {"app": "g"},
            "g",
            "10.0.0.9",
            annotations={"osm-py.io/proxy-kind": "grpc"},
        ),
        permissive=True,
    )
    proxies = {str(p.id): p for p in cat.proxies()}
    assert sorted(proxies) == [
        "a/client-0",
        "a/grpc-0",
        "b/server-0",
        "b/server-1",
        "c/opted-in",
    ]
    assert proxies["a/grpc-0"].kind == ProxyKind.GRPC
    assert proxies["b/server-0"].services == (SERVER,)
    assert proxies["b/server-0"].class_key == proxies["b/server-1"].class_key
