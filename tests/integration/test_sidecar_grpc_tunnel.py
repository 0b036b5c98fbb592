"""A gRPC port between two Python sidecars configured by a real controller: whatever the
application sends (its own HTTP/2) crosses both sidecars as bytes in the mTLS tunnel.

Local mode marks its pods ``osm-py.io/sidecar: python``; here the Pod objects carry
that mark as the runtime writes it. The client's outbound sidecar is told the original
destination (the service's ClusterIP and gRPC port); the server's inbound sidecar
listens on the pod IP; the application listens on loopback. In SMI mode only sources
allowed every request on the port may connect: a route naming one gRPC method allows
nothing there (and the controller says so), a TCPRoute does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from osm.base.identity import Identity
from osm.controller import server
from osm.proxy import main
from tests import controllers
from tests.integration.test_sidecar_controller import (
    LOOPBACK_ANY,
    WAIT,
    app_port,
    apply,
    eventually,
    start_sidecar,
    write_bootstrap,
)
from tests.unit.catalog import meshes

pytestmark = pytest.mark.timeout(90)

CLIENT_IP, SERVER_IP = "127.0.0.2", "127.0.0.3"  # SERVER_IP: where app_port() is free
SERVICE_IP, GRPC_PORT = "10.96.0.20", 9090
PYTHON = {"osm-py.io/sidecar": "python"}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # what a gRPC client sends first
METHOD = "/demo.Echo/Say"


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[server.Controller]:
    async with controllers.running(tmp_path / "state") as running:
        yield running


def mesh(port: int, permissive: bool) -> list[dict[str, Any]]:
    return [
        meshes.namespace("osm-system", mesh=False),
        meshes.mesh_config(permissive=permissive),
        meshes.namespace("a"),
        meshes.namespace("b"),
        meshes.pod("a", "client-0", {"app": "client"}, "client", CLIENT_IP, annotations=PYTHON),
        meshes.service("b", "echo", ports=((GRPC_PORT, port, "grpc"),), cluster_ip=SERVICE_IP),
        meshes.pod("b", "echo-0", {"app": "echo"}, "echo", SERVER_IP, annotations=PYTHON),
    ]


def one_method_only() -> list[dict[str, Any]]:
    """The client may call one method: Envoy could enforce it, a Python sidecar cannot."""
    return [
        meshes.route_group("b", "say", [{"name": "say", "pathRegex": METHOD, "methods": ["POST"]}]),
        meshes.traffic_target(
            "b", "say", "echo", [("a", "client")], [("HTTPRouteGroup", "say", [])]
        ),
    ]


def tcp_route() -> list[dict[str, Any]]:
    return [
        meshes.tcp_route("b", "grpc", [GRPC_PORT]),
        meshes.traffic_target("b", "tcp", "echo", [("a", "client")], [("TCPRoute", "grpc", [])]),
    ]


@contextlib.asynccontextmanager
async def two_sidecars(
    controller: server.Controller, tmp_path: Path, port: int
) -> AsyncIterator[tuple[main.Sidecar, main.Sidecar]]:
    """The client's and the server's sidecars, configured (and both accepting it)."""
    client = await start_sidecar(
        write_bootstrap(
            controller,
            tmp_path / "client",
            "client-0",
            Identity("a", "client"),
            {"outbound-listener": LOOPBACK_ANY, "inbound-prometheus-listener": LOOPBACK_ANY},
        ),
        lambda sock: (SERVICE_IP, GRPC_PORT),
    )
    server = await start_sidecar(
        write_bootstrap(
            controller,
            tmp_path / "server",
            "echo-0",
            Identity("b", "echo"),
            {
                "outbound-listener": LOOPBACK_ANY,
                "inbound-prometheus-listener": LOOPBACK_ANY,
                "inbound-listener": (SERVER_IP, port),
            },
        )
    )
    try:
        await client.wait_ready(WAIT)
        await server.wait_ready(WAIT)
        # Both accepted the whole configuration (a gRPC port used to NACK all of CDS).
        assert client.core.last_rejection is None
        assert server.core.last_rejection is None
        yield client, server
        assert client.core.last_rejection is None
        assert server.core.last_rejection is None
    finally:
        await client.stop(0.1)
        await server.stop(0.1)


@contextlib.asynccontextmanager
async def echo_app(port: int) -> AsyncIterator[None]:
    """The application: echoes every byte back, and half-closes after the peer did."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


def exchange(address: tuple[str, int], payload: bytes) -> bytes:
    """Sends ``payload``, half-closes, returns all that comes back (b"": refused)."""
    received = bytearray()
    try:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
    except OSError:  # reset: refused too
        return b""
    return bytes(received)


async def test_bytes_cross_two_python_sidecars_on_a_grpc_port_and_smi_narrows_to_tcp_grants(
    controller: server.Controller, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="osm.controller")
    port = app_port()
    await apply(controller, *mesh(port, permissive=True))
    payload = PREFACE + os.urandom(256 * 1024)

    def through(sidecar: main.Sidecar) -> Callable[[], Any]:
        """Sends through the client's outbound listener wherever it is bound now: a client
        allowed nowhere for a moment loses the listener, which comes back on a new port."""

        async def send() -> bytes:
            if "outbound-listener" not in sidecar.proxy.listeners:
                return b""
            outbound = sidecar.proxy.listener_address("outbound-listener")
            return await asyncio.to_thread(exchange, outbound, payload)

        return send

    async with echo_app(port), two_sidecars(controller, tmp_path, port) as (client, _):
        send = through(client)
        assert await send() == payload

        # SMI, and a route naming one method: the Python sidecar cannot check it, so the
        # port admits nobody (never more than Envoy's HTTP policy would admit).
        await apply(controller, *mesh(port, permissive=False), *one_method_only())
        await eventually(lambda: _is(send(), b""), "the one-method route to deny")
        await eventually(
            lambda: "is gRPC on the Python sidecar" in caplog.text,
            "the controller's warning",
        )
        # A TCPRoute allows every request on the port: the client is back.
        await apply(controller, *tcp_route())
        await eventually(lambda: _is(send(), payload), "the TCPRoute to allow")
    assert "is the Python sidecar" not in caplog.text  # pods marked right


async def test_a_grpc_call_crosses_two_python_sidecars(
    controller: server.Controller, tmp_path: Path
) -> None:
    port = app_port()
    await apply(controller, *mesh(port, permissive=True))

    async def say(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return b"echo:" + request

    app = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(say)  # bytes in, bytes out
    app.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Echo", {"Say": handler}),)
    )
    app.add_insecure_port(f"127.0.0.1:{port}")
    await app.start()
    try:
        async with two_sidecars(controller, tmp_path, port) as (client, _):
            host, outbound = client.proxy.listener_address("outbound-listener")
            options = [("grpc.enable_http_proxy", 0)]
            async with grpc.aio.insecure_channel(f"{host}:{outbound}", options=options) as channel:
                reply = await channel.unary_unary(METHOD)(b"hello", timeout=5)
            assert reply == b"echo:hello"
    finally:
        await app.stop(None)


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
