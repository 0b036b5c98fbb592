"""The demo's small HTTP/1.1: parsing as pure functions, and a server and client round trip."""

from __future__ import annotations

import asyncio

import pytest

from osm.demo.bookstore import wire

pytestmark = pytest.mark.timeout(10)


def test_parses_a_request_head() -> None:
    head = b"GET /buy-a-book/new?x=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n"

    method, target, version, headers = wire.parse_request_head(head)

    assert (method, target, version) == ("GET", "/buy-a-book/new?x=1", "HTTP/1.1")
    assert headers == {"host": "a", "x-a": "1, 2"}
    assert wire.Request(method, target, headers).path == "/buy-a-book/new"


@pytest.mark.parametrize(
    "head",
    [b"GET /\r\n\r\n", b"GET / SPDY/3\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n"],
)
def test_a_malformed_request_head_is_the_peers_fault(head: bytes) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.parse_request_head(head)


def test_parses_a_status_line_with_or_without_a_reason() -> None:
    assert wire.parse_response_head(b"HTTP/1.1 403 Forbidden\r\n\r\n")[1] == 403
    assert wire.parse_response_head(b"HTTP/1.1 204\r\nidentity: v1\r\n\r\n")[1:] == (
        204,
        {"identity": "v1"},
    )


def test_keep_alive_follows_the_version_and_the_connection_header() -> None:
    assert wire.keeps_alive("HTTP/1.1", {})
    assert not wire.keeps_alive("HTTP/1.1", {"connection": "close"})
    assert not wire.keeps_alive("HTTP/1.0", {})
    assert wire.keeps_alive("HTTP/1.0", {"connection": "Keep-Alive"})


async def test_reads_a_chunked_body() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"4\r\nbook\r\n6;ext=1\r\nstore!\r\n0\r\ntrailer: x\r\n\r\n")
    reader.feed_eof()

    body = await wire._read_body(reader, {"transfer-encoding": "chunked"}, until_eof=False)

    assert body == b"bookstore!"


async def test_round_trip_keeps_the_connection_alive_and_survives_a_failing_handler() -> None:
    async def handler(request: wire.Request) -> wire.Response:
        if request.path == "/boom":
            raise RuntimeError("boom")
        return wire.json_response({"path": request.path, "body": request.body.decode()})

    server = await wire.Server.start(handler, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}"
        posted = await wire.request("POST", f"{url}/echo", body=b"hi")
        failed = await wire.request("GET", f"{url}/boom")

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        first = await reader.readuntil(b"\r\n\r\n")
        first_body = await reader.readexactly(
            int(wire.parse_response_head(first)[2]["content-length"])
        )
        second = await reader.readuntil(b"\r\n\r\n")
        writer.close()
    finally:
        await server.close()

    assert posted.status == 200 and posted.json() == {"path": "/echo", "body": "hi"}
    assert failed.status == 500 and b"boom" in failed.body
    assert b'"/a"' in first_body
    assert wire.parse_response_head(second)[1] == 200


async def test_garbage_gets_400_and_a_closed_connection() -> None:
    async def handler(request: wire.Request) -> wire.Response:
        return wire.text_response("never")

    server = await wire.Server.start(handler, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"HELLO\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=2)
        writer.close()
    finally:
        await server.close()

    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_client_errors_say_what_happened() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    closer = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = closer.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectionResetError):
            await wire.request("GET", f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        closer.close()
        await closer.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await wire.request("GET", f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(ValueError, match="only http://"):
        await wire.request("GET", "https://example.com/")
