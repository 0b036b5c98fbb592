"""Real Envoy reports to the trace store: an independent Zipkin client checks the collector
and the query API.

Envoy (the venv's ``envoy`` console script) runs a static bootstrap: one listener whose HTTP
connection manager has the Zipkin tracer (``HTTP_JSON``, as OSM configures sidecars) with
its collector cluster pointing at the store on loopback, routing to a tiny upstream that
echoes the B3 headers Envoy sent it. Requests go through Envoy; the store must then answer
``/api/v2/trace/{id}`` with Envoy's span: the trace id the client chose (or the one Envoy
started, as the upstream saw it), the client's span as parent, Envoy's node cluster as the
service and Envoy's tags. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from osm.base import wellknown
from osm.tracing import server
from osm.tracing.store import TraceStore
from tests.unit.xds.envoy_validate import ENVOY, SKIP_REASON

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(ENVOY is None, reason=SKIP_REASON),
]

PATIENCE = 20.0
"""Seconds to wait for Envoy to start and for its spans to be stored."""
NODE_CLUSTER = "BookBuyer"
"""Envoy's ``node.cluster``: the service name of its spans (Zipkin lowercases it)."""


def socket_address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def static_cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(port)}}]}],
        },
    }


def bootstrap(store_port: int, upstream_port: int) -> dict[str, Any]:
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "outbound",
        "generate_request_id": True,
        "tracing": {
            "provider": {
                "name": "envoy.tracers.zipkin",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                    "collector_cluster": "zipkin",
                    "collector_endpoint": wellknown.ZIPKIN_SPANS_PATH,
                    "collector_endpoint_version": "HTTP_JSON",
                    "shared_span_context": True,
                },
            }
        },
        "route_config": {
            "name": "upstream",
            "virtual_hosts": [
                {
                    "name": "upstream",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "node": {"id": "bookbuyer-pod.bookbuyer", "cluster": NODE_CLUSTER},
        "admin": {"address": socket_address(0)},
        "layered_runtime": {
            "layers": [
                {
                    "name": "flush-at-once",
                    "static_layer": {
                        "tracing.zipkin.min_flush_spans": 1,
                        "tracing.zipkin.flush_interval_ms": 100,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "outbound",
                    "address": socket_address(0),
                    "traffic_direction": "OUTBOUND",
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                static_cluster("zipkin", store_port),
                static_cluster("upstream", upstream_port),
            ],
        },
    }


async def echo(request: web.Request) -> web.Response:
    """The upstream: answers with the trace headers Envoy sent it."""
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("x-")}
    return web.json_response(headers)


async def started(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


@dataclass
class Mesh:
    store_port: int
    listener_port: int
    log: Path

    def request(self, path: str, headers: dict[str, str]) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.listener_port}{path}"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            assert r.status == 200
            return dict(json.load(r))

    def query(self, path: str) -> Any:
        """A GET of the store's API (blocking: call it in a thread, the store runs here)."""
        url = f"http://127.0.0.1:{self.store_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)

    def trace(self, trace_id: str) -> list[dict[str, Any]] | None:
        url = f"http://127.0.0.1:{self.store_port}/api/v2/trace/{trace_id}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return list(json.load(response))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    async def stored(self, trace_id: str) -> list[dict[str, Any]]:
        """The trace once the store has it; fails after `PATIENCE` with Envoy's log."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(self.trace, trace_id)
            if found:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"trace {trace_id} not stored after {PATIENCE} s\n{self.log.read_text()[-3000:]}"
        )


@contextlib.asynccontextmanager
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    assert ENVOY is not None
    store = await TraceStore.open(tmp_path / "traces.db")
    store_runner, store_port = await started(server.make_app(store))
    upstream = web.Application()
    upstream.router.add_get("/{tail:.*}", echo)
    upstream_runner, upstream_port = await started(upstream)
    config, admin_path = tmp_path / "envoy.json", tmp_path / "admin-address"
    config.write_text(json.dumps(bootstrap(store_port, upstream_port)))
    log_path = tmp_path / "envoy.log"
    log = log_path.open("w")
    process = await asyncio.create_subprocess_exec(
        ENVOY, "-c", str(config), "--disable-hot-restart",
        "--admin-address-path", str(admin_path), "-l", "info",
        "--component-log-level", "tracing:debug",
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + PATIENCE
        listener_port = None
        while listener_port is None:
            assert process.returncode is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"Envoy not ready\n{log_path.read_text()[-3000:]}"
            if admin_path.exists() and admin_path.read_text().strip():
                listener_port = await asyncio.to_thread(bound_port, admin_path.read_text().strip())
            if listener_port is None:
                await asyncio.sleep(0.05)
        yield Mesh(store_port, listener_port, log_path)
    finally:
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 10)
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
        await upstream_runner.cleanup()
        await store_runner.cleanup()
        await store.close()


def bound_port(admin: str) -> int | None:
    """The outbound listener's port once Envoy has bound it (None: not yet)."""
    try:
        with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=2) as r:
            body = json.load(r)
    except OSError:
        return None
    for listener in body.get("listener_statuses", []):
        port = listener.get("local_address", {}).get("socket_address", {}).get("port_value")
        if port:
            return int(port)
    return None


async def test_envoys_span_continues_the_callers_trace(tmp_path: Path) -> None:
    trace_id, caller = "463ac35c9f6413ad", "a2fb4a1d1a96d312"
    async with mesh(tmp_path) as proxied:
        seen = await asyncio.to_thread(
            proxied.request,
            "/books-bought",
            {"x-b3-traceid": trace_id, "x-b3-spanid": caller, "x-b3-sampled": "1"},
        )
        assert seen["x-b3-traceid"] == trace_id
        spans = await proxied.stored(trace_id)
    (span,) = spans
    assert span["traceId"] == trace_id
    assert span["parentId"] == caller
    assert span["id"] == seen["x-b3-spanid"], "the span Envoy propagated upstream"
    assert span["kind"] == "CLIENT"
    assert span["localEndpoint"]["serviceName"] == NODE_CLUSTER.lower()
    assert span["duration"] > 0 and span["timestamp"] > 1_600_000_000_000_000
    assert span["tags"]["http.method"] == "GET"
    assert span["tags"]["http.status_code"] == "200"
    assert span["tags"]["upstream_cluster"] == "upstream"
    assert span["tags"]["guid:x-request-id"] == seen["x-request-id"]


async def test_a_trace_envoy_starts_is_queryable(tmp_path: Path) -> None:
    async with mesh(tmp_path) as proxied:
        seen = [await asyncio.to_thread(proxied.request, f"/buy/{n}", {}) for n in range(3)]
        for headers in seen:
            spans = await proxied.stored(headers["x-b3-traceid"])
            assert [s["id"] for s in spans] == [headers["x-b3-spanid"]]
            assert "parentId" not in spans[0]
        traces = await asyncio.to_thread(
            proxied.query, "/api/v2/traces?serviceName=bookbuyer&limit=10"
        )
        services = await asyncio.to_thread(proxied.query, "/api/v2/services")
    assert services == [NODE_CLUSTER.lower()]
    assert sorted(t[0]["traceId"] for t in traces) == sorted(h["x-b3-traceid"] for h in seen)
