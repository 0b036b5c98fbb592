"""A Python sidecar running the egress configuration our builders make, on loopback: HTTP
chosen by the HTTP inspector and routed by Host and path to a DNS cluster (a name from
/etc/hosts), TCP to the original destination, and a connection no Egress allows closed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from osm.base.wellknown import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE
from osm.catalog.policy import (
    EgressCluster,
    EgressHost,
    EgressMatch,
    EgressPolicy,
    EgressRoute,
    RequestMatch,
)
from osm.proxy import assembly, server
from osm.proxy.runtime import Options
from osm.xds import egress, lds
from osm.xds.context import Context

pytestmark = pytest.mark.timeout(60)
OUTSIDE = "203.0.113.9"
"""An address outside the mesh the app 'dialled' (the original destination)."""


async def _app() -> tuple[web.AppRunner, int]:
    async def get(request: web.Request) -> web.Response:
        return web.Response(text=f"got {request.host}")

    app = web.Application()
    app.router.add_get("/get", get)
    app.router.add_get("/other", get)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def policy(port: int) -> EgressPolicy:
    """HTTP ``localhost`` (only GET /get) on ``port``, and TCP to 127.0.0.0/8 on it too
    (the more specific destination: a connection to 127.0.0.1 takes the TCP chain)."""
    cluster = f"localhost:{port}"
    get = RequestMatch("/get", ("GET",))
    return EgressPolicy(
        matches=(
            EgressMatch(port, "http"),
            EgressMatch(port, "tcp", ("127.0.0.0/8",), (), str(port)),
        ),
        http_hosts=(EgressHost("localhost", port, (EgressRoute(get, cluster),)),),
        clusters=(
            EgressCluster(cluster, "localhost", port),
            EgressCluster(str(port), "", port),
        ),
    )


@contextlib.asynccontextmanager
async def sidecar(destination: list[tuple[str, int]], given: EgressPolicy) -> AsyncIterator[int]:
    context = Context()
    listener = lds.outbound_listener((), False, context, given)
    assert listener is not None
    resources: dict[str, dict[str, object]] = {
        LISTENER_TYPE: {listener.name: listener},
        ROUTE_TYPE: {},
        CLUSTER_TYPE: {},
    }
    for built in egress.resources(given, context):
        resources[built.type_url][built.name] = built.message
    proxy = server.Sidecar(
        Options(
            original_destination=lambda sock: destination[0],
            bind_overrides={"outbound-listener": ("127.0.0.1", 0)},
            inspect_timeout=1.0,
        )
    )
    await proxy.apply(assembly.assemble(resources))
    try:
        yield proxy.listener_address("outbound-listener")[1]
    finally:
        await proxy.close()


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def test_egress_through_the_python_sidecar() -> None:
    runner, app_port = await _app()
    destination = [(OUTSIDE, app_port)]
    try:
        async with sidecar(destination, policy(app_port)) as port:
            request = (
                f"GET /get HTTP/1.1\r\nHost: localhost:{app_port}\r\nConnection: close\r\n\r\n"
            )
            answer = await exchange(port, request.encode())
            assert answer.startswith(b"HTTP/1.1 200") and b"got localhost" in answer
            # A request the Egress's route group does not match: no route.
            other = request.replace("/get", "/other")
            assert (await exchange(port, other.encode())).startswith(b"HTTP/1.1 404")
            # Not HTTP on the HTTP port: no chain matches, the connection is closed.
            assert await exchange(port, b"\x00\x01binary\r\n") == b""
            # TCP to an allowed range: bytes proxied to the original destination, unrouted.
            destination[0] = ("127.0.0.1", app_port)
            answer = await exchange(port, other.encode())
            assert answer.startswith(b"HTTP/1.1 200") and b"got localhost" in answer
    finally:
        await runner.cleanup()
