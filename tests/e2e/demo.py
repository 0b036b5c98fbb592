"""What the e2e modules that run the bookstore demo share: a running demo mesh (`running`,
`Mesh`), choosing each Deployment's data plane, the demo clients' counts over a time, the
sidecars' failure counters, and what a run left in the host and its namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from osm.base import wellknown
from osm.cli import runtime as cli_runtime
from osm.demo.bookstore import counters
from osm.model import manifest
from osm.runtime import daemon, record
from tests.e2e import hostutil
from tests.e2e.meshapi import MeshApi

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "demo" / "bookstore" / "manifests"
NAMESPACES = ("bookbuyer", "bookthief", "bookstore", "bookwarehouse")
Edit = Callable[[list[dict[str, Any]]], None]


def choose_planes(planes: dict[str, str]) -> Edit:
    """An edit that annotates the pod templates of the Deployments `planes` names."""

    def edit(objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            plane = planes.get(obj["metadata"]["name"]) if obj["kind"] == "Deployment" else None
            if plane is not None:
                meta = obj["spec"]["template"].setdefault("metadata", {})
                meta.setdefault("annotations", {})[wellknown.DATA_PLANE_ANNOTATION] = plane

    return edit


def counted(
    sample: Callable[[], counters.DemoCounters], seconds: float
) -> dict[str, counters.ClientCounters]:
    """Each client's counters accumulated over ``seconds`` (differences of two samples)."""
    first = {c.identity: c for c in sample().clients}
    time.sleep(seconds)
    second = {c.identity: c for c in sample().clients}
    result = {}
    for name, after in second.items():
        before = first.get(name) or counters.ClientCounters(name)
        by_identity = {k: v - before.by_identity.get(k, 0) for k, v in after.by_identity.items()}
        result[name] = counters.ClientCounters(
            name,
            requests=after.requests - before.requests,
            ok=after.ok - before.ok,
            denied=after.denied - before.denied,
            errors=after.errors - before.errors,
            by_identity=by_identity,
        )
    return result


def left_behind(prefix: str) -> dict[str, list[str]]:
    """The network namespaces and /etc/netns directories named with a run's ``prefix``."""
    etc = record.ETC_NETNS
    return {
        "netns": hostutil.netns_named(prefix),
        "etc": sorted(p.name for p in etc.iterdir() if p.name.startswith(prefix))
        if etc.exists()
        else [],
    }


def host_snapshot() -> dict[str, str]:
    """What the mesh must never change in the host's namespace."""
    return {
        "links": "\n".join(
            sorted(line.split(": ")[1] for line in hostutil.output("ip", "-o", "link").splitlines())
        ),
        "routes": hostutil.output("ip", "route", "show", "table", "all"),
        "rules": hostutil.output("ip", "rule"),
        "iptables": hostutil.host_iptables(),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


@dataclass
class Mesh:
    """A running mesh with the demo applied: its settings, API, start time and data plane."""

    settings: daemon.MeshSettings
    api: MeshApi
    started: float
    plane: str

    def apply_file(self, path: Path, edit: Edit | None = None) -> None:
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

    def client(self, identity: str) -> counters.ClientCounters:
        for part in self.sample().clients:
            if part.identity == identity:
                return part
        raise AssertionError(f"no counters from {identity}")

    def pod(self, namespace: str) -> dict[str, Any]:
        items = self.api.items("Pod", namespace)
        assert items, f"no pod in {namespace}"
        return dict(items[0])


@contextlib.contextmanager
def running(state_dir: Path, prefix: str, plane: str, edit: Edit | None) -> Iterator[Mesh]:
    """`osm up` on ``state_dir`` (fresh ports, namespaces named ``prefix``), the demo applied
    with ``edit``; on exit `osm down`, and the host's namespace as it was."""
    settings = daemon.MeshSettings(
        state_dir,
        hostutil.free_port(),
        hostutil.free_port(),
        prefix,
        http_port=hostutil.free_port(),
    )
    before = host_snapshot()
    started = time.monotonic()
    api: MeshApi | None = None
    try:
        daemon.up(settings, progress=print)
        api = MeshApi(settings)
        mesh = Mesh(settings, api, started, plane)
        mesh.apply_file(MANIFESTS, edit)
        yield mesh
    finally:
        if api is not None:
            api.close()
        daemon.down(state_dir)
        for netns in left_behind(prefix)["netns"]:  # last resort, should teardown be broken
            subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)
    assert host_snapshot() == before


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    explain: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(0.2)


def unready_pods(mesh: Mesh, tail: int = 15, *, runtime_log: bool = True) -> str:
    """The demo pods that are not Ready: their status, and the last lines of their
    containers' logs and (``runtime_log``) of the runtime's (what a timed-out start needs
    to be debugged)."""
    lines: list[str] = []
    ready = {p["metadata"]["name"] for p in cli_runtime.ready_pods(mesh.api.api, NAMESPACES)}
    logs = mesh.settings.state_dir / "logs"
    for namespace in NAMESPACES:
        for pod in mesh.api.items("Pod", namespace):
            name = pod["metadata"]["name"]
            if name in ready:
                continue
            lines.append(f"pod {namespace}/{name} not ready: {pod.get('status')}")
            for log in sorted((logs / namespace / name).glob("*.log")):
                lines.append(f"--- {log.name}")
                lines += log.read_text(errors="replace").splitlines()[-tail:]
    log = logs / "runtime.log"
    if runtime_log and log.exists():
        lines.append("--- runtime.log")
        lines += log.read_text(errors="replace").splitlines()[-tail:]
    return "\n".join(lines)


class HasSettings(Protocol):
    settings: daemon.MeshSettings


def proxy_stats(mesh: HasSettings, namespace: str, pod: str) -> dict[str, str]:
    """A pod's sidecar's stats, as ``osm proxy get stats`` prints them."""
    from click.testing import CliRunner

    from osm.cli import main as cli_main

    cli_main.register(cli_main.cli)
    argv = [
        "--kubeconfig",
        str(mesh.settings.kubeconfig),
        "proxy",
        "get",
        "stats",
        pod,
        "-n",
        namespace,
    ]
    result = CliRunner().invoke(cli_main.cli, argv, obj={})
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.output.splitlines() if ": " in line)


FAILURE_WORDS = ("5xx", "fail", "reset", "overflow", "no_healthy", "timeout", "denied", "error")


def failure_counters(mesh: Mesh) -> str:
    """Every sidecar's non-zero counters whose name says something failed."""
    lines = []
    for namespace in NAMESPACES:
        for pod in mesh.api.items("Pod", namespace):
            name = pod["metadata"]["name"]
            try:
                stats = proxy_stats(mesh, namespace, name)
            except AssertionError as error:
                lines.append(f"{namespace}/{name}: no stats ({error})")
                continue
            lines += [
                f"{namespace}/{name} {key}: {value}"
                for key, value in stats.items()
                if value not in ("0", "") and any(word in key for word in FAILURE_WORDS)
            ]
    return "\n".join(lines)


def set_split(mesh: Mesh, v1: int, v2: int) -> None:
    """The bookstore TrafficSplit's weights (applies the demo's policy file)."""
    mesh.apply_file(MANIFESTS / "40-policy.yaml", split_edit(v1, v2))


def split_edit(v1: int, v2: int) -> Edit:
    def edit(objects: list[dict[str, Any]]) -> None:
        split = next(o for o in objects if o["kind"] == "TrafficSplit")
        split["spec"]["backends"] = [
            {"service": "bookstore-v1", "weight": v1},
            {"service": "bookstore-v2", "weight": v2},
        ]

    return edit
