"""Python sidecars proxy gRPC ports as TCP, and their policy is never more permissive
than the HTTP policy it replaces. Each row reads like a sentence of the rule (see the
ids): who may connect to the gRPC port of a server whose pod runs the Python sidecar."""

from __future__ import annotations

import pytest

from osm.base.identity import DataPlane, Identity
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import InboundPort, InboundRule, RequestMatch, WeightedTarget
from tests.unit.catalog import meshes as m

CLIENT = Identity("a", "client")
OTHER = Identity("a", "other")
SERVER = ServiceId("b", "server")
PYTHON_POD = {"osm-py.io/sidecar": "python"}

CATCH_ALL = {"name": "all", "pathRegex": ".*", "methods": ["*"]}
ONE_METHOD = {"name": "get", "pathRegex": "/bookstore.Books/Get", "methods": ["POST"]}


def mesh(*extra: m.Doc, permissive: bool = False, server: dict[str, str] = PYTHON_POD) -> Catalog:
    """client and other (ns a) -> server (ns b; gRPC 9090 and HTTP 80 -> 8080)."""
    return Catalog(
        m.state(
            m.mesh_config(permissive),
            m.namespace("a"),
            m.namespace("b"),
            m.pod("a", "client-0", {"app": "client"}, "client", "10.0.0.1", annotations=PYTHON_POD),
            m.pod("a", "other-0", {"app": "other"}, "other", "10.0.0.2"),
            m.service(
                "b",
                "server",
                ports=((9090, 9090, "grpc"), (80, 8080, "http")),
                cluster_ip="10.96.0.10",
            ),
            m.pod("b", "server-0", {"app": "server"}, "server", "10.0.1.1", annotations=server),
            *extra,
        )
    )


def grpc_port(cat: Catalog) -> InboundPort:
    proxy = cat.proxy(ProxyId("b", "server-0"))
    assert proxy is not None
    (port,) = [p for p in cat.inbound(proxy).ports if p.port == 9090]
    return port


def group(*matches: dict[str, object]) -> m.Doc:
    return m.route_group("b", "g", list(matches))


def allow(
    account: str, kind: str = "HTTPRouteGroup", name: str = "g", matches: tuple[str, ...] = ()
) -> m.Doc:
    return m.traffic_target(
        "b", f"{account}-{name}", "server", [("a", account)], [(kind, name, list(matches))]
    )


# (extra docs, permissive, sources allowed on the gRPC port, accounts the warnings deny)
ROWS = [
    pytest.param([], True, None, [], id="permissive: every mesh identity (mTLS, no RBAC)"),
    pytest.param([], False, (), [], id="SMI without TrafficTarget: nobody"),
    pytest.param(
        [m.tcp_route("b", "r", [9090]), allow("client", "TCPRoute", "r")],
        False,
        (CLIENT,),
        [],
        id="a TCPRoute on the port allows its sources",
    ),
    pytest.param(
        [m.tcp_route("b", "r", []), allow("client", "TCPRoute", "r")],
        False,
        (CLIENT,),
        [],
        id="a TCPRoute without ports allows its sources",
    ),
    pytest.param(
        [m.tcp_route("b", "r", [80]), allow("client", "TCPRoute", "r")],
        False,
        (),
        [],
        id="a TCPRoute on another port allows nothing here",
    ),
    pytest.param(
        [group(CATCH_ALL), allow("client")],
        False,
        (CLIENT,),
        [],
        id='an HTTP match of path ".*" and methods ["*"] allows every request: allowed',
    ),
    pytest.param(
        [group({"name": "paths", "pathRegex": "/.*", "methods": ["*"]}), allow("client")],
        False,
        (),
        ["a/client"],
        id='path "/.*" is not every request (OPTIONS * has the path "*"): denied, warned',
    ),
    pytest.param(
        [group({"name": "any"}), allow("client")],
        False,
        (CLIENT,),
        [],
        id="an HTTP match without conditions allows every request: allowed",
    ),
    pytest.param(
        [group({"name": "any", "pathRegex": ".*"}), allow("client")],
        False,
        (CLIENT,),
        [],
        id='path ".*" and no methods: allowed',
    ),
    pytest.param(
        [group({"name": "any", "pathRegex": "^.*$"}), allow("client")],
        False,
        (CLIENT,),
        [],
        id='path "^.*$" (anchors are redundant): allowed',
    ),
    pytest.param(
        [group(ONE_METHOD), allow("client")],
        False,
        (),
        ["a/client"],
        id="an HTTP match of one gRPC method: denied, with a warning",
    ),
    pytest.param(
        [group({"name": "post", "pathRegex": ".*", "methods": ["POST"]}), allow("client")],
        False,
        (),
        ["a/client"],
        id="any path but one HTTP method: denied, with a warning",
    ),
    pytest.param(
        [group({"name": "beta", "headers": {"x-beta": "true"}}), allow("client")],
        False,
        (),
        ["a/client"],
        id="a header condition: denied, with a warning",
    ),
    pytest.param(
        [group({"name": "odd", "pathRegex": "(.*)"}), allow("client")],
        False,
        (),
        ["a/client"],
        id="a catch-all regex spelled otherwise counts as a restriction: denied",
    ),
    pytest.param(
        [group(CATCH_ALL, ONE_METHOD), allow("client", matches=("get",))],
        False,
        (),
        ["a/client"],
        id="a rule naming only a narrow match of a group with a catch-all: denied",
    ),
    pytest.param(
        [group(CATCH_ALL, ONE_METHOD), allow("client")],
        False,
        (CLIENT,),
        [],
        id="a rule without matches includes the group's catch-all: allowed",
    ),
    pytest.param(
        [
            group(CATCH_ALL),
            m.route_group("b", "h", [ONE_METHOD]),
            allow("client"),
            allow("other", name="h"),
        ],
        False,
        (CLIENT,),
        ["a/other"],
        id="catch-all source allowed, one-method source denied and named in the warning",
    ),
    pytest.param(
        [
            group(ONE_METHOD),
            m.tcp_route("b", "r", [9090]),
            allow("client"),
            allow("client", "TCPRoute", "r"),
        ],
        False,
        (CLIENT,),
        [],
        id="a source with a narrow HTTP match and a TCPRoute: allowed, no warning",
    ),
]


@pytest.mark.parametrize(("extra", "permissive", "sources", "denied"), ROWS)
def test_who_may_connect_to_a_grpc_port_of_a_python_sidecar(
    extra: list[m.Doc],
    permissive: bool,
    sources: tuple[Identity, ...] | None,
    denied: list[str],
) -> None:
    cat = mesh(*extra, permissive=permissive)
    port = grpc_port(cat)
    assert port == InboundPort(SERVER, 9090, 9090, "tcp", sources, ())
    warned = [w for w in cat.warnings if "is gRPC on the Python sidecar" in w.message]
    assert [w.message.split("port, ")[1].split(" denied")[0] for w in warned] == denied
    for warning in warned:
        assert warning.ref is not None and warning.ref.kind == "TrafficTarget"
        assert 'Service "b/server"' in warning.message


def test_the_warning_names_the_rule_and_says_what_would_allow_the_source() -> None:
    cat = mesh(group(ONE_METHOD), allow("client"))
    grpc_port(cat)
    (warning,) = cat.warnings
    assert str(warning) == (
        'TrafficTarget b/client-g: spec.rules[0]: HTTPRouteGroup "g" does not allow every '
        'request, and port 9090 of Service "b/server" is gRPC on the Python sidecar, which '
        "proxies gRPC as TCP and cannot check requests: the rule allows nothing on that "
        'port, a/client denied (a TCPRoute, or a match of any method with pathRegex ".*" '
        "or none, allows every request)"
    )


def test_envoy_keeps_http_policy_on_the_grpc_port() -> None:
    cat = mesh(group(ONE_METHOD), allow("client"), server={})
    port = grpc_port(cat)
    assert port.protocol == "grpc"
    assert port.l4_sources == (CLIENT,)
    assert port.rules == (InboundRule(RequestMatch("/bookstore.Books/Get", ("POST",)), (CLIENT,)),)
    assert cat.warnings == []


def test_http_ports_of_a_python_sidecar_keep_http_policy() -> None:
    cat = mesh(group(ONE_METHOD), allow("client"))
    proxy = cat.proxy(ProxyId("b", "server-0"))
    assert proxy is not None
    (http,) = [p for p in cat.inbound(proxy).ports if p.port == 80]
    assert http.protocol == "http"
    assert http.rules == (InboundRule(RequestMatch("/bookstore.Books/Get", ("POST",)), (CLIENT,)),)


# -- outbound ----------------------------------------------------------------------------
def test_a_python_client_reaches_a_grpc_port_as_tcp_and_an_envoy_client_as_http2() -> None:
    cat = mesh(permissive=True)
    python = cat.outbound(CLIENT, DataPlane.PYTHON)
    envoy = cat.outbound(CLIENT, DataPlane.ENVOY)
    by_port = {p.port: p for p in python.ports}
    assert by_port[9090].protocol == "tcp"
    assert [u.protocol for u in by_port[9090].upstreams] == ["tcp"]
    assert by_port[80] is {p.port: p for p in envoy.ports}[80]  # HTTP ports are shared
    assert {p.port: p.protocol for p in envoy.ports} == {9090: "grpc", 80: "http"}


def test_without_grpc_ports_a_python_client_shares_envoys_policy_object() -> None:
    cat = Catalog(m.state(*m.two_tier(permissive=True)))
    assert cat.outbound(CLIENT, DataPlane.PYTHON) is cat.outbound(CLIENT, DataPlane.ENVOY)


def test_split_matches_on_a_grpc_port_do_not_apply_to_python_clients() -> None:
    backend = m.service(
        "b", "server-v2", {"app": "server"}, ((9090, 9090, "grpc"),), cluster_ip="10.96.0.11"
    )
    split = m.traffic_split("b", "s", "server", [("server-v2", 1)], matches=["g"])
    cat = mesh(backend, group(ONE_METHOD), split, permissive=True)
    envoy = {p.port: p for p in cat.outbound(CLIENT).ports if p.service == SERVER}[9090]
    python = {
        p.port: p for p in cat.outbound(CLIENT, DataPlane.PYTHON).ports if p.service == SERVER
    }[9090]
    assert len(envoy.routes) == 2
    assert [r.targets for r in python.routes] == [(WeightedTarget(SERVER, 9090, 1),)]
    assert [u.service for u in python.upstreams] == [SERVER]
    assert any("TrafficSplit matches on it do not apply" in w.message for w in cat.warnings)


# -- which proxies are Python sidecars -----------------------------------------------------
@pytest.mark.parametrize(
    ("annotations", "sidecar", "warned"),
    [
        pytest.param({}, DataPlane.ENVOY, False, id="no annotation: Envoy (as Kubernetes injects)"),
        pytest.param(PYTHON_POD, DataPlane.PYTHON, False, id="osm-py.io/sidecar: python"),
        pytest.param(
            {"osm-py.io/sidecar": "envoy"}, DataPlane.ENVOY, False, id="osm-py.io/sidecar: envoy"
        ),
        pytest.param(
            {"osm-py.io/sidecar": "haproxy"},
            DataPlane.ENVOY,
            True,
            id="an unknown value: Envoy, warned",
        ),
        pytest.param(
            {**PYTHON_POD, "osm-py.io/proxy-kind": "grpc"},
            DataPlane.ENVOY,
            False,
            id="a proxyless gRPC client has no sidecar: the annotation is moot",
        ),
    ],
)
def test_the_sidecar_annotation_says_which_data_plane_a_pod_runs(
    annotations: dict[str, str], sidecar: str, warned: bool
) -> None:
    cat = mesh(server=annotations)
    proxy = cat.proxy(ProxyId("b", "server-0"))
    assert proxy is not None
    assert proxy.sidecar == sidecar
    assert any("osm-py.io/sidecar" in w.message for w in cat.warnings) == warned


@pytest.mark.parametrize(
    ("match", "every"),
    [
        (RequestMatch(), True),
        (RequestMatch(".*"), True),
        (RequestMatch("^.*$"), True),
        (RequestMatch("^.*"), True),
        # Every path but "*", the path of OPTIONS * (Envoy matches the whole path):
        (RequestMatch("/.*"), False),
        (RequestMatch("^/.*$"), False),
        (RequestMatch(".*\\$"), False),
        (RequestMatch("/api/.*"), False),
        (RequestMatch("", ("GET",)), False),
        (RequestMatch("", (), (("x", "1"),)), False),
    ],
)
def test_matches_every_request_is_conservative(match: RequestMatch, every: bool) -> None:
    assert match.matches_every_request is every
