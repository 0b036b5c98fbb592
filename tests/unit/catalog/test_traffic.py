"""Retry and UpstreamTrafficSetting in the catalog, table by table, as OSM applies them:
an UpstreamTrafficSetting configures the service in its namespace whose FQDN is its
host (circuit breaking on the clients' clusters, local rate limits on the service's
proxies); a Retry the routes its source takes to its destinations, only with
``featureFlags.enableRetryPolicy``."""

from __future__ import annotations

from typing import Any

import pytest

from osm.base.identity import Identity
from osm.catalog import traffic
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import RateLimits, RouteRateLimit
from osm.catalog.state import MeshState
from osm.catalog.warn import Warnings
from osm.model.meta import ObjectRef
from osm.model.policy import (
    ConnectionSettings,
    HTTPConnectionSettings,
    HTTPLocalRateLimit,
    RetryPolicy,
    TCPConnectionSettings,
    TCPLocalRateLimit,
)
from tests.unit.catalog import meshes as m
from tests.unit.catalog import traffic_docs as t

CLIENT = Identity("a", "client")
SERVER = ServiceId("b", "server")
HOST = SERVER.fqdn
TCP_100 = {"tcp": {"maxConnections": 100, "connectTimeout": "2s"}}
HTTP_LIMITS = {
    "http": {
        "maxRequests": 10,
        "maxRequestsPerConnection": 5,
        "maxPendingRequests": 3,
        "maxRetries": 2,
    }
}


def state(*docs: m.Doc) -> MeshState:
    """A state of ``docs`` parsed one by one: conflicts between objects (which a load
    of them all refuses) reach the catalog, as objects stored before a webhook ran do."""
    return MeshState.from_resources([r for doc in docs for r in m.parse(doc)])


def run(rule: Any, *extra: m.Doc, subject: Any = SERVER) -> tuple[Any, list[str]]:
    """The rule's answer for ``subject`` over the two-tier mesh plus ``extra``, and the
    warnings it gave (as "ref: message")."""
    warnings = Warnings()
    answer = rule(state(*m.two_tier(), *extra), subject, warnings.warn)
    return answer, [str(w) for w in warnings.all()]


# -- connection settings (circuit breaking) --------------------------------------------------
CONNECTION_ROWS = [
    pytest.param([], None, id="no UpstreamTrafficSetting: Envoy's defaults"),
    pytest.param(
        [t.upstream_setting("b", "uts", HOST, connectionSettings=TCP_100)],
        ConnectionSettings(tcp=TCPConnectionSettings(100, 2.0)),
        id="the setting in the service's namespace whose host is its FQDN applies",
    ),
    pytest.param(
        [t.upstream_setting("b", "uts", HOST, connectionSettings=HTTP_LIMITS)],
        ConnectionSettings(http=HTTPConnectionSettings(10, 5, 3, 2)),
        id="HTTP connection settings are carried as written",
    ),
    pytest.param(
        [m.namespace("c"), t.upstream_setting("c", "uts", HOST, connectionSettings=TCP_100)],
        None,
        id="a setting in another namespace does not apply",
    ),
    pytest.param(
        [t.upstream_setting("b", "uts", "server.b", connectionSettings=TCP_100)],
        None,
        id="a host that is not the FQDN does not apply",
    ),
    pytest.param(
        [
            t.upstream_setting(
                "b",
                "uts",
                HOST,
                rateLimit={"local": {"tcp": {"connections": 5, "unit": "second"}}},
            )
        ],
        None,
        id="a setting with rate limits only sets no circuit breaking",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), CONNECTION_ROWS)
def test_connection_settings(extra: list[m.Doc], expected: ConnectionSettings | None) -> None:
    answer, warnings = run(traffic.connection_for, *extra)
    assert answer == expected
    assert warnings == []


def test_two_settings_for_one_host_the_first_by_name_wins_and_both_are_named() -> None:
    first = t.upstream_setting("b", "alpha", HOST, connectionSettings=TCP_100)
    second = t.upstream_setting(
        "b", "beta", HOST, connectionSettings={"tcp": {"maxConnections": 1}}
    )
    for rule in (traffic.connection_for, traffic.rate_limits_for):
        answer, warnings = run(rule, second, first)
        if rule is traffic.connection_for:
            assert answer == ConnectionSettings(tcp=TCPConnectionSettings(100, 2.0))
        assert len(warnings) == 1
        assert "UpstreamTrafficSetting b/beta is ignored" in warnings[0]
        assert "UpstreamTrafficSetting b/alpha also sets host" in warnings[0]
        assert warnings[0].startswith("UpstreamTrafficSetting b/beta:")


# -- local rate limits ------------------------------------------------------------------------
PER_SECOND = {"requests": 10, "unit": "second", "burst": 5}
PER_MINUTE = {
    "requests": 2,
    "unit": "minute",
    "responseStatusCode": 503,
    "responseHeadersToAdd": [{"name": "x-limited", "value": "yes"}],
}
REF = ObjectRef("UpstreamTrafficSetting", "b", "uts")

RATE_ROWS = [
    pytest.param({}, None, id="no rate limit: none"),
    pytest.param({"connectionSettings": TCP_100}, None, id="circuit breaking only: no rate limit"),
    pytest.param(
        {"rateLimit": {"local": {"tcp": {"connections": 5, "unit": "minute", "burst": 2}}}},
        RateLimits(tcp=TCPLocalRateLimit(5, "minute", 2)),
        id="a TCP limit on connections",
    ),
    pytest.param(
        {"rateLimit": {"local": {"http": PER_SECOND}}},
        RateLimits(http=HTTPLocalRateLimit(10, "second", 5)),
        id="an HTTP limit on the virtual host, 429 by default",
    ),
    pytest.param(
        {
            "httpRoutes": [
                {"path": "/buy", "rateLimit": {"local": PER_MINUTE}},
                {"path": "/other"},
                {"path": "/books.*", "rateLimit": {"local": PER_SECOND}},
            ]
        },
        RateLimits(
            routes=(
                RouteRateLimit(
                    "/buy", HTTPLocalRateLimit(2, "minute", 0, 503, (("x-limited", "yes"),))
                ),
                RouteRateLimit("/books.*", HTTPLocalRateLimit(10, "second", 5)),
            )
        ),
        id="per route limits in their order; a route without a limit is left out",
    ),
    pytest.param(
        {
            "rateLimit": {"local": {"http": PER_SECOND, "tcp": {"connections": 1, "unit": "hour"}}},
            "httpRoutes": [{"path": "/buy", "rateLimit": {"local": PER_MINUTE}}],
        },
        RateLimits(
            tcp=TCPLocalRateLimit(1, "hour"),
            http=HTTPLocalRateLimit(10, "second", 5),
            routes=(
                RouteRateLimit(
                    "/buy", HTTPLocalRateLimit(2, "minute", 0, 503, (("x-limited", "yes"),))
                ),
            ),
        ),
        id="all three together",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), RATE_ROWS)
def test_rate_limits(spec: dict[str, Any], expected: RateLimits | None) -> None:
    answer, warnings = run(traffic.rate_limits_for, t.upstream_setting("b", "uts", HOST, **spec))
    assert answer == expected
    assert warnings == []
    if answer is not None:
        assert answer.origin == REF


# -- retries ----------------------------------------------------------------------------------
POLICY = RetryPolicy("5xx", 1.0, 3, 0.01)
OTHER_POLICY = {
    "retryOn": "connect-failure",
    "perTryTimeout": "0s",
    "numRetries": 1,
    "retryBackoffBaseInterval": "1s",
}
RETRY_ROWS = [
    pytest.param([], {}, [], id="no Retry: nothing"),
    pytest.param(
        [t.retry("a", "r", "client", [("b", "server")])],
        {SERVER: (POLICY, ObjectRef("Retry", "a", "r"))},
        [],
        id="a Retry from the client's service account names the destination",
    ),
    pytest.param(
        [t.retry("a", "r", "other", [("b", "server")])],
        {},
        [],
        id="a Retry from another service account does not apply",
    ),
    pytest.param(
        [t.retry("a", "r", "client", [("b", "server"), ("b", "gone")])],
        {
            SERVER: (POLICY, ObjectRef("Retry", "a", "r")),
            ServiceId("b", "gone"): (POLICY, ObjectRef("Retry", "a", "r")),
        },
        [],
        id="every destination gets the policy (a missing service is never reached)",
    ),
    pytest.param(
        [
            t.retry("a", "second", "client", [("b", "server")], OTHER_POLICY),
            t.retry("a", "first", "client", [("b", "server")]),
        ],
        {SERVER: (POLICY, ObjectRef("Retry", "a", "first"))},
        [
            "Retry a/second: Retry a/second is ignored for destination b/server: Retry "
            "a/first also names it for source a/client and comes first by namespace and name"
        ],
        id="two Retries naming one destination: the first by name wins, both named",
    ),
]


@pytest.mark.parametrize(("extra", "expected", "expected_warnings"), RETRY_ROWS)
def test_retries(extra: list[m.Doc], expected: Any, expected_warnings: list[str]) -> None:
    answer, warnings = run(traffic.retries_for, *extra, subject=CLIENT)
    assert dict(answer) == expected
    assert warnings == expected_warnings


# -- through the catalog ----------------------------------------------------------------------
def mesh_config(retry_flag: bool) -> m.Doc:
    doc = m.mesh_config(permissive=True)
    doc["spec"]["featureFlags"] = {"enableRetryPolicy": retry_flag}
    return doc


def two_ports() -> list[m.Doc]:
    """The two-tier mesh with a TCP port beside the HTTP one."""
    docs = [d for d in m.two_tier() if d["kind"] not in ("Service", "MeshConfig")]
    return [
        *docs,
        m.service(
            "b", "server", ports=((80, 8080, "http"), (5432, 5432, "tcp")), cluster_ip="10.96.0.10"
        ),
    ]


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        pytest.param(False, {80: None, 5432: None}, id="enableRetryPolicy off: no retries"),
        pytest.param(True, {80: POLICY, 5432: None}, id="on: HTTP ports only"),
    ],
)
def test_the_catalog_retries_only_with_the_feature_flag(
    flag: bool, expected: dict[int, RetryPolicy | None]
) -> None:
    cat = Catalog(
        m.state(mesh_config(flag), *two_ports(), t.retry("a", "r", "client", [("b", "server")]))
    )
    ports = {p.port: p.retry for p in cat.outbound(CLIENT).ports if p.service == SERVER}
    assert ports == expected


def test_the_catalog_attaches_connection_and_rate_limits() -> None:
    setting = t.upstream_setting(
        "b",
        "uts",
        HOST,
        connectionSettings=TCP_100,
        rateLimit={"local": {"tcp": {"connections": 5, "unit": "second"}}},
    )
    cat = Catalog(m.state(mesh_config(False), *two_ports(), setting))
    upstreams = [u for p in cat.outbound(CLIENT).ports for u in p.upstreams]
    assert {u.connection for u in upstreams} == {
        ConnectionSettings(TCPConnectionSettings(100, 2.0))
    }
    proxy = cat.proxy(ProxyId("b", "server-0"))
    assert proxy is not None
    limits = {p.port: p.rate_limits for p in cat.inbound(proxy).ports}
    assert limits == {80: RateLimits(tcp=TCPLocalRateLimit(5, "second")), 5432: limits[80]}
    assert limits[80] is not None
