"""Circuit breakers in the running Python sidecar across a cluster update (loopback).

As in Envoy, a changed Cluster is a new cluster: its thresholds govern every request from
then on, also when the old one had pooled connections to the same hosts. Each case sends a
burst of slow requests (the app holds every response until the whole burst is in: at the
app, waiting for a connection, or already refused), then updates the cluster and sends
another; a refused request is a 503 with ``x-envoy-overloaded: true``, counted in the
cluster's ``upstream_rq_pending_overflow``.
"""

from __future__ import annotations

import asyncio

import pytest
from envoy.config.cluster.v3 import circuit_breaker_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import wrappers_pb2

from osm.base import wellknown
from osm.proxy import assembly, server
from osm.proxy.runtime import Options
from tests.integration import proxymesh

pytestmark = pytest.mark.timeout(60)

CLUSTER = "app|80"
BURST = 8
WAIT = 5.0  # seconds any one step may take

Limits = dict[str, int]  # Thresholds fields -> values; {} = Envoy's defaults


class SlowApp:
    """An HTTP/1.1 keep-alive app that answers 200 only once `gate` is open."""

    def __init__(self) -> None:
        self.arrived = 0
        self.gate = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.arrived += 1
                await self.gate.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


def _resources(app_port: int, limits: Limits) -> dict[str, dict[str, object]]:
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=CLUSTER),
    )
    manager = proxymesh.hcm("http", "")
    manager.ClearField("rds")
    manager.route_config.CopyFrom(
        route_pb2.RouteConfiguration(
            name="inline",
            virtual_hosts=[
                route_components_pb2.VirtualHost(name="app", domains=["*"], routes=[route])
            ],
        )
    )
    cluster = proxymesh.static_cluster(CLUSTER, "127.0.0.1", app_port)
    if limits:
        thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
            **{name: wrappers_pb2.UInt32Value(value=value) for name, value in limits.items()}
        )
        cluster.circuit_breakers.thresholds.append(thresholds)
    listener = proxymesh.http_listener("http", 0, manager)
    return {
        wellknown.LISTENER_TYPE: {"http": listener},
        wellknown.CLUSTER_TYPE: {CLUSTER: cluster},
    }


async def _get(address: tuple[str, int]) -> tuple[int, bytes]:
    """-> (status, the response's head) of one request on a connection of its own."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(b"GET /slow HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    return int(head.split(b" ", 2)[1]), head


async def _burst(proxy: server.Sidecar, app: SlowApp) -> list[tuple[int, bytes]]:
    """BURST concurrent requests, answered once each is at the app, waiting for a
    connection, or refused."""
    cluster = proxy.runtime.clusters[CLUSTER]
    app.arrived = 0
    app.gate.clear()
    address = proxy.listener_address("http")
    tasks = [asyncio.ensure_future(_get(address)) for _ in range(BURST)]

    async def all_in() -> None:
        while app.arrived + cluster.pending + sum(task.done() for task in tasks) < BURST:
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(all_in(), WAIT)
    finally:
        app.gate.set()
    return await asyncio.wait_for(asyncio.gather(*tasks), WAIT)


# (limits of the first cluster, limits after the update, 503s of each burst)
CASES = [
    pytest.param({}, {}, (0, 0), id="no-limits"),
    pytest.param(
        {},
        {"max_connections": 1, "max_pending_requests": 1},
        (0, BURST - 2),
        id="connection-limits-added-after-pooling",
    ),
    pytest.param({}, {"max_requests": 2}, (0, BURST - 2), id="request-limit-added-after-pooling"),
    pytest.param(
        {"max_connections": 1, "max_pending_requests": 1},
        {},
        (BURST - 2, 0),
        id="limits-lifted",
    ),
]


@pytest.mark.parametrize(("before", "after", "refused"), CASES)
async def test_the_limits_of_the_updated_cluster_govern_every_new_request(
    before: Limits, after: Limits, refused: tuple[int, int]
) -> None:
    app = SlowApp()
    port = await app.start()
    proxy = server.Sidecar(Options())
    try:
        for limits, expected in zip((before, after), refused, strict=True):
            await proxy.apply(assembly.assemble(_resources(port, limits)))
            cluster = proxy.runtime.clusters[CLUSTER]
            overflows = cluster.stats.upstream_rq_pending_overflow.value
            answers = await _burst(proxy, app)
            statuses = sorted(status for status, _ in answers)
            assert statuses == [200] * (BURST - expected) + [503] * expected, answers
            assert all(b"\r\nx-envoy-overloaded: true" in head for s, head in answers if s == 503)
            assert cluster.stats.upstream_rq_pending_overflow.value - overflows == expected
            limit = cluster.cluster.circuit_breakers.max_connections
            assert 0 < cluster.cx_active <= min(limit, BURST)  # the pool the next case meets
    finally:
        await proxy.close()
        await app.close()
