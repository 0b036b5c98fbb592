"""Tracing, Envoy beside the Python sidecar: the same listeners (an inbound and an
outbound HCM with OSM's Zipkin tracer, `osm.xds.tracing`) in front of the same app, the
same requests, and a Zipkin collector in the test; both data planes must report spans of
the same kinds, names, tags and parent links, and propagate the same B3 context. An
unreachable collector must cost the sidecar's requests nothing but a counter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import json_format

from osm.base import wellknown
from osm.proxy import assembly, server
from osm.proxy.runtime import Options
from osm.xds import lds, names
from osm.xds import tracing as tracing_xds
from osm.xds.resources import pack
from tests.integration import proxymesh
from tests.unit.xds import envoy_validate

pytestmark = pytest.mark.timeout(90)

NODE_ID, NODE_CLUSTER = "0a1b.sidecar.bookstore.bookstore", "bookstore"
TRACE, CALLER_SPAN, REQUEST_ID = "463ac35c9f6413ad", "a2fb4a1d1a96d312", "req-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Collector:
    """A Zipkin collector: keeps every span POSTed to /api/v2/spans; answers 202."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                body = await self._body(reader, fields)
                assert lines[0].startswith("POST /api/v2/spans "), lines[0]
                self.spans.extend(json.loads(body))
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, fields: dict[str, str]) -> bytes:
        if fields.get("transfer-encoding", "").lower() != "chunked":
            return await reader.readexactly(int(fields.get("content-length", "0")))
        body = b""
        while size := int((await reader.readline()).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
        return body

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.spans) < count:
                await asyncio.sleep(0.05)
        return self.spans


class App:
    """The app behind both sidecars: answers ``ok`` and keeps the headers it got."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                self.seen.append(
                    {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                )
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def resources(
    app_port: int, collector: tuple[str, int], ports: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Listeners ``inbound`` and ``outbound`` (the direction is what makes a span SERVER
    or CLIENT) and ``unsampled`` (outbound, 0% sampling), each one HCM to the app with
    the mesh's tracer; the app's and the tracing cluster."""
    traced = tracing_xds.Tracing(collector[0], collector[1], wellknown.ZIPKIN_SPANS_PATH)
    never = tracing_xds.Tracing(collector[0], collector[1], wellknown.ZIPKIN_SPANS_PATH, 0.0)

    def listener(
        name: str, direction: int, tracing: tracing_xds.Tracing = traced
    ) -> listener_pb2.Listener:
        manager = lds.http_connection_manager(name, "", tracing=tracing)
        manager.ClearField("rds")
        manager.route_config.CopyFrom(
            route_pb2.RouteConfiguration(
                name=name,
                virtual_hosts=[
                    route_components_pb2.VirtualHost(
                        name="app",
                        domains=["*"],
                        routes=[
                            route_components_pb2.Route(
                                match=route_components_pb2.RouteMatch(prefix="/"),
                                route=route_components_pb2.RouteAction(cluster="app|80"),
                            )
                        ],
                    )
                ],
            )
        )
        return listener_pb2.Listener(
            name=name,
            address=proxymesh.address("127.0.0.1", ports.get(name, 0)),
            traffic_direction=direction,  # type: ignore[arg-type]
            filter_chains=[
                listener_components_pb2.FilterChain(
                    filters=[
                        listener_components_pb2.Filter(
                            name=names.HTTP_CONNECTION_MANAGER, typed_config=pack(manager)
                        )
                    ]
                )
            ],
        )

    return {
        wellknown.LISTENER_TYPE: {
            "inbound": listener("inbound", base_pb2.INBOUND),
            "outbound": listener("outbound", base_pb2.OUTBOUND),
            "unsampled": listener("unsampled", base_pb2.OUTBOUND, never),
        },
        wellknown.CLUSTER_TYPE: {
            "app|80": proxymesh.static_cluster("app|80", "127.0.0.1", app_port),
            names.TRACING_CLUSTER: tracing_xds.cluster(traced),
        },
    }


async def get(address: tuple[str, int], headers: dict[str, str]) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET /books?x=1 HTTP/1.1\r\nhost: books.example:8080\r\n{extra}\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    await asyncio.wait_for(reader.readexactly(2), 5)
    writer.close()
    return head


CALLER = {"x-b3-traceid": TRACE, "x-b3-spanid": CALLER_SPAN, "x-b3-sampled": "1"}
NOT_SAMPLED = {**CALLER, "x-b3-sampled": "0"}
B3_SINGLE = f"{TRACE}-{CALLER_SPAN}"
# Requests that report no span, first: a span one of them reported would come before the
# sampled ones' spans. Each: (listener, its headers, the B3 fields the app gets, ids as
# `propagation` writes them; an x-request-id too). Envoy 1.40 behaves so (the test checks).
UNSAMPLED = (
    # no context, the dice say no (0%): a new trace, propagated unsampled
    ("unsampled", {}, {"x-b3-traceid": "new1", "x-b3-spanid": "new1", "x-b3-sampled": "0"}),
    # the caller says no; an inbound span shares the caller's ids
    ("inbound", NOT_SAMPLED, {**NOT_SAMPLED, "x-b3-traceid": "T", "x-b3-spanid": "S"}),
    # the single header in, the single header out (alone)
    ("outbound", {"b3": f"{B3_SINGLE}-0"}, {"b3": "T-new1-0-S"}),
    ("unsampled", {"b3": B3_SINGLE}, {"b3": "T-new1-0-S"}),
    # b3 wins; the x-b3-* fields beside it go on untouched
    (
        "outbound",
        {"b3": f"{B3_SINGLE}-0", **CALLER},
        {"b3": "T-new1-0-S", "x-b3-traceid": "T", "x-b3-spanid": "S", "x-b3-sampled": "1"},
    ),
    ("outbound", {"b3": "0"}, {"b3": "new1-new1-0"}),  # a decision alone: a new trace
    # x-b3-flags is not a decision, and goes on untouched
    (
        "unsampled",
        {"x-b3-flags": "1"},
        {"x-b3-flags": "1", "x-b3-traceid": "new1", "x-b3-spanid": "new1", "x-b3-sampled": "0"},
    ),
    # x-b3-sampled other than 1 or true says no
    (
        "outbound",
        {"x-b3-sampled": "d"},
        {"x-b3-traceid": "new1", "x-b3-spanid": "new1", "x-b3-sampled": "0"},
    ),
    # a context that does not parse: no span, the headers go on as they came
    ("outbound", {"b3": "garbage"}, {"b3": "garbage"}),
    ("outbound", {"b3": f"{B3_SINGLE}-x"}, {"b3": "T-S-x"}),
    ("outbound", {"b3": f"{B3_SINGLE}-1-zz"}, {"b3": "T-S-1-zz"}),
    (
        "outbound",
        {"x-b3-traceid": "zz", "x-b3-spanid": CALLER_SPAN},
        {"x-b3-traceid": "zz", "x-b3-spanid": "S"},
    ),
    (
        "outbound",
        {**CALLER, "x-b3-parentspanid": "zz"},
        {"x-b3-traceid": "T", "x-b3-spanid": "S", "x-b3-sampled": "1", "x-b3-parentspanid": "zz"},
    ),
)
REQUESTS = (
    ("outbound", {**CALLER, "x-request-id": REQUEST_ID, "user-agent": "buyer"}),
    ("inbound", {**CALLER, "x-request-id": REQUEST_ID, "user-agent": "buyer"}),
    ("inbound", {"user-agent": "root"}),  # no context: a new trace, sampled (100%)
)


async def run_requests(addresses: dict[str, tuple[str, int]]) -> None:
    for listener, headers, _ in UNSAMPLED:
        assert b" 200 " in await get(addresses[listener], headers)
    for listener, headers in REQUESTS:
        assert b" 200 " in await get(addresses[listener], headers)


def propagation(seen: dict[str, str]) -> dict[str, str]:
    """The B3 fields an upstream request carried, ids as their relation to the caller's
    ("T", "S"; "new1", "new2": ids the proxy made, 16 hex digits, numbered in order of
    appearance), and whether it had an x-request-id."""
    relation = {TRACE: "T", CALLER_SPAN: "S"}

    def id_of(text: str) -> str:
        if text not in relation and len(text) == 16 and not text.strip("0123456789abcdef"):
            relation[text] = f"new{len(relation) - 1}"
        return relation.get(text, text)

    kept = {
        k: "-".join(id_of(part) for part in v.split("-")) if k == "b3" else id_of(v)
        for k, v in sorted(seen.items())
        if k == "b3" or k.startswith("x-b3-")
    }
    kept["x-request-id"] = "present" if seen.get("x-request-id") else "absent"
    return kept


@contextlib.asynccontextmanager
async def python_sidecar(
    app_port: int, collector: tuple[str, int]
) -> AsyncIterator[dict[str, tuple[str, int]]]:
    proxy = server.Sidecar(Options())
    proxy.runtime.tracer.node_id, proxy.runtime.tracer.service_name = NODE_ID, NODE_CLUSTER
    try:
        await proxy.apply(assembly.assemble(resources(app_port, collector, {})))
        yield {name: proxy.listener_address(name) for name in ("inbound", "outbound", "unsampled")}
    finally:
        await proxy.runtime.tracer.reporter.close()
        await proxy.close()


@contextlib.contextmanager
def envoy(
    app_port: int, collector: tuple[str, int], directory: Path
) -> Iterator[dict[str, tuple[str, int]]]:
    assert envoy_validate.ENVOY is not None
    ports = {"inbound": free_port(), "outbound": free_port(), "unsampled": free_port()}
    built = resources(app_port, collector, ports)
    bootstrap = {
        "node": {"id": NODE_ID, "cluster": NODE_CLUSTER},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "layered_runtime": {
            "layers": [{"name": "static", "static_layer": {"tracing.zipkin.min_flush_spans": 1}}]
        },
        "static_resources": {
            "listeners": [
                json_format.MessageToDict(m) for m in built[wellknown.LISTENER_TYPE].values()
            ],
            "clusters": [
                json_format.MessageToDict(m) for m in built[wellknown.CLUSTER_TYPE].values()
            ],
        },
    }
    path = directory / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    with (directory / "envoy.log").open("w") as errors:
        process = subprocess.Popen(
            [envoy_validate.ENVOY, "-c", str(path), "--disable-hot-restart", "-l", "error"],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            yield {name: ("127.0.0.1", port) for name, port in ports.items()}
        finally:
            process.terminate()
            process.wait(10)


async def wait_listening(addresses: dict[str, tuple[str, int]]) -> None:
    async with asyncio.timeout(15):
        for address in addresses.values():
            while True:
                try:
                    _, writer = await asyncio.open_connection(*address)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break


def shape(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What both data planes must agree on, with ids as their relation to the caller."""
    by_request = sorted(spans, key=lambda s: s["timestamp"])
    result = []
    for span in by_request:
        tags = dict(span.get("tags", {}))
        for varying in ("peer.address", "upstream_address", "request_size"):
            tags.pop(varying, None)
        if tags["guid:x-request-id"] != REQUEST_ID:  # generated: a UUID, as Envoy's
            assert len(tags["guid:x-request-id"].split("-")) == 5
            tags["guid:x-request-id"] = "generated"
        result.append(
            {
                "kind": span["kind"],
                "name": span["name"],
                "serviceName": span["localEndpoint"]["serviceName"],
                "trace": "caller's" if span["traceId"] == TRACE else "new",
                "id": "caller's" if span["id"] == CALLER_SPAN else "new",
                "parent": {None: None, CALLER_SPAN: "caller's"}.get(span.get("parentId"), "other"),
                "shared": span.get("shared", False),
                "annotations": [a["value"] for a in span.get("annotations", ())],
                "tags": tags,
            }
        )
    return result


@pytest.mark.skipif(envoy_validate.ENVOY is None, reason=envoy_validate.SKIP_REASON)
async def test_envoy_and_the_python_sidecar_report_the_same_spans(tmp_path: Path) -> None:
    app = App()
    app_server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
    app_port = app_server.sockets[0].getsockname()[1]
    reported: dict[str, list[dict[str, Any]]] = {}
    propagated: dict[str, list[dict[str, str]]] = {}
    try:
        for plane in ("envoy", "python"):
            collector = Collector()
            await collector.start()
            app.seen = []
            target = ("127.0.0.1", collector.port)
            if plane == "envoy":
                with envoy(app_port, target, tmp_path) as addresses:
                    await wait_listening(addresses)
                    await run_requests(addresses)
                    reported[plane] = await collector.wait_for(len(REQUESTS))
                    await asyncio.sleep(0.5)  # a span too many would be flushed by now
            else:
                async with python_sidecar(app_port, target) as addresses:
                    await run_requests(addresses)
                reported[plane] = await collector.wait_for(len(REQUESTS))
            propagated[plane] = [propagation(seen) for seen in app.seen]
            assert collector.server is not None
            collector.server.close()
    finally:
        app_server.close()
    assert len(reported["envoy"]) == len(reported["python"]) == len(REQUESTS)
    assert shape(reported["python"]) == shape(reported["envoy"])
    # the same B3 fields, in both data planes, for every request
    assert propagated["python"] == propagated["envoy"]
    unsampled = propagated["envoy"][: len(UNSAMPLED)]
    assert unsampled == [{**sent, "x-request-id": "present"} for _, _, sent in UNSAMPLED]
    outbound, inbound, root = propagated["envoy"][len(UNSAMPLED) :]
    assert outbound == {"x-b3-traceid": "T", "x-b3-spanid": "new1", "x-b3-parentspanid": "S"} | {
        "x-b3-sampled": "1",
        "x-request-id": "present",
    }
    assert inbound == {**CALLER, "x-b3-traceid": "T", "x-b3-spanid": "S", "x-request-id": "present"}
    assert root == {"x-b3-traceid": "new1", "x-b3-spanid": "new1", "x-b3-sampled": "1"} | {
        "x-request-id": "present"
    }


async def test_an_unreachable_collector_only_counts() -> None:
    """Nothing listens at the collector's port: every request still succeeds at once,
    and the failed report is counted under Envoy's stat name."""
    app = App()
    app_server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
    app_port = app_server.sockets[0].getsockname()[1]
    proxy = server.Sidecar(Options())
    try:
        await proxy.apply(assembly.assemble(resources(app_port, ("127.0.0.1", free_port()), {})))
        loop = asyncio.get_running_loop()
        began = loop.time()
        for _ in range(20):
            assert b" 200 " in await get(proxy.listener_address("inbound"), {})
        assert loop.time() - began < 2.0
        await proxy.runtime.tracer.reporter.close()
        assert proxy.stats.value("tracing.zipkin.spans_sent") == 20
        assert proxy.stats.value("tracing.zipkin.reports_failed") == 1
        assert proxy.stats.value("tracing.zipkin.reports_sent") == 0
        assert "envoy_tracing_zipkin_reports_failed 1" in proxy.stats.prometheus()
    finally:
        await proxy.close()
        app_server.close()
