"""The Egress rule (`osm.catalog.egress`), case by case as OSM's GetEgressTrafficPolicy
reads Egress objects, and through the catalog (only with enableEgress off)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from osm.base.identity import Identity
from osm.catalog import egress
from osm.catalog.catalog import Catalog
from osm.catalog.policy import (
    EgressCluster,
    EgressHost,
    EgressMatch,
    EgressPolicy,
    EgressRoute,
    RequestMatch,
)
from osm.catalog.warn import Warnings
from osm.model.policy import ConnectionSettings, TCPConnectionSettings
from tests.unit.catalog import meshes as m

WEB = Identity("shop", "web")
POLICY_GROUP = "policy.openservicemesh.io/v1alpha1"
SMI_GROUP = "specs.smi-spec.io/v1alpha4"
EVERY = RequestMatch()


def egress_doc(
    name: str,
    ports: Sequence[tuple[int, str]],
    *,
    hosts: Sequence[str] = (),
    ips: Sequence[str] = (),
    groups: Sequence[str] = (),
    setting: str = "",
    sources: Sequence[str] = ("web",),
) -> dict[str, Any]:
    matches = [{"apiGroup": SMI_GROUP, "kind": "HTTPRouteGroup", "name": g} for g in groups]
    if setting:
        matches.append(
            {"apiGroup": POLICY_GROUP, "kind": "UpstreamTrafficSetting", "name": setting}
        )
    spec: dict[str, Any] = {
        "sources": [{"kind": "ServiceAccount", "name": s, "namespace": "shop"} for s in sources],
        "ports": [{"number": n, "protocol": p} for n, p in ports],
    }
    if hosts:
        spec["hosts"] = list(hosts)
    if ips:
        spec["ipAddresses"] = list(ips)
    if matches:
        spec["matches"] = matches
    return {
        "apiVersion": POLICY_GROUP,
        "kind": "Egress",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }


def setting_doc(name: str, max_connections: int) -> dict[str, Any]:
    return {
        "apiVersion": POLICY_GROUP,
        "kind": "UpstreamTrafficSetting",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "host": f"{name}.shop.svc.cluster.local",
            "connectionSettings": {"tcp": {"maxConnections": max_connections}},
        },
    }


API = m.route_group(
    "shop",
    "api",
    [{"name": "get", "pathRegex": "/get", "methods": ["GET"]}, {"name": "any", "pathRegex": ".*"}],
)
LIMITED = ConnectionSettings(tcp=TCPConnectionSettings(max_connections=5))


def http(port: int, *hosts: str, routes: Sequence[RequestMatch] = (EVERY,)) -> list[object]:
    """The match, hosts and clusters one HTTP port of hosts gives (no settings)."""
    return [
        EgressMatch(port, "http"),
        *(EgressHost(h, port, tuple(EgressRoute(r, f"{h}:{port}") for r in routes)) for h in hosts),
        *(EgressCluster(f"{h}:{port}", h, port) for h in hosts),
    ]


def policy(*parts: object) -> EgressPolicy:
    matches = sorted(
        (p for p in parts if isinstance(p, EgressMatch)),
        key=lambda p: (p.port, p.protocol, p.part),
    )
    hosts = sorted((p for p in parts if isinstance(p, EgressHost)), key=lambda h: (h.port, h.host))
    clusters = {p.name: p for p in parts if isinstance(p, EgressCluster)}
    return EgressPolicy(tuple(matches), tuple(hosts), tuple(clusters[n] for n in sorted(clusters)))


@dataclass(frozen=True)
class Case:
    spec: str
    docs: Sequence[dict[str, Any]]
    expected: EgressPolicy | None
    warnings: Sequence[str] = ()


CASES = [
    Case("a client no Egress names has no egress policy", [], None),
    Case(
        "an Egress naming another service account does nothing for this client",
        [egress_doc("other", [(80, "http")], hosts=["a.example"], sources=["other"])],
        None,
    ),
    Case(
        "http: one match on the port, a virtual host per host routing every request to "
        "cluster host:port",
        [egress_doc("e", [(80, "http")], hosts=["a.example", "b.example"])],
        policy(*http(80, "a.example", "b.example")),
    ),
    Case(
        "http to a wildcard host: built as OSM does, warned (DNS cannot resolve it)",
        [egress_doc("e", [(80, "http")], hosts=["*.example.com"])],
        policy(*http(80, "*.example.com")),
        ["host *.example.com is a wildcard, which DNS cannot resolve"],
    ),
    Case(
        "http without hosts: the port's match and no virtual host",
        [egress_doc("e", [(8080, "http")])],
        policy(EgressMatch(8080, "http")),
    ),
    Case(
        "http with an HTTPRouteGroup: its matches are the routes, in the group's order",
        [API, egress_doc("e", [(80, "http")], hosts=["a.example"], groups=["api"])],
        policy(*http(80, "a.example", routes=[RequestMatch("/get", ("GET",)), EVERY])),
    ),
    Case(
        "http with a missing HTTPRouteGroup: warned, the host has no route (OSM skips it)",
        [egress_doc("e", [(80, "http")], hosts=["a.example"], groups=["gone"])],
        policy(*http(80, "a.example", routes=[])),
        ['spec.matches[0]: HTTPRouteGroup "shop/gone" does not exist'],
    ),
    Case(
        "http with a missing and an existing HTTPRouteGroup: the existing one's routes",
        [API, egress_doc("e", [(80, "http")], hosts=["a.example"], groups=["gone", "api"])],
        policy(*http(80, "a.example", routes=[RequestMatch("/get", ("GET",)), EVERY])),
        ['spec.matches[0]: HTTPRouteGroup "shop/gone" does not exist'],
    ),
    Case(
        "https: matched by SNI (the hosts) and the address ranges, to cluster <port>",
        [egress_doc("e", [(443, "https")], hosts=["b.example", "a.example"], ips=["1.2.3.0/24"])],
        policy(
            EgressMatch(443, "https", ("1.2.3.0/24",), ("a.example", "b.example"), "443"),
            EgressCluster("443", "", 443),
        ),
    ),
    Case(
        "tcp and tcp-server-first: matched by the address ranges (the hosts play no part)",
        [
            egress_doc(
                "e", [(5432, "tcp"), (25, "tcp-server-first")], hosts=["x"], ips=["10.1.2.3/32"]
            )
        ],
        policy(
            EgressMatch(25, "tcp-server-first", ("10.1.2.3/32",), (), "25"),
            EgressMatch(5432, "tcp", ("10.1.2.3/32",), (), "5432"),
            EgressCluster("25", "", 25),
            EgressCluster("5432", "", 5432),
        ),
    ),
    Case(
        "an UpstreamTrafficSetting in matches: its connection settings on every cluster",
        [
            setting_doc("limits", 5),
            egress_doc("e", [(80, "http"), (443, "https")], hosts=["a.example"], setting="limits"),
        ],
        EgressPolicy(
            (EgressMatch(80, "http"), EgressMatch(443, "https", (), ("a.example",), "443")),
            (EgressHost("a.example", 80, (EgressRoute(EVERY, "a.example:80"),)),),
            (
                EgressCluster("443", "", 443, LIMITED),
                EgressCluster("a.example:80", "a.example", 80, LIMITED),
            ),
        ),
    ),
    Case(
        "a missing UpstreamTrafficSetting: the Egress is ignored (warned), others apply",
        [
            egress_doc("a-broken", [(80, "http")], hosts=["a.example"], setting="gone"),
            egress_doc("b-fine", [(80, "http")], hosts=["b.example"]),
        ],
        policy(*http(80, "b.example")),
        ['UpstreamTrafficSetting "shop/gone" in matches does not exist; the Egress is ignored'],
    ),
    Case(
        "only Egresses naming missing UpstreamTrafficSettings: no policy",
        [egress_doc("e", [(80, "http")], hosts=["a.example"], setting="gone")],
        None,
        ["the Egress is ignored"],
    ),
    Case(
        "two Egresses for one host and port: one virtual host, one cluster, routes merged",
        [
            API,
            egress_doc("a", [(80, "http")], hosts=["a.example"], groups=["api"]),
            egress_doc("b", [(80, "http")], hosts=["a.example"]),
        ],
        policy(
            *http(80, "a.example", routes=[RequestMatch("/get", ("GET",)), EVERY]),
        ),
    ),
    Case(
        "two Egresses for one tcp port: one match, every range of both",
        [
            egress_doc("a", [(5432, "tcp")], ips=["10.0.0.0/8"]),
            egress_doc("b", [(5432, "tcp")], ips=["192.168.0.0/16", "10.0.0.0/8"]),
        ],
        policy(
            EgressMatch(5432, "tcp", ("10.0.0.0/8", "192.168.0.0/16"), (), "5432"),
            EgressCluster("5432", "", 5432),
        ),
    ),
    Case(
        "a tcp Egress without ranges takes every address, whatever another one lists",
        [
            egress_doc("a", [(5432, "tcp")], ips=["10.0.0.0/8"]),
            egress_doc("b", [(5432, "tcp")]),
        ],
        policy(EgressMatch(5432, "tcp", (), (), "5432"), EgressCluster("5432", "", 5432)),
    ),
    Case(
        "two https Egresses differing in hosts and ranges: a chain each, nothing more",
        [
            egress_doc("a", [(443, "https")], hosts=["a.example"], ips=["1.0.0.0/8"]),
            egress_doc("b", [(443, "https")], hosts=["b.example"], ips=["2.0.0.0/8"]),
        ],
        policy(
            EgressMatch(443, "https", ("1.0.0.0/8",), ("a.example",), "443"),
            EgressMatch(443, "https", ("2.0.0.0/8",), ("b.example",), "443", part=1),
            EgressCluster("443", "", 443),
        ),
    ),
    Case(
        "https by name anywhere and by address with any name: the address's chain takes "
        "every name, elsewhere only the host",
        [
            egress_doc("a", [(443, "https")], hosts=["a.example"]),
            egress_doc("b", [(443, "https")], ips=["198.51.100.0/24"]),
        ],
        policy(
            EgressMatch(443, "https", (), ("a.example",), "443"),
            EgressMatch(443, "https", ("198.51.100.0/24",), (), "443", part=1),
            EgressCluster("443", "", 443),
        ),
    ),
    Case(
        "nested ranges: the inner range takes the names of both Egresses",
        [
            egress_doc("a", [(443, "https")], hosts=["a.example"], ips=["10.0.0.0/8"]),
            egress_doc("b", [(443, "https")], hosts=["b.example"], ips=["10.1.0.0/16"]),
        ],
        policy(
            EgressMatch(443, "https", ("10.0.0.0/8",), ("a.example",), "443"),
            EgressMatch(443, "https", ("10.1.0.0/16",), ("a.example", "b.example"), "443", part=1),
            EgressCluster("443", "", 443),
        ),
    ),
    Case(
        "an https Egress without hosts or ranges admits everything: one chain",
        [
            egress_doc("a", [(443, "https")]),
            egress_doc("b", [(443, "https")], hosts=["b.example"], ips=["10.1.0.0/16"]),
        ],
        policy(EgressMatch(443, "https", (), (), "443"), EgressCluster("443", "", 443)),
    ),
    Case(
        "tcp and tcp-server-first on one port with the same ranges: the server-first one "
        "kept (its port's inspectors stay off), warned",
        [egress_doc("e", [(25, "tcp"), (25, "tcp-server-first")], ips=["10.0.0.0/8"])],
        policy(
            EgressMatch(25, "tcp-server-first", ("10.0.0.0/8",), (), "25"),
            EgressCluster("25", "", 25),
        ),
        ["egress-tcp.25 matches the same connections as egress-tcp-server-first.25"],
    ),
    Case(
        "http and https on one port are told apart (application protocols, SNI)",
        [egress_doc("e", [(8443, "http"), (8443, "https")], hosts=["a.example"])],
        policy(
            *http(8443, "a.example"),
            EgressMatch(8443, "https", (), ("a.example",), "8443"),
            EgressCluster("8443", "", 8443),
        ),
    ),
    Case(
        "one host cluster named by two Egresses with different settings: the first's, warned",
        [
            setting_doc("limits", 5),
            egress_doc("a", [(80, "http")], hosts=["a.example"], setting="limits"),
            egress_doc("b", [(80, "http")], hosts=["a.example"]),
        ],
        EgressPolicy(
            (EgressMatch(80, "http"),),
            (EgressHost("a.example", 80, (EgressRoute(EVERY, "a.example:80"),)),),
            (EgressCluster("a.example:80", "a.example", 80, LIMITED),),
        ),
        ["cluster a.example:80: this Egress and Egress shop/a set different connection"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.spec for c in CASES])
def test_egress_policy(case: Case) -> None:
    state = m.state(m.mesh_config(permissive=False), m.namespace("shop"), *case.docs)
    warnings = Warnings()
    assert egress.egress_policy(state, WEB, warnings.warn) == case.expected
    messages = [str(w) for w in warnings.all()]
    assert len(messages) == len(case.warnings), messages
    for fragment in case.warnings:
        assert any(fragment in message for message in messages), (fragment, messages)


def test_origins_name_the_egresses_that_asked() -> None:
    state = m.state(
        m.namespace("shop"),
        egress_doc("a", [(80, "http"), (5432, "tcp")], hosts=["a.example"]),
        egress_doc("b", [(80, "http")], hosts=["a.example"]),
    )
    result = egress.egress_policy(state, WEB, Warnings().warn)
    assert result is not None
    assert [[r.name for r in match.origins] for match in result.matches] == [["a", "b"], ["a"]]
    assert [r.name for r in result.http_hosts[0].origins] == ["a", "b"]


def web_mesh(*, enable_egress: bool) -> list[dict[str, Any]]:
    return [
        m.mesh_config(permissive=False, egress=enable_egress),
        m.namespace("shop"),
        m.pod("shop", "web-0", {"app": "web"}, "web", "10.0.0.1"),
        egress_doc("e", [(80, "http")], hosts=["a.example"]),
    ]


@pytest.mark.parametrize(
    ("enable_egress", "expected"),
    [(False, policy(*http(80, "a.example"))), (True, None)],
    ids=["with enableEgress off the client's policy has it", "with enableEgress on: moot"],
)
def test_the_catalog_asks_only_with_mesh_wide_egress_off(
    enable_egress: bool, expected: EgressPolicy | None
) -> None:
    catalog = Catalog(m.state(*web_mesh(enable_egress=enable_egress)))
    outbound = catalog.outbound(WEB)
    assert outbound.egress_policy == expected
    assert outbound.egress is enable_egress
