"""Load balancing, outlier ejection (fake clock), circuit breakers and stat names."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from osm.proxy import model, stats, upstream


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cluster(
    lb: str = "ROUND_ROBIN",
    outlier: model.OutlierDetection | None = None,
    breakers: model.CircuitBreakers | None = None,
    kind: str = "STATIC",
) -> model.Cluster:
    return model.Cluster(
        name="ns/svc|80",
        stat_name="ns/svc|80",
        kind=kind,  # type: ignore[arg-type]
        eds_service_name="",
        lb_policy=lb,  # type: ignore[arg-type]
        connect_timeout=1.0,
        circuit_breakers=breakers or model.CircuitBreakers(),
        outlier_detection=outlier,
        tls=None,
        endpoints=(),
        max_requests_per_connection=None,
    )


ENDPOINTS = tuple(model.Endpoint(f"10.0.0.{index}", 80) for index in range(1, 4))


def runtime(
    definition: model.Cluster,
    endpoints: tuple[model.Endpoint, ...] = ENDPOINTS,
    clock: Clock | None = None,
    randrange: object = None,
) -> upstream.ClusterRuntime:
    return upstream.ClusterRuntime(
        definition,
        endpoints,
        stats.Stats(),
        lambda: None,
        clock or Clock(),
        randrange or (lambda n: 0),  # type: ignore[arg-type]
    )


def test_round_robin_cycles() -> None:
    balancer = runtime(cluster())
    picks = [balancer.pick() for _ in range(6)]
    assert [host.address for host in picks if host] == [
        "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1",
    ]  # fmt: skip


def test_weighted_round_robin() -> None:
    endpoints = (model.Endpoint("a", 1, 3), model.Endpoint("b", 1, 1))
    balancer = runtime(cluster(), endpoints)
    picks = [host.address for host in (balancer.pick() for _ in range(8)) if host]
    assert picks.count("a") == 6 and picks.count("b") == 2


def test_least_request_prefers_the_idler_of_two() -> None:
    choices = iter([0, 1])
    balancer = runtime(cluster("LEAST_REQUEST"), randrange=lambda n: next(choices))
    balancer.hosts[0].active_requests = 5
    host = balancer.pick()
    assert host is balancer.hosts[1]


def test_updates_keep_hosts_and_pools() -> None:
    balancer = runtime(cluster())
    first = balancer.hosts[0]
    balancer.update(cluster(), (*ENDPOINTS[:1], model.Endpoint("10.0.0.9", 80)), lambda: None)
    assert balancer.hosts[0] is first
    assert [host.address for host in balancer.hosts] == ["10.0.0.1", "10.0.0.9"]
    assert balancer.stats.membership_total.value == 2


def test_original_destination_hosts() -> None:
    balancer = runtime(cluster("CLUSTER_PROVIDED", kind="ORIGINAL_DST"), ())
    host = balancer.pick(("192.168.1.1", 443))
    assert host is not None and host.label == "192.168.1.1:443"
    assert balancer.pick(("192.168.1.1", 443)) is host
    assert balancer.pick(None) is None


def test_consecutive_5xx_ejects_then_returns_after_the_ejection_time() -> None:
    clock = Clock()
    detection = model.OutlierDetection(consecutive_5xx=3, base_ejection_time=30.0)
    balancer = runtime(cluster(outlier=detection), clock=clock)
    bad = balancer.hosts[0]
    for _ in range(2):
        balancer.record(bad, True)
    balancer.record(bad, False)  # a success resets the count
    for _ in range(3):
        balancer.record(bad, True)
    assert bad.ejected_until == clock.now + 30.0
    assert balancer.stats.outlier_detection_ejections_enforced_total.value == 1
    assert all(balancer.pick() is not bad for _ in range(10))
    # the max ejection percentage (10%) stops a second ejection
    for _ in range(3):
        balancer.record(balancer.hosts[1], True)
    assert balancer.hosts[1].ejected_until == 0.0
    clock.now += 31
    assert any(balancer.pick() is bad for _ in range(10))
    for _ in range(3):
        balancer.record(bad, True)
    assert bad.ejected_until == clock.now + 60.0  # ejected twice: twice as long


def test_panic_mode_when_most_hosts_are_ejected() -> None:
    clock = Clock()
    balancer = runtime(cluster(), ENDPOINTS[:2], clock=clock)
    balancer.hosts[0].ejected_until = clock.now + 10
    balancer.hosts[1].ejected_until = clock.now + 10
    assert balancer.pick() is not None


def test_max_requests_overflows() -> None:
    balancer = runtime(cluster(breakers=model.CircuitBreakers(max_requests=1)))
    balancer.start_request()
    with pytest.raises(upstream.Overflow):
        balancer.start_request()
    assert balancer.stats.upstream_rq_pending_overflow.value == 1
    balancer.end_request()
    balancer.start_request()


def test_retry_budget() -> None:
    balancer = runtime(cluster(breakers=model.CircuitBreakers(max_retries=1)))
    assert balancer.try_retry()
    assert not balancer.try_retry()
    balancer.end_retry()
    assert balancer.try_retry()


async def test_pending_requests_wait_for_a_connection_slot() -> None:
    breakers = model.CircuitBreakers(max_connections=0, max_pending_requests=0)
    balancer = runtime(cluster(breakers=breakers))
    with pytest.raises(upstream.Overflow):
        await balancer.acquire_http(balancer.hosts[0])
    assert balancer.stats.upstream_cx_overflow.value == 1


async def test_connect_failure() -> None:
    balancer = runtime(cluster(), (model.Endpoint("127.0.0.1", 1),))
    with pytest.raises(upstream.ConnectFailure):
        await balancer.acquire_http(balancer.hosts[0])
    assert balancer.cx_active == 0
    assert balancer.stats.upstream_cx_connect_fail.value == 1


class Silent:
    """A loopback server that accepts and never answers; `close` ends its connections."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> model.Endpoint:
        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return model.Endpoint("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def close(self, balancer: upstream.ClusterRuntime) -> None:
        balancer.close_idle()
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.01)  # let the transports finish closing


async def _pooled_pair(
    definition: model.Cluster,
) -> tuple[upstream.ClusterRuntime, upstream.UpstreamHttp, Silent]:
    """A runtime on a loopback server with one idle pooled connection and one busy one."""
    server = Silent()
    balancer = runtime(definition, (await server.start(),))
    host = balancer.hosts[0]
    idle = await balancer.acquire_http(host)
    busy = await balancer.acquire_http(host)
    balancer.release_http(idle, True)
    assert host.idle == [idle] and balancer.cx_active == 2
    return balancer, busy, server


UNLIMITED = cluster()
LIMITED = cluster(breakers=model.CircuitBreakers(max_connections=1, max_pending_requests=1))


# (the cluster after the update, its pool kept: the idle connection stays, the busy one is
#  pooled when released)
UPDATES = [
    pytest.param(UNLIMITED, True, id="same-cluster-keeps-the-pool"),
    pytest.param(LIMITED, False, id="changed-cluster-drains-the-pool"),
    pytest.param(
        dataclasses.replace(UNLIMITED, max_requests_per_connection=5),
        False,
        id="any-change-drains-the-pool",
    ),
]


@pytest.mark.parametrize(("updated", "kept"), UPDATES)
async def test_a_changed_cluster_drains_the_connections_of_the_old_one(
    updated: model.Cluster, kept: bool
) -> None:
    balancer, busy, server = await _pooled_pair(UNLIMITED)
    try:
        host = balancer.hosts[0]
        balancer.update(updated, (model.Endpoint(*host.key),), _none)
        assert (len(host.idle), balancer.cx_active) == ((1, 2) if kept else (0, 1))
        balancer.release_http(busy, True)
        assert (len(host.idle), balancer.cx_active) == ((2, 2) if kept else (0, 0))
        assert balancer.stats.upstream_cx_active.value == balancer.cx_active
    finally:
        busy.connection.close()
        await server.close(balancer)


async def test_a_request_waiting_for_a_connection_rechecks_the_new_limits() -> None:
    breakers = model.CircuitBreakers(max_connections=1, max_pending_requests=1)
    balancer, busy, server = await _pooled_pair(cluster(breakers=model.CircuitBreakers()))
    try:
        host = balancer.hosts[0]
        balancer.update(cluster(breakers=breakers), (model.Endpoint(*host.key),), _none)
        assert balancer.cx_active == 1  # the busy one counts until it ends
        waiting = asyncio.ensure_future(balancer.acquire_http(host))
        await asyncio.sleep(0)
        assert balancer.pending == 1
        with pytest.raises(upstream.Overflow):  # the one pending slot is taken
            await balancer.acquire_http(host)
        assert balancer.stats.upstream_rq_pending_overflow.value == 1
        balancer.update(
            cluster(breakers=model.CircuitBreakers(max_connections=2)),
            (model.Endpoint(*host.key),),
            _none,
        )
        fresh = await asyncio.wait_for(waiting, 5)  # limits raised: it connects at once
        assert balancer.cx_active == 2 and fresh.generation == balancer.generation
        balancer.release_http(busy, True)  # of an older cluster: closed, not pooled
        balancer.release_http(fresh, True)
        assert host.idle == [fresh] and balancer.cx_active == 1
    finally:
        busy.connection.close()
        await server.close(balancer)


def test_request_and_retry_limits_follow_updates() -> None:
    balancer = runtime(cluster())
    balancer.start_request()
    balancer.start_request()
    assert balancer.try_retry()
    limits = model.CircuitBreakers(max_requests=2, max_retries=1)
    balancer.update(cluster(breakers=limits), ENDPOINTS, _none)
    with pytest.raises(upstream.Overflow):  # the two in flight count against the new limit
        balancer.start_request()
    assert not balancer.try_retry()
    balancer.end_request()
    balancer.end_retry()
    balancer.start_request()
    assert balancer.try_retry()


def _none() -> None:
    return None


def test_stat_names_text_and_prometheus() -> None:
    registry = stats.Stats()
    cluster_stats = stats.ClusterStats(registry, "ns/svc|80")
    cluster_stats.upstream_rq_total.value += 2
    cluster_stats.response(200)
    cluster_stats.response(503)
    http = stats.HttpStats(registry, "outbound_ns/svc_80")
    http.rbac_denied.value += 1
    text = registry.text()
    assert "cluster.ns/svc|80.upstream_rq_total: 2\n" in text
    assert "cluster.ns/svc|80.upstream_rq_2xx: 1\n" in text
    assert "cluster.ns/svc|80.upstream_rq_503: 1\n" in text
    assert "http.outbound_ns/svc_80.rbac.denied: 1\n" in text
    prom = registry.prometheus()
    assert "# TYPE envoy_cluster_upstream_rq_total counter" in prom
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="ns/svc|80"} 2' in prom
    assert (
        'envoy_cluster_upstream_rq_xx{envoy_cluster_name="ns/svc|80",'
        'envoy_response_code_class="5"} 1'
    ) in prom
    assert 'envoy_http_rbac_denied{envoy_http_conn_manager_prefix="outbound_ns/svc_80"} 1' in prom
