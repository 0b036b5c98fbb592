"""Dashboard benchmark: the first render's API time and the controller's CPU per refresh.

    python bench/dashboard.py [--services 100] [--replicas 50] [--calls 3] [--repeat 3]

A synthetic mesh in SMI mode: ``--services`` Services in 10 namespaces, each served by a
Deployment of ``--replicas`` injected pods (100 x 50 = 5,000 proxies); each workload calls
``--calls`` other services, allowed by a TrafficTarget per destination, and one in ten
workloads also called a service it may not (seen within the lookback: a denied edge with
a suggestion). A fake Prometheus answers the dashboard's instant queries with samples of
every edge; the controller is the real one's HTTP app (`osm.controller.api.make_app`)
serving ``/debug/proxies`` of one status per pod, in a process of its own.

Figures (median of ``--repeat``):
- first render: a fresh dashboard (nothing cached; its mesh state built from the objects
  on first use, as the informer's first Sync) answering /api/graph, /api/splits,
  /api/services and /api/proxies at once, as the page's first load asks them: wall time
  until the last answer. Goal <= 1 s.
- refresh: the same four once the period is over (the state unchanged, so the catalog's
  answers are kept; Prometheus and the controller asked again, the views recomputed).
  Both with this process's CPU time beside the wall time: on a shared machine the wall
  time includes waiting for a core.
- controller CPU per refresh: the controller process's user+system CPU for one
  /debug/proxies (read from /proc, over 20 requests), and that as a share of one core at
  the default refresh (5 s): one request per period, however many tabs (the dashboard
  shares answers). Goal <= 5%.

**Baseline:** none (first version); not run by CI, no pass/fail threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import multiprocessing
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from bench._report import print_table
from osm.base import wellknown
from osm.catalog import offline
from osm.catalog.state import MeshState
from osm.dashboard import server, sources
from osm.dashboard.sources import SourceState
from osm.model import manifest
from osm.model.core import Pod
from osm.model.meta import Resource

NAMESPACES = 10
REFRESH_S = 5.0


def service_name(index: int) -> tuple[str, str]:
    return f"ns{index % NAMESPACES}", f"svc{index}"


def mesh_objects(services: int, replicas: int, calls: int) -> list[Resource]:
    """The synthetic mesh's objects (see the module docstring), pods made up."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "config.openservicemesh.io/v1alpha2",
            "kind": "MeshConfig",
            "metadata": {"name": wellknown.MESH_CONFIG_NAME, "namespace": "osm-system"},
            "spec": {"traffic": {"enablePermissiveTrafficPolicyMode": False}},
        }
    ]
    for index in range(NAMESPACES):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": f"ns{index}",
                    "labels": {wellknown.MONITORED_BY_LABEL: "osm"},
                    "annotations": {wellknown.SIDECAR_INJECTION_ANNOTATION: "enabled"},
                },
            }
        )
    for index in range(services):
        namespace, name = service_name(index)
        docs += [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": 8080, "appProtocol": "http"}],
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "serviceAccountName": name,
                            "containers": [{"name": "app", "image": "app"}],
                        },
                    },
                },
            },
            {
                "apiVersion": "specs.smi-spec.io/v1alpha4",
                "kind": "HTTPRouteGroup",
                "metadata": {"name": f"{name}-routes", "namespace": namespace},
                "spec": {"matches": [{"name": "all", "pathRegex": ".*", "methods": ["*"]}]},
            },
            {
                "apiVersion": "access.smi-spec.io/v1alpha3",
                "kind": "TrafficTarget",
                "metadata": {"name": f"{name}-access", "namespace": namespace},
                "spec": {
                    "destination": {"kind": "ServiceAccount", "name": name, "namespace": namespace},
                    "rules": [
                        {"kind": "HTTPRouteGroup", "name": f"{name}-routes", "matches": ["all"]}
                    ],
                    "sources": [
                        {"kind": "ServiceAccount", "name": cname, "namespace": cns}
                        for caller in callers_of(index, services, calls)
                        for cns, cname in [service_name(caller)]
                    ],
                },
            },
        ]
    loaded = manifest.load_objects(docs)
    assert not loaded.errors, [str(p) for p in loaded.errors[:5]]
    found: list[Resource] = []
    for resource in offline.synthesize(loaded.resources):
        if isinstance(resource, Pod):
            labels = {**resource.metadata.labels, wellknown.PROXY_UUID_LABEL: uuid_of(resource)}
            resource = dataclasses.replace(
                resource, metadata=dataclasses.replace(resource.metadata, labels=labels)
            )
        found.append(resource)
    return found


def uuid_of(pod: Pod) -> str:
    return f"uuid-{pod.namespace}-{pod.name}"


def calls_of(index: int, services: int, calls: int) -> list[int]:
    return [(index + step) % services for step in range(1, calls + 1)]


def callers_of(index: int, services: int, calls: int) -> list[int]:
    return [c for c in range(services) if index in calls_of(c, services, calls)]


# -- the fake Prometheus ---------------------------------------------------------------------
def prometheus_answers(services: int, calls: int) -> dict[str, list[dict[str, Any]]]:
    """Each named window query's samples: every allowed edge, and one denied edge in ten
    workloads (in the lookback only)."""

    def edge(source: int, target: int, value: float, **more: str) -> dict[str, Any]:
        ns, workload = service_name(source)
        tns, tname = service_name(target)
        labels = {
            "source_namespace": ns,
            "source_workload_name": workload,
            "envoy_cluster_name": f"{tns}/{tname}|8080",
            **more,
        }
        return {"metric": labels, "value": [time.time(), str(value)]}

    pairs = [(s, t) for s in range(services) for t in calls_of(s, services, calls)]
    denied = [(s, (s + calls + 1) % services) for s in range(0, services, 10)]
    return {
        "rps": [edge(s, t, 10.0) for s, t in pairs],
        "classes": [edge(s, t, 9.9, envoy_response_code_class="2") for s, t in pairs]
        + [edge(s, t, 0.1, envoy_response_code_class="5") for s, t in pairs],
        "p50": [edge(s, t, 2.5) for s, t in pairs],
        "p99": [edge(s, t, 40.0) for s, t in pairs],
        "service_p50": [],
        "service_p99": [],
        "seen": [edge(s, t, 600.0) for s, t in pairs + denied],
    }


def fake_prometheus(answers: dict[str, list[dict[str, Any]]]) -> web.Application:
    by_query = {q: answers[name] for name, q in sources.window_queries("1m").items()}

    async def query(request: web.Request) -> web.Response:
        result = by_query.get(request.query["query"], [])
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    app = web.Application()
    app.add_routes([web.get("/api/v1/query", query)])
    return app


# -- the controller, in a process of its own -------------------------------------------------
def controller_main(port: int, pods: list[tuple[str, str, str]], ready: Any) -> None:
    """The controller's HTTP app with one proxy status per pod (uuid, namespace, account),
    each turned into JSON per request as the controller's ``_proxy_status`` does."""
    from prometheus_client import CollectorRegistry

    from osm.ads import server as ads_server
    from osm.controller import api
    from osm.controller import server as controller_server

    since = datetime.datetime.now(datetime.UTC)
    statuses = [
        ads_server.ProxyStatus(
            node_id=f"{uuid}.sidecar.{account}.{namespace}",
            identity=f"{namespace}/{account}",
            kind="sidecar",
            protocol="sotw",
            peer="ipv4:10.244.0.1:40000",
            authenticated=True,
            connected_since=since,
            acked_versions={"CDS": "7", "EDS": "7", "LDS": "7", "RDS": "7", "SDS": "7"},
            last_nack=None,
            requests=12,
            responses=12,
        )
        for uuid, namespace, account in pods
    ]

    def proxy_status() -> list[dict[str, object]]:
        return [api.jsonable(controller_server._status_fields(s)) for s in statuses]

    app = api.make_app(CollectorRegistry(), proxy_status, lambda: True)
    ready.set()
    web.run_app(app, host=wellknown.LOCALHOST, port=port, print=None, access_log=None)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the measurements ------------------------------------------------------------------------
class LazyMesh:
    """The mesh state built on first use, as the informer's first Sync."""

    def __init__(self, objects: list[Resource]) -> None:
        self.objects = objects
        self.built: MeshState | None = None
        self.state = SourceState("ok", "synthetic", None)

    async def mesh(self) -> MeshState:
        if self.built is None:
            self.built = MeshState.from_resources(self.objects)
        return self.built

    async def close(self) -> None:
        pass


def make_dashboard(
    mesh: LazyMesh, prometheus_url: str, controller_url: str, clock: list[float]
) -> server.Dashboard:
    def http(name: str, url: str | None) -> sources.HttpSource:
        return sources.HttpSource(
            name,
            sources.fixed(url, "not installed"),
            timeout=10.0,
            ttl=REFRESH_S,
            clock=lambda: clock[0],
        )

    return server.Dashboard(
        server.Sources(
            "local",
            mesh,
            sources.Prometheus(http("prometheus", prometheus_url)),
            sources.Zipkin(http("tracing", None)),
            sources.Controller(http("controller", controller_url)),
        ),
        refresh_s=REFRESH_S,
        clock=lambda: clock[0],
    )


FIRST_RENDER = ("/api/graph", "/api/splits", "/api/services", "/api/proxies")


async def render(base: str) -> tuple[float, float, list[dict[str, Any]]]:
    """The four answers at once: wall time, this process's CPU time, the bodies."""
    async with ClientSession() as session:

        async def one(path: str) -> dict[str, Any]:
            async with session.get(base + path) as response:
                assert response.status == 200, (path, response.status)
                body: dict[str, Any] = await response.json()
                return body

        started, cpu = time.perf_counter(), time.process_time()
        bodies = await asyncio.gather(*(one(p) for p in FIRST_RENDER))
        return time.perf_counter() - started, time.process_time() - cpu, list(bodies)


async def measure(args: argparse.Namespace) -> list[list[str]]:
    objects = mesh_objects(args.services, args.replicas, args.calls)
    pods = [
        (uuid_of(r), r.namespace, r.spec.service_account_name)
        for r in objects
        if isinstance(r, Pod)
    ]
    prometheus = TestServer(fake_prometheus(prometheus_answers(args.services, args.calls)))
    await prometheus.start_server()
    with socket.socket() as sock:
        sock.bind((wellknown.LOCALHOST, 0))
        controller_port = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    controller = context.Process(target=controller_main, args=(controller_port, pods, ready))
    controller.start()
    ready.wait(30)
    controller_url = f"http://{wellknown.LOCALHOST}:{controller_port}"
    async with ClientSession() as session:
        for _ in range(100):  # until it listens
            try:
                async with session.get(controller_url + "/health/alive"):
                    break
            except OSError:
                await asyncio.sleep(0.05)
    firsts: list[tuple[float, float]] = []
    refreshes: list[tuple[float, float]] = []
    summary: dict[str, Any] = {}
    try:
        for _ in range(args.repeat):
            mesh = LazyMesh(objects)
            clock = [0.0]
            dashboard = make_dashboard(mesh, str(prometheus.make_url("")), controller_url, clock)
            app_server = TestServer(server.make_app(dashboard))
            await app_server.start_server()
            base = str(app_server.make_url("")).rstrip("/")
            took, cpu, bodies = await render(base)
            firsts.append((took, cpu))
            graph, _splits, services, proxies = bodies
            summary = {
                "nodes": len(graph["nodes"]),
                "edges": len(graph["edges"]),
                "denied": sum(e["state"] == "denied" for e in graph["edges"]),
                "services": len(services["services"]),
                "proxies": proxies["summary"]["connected"],
                "errors": graph["errors"] + proxies["errors"],
            }
            clock[0] += REFRESH_S  # the period is over: every answer is asked again
            took, cpu, _ = await render(base)
            refreshes.append((took, cpu))
            await app_server.close()
        requests = 20
        async with ClientSession() as session:
            before = cpu_seconds(controller.pid or 0)
            for _ in range(requests):
                async with session.get(controller_url + "/debug/proxies") as response:
                    await response.read()
            per_request = (cpu_seconds(controller.pid or 0) - before) / requests
    finally:
        controller.terminate()
        controller.join(10)
        await prometheus.close()
    assert not summary["errors"], summary["errors"]
    share = per_request / REFRESH_S * 100
    return [
        ["measure", "value", "goal"],
        [
            f"mesh: {args.services} services, {summary['proxies']} proxies",
            f"{summary['nodes']} nodes, {summary['edges']} edges ({summary['denied']} denied)",
            "",
        ],
        [
            "first render (graph+splits+services+proxies), wall",
            f"{statistics.median(t for t, _ in firsts):.3f} s",
            "<= 1 s",
        ],
        [
            "  the dashboard process's CPU in it",
            f"{statistics.median(c for _, c in firsts):.3f} s",
            "",
        ],
        [
            "refresh, period over (same state), wall",
            f"{statistics.median(t for t, _ in refreshes):.3f} s",
            "",
        ],
        ["  CPU in it", f"{statistics.median(c for _, c in refreshes):.3f} s", ""],
        ["controller CPU per /debug/proxies", f"{per_request * 1000:.1f} ms", ""],
        [f"controller CPU at a {REFRESH_S:g} s refresh", f"{share:.2f} % of a core", "<= 5 %"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_table(asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
