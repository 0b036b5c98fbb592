"""Explanations say, port by port and route by route, whether one pod may call another and
which object decides: each row is a small mesh, what is asked, and the answer, as
`osm policy check-pods` prints it."""

from __future__ import annotations

from typing import Any

import pytest

from osm.base import wellknown
from osm.catalog import explain, traffic
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import (
    EgressHost,
    EgressMatch,
    EgressPolicy,
    EgressRoute,
    IngressPort,
    IngressRule,
    OutboundPolicy,
    RateLimits,
    RequestMatch,
)
from osm.model.meta import ObjectRef
from osm.model.policy import (
    ConnectionSettings,
    HTTPLocalRateLimit,
    RetryPolicy,
    TCPConnectionSettings,
)
from tests.unit.catalog import meshes as m

CLIENT = ProxyId("a", "client-0")
SERVER = ProxyId("b", "server-0")
SERVER_SVC = ServiceId("b", "server")
INJECTED = {wellknown.PROXY_UUID_LABEL: "6f1c1a8e-3b52-4a4e-9f4b-2d3c8f5e7a10"}
BUY = {"name": "buy", "pathRegex": "/buy", "methods": ["GET"]}
BOOKS = {"name": "books", "pathRegex": "/books.*", "methods": ["GET"]}
PYTHON = {wellknown.DATA_PLANE_ANNOTATION: "python"}


def mesh(
    *extra: m.Doc,
    permissive: bool = False,
    egress: bool = False,
    client_ns_in_mesh: bool = True,
    server_ns_in_mesh: bool = True,
    ports: tuple[m.Port, ...] = ((80, 8080, "http"),),
    server_annotations: dict[str, str] | None = None,
    config: m.Doc | None = None,
) -> Catalog:
    """client (a/client-0, sa client) and server (b/server-0, sa server, Service b/server)."""
    docs = [
        config or m.mesh_config(permissive, egress),
        m.namespace("a", client_ns_in_mesh),
        m.namespace("b", server_ns_in_mesh),
        m.pod("a", "client-0", {"app": "client", **INJECTED}, "client", "10.0.0.1"),
        m.service("b", "server", ports=ports, cluster_ip="10.96.0.10"),
        m.pod(
            "b",
            "server-0",
            {"app": "server", **INJECTED},
            "server",
            "10.0.1.1",
            annotations=server_annotations,
        ),
        *extra,
    ]
    return Catalog(m.state(*docs))


def target(name: str, rules: list[tuple[str, str, list[str]]], source: str = "client") -> m.Doc:
    return m.traffic_target("b", name, "server", [("a", source)], rules)


ROUTES = m.route_group("b", "routes", [BUY, BOOKS])
RULE_0 = 'TrafficTarget b/t spec.rules[0]: HTTPRouteGroup "routes"'
NOT_NAMED = (
    "no route at the source: no TrafficTarget names a/client's service account as a "
    "source to b/server"
)

# (id, catalog, port filter, expected: [(port, allowed, decided_by, [(match, allowed)])])
CASES: list[tuple[str, Any, int | None, list[tuple[int, bool, tuple[str, ...], list[Any]]]]] = [
    (
        "permissive mode allows every port, and says which MeshConfig",
        lambda: mesh(permissive=True),
        None,
        [
            (
                80,
                True,
                (
                    "permissive mode (MeshConfig osm-system/osm-mesh-config: "
                    "enablePermissiveTrafficPolicyMode)",
                ),
                [("any request", True)],
            )
        ],
    ),
    (
        "a TrafficTarget rule allows the matches it names, route by route",
        lambda: mesh(ROUTES, target("t", [("HTTPRouteGroup", "routes", ["buy"])])),
        None,
        [(80, True, (f'{RULE_0} match "buy"',), [("GET /buy", True)])],
    ),
    (
        "a rule without matches allows every match of the group",
        lambda: mesh(ROUTES, target("t", [("HTTPRouteGroup", "routes", [])])),
        None,
        [
            (
                80,
                True,
                (f'{RULE_0} match "books"', f'{RULE_0} match "buy"'),
                [("GET /buy", True), ("GET /books.*", True)],
            )
        ],
    ),
    (
        "routes granted to another service account are listed as denied, with who has them",
        lambda: mesh(
            ROUTES,
            target("t", [("HTTPRouteGroup", "routes", ["buy"])]),
            target("u", [("HTTPRouteGroup", "routes", ["books"])], source="thief"),
        ),
        None,
        [
            (
                80,
                True,
                (f'{RULE_0} match "buy"',),
                [("GET /buy", True), ("GET /books.*", False)],
            )
        ],
    ),
    (
        "no TrafficTarget naming the source: its sidecar has no route",
        lambda: mesh(ROUTES),
        None,
        [(80, False, (NOT_NAMED + " (no TrafficTarget has it as destination)",), [])],
    ),
    (
        "a TrafficTarget naming a missing HTTPRouteGroup allows nothing",
        lambda: mesh(target("t", [("HTTPRouteGroup", "gone", [])])),
        None,
        [
            (
                80,
                False,
                (
                    "TrafficTarget b/t names a/client as a source, but no rule of it allows "
                    "anything on this port (see the warnings)",
                ),
                [],
            )
        ],
    ),
    (
        "a TCPRoute allows a TCP port",
        lambda: mesh(
            m.tcp_route("b", "db", [5432]),
            target("t", [("TCPRoute", "db", [])]),
            ports=((5432, 5432, "tcp"),),
        ),
        None,
        [(5432, True, ('TrafficTarget b/t spec.rules[0]: TCPRoute "db"',), [])],
    ),
    (
        "HTTPRouteGroup rules do not open a TCP port",
        lambda: mesh(
            ROUTES,
            target("t", [("HTTPRouteGroup", "routes", ["buy"])]),
            ports=((80, 8080, "http"), (5432, 5432, "tcp")),
        ),
        5432,
        [
            (
                5432,
                False,
                (
                    f'{RULE_0} match "buy" does not apply to a TCP port, and no TCPRoute '
                    "covering port 5432 names a/client as a source",
                ),
                [],
            )
        ],
    ),
    (
        "a narrow match on a gRPC port of the Python sidecar allows nothing",
        lambda: mesh(
            ROUTES,
            target("t", [("HTTPRouteGroup", "routes", ["buy"])]),
            ports=((9000, 9000, "grpc"),),
            server_annotations=PYTHON,
        ),
        None,
        [
            (
                9000,
                False,
                (
                    f'{RULE_0} match "buy" does not allow every request, and port 9000 is '
                    "gRPC on the destination's Python sidecar, which proxies gRPC as TCP and "
                    "cannot check requests",
                ),
                [],
            )
        ],
    ),
    (
        "a source outside the mesh is admitted only by an IngressBackend",
        lambda: mesh(permissive=True, client_ns_in_mesh=False),
        None,
        [
            (
                80,
                False,
                (
                    "pod a/client-0 has no sidecar and b/server-0's sidecar admits only "
                    "mutual TLS from mesh identities on this port; no IngressBackend admits "
                    "10.0.0.1 to port 8080",
                ),
                [],
            )
        ],
    ),
    (
        "a destination outside the mesh is reached through mesh-wide egress",
        lambda: mesh(permissive=True, egress=True, server_ns_in_mesh=False),
        None,
        [(80, True, ("mesh-wide egress (MeshConfig spec.traffic.enableEgress)",), [])],
    ),
    (
        "without egress a destination outside the mesh is denied",
        lambda: mesh(permissive=True, server_ns_in_mesh=False),
        None,
        [
            (
                80,
                False,
                (
                    "egress is denied: MeshConfig spec.traffic.enableEgress is off and no "
                    "Egress names the source's service account for "
                    "server.b.svc.cluster.local:8080",
                ),
                [],
            )
        ],
    ),
    (
        "--port narrows to one service or target port",
        lambda: mesh(permissive=True, ports=((80, 8080, "http"), (81, 8081, "http"))),
        8081,
        [(81, True, None, [("any request", True)])],
    ),
]


@pytest.mark.parametrize(
    ("catalog", "port", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_explain(catalog: Any, port: int | None, expected: list[Any]) -> None:
    found = explain.explain(catalog(), CLIENT, SERVER, port)
    rows = [
        (
            answer.port,
            answer.allowed,
            answer.decided_by if row[2] is not None else None,
            [(route.match, route.allowed) for route in answer.routes],
        )
        for answer, row in zip(found.ports, expected, strict=True)
    ]
    assert rows == expected
    assert found.allowed == any(p.allowed for p in found.ports)


def test_a_denied_route_names_who_it_is_granted_to() -> None:
    cat = mesh(
        ROUTES,
        target("t", [("HTTPRouteGroup", "routes", ["buy"])]),
        target("u", [("HTTPRouteGroup", "routes", ["books"])], source="thief"),
    )
    routes = explain.explain(cat, CLIENT, SERVER).ports[0].routes
    assert routes[1].decided_by == (
        'a/client is not a source of TrafficTarget b/u spec.rules[0]: HTTPRouteGroup "routes" '
        'match "books"',
    )


def test_the_allowing_traffic_targets_are_named_for_osm_s_summary_line() -> None:
    cat = mesh(ROUTES, target("t", [("HTTPRouteGroup", "routes", ["buy"])]))
    assert explain.explain(cat, CLIENT, SERVER).allowing == (ObjectRef("TrafficTarget", "b", "t"),)


def test_membership_says_why_a_pod_is_outside_the_mesh() -> None:
    found = explain.explain(mesh(client_ns_in_mesh=False), CLIENT, SERVER)
    assert found.membership == (
        'source pod a/client-0: namespace "a" is not in the mesh (osm namespace add a)',
    )
    assert found.source_sidecar == "none" and found.destination_sidecar == "envoy"


def test_a_pod_in_the_mesh_without_a_sidecar_is_not_injected() -> None:
    docs = [
        m.mesh_config(True),
        m.namespace("a"),
        m.pod("a", "client-0", {"app": "client"}, "client", "10.0.0.1"),
        m.pod("a", "server-0", {"app": "server", **INJECTED}, "server", "10.0.1.1"),
    ]
    found = explain.explain(Catalog(m.state(*docs)), CLIENT, ProxyId("a", "server-0"))
    assert found.membership == (
        "source pod a/client-0: it was not injected (no sidecar: created before its "
        "namespace joined the mesh? restart it)",
    )


def test_the_warnings_about_the_objects_involved_are_shown() -> None:
    found = explain.explain(mesh(target("t", [("HTTPRouteGroup", "gone", [])])), CLIENT, SERVER)
    assert found.warnings == (
        'TrafficTarget b/t: spec.rules[0]: HTTPRouteGroup "b/gone" does not exist; the rule '
        "allows nothing",
    )


def test_a_missing_pod_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="pod a/nobody does not exist"):
        explain.explain(mesh(), ProxyId("a", "nobody"), SERVER)


def test_retries_connection_and_rate_limits_are_noted_with_their_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The values come from the traffic rules (filled by their own module): hand-made here."""
    retry = RetryPolicy("5xx", 1.0, 3, 0.5)
    retry_ref = ObjectRef("Retry", "a", "retry")
    setting = ObjectRef("UpstreamTrafficSetting", "b", "limits")
    limits = RateLimits(http=HTTPLocalRateLimit(10, "minute", 2), origin=setting)
    monkeypatch.setattr(
        traffic, "retries_for", lambda state, identity, warn: {SERVER_SVC: (retry, retry_ref)}
    )
    monkeypatch.setattr(
        traffic,
        "connection_for",
        lambda state, service, warn: ConnectionSettings(tcp=TCPConnectionSettings(100)),
    )
    monkeypatch.setattr(traffic, "rate_limits_for", lambda state, service, warn: limits)
    config = m.mesh_config(True)
    config["spec"]["featureFlags"] = {"enableRetryPolicy": True}
    uts = {
        "apiVersion": "policy.openservicemesh.io/v1alpha1",
        "kind": "UpstreamTrafficSetting",
        "metadata": {"name": "limits", "namespace": "b"},
        "spec": {"host": "server.b.svc.cluster.local"},
    }
    cat = mesh(uts, config=config)
    assert explain.explain(cat, CLIENT, SERVER).ports[0].notes == (
        "retries (Retry a/retry): up to 3 on 5xx, 1s per try, back-off 0.5s",
        "connection limits (UpstreamTrafficSetting b/limits): max 100 connections",
        "rate limits (UpstreamTrafficSetting b/limits): 10 requests per minute (burst 2, then 429)",
    )


# -- Egress and IngressBackend, from hand-made policy values ---------------------------------
EGRESS = ObjectRef("Egress", "a", "out")
EGRESS_POLICY = EgressPolicy(
    matches=(
        EgressMatch(80, "http", origins=(EGRESS,)),
        EgressMatch(
            443, "https", server_names=("api.example.com",), cluster="443", origins=(EGRESS,)
        ),
        EgressMatch(5432, "tcp", ip_ranges=("192.0.2.0/24",), cluster="5432", origins=(EGRESS,)),
    ),
    http_hosts=(
        EgressHost("example.com", 80, (EgressRoute(RequestMatch(), "example.com:80"),), (EGRESS,)),
    ),
)
EGRESS_ROWS = [
    # (id, ip, port, host, allowed, decided_by)
    (
        "http by Host",
        "203.0.113.5",
        80,
        "example.com",
        True,
        ("Egress a/out: http example.com:80 (chain egress-http.80)",),
    ),
    ("http to another Host", "203.0.113.5", 80, "other.com", False, None),
    (
        "https by port (SNI checked by the proxy)",
        "203.0.113.5",
        443,
        "",
        True,
        (
            "Egress a/out: https port 443 to any address for SNI api.example.com "
            "(chain egress-https.443)",
        ),
    ),
    (
        "tcp in the IP range",
        "192.0.2.7",
        5432,
        "",
        True,
        ("Egress a/out: tcp port 5432 to 192.0.2.0/24 (chain egress-tcp.5432)",),
    ),
    ("tcp outside the IP range", "198.51.100.1", 5432, "", False, None),
    ("a port no Egress names", "192.0.2.7", 22, "", False, None),
]


@pytest.mark.parametrize(
    ("ip", "port", "host", "allowed", "decided_by"),
    [row[1:] for row in EGRESS_ROWS],
    ids=[row[0] for row in EGRESS_ROWS],
)
def test_egress_decision(
    ip: str, port: int, host: str, allowed: bool, decided_by: tuple[str, ...] | None
) -> None:
    outbound = OutboundPolicy("a", (), False, EGRESS_POLICY)
    decision = explain.egress_decision(outbound, ip, port, host)
    assert decision.allowed is allowed
    if decided_by is not None:
        assert decision.decided_by == decided_by
        assert decision.objects == (EGRESS,)
    else:
        assert decision.decided_by[0].startswith("egress is denied")


def test_egress_lines_name_every_chain_and_its_egress() -> None:
    assert explain.egress_lines(EGRESS_POLICY) == [
        "egress-http.80: http example.com, example.com:80 (1 route(s)) by Egress a/out",
        "egress-https.443: https to any address, SNI api.example.com -> cluster 443 by "
        "Egress a/out",
        "egress-tcp.5432: tcp to 192.0.2.0/24 -> cluster 5432 by Egress a/out",
    ]
    assert explain.egress_lines(None) == []


BACKEND = ObjectRef("IngressBackend", "b", "ingress")
INGRESS = (
    IngressPort(
        SERVER_SVC,
        8080,
        "http",
        ("10.0.0.0/24",),
        (IngressRule(RequestMatch()),),
        origins=(BACKEND,),
    ),
    IngressPort(
        SERVER_SVC,
        8443,
        "https",
        (),
        (IngressRule(RequestMatch("/api.*"), ("gw.edge.cluster.local",)),),
        server_names=("server.example.com",),
        origins=(BACKEND,),
    ),
)
INGRESS_ROWS = [
    # (id, target port, source ip, allowed, decided_by)
    (
        "http from an admitted range",
        8080,
        "10.0.0.9",
        True,
        (
            "IngressBackend b/ingress: http on port 8080 from 10.0.0.0/24 "
            "(chain ingress_b/server_8080_http)",
        ),
    ),
    (
        "http from elsewhere",
        8080,
        "10.9.0.9",
        False,
        ("no IngressBackend admits 10.9.0.9 to port 8080",),
    ),
    (
        "https from any address with a certificate the rules name",
        8443,
        "172.16.0.1",
        True,
        (
            "IngressBackend b/ingress: https on port 8443 from any address, a client "
            "certificate from the mesh root naming gw.edge.cluster.local, requests * /api.* "
            "(chain ingress_b/server_8443_https)",
        ),
    ),
    ("a port no IngressBackend names", 9090, "10.0.0.9", False, None),
]


@pytest.mark.parametrize(
    ("target_port", "source_ip", "allowed", "decided_by"),
    [row[1:] for row in INGRESS_ROWS],
    ids=[row[0] for row in INGRESS_ROWS],
)
def test_ingress_decision(
    target_port: int, source_ip: str, allowed: bool, decided_by: tuple[str, ...] | None
) -> None:
    decision = explain.ingress_decision(INGRESS, SERVER_SVC, target_port, source_ip)
    assert decision.allowed is allowed
    if decided_by is not None:
        assert decision.decided_by == decided_by
    if allowed:
        assert decision.objects == (BACKEND,)


def test_an_explanation_is_plain_data_for_json() -> None:
    found = explain.explain(mesh(permissive=True), CLIENT, SERVER).to_dict()
    assert found["mode"] == "permissive" and found["allowed"] is True
    assert found["ports"][0]["service"] == "b/server"
    assert found["source"] == {
        "pod": "a/client-0",
        "serviceAccount": "a/client",
        "sidecar": "envoy",
    }
