"""The dashboard's HTTP server: the JSON API of issue #18's contract and the page.

The one idea: a handler asks its sources concurrently, hands what came back to
`osm.dashboard.views`, and answers 200 with whatever it has: a source that failed is a
sentence in ``errors`` and null or empty data, never a 5xx (an unexpected error in the
views too: it is logged and named in ``errors``). Only a malformed parameter is the
caller's fault (400, with the parameter named). Whole answers are kept for the refresh
period (`sources.TtlCache`), so the page's tabs share one computation per period.

Routes: ``/api/status``, ``/api/graph``, ``/api/splits``, ``/api/services``,
``/api/services/{ns}/{name}``, ``/api/proxies``, ``/api/traces``, ``/api/traces/{id}``;
the page's ``index.html`` at ``/`` and its directory at ``/static/`` (a placeholder
page when the package has none).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from osm.catalog.catalog import Catalog
from osm.catalog.state import MeshState
from osm.dashboard import sources, views
from osm.dashboard.sources import SourceError

log = logging.getLogger(__name__)
DEFAULT_WINDOW = "1m"
"""The window of rates the page asks for unless told otherwise."""

Json = dict[str, Any]
STATIC_DIR = Path(__file__).resolve().parent / "static"
_DURATION = re.compile(r"^([1-9][0-9]{0,6})(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{16}([0-9a-fA-F]{16})?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_WINDOW_S = 86400
MAX_RANGE_S = 7 * 86400
MAX_POINTS = 11000
"""Prometheus refuses range queries of more points than this."""
PLACEHOLDER = """<!doctype html>
<html><head><meta charset="utf-8"><title>osm dashboard</title></head>
<body><h1>osm dashboard</h1><p>The page is not installed; the API answers at
<a href="/api/status">/api/status</a>, <a href="/api/graph">/api/graph</a>,
<a href="/api/splits">/api/splits</a>, <a href="/api/services">/api/services</a>,
<a href="/api/proxies">/api/proxies</a> and <a href="/api/traces">/api/traces</a>.</p>
</body></html>
"""


class BadParameter(ValueError):
    """A query parameter the caller got wrong (400)."""


def duration_s(name: str, text: str, maximum: float) -> float:
    """``30s``, ``5m``, ``1h``, ``1d`` in seconds; raises `BadParameter` naming ``name``."""
    found = _DURATION.match(text)
    if not found:
        raise BadParameter(f"{name}: {text!r} is not a duration such as 30s, 5m, 1h or 1d")
    seconds = int(found.group(1)) * _UNITS[found.group(2)]
    if seconds > maximum:
        raise BadParameter(f"{name}: {text} is longer than {maximum:g} s")
    return float(seconds)


@dataclass(slots=True)
class Sources:
    """Everything the dashboard reads, and the mode it runs in."""

    mode: str
    kubernetes: sources.MeshSource
    prometheus: sources.Prometheus
    tracing: sources.Zipkin
    controller: sources.Controller


class Dashboard:
    """The API's answers (each a JSON body with ``errors``), from ``sources``."""

    def __init__(
        self,
        found: Sources,
        *,
        refresh_s: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = found
        self.refresh_s = refresh_s
        self._now = wall_clock
        self._answers: sources.TtlCache[tuple[Any, ...], Json] = sources.TtlCache(
            refresh_s, clock=clock
        )
        self._metrics_cache: sources.TtlCache[str, views.Metrics | SourceError] = sources.TtlCache(
            refresh_s, clock=clock
        )
        self._catalog: tuple[MeshState, Catalog] | None = None
        self._topology: tuple[MeshState, views.Topology] | None = None

    async def close(self) -> None:
        """Closes every source (idempotent)."""
        found = self.sources
        for http in (found.prometheus.http, found.tracing.http, found.controller.http):
            await http.close()
        await found.kubernetes.close()

    async def answer(self, key: tuple[Any, ...], compute: Callable[[], Awaitable[Json]]) -> Json:
        return await self._answers.get(key, compute)

    async def prepare(self, window: str = DEFAULT_WINDOW) -> Json:
        """Answers the first page's questions before anyone asks: the status (returned) and
        the graph of `window`, kept as answers for a refresh period; the graph's topology
        and the policy verdicts of its edges (the costly part) stay for as long as the mesh
        state does. A source that fails is in the answers, as always."""
        status, _ = await asyncio.gather(
            self.answer(("status",), self.status),
            self.answer(("graph", window), lambda: self.graph(window)),
        )
        return status

    # -- what the answers share --------------------------------------------------------------
    async def _mesh(self, errors: list[str]) -> MeshState | None:
        try:
            return await self.sources.kubernetes.mesh()
        except SourceError as error:
            errors.append(str(error))
            return None

    def _catalog_of(self, state: MeshState) -> Catalog:
        if self._catalog is None or self._catalog[0] is not state:
            self._catalog = (state, Catalog(state))
        return self._catalog[1]

    def _topology_of(self, state: MeshState) -> views.Topology:
        """The state's graph topology: computed once per state version (the policy
        verdicts with it), shared by every refresh until the state changes."""
        if self._topology is None or self._topology[0] is not state:
            self._topology = (state, views.Topology(self._catalog_of(state)))
        return self._topology[1]

    async def _metrics(self, window: str, errors: list[str]) -> views.Metrics | None:
        """Prometheus's answers of one window folded once per refresh period, shared by
        the graph, splits and services answers."""
        found = await self._metrics_cache.get(window, lambda: self._fold_metrics(window))
        if isinstance(found, SourceError):
            errors.append(str(found))
            return None
        return found

    async def _fold_metrics(self, window: str) -> views.Metrics | SourceError:
        queries = sources.window_queries(window)
        prometheus = self.sources.prometheus
        answers = await asyncio.gather(
            *(prometheus.query(q) for q in queries.values()), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, SourceError):
                return answer
            if isinstance(answer, BaseException):
                raise answer
        named = dict(zip(queries, answers, strict=True))
        return views.metrics_from(**named)  # type: ignore[arg-type]

    # -- the routes --------------------------------------------------------------------------
    async def status(self) -> Json:
        found = self.sources
        states = await asyncio.gather(
            found.prometheus.check(), found.tracing.check(), found.controller.check()
        )
        with_kube = found.kubernetes.state
        named = {
            "kubernetes": with_kube,
            "prometheus": states[0],
            "tracing": states[1],
            "controller": states[2],
        }
        return {
            "mode": found.mode,
            "generated": datetime.datetime.fromtimestamp(self._now(), datetime.UTC).isoformat(),
            "refresh_s": self.refresh_s,
            "sources": {name: state.to_json() for name, state in named.items()},
            "errors": [
                f"{name}: {state.detail}" for name, state in named.items() if state.state != "ok"
            ],
        }

    async def graph(self, window: str) -> Json:
        errors: list[str] = []
        mesh, metrics = await asyncio.gather(self._mesh(errors), self._metrics(window, errors))
        if mesh is None:
            return {"window": window, "nodes": [], "edges": [], "errors": errors}
        topology = self._topology_of(mesh)
        body = views.graph(topology.catalog, metrics, window, topology)
        return {**body, "errors": errors}

    async def splits(self, window: str) -> Json:
        errors: list[str] = []
        mesh, metrics = await asyncio.gather(self._mesh(errors), self._metrics(window, errors))
        found = views.splits(mesh, metrics) if mesh is not None else []
        return {"splits": found, "errors": errors}

    async def services(self, window: str) -> Json:
        errors: list[str] = []
        mesh, metrics = await asyncio.gather(self._mesh(errors), self._metrics(window, errors))
        found = views.services(self._catalog_of(mesh), metrics) if mesh is not None else []
        return {"services": found, "errors": errors}

    async def service(
        self, namespace: str, name: str, range_s: float, step_s: float, window: str
    ) -> Json:
        errors: list[str] = []
        end = math.floor(self._now() / step_s) * step_s
        start = end - range_s
        queries = sources.service_queries(namespace, name, window)
        answers = await asyncio.gather(
            *(self.sources.prometheus.query_range(q, start, end, step_s) for q in queries.values()),
            return_exceptions=True,
        )
        series: dict[str, Any] = {}
        for signal, answer in zip(queries, answers, strict=True):
            if isinstance(answer, SourceError):
                if str(answer) not in errors:
                    errors.append(str(answer))
                series[signal] = None
            elif isinstance(answer, BaseException):
                raise answer
            else:
                series[signal] = views.series(answer)
        return {"namespace": namespace, "name": name, "series": series, "errors": errors}

    async def proxies(self) -> Json:
        errors: list[str] = []

        async def statuses() -> list[dict[str, Any]] | None:
            try:
                return await self.sources.controller.proxies()
            except SourceError as error:
                errors.append(str(error))
                return None

        mesh, found = await asyncio.gather(self._mesh(errors), statuses())
        body = views.proxies(mesh or MeshState.empty(), found or [], self._now())
        return {**body, "errors": errors}

    async def traces(self, service: str | None, limit: int, lookback_s: float) -> Json:
        try:
            found = await self.sources.tracing.traces(service, limit, lookback_s)
        except SourceError as error:
            return {"traces": [], "errors": [str(error)]}
        return {"traces": views.traces(found, limit), "errors": []}

    async def trace(self, trace_id: str) -> Json:
        empty: Json = {"trace_id": trace_id, "start_us": None, "duration_us": None, "spans": []}
        try:
            spans = await self.sources.tracing.trace(trace_id)
        except SourceError as error:
            return {**empty, "errors": [str(error)]}
        if not spans:
            return {**empty, "errors": [f"tracing: no trace {trace_id}"]}
        return {**views.trace_detail(spans), "errors": []}


# -- the application -----------------------------------------------------------------------
def _window(request: web.Request, default: str = DEFAULT_WINDOW) -> str:
    window = request.query.get("window", default)
    duration_s("window", window, MAX_WINDOW_S)
    return window


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadParameter(f"{name}: {value} is not between {low} and {high}")
    return value


def make_app(dashboard: Dashboard, static_dir: Path = STATIC_DIR) -> web.Application:
    """The aiohttp application of ``dashboard``, with the page in ``static_dir``."""

    def route(
        name: str,
        handler: Callable[[web.Request], tuple[tuple[Any, ...], Callable[[], Awaitable[Json]]]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                key, compute = handler(request)
            except BadParameter as error:
                return web.json_response({"errors": [str(error)]}, status=400)
            try:
                body = await dashboard.answer((name, *key), compute)
            except Exception as error:
                log.exception("the dashboard's %s answer failed", name)
                body = {"errors": [f"dashboard: {name} failed: {type(error).__name__}: {error}"]}
            return web.json_response(body, headers={"Cache-Control": "no-store"})

        return handle

    def status(request: web.Request) -> Any:
        return (), dashboard.status

    def graph(request: web.Request) -> Any:
        window = _window(request)
        return (window,), lambda: dashboard.graph(window)

    def splits(request: web.Request) -> Any:
        window = _window(request)
        return (window,), lambda: dashboard.splits(window)

    def services(request: web.Request) -> Any:
        window = _window(request)
        return (window,), lambda: dashboard.services(window)

    def service(request: web.Request) -> Any:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        for part, value in (("namespace", namespace), ("name", name)):
            if not _NAME.match(value):
                raise BadParameter(f"{part}: {value!r} is not a Kubernetes name")
        range_s = duration_s("range", request.query.get("range", "30m"), MAX_RANGE_S)
        step_s = duration_s("step", request.query.get("step", "15s"), MAX_RANGE_S)
        if range_s / step_s > MAX_POINTS:
            raise BadParameter(f"range/step: more than {MAX_POINTS} points; use a longer step")
        default_window = f"{max(60, int(4 * step_s))}s"
        window = _window(request, default_window)
        key = (namespace, name, range_s, step_s, window)
        return key, lambda: dashboard.service(namespace, name, range_s, step_s, window)

    def proxies(request: web.Request) -> Any:
        return (), dashboard.proxies

    def traces(request: web.Request) -> Any:
        service = request.query.get("service") or None
        if service is not None and len(service) > 253:
            raise BadParameter("service: longer than 253 characters")
        limit = _int(request, "limit", 20, 1, 1000)
        lookback_s = duration_s("lookback", request.query.get("lookback", "15m"), MAX_RANGE_S)
        key = (service, limit, lookback_s)
        return key, lambda: dashboard.traces(service, limit, lookback_s)

    def trace(request: web.Request) -> Any:
        trace_id = request.match_info["trace_id"]
        if not _TRACE_ID.match(trace_id):
            raise BadParameter(f"trace id: {trace_id!r} is not 16 or 32 hex digits")
        return (trace_id.lower(),), lambda: dashboard.trace(trace_id.lower())

    index = static_dir / "index.html"

    async def page(request: web.Request) -> web.StreamResponse:
        if index.is_file():
            return web.FileResponse(index, headers={"Cache-Control": "no-cache"})
        return web.Response(text=PLACEHOLDER, content_type="text/html")

    async def close(app: web.Application) -> None:
        await dashboard.close()

    app = web.Application()
    app.on_cleanup.append(close)
    app.add_routes(
        [
            web.get("/", page),
            web.get("/api/status", route("status", status)),
            web.get("/api/graph", route("graph", graph)),
            web.get("/api/splits", route("splits", splits)),
            web.get("/api/services", route("services", services)),
            web.get("/api/services/{namespace}/{name}", route("service", service)),
            web.get("/api/proxies", route("proxies", proxies)),
            web.get("/api/traces", route("traces", traces)),
            web.get("/api/traces/{trace_id}", route("trace", trace)),
        ]
    )
    if static_dir.is_dir():
        app.router.add_static("/static/", static_dir)
    return app


async def serve(
    dashboard: Dashboard, host: str, port: int, static_dir: Path = STATIC_DIR
) -> web.AppRunner:
    """Starts the server on ``host:port``; the caller cleans the runner up."""
    runner = web.AppRunner(make_app(dashboard, static_dir), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
