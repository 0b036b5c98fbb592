"""Just enough HTTP/1.1 for the demo apps, over asyncio streams.

aiohttp alone costs about half a second of imports and 15 MB per process, and the demo's
apps should start fast and stay small, so they speak plain HTTP/1.1 here (the sidecars add
mTLS). Parsing is kept apart from I/O: `parse_request_head` and `parse_response_head` take
bytes and give values; `Server` and `request` are the thin stream loops around them.
Errors say whose fault they are: `ProtocolError` is the peer's, a 500 is the handler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_BODY_BYTES = 1024 * 1024
REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProtocolError(Exception):
    """The peer sent something that is not the HTTP/1.1 this module reads (its fault)."""


@dataclass(frozen=True)
class Request:
    """One request as the server read it; header names are lower case."""

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class Response:
    """One response, to send or as received; header names are lower case when received."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> object:
        return json.loads(self.body)


Handler = Callable[[Request], Awaitable[Response]]


TRACE_HEADERS = (
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "traceparent",
    "tracestate",
)
"""What an app forwards from the request it serves to the requests it makes, so a
tracing proxy can tie them into one trace (what Envoy's tracing docs ask of apps)."""


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace headers of a served request's (lower-case) ``headers``, to forward."""
    return {name: headers[name] for name in TRACE_HEADERS if name in headers}


def json_response(
    payload: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, sort_keys=True).encode() + b"\n"
    return Response(status, {"content-type": "application/json", **(headers or {})}, body)


def text_response(
    text: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> Response:
    return Response(status, {"content-type": content_type, **(headers or {})}, text.encode())


# -- parsing and formatting: bytes in, values out ----------------------------------------
def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _split_head(head: bytes) -> tuple[bytes, list[bytes]]:
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    return lines[0], lines[1:]


def parse_request_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Returns (method, target, version, headers) of a head that ends with a blank line."""
    start, lines = _split_head(head)
    parts = start.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].startswith(b"HTTP/1."):
        raise ProtocolError(f"malformed request line {start[:80]!r}")
    method, target, version = (part.decode("latin-1") for part in parts)
    return method, target, version, _parse_headers(lines)


def parse_response_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """Returns (version, status, headers) of a head that ends with a blank line."""
    start, lines = _split_head(head)
    parts = start.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"malformed status line {start[:80]!r}")
    return parts[0].decode("latin-1"), int(parts[1]), _parse_headers(lines)


def keeps_alive(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def format_response(response: Response, *, keep_alive: bool) -> bytes:
    reason = REASONS.get(response.status, "Status")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    skip = {"content-length", "connection", "transfer-encoding"}
    lines += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in skip]
    lines.append(f"content-length: {len(response.body)}")
    lines.append(f"connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


def format_request(
    method: str, host: str, target: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- reading from a stream ---------------------------------------------------------------
async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The next message head, or None if the peer closed the connection between messages."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial.strip():
            return None
        raise ProtocolError("connection closed in the middle of a message head") from error
    except asyncio.LimitOverrunError as error:
        raise ProtocolError("message head longer than 64 KiB") from error


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers, ignored
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise ProtocolError(f"body longer than {MAX_BODY_BYTES} bytes")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _read_body(
    reader: asyncio.StreamReader, headers: Mapping[str, str], *, until_eof: bool
) -> bytes:
    """Reads a body framed by chunked encoding, content-length or (responses) end of stream."""
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _read_chunked(reader)
        length = headers.get("content-length")
        if length is not None:
            size = int(length)
            if not 0 <= size <= MAX_BODY_BYTES:
                raise ProtocolError(f"content-length {size} outside 0..{MAX_BODY_BYTES}")
            return await reader.readexactly(size)
        if not until_eof:
            return b""
        body = b""
        while chunk := await reader.read(65536):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise ProtocolError(f"body longer than {MAX_BODY_BYTES} bytes")
        return body
    except ValueError as error:
        raise ProtocolError(f"malformed body framing: {error}") from error
    except asyncio.IncompleteReadError as error:
        raise ProtocolError("connection closed in the middle of a body") from error
    except asyncio.LimitOverrunError as error:
        raise ProtocolError("chunk header too long") from error


# -- server ------------------------------------------------------------------------------
class Server:
    """A listening socket and its open connections; `close` ends both.

    Connections are kept alive as HTTP/1.1 asks (a sidecar reuses them). A handler that
    raises answers 500; a peer that breaks the protocol gets 400 and a closed connection.
    """

    def __init__(self, handler: Handler, listener: asyncio.Server | None = None) -> None:
        self._handler = handler
        self._listener = listener
        self._connections: set[asyncio.Task[object]] = set()

    @classmethod
    async def start(cls, handler: Handler, host: str, port: int) -> Server:
        server = cls(handler)
        server._listener = await asyncio.start_server(server._serve, host, port)
        return server

    @property
    def port(self) -> int:
        assert self._listener is not None, "Server.start() was not awaited"
        port: int = self._listener.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        if connections:
            await asyncio.wait(connections, timeout=1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except ProtocolError as error:
            with contextlib.suppress(ConnectionError):
                answer = text_response(f"bad request: {error}\n", 400)
                writer.write(format_response(answer, keep_alive=False))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection should close."""
        head = await _read_head(reader)
        if head is None:
            return False
        method, target, version, headers = parse_request_head(head)
        body = await _read_body(reader, headers, until_eof=False)
        try:
            response = await self._handler(Request(method, target, headers, body))
        except Exception as error:  # the handler's fault; the connection survives it
            response = text_response(f"internal error: {type(error).__name__}: {error}\n", 500)
        keep_alive = keeps_alive(version, headers)
        writer.write(format_response(response, keep_alive=keep_alive))
        await writer.drain()
        return keep_alive


# -- client ------------------------------------------------------------------------------
async def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 1.5,
) -> Response:
    """One request on a fresh connection, the whole exchange bounded by `timeout`.

    Raises TimeoutError; ConnectionRefusedError and other OSErrors when it cannot connect;
    ConnectionResetError when the peer closes before answering; ProtocolError on garbage.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: only http://host[:port]/path URLs are supported")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            writer.write(format_request(method, parts.netloc, target, headers or {}, body))
            await writer.drain()
            head = await _read_head(reader)
            if head is None:
                raise ConnectionResetError("the server closed the connection without answering")
            _, status, response_headers = parse_response_head(head)
            bodiless = method == "HEAD" or status in (204, 304) or 100 <= status < 200
            content = (
                b"" if bodiless else await _read_body(reader, response_headers, until_eof=True)
            )
            return Response(status, response_headers, content)
        finally:
            writer.close()
