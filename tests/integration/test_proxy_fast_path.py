"""The HTTP session's fast path (callbacks) and general path (coroutine) are one behaviour.

Each exchange below runs twice on a fresh proxy and scripted upstream, with
`Options.http_fast_path` on and off, after a warm-up request that leaves a pooled
upstream connection (the fast path only sends on pooled ones). The bytes the client gets,
the requests the upstream gets (the random `x-request-id` aside), the stats and the
access log must be the same; and the fast path must really serve the simple exchanges.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import wrappers_pb2

from osm.base import wellknown
from osm.proxy import assembly, http1, http_session, server, stats
from osm.proxy.runtime import Options
from tests.integration import proxymesh

pytestmark = pytest.mark.timeout(120)

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-app: 1\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nkeep-alive: timeout=5\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
)


# -- the scripted upstream -----------------------------------------------------------------
@dataclass
class Upstream:
    """Answers by path; records what it received (method, target, headers, body)."""

    received: list[tuple[str, str, list[tuple[str, str]], bytes]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        parser = http1.RequestParser()
        pending: list[http1.Event] = []
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                pending.extend(parser.feed(data))
                while http1.END in pending:
                    end = pending.index(http1.END)
                    request, pending = pending[: end + 1], pending[end + 1 :]
                    head = request[0]
                    assert isinstance(head, http1.RequestHead)
                    body = b"".join(event.data for event in request if type(event) is http1.Data)
                    headers = [
                        (name, "<id>" if name == "x-request-id" else value)
                        for name, value in head.headers
                    ]
                    self.received.append((head.method, head.target, headers, body))
                    if not await self.answer(head, writer):
                        return
        finally:
            writer.close()

    async def answer(self, head: http1.RequestHead, writer: asyncio.StreamWriter) -> bool:
        """Write the scripted response; -> False to close the connection."""
        path = head.target.split("?")[0]
        count = self.calls[path] = self.calls.get(path, 0) + 1
        if path == "/chunked":
            writer.write(CHUNKED)
        elif path == "/close":
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
            await writer.drain()
            return False
        elif path == "/split":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"56789")
        elif path == "/204":
            writer.write(b"HTTP/1.1 204 No Content\r\nx-app: 1\r\n\r\n")
        elif path == "/retry/flaky":
            if count == 1:
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy")
            else:
                writer.write(OK)
        elif path == "/slow":
            await asyncio.sleep(0.6)
            writer.write(OK)
        elif path == "/pertry/x":
            if count == 1:
                await asyncio.sleep(0.5)
            writer.write(OK)
        elif path == "/reset":
            return False
        elif path == "/big":
            body = b"b" * 300_000
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
        elif path == "/twice":
            writer.write(OK + OK)  # one response too many: the connection is not reused
        elif head.method == "HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        else:
            writer.write(OK)
        await writer.drain()
        return True


# -- the proxy -------------------------------------------------------------------------------
def _route(prefix: str, **action: Any) -> route_components_pb2.Route:
    return route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix=prefix),
        route=route_components_pb2.RouteAction(cluster="app|80", **action),
    )


def _resources(app_port: int) -> dict[str, dict[str, object]]:
    retry = route_components_pb2.RetryPolicy(
        retry_on="5xx", num_retries=wrappers_pb2.UInt32Value(value=2)
    )
    per_try = route_components_pb2.RetryPolicy(
        retry_on="5xx",
        num_retries=wrappers_pb2.UInt32Value(value=1),
        per_try_timeout=proxymesh.seconds(0.2),
    )
    routes = route_pb2.RouteConfiguration(
        name="inline",
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="app",
                domains=["app"],
                routes=[
                    _route("/retry", retry_policy=retry),
                    _route("/slow", timeout=proxymesh.seconds(0.2)),
                    _route("/pertry", retry_policy=per_try, timeout=proxymesh.seconds(3)),
                    _route("/rewrite", prefix_rewrite="/new"),
                    _route("/"),
                ],
            )
        ],
    )
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="fast",
        route_config=routes,
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=proxymesh.pack(router_pb2.Router())
            )
        ],
    )
    listener = proxymesh.http_listener("fast", 0, manager)
    return {
        wellknown.LISTENER_TYPE: {"fast": listener},
        wellknown.CLUSTER_TYPE: {
            "app|80": proxymesh.static_cluster("app|80", "127.0.0.1", app_port)
        },
    }


# -- the exchanges -----------------------------------------------------------------------------
def get(path: str, extra: str = "", version: str = "1.1", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: app\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return get(path, f"Content-Length: {len(body)}\r\n{extra}", method="POST") + body


# name -> (request bytes, the methods of the responses to read)
EXCHANGES: dict[str, tuple[bytes, list[str]]] = {
    "get": (get("/ok?x=1", "User-Agent: t\r\n"), ["GET"]),
    "post": (post("/ok", b"a body"), ["POST"]),
    "connection close": (get("/ok", "Connection: close\r\n"), ["GET"]),
    "http/1.0": (get("/ok", version="1.0"), ["GET"]),
    "http/1.0 keep-alive": (get("/ok", "Connection: keep-alive\r\n", "1.0"), ["GET"]),
    "chunked response": (get("/chunked"), ["GET"]),
    "chunked response to 1.0": (get("/chunked", "Connection: keep-alive\r\n", "1.0"), ["GET"]),
    "close-delimited response": (get("/close"), ["GET"]),
    "response in pieces": (get("/split"), ["GET"]),
    "204": (get("/204"), ["GET"]),
    "head": (get("/ok", method="HEAD"), ["HEAD"]),
    "retry on 503": (get("/retry/flaky"), ["GET"]),
    "route timeout": (get("/slow"), ["GET"]),
    "per-try timeout then retry": (get("/pertry/x"), ["GET"]),
    "upstream reset": (get("/reset"), ["GET"]),
    "big response": (get("/big"), ["GET"]),
    "extra response": (get("/twice") + get("/ok"), ["GET", "GET"]),
    "prefix rewrite": (get("/rewrite/a?q=1"), ["GET"]),
    "no route": (get("/ok").replace(b"Host: app", b"Host: elsewhere"), ["GET"]),
    "hop-by-hop and forwarded": (
        get(
            "/ok",
            "Connection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 1.2.3.4\r\n"
            "X-Request-Id: mine\r\nX-Forwarded-Proto: https\r\n",
        ),
        ["GET"],
    ),
    "pipelined": (get("/ok") + post("/ok", b"xyz") + get("/chunked"), ["GET", "POST", "GET"]),
    "chunked request": (
        get("/ok", "Transfer-Encoding: chunked\r\n", method="POST") + b"3\r\nabc\r\n0\r\n\r\n",
        ["POST"],
    ),
    "expect 100-continue": (post("/ok", b"later", "Expect: 100-continue\r\n"), ["POST"]),
    "request in two reads": (get("/ok"), ["GET"]),  # see `_send`
    "malformed": (b"GET / HTTP/1.1\r\nHost: app\r\nBad Header\r\n\r\n", ["GET"]),
}
FAST = {"get", "post", "connection close", "http/1.0", "chunked response", "head", "204"}


async def _read_responses(
    reader: asyncio.StreamReader, methods: list[str], timeout: float = 5.0
) -> bytes:
    """Read until each expected response is complete or the proxy closes."""
    parser = http1.ResponseParser()
    received = b""
    remaining = list(methods)
    parser.expect(remaining[0])
    async with asyncio.timeout(timeout):
        while remaining:
            data = await reader.read(65536)
            events = parser.feed_eof() if not data else parser.feed(data)
            received += data
            for event in events:
                if event is http1.END:
                    remaining.pop(0)
                    if remaining:
                        parser.expect(remaining[0])
            if not data:
                break
    return received


async def _send(writer: asyncio.StreamWriter, name: str, data: bytes) -> None:
    if name == "request in two reads":
        writer.write(data[:10])
        await writer.drain()
        await asyncio.sleep(0.02)
        data = data[10:]
    writer.write(data)
    await writer.drain()


@dataclass
class Outcome:
    client: bytes
    upstream: list[tuple[str, str, list[tuple[str, str]], bytes]]
    stats: str
    access_log: list[dict[str, Any]]
    fast_served: int


async def _run(name: str, fast: bool) -> Outcome:
    app = Upstream()
    app_server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    app_port = app_server.sockets[0].getsockname()[1]
    log_stream = io.StringIO()
    proxy = server.Sidecar(
        Options(http_fast_path=fast, retry_base_interval=0.001),
        access_log=stats.AccessLog(log_stream),
    )
    served = 0
    original = http_session.HttpSession._upstream_ready

    def counting(session: http_session.HttpSession) -> None:
        nonlocal served
        exchange = session._exchange
        original(session)
        if session._exchange is None and session._handoff is not exchange:
            served += 1

    setattr(http_session.HttpSession, "_upstream_ready", counting)  # noqa: B010
    try:
        await proxy.apply(assembly.assemble(_resources(app_port)))
        reader, writer = await asyncio.open_connection(*proxy.listener_address("fast"))
        writer.write(get("/warm"))
        warm = await _read_responses(reader, ["GET"])
        request, methods = EXCHANGES[name]
        await _send(writer, name, request)
        client = await _read_responses(reader, methods)
        writer.close()
        await asyncio.sleep(0.05)  # let the proxy see the close and settle its stats
    finally:
        setattr(http_session.HttpSession, "_upstream_ready", original)  # noqa: B010
        await proxy.close()
        app_server.close()
        if app.tasks:  # the proxy closed its upstream connections: the handlers end
            await asyncio.wait(app.tasks, timeout=2)
    assert warm.endswith(b"hello")
    records = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    for record in records:
        for key in ("start_time", "duration", "x_request_id", "downstream_remote_address"):
            record.pop(key, None)
        if record.get("upstream_host"):
            record["upstream_host"] = "app"  # the port differs between the two runs
    ids = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert not ids.search(client)  # request ids are never echoed by this upstream
    return Outcome(client, app.received, proxy.stats.text(), records, served)


@pytest.fixture(params=sorted(EXCHANGES))
def exchange_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_fast_and_general_paths_agree(exchange_name: str) -> None:
    general = await _run(exchange_name, fast=False)
    fast = await _run(exchange_name, fast=True)
    assert general.fast_served == 0
    assert fast.client == general.client
    assert fast.upstream == general.upstream
    assert fast.stats == general.stats
    assert fast.access_log == general.access_log
    if exchange_name in FAST:
        assert fast.fast_served == 1, "the fast path should have served this exchange"


async def test_request_ids_are_version_4_uuids() -> None:
    pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    ids = {http1.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(pattern.match(value) for value in ids)


@pytest.mark.parametrize(
    "start",
    [0, 0xFD, 0x1234_5678_9AFE, (1 << 48) - 3],
    ids=["zero", "low-byte-carry", "middle", "counter-wraps"],
)
def test_request_id_counter_counts_in_the_last_group(start: int) -> None:
    """The last group is the 48-bit counter in hex, one more per id, carries included."""
    ids = http1._RequestIds(start)
    values = [ids.next() for _ in range(600)]
    groups = [int(value.rsplit("-", 1)[1], 16) for value in values]
    assert groups == [(start + 1 + index) % (1 << 48) for index in range(600)]
    assert {value.rsplit("-", 1)[0] for value in values} == {http1._REQUEST_ID_PREFIX[:-1]}
