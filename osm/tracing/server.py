"""Zipkin's HTTP API over a `store.TraceStore`: the collector (``POST /api/v2/spans``) and the
query API (openzipkin's ``zipkin-api.yaml``), plus ``/health`` and ``/metrics``.

The one idea: answers are Zipkin's, byte for byte where a client could care (JSON v2 span
lists, ``202`` with an empty body for accepted spans, ``400`` with a text message naming the
bad span or parameter, ``404`` ``"<id> not found"`` for an unknown trace, CORS open to any
origin as Zipkin's default ``zipkin.query.allowed-origins=*``), so Zipkin's UI, its clients
and our dashboard read it unchanged. Request bodies may be gzip-compressed
(``Content-Encoding: gzip``; aiohttp inflates them, up to `MAX_BODY` bytes).

Metrics use Zipkin's collector names (``zipkin_collector_spans_total`` with
``transport="http"``...), and ``osm_tracing_store_*`` for the store's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from osm.base import wellknown
from osm.tracing import model
from osm.tracing.store import TraceStore, encode_trace, encode_traces, json_text

log = logging.getLogger(__name__)

MAX_BODY: Final = 32 * 1024 * 1024
"""The largest span list accepted (after gzip): Zipkin's collector takes messages this big."""
PRUNE_EVERY_S: Final = 30.0
"""How often the age bound is applied when no spans arrive."""
JSON: Final = "application/json"
CORS_HEADERS: Final = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Type",
}
STORE: Final = web.AppKey("store", TraceStore)


class Metrics:
    """The collector's counters (Zipkin's names) and the store's gauges, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ["transport"]
        self.messages = Counter(
            "zipkin_collector_messages", "Span lists received", labels, registry=registry
        )
        self.messages_dropped = Counter(
            "zipkin_collector_messages_dropped",
            "Span lists refused (malformed, not JSON, too large)",
            labels,
            registry=registry,
        )
        self.bytes = Counter(
            "zipkin_collector_bytes", "Bytes of span lists received", labels, registry=registry
        )
        self.spans = Counter(
            "zipkin_collector_spans", "Spans received and accepted", labels, registry=registry
        )
        self.spans_dropped = Counter(
            "zipkin_collector_spans_dropped",
            "Spans refused (their list had a malformed span)",
            labels,
            registry=registry,
        )
        self.stored_spans = Gauge(
            "osm_tracing_store_spans", "Spans in the store", registry=registry
        )
        self.stored_traces = Gauge(
            "osm_tracing_store_traces", "Traces in the store", registry=registry
        )
        self.file_bytes = Gauge(
            "osm_tracing_store_bytes",
            "Size of the store's files (database and WAL)",
            registry=registry,
        )
        self.pruned = Gauge(
            "osm_tracing_store_pruned_spans",
            "Spans deleted by retention since the process started",
            registry=registry,
        )


METRICS: Final = web.AppKey("metrics", Metrics)


def make_app(
    store: TraceStore,
    registry: CollectorRegistry | None = None,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> web.Application:
    """The Zipkin API over ``store`` (which the caller opens and closes); ``now_ms`` is the
    default ``endTs`` of queries."""
    metrics = Metrics(registry or CollectorRegistry())
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_cors, _errors])
    app[STORE] = store
    app[METRICS] = metrics

    async def post_spans(request: web.Request) -> web.Response:
        content_type = request.content_type
        if content_type not in (JSON, "application/octet-stream", "text/plain"):
            metrics.messages_dropped.labels("http").inc()
            raise _bad(
                415,
                f"Content-Type {content_type!r} is not supported; this store accepts Zipkin v2 "
                "JSON (application/json), optionally gzip-compressed",
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            metrics.messages_dropped.labels("http").inc()
            raise
        metrics.messages.labels("http").inc()
        metrics.bytes.labels("http").inc(len(body))
        try:
            spans = model.parse_spans(body)
        except model.SpansError as error:
            metrics.messages_dropped.labels("http").inc()
            metrics.spans_dropped.labels("http").inc(_count_items(body))
            raise _bad(400, str(error)) from None
        await store.accept(spans)
        metrics.spans.labels("http").inc(len(spans))
        return web.Response(status=202)

    async def services(request: web.Request) -> web.Response:
        return _json(json_text(await store.services()))

    async def span_names(request: web.Request) -> web.Response:
        return _json(json_text(await store.span_names(_service(request))))

    async def remote_services(request: web.Request) -> web.Response:
        return _json(json_text(await store.remote_services(_service(request))))

    async def traces(request: web.Request) -> web.Response:
        try:
            query = model.Query.from_params(request.query, now_ms())
        except model.QueryError as error:
            raise _bad(400, str(error)) from None
        return _json(encode_traces(await store.query(query)))

    async def trace(request: web.Request) -> web.Response:
        trace_id = _trace_id(request.match_info["trace_id"], "traceId")
        bodies = await store.trace(trace_id)
        if not bodies:
            raise web.HTTPNotFound(text=f"{trace_id} not found")
        return _json(encode_trace(bodies))

    async def trace_many(request: web.Request) -> web.Response:
        text = request.query.get("traceIds", "")
        ids = [part.strip() for part in text.split(",") if part.strip()]
        if not ids:
            raise _bad(400, "traceIds: empty; valid: comma-separated trace ids")
        normalized = [_trace_id(part, "traceIds") for part in ids]
        return _json(encode_traces(await store.traces(normalized)))

    async def dependencies(request: web.Request) -> web.Response:
        if not request.query.get("endTs"):
            raise _bad(400, "endTs: missing; valid: milliseconds since the epoch")
        try:
            query = model.Query.from_params(
                {k: request.query[k] for k in ("endTs", "lookback") if k in request.query},
                now_ms(),
            )
        except model.QueryError as error:
            raise _bad(400, str(error)) from None
        links = await store.dependencies(query.end_ts, query.lookback)
        return _json(json_text([link.to_json() for link in links]))

    async def health(request: web.Request) -> web.Response:
        up = {"status": "UP"}
        body = {"status": "UP", "zipkin": {"status": "UP", "details": {"SqliteStore": up}}}
        return _json(json_text(body))

    async def prometheus(request: web.Request) -> web.Response:
        stats = store.stats()
        metrics.stored_spans.set(stats.spans)
        metrics.stored_traces.set(stats.traces)
        metrics.file_bytes.set(stats.file_bytes)
        metrics.pruned.set(stats.pruned_spans)
        return web.Response(
            body=generate_latest(metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def preflight(request: web.Request) -> web.Response:
        asked = request.headers.get("Access-Control-Request-Headers", "content-type")
        return web.Response(
            status=200,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": asked,
                "Access-Control-Max-Age": "86400",
            },
        )

    app.router.add_post(wellknown.ZIPKIN_SPANS_PATH, post_spans)
    app.router.add_get(wellknown.ZIPKIN_SPANS_PATH, span_names)
    app.router.add_get("/api/v2/services", services)
    app.router.add_get("/api/v2/remoteServices", remote_services)
    app.router.add_get("/api/v2/traces", traces)
    app.router.add_get("/api/v2/trace/{trace_id}", trace)
    app.router.add_get("/api/v2/traceMany", trace_many)
    app.router.add_get("/api/v2/dependencies", dependencies)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", prometheus)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.cleanup_ctx.append(_pruning)
    return app


async def _pruning(app: web.Application) -> AsyncIterator[None]:
    """Applies the age bound every `PRUNE_EVERY_S` while the app runs (writes also do)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            try:
                await app[STORE].prune()
            except Exception:
                log.exception("osm.tracing: pruning the store failed")

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@web.middleware
async def _cors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers.update(CORS_HEADERS)
        raise
    response.headers.update(CORS_HEADERS)
    return response


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Anything unexpected is logged and answered 500 with its message (Zipkin's too)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as error:
        log.exception("osm.tracing: %s %s failed", request.method, request.path)
        raise web.HTTPInternalServerError(text=f"{type(error).__name__}: {error}") from None


def _json(text: str) -> web.Response:
    return web.Response(text=text, content_type=JSON)


def _bad(status: int, message: str) -> web.HTTPException:
    if status == 415:
        return web.HTTPUnsupportedMediaType(text=message)
    return web.HTTPBadRequest(text=message)


def _service(request: web.Request) -> str:
    name = request.query.get("serviceName", "")
    if not name:
        raise _bad(400, "serviceName: missing; valid: a service name (GET /api/v2/services)")
    return name.lower()


def _trace_id(text: str, parameter: str) -> str:
    try:
        return model.normalize_trace_id(text, parameter)
    except model.SpansError as error:
        raise _bad(400, str(error)) from None


def _count_items(body: bytes) -> int:
    """How many spans a refused list had, for the dropped counter (1 if it is not a list)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return 1
    return len(document) if isinstance(document, list) else 1
