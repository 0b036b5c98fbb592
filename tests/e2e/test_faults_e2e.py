"""Faults under load, end to end (root): kill -9 of each part of a running mesh, and a full
disk under its store, while the demo clients buy at `RATE` requests per second each.

The module runs once per data plane (`PLANES`: Envoy everywhere, the Python sidecar
everywhere). One mesh per run, its state dir on a size-limited tmpfs that this module
mounts (so that the disk test can fill it); tests run in file order, each starting from
a healthy demo. What a fault cost is read from the clients' own counters (fetched in
their pods over loopback, as test_mesh_e2e does) and printed as one ``FAULT`` line per
test with the plane and the measured numbers. The contracts are in the tests' names:

- the API server (= the controller) killed and restarted: no failed request, nothing
  stored lost (every object listed before, at the same resourceVersion);
- the kubelet (the runtime) killed and restarted: no failed request, the same pods (uid,
  IP), Ready throughout (it adopts them);
- a sidecar, or an app container, killed: restarted with backoff, its pod Ready again
  within `READY_AGAIN` seconds; failures only while it was down, and only of requests
  routed to it;
- everything killed (controller, runtime, every process in the mesh's namespaces) and
  ``osm up`` again: the demo back within `RECOVERY` seconds, nothing orphaned;
- the store's filesystem full: writes refused with 507 InsufficientStorage, reads and
  traffic unharmed; once space is back, writes succeed and the database is intact.

On a failure, the state dir's logs are copied to /tmp/faults-logs-<prefix>-<plane> (the
state dir goes with the tmpfs).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from osm.base import wellknown
from osm.cli import apply as cli_apply
from osm.cli import runtime as cli_runtime
from osm.cli.client import Api
from osm.demo.bookstore import counters
from osm.kube.errors import ApiError, KubeError
from osm.model import kinds
from osm.runtime import daemon, network, record, sidecar_env
from tests.e2e import demo, hostutil
from tests.e2e.demo import Mesh, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, tmpfs)"),
    pytest.mark.timeout(240),  # a hang; a test takes 10-20 s, the first one 40 s with osm up
]

PREFIX = f"osmf{uuid.uuid4().hex[:5]}"
RATE = 50
"""Requests per second of each client (bookbuyer, bookthief)."""
TMPFS_SIZE = "128m"
"""The state dir's filesystem: room for the store and a few minutes of logs at `RATE`."""
READY_AGAIN = 5.0
"""Seconds from a container's kill to its pod Ready again (with its restart counted)."""
RECOVERY = 60.0
"""Seconds from ``osm up`` after a whole-tree kill to every pod Ready and clients served."""
SETTLE = 2.0
"""Seconds after Ready for the clients' sidecars to route to the pod again."""
CLIENTS = ("bookbuyer", "bookthief")
DEMO_PODS = 5
SIDECARS = (wellknown.ENVOY_CONTAINER_NAME, wellknown.PYTHON_SIDECAR_CONTAINER_NAME)

PLANES: dict[str, dict[str, str]] = {
    # deployment -> data plane (absent: Envoy, the injector's default)
    "envoy": {},
    "python": {
        name: "python"
        for name in ("bookbuyer", "bookthief", "bookstore-v1", "bookstore-v2", "bookwarehouse")
    },
}


def at_rate(objects: list[dict[str, Any]]) -> None:
    """The clients' Deployments call at `RATE` requests per second."""
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] in CLIENTS:
            for container in obj["spec"]["template"]["spec"]["containers"]:
                env = [e for e in container.get("env", []) if e["name"] != "RATE"]
                container["env"] = [*env, {"name": "RATE", "value": str(RATE)}]


@pytest.fixture(scope="module", params=sorted(PLANES))
def mesh(request: pytest.FixtureRequest) -> Iterator[Mesh]:
    # Not under pytest's tmp dir (mode 0700): the sidecars (UID 1500) read their bootstrap.
    base = Path(f"/tmp/{PREFIX}")
    base.mkdir(mode=0o755)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(base)]
    subprocess.run(mount, check=True, timeout=10)
    failed_before = request.session.testsfailed
    choose = demo.choose_planes(PLANES[request.param])

    def edit(objects: list[dict[str, Any]]) -> None:
        choose(objects)
        at_rate(objects)

    try:
        with demo.running(base / "state", PREFIX, request.param, edit) as running:
            try:
                yield running
            finally:
                (base / FILLER).unlink(missing_ok=True)  # should the disk test stop midway
                keep_flaky_start(running)
                if request.session.testsfailed > failed_before:
                    keep_logs(running, Path(f"/tmp/faults-logs-{PREFIX}-{request.param}"))
    finally:
        subprocess.run(["umount", str(base)], check=False, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def keep_logs(mesh: Mesh, where: Path) -> None:
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(mesh.settings.state_dir / "logs", where, dirs_exist_ok=True)
    print(f"logs of the failed run kept in {where}")


FLAKY_WORDS = ("protocol error", "protocol_error")


def keep_flaky_start(mesh: Mesh) -> None:
    """The known flaky start (an Envoy's first ADS stream broken by an HTTP/2 protocol
    error): its controller log and Envoy logs, kept in /tmp/flaky-<time>."""
    logs = mesh.settings.state_dir / "logs"
    hit = [
        log
        for log in logs.glob(f"*/*/{wellknown.ENVOY_CONTAINER_NAME}.log")
        if any(w in log.read_text(errors="replace").lower() for w in FLAKY_WORDS)
    ]
    if hit:
        where = Path(f"/tmp/flaky-{time.strftime('%Y%m%dT%H%M%S')}-{PREFIX}")
        where.mkdir(parents=True)
        shutil.copy(logs / "controller.log", where)
        for log in hit:
            shutil.copy(log, where / f"{log.parent.name}-{log.name}")
        print(f"FLAKY: an Envoy saw an HTTP/2 protocol error; logs kept in {where}")


# -- what the tests read --------------------------------------------------------------------
def evidence(mesh: Mesh, tail: int = 25) -> str:
    """What a failed assertion shows: the pods not Ready (their logs), and the last lines
    of the controller's and the runtime's logs (without their HTTP request lines)."""
    parts = []
    try:
        parts.append(demo.unready_pods(mesh, tail, runtime_log=False))
    except KubeError as error:
        parts.append(f"(pods unreadable: {error})")
    for name in ("controller", "runtime"):
        log = mesh.settings.state_dir / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            lines = log.read_text(errors="replace").splitlines()
            lines = [line for line in lines if "HTTP Request:" not in line]
            parts.append(f"--- {name}.log (no HTTP request lines)\n" + "\n".join(lines[-tail:]))
    return "\n".join(parts)


def healthy(mesh: Mesh, timeout: float = 60) -> None:
    """Every demo pod Ready, running (its namespace there) and both clients served: where
    each test starts, and what a recovery waits for."""
    pods = f"{DEMO_PODS} ready demo pods"
    wait_for(lambda: running_pods(mesh) == DEMO_PODS, timeout, pods, lambda: evidence(mesh))
    wait_for(lambda: served(mesh), 30, "both clients to be served", lambda: evidence(mesh))


def running_pods(mesh: Mesh) -> int:
    """Ready demo pods whose network namespace exists (after a crash, the API may still
    say Ready of a pod that no longer runs)."""
    try:
        ready = cli_runtime.ready_pods(mesh.api.api, demo.NAMESPACES)
    except KubeError:
        return 0
    return sum(
        (record.NETNS_DIR / p["metadata"]["annotations"][wellknown.NETNS_ANNOTATION]).exists()
        for p in ready
    )


def served(mesh: Mesh) -> bool:
    """Both clients got answers in the last second."""
    try:
        counted = demo.counted(mesh.sample, 1.0)
    except (KubeError, OSError, RuntimeError):
        return False  # a pod's namespace went away meanwhile, say
    return all(counted.get(name, counters.ClientCounters(name)).ok > 0 for name in CLIENTS)


def clients(mesh: Mesh) -> dict[str, counters.ClientCounters]:
    sample = {c.identity: c for c in mesh.sample().clients}
    assert set(CLIENTS) <= set(sample), f"clients' counters unreadable: {sample}"
    return sample


def since(
    before: Mapping[str, counters.ClientCounters], after: Mapping[str, counters.ClientCounters]
) -> dict[str, counters.ClientCounters]:
    """Each client's counts between two samples of the same client processes."""
    result = {}
    for name in CLIENTS:
        old, new = before[name], after[name]
        assert name not in restarted(before, after), f"{name} was restarted, its counts with it"
        result[name] = counters.ClientCounters(
            name,
            requests=new.requests - old.requests,
            ok=new.ok - old.ok,
            denied=new.denied - old.denied,
            errors=new.errors - old.errors,
            by_identity={k: v - old.by_identity.get(k, 0) for k, v in new.by_identity.items()},
        )
    return result


def restarted(
    before: Mapping[str, counters.ClientCounters], after: Mapping[str, counters.ClientCounters]
) -> list[str]:
    """The clients whose counters went back between two samples: new processes."""
    return [n for n in CLIENTS if after[n].requests < before[n].requests]


def failed(counted: Mapping[str, counters.ClientCounters]) -> dict[str, int]:
    return {name: c.errors + c.denied for name, c in counted.items()}


def report(mesh: Mesh, fault: str, **measured: object) -> None:
    """One line the lead quotes: the fault, the plane and what was measured."""
    fields = " ".join(f"{k}={v}" for k, v in measured.items())
    print(f"\nFAULT plane={mesh.plane} fault={fault} rate={RATE}/s/client {fields}")


def restart_ready(mesh: Mesh) -> None:
    """Makes the pods' interpreter current before a kill, so that the ``osm up`` after it
    restarts daemons and nothing else: ``osm up`` first ensures /opt/osm/venv, which an
    ``osm up`` from another checkout may have switched to its build meanwhile (switching
    back, or building, takes up to a minute that a restart's measure must not include)."""
    sidecar_env.ensure(mesh.settings.pod_python, progress=print)


def demo_pods(api: Api) -> dict[str, dict[str, Any]]:
    """The demo's pods by name: uid, IP, Ready, restarts per container."""
    result = {}
    for namespace in demo.NAMESPACES:
        for pod in api.list("Pod", namespace=namespace)[0]:
            status = pod.get("status") or {}
            conditions = status.get("conditions") or []
            result[pod["metadata"]["name"]] = {
                "uid": pod["metadata"]["uid"],
                "ip": status.get("podIP"),
                "ready": any(
                    c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
                ),
                "restarts": {
                    c["name"]: c.get("restartCount", 0)
                    for c in status.get("containerStatuses") or []
                },
            }
    return result


def bookstore_v1(mesh: Mesh) -> dict[str, Any]:
    (pod,) = (
        p
        for p in mesh.api.items("Pod", "bookstore")
        if p["metadata"].get("labels", {}).get("version") == "v1"
    )
    return pod


def journaled_processes(state_dir: Path) -> list[Mapping[str, Any]]:
    """The runtime journal's live processes that still run: pid, start_time, netns, name."""
    journal = state_dir / "runtime" / record.JOURNAL
    live: dict[str, Mapping[str, Any]] = {}
    for line in journal.read_text().splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if item["kind"] == record.PROCESS and item["op"] == "create":
                live[item["key"]] = item["data"]
            elif item["kind"] == record.PROCESS:
                live.pop(item["key"], None)
    return [
        d for d in live.values() if record.process_start_time(int(d["pid"])) == int(d["start_time"])
    ]


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def container_pid(mesh: Mesh, netns: str, container: str) -> int:
    """The pid of ``container``'s process in the pod of ``netns``: the process the journal
    names (the launcher execs), or under a shim that the journal names, the shim's child."""
    found = [
        int(d["pid"])
        for d in journaled_processes(mesh.settings.state_dir)
        if d["netns"] == netns and d["name"] == container
    ]
    assert len(found) == 1, f"{container} in {netns}: the journal names {found}"
    pid = found[0]
    while under := children(pid):
        assert len(under) == 1, f"{container}: {pid} has children {under}"
        pid = under[0]
    return pid


def stored_objects(api: Api) -> dict[tuple[str, str, str], str]:
    """Every object the API lists, of every kind it serves: its resourceVersion."""
    result = {}
    for info in kinds.KINDS:
        try:
            items, _ = api.list(info.kind)
        except ApiError:
            continue  # a kind this API does not list
        for item in items:
            meta = item["metadata"]
            key = (info.kind, meta.get("namespace", ""), meta["name"])
            result[key] = meta["resourceVersion"]
    return result


def configmap(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bookstore"},
        "data": dict(data),
    }


# -- the faults, in order --------------------------------------------------------------------
def test_the_api_server_killed_under_load_fails_no_request_and_loses_nothing_stored(
    mesh: Mesh,
) -> None:
    healthy(mesh)
    # The last write before the kill was acknowledged: it must be there after.
    mesh.api.apply([configmap("faults-last-write", {"at": str(time.time())})])
    stored = stored_objects(mesh.api.api)
    restart_ready(mesh)
    before = clients(mesh)
    pid = daemon.controller(mesh.settings.state_dir).pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(2)  # the sidecars keep their last configuration meanwhile
    started = time.monotonic()
    daemon.up(mesh.settings)
    restarted = time.monotonic() - started
    time.sleep(SETTLE)
    counted = since(before, clients(mesh))
    now = stored_objects(mesh.api.api)
    lost = {k: (rv, now.get(k)) for k, rv in stored.items() if now.get(k) != rv}
    report(
        mesh,
        "kill-9-api-server",
        failed=failed(counted),
        requests={n: c.requests for n, c in counted.items()},
        restart_s=f"{restarted:.1f}",
        objects=len(stored),
        lost_or_changed=len(lost),
    )
    assert set(failed(counted).values()) == {0}, (counted, demo.failure_counters(mesh))
    assert all(c.ok > RATE for c in counted.values()), counted
    assert lost == {}, f"objects lost or changed: {lost}\n{evidence(mesh)}"


def test_a_sidecar_killed_restarts_ready_again_within_seconds_failing_only_its_requests(
    mesh: Mesh,
) -> None:
    pod = bookstore_v1(mesh)
    sidecar = next(c["name"] for c in pod["spec"]["containers"] if c["name"] in SIDECARS)
    container_killed(mesh, sidecar)


def test_an_app_container_killed_restarts_ready_again_within_seconds_failing_only_its_requests(
    mesh: Mesh,
) -> None:
    container_killed(mesh, "bookstore")


def container_killed(mesh: Mesh, container: str, when: str = "") -> None:
    """kill -9 of ``container`` in bookstore-v1's pod: the pod is Ready again (the container
    restarted) within `READY_AGAIN` s; the clients' failures stop once it is, and are no
    more than the requests the split sent to v1 meanwhile."""
    healthy(mesh)
    pod = bookstore_v1(mesh)
    name = pod["metadata"]["name"]
    netns = pod["metadata"]["annotations"][wellknown.NETNS_ANNOTATION]
    restarts = demo_pods(mesh.api.api)[name]["restarts"][container]
    pid = container_pid(mesh, netns, container)
    before = clients(mesh)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    saw_unready = False
    ready_again: float | None = None
    while time.monotonic() - killed < READY_AGAIN + 25:
        now = demo_pods(mesh.api.api)[name]
        saw_unready = saw_unready or not now["ready"]
        if now["ready"] and now["restarts"][container] > restarts:
            ready_again = time.monotonic() - killed
            break
        time.sleep(0.05)
    time.sleep(SETTLE)
    settled = clients(mesh)
    window = since(before, settled)
    time.sleep(5)
    later = since(settled, clients(mesh))
    v1_share = {n: c.by_identity.get("bookstore-v1", 0) for n, c in window.items()}
    report(
        mesh,
        f"{when}kill-9-{container}-of-bookstore-v1",
        ready_again_s="never" if ready_again is None else f"{ready_again:.2f}",
        saw_not_ready=saw_unready,
        failed_in_window=failed(window),
        requests_in_window={n: c.requests for n, c in window.items()},
        served_by_v1_in_window=v1_share,
        failed_after=failed(later),
    )
    assert ready_again is not None and ready_again <= READY_AGAIN, (ready_again, evidence(mesh))
    assert set(failed(later).values()) == {0}, (later, demo.failure_counters(mesh))
    for client, counted in window.items():
        # What the split sent to v1 in the window: its failures plus what v1 served. A
        # 50/50 split sends half the requests there, give or take 4 standard deviations.
        half = counted.requests / 2
        bound = half + 4 * (counted.requests / 4) ** 0.5 + 2
        assert counted.errors <= bound, (client, counted, bound)
        assert counted.by_identity.get("bookstore-v2", 0) > 0, (client, counted)


# -- full disk -----------------------------------------------------------------------------
FILLER = "filler"
"""A file on the state dir's tmpfs (outside the state dir) that fills it."""
DB = "store.db"
"""The store's SQLite file in the state dir (`osm.controller.server`'s default URL)."""


def fill(path: Path) -> int:
    """Writes ``path`` until its filesystem has no byte left; the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    count = os.write(fd, block)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
                written += count
                if count < chunk:
                    break
    finally:
        os.close(fd)
    return written


def refusal(api: Api, obj: Mapping[str, Any]) -> tuple[int, str, str] | None:
    """How the API refused writing ``obj`` (code, reason, message); None if it wrote it."""
    try:
        cli_apply.apply_one(api, dict(obj))
    except ApiError as error:
        return error.code, error.reason, error.message
    return None


def test_a_full_disk_refuses_writes_with_507_keeps_reads_and_traffic_then_writes_again(
    mesh: Mesh,
) -> None:
    healthy(mesh)
    state_dir = mesh.settings.state_dir
    filler = state_dir.parent / FILLER
    split = mesh.api.get("TrafficSplit", "bookstore", "bookstore-split")
    changed_split = {
        "apiVersion": split["apiVersion"],
        "kind": "TrafficSplit",
        "metadata": {"name": "bookstore-split", "namespace": "bookstore"},
        "spec": {**split["spec"], "backends": [{"service": "bookstore-v1", "weight": 100}]},
    }
    note = configmap("faults-full-disk", {"written": "after the disk was full"})
    before = clients(mesh)
    filled = fill(filler)
    try:
        assert os.statvfs(filler).f_bavail == 0
        refused = {
            "ConfigMap": refusal(mesh.api.api, note),
            "TrafficSplit": refusal(mesh.api.api, changed_split),
        }
        half_written = _exists(mesh.api.api, note)
        reads = {
            "pods": len(mesh.api.items("Pod")),
            "split": mesh.api.get("TrafficSplit", "bookstore", "bookstore-split")["spec"],
        }
        time.sleep(5)  # traffic under a full disk
        during = since(before, clients(mesh))
    finally:
        filler.unlink()
    written_after = refusal(mesh.api.api, note)
    integrity = _integrity(state_dir / DB)
    report(
        mesh,
        "full-disk",
        filler_mb=filled >> 20,
        refused={k: (v[0], v[1]) if v else "written" for k, v in refused.items()},
        failed=failed(during),
        requests={n: c.requests for n, c in during.items()},
        write_after_freeing="ok" if written_after is None else written_after[:2],
        integrity=integrity,
    )
    messages = "\n".join(f"{k}: {v}" for k, v in refused.items())
    for kind, outcome in refused.items():
        assert outcome is not None and outcome[:2] == (507, "InsufficientStorage"), (
            f"{kind}: {outcome}\n{messages}\n{evidence(mesh)}"
        )
        assert "full" in outcome[2] and str(state_dir / DB) in outcome[2], outcome
    assert not half_written, "a refused ConfigMap is visible"
    assert reads["pods"] >= DEMO_PODS and reads["split"] == split["spec"], reads
    assert set(failed(during).values()) == {0}, (during, demo.failure_counters(mesh))
    assert all(c.ok > RATE for c in during.values()), during
    assert written_after is None, f"{written_after}\n{evidence(mesh)}"
    assert integrity == "ok"
    mesh.api.delete([note])


def _exists(api: Api, obj: Mapping[str, Any]) -> bool:
    meta = obj["metadata"]
    try:
        api.get(obj["kind"], meta["namespace"], meta["name"])
    except ApiError as error:
        if error.code == 404:
            return False
        raise
    return True


def _integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(r[0]) for r in rows)


# -- the runtime, then everything ----------------------------------------------------------
class PodWatch:
    """Lists the demo's pods every 0.1 s in a thread (its own connection), keeping each
    listing that differs from ``expected`` (other pods, uids or IPs, or one not Ready)."""

    def __init__(self, kubeconfig: Path, expected: Mapping[str, Mapping[str, Any]]) -> None:
        self.kubeconfig = kubeconfig
        self.expected = {n: (p["uid"], p["ip"], True) for n, p in expected.items()}
        self.differences: list[tuple[float, dict[str, Any]]] = []
        self.unanswered = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with Api.connect(self.kubeconfig) as api:
            while not self._stop.wait(0.1):
                try:
                    pods = demo_pods(api)
                except KubeError:
                    self.unanswered += 1
                    continue
                seen = {n: (p["uid"], p["ip"], p["ready"]) for n, p in pods.items()}
                if seen != self.expected:
                    self.differences.append((time.monotonic() - self.started, seen))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_the_kubelet_killed_under_load_keeps_its_pods_ready_with_their_ips_failing_nothing(
    mesh: Mesh,
) -> None:
    healthy(mesh)
    pods = demo_pods(mesh.api.api)
    restart_ready(mesh)
    before = clients(mesh)
    pid = daemon.runtime(mesh.settings.state_dir).pid()
    assert pid is not None
    watch = PodWatch(mesh.settings.kubeconfig, pods)
    try:
        os.kill(pid, signal.SIGKILL)
        time.sleep(2)  # the pods run on without their kubelet meanwhile
        started = time.monotonic()
        daemon.up(mesh.settings)
        restarted_in = time.monotonic() - started
        healthy(mesh)
        all_ready = time.monotonic() - started
        time.sleep(3)
    finally:
        watch.stop()
    after = demo_pods(mesh.api.api)
    now = clients(mesh)
    again = restarted(before, now)
    counted = None if again else since(before, now)
    changed = {
        n: (p["uid"], p["ip"], (after.get(n) or {}).get("uid"), (after.get(n) or {}).get("ip"))
        for n, p in pods.items()
        if (after.get(n) or {}).get("uid") != p["uid"] or (after.get(n) or {}).get("ip") != p["ip"]
    }
    container_restarts = {n: p["restarts"] for n, p in after.items()}
    report(
        mesh,
        "kill-9-kubelet",
        failed=f"unknown: clients {again} restarted, their counters with them"
        if counted is None
        else failed(counted),
        pods_changed=changed or "none",
        pod_listings_not_as_before=len(watch.differences),
        first_difference_at_s=f"{watch.differences[0][0]:.1f}" if watch.differences else "-",
        up_s=f"{restarted_in:.1f}",
        all_ready_s=f"{all_ready:.1f}",
    )
    print(f"first listings not as before: {watch.differences[:2]}")
    print(f"container restarts after: {container_restarts}")
    assert again == [], f"clients {again} restarted (their pods were recreated)"
    assert changed == {}, changed
    assert watch.differences == [], watch.differences[:3]
    assert counted is not None and set(failed(counted).values()) == {0}, counted


def test_after_the_kubelet_restart_a_container_killed_is_restarted_as_before(mesh: Mesh) -> None:
    """The restarted kubelet supervises the pods it found running (adopted, by contract)."""
    container_killed(mesh, "bookstore", "after-kubelet-restart-")


def mesh_processes(mesh: Mesh) -> dict[int, str]:
    """Every running process of the run's pods: in one of its network namespaces, or
    journaled by its runtime (a container's shim, say), or a descendant of one: pid ->
    where. Zombies (dead, not yet reaped) are not running."""
    found = {}
    for netns in hostutil.netns_named(mesh.settings.prefix):
        for word in hostutil.output("ip", "netns", "pids", netns).split():
            found[int(word)] = netns
    with contextlib.suppress(OSError):
        for entry in journaled_processes(mesh.settings.state_dir):
            for pid in (int(entry["pid"]), *descendants(int(entry["pid"]))):
                found.setdefault(pid, f"journal: {entry['name']} in {entry['netns']}")
    return {pid: where for pid, where in found.items() if running(pid)}


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def orphans(mesh: Mesh) -> list[str]:
    """Processes in the run's namespaces that its runtime's journal does not account for
    (neither a journaled process nor one's descendant): what a crash left running."""
    accounted = set()
    for entry in journaled_processes(mesh.settings.state_dir):
        accounted |= {int(entry["pid"]), *descendants(int(entry["pid"]))}
    return [
        f"{pid} in {netns}: {hostutil.output('ps', '-o', 'args=', '-p', str(pid))[:80]}"
        for pid, netns in mesh_processes(mesh).items()
        if pid not in accounted
    ]


def sandbox_mounts(state_dir: Path) -> list[str]:
    """Mount points under the state dir (the pods' sandboxes), as the host sees them."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return sorted(line.split()[4] for line in lines if line.split()[4].startswith(f"{state_dir}/"))


def mesh_netns_state(prefix: str) -> dict[str, str]:
    """The mesh namespace's links and iptables rules (the pods' veths and the mesh's own)."""
    netns = network.mesh_netns(prefix)
    links = hostutil.output("ip", "-n", netns, "-o", "link", "show")
    rules = hostutil.output("ip", "netns", "exec", netns, "iptables-save")
    return {
        "links": str(len(links.splitlines())),
        "iptables": "\n".join(line for line in rules.splitlines() if line[:1] not in "#:"),
    }


def test_everything_killed_then_osm_up_brings_the_demo_back_and_orphans_nothing(
    mesh: Mesh,
) -> None:
    healthy(mesh)
    state_dir = mesh.settings.state_dir
    host = demo.host_snapshot()
    mounts = sandbox_mounts(state_dir)
    inside = mesh_netns_state(PREFIX)
    restart_ready(mesh)
    runtime = daemon.runtime(state_dir).pid()
    controller = daemon.controller(state_dir).pid()
    assert runtime is not None and controller is not None
    # The runtime frozen first, so that it restarts nothing and its death signals nothing
    # (Envoy asks for SIGTERM when its parent dies): every process dies by SIGKILL.
    os.kill(runtime, signal.SIGSTOP)
    killed = 0
    while processes := mesh_processes(mesh):
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.05)
    for pid in (runtime, controller):
        os.kill(pid, signal.SIGKILL)
        killed += 1
    # Dead before `osm up` looks: a daemon still exiting would pass for running.
    wait_for(lambda: not running(runtime) and not running(controller), 10, "the daemons to die")
    started = time.monotonic()
    daemon.up(mesh.settings)
    up_took = time.monotonic() - started
    pods = f"{DEMO_PODS} ready demo pods"
    wait_for(lambda: running_pods(mesh) == DEMO_PODS, RECOVERY, pods, lambda: evidence(mesh))
    pods_ready = time.monotonic() - started
    wait_for(lambda: served(mesh), RECOVERY, "both clients served", lambda: evidence(mesh))
    served_in = time.monotonic() - started
    expected_netns = sorted(
        {network.mesh_netns(PREFIX)}
        | {
            p["metadata"]["annotations"][wellknown.NETNS_ANNOTATION]
            for ns in demo.NAMESPACES
            for p in mesh.api.items("Pod", ns)
        }
    )
    left = demo.left_behind(PREFIX)
    report(
        mesh,
        "kill-9-everything",
        processes_killed=killed,
        up_s=f"{up_took:.1f}",
        pods_ready_s=f"{pods_ready:.1f}",
        clients_served_s=f"{served_in:.1f}",
        netns=len(left["netns"]),
        expected_netns=len(expected_netns),
    )
    assert served_in <= RECOVERY
    assert left["netns"] == expected_netns, left
    assert set(left["etc"]) <= set(expected_netns), left
    assert len(sandbox_mounts(state_dir)) == len(mounts), (mounts, sandbox_mounts(state_dir))
    assert mesh_netns_state(PREFIX) == inside
    assert orphans(mesh) == []
    assert demo.host_snapshot() == host


def test_osm_down_leaves_nothing(mesh: Mesh) -> None:
    state_dir = mesh.settings.state_dir
    daemon.down(state_dir)
    assert demo.left_behind(PREFIX) == {"netns": [], "etc": []}
    assert mesh_processes(mesh) == {}
    assert sandbox_mounts(state_dir) == []
    leftovers = [
        line for line in hostutil.output("ps", "-eo", "pid,args").splitlines() if PREFIX in line
    ]
    assert leftovers == []
