"""The Python sidecar's side of Retry and UpstreamTrafficSetting: what it reads of the
traffic builders' output (the golden scenario), its token buckets (fake clock), and the
NACK, naming the field, of every local rate limit shape it does not implement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as http_rl
from envoy.extensions.filters.network.local_ratelimit.v3 import local_rate_limit_pb2 as net_rl
from google.protobuf import json_format

from osm.model.policy import HTTPLocalRateLimit, TCPLocalRateLimit
from osm.proxy import assembly, model, rate_limit
from osm.proxy.translate import ConfigError, lds, rds
from osm.xds import lds as xds_lds
from osm.xds import traffic
from osm.xds.resources import pack
from tests.unit.proxy.test_proxy_config import KINDS

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "xds" / "traffic-settings"


def assembled(name: str) -> model.ProxyConfig:
    raw: dict[str, dict[str, object]] = {}
    for kind, items in json.loads((GOLDEN / name).read_text())["resources"].items():
        type_url, cls = KINDS[kind]
        for item in items:
            message = json_format.ParseDict(item, cls())
            raw.setdefault(type_url, {})[assembly.resource_name(type_url, message)] = message
    return assembly.assemble(raw)


# -- what the sidecar reads of the generated configuration ------------------------------------
def test_the_server_reads_its_limits() -> None:
    config = assembled("b_server-0.json")
    chains = {c.name: c for c in config.listeners["inbound-listener"].filter_chains}
    tcp = chains["inbound_b/server_5432_tcp"].rate_limit
    assert tcp is not None and (tcp.max_tokens, tcp.tokens_per_fill, tcp.fill_interval) == (
        110,
        100,
        60.0,
    )
    http_chain = chains["inbound_b/server_8080_http"]
    assert isinstance(http_chain.terminal, model.HttpConnectionManager)
    assert http_chain.terminal.local_rate_limit
    routes = config.route_configs["rds-inbound.8080"].virtual_hosts[0].routes
    patterns = [r.match.regex.pattern if r.match.regex else r.match.value for r in routes]
    assert patterns[0] == "/buy"  # the httpRoutes path comes first
    limits = [(pattern, r.rate_limit) for pattern, r in zip(patterns, routes, strict=True)]
    buy, *others = limits
    assert buy[1] is not None and (buy[1].max_tokens, buy[1].status) == (1, 429)
    host_limits = {limit for _, limit in others}
    assert len(host_limits) == 1  # one virtual host limit: one bucket for every other route
    (host,) = host_limits
    assert host is not None
    assert (host.max_tokens, host.tokens_per_fill, host.fill_interval) == (15, 10, 1.0)
    assert (host.status, host.response_headers) == (503, (("x-limited", "host"),))


def test_the_client_reads_its_retries_and_circuit_breakers() -> None:
    config = assembled("a_client-0.json")
    http_cluster = config.clusters["b/server|80"]
    assert http_cluster.circuit_breakers == model.CircuitBreakers(50, 5, 20, 2**32 - 1)
    assert (http_cluster.connect_timeout, http_cluster.max_requests_per_connection) == (2.0, 10)
    assert config.clusters["b/server|5432"].max_requests_per_connection is None
    (route,) = config.route_configs["rds-outbound.80"].virtual_hosts[0].routes
    assert route.action.retry == model.RetryPolicy(frozenset({"5xx"}), 3, 1.0, frozenset(), 0.01)


# -- token buckets -----------------------------------------------------------------------------
LIMIT = model.LocalRateLimit("scope", max_tokens=3, tokens_per_fill=2, fill_interval=10.0)


@pytest.mark.parametrize(
    ("takes", "expected"),
    [
        pytest.param([0, 0, 0, 0], [True, True, True, False], id="starts full: max tokens"),
        pytest.param(
            [0, 0, 0, 9.9, 10],
            [True, True, True, False, True],
            id="refills only when a whole interval has passed",
        ),
        pytest.param(
            [0, 0, 0, 10, 10, 10],
            [True, True, True, True, True, False],
            id="a fill gives tokens_per_fill",
        ),
        pytest.param(
            [0, 100, 100, 100, 100],
            [True, True, True, True, False],
            id="never above max tokens",
        ),
    ],
)
def test_token_bucket(takes: list[float], expected: list[bool]) -> None:
    bucket = rate_limit.TokenBucket(LIMIT, 0.0)
    assert [bucket.take(now) for now in takes] == expected


def _with_limits(*limits: model.LocalRateLimit) -> model.ProxyConfig:
    match = model.RouteMatch("prefix", "/", None, True, ())
    action = model.RouteAction((model.WeightedTarget("c", 1),), 1, None, None)
    routes = tuple(model.Route("", match, action, None, limit) for limit in limits)
    route_config = model.RouteConfig("r", (model.VirtualHost("h", ("*",), routes),))
    return model.ProxyConfig({}, {"r": route_config}, {}, {}, {}, {}, {})


def test_buckets_carry_over_while_their_limit_is_configured() -> None:
    first = rate_limit.carry_over({}, _with_limits(LIMIT), 0.0)
    assert first[LIMIT].take(0.0)
    kept = rate_limit.carry_over(first, _with_limits(LIMIT), 1.0)
    assert kept[LIMIT] is first[LIMIT]
    changed = model.LocalRateLimit("scope", 5, 2, 10.0)
    fresh = rate_limit.carry_over(kept, _with_limits(changed), 2.0)
    assert set(fresh) == {changed} and fresh[changed].tokens == 5


# -- NACKs --------------------------------------------------------------------------------------
def _valid() -> http_rl.LocalRateLimit:
    message = http_rl.LocalRateLimit()
    traffic.http_rate_limit_config(HTTPLocalRateLimit(1, "second")).Unpack(message)
    return message


def _half(message: http_rl.LocalRateLimit) -> None:
    message.filter_enabled.default_value.numerator = 50


def _per_connection(message: http_rl.LocalRateLimit) -> None:
    message.local_rate_limit_per_downstream_connection = True


def _descriptor(message: http_rl.LocalRateLimit) -> None:
    message.descriptors.add().entries.add(key="k", value="v")


def _x_ratelimit_headers(message: http_rl.LocalRateLimit) -> None:
    message.enable_x_ratelimit_headers = 1


def _no_bucket(message: http_rl.LocalRateLimit) -> None:
    message.ClearField("token_bucket")


def _append_if_absent_request_headers(message: http_rl.LocalRateLimit) -> None:
    message.request_headers_to_add_when_not_enforced.add(header=base_pb2.HeaderValue(key="a"))


ROUTE_NACKS = [
    pytest.param(_half, "filter_enabled.default_value", id="a share other than 0% or 100%"),
    pytest.param(
        _per_connection,
        "local_rate_limit_per_downstream_connection",
        id="a bucket per connection",
    ),
    pytest.param(_descriptor, "descriptors", id="descriptors"),
    pytest.param(_x_ratelimit_headers, "enable_x_ratelimit_headers", id="x-ratelimit headers"),
    pytest.param(_no_bucket, "token_bucket", id="no token bucket"),
    pytest.param(
        _append_if_absent_request_headers,
        "request_headers_to_add_when_not_enforced",
        id="request headers when not enforced",
    ),
]


@pytest.mark.parametrize(("mutate", "field"), ROUTE_NACKS)
def test_route_limits_the_sidecar_does_not_implement_are_refused_by_field(
    mutate: Any, field: str
) -> None:
    config = _valid()
    mutate(config)
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster="c"),
    )
    route.typed_per_filter_config["envoy.filters.http.local_ratelimit"].CopyFrom(pack(config))
    message = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[route_components_pb2.VirtualHost(name="h", domains=["*"], routes=[route])],
    )
    with pytest.raises(ConfigError) as error:
        rds.translate(message)
    assert error.value.field_path.endswith(field), error.value
    assert "envoy.filters.http.local_ratelimit" in error.value.field_path


def _chain(*filters: listener_components_pb2.Filter) -> listener_pb2.Listener:
    tcp = xds_lds.tcp_proxy("s", ())
    tcp.cluster = "c"
    return listener_pb2.Listener(
        name="l",
        address=xds_lds.common.socket_address("0.0.0.0", 1),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[*filters, listener_components_pb2.Filter(name="t", typed_config=pack(tcp))]
            )
        ],
    )


def test_a_network_limit_with_a_runtime_switch_or_a_shared_bucket_is_refused() -> None:
    for field in ("runtime_enabled", "share_key"):
        filter_ = traffic.tcp_rate_limit_filter(TCPLocalRateLimit(1, "second"), "s")
        config = net_rl.LocalRateLimit()
        filter_.typed_config.Unpack(config)
        if field == "share_key":
            config.share_key = "k"
        else:
            config.runtime_enabled.default_value.value = True
            config.runtime_enabled.runtime_key = "k"
        filter_.typed_config.CopyFrom(pack(config))
        with pytest.raises(ConfigError) as error:
            lds.translate(_chain(filter_))
        assert error.value.field_path == f"filter_chains[0].filters[0].typed_config.{field}"


def test_the_http_filter_takes_no_bucket_of_its_own_and_follows_rbac() -> None:
    with_bucket = traffic.http_rate_limit_filter()
    config = http_rl.LocalRateLimit()
    with_bucket.typed_config.Unpack(config)
    config.token_bucket.max_tokens = 1
    with_bucket.typed_config.CopyFrom(pack(config))
    manager = xds_lds.http_connection_manager("s", "r", rbac=True, rate_limit=True)
    manager.http_filters[1].CopyFrom(with_bucket)
    chain = listener_components_pb2.Filter(name="hcm", typed_config=pack(manager))
    with pytest.raises(ConfigError) as error:
        lds.translate(_chain(chain))
    assert error.value.field_path.endswith("http_filters[1].typed_config.token_bucket")
    reordered = xds_lds.http_connection_manager("s", "r", rbac=True, rate_limit=True)
    filters = list(reordered.http_filters)
    del reordered.http_filters[:]
    reordered.http_filters.extend([filters[1], filters[0], filters[2]])
    chain = listener_components_pb2.Filter(name="hcm", typed_config=pack(reordered))
    with pytest.raises(ConfigError) as error:
        lds.translate(_chain(chain))
    assert "must follow envoy.filters.http.rbac" in str(error.value)


def test_a_route_limit_at_0_percent_is_no_limit() -> None:
    config = _valid()
    config.filter_enforced.default_value.numerator = 0
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster="c"),
    )
    route.typed_per_filter_config["envoy.filters.http.local_ratelimit"].CopyFrom(pack(config))
    message = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[route_components_pb2.VirtualHost(name="h", domains=["*"], routes=[route])],
    )
    assert rds.translate(message).virtual_hosts[0].routes[0].rate_limit is None
