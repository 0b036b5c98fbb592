"""Benchmark: the bookstore demo's 5 pods, started together, until all are Ready.

One local mesh (`osm up` with its own state dir, ports and prefix; the pods' venv built
first, not timed). Per repetition and case, interleaved: apply the demo through the
Kubernetes API with the mesh's admin kubeconfig (the namespaces with the case's data plane
and the other objects first, one request each, then every Deployment at once: concurrent
creates), time from the Deployments' creates until the API shows all 5 Pods Ready, read
each pod's start breakdown from the runtime's log (``pod ... started in ...``: network,
sandbox, init containers), then delete the Deployments and wait until their pods are
gone. Cases:

* ``none``: no sidecar injection (the namespaces are not in the mesh): the kubelet's own
  cost, the baseline;
* ``envoy``: Envoy 1.40 in every pod (the default data plane);
* ``python``: the Python sidecar in every pod.

Ready means what Kubernetes means: every container ready, the servers' readiness probes
passing through the sidecar's probe port (so the sidecar has its configuration from xDS).

Run (root): ``.venv/bin/python bench/pod_start.py [--repeat 5] [--cases none,envoy,python]``.
Goal (issue #14): the 5 demo pods ready <= 1 s on Envoy. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osm.base import wellknown  # noqa: E402
from osm.kube.client import KubeClient  # noqa: E402
from osm.model import manifest  # noqa: E402
from osm.runtime import daemon  # noqa: E402
from tests import kubeapi  # noqa: E402

MANIFESTS = ROOT / "demo" / "bookstore" / "manifests"
NAMESPACES = ("bookbuyer", "bookthief", "bookstore", "bookwarehouse")
CASES = ("none", "envoy", "python")
STARTED = re.compile(r"pod (\S+) started in ([0-9.]+)s \(([^)]*)\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((wellknown.LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def demo_objects(case: str) -> list[dict[str, Any]]:
    """The demo's manifests with the case's data plane chosen on its namespaces."""
    loaded = manifest.load_paths([str(MANIFESTS)])
    if loaded.errors:
        raise SystemExit(f"the demo's manifests do not load: {loaded.errors}")
    objects = [copy.deepcopy(r.to_dict()) for r in loaded.resources]
    for obj in objects:
        if obj["kind"] != "Namespace":
            continue
        meta = obj["metadata"]
        if case == "none":
            meta.get("labels", {}).pop(wellknown.MONITORED_BY_LABEL, None)
            meta.get("annotations", {}).pop(wellknown.SIDECAR_INJECTION_ANNOTATION, None)
        elif case == "python":
            meta.setdefault("annotations", {})[wellknown.DATA_PLANE_ANNOTATION] = "python"
    return objects


async def pods(client: KubeClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for namespace in NAMESPACES:
        found += (await client.list("Pod", namespace))[0]
    return found


async def ready_pods(client: KubeClient) -> list[dict[str, Any]]:
    """The demo's pods whose Ready condition is True."""
    return [
        pod
        for pod in await pods(client)
        if any(
            condition.get("type") == "Ready" and condition.get("status") == "True"
            for condition in (pod.get("status") or {}).get("conditions") or ()
        )
    ]


async def create_at_once(client: KubeClient, objects: list[dict[str, Any]]) -> None:
    await asyncio.gather(*(kubeapi.apply_one(client, obj) for obj in objects))


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def run_case(
    api: kubeapi.Blocking, case: str, log: Path
) -> tuple[float, list[tuple[str, float, str]]]:
    objects = demo_objects(case)
    first = sorted(
        (o for o in objects if o["kind"] != "Deployment"), key=lambda o: o["kind"] != "Namespace"
    )
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    api(lambda client: kubeapi.apply(client, *first))
    offset = log.stat().st_size if log.exists() else 0
    started = time.monotonic()
    api(lambda client: create_at_once(client, deployments))
    wait(lambda: len(api(ready_pods)) == 5, 60, "5 ready pods")
    elapsed = time.monotonic() - started
    time.sleep(0.3)  # the log lines of the last pods
    with log.open() as handle:
        handle.seek(offset)
        starts = [(m[1], float(m[2]), m[3]) for m in STARTED.finditer(handle.read())]
    api(lambda client: kubeapi.delete(client, *deployments))
    wait(lambda: not api(pods), 60, "the demo's pods to go")
    return elapsed, starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, iptables)")
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; valid: {', '.join(CASES)}")
    base = Path(tempfile.mkdtemp(prefix="osm-podstart-", dir="/tmp"))
    os.chmod(base, 0o755)
    prefix = f"osmb{os.getpid() % 100000}"
    settings = daemon.MeshSettings(
        base / "state", free_port(), free_port(), prefix, http_port=free_port()
    )
    print(f"osm up ({settings.state_dir}, building the pods' venv if needed)...", flush=True)
    log = settings.state_dir / "logs" / "runtime.log"
    results: dict[str, list[float]] = {case: [] for case in cases}
    breakdowns: dict[str, list[str]] = {case: [] for case in cases}
    api: kubeapi.Blocking | None = None
    try:  # a mesh that came half up is taken down too
        daemon.up(settings, progress=lambda line: print(f"  {line}", flush=True))
        api = kubeapi.Blocking(settings.kubeconfig)
        for repetition in range(args.repeat):
            order = cases if repetition % 2 == 0 else list(reversed(cases))
            for case in order:
                elapsed, starts = run_case(api, case, log)
                results[case].append(elapsed)
                slowest = max(starts, key=lambda s: s[1], default=("-", 0.0, ""))
                breakdowns[case].append(f"{slowest[0]} {slowest[1]:.3f}s ({slowest[2]})")
                print(f"  {case:7} run {repetition + 1}: all 5 ready in {elapsed:.3f}s", flush=True)
    finally:
        if api is not None:
            api.close()
        daemon.down(settings.state_dir)
        shutil.rmtree(base, ignore_errors=True)
    baseline = statistics.median(results[cases[0]]) if results.get("none") else None
    print()
    print("| case | 5 pods ready, median (range) s | x none | slowest pod's start, last run |")
    print("|---|---|---|---|")
    for case in cases:
        values = results[case]
        median = statistics.median(values)
        ratio = f"{median / baseline:.2f}x" if baseline else "-"
        span = f"{median:.3f} ({min(values):.3f}-{max(values):.3f})"
        print(f"| {case} | {span} | {ratio} | {breakdowns[case][-1]} |")
    if "envoy" in results:
        envoy = statistics.median(results["envoy"])
        verdict = "met" if envoy <= 1.0 else "NOT met"
        print(f"\ngoal: 5 demo pods ready <= 1 s on Envoy: {envoy:.3f} s median ({verdict})")


if __name__ == "__main__":
    main()
