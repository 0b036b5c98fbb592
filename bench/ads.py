"""Benchmark: one controller process serving thousands of simulated proxies over ADS.

The controller runs as its own process (`tests.controllers.ControllerProcess` with
``--xds-insecure``: own ports, SQLite store in a temporary directory). The mesh is applied
through its Kubernetes API with its admin kubeconfig, one object per request, 16 requests
in flight (namespaces first): S services in 10 namespaces, one service account each, N
proxies (N/S pods per service, with status IP + Ready, and Endpoints), SMI mode with
TrafficTargets giving each service 10 allowed upstreams, and a TrafficSplit on every 10th
service. The
proxies are SotW ADS streams in a SEPARATE process (`bench._ads_client`), multiplexed
over a few grpc.aio channels; every stream subscribes like a sidecar and ACKs every
response.

Measured per size:

- cold convergence: from the first stream opening until every stream has ACKed a full
  configuration (CDS, EDS, LDS, RDS, SDS);
- one TrafficSplit change (a replace through the API, at the resourceVersion read just
  before), repeated on different apexes: time from the request until each affected proxy
  (every pod whose identity may call the apex) has received, and so ACKed, its new RDS;
  p50 / p99 / max across them;
- controller RSS (/proc/PID/status) before and after the proxies connect, and so RSS
  per connected proxy; controller CPU (utime + stime) in each phase.

Run: ``.venv/bin/python bench/ads.py [--quick] [--changes 5] [--channels 8]``
(``--quick``: 100 services, 100 and 500 proxies; default: 1,000 services, 1,000 and
5,000 proxies). ``--profile DIR`` runs the controller under cProfile (environment
variable ``OSM_CONTROLLER_PROFILE``, see below) and prints its top functions.
Not run by CI. Goals (issue #5): 5,000 proxies on one controller; one change
converges with p99 <= 1 s; <= 200 KB of controller memory per connected proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osm.kube.client import KubeClient  # noqa: E402
from tests import kubeapi  # noqa: E402
from tests.controllers import ControllerProcess  # noqa: E402

NAMESPACES = 10
UPSTREAMS = 10
PORT = 80
TARGET_PORT = 8080
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Doc = dict[str, Any]


# -- the mesh ----------------------------------------------------------------------------
def namespace_of(index: int) -> str:
    return f"ns{index % NAMESPACES}"


def pod_ip(number: int) -> str:
    return f"10.{number // 62500 + 1}.{number // 250 % 250}.{number % 250 + 1}"


def split(index: int, services: int, weights: tuple[int, int]) -> Doc:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": f"split{index}", "namespace": namespace_of(index)},
        "spec": {
            "service": f"svc{index}",
            "backends": [
                {"service": f"svc{index}", "weight": weights[0]},
                {"service": f"svc{(index + NAMESPACES) % services}", "weight": weights[1]},
            ],
        },
    }


def split_apexes(services: int) -> list[int]:
    return [i for i in range(0, services, 10) if i + NAMESPACES < services]


def mesh(services: int, proxies: int) -> tuple[list[Doc], dict[int, list[str]]]:
    """The manifests, and the node ids of each service's pods."""
    per_service = max(1, proxies // services)
    docs: list[Doc] = [
        {
            "apiVersion": "config.openservicemesh.io/v1alpha2",
            "kind": "MeshConfig",
            "metadata": {"name": "osm-mesh-config", "namespace": "osm-system"},
            "spec": {"traffic": {"enablePermissiveTrafficPolicyMode": False}},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "osm-system"}},
    ]
    annotations = {"openservicemesh.io/sidecar-injection": "enabled"}
    for n in range(NAMESPACES):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": f"ns{n}", "annotations": annotations},
            }
        )
    nodes: dict[int, list[str]] = {}
    apexes = set(split_apexes(services))
    for index in range(services):
        ns, name, account = namespace_of(index), f"svc{index}", f"sa{index}"
        meta = {"name": name, "namespace": ns}
        docs.append(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {**meta, "name": account}}
        )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {
                    "selector": {"app": name},
                    "ports": [
                        {
                            "name": "http",
                            "port": PORT,
                            "targetPort": TARGET_PORT,
                            "appProtocol": "http",
                        }
                    ],
                },
            }
        )
        ips = []
        nodes[index] = []
        for pod in range(per_service):
            ip = pod_ip(index * per_service + pod)
            ips.append(ip)
            pod_name = f"{name}-{pod}"
            nodes[index].append(f"{pod_name}.sidecar.{account}.{ns}")
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod_name, "namespace": ns, "labels": {"app": name}},
                    "spec": {
                        "serviceAccountName": account,
                        "containers": [
                            {
                                "name": "app",
                                "image": "app",
                                "ports": [{"containerPort": TARGET_PORT}],
                            }
                        ],
                    },
                    "status": {
                        "phase": "Running",
                        "podIP": ip,
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                }
            )
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": meta,
                "subsets": [
                    {
                        "addresses": [{"ip": ip} for ip in ips],
                        "ports": [{"name": "http", "port": TARGET_PORT}],
                    }
                ],
            }
        )
        docs.append(
            {
                "apiVersion": "specs.smi-spec.io/v1alpha4",
                "kind": "HTTPRouteGroup",
                "metadata": {"name": f"routes{index}", "namespace": ns},
                "spec": {"matches": [{"name": "api", "pathRegex": "/api/.*", "methods": ["GET"]}]},
            }
        )
        docs.append(
            {
                "apiVersion": "access.smi-spec.io/v1alpha3",
                "kind": "TrafficTarget",
                "metadata": {"name": f"tt{index}", "namespace": ns},
                "spec": {
                    "destination": {"kind": "ServiceAccount", "name": account, "namespace": ns},
                    "sources": [
                        {"kind": "ServiceAccount", "name": f"sa{s}", "namespace": namespace_of(s)}
                        for s in sorted({(index - k) % services for k in range(1, UPSTREAMS + 1)})
                    ],
                    "rules": [{"kind": "HTTPRouteGroup", "name": f"routes{index}"}],
                },
            }
        )
        if index in apexes:
            docs.append(split(index, services, (90, 10)))
    return docs, nodes


def callers(apex: int, services: int) -> list[int]:
    """Services whose identity may call ``apex`` (its TrafficTarget's sources)."""
    return sorted({(apex - k) % services for k in range(1, UPSTREAMS + 1)})


# -- processes ---------------------------------------------------------------------------
@dataclass
class Controller:
    child: ControllerProcess

    @property
    def xds_port(self) -> int:
        return self.child.xds_port

    @property
    def log(self) -> Path:
        return self.child.log

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.child.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.child.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def metric(self, name: str) -> float:
        """A sample of the controller's own metrics endpoint."""
        url = self.child.http_url + "/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            return kubeapi.metric(response.read().decode(), name)


@contextlib.contextmanager
def controller(directory: Path, profile: Path | None) -> Iterator[Controller]:
    env = dict(os.environ)
    if profile is not None:
        env["OSM_CONTROLLER_PROFILE"] = str(profile)
    child = ControllerProcess.start(
        directory / "state", "--xds-insecure", "--log-level", "warning", env=env
    )
    try:
        yield Controller(child)
    finally:
        child.stop(signal.SIGINT)


class Proxies:
    """The simulated proxies' process (`bench._ads_client`)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench._ads_client"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the simulated proxies exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call({"cmd": "stop"})
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# -- one run -----------------------------------------------------------------------------
@dataclass
class Result:
    services: int
    proxies: int
    apply_s: float = 0.0
    build_s: float = 0.0
    cold_s: float = 0.0
    complete: int = 0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    cpu_build_s: float = 0.0
    cpu_cold_s: float = 0.0
    change_p50: list[float] = field(default_factory=list)
    change_p99: list[float] = field(default_factory=list)
    change_max: list[float] = field(default_factory=list)
    change_cpu: list[float] = field(default_factory=list)
    affected: list[int] = field(default_factory=list)
    missing: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def kb_per_proxy(self) -> float:
        return (self.rss_after_mb - self.rss_before_mb) * 1024 / max(1, self.complete)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(services: int, proxies: int, changes: int, channels: int, profile: Path | None) -> Result:
    result = Result(services, proxies)
    docs, nodes = mesh(services, proxies)
    with (
        tempfile.TemporaryDirectory(prefix="osm-bench-ads-") as temp,
        controller(Path(temp), profile) as running,
        kubeapi.Blocking(running.child.kubeconfig, timeout=600) as api,
    ):
        cpu = running.cpu_seconds()
        started = time.monotonic()
        api(lambda client: kubeapi.apply_concurrently(client, docs))
        result.apply_s = time.monotonic() - started
        expected = sum(len(v) for v in nodes.values())
        progress(f"applied {len(docs)} objects in {result.apply_s:.1f}s")
        deadline = time.monotonic() + 600
        while (built := running.metric("osm_snapshot_count")) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {built} of {expected} snapshots after 600 s")
            time.sleep(0.1)
        result.build_s = time.monotonic() - started
        time.sleep(0.5)  # let the last batch's build finish
        result.cpu_build_s = running.cpu_seconds() - cpu
        result.rss_before_mb = running.rss_kb() / 1024

        progress(f"{expected} snapshots built in {result.build_s:.1f}s; connecting")
        simulated = Proxies()
        try:
            cpu = running.cpu_seconds()
            all_nodes = [n for index in sorted(nodes) for n in nodes[index]]
            answer = simulated.call(
                {
                    "cmd": "connect",
                    "target": f"127.0.0.1:{running.xds_port}",
                    "nodes": all_nodes,
                    "channels": channels,
                    "timeout": 600,
                }
            )
            result.complete = answer["complete"]
            result.errors = answer["errors"]
            if answer["failed"]:
                progress(f"{answer['failed']} streams failed: {answer}")
            if answer["last_complete"] is not None:
                result.cold_s = answer["last_complete"] - answer["started"]
            result.cpu_cold_s = running.cpu_seconds() - cpu
            if result.errors:
                lines = running.log.read_text(errors="replace").splitlines()
                problems = [line for line in lines if " ERROR " in line or " WARNING " in line]
                progress("controller log: " + "\n".join(problems[-5:])[-3000:])
            progress(f"{result.complete} proxies configured in {result.cold_s:.2f}s")
            time.sleep(1.0)
            result.rss_after_mb = running.rss_kb() / 1024

            apexes = split_apexes(services)
            for number in range(changes):
                apex = apexes[(number * 7 + 1) % len(apexes)]
                affected = [n for c in callers(apex, services) for n in nodes[c]]
                changed = split(apex, services, (50 + number, 50 - number))
                changed["metadata"]["resourceVersion"] = api(stored_version(changed))
                cpu = running.cpu_seconds()
                t0 = time.monotonic()
                api(replace(changed))
                deadline = t0 + 30
                while True:
                    times = simulated.call(
                        {"cmd": "since", "t": t0, "type": "RDS", "nodes": affected}
                    )["times"]
                    if all(v is not None for v in times.values()):
                        break
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                latencies = [v - t0 for v in times.values() if v is not None]
                result.missing += len(affected) - len(latencies)
                result.affected.append(len(affected))
                result.change_cpu.append(running.cpu_seconds() - cpu)
                if latencies:
                    result.change_p50.append(statistics.median(latencies))
                    result.change_p99.append(percentile(latencies, 0.99))
                    result.change_max.append(max(latencies))
                time.sleep(0.3)
        finally:
            simulated.close()
    return result


def stored_version(obj: Doc) -> Callable[[KubeClient], Awaitable[str]]:
    async def read(client: KubeClient) -> str:
        kind, namespace, name = kubeapi.ref(obj)
        stored = await client.get(kind, namespace, name, api_version=obj["apiVersion"])
        return str(stored["metadata"]["resourceVersion"])

    return read


def replace(obj: Doc) -> Callable[[KubeClient], Awaitable[Doc]]:
    return lambda client: client.replace(obj)


def span(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    if not values:
        return "-"
    low, high = min(values) * scale, max(values) * scale
    if round(low, digits) == round(high, digits):
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f}-{high:.{digits}f}"


def report(results: list[Result]) -> None:
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("services / proxies", lambda r: f"{r.services} / {r.proxies}"),
        ("apply via API (s)", lambda r: f"{r.apply_s:.1f}"),
        ("apply -> all snapshots built (s)", lambda r: f"{r.build_s:.1f}"),
        ("  controller CPU in that phase (s)", lambda r: f"{r.cpu_build_s:.1f}"),
        ("cold convergence, all ACKed (s)", lambda r: f"{r.cold_s:.2f}"),
        ("  proxies fully configured", lambda r: f"{r.complete}/{r.proxies}"),
        ("  controller CPU while connecting (s)", lambda r: f"{r.cpu_cold_s:.1f}"),
        ("controller RSS before connect (MB)", lambda r: f"{r.rss_before_mb:.0f}"),
        ("controller RSS after connect (MB)", lambda r: f"{r.rss_after_mb:.0f}"),
        ("  RSS per connected proxy (KB)", lambda r: f"{r.kb_per_proxy:.0f}"),
        ("split change: affected proxies", lambda r: span([float(a) for a in r.affected])),
        ("  p50 to new RDS (ms)", lambda r: span(r.change_p50, 1000)),
        ("  p99 to new RDS (ms)", lambda r: span(r.change_p99, 1000)),
        ("  max to new RDS (ms)", lambda r: span(r.change_max, 1000)),
        ("  controller CPU per change (ms)", lambda r: span(r.change_cpu, 1000)),
        ("  proxies that never got it", lambda r: str(r.missing)),
    ]
    widths = [max(len(label) for label, _ in rows)] + [18] * len(results)
    for label, value in rows:
        cells = [label.ljust(widths[0])] + [value(r).rjust(18) for r in results]
        print("  ".join(cells))
    for result in results:
        if result.errors:
            print(f"stream errors at {result.proxies} proxies: {result.errors}")


def main() -> None:
    # SIGTERM (say, from `timeout`) unwinds like ^C, so the child processes are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 services, 100 and 500 proxies")
    parser.add_argument("--sizes", help="comma-separated proxy counts (overrides the defaults)")
    parser.add_argument("--services", type=int, help="number of services")
    parser.add_argument("--changes", type=int, default=5, help="TrafficSplit changes per size")
    parser.add_argument("--channels", type=int, default=8, help="gRPC connections for proxies")
    parser.add_argument("--profile", type=Path, help="cProfile the controller into this dir")
    options = parser.parse_args()
    services = options.services or (100 if options.quick else 1000)
    sizes = [100, 500] if options.quick else [1000, 5000]
    if options.sizes:
        sizes = [int(s) for s in options.sizes.split(",")]
    results: list[Result] = []
    try:
        measure(services, sizes, options, results)
    finally:
        if results:
            report(results)


def measure(
    services: int, sizes: list[int], options: argparse.Namespace, results: list[Result]
) -> None:
    for proxies in sizes:
        profile = None
        if options.profile is not None:
            options.profile.mkdir(parents=True, exist_ok=True)
            profile = options.profile / f"controller-{proxies}.prof"
        print(f"running {services} services / {proxies} proxies ...", file=sys.stderr)
        results.append(run(services, proxies, options.changes, options.channels, profile))
        if profile is not None and profile.exists():
            print(f"\ncontroller profile, {proxies} proxies (cumulative top 25):")
            pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
