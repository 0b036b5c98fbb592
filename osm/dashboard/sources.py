"""Where the dashboard's data comes from: the Kubernetes API, Prometheus, the trace store
(Zipkin's API) and the controller's ``/debug/proxies``, each read over its own API.

The one idea: a source never raises anything but `SourceError`, which carries the
contract's state (``unreachable``, ``timeout``, ``not-installed``, ``error``) and a
sentence naming the source, and every source remembers its last state for
``/api/status``. Each HTTP request has a timeout (2 s by default), and each answer
(an error too) is kept for the refresh period and shared by every caller that asks for
the same thing meanwhile (`TtlCache`), so any number of browser tabs cost a source one
request per refresh.

Where an HTTP source lives is asked each time of a `Locator` (the CLI's: a fixed URL in
Kubernetes mode, a port-forward to a Service's endpoint in local mode, or why there is
none); the mesh's objects come from an informer (list once, then watch), so a refresh
costs the API server nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, Protocol, TypeVar

import aiohttp

from osm.catalog.state import MeshState
from osm.kube import informer as kube_informer
from osm.kube.client import KubeClient, Manifest
from osm.kube.errors import ApiError, ConnectionFailed, KubeError
from osm.model import kinds
from osm.model.errors import ValidationFailed
from osm.model.meta import Resource

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2.0
LOOKBACK = "1h"
"""How far back an edge's earlier requests count (denied edges are drawn from these)."""
MESH_KINDS = (
    "Namespace",
    "ServiceAccount",
    "Service",
    "Pod",
    "Endpoints",
    "Deployment",
    *(info.kind for info in kinds.KINDS if info.strict),
)
"""The kinds the catalog reads (the controller's push loop's) and Deployments (workloads)."""

OK, UNREACHABLE, TIMEOUT, NOT_INSTALLED, ERROR = (
    "ok",
    "unreachable",
    "timeout",
    "not-installed",
    "error",
)


@dataclass(frozen=True, slots=True)
class SourceState:
    """A source's state as ``/api/status`` shows it."""

    state: str
    detail: str
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "url": self.url}


class SourceError(Exception):
    """A source could not answer; ``str()`` is the sentence for the ``errors`` list."""

    def __init__(self, source: str, state: SourceState) -> None:
        super().__init__(f"{source}: {state.detail}")
        self.source = source
        self.state = state


# -- caching ---------------------------------------------------------------------------------
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Answers kept for ``ttl`` seconds of ``clock``; concurrent asks for one key share
    one computation. A failure is kept like an answer (a source that is down is asked
    once per period, however many callers). Keeps at most ``size`` keys."""

    def __init__(
        self, ttl: float, *, clock: Callable[[], float] = time.monotonic, size: int = 256
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._size = size
        self._entries: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
            self._entries[key] = (now + self.ttl, future)
            self._evict(now)
            try:
                future.set_result(await compute())
            except BaseException as error:
                future.set_exception(error)
                if not isinstance(error, Exception):  # cancelled: nobody keeps that
                    self._entries.pop(key, None)
                    future.exception()  # retrieved, so asyncio does not log it
                    raise
            return future.result()
        return await asyncio.shield(entry[1])

    def _evict(self, now: float) -> None:
        if len(self._entries) <= self._size:
            return
        for key, (expires, future) in list(self._entries.items()):
            if expires <= now and future.done():
                if not future.cancelled():
                    future.exception()
                del self._entries[key]
        while len(self._entries) > self._size:
            oldest = next(iter(self._entries))
            future = self._entries.pop(oldest)[1]
            if future.done() and not future.cancelled():
                future.exception()


# -- HTTP sources ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Location:
    """Where a source answers (``url``), or why it cannot (``missing``: its state)."""

    url: str | None
    missing: SourceState | None = None


Locator = Callable[[], Awaitable[Location]]


def fixed(url: str | None, missing: str) -> Locator:
    """A source at ``url``; without one, not installed, ``missing`` saying why."""
    location = (
        Location(url.rstrip("/"))
        if url
        else Location(None, SourceState(NOT_INSTALLED, missing, None))
    )

    async def locate() -> Location:
        return location

    return locate


class HttpSource:
    """One JSON-over-HTTP source: GETs with a timeout, answers cached for ``ttl``."""

    def __init__(
        self,
        name: str,
        locate: Locator,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._locate = locate
        self.timeout = timeout
        self._cache: TtlCache[tuple[str, tuple[tuple[str, str], ...]], Any] = TtlCache(
            ttl, clock=clock
        )
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock
        self._failed_at = -math.inf
        self.state = SourceState(UNREACHABLE, "not asked yet", None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self, path: str) -> SourceState:
        """Asks ``path`` (cached as any GET) and returns the state that left."""
        with contextlib.suppress(SourceError):
            await self.get(path)
        return self.state

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON of ``GET path?params``; None for a 404 of an existing source
        (the thing asked for does not exist). Raises `SourceError`."""
        key = (path, tuple(sorted((params or {}).items())))
        return await self._cache.get(key, lambda: self._fetch(path, params or {}))

    async def _fetch(self, path: str, params: Mapping[str, str]) -> Any:
        try:
            location = await asyncio.wait_for(self._locate(), self.timeout)
        except TimeoutError:
            self._fail(TIMEOUT, f"finding it timed out after {self.timeout:.1f} s", None)
        except Exception as error:
            self._fail(ERROR, f"cannot find it: {error}", None)
        if location.url is None:
            missing = location.missing or SourceState(NOT_INSTALLED, "not installed")
            self._fail(missing.state, missing.detail, missing.url)
        url = location.url
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False
            )
        try:
            async with self._session.get(url + path, params=dict(params)) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            self._fail(TIMEOUT, f"timed out after {self.timeout:.1f} s at {url}", url)
        except aiohttp.ClientConnectorError as error:
            cause = error.os_error
            reason = os.strerror(cause.errno) if cause.errno else str(cause)
            self._fail(UNREACHABLE, f"unreachable at {url}: {reason.lower()}", url)
        except (aiohttp.ClientError, OSError) as error:
            self._fail(UNREACHABLE, f"unreachable at {url}: {error or type(error).__name__}", url)
        if status == 404:
            self._answered(url)
            return None
        if status >= 400:
            text = body[:300].decode("utf-8", "replace").strip()
            self._fail(ERROR, f"{url}{path} answered {status}: {text}", url)
        try:
            decoded = json.loads(body)
        except ValueError:
            self._fail(ERROR, f"{url}{path} answered with something that is not JSON", url)
        self._answered(url)
        return decoded

    def _answered(self, url: str) -> None:
        """An answer is OK unless another request failed within the last period: the
        state shows the period's failure (a query that timed out beside ones that did
        not) until a whole period passes without one."""
        if self._clock() - self._failed_at >= self._cache.ttl:
            self.state = SourceState(OK, "answering", url)

    def _fail(self, state: str, detail: str, url: str | None) -> NoReturn:
        self.state = SourceState(state, detail, url)
        self._failed_at = self._clock()
        raise SourceError(self.name, self.state)


class Prometheus:
    """Prometheus's HTTP API: instant and range queries (``data.result``)."""

    def __init__(self, http: HttpSource) -> None:
        self.http = http

    async def query(self, promql: str) -> list[dict[str, Any]]:
        return self._result(await self.http.get("/api/v1/query", {"query": promql}))

    async def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        params = {
            "query": promql,
            "start": f"{start:.0f}",
            "end": f"{end:.0f}",
            "step": f"{step:g}",
        }
        return self._result(await self.http.get("/api/v1/query_range", params))

    def _result(self, answer: Any) -> list[dict[str, Any]]:
        if not isinstance(answer, dict) or answer.get("status") != "success":
            problem = answer.get("error") if isinstance(answer, dict) else "no answer"
            raise SourceError(self.http.name, SourceState(ERROR, f"query failed: {problem}"))
        result = (answer.get("data") or {}).get("result")
        return result if isinstance(result, list) else []

    async def check(self) -> SourceState:
        return await self.http.check("/api/v1/status/buildinfo")


class Zipkin:
    """The trace store's Zipkin v2 query API."""

    def __init__(self, http: HttpSource) -> None:
        self.http = http

    async def traces(
        self, service: str | None, limit: int, lookback_s: float
    ) -> list[list[dict[str, Any]]]:
        params = {"limit": str(limit), "lookback": str(int(lookback_s * 1000))}
        if service:
            params["serviceName"] = service
        found = await self.http.get("/api/v2/traces", params)
        return [t for t in found if isinstance(t, list)] if isinstance(found, list) else []

    async def trace(self, trace_id: str) -> list[dict[str, Any]] | None:
        found = await self.http.get(f"/api/v2/trace/{trace_id}")
        return found if isinstance(found, list) else None

    async def check(self) -> SourceState:
        return await self.http.check("/api/v2/services")


class Controller:
    """The controller's HTTP: ``/debug/proxies``."""

    def __init__(self, http: HttpSource) -> None:
        self.http = http

    async def proxies(self) -> list[dict[str, Any]]:
        found = await self.http.get("/debug/proxies")
        proxies = found.get("proxies") if isinstance(found, dict) else None
        return proxies if isinstance(proxies, list) else []

    async def check(self) -> SourceState:
        return await self.http.check("/debug/proxies")


# -- PromQL ----------------------------------------------------------------------------------
OUTBOUND = 'envoy_cluster_name=~"[^/|]+/[^/|]+[|][0-9]+"'
"""Outbound clusters ``<ns>/<svc>|<port>`` only (not ``|local``, tracing, passthrough)."""
EDGE = "source_namespace, source_workload_name, envoy_cluster_name"


def window_queries(window: str) -> dict[str, str]:
    """The instant queries of one window, named as `osm.dashboard.views.metrics_from`'s
    arguments."""

    def quantile(q: float, by: str) -> str:
        return (
            f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate(envoy_cluster_upstream_rq_time_bucket{{{OUTBOUND}}}[{window}])))"
        )

    return {
        "rps": f"sum by ({EDGE}) (rate(envoy_cluster_upstream_rq_total{{{OUTBOUND}}}[{window}]))",
        "classes": (
            f"sum by ({EDGE}, envoy_response_code_class) "
            f"(rate(envoy_cluster_upstream_rq_xx{{{OUTBOUND}}}[{window}]))"
        ),
        "p50": quantile(0.5, EDGE),
        "p99": quantile(0.99, EDGE),
        "service_p50": quantile(0.5, "envoy_cluster_name"),
        "service_p99": quantile(0.99, "envoy_cluster_name"),
        "seen": (
            f"sum by ({EDGE}) (increase(envoy_cluster_upstream_rq_total{{{OUTBOUND}}}[{LOOKBACK}]))"
        ),
    }


def service_queries(namespace: str, name: str, window: str) -> dict[str, str]:
    """The range queries of one service's golden signals (every client's requests)."""
    selector = f'envoy_cluster_name=~"{namespace}/{name}[|][0-9]+"'
    xx = f"envoy_cluster_upstream_rq_xx{{{selector}"

    def quantile(q: float) -> str:
        return (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(envoy_cluster_upstream_rq_time_bucket{{{selector}}}[{window}])))"
        )

    return {
        "rps": f"sum(rate(envoy_cluster_upstream_rq_total{{{selector}}}[{window}]))",
        "success_rate": (
            f'sum(rate({xx},envoy_response_code_class=~"2|3"}}[{window}])) '
            f"/ sum(rate({xx}}}[{window}]))"
        ),
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
    }


# -- the mesh's objects ----------------------------------------------------------------------
class MeshSource(Protocol):
    """What the dashboard needs of the Kubernetes side."""

    async def mesh(self) -> MeshState:
        """The mesh's objects now; raises `SourceError` when there are none to give."""
        ...

    async def close(self) -> None: ...

    @property
    def state(self) -> SourceState: ...


class _Recording:
    """The informer's client, remembering whether its last list failed and why."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.problem: KubeError | None = None

    async def list(self, kind: str, namespace: str | None = None) -> tuple[list[Manifest], str]:
        try:
            found = await self.client.list(kind, namespace)
        except KubeError as error:
            self.problem = error
            raise
        self.problem = None
        return found

    def watch(
        self, kind: str, namespace: str | None = None, resource_version: str | None = None
    ) -> AsyncGenerator[tuple[str, Manifest], None]:
        return self.client.watch(kind, namespace, resource_version)


class KubernetesMesh:
    """The mesh's objects from the API: each served kind listed once, then watched (an
    `osm.kube.informer.Informer`); `mesh` answers from memory. Kinds the server does
    not serve (a cluster without a CRD) have no objects. Objects the model cannot read
    are left out, as the controller leaves them out. The caller owns ``client`` (and
    closes it)."""

    def __init__(self, client: KubeClient, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.client = client
        self.timeout = timeout
        self._recording = _Recording(client)
        self._objects: dict[tuple[str, str, str], Resource] = {}
        self._synced = asyncio.Event()
        self._built: MeshState | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None

    @property
    def state(self) -> SourceState:
        url = self.client.server
        if self._failure:
            return SourceState(ERROR, self._failure, url)
        problem = self._recording.problem
        if problem is not None:
            kind = UNREACHABLE if isinstance(problem, ConnectionFailed) else ERROR
            return SourceState(kind, str(problem), url)
        if not self._synced.is_set():
            return SourceState(UNREACHABLE, "waiting for the first list", url)
        return SourceState(OK, f"watching {len(self._objects)} objects", url)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard-kubernetes")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def mesh(self) -> MeshState:
        await self.start()
        if not self._synced.is_set():
            try:
                await asyncio.wait_for(self._synced.wait(), self.timeout)
            except TimeoutError:
                state = self.state
                if state.state == OK or state.detail == "waiting for the first list":
                    state = SourceState(
                        TIMEOUT, f"no list within {self.timeout:.1f} s", self.client.server
                    )
                raise SourceError("kubernetes", state) from None
        if self._built is None:
            self._built = MeshState.from_resources(self._objects.values())
        return self._built

    async def _served_kinds(self) -> list[str]:
        served: list[str] = []
        for kind in MESH_KINDS:
            try:
                await self.client.list(kind, None, page_size=1)
            except ApiError as error:
                if error.code == 404:
                    continue
                raise
            served.append(kind)
        return served

    async def _run(self) -> None:
        while True:
            try:
                served = await self._served_kinds()
                self._recording.problem = None
                async with kube_informer.Informer(self._recording, served) as events:
                    async for event in events:
                        self._apply(event)
            except asyncio.CancelledError:
                raise
            except KubeError as error:
                self._recording.problem = error
            except Exception as error:  # shown in /api/status; retried
                log.exception("the dashboard's informer failed")
                self._failure = f"{type(error).__name__}: {error}"
            await asyncio.sleep(self.timeout)

    def _apply(self, event: kube_informer.Event) -> None:
        if isinstance(event, kube_informer.Sync):
            self._objects = {}
            for item in event.objects:
                self._put(item)
            self._synced.set()
        elif event.type == "DELETED":
            self._objects.pop(_key(event.object), None)
        else:
            self._put(event.object)
        self._built = None
        self._failure = None

    def _put(self, item: Manifest) -> None:
        try:
            resource = kinds.decode(item)
        except ValidationFailed:
            self._objects.pop(_key(item), None)
            return
        self._objects[_key(item)] = resource


def _key(item: Mapping[str, Any]) -> tuple[str, str, str]:
    metadata = item.get("metadata") or {}
    return (str(item.get("kind")), str(metadata.get("namespace") or ""), str(metadata.get("name")))


class StaticMesh:
    """A fixed `MeshState` (tests and the benchmark), or a fixed failure."""

    def __init__(self, mesh: MeshState | None, state: SourceState | None = None) -> None:
        self._mesh = mesh
        self._state = state or SourceState(OK, "fixed objects", None)

    @property
    def state(self) -> SourceState:
        return self._state

    async def close(self) -> None:
        pass

    async def mesh(self) -> MeshState:
        if self._mesh is None:
            raise SourceError("kubernetes", self._state)
        return self._mesh
