"""Local rate limits in the running Python sidecar (loopback, fake clock): HTTP requests
over a virtual host's or a route's bucket are answered with the configured status and
headers, and pass again after a fill; TCP connections over a chain's bucket are closed."""

from __future__ import annotations

import asyncio

import pytest
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from osm.base import wellknown
from osm.model.policy import HTTPLocalRateLimit, TCPLocalRateLimit
from osm.proxy import assembly, server
from osm.proxy.runtime import Options
from osm.xds import lds, names, traffic
from osm.xds.resources import pack
from tests.integration import proxymesh

pytestmark = pytest.mark.timeout(60)

HOST_LIMIT = HTTPLocalRateLimit(2, "second", 0, 503, (("x-limited", "host"),))
ROUTE_LIMIT = HTTPLocalRateLimit(1, "minute")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _resources(app_port: int) -> dict[str, dict[str, object]]:
    limited = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/buy"),
        route=route_components_pb2.RouteAction(cluster="app|80"),
    )
    limited.typed_per_filter_config[names.HTTP_LOCAL_RATE_LIMIT].CopyFrom(
        traffic.http_rate_limit_config(ROUTE_LIMIT)
    )
    host = route_components_pb2.VirtualHost(
        name="app",
        domains=["*"],
        routes=[
            limited,
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/"),
                route=route_components_pb2.RouteAction(cluster="app|80"),
            ),
        ],
    )
    host.typed_per_filter_config[names.HTTP_LOCAL_RATE_LIMIT].CopyFrom(
        traffic.http_rate_limit_config(HOST_LIMIT)
    )
    manager = lds.http_connection_manager("http", "", rate_limit=True)
    manager.ClearField("rds")
    manager.route_config.CopyFrom(route_pb2.RouteConfiguration(name="inline", virtual_hosts=[host]))
    tcp = lds.tcp_proxy("tcp", ())
    tcp.cluster = "app|80"
    tcp_limit = traffic.tcp_rate_limit_filter(TCPLocalRateLimit(1, "minute", 1), "tcp")

    def listener(name: str, *filters: listener_components_pb2.Filter) -> listener_pb2.Listener:
        return listener_pb2.Listener(
            name=name,
            address=proxymesh.address("127.0.0.1", 0),
            filter_chains=[listener_components_pb2.FilterChain(filters=list(filters))],
        )

    return {
        wellknown.LISTENER_TYPE: {
            "http": listener(
                "http",
                listener_components_pb2.Filter(
                    name=names.HTTP_CONNECTION_MANAGER, typed_config=pack(manager)
                ),
            ),
            "tcp": listener(
                "tcp",
                tcp_limit,
                listener_components_pb2.Filter(name=names.TCP_PROXY, typed_config=pack(tcp)),
            ),
        },
        wellknown.CLUSTER_TYPE: {
            "app|80": proxymesh.static_cluster("app|80", "127.0.0.1", app_port)
        },
    }


_APP_CONNECTIONS: set[asyncio.StreamWriter] = set()
"""The app's open connections, closed when a test ends (the sidecar may still pool some)."""


async def _app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _APP_CONNECTIONS.add(writer)
    try:
        while data := await reader.read(65536):
            if data.startswith(b"ping"):
                writer.write(b"pong")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    finally:
        _APP_CONNECTIONS.discard(writer)
        writer.close()


async def _get(address: tuple[str, int], path: str) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def _ping(address: tuple[str, int]) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"ping")
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4), 5)
    except ConnectionError:
        return b""
    finally:
        writer.close()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def test_limits_refuse_over_the_rate_and_recover() -> None:
    app = await asyncio.start_server(_app, "127.0.0.1", 0)
    clock = Clock()
    proxy = server.Sidecar(Options(clock=clock))
    try:
        await proxy.apply(assembly.assemble(_resources(app.sockets[0].getsockname()[1])))
        http = proxy.listener_address("http")
        # The virtual host: 2 per second.
        answers = [await _get(http, "/books") for _ in range(3)]
        assert [_status(a) for a in answers] == [200, 200, 503]
        assert b"x-limited: host\r\n" in answers[2] and answers[2].endswith(b"local_rate_limited")
        # The route has a bucket of its own (1 per minute, 429), and the host's is not used.
        assert [_status(await _get(http, "/buy")) for _ in range(2)] == [200, 429]
        clock.now += 1.0
        assert _status(await _get(http, "/books")) == 200
        assert _status(await _get(http, "/buy")) == 429
        clock.now += 60.0
        assert _status(await _get(http, "/buy")) == 200
        # TCP: 1 per minute plus a burst of 1.
        tcp = proxy.listener_address("tcp")
        assert [await _ping(tcp) for _ in range(3)] == [b"pong", b"pong", b""]
        clock.now += 60.0
        assert await _ping(tcp) == b"pong"
    finally:
        await proxy.close()
        app.close()
        for writer in list(_APP_CONNECTIONS):
            writer.close()
            await writer.wait_closed()
        await app.wait_closed()
