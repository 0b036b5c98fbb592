"""Two Python sidecars on loopback: outbound -> mTLS -> inbound -> app, as the mesh runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import wrappers_pb2

from osm import proxy
from osm.proxy import admin, assembly, server
from osm.proxy.runtime import Options
from tests.integration import proxymesh

pytestmark = pytest.mark.timeout(60)


@dataclass
class Mesh:
    pki: proxymesh.Pki
    app_port: int
    inbound: server.Sidecar
    outbound: server.Sidecar
    buyer: tuple[bytes, bytes]
    store: tuple[bytes, bytes]
    calls: dict[str, int]

    @property
    def inbound_port(self) -> int:
        return self.inbound.listener_address("inbound-listener")[1]

    @property
    def outbound_port(self) -> int:
        return self.outbound.listener_address("outbound-listener")[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.outbound_port}{path}"

    async def apply_outbound(self, **kwargs: Any) -> None:
        resources = proxymesh.outbound_resources(
            self.inbound_port, self.buyer, self.pki.ca_pem, **kwargs
        )
        await self.outbound.apply(assembly.assemble(resources))

    async def apply_inbound(
        self, allowed: list[str], store: tuple[bytes, bytes] | None = None
    ) -> None:
        resources = proxymesh.inbound_resources(
            self.app_port, store or self.store, self.pki.ca_pem, allowed
        )
        await self.inbound.apply(assembly.assemble(resources))


HOST = {"Host": "bookstore.bookstore"}


async def _app(calls: dict[str, int]) -> tuple[web.AppRunner, int]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"headers": dict(request.headers), "path": request.path_qs})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def flaky(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        calls[key] = calls.get(key, 0) + 1
        if calls[key] <= 2:
            return web.Response(status=503, text="not yet")
        return web.Response(text=f"ok after {calls[key]}")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + message.data)
        return ws

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/flaky/{key}", flaky)
    app.router.add_post("/echo", echo)
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@contextlib.asynccontextmanager
async def running_mesh() -> AsyncIterator[Mesh]:
    pki = proxymesh.Pki.create()
    buyer_cert, buyer_key, _ = pki.leaf(proxymesh.BUYER, "bookbuyer.bookbuyer.cluster.local")
    store_cert, store_key, _ = pki.leaf(proxymesh.STORE, "bookstore.bookstore.cluster.local")
    calls: dict[str, int] = {}
    runner, app_port = await _app(calls)
    inbound = server.Sidecar(
        Options(
            original_destination=lambda sock: ("127.0.0.1", app_port),
            bind_overrides={"inbound-listener": ("127.0.0.1", 0)},
        )
    )
    outbound = server.Sidecar(
        Options(
            original_destination=lambda sock: (proxymesh.SERVICE_IP, 80),
            bind_overrides={"outbound-listener": ("127.0.0.1", 0)},
        )
    )
    state = Mesh(
        pki, app_port, inbound, outbound, (buyer_cert, buyer_key), (store_cert, store_key), calls
    )
    await state.apply_inbound([proxymesh.BUYER])
    await state.apply_outbound()
    try:
        yield state
    finally:
        await outbound.close()
        await inbound.close()
        await runner.cleanup()


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    async with running_mesh() as state:
        yield state


async def test_request_flows_through_both_sidecars(mesh: Mesh) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(mesh.url("/hello?x=1"), headers=HOST) as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["path"] == "/hello?x=1"
    headers = {key.lower(): value for key, value in body["headers"].items()}
    assert headers["host"] == "bookstore.bookstore"
    assert len(headers["x-request-id"]) == 36
    assert headers["x-forwarded-proto"] == "http"  # set by the first hop, kept by the second
    stats = mesh.outbound.stats
    assert stats.value(f"cluster.{proxymesh.CLUSTER}.upstream_rq_total") == 1
    assert stats.value(f"cluster.{proxymesh.CLUSTER}.upstream_rq_2xx") == 1
    assert mesh.inbound.stats.value("http.inbound_bookstore.rbac.allowed") == 1


async def test_post_body_and_unknown_host(mesh: Mesh) -> None:
    payload = b"x" * 200_000  # larger than the replay buffer: streamed
    async with aiohttp.ClientSession() as session:
        async with session.post(mesh.url("/echo"), data=payload, headers=HOST) as response:
            assert response.status == 200
            assert await response.read() == payload
        async with session.get(mesh.url("/hello"), headers={"Host": "elsewhere"}) as response:
            assert response.status == 404


async def test_rbac_denies_an_identity_not_allowed(mesh: Mesh) -> None:
    await mesh.apply_inbound(["spiffe://cluster.local/ns/other/sa/other"])
    async with (
        aiohttp.ClientSession() as session,
        session.get(mesh.url("/hello"), headers=HOST) as response,
    ):
        assert response.status == 403
        assert await response.text() == "RBAC: access denied"
    assert mesh.inbound.stats.value("http.inbound_bookstore.rbac.denied") == 1


async def test_upstream_san_mismatch_is_a_connect_failure(mesh: Mesh) -> None:
    await mesh.apply_outbound(identities=["spiffe://cluster.local/ns/x/sa/impostor"])
    async with (
        aiohttp.ClientSession() as session,
        session.get(mesh.url("/hello"), headers=HOST) as response,
    ):
        assert response.status == 503
        assert "connection failure" in await response.text()


async def test_weighted_split_ratio(mesh: Mesh) -> None:
    await mesh.apply_outbound(weights=(80, 20))
    total = 300
    async with aiohttp.ClientSession() as session:
        for _ in range(total):
            async with session.get(mesh.url("/hello"), headers=HOST) as response:
                assert response.status == 200
                await response.read()
    stats = mesh.outbound.stats
    first = stats.value(f"cluster.{proxymesh.CLUSTER}.upstream_rq_total")
    second = stats.value(f"cluster.{proxymesh.CLUSTER_V2}.upstream_rq_total")
    assert first + second == total
    sd = math.sqrt(total * 0.8 * 0.2)
    assert abs(first - 0.8 * total) < 4 * sd


async def test_retries_on_5xx(mesh: Mesh) -> None:
    retry = route_components_pb2.RetryPolicy(
        retry_on="5xx", num_retries=wrappers_pb2.UInt32Value(value=3)
    )
    await mesh.apply_outbound(retry=retry)
    async with (
        aiohttp.ClientSession() as session,
        session.get(mesh.url("/flaky/a"), headers=HOST) as response,
    ):
        assert response.status == 200
        assert await response.text() == "ok after 3"
    stats = mesh.outbound.stats
    assert stats.value(f"cluster.{proxymesh.CLUSTER}.upstream_rq_retry") == 2
    assert stats.value(f"cluster.{proxymesh.CLUSTER}.upstream_rq_5xx") == 2


async def test_no_retry_policy_passes_5xx_through(mesh: Mesh) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(mesh.url("/status/503"), headers=HOST) as response,
    ):
        assert response.status == 503
        assert await response.text() == "status"


async def test_keep_alive_reuses_upstream_connections(mesh: Mesh) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(mesh.url("/hello"), headers=HOST) as response:
                assert response.status == 200
                await response.read()
    assert mesh.outbound.stats.value(f"cluster.{proxymesh.CLUSTER}.upstream_cx_total") == 1
    local = "bookstore/bookstore|80|local"
    assert mesh.inbound.stats.value(f"cluster.{local}.upstream_cx_total") == 1
    assert mesh.outbound.stats.value("http.outbound_bookstore.downstream_cx_total") == 1


async def test_websocket_upgrade_tunnel(mesh: Mesh) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(mesh.url("/ws"), headers=HOST) as ws,
    ):
        for index in range(3):
            await ws.send_str(f"m{index}")
            message = await asyncio.wait_for(ws.receive(), 5)
            assert message.data == f"echo:m{index}"


async def test_sds_rotation_keeps_established_connections(mesh: Mesh) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(mesh.url("/ws"), headers=HOST) as ws:
            await ws.send_str("before")
            assert (await asyncio.wait_for(ws.receive(), 5)).data == "echo:before"
            new_cert, new_key, serial = mesh.pki.leaf(
                proxymesh.STORE, "bookstore.bookstore.cluster.local"
            )
            await mesh.apply_inbound([proxymesh.BUYER], store=(new_cert, new_key))
            await ws.send_str("after")
            assert (await asyncio.wait_for(ws.receive(), 5)).data == "echo:after"
        # New handshakes present the new certificate.
        assert await _inbound_serial(mesh) == serial
        async with session.get(mesh.url("/hello"), headers=HOST) as response:
            assert response.status == 200


async def _inbound_serial(mesh: Mesh) -> int:
    import tempfile

    from cryptography import x509

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=mesh.pki.ca_pem.decode())
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as handle:
        handle.write(mesh.buyer[0] + mesh.buyer[1])
        handle.flush()
        context.load_cert_chain(handle.name)
    _, writer = await asyncio.open_connection(
        "127.0.0.1", mesh.inbound_port, ssl=context, server_hostname=proxymesh.SNI
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return int(x509.load_der_x509_certificate(der).serial_number)


async def test_tcp_proxy_over_mtls_with_half_close(mesh: Mesh) -> None:
    await mesh.apply_outbound(tcp=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound_port)
    writer.write(b"GET /hello HTTP/1.1\r\nHost: bookstore\r\nConnection: close\r\n\r\n")
    writer.write_eof()  # half-close: the response must still come back
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert mesh.outbound.stats.value("tcp.outbound_tcp.downstream_cx_total") == 1


async def test_malformed_and_oversized_requests(mesh: Mesh) -> None:
    async def raw(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound_port)
        writer.write(request)
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data

    assert (await raw(b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400")
    big = b"GET / HTTP/1.1\r\nHost: bookstore.bookstore\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    assert (await raw(big)).startswith(b"HTTP/1.1 431")
    ok = await raw(b"GET /hello HTTP/1.1\r\nHost: bookstore.bookstore\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")


async def test_pipelined_requests_answered_in_order(mesh: Mesh) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mesh.outbound_port)
    request = b"GET /status/%d HTTP/1.1\r\nHost: bookstore.bookstore\r\n\r\n"
    writer.write(
        request % 201
        + request % 202
        + (request % 203).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    statuses = [int(code) for code in re.findall(rb"HTTP/1.1 (\d{3})", data)]
    assert statuses == [201, 202, 203]


async def test_admin_endpoints(mesh: Mesh) -> None:
    admin_server = admin.Admin(mesh.outbound)
    await admin_server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{admin_server.address[1]}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(mesh.url("/hello"), headers=HOST) as response:
                await response.read()
            async with session.get(base + "/ready") as response:
                assert response.status == 200
                assert await response.text() == "LIVE\n"
            async with session.get(base + "/stats") as response:
                text = await response.text()
                assert f"cluster.{proxymesh.CLUSTER}.upstream_rq_total: 1" in text
            async with session.get(base + "/stats/prometheus") as response:
                text = await response.text()
                assert (
                    f'envoy_cluster_upstream_rq_total{{envoy_cluster_name="{proxymesh.CLUSTER}"}} 1'
                    in text
                )
            async with session.get(base + "/config_dump") as response:
                dump = json.loads(await response.text())
                types = [item["@type"] for item in dump["configs"]]
                assert "type.googleapis.com/envoy.admin.v3.ClustersConfigDump" in types
                secrets = dump["configs"][3]["dynamicActiveSecrets"]
                for secret in secrets:
                    key = secret["secret"].get("tlsCertificate", {}).get("privateKey")
                    assert key in (None, {"inlineString": "[redacted]"})
            async with session.get(base + "/clusters") as response:
                assert "::cx_active::" in await response.text()
            async with session.get(base + "/server_info") as response:
                info = json.loads(await response.text())
                assert info["state"] == "LIVE"
                assert info["compiled_modules"] == list(proxy.compiled())
                assert info["version"].endswith("/mypyc" if proxy.compiled() else "/pure")
    finally:
        await admin_server.close()


def test_original_destination_falls_back_to_the_local_address() -> None:
    from osm.proxy import runtime

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        assert runtime.original_destination(accepted) == listener.getsockname()
    finally:
        for item in (client, accepted, listener):
            item.close()


def test_the_same_on_uvloop() -> None:
    """The sidecar runs on uvloop: requests, keep-alive and an upgrade tunnel work there too."""

    async def scenario() -> None:
        async with running_mesh() as state, aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.get(state.url("/hello"), headers=HOST) as response:
                    assert response.status == 200
                    await response.read()
            async with session.ws_connect(state.url("/ws"), headers=HOST) as ws:
                await ws.send_str("uv")
                assert (await asyncio.wait_for(ws.receive(), 5)).data == "echo:uv"
            stats = state.outbound.stats
            assert stats.value(f"cluster.{proxymesh.CLUSTER}.upstream_rq_total") == 6

    uvloop.run(scenario())
