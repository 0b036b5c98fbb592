"""Observability end to end (root): Prometheus scraping the bookstore demo, per-edge rates and
latency from PromQL, one trace through every hop in the trace store, `osm dashboard` on the
live mesh (its JSON and its page in Debian's headless chromium), the bad inputs, and
`osm down` leaving nothing — on each data plane.

The module runs once per data plane (`PLANES`: Envoy everywhere, the Python sidecar
everywhere). One mesh per run (its own state dir, ports and namespace prefix): `daemon.up`,
then the observability stack as ``osm up`` applies it (`cli_runtime.deploy_observability`),
then the demo with MeshConfig tracing on at OSM's default collector. Tests run in file
order and each leaves the demo permissive with tracing on. The host reaches Prometheus and
the trace store as ``osm dashboard`` does: a port-forward from loopback into the mesh's
network namespace (`osm.runtime.portforward`) to their Service's ready endpoint. Rates are
compared with the demo clients' own counters; every wait is bounded and a failure prints
what it needs to be debugged (Prometheus's targets, the trace store's services, the pods'
logs under the state dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from osm.base import wellknown
from osm.cli import runtime as cli_runtime
from osm.demo.bookstore import counters
from osm.kube.client import KubeClient
from osm.kube.errors import KubeError
from osm.model import manifest
from osm.runtime import daemon, network, portforward
from tests.e2e import demo, hostutil
from tests.e2e.meshapi import MeshApi

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.timeout(300),
]

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "demo" / "bookstore" / "manifests"
ARTIFACTS = REPO / "build" / "test-artifacts" / "dashboard-e2e"
LOGS = REPO / "build" / "test-artifacts" / "observability-e2e"
"""Each run's pod and mesh logs are copied here (per data plane) before the state dir goes."""
PREFIX = f"osmo{uuid.uuid4().hex[:5]}"
NAMESPACES = ("bookbuyer", "bookthief", "bookstore", "bookwarehouse")
SYSTEM = wellknown.CONTROL_PLANE_NAMESPACE
DEMO_WORKLOADS = {
    # namespace -> the Deployments (workloads) whose pods Prometheus must scrape
    "bookbuyer": ("bookbuyer",),
    "bookthief": ("bookthief",),
    "bookstore": ("bookstore-v1", "bookstore-v2"),
    "bookwarehouse": ("bookwarehouse",),
}
PLANES: dict[str, dict[str, str]] = {
    # deployment -> data plane (absent: Envoy, the injector's default)
    "envoy": {},
    "python": {
        name: "python"
        for name in ("bookbuyer", "bookthief", "bookstore-v1", "bookstore-v2", "bookwarehouse")
    },
}
WINDOW_S = 30
"""The window of the rate comparison (six of local mode's 5 s scrapes)."""
RATE_TOLERANCE = 0.2
"""Prometheus's per-edge increase over `WINDOW_S` may differ from the client's count by
this fraction plus `RATE_SLACK` requests: the scrapes bracket the window, not its edges
(``increase`` extrapolates), and the client counts a request when it is answered."""
RATE_SLACK = 5
SPAN_SERVICE = {name: f"{name}.{name}" for name in NAMESPACES}
"""A demo workload's spans' ``localEndpoint.serviceName``: its sidecar's node cluster,
``<service account>.<namespace>`` (OSM's ``--service-cluster``; the Python sidecar's alike)."""
UNREACHABLE_COLLECTOR_PORT = wellknown.ZIPKIN_PORT + 1
"""Nothing listens there on the trace store's address: reports are refused."""


# -- reaching osm-system's Services from the host ---------------------------------------------
class Forwards:
    """Port-forwards from the host's loopback to the first ready endpoint of a Service of
    osm-system, inside the mesh's network namespace; the endpoint is looked up for every
    connection (a restarted pod is followed). They run on an event loop of their own thread
    (the tests are synchronous)."""

    def __init__(self, settings: daemon.MeshSettings) -> None:
        self.netns = network.mesh_netns(settings.prefix)
        self.kubeconfig = settings.kubeconfig
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client: KubeClient | None = None
        self.forwards: dict[str, portforward.PortForward] = {}

    def _call(self, coroutine: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def url(self, service: str) -> str:
        """The loopback URL that reaches ``service``'s endpoint."""
        if service not in self.forwards:
            self._call(self._start(service))
        return self.forwards[service].url

    async def _start(self, service: str) -> None:
        if self.client is None:
            self.client = KubeClient.from_kubeconfig(self.kubeconfig)

        async def resolve() -> tuple[str, int] | None:
            return await self._endpoint(service)

        forward = portforward.PortForward(self.netns, resolve)
        await forward.start()
        self.forwards[service] = forward

    async def _endpoint(self, service: str) -> tuple[str, int] | None:
        assert self.client is not None
        try:
            endpoints = await self.client.get("Endpoints", SYSTEM, service)
        except KubeError:
            return None
        for subset in endpoints.get("subsets") or ():
            ports = [p["port"] for p in subset.get("ports") or () if p.get("port")]
            for address in subset.get("addresses") or ():
                if ports:
                    return str(address["ip"]), int(ports[0])
        return None

    def close(self) -> None:
        """Closes the forwards, the client and the loop; again, it does nothing (the last
        test closes them before `osm down`, the fixture's teardown once more)."""

        async def stop() -> None:
            for forward in self.forwards.values():
                await forward.close()
            self.forwards.clear()
            if self.client is not None:
                await self.client.close()
                self.client = None

        if self.loop.is_closed():
            return
        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


# -- the mesh --------------------------------------------------------------------------------
@dataclass
class Mesh:
    settings: daemon.MeshSettings
    api: MeshApi
    forwards: Forwards
    started: float
    plane: str
    dashboard: subprocess.Popen[str] | None = None
    dashboard_url: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def apply_file(
        self, path: Path, edit: Callable[[list[dict[str, Any]]], None] | None = None
    ) -> None:
        loaded = manifest.load_paths([str(path)])
        assert not loaded.errors, loaded.errors
        objects = [r.to_dict() for r in loaded.resources]
        if edit is not None:
            edit(objects)
        self.api.apply(objects)

    def sample(self) -> counters.DemoCounters:
        sampler = cli_runtime.Sampler(self.api.api, NAMESPACES, timeout=2.0)
        result: counters.DemoCounters = asyncio.run(sampler.sample())
        return result

    def pod(self, namespace: str) -> dict[str, Any]:
        items = self.api.items("Pod", namespace)
        assert items, f"no pod in {namespace}"
        return dict(items[0])

    def prometheus(self, path: str, **params: str) -> Any:
        """Prometheus's HTTP API answer's ``data`` (it must say ``success``)."""
        url = self.forwards.url(wellknown.PROMETHEUS_SERVICE) + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        answer = get_json(url)
        assert answer.get("status") == "success", answer
        return answer["data"]

    def zipkin(self, path: str, **params: str) -> Any:
        url = self.forwards.url(wellknown.TRACING_SERVICE) + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return get_json(url)

    def mark(self, what: str) -> None:
        self.timings[what] = round(time.monotonic() - self.started, 1)


def set_mesh_config(
    mesh: Mesh,
    *,
    permissive: bool = True,
    tracing_port: int = wellknown.ZIPKIN_PORT,
) -> None:
    """The demo's MeshConfig with tracing on at OSM's default collector host."""

    def edit(objects: list[dict[str, Any]]) -> None:
        spec = objects[-1]["spec"]
        spec["traffic"]["enablePermissiveTrafficPolicyMode"] = permissive
        spec.setdefault("observability", {})["tracing"] = {
            "enable": True,
            "port": tracing_port,
            "endpoint": wellknown.ZIPKIN_SPANS_PATH,
        }

    mesh.apply_file(MANIFESTS / "50-meshconfig.yaml", edit)


@pytest.fixture(scope="module", params=sorted(PLANES))
def mesh(request: pytest.FixtureRequest) -> Iterator[Mesh]:
    # Not under pytest's tmp dir (mode 0700): the sidecars (UID 1500) read their bootstrap.
    base = Path(f"/tmp/{PREFIX}-{request.param}")
    base.mkdir(mode=0o755)
    state_dir = base / "state"
    settings = daemon.MeshSettings(
        state_dir,
        hostutil.free_port(),
        hostutil.free_port(),
        PREFIX,
        http_port=hostutil.free_port(),
    )
    started = time.monotonic()
    api: MeshApi | None = None
    running: Mesh | None = None
    try:
        daemon.up(settings, progress=print)
        api = MeshApi(settings)
        _, errors = cli_runtime.deploy_observability(api.api)
        assert errors == [], errors
        running = Mesh(settings, api, Forwards(settings), started, request.param)
        running.apply_file(MANIFESTS, demo.choose_planes(PLANES[request.param]))
        set_mesh_config(running)
        yield running
    finally:
        if running is not None:
            stop_dashboard(running)
            running.forwards.close()
            print(f"[{request.param}] seconds after up: {running.timings}")
        if api is not None:
            api.close()
        daemon.down(state_dir)
        kept = LOGS / request.param
        shutil.rmtree(kept, ignore_errors=True)
        with contextlib.suppress(OSError):
            shutil.copytree(state_dir / "logs", kept)
            if (state_dir / "dashboard.log").exists():
                shutil.copy(state_dir / "dashboard.log", kept)
        for netns in demo.left_behind(PREFIX)["netns"]:  # last resort, should teardown be broken
            subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    explain: Callable[[], str] | None = None,
    every: float = 0.5,
) -> Any:
    """The first truthy value of ``check`` (an exception counts as falsy, and is shown if
    the wait times out)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            value = check()
        except (AssertionError, OSError, urllib.error.URLError, ValueError, KubeError) as error:
            value, last_error = None, f"last error: {error!r}"
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out waiting for {what}; {last_error}{detail}")
        time.sleep(every)


def pod_logs(mesh: Mesh, namespaces: tuple[str, ...], tail: int = 15) -> str:
    """The pods of ``namespaces`` with their status, and the last lines of their
    containers' logs and of the runtime's."""
    lines: list[str] = []
    logs = mesh.settings.state_dir / "logs"
    for namespace in namespaces:
        for pod in mesh.api.items("Pod", namespace):
            name = pod["metadata"]["name"]
            conditions = (pod.get("status") or {}).get("conditions")
            lines.append(f"pod {namespace}/{name}: {conditions}")
            for log in sorted((logs / namespace / name).glob("*.log")):
                lines.append(f"--- {log}")
                lines += log.read_text(errors="replace").splitlines()[-tail:]
    runtime_log = logs / "runtime.log"
    if runtime_log.exists():
        lines.append(f"--- {runtime_log}")
        lines += runtime_log.read_text(errors="replace").splitlines()[-tail:]
    return "\n".join(lines)


def targets_summary(mesh: Mesh) -> str:
    """Prometheus's active targets, one line each (what a scrape failure needs)."""
    try:
        data = mesh.prometheus("/api/v1/targets")
    except (AssertionError, OSError, ValueError) as error:
        return f"prometheus targets unavailable: {error!r}\n{pod_logs(mesh, (SYSTEM,))}"
    lines = [
        f"{t['labels'].get('job')} {t['scrapeUrl']} {t['health']} {t.get('lastError', '')} "
        f"{ {k: v for k, v in t['labels'].items() if k.startswith('source_')} }"
        for t in data["activeTargets"]
    ]
    lines.append(f"dropped targets: {len(data.get('droppedTargets', []))}")
    return "\n".join(lines)


def traffic(mesh: Mesh, seconds: float) -> dict[str, counters.ClientCounters]:
    """Client counters accumulated over ``seconds`` (differences of two samples)."""
    result = demo.counted(mesh.sample, seconds)
    return result


def proxy_stats(mesh: Mesh, namespace: str) -> dict[str, str]:
    """The stats of the sidecar of ``namespace``'s first pod (`osm proxy get stats`)."""
    from click.testing import CliRunner

    from osm.cli import main as cli_main

    cli_main.register(cli_main.cli)
    pod = mesh.pod(namespace)["metadata"]["name"]
    argv = ["--kubeconfig", str(mesh.settings.kubeconfig), "proxy", "get", "stats", pod]
    result = CliRunner().invoke(cli_main.cli, [*argv, "-n", namespace], obj={})
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.output.splitlines() if ": " in line)


def zipkin_reports(mesh: Mesh, namespace: str) -> dict[str, int]:
    stats = proxy_stats(mesh, namespace)
    return {
        key.rsplit(".", 1)[1]: int(value)
        for key, value in stats.items()
        if key.startswith("tracing.zipkin.") and value.strip().isdigit()
    }


# -- tests, in order -------------------------------------------------------------------------
def test_the_demo_and_the_observability_stack_come_up(mesh: Mesh) -> None:
    wait_for(
        lambda: len(cli_runtime.ready_pods(mesh.api.api, NAMESPACES)) == 5,
        60,
        "5 ready demo pods",
        lambda: pod_logs(mesh, NAMESPACES),
    )
    mesh.mark("demo ready")
    ready = wait_for(
        lambda: (
            {
                p["metadata"]["labels"]["app"]
                for p in cli_runtime.ready_pods(mesh.api.api, (SYSTEM,))
            }
            >= {wellknown.PROMETHEUS_SERVICE, wellknown.TRACING_SERVICE}
        ),
        60,
        "ready Prometheus and trace store pods",
        lambda: pod_logs(mesh, (SYSTEM,)),
    )
    assert ready
    mesh.mark("observability ready")
    for service in (wellknown.PROMETHEUS_SERVICE, wellknown.TRACING_SERVICE):
        spec = mesh.api.get("Service", SYSTEM, service)["spec"]
        assert spec["clusterIP"] == "None", (service, spec)  # headless: no kube-proxy locally
    wait_for(
        lambda: all(c.ok > 0 for c in mesh.sample().clients),
        30,
        "both clients to get answers",
        lambda: pod_logs(mesh, NAMESPACES),
    )
    mesh.mark("traffic")


def test_prometheus_scrapes_every_demo_pod_and_the_controller(mesh: Mesh) -> None:
    expected = {
        (namespace, pod["metadata"]["name"], workload)
        for namespace, names in DEMO_WORKLOADS.items()
        for pod in mesh.api.items("Pod", namespace)
        for workload in names
        if pod["metadata"]["name"].startswith(f"{workload}-")
    }
    assert len(expected) == 5, expected

    def scraped() -> bool:
        targets = mesh.prometheus("/api/v1/targets", state="active")["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        pods = {
            (
                t["labels"].get("source_namespace"),
                t["labels"].get("source_pod_name"),
                t["labels"].get("source_workload_name"),
            )
            for t in up
            if t["labels"].get("job") == "kubernetes-pods"
        }
        controller = [t for t in up if t["labels"].get("job") == "osm-controller"]
        return expected <= pods and len(controller) == 1

    wait_for(
        scraped,
        45,
        "Prometheus to scrape the 5 demo pods and the controller",
        lambda: targets_summary(mesh),
    )
    mesh.mark("scraped")
    for target in mesh.prometheus("/api/v1/targets", state="active")["activeTargets"]:
        if (
            target["labels"].get("job") == "kubernetes-pods"
            and target["labels"].get("source_namespace") in DEMO_WORKLOADS
        ):
            assert target["labels"]["source_workload_kind"] == "Deployment", target["labels"]
    # The series arrive with their names and OSM's labels; the controller's are osm_*.
    live = mesh.prometheus("/api/v1/query", query="envoy_server_live")["result"]
    assert {(s["metric"]["source_namespace"], s["value"][1]) for s in live} >= {
        (namespace, "1") for namespace in NAMESPACES
    }, live
    names = mesh.prometheus("/api/v1/label/__name__/values")
    assert any(name.startswith("osm_") for name in names), names


def edge_increase(mesh: Mesh, at: float) -> dict[str, float]:
    """bookbuyer's requests per destination cluster over the `WINDOW_S` before ``at``."""
    query = (
        "sum by (source_workload_name, envoy_cluster_name) (increase("
        f'envoy_cluster_upstream_rq_total{{source_workload_name="bookbuyer"}}[{WINDOW_S}s]))'
    )
    result = mesh.prometheus("/api/v1/query", query=query, time=f"{at:.3f}")["result"]
    return {s["metric"]["envoy_cluster_name"]: float(s["value"][1]) for s in result}


def cluster(service: str) -> str:
    """Envoy's cluster name of a bookstore backend (``envoy_cluster_name``)."""
    return f"bookstore/{service}|14001"


def test_the_request_rate_per_edge_matches_the_clients_counts(mesh: Mesh) -> None:
    wanted = {cluster("bookstore-v1"), cluster("bookstore-v2")}
    wait_for(
        lambda: wanted <= set(edge_increase(mesh, time.time())),
        30,
        "bookbuyer's two edges in Prometheus",
        lambda: targets_summary(mesh),
    )
    first = {c.identity: c for c in mesh.sample().clients}["bookbuyer"]
    time.sleep(WINDOW_S)
    end = time.time()
    last = {c.identity: c for c in mesh.sample().clients}["bookbuyer"]
    time.sleep(6)  # a scrape after the window's end
    counted = {
        cluster(v): last.by_identity.get(v, 0) - first.by_identity.get(v, 0)
        for v in ("bookstore-v1", "bookstore-v2")
    }
    assert last.errors == first.errors, (first, last)
    seen = edge_increase(mesh, end)
    print(f"bookbuyer over {WINDOW_S}s: client {counted}, prometheus {seen}")
    for name, count in counted.items():
        assert count >= 20, counted
        assert abs(seen[name] - count) <= RATE_TOLERANCE * count + RATE_SLACK, (seen, counted)

    def quantile(q: float) -> dict[str, float]:
        query = (
            f"histogram_quantile({q}, sum by (le, envoy_cluster_name) (rate("
            f'envoy_cluster_upstream_rq_time_bucket{{source_workload_name="bookbuyer"}}'
            f"[{WINDOW_S}s])))"
        )
        result = mesh.prometheus("/api/v1/query", query=query, time=f"{end:.3f}")["result"]
        return {s["metric"]["envoy_cluster_name"]: float(s["value"][1]) for s in result}

    p50, p99 = quantile(0.5), quantile(0.99)
    print(f"bookbuyer latency ms: p50 {p50}, p99 {p99}")
    for name in counted:
        # Milliseconds, as Envoy's histogram; below the client's 1.5 s timeout.
        assert 0 < p50[name] <= p99[name] < 1500, (p50, p99)


def span_tree(spans: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{s.get('localEndpoint', {}).get('serviceName')} {s.get('kind')} {s.get('name')} "
        f"id={s['id']} parent={s.get('parentId')} shared={s.get('shared', False)}"
        for s in sorted(spans, key=lambda s: s.get("timestamp", 0))
    )


HOPS = {
    (SPAN_SERVICE["bookbuyer"], "CLIENT"),
    (SPAN_SERVICE["bookstore"], "SERVER"),
    (SPAN_SERVICE["bookstore"], "CLIENT"),
    (SPAN_SERVICE["bookwarehouse"], "SERVER"),
}
"""A bookbuyer request's spans: its sidecar's outbound, bookstore's inbound and outbound
(the restock the sale made) and bookwarehouse's inbound."""


def full_trace(mesh: Mesh) -> list[dict[str, Any]] | None:
    """A trace of a bookbuyer request with a span from every hop (`HOPS`), else None. Each
    sidecar flushes its spans on its own timer, so a recent trace may still lack some."""
    traces = mesh.zipkin(
        "/api/v2/traces", serviceName=SPAN_SERVICE["bookbuyer"], lookback="120000", limit="200"
    )
    for listed in traces:
        hops = {(s.get("localEndpoint", {}).get("serviceName"), s.get("kind")) for s in listed}
        if hops >= HOPS:
            trace: list[dict[str, Any]] = mesh.zipkin(f"/api/v2/trace/{listed[0]['traceId']}")
            return trace
    return None


def tracing_explained(mesh: Mesh) -> str:
    try:
        services = mesh.zipkin("/api/v2/services")
        traces = mesh.zipkin("/api/v2/traces", serviceName=SPAN_SERVICE["bookbuyer"], limit="3")
        url = mesh.forwards.url(wellknown.TRACING_SERVICE) + "/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            metrics = [
                line
                for line in response.read().decode().splitlines()
                if line.startswith("zipkin_") and not line.endswith(" 0.0")
            ]
    except (OSError, ValueError) as error:
        return f"trace store unavailable: {error!r}\n{pod_logs(mesh, (SYSTEM,))}"
    sample = "\n\n".join(span_tree(t) for t in traces)
    stats = {ns: zipkin_reports(mesh, ns) for ns in NAMESPACES}
    return (
        f"services: {services}\nbookbuyer's latest traces:\n{sample}\nreports: {stats}\n"
        f"store's metrics: {metrics}\n{pod_logs(mesh, (SYSTEM,), tail=30)}"
    )


def test_a_bookbuyer_request_is_one_trace_through_every_hop(mesh: Mesh) -> None:
    spans = wait_for(
        lambda: full_trace(mesh),
        40,
        "a bookbuyer trace through bookstore to bookwarehouse",
        lambda: tracing_explained(mesh),
        every=2,
    )
    mesh.mark("trace")
    tree = span_tree(spans)
    hops = {(s["localEndpoint"]["serviceName"], s.get("kind")) for s in spans}
    assert hops >= HOPS, tree
    assert len({s["traceId"] for s in spans}) == 1, tree
    # One tree: a single root, every other span's parent is a span of the trace, and
    # every span reaches the root (Zipkin's shared server spans repeat the client's id).
    ids = {s["id"] for s in spans}
    roots = [s for s in spans if s.get("parentId") not in ids]
    assert len({s["id"] for s in roots}) == 1, tree
    parents: dict[str, str | None] = {}
    for span in spans:
        if not span.get("shared"):
            parents[span["id"]] = span.get("parentId")
    for span in spans:
        node, steps = span["id"], 0
        while parents.get(node) in ids and steps < len(spans):
            node, steps = parents[node] or "", steps + 1
        assert node == roots[0]["id"], tree


# -- osm dashboard ---------------------------------------------------------------------------
def start_dashboard(mesh: Mesh) -> str:
    if mesh.dashboard is None:
        port = hostutil.free_port()
        argv = [sys.executable, "-m", "osm.cli", "--kubeconfig", str(mesh.settings.kubeconfig)]
        argv += ["dashboard", "--no-browser", "--port", str(port), "--refresh", "2s"]
        with (mesh.settings.state_dir / "dashboard.log").open("w") as log:
            mesh.dashboard = subprocess.Popen(
                argv,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        mesh.dashboard_url = f"http://{wellknown.LOCALHOST}:{port}"
        wait_for(
            lambda: get_json(mesh.dashboard_url + "/api/status"),
            20,
            "osm dashboard to answer",
            lambda: dashboard_log(mesh),
        )
    return mesh.dashboard_url


def stop_dashboard(mesh: Mesh) -> None:
    if mesh.dashboard is not None:
        mesh.dashboard.terminate()
        try:
            mesh.dashboard.wait(10)
        except subprocess.TimeoutExpired:
            mesh.dashboard.kill()
            mesh.dashboard.wait(5)
        mesh.dashboard = None


def dashboard_log(mesh: Mesh) -> str:
    path = mesh.settings.state_dir / "dashboard.log"
    return f"--- {path}\n" + (path.read_text(errors="replace") if path.exists() else "")


def dashboard(mesh: Mesh, path: str) -> Any:
    return get_json(start_dashboard(mesh) + path, timeout=10)


def edges(mesh: Mesh) -> dict[str, dict[str, Any]]:
    graph = dashboard(mesh, "/api/graph?window=1m")
    return {edge["id"]: edge for edge in graph["edges"]}


BUYER_EDGES = [
    f"workload:bookbuyer/bookbuyer->service:bookstore/{service}"
    for service in ("bookstore-v1", "bookstore-v2")
]
THIEF_EDGE = "workload:bookthief/bookthief->service:bookstore/bookstore"


def test_the_dashboard_shows_every_source_ok_and_the_live_graph(mesh: Mesh) -> None:
    def all_ok() -> bool:
        status = dashboard(mesh, "/api/status")
        return all(s["state"] == "ok" for s in status["sources"].values()) and (
            status["mode"] == "local"
        )

    wait_for(
        all_ok,
        20,
        "every source of /api/status ok",
        lambda: f"{dashboard(mesh, '/api/status')}\n{dashboard_log(mesh)}",
    )
    mesh.mark("dashboard ok")

    def active() -> bool:
        found = edges(mesh)
        return all(
            found.get(e, {}).get("state") == "active" and (found[e]["rps"] or 0) > 0
            for e in BUYER_EDGES
        )

    wait_for(active, 20, "bookbuyer's edges active with rps", lambda: json.dumps(edges(mesh)))
    splits = dashboard(mesh, "/api/splits?window=1m")["splits"]
    (split,) = [s for s in splits if s["namespace"] == "bookstore"]
    observed = {b["service"]: b["observed_share"] for b in split["backends"]}
    assert all(share is not None and 0 < share < 1 for share in observed.values()), split


def test_the_dashboard_shows_bookthief_denied_in_smi_mode(mesh: Mesh) -> None:
    set_mesh_config(mesh, permissive=False)
    try:
        wait_for(
            lambda: edges(mesh).get(THIEF_EDGE, {}).get("state") == "denied",
            20,
            "bookthief -> bookstore denied",
            lambda: json.dumps(edges(mesh).get(THIEF_EDGE)),
        )
        policy = edges(mesh)[THIEF_EDGE]["policy"]
        assert policy["allowed"] is False, policy
        assert "kind: TrafficTarget" in (policy["suggestion"] or ""), policy
        wait_for(lambda: traffic(mesh, 1)["bookthief"].ok == 0, 20, "bookthief to be denied")
        browse(mesh)
    finally:
        set_mesh_config(mesh, permissive=True)


def browse(mesh: Mesh) -> None:
    """The page in Debian's headless chromium: the graph with bookbuyer's active edges and
    bookthief's denial, the split, and a trace's waterfall (screenshots under `ARTIFACTS`)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="osm-dashboard-e2e-")
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1440,900",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def until(script: str, timeout: float = 15) -> Any:
        return WebDriverWait(browser, timeout).until(
            lambda b: b.execute_script(f"return {script};")
        )

    def testid(name: str) -> Any:
        until(f"document.querySelector(\"[data-testid='{name}']\")")
        return browser.find_element(By.CSS_SELECTOR, f"[data-testid='{name}']")

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"{mesh.plane}-{name}.png"))

    try:
        browser.get(f"{mesh.dashboard_url}/#graph")
        until("window.__osmRendered")
        for edge in BUYER_EDGES:
            until(f"window.__osmCy.getElementById({edge!r}).data('state') === 'active'")
        until(f"window.__osmCy.getElementById({THIEF_EDGE!r}).data('state') === 'denied'")
        shot("graph")
        browser.execute_script(f"window.__osmCy.getElementById({THIEF_EDGE!r}).emit('tap')")
        assert "denied" in testid("panel-state").text
        assert "kind: TrafficTarget" in testid("policy-suggestion").text
        shot("graph-denied-edge")

        browser.get(f"{mesh.dashboard_url}/#splits")
        rows = {}
        for backend in ("bookstore-v1", "bookstore-v2"):
            row = testid(f"split-backend-{backend}")
            rows[backend] = (
                row.find_element(By.CSS_SELECTOR, "[data-testid=weight]").text,
                row.find_element(By.CSS_SELECTOR, "[data-testid=observed]").text,
            )
        assert {b: w for b, (w, _) in rows.items()} == {"bookstore-v1": "50", "bookstore-v2": "50"}
        assert all(o.endswith("%") for _, o in rows.values()), rows
        shot("splits")

        assert full_trace(mesh) is not None  # the store has one: the page lists the latest
        browser.get(f"{mesh.dashboard_url}/#traces")
        testid("traces-list")  # the view, then a listed trace through every hop
        hops = [SPAN_SERVICE[n] for n in ("bookbuyer", "bookstore", "bookwarehouse")]

        def opened() -> bool:
            """A listed trace through every hop, clicked (its waterfall opens)."""
            try:
                for row in browser.find_elements(By.CSS_SELECTOR, "tr[data-trace]"):
                    if all(hop in row.text for hop in hops):
                        row.click()
                        return True
            except StaleElementReferenceException:
                return False  # a refresh redrew the list while it was read: read it again
            browser.execute_script("return window.__osm.tick()")  # a refresh, awaited
            return False

        wait_for(opened, 20, "a trace through every hop listed on the page", every=1)
        waterfall = testid("waterfall")
        spans = waterfall.find_elements(By.CSS_SELECTOR, ".span-row[data-span]")
        services = {s.get_attribute("data-service") for s in spans}
        assert services >= {SPAN_SERVICE[n] for n in ("bookbuyer", "bookstore", "bookwarehouse")}, (
            services
        )
        shot("trace")
        severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], severe
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


# -- bad input -------------------------------------------------------------------------------
def test_an_unreachable_collector_keeps_traffic_flowing_and_is_counted(mesh: Mesh) -> None:
    set_mesh_config(mesh, tracing_port=UNREACHABLE_COLLECTOR_PORT)
    try:
        time.sleep(3)  # the new tracing cluster reaches the sidecars
        before = zipkin_reports(mesh, "bookbuyer")
        seen = traffic(mesh, 8)
        for name in ("bookbuyer", "bookthief"):
            assert seen[name].ok > 20 and seen[name].errors == 0, seen

        def failed(reports: dict[str, int]) -> int:
            return reports.get("reports_failed", 0) + reports.get("reports_dropped", 0)

        def counted() -> dict[str, int] | None:
            now = zipkin_reports(mesh, "bookbuyer")
            return now if failed(now) > failed(before) else None

        after = wait_for(
            counted,
            15,
            "bookbuyer's sidecar to count failed reports",
            lambda: f"before {before}, now {zipkin_reports(mesh, 'bookbuyer')}",
        )
        print(f"unreachable collector: before {before}, after {after}")
    finally:
        set_mesh_config(mesh)


def test_the_dashboard_says_prometheus_is_down_and_keeps_serving(mesh: Mesh) -> None:
    deployment = mesh.api.get("Deployment", SYSTEM, wellknown.PROMETHEUS_SERVICE)
    mesh.api.api.patch(
        "Deployment", SYSTEM, wellknown.PROMETHEUS_SERVICE, {"spec": {"replicas": 0}}
    )
    try:

        def down() -> dict[str, Any] | None:
            status = dashboard(mesh, "/api/status")
            state = status["sources"]["prometheus"]
            return status if state["state"] in ("unreachable", "timeout") else None

        status = wait_for(
            down,
            30,
            "the dashboard to say Prometheus is down",
            lambda: f"{dashboard(mesh, '/api/status')}\n{dashboard_log(mesh)}",
        )
        print(f"prometheus scaled to 0: {status['sources']['prometheus']}")
        graph = dashboard(mesh, "/api/graph?window=1m")
        assert any(error.startswith("prometheus: ") for error in graph["errors"]), graph["errors"]
        node_ids = {node["id"] for node in graph["nodes"]}
        assert {"workload:bookbuyer/bookbuyer", "service:bookstore/bookstore-v1"} <= node_ids
        assert all(edge["rps"] is None for edge in graph["edges"]), graph["edges"]
        assert dashboard(mesh, "/api/proxies")["proxies"], "the controller's proxies still shown"
        assert mesh.dashboard is not None and mesh.dashboard.poll() is None
    finally:
        replicas = deployment["spec"].get("replicas", 1)
        mesh.api.api.patch(
            "Deployment", SYSTEM, wellknown.PROMETHEUS_SERVICE, {"spec": {"replicas": replicas}}
        )


def test_osm_down_leaves_nothing_behind(mesh: Mesh) -> None:
    stop_dashboard(mesh)
    mesh.forwards.close()
    pids = [
        daemon.runtime(mesh.settings.state_dir).pid(),
        daemon.controller(mesh.settings.state_dir).pid(),
    ]
    # Every process of every pod (Prometheus, its discovery, the trace store, the demo).
    pod_pids = [
        int(pid)
        for netns in demo.left_behind(PREFIX)["netns"]
        for pid in hostutil.output("ip", "netns", "pids", netns).split()
    ]
    assert len(pod_pids) > 7, pod_pids
    daemon.down(mesh.settings.state_dir)
    assert demo.left_behind(PREFIX) == {"netns": [], "etc": []}
    assert daemon.down(mesh.settings.state_dir) == []  # idempotent
    for pid in pids:
        assert pid is None or not Path(f"/proc/{pid}").exists()
    assert [pid for pid in pod_pids if Path(f"/proc/{pid}").exists()] == []
    leftovers = [
        line
        for line in hostutil.output("ps", "-eo", "pid,args").splitlines()
        if PREFIX in line or str(mesh.settings.state_dir) in line
    ]
    assert leftovers == []
    mesh.mark("down")
