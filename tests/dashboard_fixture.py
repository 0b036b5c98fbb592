"""A stand-in for `osm dashboard`'s server: the page's static files and canned JSON per the
contract of issue #18 (tools/obs_contract.md), for the browser tests and the render bench.

`Scenario` is what the API answers; `bookstore()` is the demo in SMI mode (bookbuyer →
bookstore-v1/v2 active through the 75/25 split, bookthief → bookstore denied, a trace
bookbuyer → bookstore → bookwarehouse), `bookstore(prometheus="not-installed")` the same
without metrics; `scaled(services, proxies)` a large mesh. `FixtureServer` serves one
scenario from a thread on a free loopback port; its `scenario` may be replaced while it runs
(the next request sees the new one), and `requests` lists the paths asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from osm import dashboard

STATIC = Path(dashboard.__file__).resolve().parent / "static"
Json = dict[str, Any]


def _iso(seconds_from_now: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_from_now)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclasses.dataclass
class Scenario:
    """The bodies the API answers; `series` makes a service's time series on demand."""

    status: Json
    graph: Json
    splits: Json
    services: Json
    proxies: Json
    traces: Json
    trace_bodies: dict[str, Json]
    series: Callable[[str, str], Json]


def _source(state: str, detail: str = "", url: str | None = None) -> Json:
    return {"state": state, "detail": detail, "url": url}


def _series(namespace: str, name: str, base_rps: float = 7.5) -> Json:
    now = int(time.time())
    points = range(now - 30 * 60, now + 1, 15)
    wave = [((t // 15) % 40) / 40 for t in points]
    return {
        "namespace": namespace,
        "name": name,
        "series": {
            "rps": [
                [t, round(base_rps * (0.8 + 0.4 * w), 3)] for t, w in zip(points, wave, strict=True)
            ],
            "success_rate": [
                [t, None if i == 10 else (0.97 if i % 37 == 0 else 1.0)]
                for i, t in enumerate(points)
            ],
            "p50_ms": [[t, 3.0 + 2 * w] for t, w in zip(points, wave, strict=True)],
            "p99_ms": [[t, 14.0 + 30 * w] for t, w in zip(points, wave, strict=True)],
        },
        "errors": [],
    }


SUGGESTION = """apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata:
  name: bookthief-to-bookstore
  namespace: bookstore
spec:
  destination:
    kind: ServiceAccount
    name: bookstore
    namespace: bookstore
  rules:
  - kind: HTTPRouteGroup
    name: bookstore-service-routes
    matches:
    - buy-a-book
    - books-bought
  sources:
  - kind: ServiceAccount
    name: bookthief
    namespace: bookthief
"""

DENIED_BY = "no TrafficTarget allows bookthief/bookthief → bookstore/bookstore"
TRACE_ID = "4bf92f3577b34da6"


def bookstore(prometheus: str = "ok") -> Scenario:
    """The bookstore demo in SMI mode; `prometheus` is that source's state."""
    metrics = prometheus == "ok"
    errors = [] if metrics else ["prometheus: not installed (no Service osm-system/osm-prometheus)"]

    def node(kind: str, namespace: str, name: str, plane: str | None, pods: int) -> Json:
        return {
            "id": f"{kind}:{namespace}/{name}",
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "label": name,
            "data_plane": plane,
            "pods": pods,
        }

    def edge(
        source: str,
        target: str,
        state: str,
        signals: tuple[float, float, float, float] | None,
        by: str = "TrafficTarget bookstore/bookstore",
        kind: str = "traffic",
        suggestion: str | None = None,
    ) -> Json:
        rps, success, p50, p99 = signals if (signals and metrics) else (None,) * 4
        return {
            "id": f"{source}->{target}",
            "source": source,
            "target": target,
            "kind": kind,
            "state": state,
            "rps": rps,
            "success_rate": success,
            "p50_ms": p50,
            "p99_ms": p99,
            "policy": {"allowed": state != "denied", "by": by, "suggestion": suggestion},
        }

    buyer, thief = "workload:bookbuyer/bookbuyer", "workload:bookthief/bookthief"
    v1, v2 = "workload:bookstore/bookstore-v1", "workload:bookstore/bookstore-v2"
    warehouse = "workload:bookwarehouse/bookwarehouse"
    store, store_v1, store_v2 = (
        "service:bookstore/bookstore",
        "service:bookstore/bookstore-v1",
        "service:bookstore/bookstore-v2",
    )
    warehouse_service = "service:bookwarehouse/bookwarehouse"
    warehouse_target = "TrafficTarget bookwarehouse/bookwarehouse"
    graph = {
        "window": "1m",
        "nodes": [
            node("workload", "bookbuyer", "bookbuyer", "envoy", 1),
            node("workload", "bookthief", "bookthief", "python", 1),
            node("service", "bookstore", "bookstore", None, 0),
            node("service", "bookstore", "bookstore-v1", None, 0),
            node("service", "bookstore", "bookstore-v2", None, 0),
            node("workload", "bookstore", "bookstore-v1", "envoy", 1),
            node("workload", "bookstore", "bookstore-v2", "python", 1),
            node("service", "bookwarehouse", "bookwarehouse", None, 0),
            node("workload", "bookwarehouse", "bookwarehouse", "envoy", 1),
        ],
        "edges": [
            edge(buyer, store_v1, "active", (7.42, 1.0, 3.1, 12.0)),
            edge(buyer, store_v2, "active", (2.58, 0.993, 4.2, 18.5)),
            edge(buyer, store, "idle", None),
            edge(thief, store, "denied", None, by=DENIED_BY, suggestion=SUGGESTION),
            edge(v1, warehouse_service, "active", (7.4, 1.0, 1.8, 6.0), by=warehouse_target),
            edge(v2, warehouse_service, "active", (2.6, 0.962, 2.0, 40.0), by=warehouse_target),
            edge(store, v1, "active", None, kind="serves"),
            edge(store, v2, "active", None, kind="serves"),
            edge(store_v1, v1, "active", None, kind="serves"),
            edge(store_v2, v2, "active", None, kind="serves"),
            edge(warehouse_service, warehouse, "active", None, kind="serves"),
        ],
        "errors": errors,
    }
    splits = {
        "splits": [
            {
                "namespace": "bookstore",
                "name": "bookstore-split",
                "service": "bookstore",
                "backends": [
                    {
                        "service": "bookstore-v1",
                        "weight": 75,
                        "configured_share": 0.75,
                        "observed_share": 0.742 if metrics else None,
                        "rps": 7.42 if metrics else None,
                    },
                    {
                        "service": "bookstore-v2",
                        "weight": 25,
                        "configured_share": 0.25,
                        "observed_share": 0.258 if metrics else None,
                        "rps": 2.58 if metrics else None,
                    },
                ],
            }
        ],
        "errors": errors,
    }
    signals = {
        ("bookstore", "bookstore-v1"): (7.42, 1.0, 3.1, 12.0),
        ("bookstore", "bookstore-v2"): (2.58, 0.993, 4.2, 18.5),
        ("bookstore", "bookstore"): (0.0, None, None, None),
        ("bookwarehouse", "bookwarehouse"): (10.0, 0.989, 1.9, 31.0),
    }
    services = {
        "services": [
            {
                "namespace": ns,
                "name": name,
                "rps": values[0] if metrics else None,
                "success_rate": values[1] if metrics else None,
                "p50_ms": values[2] if metrics else None,
                "p99_ms": values[3] if metrics else None,
            }
            for (ns, name), values in signals.items()
        ],
        "errors": errors,
    }

    def proxy(namespace: str, pod: str, plane: str, expiry_s: float, nack: Json | None) -> Json:
        return {
            "namespace": namespace,
            "pod": pod,
            "node_id": f"{pod}.{namespace}",
            "identity": f"{pod.rsplit('-', 2)[0]}.{namespace}.cluster.local",
            "data_plane": plane,
            "connected_since": _iso(-3600),
            "acked_versions": {"CDS": "7", "EDS": "12", "LDS": "7", "RDS": "5", "SDS": "3"},
            "last_nack": nack,
            "cert_expiry": _iso(expiry_s),
            "protocol": "ads-grpc" if plane == "envoy" else "ads-http",
        }

    nack = {
        "type": "RDS",
        "error": "route bookstore-v2: unknown cluster bookstore/bookstore-v3|14001",
        "at": _iso(-120),
    }
    proxies = {
        "proxies": [
            proxy("bookbuyer", "bookbuyer-6d9f7c-x2k4p", "envoy", 86000, None),
            proxy("bookthief", "bookthief-5b8c4d-q9w2e", "python", 80000, None),
            proxy("bookstore", "bookstore-v1-7f6d5c-h7j3k", "envoy", 70000, None),
            proxy("bookstore", "bookstore-v2-58c9b7-m4n8t", "python", 60000, nack),
            proxy("bookwarehouse", "bookwarehouse-6c7d8e-p1r5s", "envoy", 2400, None),
        ],
        "summary": {"connected": 5, "nacked": 1, "expiring_soon": 1},
        "errors": [],
    }
    start_us = int(time.time() * 1e6) - 20_000_000

    def span(
        sid: str,
        parent: str | None,
        service: str,
        name: str,
        kind: str,
        at: int,
        took: int,
        depth: int,
    ) -> Json:
        return {
            "id": sid,
            "parent_id": parent,
            "service": service,
            "name": name,
            "kind": kind,
            "start_us": at,
            "duration_us": took,
            "depth": depth,
            "tags": {
                "http.method": "GET",
                "http.status_code": "200",
                "upstream_cluster": f"{service}|local" if kind == "SERVER" else "outbound",
                "node_id": f"{service}.node",
                "guid:x-request-id": "6c1b0f0e-3d3a-4b54-9a3e-2f1e5d4c3b2a",
            },
            "error": False,
        }

    trace = {
        "trace_id": TRACE_ID,
        "start_us": start_us,
        "duration_us": 18_400,
        "spans": [
            span(
                "a1",
                None,
                "bookbuyer",
                "bookstore.bookstore:14001/books-bought",
                "CLIENT",
                0,
                18_400,
                0,
            ),
            span("b1", "a1", "bookstore", "/books-bought", "SERVER", 900, 16_300, 1),
            span("b2", "b1", "bookstore", "bookwarehouse:14001/restock", "CLIENT", 4_200, 9_800, 2),
            span("c1", "b2", "bookwarehouse", "/restock", "SERVER", 5_100, 7_600, 3),
        ],
        "errors": [],
    }
    traces = {
        "traces": [
            {
                "trace_id": TRACE_ID,
                "root_service": "bookbuyer",
                "root_name": "bookstore.bookstore:14001/books-bought",
                "start_us": start_us,
                "duration_us": 18_400,
                "span_count": 4,
                "services": ["bookbuyer", "bookstore", "bookwarehouse"],
                "error": False,
            },
            {
                "trace_id": "77aa01c2e9d04b11",
                "root_service": "bookthief",
                "root_name": "bookstore.bookstore:14001/books-bought",
                "start_us": start_us - 4_000_000,
                "duration_us": 1_200,
                "span_count": 1,
                "services": ["bookthief"],
                "error": True,
            },
        ],
        "errors": [],
    }
    prometheus_source = (
        _source("ok", "scraping 7 targets", "http://osm-prometheus.osm-system.svc.cluster.local")
        if metrics
        else _source(prometheus, "no Service osm-system/osm-prometheus")
    )
    status = {
        "mode": "local",
        "generated": _iso(0),
        "refresh_s": 2,
        "sources": {
            "kubernetes": _source("ok", "local API server"),
            "prometheus": prometheus_source,
            "tracing": _source("ok", "4 services", "http://jaeger.osm-system.svc.cluster.local"),
            "controller": _source("ok", "5 proxies connected"),
        },
        "errors": errors,
    }
    return Scenario(status, graph, splits, services, proxies, traces, {TRACE_ID: trace}, _series)


def scaled(services: int = 100, proxies: int = 5000, namespaces: int = 10) -> Scenario:
    """A mesh of `services` services (a workload behind each) in `namespaces` namespaces,
    each workload calling the next two services, with `proxies` proxies spread over them."""
    base = bookstore()
    nodes: list[Json] = []
    edges: list[Json] = []
    names = [(f"ns-{i % namespaces:02d}", f"svc-{i:03d}") for i in range(services)]
    per_workload = max(1, proxies // services)
    for ns, name in names:
        plane = "envoy" if int(name[-3:]) % 3 else "python"
        nodes.append(
            {
                "id": f"service:{ns}/{name}",
                "kind": "service",
                "namespace": ns,
                "name": name,
                "label": name,
                "data_plane": None,
                "pods": 0,
            }
        )
        nodes.append(
            {
                "id": f"workload:{ns}/{name}",
                "kind": "workload",
                "namespace": ns,
                "name": name,
                "label": name,
                "data_plane": plane,
                "pods": per_workload,
            }
        )
        edges.append(
            {
                "id": f"serves:{ns}/{name}",
                "source": f"service:{ns}/{name}",
                "target": f"workload:{ns}/{name}",
                "kind": "serves",
                "state": "active",
                "rps": None,
                "success_rate": None,
                "p50_ms": None,
                "p99_ms": None,
                "policy": {"allowed": True, "by": "selector", "suggestion": None},
            }
        )
    for i, (ns, name) in enumerate(names):
        for step in (1, 2):
            if i + step >= services:
                continue
            target_ns, target = names[i + step]
            state = "denied" if i % 17 == 0 and step == 2 else "idle" if i % 11 == 0 else "active"
            edges.append(
                {
                    "id": f"{ns}/{name}->{target_ns}/{target}",
                    "source": f"workload:{ns}/{name}",
                    "target": f"service:{target_ns}/{target}",
                    "kind": "traffic",
                    "state": state,
                    "rps": 1.0 + i % 9 if state == "active" else None,
                    "success_rate": (0.9 + (i % 10) / 100) if state == "active" else None,
                    "p50_ms": 2.5 if state == "active" else None,
                    "p99_ms": 20.0 + i if state == "active" else None,
                    "policy": {
                        "allowed": state != "denied",
                        "by": "permissive mode"
                        if state != "denied"
                        else f"no TrafficTarget allows {ns}/{name} → {target_ns}/{target}",
                        "suggestion": SUGGESTION if state == "denied" else None,
                    },
                }
            )
    all_proxies = [
        {
            "namespace": names[p % services][0],
            "pod": f"{names[p % services][1]}-{p:05d}",
            "node_id": f"node-{p}",
            "identity": f"{names[p % services][1]}.cluster.local",
            "data_plane": "envoy" if p % 3 else "python",
            "connected_since": _iso(-600 - p),
            "acked_versions": {"CDS": "3", "EDS": "9", "LDS": "3", "RDS": "2", "SDS": "1"},
            "last_nack": None,
            "cert_expiry": _iso(40000 + p),
            "protocol": "ads-grpc",
        }
        for p in range(proxies)
    ]
    return dataclasses.replace(
        base,
        graph={"window": "1m", "nodes": nodes, "edges": edges, "errors": []},
        services={
            "services": [
                {
                    "namespace": ns,
                    "name": name,
                    "rps": 3.0,
                    "success_rate": 0.995,
                    "p50_ms": 2.5,
                    "p99_ms": 30.0,
                }
                for ns, name in names
            ],
            "errors": [],
        },
        proxies={
            "proxies": all_proxies,
            "summary": {"connected": proxies, "nacked": 0, "expiring_soon": 0},
            "errors": [],
        },
    )


class FixtureServer:
    """The page and the API of one `Scenario`, on 127.0.0.1 from a thread of its own."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.requests: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        app = web.Application()

        async def index(request: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC / "index.html")

        def answer(pick: Callable[[Scenario, web.Request], Json]) -> Any:
            async def handler(request: web.Request) -> web.Response:
                self.requests.append(request.path_qs)
                return web.json_response(pick(self.scenario, request))

            return handler

        def one_trace(scenario: Scenario, request: web.Request) -> Json:
            trace_id = request.match_info["trace_id"]
            return scenario.trace_bodies.get(
                trace_id,
                {"trace_id": trace_id, "spans": [], "errors": [f"tracing: no trace {trace_id}"]},
            )

        app.router.add_get("/", index)
        app.router.add_get("/api/status", answer(lambda s, r: s.status))
        app.router.add_get("/api/graph", answer(lambda s, r: s.graph))
        app.router.add_get("/api/splits", answer(lambda s, r: s.splits))
        app.router.add_get("/api/services", answer(lambda s, r: s.services))
        app.router.add_get(
            "/api/services/{namespace}/{name}",
            answer(lambda s, r: s.series(r.match_info["namespace"], r.match_info["name"])),
        )
        app.router.add_get("/api/proxies", answer(lambda s, r: s.proxies))
        app.router.add_get("/api/traces", answer(lambda s, r: s.traces))
        app.router.add_get("/api/traces/{trace_id}", answer(one_trace))
        app.router.add_static("/static", STATIC)
        return app

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self.url

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        """Stops serving; a second call does nothing."""
        if self._loop.is_closed():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
