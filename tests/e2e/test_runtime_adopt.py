"""A restarted runtime adopts the running pods (root): ``kill -9`` of the runtime, then
``osm up``, and the pods keep their IPs, processes and readiness while a client's requests
keep succeeding; after a kill of the whole tree (controller, runtime, every container)
``osm up`` recreates them; ``osm down`` leaves nothing either way. Each test runs twice:
with plain pods, and with pods in the mesh (OSM's init container and Envoy, which asks the
kernel to kill it when its parent dies: its shim is that parent, not the runtime).

Safety: each test runs its own mesh (state dir, ports, namespace prefix unique to this
run); traffic goes only between namespaces it creates. The client's namespace is joined
to the mesh bridge by the test itself (a veth whose ends are both in this run's
namespaces) and removed before ``osm down`` is checked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from osm.base import wellknown
from osm.runtime import daemon, network, pods, process
from tests.e2e import demo, hostutil
from tests.e2e.meshapi import MeshApi

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.timeout(180),
]

PREFIX = f"osma{uuid.uuid4().hex[:5]}"
NAMESPACE = "adopt"
CLIENT_IP = "10.233.255.250"  # far above what the pool hands out to two pods
PYTHON = "/usr/bin/python3"

SERVER = textwrap.dedent(
    """
    import http.server
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *args):
            pass
    print("serving", flush=True)
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
    """
)

CLIENT = textwrap.dedent(
    """
    import sys, time, urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    urls = [f"http://{ip}:8080/" for ip in sys.argv[1:]]
    ok = failed = 0
    while True:
        for url in urls:
            try:
                opener.open(url, timeout=2).read()
                ok += 1
            except Exception as error:
                failed += 1
                print(f"FAIL {url} {error!r}", flush=True)
        print(f"COUNT {ok} {failed}", flush=True)
        time.sleep(0.02)
    """
)


def objects(meshed: bool) -> list[dict[str, Any]]:
    """The namespace (in the mesh: its pods get OSM's init container and Envoy), a
    Deployment of two HTTP servers with a readiness probe, and their Service."""
    labels = {"app": "web"}
    namespace: dict[str, Any] = {"name": NAMESPACE}
    if meshed:
        namespace["labels"] = {wellknown.MONITORED_BY_LABEL: "osm"}
        namespace["annotations"] = {wellknown.SIDECAR_INJECTION_ANNOTATION: "enabled"}
    container = {
        "name": "web",
        "command": [PYTHON, "-c", SERVER],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": namespace},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {"selector": labels, "ports": [{"port": 8080}]},
        },
    ]


# -- the mesh ----------------------------------------------------------------------------------
@dataclass
class Mesh:
    settings: daemon.MeshSettings
    api: MeshApi
    meshed: bool

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    def pods(self) -> list[dict[str, Any]]:
        return sorted(self.api.items("Pod", NAMESPACE), key=lambda p: p["metadata"]["name"])

    def netns(self, pod: dict[str, Any]) -> str:
        return pods.netns_name(PREFIX, NAMESPACE, pod["metadata"]["name"])

    def pids(self, pod: dict[str, Any]) -> set[int]:
        """The processes in the pod's network namespace (its containers')."""
        return {int(p) for p in hostutil.output("ip", "netns", "pids", self.netns(pod)).split()}

    def app_pid(self, pod: dict[str, Any]) -> int:
        """The pid of the pod's HTTP server (not its sidecar's)."""
        (pid,) = [p for p in self.pids(pod) if b"ThreadingHTTPServer" in cmdline(p)]
        return pid


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def two_ready(mesh: Mesh) -> bool:
    found = mesh.pods()
    return len(found) == 2 and all(ready(p) for p in found)


@pytest.fixture(autouse=True, scope="module")
def sweep_this_runs_leftovers() -> Iterator[None]:
    """Last resort, should a test's own cleanup be broken."""
    yield
    for netns in demo.left_behind(PREFIX)["netns"]:
        for pid in hostutil.output("ip", "netns", "pids", netns).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)


@pytest.fixture(params=["plain", "meshed"])
def mesh(request: pytest.FixtureRequest) -> Iterator[Mesh]:
    # Not under pytest's tmp dir (mode 0700): pods' users read what the runtime writes.
    base = Path(f"/tmp/{PREFIX}-{uuid.uuid4().hex[:4]}")
    base.mkdir(mode=0o755)
    settings = daemon.MeshSettings(
        base / "state",
        hostutil.free_port(),
        hostutil.free_port(),
        PREFIX,
        http_port=hostutil.free_port(),
    )
    running: Mesh | None = None
    try:
        daemon.up(settings, progress=print)
        running = Mesh(settings, MeshApi(settings), request.param == "meshed")
        running.api.apply(objects(running.meshed))
        wait_for(lambda: two_ready(running), "two ready pods", timeout=90)
        yield running
    finally:
        if running is not None:
            running.api.close()  # the one the test left (it may have replaced it)
        daemon.down(settings.state_dir)
        shutil.rmtree(base, ignore_errors=True)


# -- a client in a namespace of its own, on the mesh bridge ------------------------------------
@dataclass
class Client:
    netns: str
    log: Path
    child: subprocess.Popen[bytes] | None = None

    def counts(self) -> tuple[int, int]:
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("COUNT")]
        if not lines:
            return 0, 0
        _, ok, failed = lines[-1].split()
        return int(ok), int(failed)

    def failures(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith("FAIL")]

    def stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait(timeout=10)


@contextlib.contextmanager
def client(mesh: Mesh, ips: list[str], log: Path) -> Iterator[Client]:
    netns = f"{PREFIX}-client"
    veth = network.veth_name(netns)
    mesh_netns = network.mesh_netns(PREFIX)
    commands = [
        ["ip", "netns", "add", netns],
        ["ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", veth],
        ["ip", "-n", netns, "link", "set", veth, "netns", mesh_netns],
        ["ip", "-n", mesh_netns, "link", "set", veth, "master", "osmbr0", "up"],
        ["ip", "-n", netns, "addr", "add", f"{CLIENT_IP}/16", "dev", "eth0"],
        ["ip", "-n", netns, "link", "set", "eth0", "up"],
        ["ip", "-n", netns, "link", "set", "lo", "up"],
    ]
    running = Client(netns, log)
    try:
        for argv in commands:
            subprocess.run(argv, check=True, timeout=10, capture_output=True)
        with log.open("wb") as out:
            running.child = subprocess.Popen(
                ["ip", "netns", "exec", netns, PYTHON, "-c", CLIENT, *ips],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield running
    finally:
        running.stop()
        subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)


@dataclass
class Watch:
    """Polls the API while running: every moment a pod was not Ready, or the Service's
    Endpoints did not list both pods as ready."""

    mesh: Mesh
    unready: list[str] = field(default_factory=list)
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)

    def _run(self) -> None:
        api = MeshApi(self.mesh.settings)
        try:
            while not self._stop.is_set():
                try:
                    found = api.items("Pod", NAMESPACE)
                    endpoints = api.get("Endpoints", NAMESPACE, "web")
                except Exception as error:  # the API answers throughout: a miss is a finding
                    self.unready.append(f"API: {error!r}")
                    continue
                self.polls += 1
                for pod in found:
                    if not ready(pod):
                        self.unready.append(f"pod {pod['metadata']['name']}: {summary(pod)}")
                addresses = [
                    a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses", [])
                ]
                if len(addresses) != 2:
                    self.unready.append(f"endpoints: {endpoints.get('subsets')}")
                time.sleep(0.05)
        finally:
            api.close()


def summary(pod: dict[str, Any]) -> str:
    """A Pod's status in a line: its phase and each container's state, readiness and
    restarts (what a failed assertion needs to say)."""
    status = pod.get("status") or {}
    containers = [
        f"{c['name']} {next(iter(c.get('state') or {'?': 0}))} ready={c.get('ready')} "
        f"restarts={c.get('restartCount')} last={c.get('lastState')}"
        for c in status.get("containerStatuses") or []
    ]
    return f"{status.get('phase')} {status.get('message', '')}; " + "; ".join(containers)


def runtime_log(mesh: Mesh, lines: int = 40) -> str:
    return daemon.runtime(mesh.state_dir).tail(lines)


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), f"process {pid} to die", timeout=10)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def down_leaves_nothing(mesh: Mesh, pids: set[int]) -> None:
    daemon.down(mesh.state_dir)
    assert demo.left_behind(PREFIX) == {"netns": [], "etc": []}
    assert daemon.down(mesh.state_dir) == []
    assert [pid for pid in pids if alive(pid)] == []


# -- tests -------------------------------------------------------------------------------------
def test_a_killed_runtime_is_replaced_by_one_that_adopts_the_running_pods(
    mesh: Mesh, tmp_path: Path
) -> None:
    """Plain pods are called by a client throughout; meshed ones (whose inbound traffic
    only their mesh peers' sidecars may send) are watched for readiness."""
    before = mesh.pods()
    ips = [p["status"]["podIP"] for p in before]
    pids = {p["metadata"]["name"]: mesh.pids(p) for p in before}
    assert all(len(found) == (2 if mesh.meshed else 1) for found in pids.values()), pids
    old_runtime = daemon.runtime(mesh.state_dir).pid()
    assert old_runtime is not None
    with contextlib.ExitStack() as stack:
        traffic = None
        if not mesh.meshed:
            traffic = stack.enter_context(client(mesh, ips, tmp_path / "client.log"))
            wait_for(lambda: traffic.counts()[0] > 20, "the client's first requests")
        with Watch(mesh) as watch:
            kill9(old_runtime)
            restarted = time.monotonic()
            daemon.up(mesh.settings)
            print(f"osm up after kill -9: {time.monotonic() - restarted:.2f}s")
            new_runtime = daemon.runtime(mesh.state_dir).pid()
            assert new_runtime not in (None, old_runtime)
            log = daemon.runtime(mesh.state_dir).log
            wait_for(lambda: log.read_text().count("adopted pod") >= 2, "both pods adopted")
            if traffic is not None:
                ok_then = traffic.counts()[0]
                wait_for(lambda: traffic.counts()[0] > ok_then + 50, "requests after adoption")
            else:
                time.sleep(3)  # long enough for a flip to be seen
        if traffic is not None:
            traffic.stop()
            ok, failed = traffic.counts()
            print(f"client: {ok} ok, {failed} failed")
            assert failed == 0, traffic.failures()[:5]
        print(f"{watch.polls} polls of the API")
        assert watch.unready == [], "\n".join([*watch.unready[:3], runtime_log(mesh)])
        assert watch.polls > 10
    after = mesh.pods()
    assert [p["metadata"]["uid"] for p in after] == [p["metadata"]["uid"] for p in before]
    assert [p["status"]["podIP"] for p in after] == ips
    assert {p["metadata"]["name"]: mesh.pids(p) for p in after} == pids
    assert [p["status"] for p in after] == [p["status"] for p in before]

    # The new runtime supervises them: a container killed now is restarted.
    victim = after[0]
    name = victim["metadata"]["name"]
    kill9(mesh.app_pid(victim))

    def web_status() -> tuple[dict[str, Any], dict[str, Any]]:
        pod = mesh.api.get("Pod", NAMESPACE, name)
        (status,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == "web"]
        return pod, status

    def restarted_in_place() -> bool:
        pod, status = web_status()
        return status["restartCount"] == 1 and ready(pod) and len(mesh.pids(pod)) == len(pids[name])

    wait_for(restarted_in_place, "the killed container to be restarted", timeout=30)
    pod, status = web_status()
    assert status["lastState"]["terminated"] == {
        "exitCode": process.UNKNOWN_EXIT_CODE,
        "reason": process.UNKNOWN_EXIT_REASON,
    }
    assert pod["status"]["podIP"] == victim["status"]["podIP"]
    down_leaves_nothing(mesh, set().union(*pids.values(), mesh.pids(pod)))


def test_osm_down_after_the_runtime_was_killed_leaves_nothing(mesh: Mesh) -> None:
    pids = set().union(*(mesh.pids(p) for p in mesh.pods()))
    runtime = daemon.runtime(mesh.state_dir).pid()
    assert runtime is not None
    kill9(runtime)
    assert all(alive(pid) for pid in pids)  # orphaned, still serving
    down_leaves_nothing(mesh, pids)


def test_after_the_whole_tree_is_killed_osm_up_recreates_the_pods(mesh: Mesh) -> None:
    before = mesh.pods()
    pids = set().union(*(mesh.pids(p) for p in before))
    for daemon_ in (daemon.runtime(mesh.state_dir), daemon.controller(mesh.state_dir)):
        pid = daemon_.pid()
        assert pid is not None
        kill9(pid)
    for pid in pids:
        kill9(pid)
    daemon.up(mesh.settings)
    mesh.api.close()
    mesh.api = MeshApi(mesh.settings)

    def recreated() -> bool:
        found = mesh.pods()
        return two_ready(mesh) and all(mesh.pids(p) and not mesh.pids(p) & pids for p in found)

    wait_for(recreated, "both pods running again")
    expected = sorted([network.mesh_netns(PREFIX), *(mesh.netns(p) for p in mesh.pods())])
    assert demo.left_behind(PREFIX)["netns"] == expected
    down_leaves_nothing(mesh, pids | set().union(*(mesh.pids(p) for p in mesh.pods())))
