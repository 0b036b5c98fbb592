"""Benchmark: a soak of the bookstore demo under a fixed open-loop load (needs root).

Per data plane, one local mesh (`osm.runtime.daemon` with its own state dir, ports and
namespace prefix, as ``osm up`` without the observability stack), the demo's manifests
applied unchanged except for the data plane. After ``--idle`` seconds of the demo alone
(the **baseline**: its two clients at 5 req/s each), bench/_load.py runs inside each client
pod's network namespace (bookbuyer and bookthief) as the pod's app user (not the proxy's
UID, so the pod's iptables rules send it through its sidecar), each at half of ``--rate``,
for ``--minutes``: open loop (requests are due by the clock, not by replies), HTTP/1.1
keep-alive, the demo client's paths, URL and identity header (from the pod's env).

Every ``--sample`` seconds it reads, per process (the controller, which is the API server
here; the runtime, which is the kubelet; each pod's sidecar and app; the load generators;
this bench), RSS (VmRSS), open fds (entries in /proc/PID/fd) and CPU (utime+stime), the
machine's CPU (/proc/stat), the store (``store.db`` + ``-wal`` bytes; rows, top rv and the
new events by kind, read-only through sqlite3) and the logs' size. Every ``--interval``
seconds it prints a row: requests, failures by cause, p50/p99/max, then per process RSS,
fds and CPU% over the interval. At the end, per data plane, a table and a verdict per
figure (rules in bench/README.md, "soak.py"): failures (goal 0); the rate achieved and
whether the generators fell behind; RSS and fds per process, flat or growing, from a
least-squares fit over the samples after ``--warmup``; the store bounded (history capped
at `osm.store.sqlite.SqliteStore.open`'s ``history``; the event rate at steady state).

Run (root): ``.venv/bin/python bench/soak.py [--plane envoy|python|mixed|both]
[--minutes 30] [--rate 1000] [--interval 60] [--json FILE]``. Never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _load  # noqa: E402
from bench._report import print_table  # noqa: E402
from osm.base import wellknown  # noqa: E402
from osm.cli import proxy as cli_proxy  # noqa: E402
from osm.cli import runtime as cli_runtime  # noqa: E402
from osm.demo.bookstore import client as demo_client  # noqa: E402
from osm.model import manifest  # noqa: E402
from osm.runtime import daemon, podspec  # noqa: E402
from osm.runtime import pods as runtime_pods  # noqa: E402
from osm.store import sqlite as store_sqlite  # noqa: E402
from tests.e2e import demo  # noqa: E402
from tests.e2e.meshapi import MeshApi  # noqa: E402

MANIFESTS = ROOT / "demo" / "bookstore" / "manifests"
NAMESPACES = ("bookbuyer", "bookthief", "bookstore", "bookwarehouse")
CLIENTS = ("bookbuyer", "bookthief")
DEPLOYMENTS = ("bookbuyer", "bookthief", "bookstore-v1", "bookstore-v2", "bookwarehouse")
PLANES: dict[str, dict[str, str]] = {
    # deployment -> data plane (absent: Envoy, the injector's default); as tests/e2e
    "envoy": {},
    "python": {name: "python" for name in DEPLOYMENTS},
    "mixed": {"bookthief": "python", "bookstore-v1": "python", "bookwarehouse": "python"},
}
HISTORY = int(inspect.signature(store_sqlite.SqliteStore.open).parameters["history"].default)
"""The events the controller's store keeps (it opens the store with the default)."""
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
MIN_FIT_SAMPLES = 6
MIN_WINDOW_MIN = 10.0
"""Minutes of samples after the warm-up below which no process is judged flat or growing."""
FLOORS = {"rss_mb": 1.0, "fds": 1.0}
"""Per hour: a slope below this is flat whatever the noise (1 MB/h of RSS, 1 fd/h)."""
LATE_SHARE = 0.01
"""The generators fell behind when this share of the requests went out late (`_load.LATE_S`)."""
FAILURES = ("status_5xx", "status_4xx", "timeout", "connect", "reset", "protocol")


# -- the mesh ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((wellknown.LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Pod:
    namespace: str
    name: str
    deployment: str
    netns: str
    env: dict[str, str]


def demo_objects(plane: str, sampling: float | None) -> list[dict[str, Any]]:
    """The demo's manifests, the plane's Deployments annotated, and the MeshConfig's
    tracing samplingPercentage set to ``sampling`` (None: as the manifest has it)."""
    loaded = manifest.load_paths([str(MANIFESTS)])
    if loaded.errors:
        raise SystemExit(f"the demo's manifests do not load: {loaded.errors}")
    objects = [r.to_dict() for r in loaded.resources]
    demo.choose_planes(PLANES[plane])(objects)
    for obj in objects:
        if obj["kind"] == "MeshConfig" and sampling is not None:
            tracing = obj["spec"].setdefault("observability", {}).setdefault("tracing", {})
            tracing["samplingPercentage"] = sampling
    return objects


def wait_ready(api: MeshApi, namespaces: tuple[str, ...], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(cli_runtime.ready_pods(api.api, namespaces)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} pods in {', '.join(namespaces)} not Ready in {timeout}s")
        time.sleep(0.5)


def demo_pods(api: MeshApi, prefix: str, namespaces: tuple[str, ...]) -> list[Pod]:
    found = []
    for namespace in namespaces:
        for item in api.items("Pod", namespace):
            name = item["metadata"]["name"]
            deployment = name.rsplit("-", 2)[0]  # <deployment>-<template hash>-<suffix>
            env = {
                e["name"]: str(e.get("value", ""))
                for c in item["spec"]["containers"]
                for e in c.get("env") or ()
                if "name" in e
            }
            netns = runtime_pods.netns_name(prefix, namespace, name)
            found.append(Pod(namespace, name, deployment, netns, env))
    return found


def pod_python(state_dir: Path) -> Path:
    """The interpreter of the pods' build, from the runtime's command line
    (`daemon.runtime_argv`: ``--pod-python BUILD``)."""
    pid = daemon.runtime(state_dir).pid()
    if pid is None:
        raise SystemExit("the runtime is not running")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    build = Path(argv[argv.index("--pod-python") + 1])
    return build / "bin" / "python3"


# -- the load ------------------------------------------------------------------------------
class LoadProcess:
    """One bench/_load.py in a client pod; its JSON lines arrive on `lines`."""

    def __init__(self, pod: Pod, argv: list[str], stderr: Path) -> None:
        self.pod = pod
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.received: list[dict[str, Any]] = []
        self.stderr_path = stderr
        with stderr.open("wb") as err:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL
            )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(raw))
        self.lines.put(None)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_load(
    pod: Pod, python: Path, script: Path, rate: float, args: argparse.Namespace, base: Path
) -> LoadProcess:
    url = pod.env.get("BOOKSTORE_URL", demo_client.Settings.bookstore_url)
    identity = pod.env.get("IDENTITY", pod.deployment)
    argv = [
        "ip", "netns", "exec", pod.netns,
        "setpriv", f"--reuid={podspec.APP_UID}", f"--regid={podspec.APP_GID}",
        "--clear-groups", "--no-new-privs", "--",
        str(python), "-I", str(script),
        "--url", url,
        "--paths", ",".join(demo_client.PATHS),
        "--header", f"client-identity: {identity}",
        "--rate", f"{rate:g}",
        "--duration", f"{args.minutes * 60:g}",
        "--interval", f"{args.interval:g}",
        "--timeout", f"{args.timeout:g}",
        "--connections", str(args.connections),
    ]  # fmt: skip
    return LoadProcess(pod, argv, base / f"load-{pod.deployment}.err")


# -- sampling ------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime in ticks, RSS in KB) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE_KB


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _role(argv: list[str]) -> str:
    """``app`` (the demo's), ``sidecar`` (ours), ``envoy``, else the module a Python runs
    (``osm.tracing``) or the program's name."""
    if "osm.demo.bookstore" in argv:
        return "app"
    if "osm.proxy" in argv:
        return "sidecar"
    if argv and os.path.basename(argv[0]) == "envoy":
        return "envoy"
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1]
    return os.path.basename(argv[0]) if argv and argv[0] else "?"


def netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def processes(
    state_dir: Path, pods: list[Pod], loads: dict[int, str], inodes: dict[int, str]
) -> dict[str, list[int]]:
    """Name -> pids: ``controller``, ``runtime``, ``bench``, and ``<deployment>/<role>``
    (role: envoy, sidecar, app, load) for every process in a demo pod's namespace."""
    found: dict[str, list[int]] = {"bench": [os.getpid()]}
    for name, which in (("controller", daemon.controller), ("runtime", daemon.runtime)):
        pid = which(state_dir).pid()
        if pid is not None:
            found[name] = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            continue
        deployment = inodes.get(inode)
        if deployment is None:
            continue
        if pid in loads:
            role = "load"
        else:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            role = _role(argv)
        found.setdefault(f"{deployment}/{role}", []).append(pid)
    return found


def system_cpu() -> tuple[int, int]:
    """(busy, total) ticks over all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def store_figures(state_dir: Path, after_rv: int) -> dict[str, Any]:
    db = state_dir / "store.db"
    wal = state_dir / "store.db-wal"
    figures: dict[str, Any] = {
        "db_bytes": db.stat().st_size if db.exists() else 0,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
    }
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as error:
        figures["error"] = str(error)
        return figures
    try:
        rows, top, bytes_ = connection.execute(
            "SELECT COUNT(*), COALESCE(MAX(rv), 0), COALESCE(SUM(LENGTH(body)), 0) FROM events"
        ).fetchone()
        new = connection.execute(
            "SELECT kind, type, namespace, name, COUNT(*) FROM events WHERE rv > ?"
            " GROUP BY kind, type, namespace, name",
            (after_rv,),
        ).fetchall()
        figures.update(events=rows, top_rv=top, event_body_bytes=bytes_)
        figures["new"] = [
            {"kind": k, "type": t, "object": f"{ns}/{n}" if ns else n, "count": c}
            for k, t, ns, n, c in new
        ]
    except sqlite3.Error as error:
        figures["error"] = str(error)
    finally:
        connection.close()
    return figures


FAILURE_WORDS = ("5xx", "fail", "reset", "overflow", "no_healthy", "timeout", "denied", "error")
"""Sidecar counters whose names say something failed (as tests/e2e reads them)."""


def failure_counters(pods: list[Pod]) -> dict[str, dict[str, int]]:
    """Per deployment: each sidecar's counters whose name has a `FAILURE_WORDS` word (from
    its admin /stats inside the pod), and the pod's kernel ``TcpExt`` ListenOverflows and
    ListenDrops (a full accept queue: connects that fail or stall)."""
    found: dict[str, dict[str, int]] = {}
    for pod in pods:
        counters: dict[str, int] = {}
        try:
            status, body = cli_proxy.admin_in_netns(pod.netns, "stats", timeout=5.0)
        except OSError:
            status, body = 0, ""
        if status == 200:
            for line in body.splitlines():
                name, _, value = line.partition(": ")
                if value.strip().isdigit() and any(w in name for w in FAILURE_WORDS):
                    counters[name] = int(value)
        counters.update(kernel_listen_drops(pod.netns))
        found[pod.deployment] = counters
    return found


def kernel_listen_drops(netns: str) -> dict[str, int]:
    """TcpExt ListenOverflows/ListenDrops of network namespace ``netns``."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/netstat"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("TcpExt:")]
    if len(lines) < 2:
        return {}
    values = dict(zip(lines[0][1:], lines[1][1:], strict=False))
    return {
        f"kernel.{k}": int(values[k]) for k in ("ListenOverflows", "ListenDrops") if k in values
    }


def counter_changes(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    changes = {}
    for deployment, counters in after.items():
        was = before.get(deployment, {})
        moved = {k: v - was.get(k, 0) for k, v in counters.items() if v != was.get(k, 0)}
        if moved:
            changes[deployment] = moved
    return changes


def dir_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


@dataclass
class Sampler:
    state_dir: Path
    pods: list[Pod]
    loads: dict[int, str] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    pids_seen: dict[str, set[int]] = field(default_factory=dict)
    last_rv: int = 0

    def take(self, t: float, phase: str) -> dict[str, Any]:
        inodes = {}
        for pod in self.pods:
            inode = netns_inode(pod.netns)
            if inode is not None:
                inodes[inode] = pod.deployment
        procs: dict[str, dict[str, Any]] = {}
        for name, pids in processes(self.state_dir, self.pods, self.loads, inodes).items():
            cpu = rss = fds = 0
            alive = []
            for pid in pids:
                stat = _stat(pid)
                if stat is None:
                    continue
                alive.append(pid)
                cpu += stat[0]
                rss += stat[1]
                fds += _fds(pid)
            if alive:
                procs[name] = {"pids": alive, "cpu_ticks": cpu, "rss_kb": rss, "fds": fds}
                self.pids_seen.setdefault(name, set()).update(alive)
        store = store_figures(self.state_dir, self.last_rv)
        self.last_rv = store.get("top_rv", self.last_rv)
        busy, total = system_cpu()
        sample = {
            "t": round(t, 3),
            "wall": time.time(),
            "phase": phase,
            "procs": procs,
            "store": store,
            "logs_bytes": dir_bytes(self.state_dir / "logs"),
            "pods_bytes": dir_bytes(self.state_dir / "pods"),
            "system": {"busy_ticks": busy, "total_ticks": total},
        }
        self.samples.append(sample)
        return sample


# -- figures -------------------------------------------------------------------------------
def merge(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Generator lines (of one or more generators) summed, percentiles from the merged
    histogram."""
    total: Counter[str] = Counter()
    hist: Counter[int] = Counter()
    statuses: Counter[str] = Counter()
    examples: dict[str, str] = {}
    late = 0.0
    worst = 0.0
    for line in lines:
        for key in ("requests", "scheduled", "behind", *FAILURES, "ok"):
            total[key] += int(line.get(key, 0))
        hist.update({int(k): v for k, v in line.get("hist", {}).items()})
        statuses.update(line.get("statuses", {}))
        for cause, text in (line.get("examples") or {}).items():
            examples.setdefault(cause, text)
        late = max(late, float(line.get("late_ms_max", 0.0)))
        worst = max(worst, float(line.get("max_ms", 0.0)))
    return {
        **total,
        "failures": sum(total[k] for k in FAILURES),
        "statuses": dict(statuses),
        "examples": examples,
        "p50_ms": _load.quantile(dict(hist), 0.50),
        "p99_ms": _load.quantile(dict(hist), 0.99),
        "max_ms": worst,
        "late_ms_max": late,
    }


def describe_failures(load: dict[str, Any]) -> str:
    """``status_5xx 3 (503 x3: "HTTP/1.1 503 ...: 'body'"), reset 1 (...)`` or ``none``."""
    parts = []
    for cause in FAILURES:
        if not load[cause]:
            continue
        codes = ""
        if cause.startswith("status_"):
            codes = " ".join(
                f"{code} x{n}"
                for code, n in sorted(load["statuses"].items())
                if code[0] == cause[len("status_")]
            )
        example = load["examples"].get(cause, "")
        detail = "; ".join(x for x in (codes, example) if x)
        parts.append(f"{cause} {load[cause]}" + (f" ({detail})" if detail else ""))
    return ", ".join(parts) or "none"


def cpu_over(samples: list[dict[str, Any]], name: str) -> float | None:
    """CPU % of ``name`` from the first to the last of ``samples`` that have it."""
    having = [s for s in samples if name in s["procs"]]
    return cpu_percent(having[0], having[-1], name) if len(having) > 1 else None


def cpu_percent(before: dict[str, Any], after: dict[str, Any], name: str) -> float | None:
    a, b = before["procs"].get(name), after["procs"].get(name)
    seconds = after["t"] - before["t"]
    if a is None or b is None or seconds <= 0:
        return None
    return 100.0 * (b["cpu_ticks"] - a["cpu_ticks"]) / TICK / seconds


def system_percent(before: dict[str, Any], after: dict[str, Any]) -> float:
    busy = after["system"]["busy_ticks"] - before["system"]["busy_ticks"]
    total = after["system"]["total_ticks"] - before["system"]["total_ticks"]
    return 100.0 * (os.cpu_count() or 1) * busy / total if total else 0.0


def fit(points: list[tuple[float, float]]) -> tuple[float, float, float] | None:
    """Least squares y = a + b t over (t hours, y): (b per hour, residual std dev, window
    hours); None below `MIN_FIT_SAMPLES`."""
    n = len(points)
    if n < MIN_FIT_SAMPLES:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    slope = sum((t - mean_t) * (y - mean_y) for t, y in points) / sxx
    residuals = [y - (mean_y + slope * (t - mean_t)) for t, y in points]
    sd = math.sqrt(sum(r * r for r in residuals) / (n - 2))
    return slope, sd, points[-1][0] - points[0][0]


def judge(points: list[tuple[float, float]], floor: float, unit: str) -> tuple[str, str]:
    """(verdict, slope text) by the rule in bench/README.md ("soak.py"). A fit *rises* when
    its slope is above ``floor`` per hour AND its rise over its window exceeds twice the
    residual std dev. ``GROWS``: the fit over the window rises, and so does the fit over its
    second half (still growing at the end: a leak's signature); ``STEP``: the window's fit
    rises but its second half's does not (it grew, then held: a high-water mark after a
    burst, not a leak at this load); else ``flat``, with the smallest slope this run could
    have seen (``floor`` or 2 x std dev / window). A window shorter than `MIN_WINDOW_MIN`
    cannot tell a leak from warm-up: ``inconclusive`` (``rising`` if the fit rises)."""
    result = fit(points)
    if result is None:
        return "too few samples", "-"
    slope, sd, hours = result
    text = f"{slope:+.2f}{unit}/h"
    rises = slope > floor and slope * hours > 2 * sd
    if hours * 60 < MIN_WINDOW_MIN:
        return f"inconclusive ({hours * 60:.1f} min{', rising' if rises else ''})", text
    if rises:
        middle = points[0][0] + hours / 2
        late = fit([p for p in points if p[0] >= middle])
        if late is None:
            return "GROWS", text
        late_slope, late_sd, late_hours = late
        text += f", 2nd half {late_slope:+.2f}"
        if late_slope > floor and late_slope * late_hours > 2 * late_sd:
            return "GROWS", text
        return "STEP", text
    visible = max(floor, 2 * sd / hours)
    return f"flat (sees > {visible:.2g}{unit}/h)", text


# -- one data plane ------------------------------------------------------------------------
def print_row(
    plane: str,
    number: int,
    total: int,
    chunk: list[dict[str, Any]],
    seconds: float,
    before: dict[str, Any],
    after: dict[str, Any],
    history_before: int,
) -> dict[str, Any]:
    load = merge(chunk)
    failures = describe_failures(load)
    p50, p99 = load["p50_ms"], load["p99_ms"]
    latency = "-" if p50 is None else f"p50 {p50:.1f} p99 {p99:.1f} max {load['max_ms']:.0f} ms"
    print(
        f"[{plane} {number}/{total}] {load['requests'] / seconds:.1f} req/s"
        f" (due {load['scheduled'] / seconds:.1f}/s, late {load['behind']},"
        f" worst {load['late_ms_max']:.0f} ms)  requests {load['requests']}"
        f"  ok {load['ok']}  failures {load['failures']} ({failures})  {latency}",
        flush=True,
    )
    store = after["store"]
    new_events = store.get("top_rv", 0) - history_before
    minutes = seconds / 60
    print(
        f"  store {store['db_bytes'] / 1e6:.2f} MB + wal {store['wal_bytes'] / 1e6:.2f} MB;"
        f" events {store.get('events', '?')} rows (cap {HISTORY}),"
        f" +{new_events / minutes:.1f}/min;"
        f" logs {after['logs_bytes'] / 1e6:.2f} MB;"
        f" pods' files {after.get('pods_bytes', 0) / 1e6:.2f} MB;"
        f" machine CPU {system_percent(before, after):.0f}%",
        flush=True,
    )
    rows = [["process", "RSS MB", "fds", "CPU %"]]
    for name in sorted(after["procs"]):
        proc = after["procs"][name]
        cpu = cpu_percent(before, after, name)
        rows.append(
            [
                f"  {name}",
                f"{proc['rss_kb'] / 1024:.1f}",
                str(proc["fds"]),
                "-" if cpu is None else f"{cpu:.1f}",
            ]
        )
    print_table(rows)
    print(flush=True)
    return load


def follow(
    plane: str,
    args: argparse.Namespace,
    loads: list[LoadProcess],
    sampler: Sampler,
    started: float,
) -> list[dict[str, Any]]:
    """Until every generator has written its last line: a sample every ``--sample``
    seconds, and a row (`print_row`) as soon as every generator has written its line for
    the interval. The rows' load figures, in order."""
    row_before = sampler.take(time.monotonic() - started, "load")
    next_sample = time.monotonic() + args.sample
    done: set[int] = set()
    total_rows = math.ceil(args.minutes * 60 / args.interval)
    rows: list[dict[str, Any]] = []
    history_before = row_before["store"].get("top_rv", 0)
    while len(done) < len(loads):
        for number, lp in enumerate(loads):
            with contextlib.suppress(queue.Empty):
                while True:
                    line = lp.lines.get_nowait()
                    if line is None:  # its output ended
                        done.add(number)
                        break
                    lp.received.append(line)
                    if line.get("final"):
                        done.add(number)
        while len(rows) < min(len(lp.received) for lp in loads):
            printed = len(rows)
            chunk = [lp.received[printed] for lp in loads]
            now = time.monotonic()
            after = sampler.take(now - started, "load")
            seconds = chunk[0]["t"] - (loads[0].received[printed - 1]["t"] if printed else 0)
            load = print_row(
                plane, printed + 1, total_rows, chunk, seconds, row_before, after, history_before
            )
            rows.append({"t": after["t"], "seconds": seconds, **load})
            row_before = after
            history_before = after["store"].get("top_rv", history_before)
            next_sample = now + args.sample
        now = time.monotonic()
        if now >= next_sample:
            sampler.take(now - started, "load")
            next_sample += args.sample
        time.sleep(0.2)
    return rows


def run_plane(plane: str, args: argparse.Namespace, index: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"osm-soak-{plane}-", dir="/tmp"))
    os.chmod(base, 0o755)  # the pods' users read the generator and the sidecars' bootstraps
    prefix = f"osk{os.getpid() % 100000}{index}"
    settings = daemon.MeshSettings(
        base / "state", free_port(), free_port(), prefix, http_port=free_port()
    )
    result: dict[str, Any] = {"plane": plane, "prefix": prefix, "state_dir": str(base)}
    loads: list[LoadProcess] = []
    api: MeshApi | None = None
    try:
        print(f"== {plane}: osm up ({settings.state_dir}, prefix {prefix})", flush=True)
        daemon.up(settings, progress=lambda line: print(f"  {line}", flush=True))
        api = MeshApi(settings)
        namespaces, expected = NAMESPACES, len(DEPLOYMENTS)
        if args.observability:  # as `osm up` does: Prometheus and the trace store, as pods
            _, errors = cli_runtime.deploy_observability(api.api)
            if errors:
                raise SystemExit(f"the observability stack was not applied: {errors}")
            namespaces += (wellknown.CONTROL_PLANE_NAMESPACE,)
            expected += 2
        api.apply(demo_objects(plane, args.sampling))
        wait_ready(api, namespaces, expected, 180)
        pods = demo_pods(api, prefix, namespaces)
        result["pods"] = {p.deployment: p.netns for p in pods}
        python = pod_python(settings.state_dir)
        script = base / "_load.py"
        shutil.copyfile(ROOT / "bench" / "_load.py", script)
        os.chmod(script, 0o644)
        sampler = Sampler(settings.state_dir, pods)
        print(f"  demo ready; {args.idle:g} s of the demo alone (the baseline)", flush=True)
        started = time.monotonic()
        idle_first = sampler.take(0.0, "idle")
        while time.monotonic() - started < args.idle:
            time.sleep(min(args.sample, args.idle - (time.monotonic() - started)))
            sampler.take(time.monotonic() - started, "idle")
        idle_last = sampler.samples[-1]
        counters_before = failure_counters(pods)
        clients = [p for p in pods if p.deployment in CLIENTS]
        per_client = args.rate / len(clients)
        print(
            f"  load: {args.rate:g} req/s ({per_client:g} from each of"
            f" {', '.join(p.deployment for p in clients)}) for {args.minutes:g} min",
            flush=True,
        )
        load_started = time.monotonic()
        for pod in clients:
            loads.append(start_load(pod, python, script, per_client, args, base))
        sampler.loads = {lp.process.pid: lp.pod.deployment for lp in loads}
        offset = load_started - started
        rows = follow(plane, args, loads, sampler, started)
        for lp in loads:
            lp.process.wait(10)
            if lp.process.returncode not in (0, None):
                print(
                    f"  the generator in {lp.pod.deployment} exited {lp.process.returncode}:"
                    f" {lp.stderr_path.read_text(errors='replace')[-2000:]}",
                    flush=True,
                )
        result["failure_counters"] = counter_changes(counters_before, failure_counters(pods))
        result.update(
            samples=sampler.samples,
            lines={lp.pod.deployment: lp.received for lp in loads},
            rows=rows,
            pids_seen={k: sorted(v) for k, v in sampler.pids_seen.items()},
            idle=(idle_first, idle_last),
            load_offset=offset,
            pod_python=str(python),
        )
        result["summary"] = summarize(plane, args, result)
    finally:
        for lp in loads:
            lp.stop()
        if api is not None:
            with contextlib.suppress(Exception):
                api.api.close()
        daemon.down(settings.state_dir)
        if args.keep:
            print(f"  kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return result


# -- the verdicts --------------------------------------------------------------------------
def summarize(plane: str, args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    samples = result["samples"]
    idle_first, idle_last = result["idle"]
    offset = result["load_offset"]
    warm_until = offset + args.warmup * 60
    load_samples = [s for s in samples if s["phase"] == "load"]
    judged = [s for s in load_samples if s["t"] >= warm_until]
    all_lines = [line for lines in result["lines"].values() for line in lines]
    load = merge(all_lines)
    seconds = max((lines[-1]["t"] for lines in result["lines"].values() if lines), default=0)
    seconds = seconds or args.minutes * 60
    first_load, last_load = load_samples[0], load_samples[-1]
    print(f"\n== {plane}: {args.minutes:g} min at {args.rate:g} req/s (due), after")
    print(
        f"   {args.idle:g} s of the demo alone (the baseline); fits over the samples after"
        f" {args.warmup:g} min of warm-up ({len(judged)} samples)\n"
    )
    rows = [
        [
            "process",
            "RSS MB idle",
            "warm",
            "end",
            "slope",
            "RSS verdict",
            "fds idle",
            "end",
            "slope",
            "fds verdict",
            "CPU % idle",
            "load",
            "pids",
        ]
    ]
    verdicts: dict[str, Any] = {}
    names = sorted({n for s in load_samples for n in s["procs"]})
    for name in names:

        def series(key: str, scale: float, name: str = name) -> list[tuple[float, float]]:
            return [
                (s["t"] / 3600, s["procs"][name][key] / scale) for s in judged if name in s["procs"]
            ]

        rss_verdict, rss_slope = judge(series("rss_kb", 1024), FLOORS["rss_mb"], " MB")
        fd_verdict, fd_slope = judge(series("fds", 1), FLOORS["fds"], "")

        def value(sample: dict[str, Any], key: str, scale: float, name: str = name) -> str:
            proc = sample["procs"].get(name)
            return "-" if proc is None else f"{proc[key] / scale:.1f}".removesuffix(".0")

        idle_cpu = cpu_percent(idle_first, idle_last, name)
        load_cpu = cpu_over(load_samples, name)
        rows.append(
            [
                name,
                value(idle_last, "rss_kb", 1024),
                value(judged[0] if judged else first_load, "rss_kb", 1024),
                value(last_load, "rss_kb", 1024),
                rss_slope,
                rss_verdict,
                value(idle_last, "fds", 1),
                value(last_load, "fds", 1),
                fd_slope,
                fd_verdict,
                "-" if idle_cpu is None else f"{idle_cpu:.1f}",
                "-" if load_cpu is None else f"{load_cpu:.1f}",
                str(len(result["pids_seen"].get(name, ()))),
            ]
        )
        verdicts[name] = {
            "rss": rss_verdict,
            "rss_slope": rss_slope,
            "fds": fd_verdict,
            "fds_slope": fd_slope,
            "cpu_idle": idle_cpu,
            "cpu_load": load_cpu,
        }
    print_table(rows)
    # the load
    achieved = load["requests"] / seconds
    print(
        f"\nload: {load['requests']} requests decided, {achieved:.1f}/s"
        f" ({load['scheduled']} due: {load['scheduled'] / seconds:.1f}/s);"
        f" p50 {fmt_ms(load['p50_ms'])} p99 {fmt_ms(load['p99_ms'])} max {load['max_ms']:.0f} ms;"
        f" baseline: the generators' own figures, and the idle columns above"
    )
    by_cause = describe_failures(load)
    goal = "met" if load["failures"] == 0 else "MISSED"
    print(f"verdict: failures {load['failures']} ({by_cause}) (goal 0): {goal}")
    changed = result.get("failure_counters") or {}
    if changed:
        print("  failure counters that moved under load (sidecar /stats; kernel TcpExt):")
        for deployment, moved in sorted(changed.items()):
            top = sorted(moved.items(), key=lambda kv: -abs(kv[1]))[:8]
            print(f"    {deployment}: " + ", ".join(f"{k} +{v}" for k, v in top))
    else:
        print("  no sidecar failure counter and no kernel listen-queue counter moved under load")
    behind = load["behind"]
    late_share = behind / load["scheduled"] if load["scheduled"] else 0.0
    generator = ("kept the schedule" if late_share < LATE_SHARE else "FELL BEHIND") + (
        f": {behind} requests ({100 * late_share:.2f}%) issued"
        f" > {_load.LATE_S * 1000:.0f} ms after due, timed from due"
    )
    print(
        f"verdict: rate {achieved:.1f}/s of {args.rate:g}/s due"
        f" ({100 * achieved / args.rate:.1f}%); the generators {generator}"
        f" (worst {load['late_ms_max']:.0f} ms)"
    )
    cpu_share = system_percent(first_load, last_load)
    mesh = sorted(((v["cpu_load"] or 0.0, k) for k, v in verdicts.items()), reverse=True)
    ours = sum(c for c, _ in mesh)
    top = ", ".join(f"{k} {c:.0f}%" for c, k in mesh[:6])
    print(
        f"CPU under load: machine {cpu_share:.0f}% of {100 * (os.cpu_count() or 1)}%,"
        f" these processes {ours:.0f}% (the rest is other work on the machine); top: {top}"
    )
    for figure in ("rss", "fds"):
        by_verdict: dict[str, list[str]] = {}
        for name, v in verdicts.items():
            if name == "bench":
                continue
            word = v[figure].split(" (")[0]
            named = word in ("GROWS", "STEP") or "rising" in v[figure]
            by_verdict.setdefault(word, [])
            if named:
                by_verdict[word].append(f"{name} {v[figure + '_slope']}")
        counts = Counter(v[figure].split(" (")[0] for n, v in verdicts.items() if n != "bench")
        text = " | ".join(
            f"{word} {counts[word]}"
            + (
                f" ({'rising: ' if word == 'inconclusive' else ''}{'; '.join(names)})"
                if names
                else ""
            )
            for word, names in sorted(by_verdict.items())
        )
        print(f"verdict: {'RSS' if figure == 'rss' else 'fds'} per process: {text}")
    # the store
    store_verdict = judge_store(
        plane, args, samples, idle_first, idle_last, first_load, last_load, judged
    )
    print()
    return {"load": load, "achieved_rps": achieved, "processes": verdicts, "store": store_verdict}


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def judge_store(
    plane: str,
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
    idle_first: dict[str, Any],
    idle_last: dict[str, Any],
    first_load: dict[str, Any],
    last_load: dict[str, Any],
    judged: list[dict[str, Any]],
) -> dict[str, Any]:
    def rate(a: dict[str, Any], b: dict[str, Any]) -> float:
        minutes = (b["t"] - a["t"]) / 60
        return (
            (b["store"].get("top_rv", 0) - a["store"].get("top_rv", 0)) / minutes
            if minutes
            else 0.0
        )

    idle_rate = rate(idle_first, idle_last)
    steady = judged or [first_load, last_load]
    load_rate = rate(steady[0], steady[-1])
    writers: Counter[str] = Counter()
    for sample in samples:
        if sample["t"] < steady[0]["t"] or sample is steady[0]:
            continue
        for new in sample["store"].get("new") or ():
            writers[f"{new['kind']} {new['object']} {new['type']}"] += new["count"]
    end = last_load["store"]
    rows = end.get("events", 0)
    mean_row = end.get("event_body_bytes", 0) / rows if rows else 0
    size = (end["db_bytes"] + end["wal_bytes"]) / 1e6
    sizes = [
        (s["t"] / 3600, (s["store"]["db_bytes"] + s["store"]["wal_bytes"]) / 1e6) for s in steady
    ]
    size_verdict, size_slope = judge(sizes, FLOORS["rss_mb"], " MB")
    print(
        f"store: {size:.2f} MB (db {end['db_bytes'] / 1e6:.2f} + wal {end['wal_bytes'] / 1e6:.2f}),"
        f" size {size_verdict} ({size_slope}); events table {rows} rows, capped at {HISTORY}"
    )
    print(
        f"store writes: {load_rate:.1f} events/min at steady state under load,"
        f" {idle_rate:.1f}/min with the demo alone (the baseline)"
    )
    if writers:
        top = ", ".join(f"{k} x{c}" for k, c in writers.most_common(6))
        print(f"  who writes at steady state: {top}")
    if load_rate > 0:
        hours = (HISTORY - rows) / load_rate / 60 if rows < HISTORY else 0.0
        bound = HISTORY * mean_row / 1e6
        print(
            f"verdict: store bounded: the events table reaches its cap of {HISTORY} after"
            f" ~{hours:.0f} h at this rate, then holds ~{bound:.0f} MB of event bodies"
            f" ({mean_row:.0f} B each); objects do not grow"
        )
    else:
        print("verdict: store bounded: nothing writes at steady state")
    disk = {}
    for key, what in (("logs_bytes", "logs"), ("pods_bytes", "pods' files (volumes)")):
        points = [(s["t"] / 3600, s.get(key, 0) / 1e6) for s in steady]
        verdict, slope = judge(points, FLOORS["rss_mb"], " MB")
        disk[key] = {"verdict": verdict, "slope": slope}
        print(
            f"verdict: {what}: {last_load.get(key, 0) / 1e6:.2f} MB at the end, {verdict} ({slope})"
        )
    print("  (container logs are appended to, never rotated: their slope is disk per hour)")
    return {
        "idle_events_per_min": idle_rate,
        "load_events_per_min": load_rate,
        "writers": dict(writers),
        "events": rows,
        "history": HISTORY,
        "size_mb": size,
        "size_verdict": size_verdict,
        "size_slope": size_slope,
        "disk": disk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--plane",
        default="envoy",
        choices=[*PLANES, "both"],
        help="data plane of every pod (both: envoy, then python; one mesh each;"
        " default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="requests/s in total, open loop (default %(default)g)",
    )
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="load per plane (default %(default)g)"
    )
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds between rows (default %(default)g)"
    )
    parser.add_argument(
        "--sample", type=float, default=10.0, help="seconds between samples (default %(default)g)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="minutes not fitted (default: a quarter of the run, at most 5)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=30.0,
        help="seconds of the demo alone first (default %(default)g)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=demo_client.Settings.timeout,
        help="seconds per request (default %(default)g)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="connections per generator, at most (default %(default)d)",
    )
    parser.add_argument("--json", type=Path, help="save the raw samples and lines here")
    parser.add_argument("--keep", action="store_true", help="keep the state dirs (logs)")
    parser.add_argument(
        "--sampling",
        type=float,
        help="the MeshConfig's tracing samplingPercentage (default: the demo's, 100)",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="also deploy Prometheus and the trace store, as `osm up` does (the demo's"
        " MeshConfig traces 100%% of requests to it; without it spans go nowhere)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, iptables)")
    if args.warmup is None:
        args.warmup = min(5.0, args.minutes / 4)
    args.sample = min(args.sample, args.interval)
    planes = ["envoy", "python"] if args.plane == "both" else [args.plane]

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    results = []
    try:
        for index, plane in enumerate(planes):
            results.append(run_plane(plane, args, index))
    except KeyboardInterrupt as stopped:
        raise SystemExit(f"interrupted ({stopped or 'Ctrl-C'}); the meshes are down") from None
    finally:
        if args.json and results:
            args.json.write_text(
                json.dumps(
                    {"args": vars(args) | {"json": str(args.json)}, "planes": results}, default=str
                )
            )
            print(f"raw samples: {args.json}")
    if len(results) > 1:
        print("== the data planes side by side")
        rows = [["plane", "req/s", "failures", "p50 ms", "p99 ms", "store events/min"]]
        for r in results:
            s = r["summary"]
            rows.append(
                [
                    r["plane"],
                    f"{s['achieved_rps']:.1f}",
                    str(s["load"]["failures"]),
                    fmt_ms(s["load"]["p50_ms"]),
                    fmt_ms(s["load"]["p99_ms"]),
                    f"{s['store']['load_events_per_min']:.1f}",
                ]
            )
        print_table(rows)


if __name__ == "__main__":
    main()
