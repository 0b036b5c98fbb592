"""The Envoy shapes of Retry and UpstreamTrafficSetting (`osm.xds.traffic`), where the
builders put them, and how a change to one rebuilds only what it affects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from osm.base.wellknown import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE
from osm.catalog.ids import ProxyId
from osm.model.meta import ObjectRef
from osm.model.policy import (
    ConnectionSettings,
    HTTPConnectionSettings,
    HTTPLocalRateLimit,
    RetryPolicy,
    TCPConnectionSettings,
    TCPLocalRateLimit,
)
from osm.xds import names, traffic
from osm.xds.generator import Generator, build_snapshots
from osm.xds.snapshot import Snapshots
from tests.unit.catalog import meshes as m
from tests.unit.catalog import traffic_docs as t
from tests.unit.xds import xds_support

MAX = 2**32 - 1
CLIENT = ProxyId("a", "client-0")
SERVER = ProxyId("b", "server-0")


def as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


# -- circuit breakers ---------------------------------------------------------------------------
BREAKER_ROWS = [
    pytest.param(None, None, id="no setting: no thresholds (Envoy's defaults)"),
    pytest.param(
        ConnectionSettings(),
        {"maxConnections": MAX, "maxPendingRequests": MAX, "maxRequests": MAX, "maxRetries": MAX},
        id="a setting without limits: OSM's 2^32-1 everywhere",
    ),
    pytest.param(
        ConnectionSettings(tcp=TCPConnectionSettings(max_connections=7)),
        {"maxConnections": 7, "maxPendingRequests": MAX, "maxRequests": MAX, "maxRetries": MAX},
        id="tcp maxConnections",
    ),
    pytest.param(
        ConnectionSettings(http=HTTPConnectionSettings(10, 99, 3, 2)),
        {"maxConnections": MAX, "maxPendingRequests": 3, "maxRequests": 10, "maxRetries": 2},
        id="http maxRequests, maxPendingRequests, maxRetries",
    ),
]


@pytest.mark.parametrize(("connection", "expected"), BREAKER_ROWS)
def test_circuit_breakers(connection: ConnectionSettings | None, expected: Any) -> None:
    breakers = traffic.circuit_breakers(connection)
    if expected is None:
        assert breakers is None
    else:
        assert breakers is not None
        assert as_dict(breakers) == {"thresholds": [{**expected, "trackRemaining": True}]}


def _options(cluster: cluster_pb2.Cluster) -> dict[str, Any] | None:
    packed = cluster.typed_extension_protocol_options.get(names.HTTP_PROTOCOL_OPTIONS)
    if packed is None:
        return None
    options = http_protocol_options_pb2.HttpProtocolOptions()
    packed.Unpack(options)
    return as_dict(options)


PER_CONNECTION = ConnectionSettings(
    TCPConnectionSettings(connect_timeout=2.5),
    HTTPConnectionSettings(max_requests_per_connection=4),
)


@pytest.mark.parametrize(
    ("http2", "http", "expected"),
    [
        pytest.param(
            False,
            True,
            {
                "explicitHttpConfig": {"httpProtocolOptions": {}},
                "commonHttpProtocolOptions": {"maxRequestsPerConnection": 4},
            },
            id="HTTP: HTTP/1.1, as without options, with requests per connection",
        ),
        pytest.param(
            True,
            True,
            {
                "explicitHttpConfig": {"http2ProtocolOptions": {}},
                "commonHttpProtocolOptions": {"maxRequestsPerConnection": 4},
            },
            id="gRPC: its HTTP/2 kept",
        ),
        pytest.param(False, False, None, id="TCP: no requests, no options"),
    ],
)
def test_connection_settings_on_a_cluster(http2: bool, http: bool, expected: Any) -> None:
    cluster = cluster_pb2.Cluster(name="c")
    if http2:
        options = http_protocol_options_pb2.HttpProtocolOptions()
        options.explicit_http_config.http2_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[names.HTTP_PROTOCOL_OPTIONS].Pack(options)
    traffic.apply_connection(cluster, PER_CONNECTION, http)
    assert _options(cluster) == expected
    assert cluster.connect_timeout.ToMilliseconds() == 2500
    assert cluster.HasField("circuit_breakers")


# -- retries -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            RetryPolicy("5xx,reset", 1.5, 3, 0.025),
            {
                "retryOn": "5xx,reset",
                "numRetries": 3,
                "perTryTimeout": "1.500s",
                "retryBackOff": {"baseInterval": "0.025s"},
            },
            id="every field",
        ),
        pytest.param(
            RetryPolicy("connect-failure", 0.0, 0, 1.0),
            {"retryOn": "connect-failure", "numRetries": 0, "retryBackOff": {"baseInterval": "1s"}},
            id="per-try timeout 0: each try has the route's; 0 retries written",
        ),
    ],
)
def test_retry_policy(policy: RetryPolicy, expected: dict[str, Any]) -> None:
    assert as_dict(traffic.retry_policy(policy)) == expected


# -- rate limits ---------------------------------------------------------------------------------
def test_tcp_rate_limit_filter() -> None:
    filter_ = traffic.tcp_rate_limit_filter(TCPLocalRateLimit(MAX, "hour", 5), "stats")
    assert as_dict(filter_) == {
        "name": "envoy.filters.network.local_ratelimit",
        "typedConfig": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
            "statPrefix": "stats",
            "tokenBucket": {"maxTokens": MAX, "tokensPerFill": MAX, "fillInterval": "3600s"},
        },
    }


def test_http_rate_limit_config_and_filter() -> None:
    limit = HTTPLocalRateLimit(3, "minute", 2, 503, (("x-a", "1"),))
    assert as_dict(traffic.http_rate_limit_config(limit)) == {
        "@type": "type.googleapis.com/"
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "statPrefix": "http_local_rate_limiter",
        "status": {"code": "ServiceUnavailable"},
        "tokenBucket": {"maxTokens": 5, "tokensPerFill": 3, "fillInterval": "60s"},
        "filterEnabled": {"defaultValue": {"numerator": 100}},
        "filterEnforced": {"defaultValue": {"numerator": 100}},
        "responseHeadersToAdd": [
            {"header": {"key": "x-a", "value": "1"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ],
    }
    assert as_dict(traffic.http_rate_limit_filter()) == {
        "name": "envoy.filters.http.local_ratelimit",
        "typedConfig": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "statPrefix": "http_local_rate_limiter",
        },
    }


# -- placement -----------------------------------------------------------------------------------
def resource(built: Snapshots, proxy: ProxyId, url: str, name: str) -> dict[str, Any]:
    return as_dict(built.snapshots[proxy].of_type(url)[name].message)


def test_retry_flag_off_gives_no_retry_policy() -> None:
    on = build_snapshots(xds_support.traffic_mesh(retries=True))
    off = build_snapshots(xds_support.traffic_mesh(retries=False))
    for built, expected in ((on, True), (off, False)):
        config = resource(built, CLIENT, ROUTE_TYPE, "rds-outbound.80")
        routes = [r for host in config["virtualHosts"] for r in host["routes"]]
        assert routes and all(("retryPolicy" in r["route"]) is expected for r in routes)


def test_only_the_limited_port_gets_filters_and_only_the_setting_s_service_its_limits() -> None:
    only_tcp = {"rateLimit": {"local": {"tcp": {"connections": 1, "unit": "second"}}}}
    built = build_snapshots(xds_support.traffic_mesh(setting=only_tcp))
    listener = resource(built, SERVER, LISTENER_TYPE, names.INBOUND_LISTENER)
    filters = {c["name"]: [f["name"] for f in c["filters"]] for c in listener["filterChains"]}
    assert filters == {
        "inbound_b/server_8080_http": [
            names.NETWORK_RBAC,
            names.NETWORK_LOCAL_RATE_LIMIT,
            names.HTTP_CONNECTION_MANAGER,
        ],
        "inbound_b/server_5432_tcp": [
            names.NETWORK_RBAC,
            names.NETWORK_LOCAL_RATE_LIMIT,
            names.TCP_PROXY,
        ],
    }
    hcm = listener["filterChains"][0]["filters"][2]["typedConfig"]
    assert [f["name"] for f in hcm["httpFilters"]] == [
        names.HTTP_RBAC,
        names.HTTP_LOCAL_RATE_LIMIT,  # always there; without HTTP limits RDS gives it none
        names.ROUTER,
    ]
    routes = resource(built, SERVER, ROUTE_TYPE, names.inbound_route_config(8080))
    assert names.HTTP_LOCAL_RATE_LIMIT not in json.dumps(routes)
    clusters = built.snapshots[CLIENT].of_type(CLUSTER_TYPE)
    assert not any(
        as_dict(c.message).get("circuitBreakers") for c in clusters.values()
    )  # no connectionSettings: the clients' clusters are as without a setting


# -- incremental builds -------------------------------------------------------------------------
def versions(built: Snapshots) -> dict[ProxyId, dict[str, str]]:
    return {p: s.resources.versions() for p, s in built.snapshots.items()}


SETTING_CHANGES = [
    pytest.param(
        [
            t.upstream_setting(
                "b",
                "server",
                "server.b.svc.cluster.local",
                connectionSettings={"tcp": {"maxConnections": 1}},
            )
        ],
        [],
        id="setting changed",
    ),
    pytest.param([], [ObjectRef("UpstreamTrafficSetting", "b", "server")], id="setting removed"),
    pytest.param([], [ObjectRef("Retry", "a", "retry-server")], id="retry removed"),
    pytest.param(
        [
            t.retry(
                "a", "retry-server", "client", [("b", "server")], {**t.RETRY_5XX, "numRetries": 9}
            )
        ],
        [],
        id="retry changed",
    ),
]


@pytest.mark.parametrize(("upserts", "deletes"), SETTING_CHANGES)
def test_a_policy_change_rebuilds_incrementally_as_a_cold_build(
    upserts: list[m.Doc], deletes: list[ObjectRef]
) -> None:
    generator = Generator()
    state = xds_support.traffic_mesh()
    generator.build(state)
    after, changed = state.with_changes(upserts=m.parse(*upserts), deletes=deletes)
    incremental = generator.build(after, changed)
    assert versions(incremental) == versions(build_snapshots(after))


def test_a_setting_change_rebuilds_only_the_resources_it_configures() -> None:
    """A new connection limit: the clients' clusters of the service, nothing else (the
    server's own resources do not change: its rate limits are the same)."""
    generator = Generator()
    state = xds_support.traffic_mesh()
    before = generator.build(state)
    spec = {
        **xds_support.TRAFFIC_SETTING_SPEC,
        "connectionSettings": {"tcp": {"maxConnections": 1}},
    }
    setting = t.upstream_setting("b", "server", "server.b.svc.cluster.local", **spec)
    after, changed = state.with_changes(upserts=m.parse(setting))
    built = generator.build(after, changed)
    assert built.changed == {CLIENT}
    assert built.stats.resources_built == 2  # b/server|80 and b/server|5432
    old, new = versions(before)[CLIENT], versions(built)[CLIENT]
    assert {url for url in new if old[url] != new[url]} == {CLUSTER_TYPE}


HTTP_LIMIT = {"requests": 10, "unit": "second", "burst": 5}
ROUTE_LIMITS = [{"path": "/buy", "rateLimit": {"local": {"requests": 1, "unit": "minute"}}}]
CONNECTIONS = {"tcp": {"maxConnections": 1}}
TCP_LIMIT = {"connections": 100, "unit": "minute"}
WHAT_A_NEW_SETTING_CHANGES = [
    pytest.param(
        {"rateLimit": {"local": {"http": HTTP_LIMIT}}}, {ROUTE_TYPE},
        id="http limit: the server's route configurations only",
    ),
    pytest.param(
        {"httpRoutes": ROUTE_LIMITS}, {ROUTE_TYPE},
        id="httpRoutes limits: the server's route configurations only",
    ),
    pytest.param(
        {"rateLimit": {"local": {"http": HTTP_LIMIT}}, "httpRoutes": ROUTE_LIMITS,
         "connectionSettings": CONNECTIONS},
        {ROUTE_TYPE, CLUSTER_TYPE},
        id="http limits and connection settings: routes, and the clients' clusters",
    ),
    pytest.param(
        {"rateLimit": {"local": {"tcp": TCP_LIMIT}}}, {LISTENER_TYPE},
        id="tcp limit: a network filter on the inbound chains, the listener changes",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), WHAT_A_NEW_SETTING_CHANGES)
def test_adding_http_limits_changes_no_listener(spec: dict[str, Any], expected: set[str]) -> None:
    """The inbound HCM always holds the HTTP limit filter, so a new HTTP limit is RDS
    only: Envoy applies it to the connections already open, which a listener change
    would leave on their old filter chain until drained. A TCP limit is a network
    filter, so it changes the listener."""
    full = xds_support.traffic_mesh()
    state, _ = full.with_changes(deletes=[ObjectRef("UpstreamTrafficSetting", "b", "server")])
    generator = Generator()
    before = versions(generator.build(state))
    setting = t.upstream_setting("b", "server", "server.b.svc.cluster.local", **spec)
    after, changed = state.with_changes(upserts=m.parse(setting))
    built = generator.build(after, changed)
    now = versions(built)
    assert {url for p in now for url in now[p] if now[p][url] != before[p][url]} == expected
    assert now == versions(build_snapshots(after))
