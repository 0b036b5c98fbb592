"""A pod's resources.limits enforced by the local runtime (root): `osm up`, then pods that
misbehave next to one that serves HTTP, and `osm down` leaving no cgroup behind.

- ``hog`` (limits.memory 64Mi) allocates 300 MB: the kernel OOM-kills it; its status says
  ``OOMKilled`` with exit code 137, and it is restarted with backoff (1s, 2s, 4s, ...).
- ``fds`` opens files until EMFILE and holds them: it hits its own RLIMIT_NOFILE
  (`cgroups.NOFILE_LIMIT`, or the runtime's hard limit where it may not raise it).
- ``spin`` (limits.cpu 100m) busy-loops: the CFS quota throttles it.
- ``web`` answers every request all along (counted from the mesh's namespace, as a probe).

One mesh with this run's unique prefix (its state dir, ports, namespaces, cgroup parent
and pod interpreter under /tmp), so nothing another mesh uses is touched. Skipped where
no cgroup memory controller is writable: there pods run unlimited, by design.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
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

from osm.runtime import cgroups, daemon, network, process
from tests.e2e import demo, hostutil
from tests.e2e.meshapi import MeshApi

PREFIX = f"osmr{uuid.uuid4().hex[:5]}"
WHY = cgroups.why_unavailable(f"{PREFIX}-probe") if os.geteuid() == 0 else "needs root"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, cgroups)"),
    pytest.mark.skipif(bool(WHY), reason=f"no writable cgroup memory controller: {WHY}"),
    pytest.mark.timeout(300),
]

NAMESPACE = "limits"
PYTHON = "/usr/bin/python3"  # readable by every user
PORT = 8080
MI = 2**20

SERVER = textwrap.dedent(
    """
    import http.server
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *args):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
    """
)
HOG = "import time; hoard = b'x' * (300 * 2**20); print('survived', flush=True); time.sleep(600)"
FDS = textwrap.dedent(
    """
    import errno, os, resource, time
    print("NOFILE", *resource.getrlimit(resource.RLIMIT_NOFILE), flush=True)
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as error:
        print("EMFILE" if error.errno == errno.EMFILE else error, "after", len(held), flush=True)
    time.sleep(600)
    """
)
SPIN = "while True: pass"


def pod(name: str, program: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": name, "command": [PYTHON, "-c", program], **container}],
        },
    }


@dataclass
class Mesh:
    settings: daemon.MeshSettings
    api: MeshApi

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.api.get("Pod", NAMESPACE, name).get("status") or {})

    def container(self, name: str) -> dict[str, Any]:
        statuses = self.status(name).get("containerStatuses") or [{}]
        return dict(statuses[0])

    def log(self, name: str) -> str:
        path = process.log_path(self.settings.state_dir, NAMESPACE, name, name)
        return path.read_text() if path.exists() else ""


def cgroup_dirs(prefix: str) -> list[Path]:
    """Every cgroup directory named for this run's pods, in every mounted hierarchy."""
    mounts = cgroups.mounted(Path("/proc/self/mountinfo").read_text())
    return [h.mount / f"{prefix}-pods" for h in mounts if (h.mount / f"{prefix}-pods").exists()]


def cgroup_file(container: str, names: tuple[str, ...]) -> Path:
    """The first of ``names`` that the container's cgroup has, in any hierarchy."""
    for parent in cgroup_dirs(PREFIX):
        for name in names:
            path = parent / f"{NAMESPACE}_{container}" / container / name
            if path.exists():
                return path
    raise AssertionError(f"no {' or '.join(names)} in the cgroups of {container}")


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    # Not under pytest's tmp dir (0700): the pods' processes read what is in it.
    base = Path(f"/tmp/{PREFIX}")
    base.mkdir(mode=0o755)
    settings = daemon.MeshSettings(
        base / "state",
        hostutil.free_port(),
        hostutil.free_port(),
        PREFIX,
        http_port=hostutil.free_port(),
    )
    api: MeshApi | None = None
    try:
        daemon.up(settings, progress=print)
        api = MeshApi(settings)
        api.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
        yield Mesh(settings, api)
    finally:
        if api is not None:
            api.close()
        with contextlib.suppress(daemon.DaemonError):
            daemon.down(settings.state_dir)
        for netns in demo.left_behind(PREFIX)["netns"]:  # last resort, should teardown break
            subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)
        for parent in cgroup_dirs(PREFIX):  # likewise
            cgroups.remove_pod([d for d in parent.iterdir() if d.is_dir()])
            with contextlib.suppress(OSError):
                parent.rmdir()
        shutil.rmtree(base, ignore_errors=True)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class Prober:
    """GETs the web pod every 50ms from the mesh's namespace until stopped."""

    netns: str
    ip: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def get(self) -> None:
        try:
            with network.socket_in_netns(self.netns) as sock:
                sock.settimeout(2.0)
                sock.connect((self.ip, PORT))
                sock.sendall(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
                reply = b""
                while chunk := sock.recv(4096):
                    reply += chunk
            if reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"ok"):
                self.ok += 1
            else:
                self.failures.append(repr(reply[:80]))
        except OSError as error:
            self.failures.append(f"{time.strftime('%T')} {error}")

    def run(self) -> None:
        while not self._stop.wait(0.05):
            self.get()

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self.run, name="prober")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


def expected_nofile() -> int:
    """What a container gets: `NOFILE_LIMIT`, or the runtime's hard limit (inherited from
    this process) where it may not raise it (no CAP_SYS_RESOURCE)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    effective = int(re.findall(r"CapEff:\s*(\w+)", Path("/proc/self/status").read_text())[0], 16)
    may_raise = bool(effective & (1 << 24))  # CAP_SYS_RESOURCE
    return cgroups.NOFILE_LIMIT if hard >= cgroups.NOFILE_LIMIT or may_raise else hard


def test_misbehaving_pods_are_contained_and_their_neighbour_keeps_serving(mesh: Mesh) -> None:
    mesh.api.apply([pod("web", SERVER, readinessProbe={"tcpSocket": {"port": PORT}})])
    wait_for(lambda: mesh.status("web").get("conditions", [{}])[-1].get("status") == "True", "web")
    prober = Prober(network.mesh_netns(PREFIX), mesh.status("web")["podIP"])
    with prober:
        mesh.api.apply(
            [
                pod("hog", HOG, resources={"limits": {"memory": "64Mi"}}),
                pod("fds", FDS),
                pod("spin", SPIN, resources={"limits": {"cpu": "100m"}}),
            ]
        )
        # The hog: OOM-killed, reported as Kubernetes reports it, restarted with backoff.
        wait_for(lambda: mesh.container("hog").get("restartCount", 0) >= 1, "hog's restart")
        first = time.monotonic()
        last = mesh.container("hog")["lastState"]["terminated"]
        assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
        waiting: list[str] = []

        def restarted_thrice() -> bool:
            container = mesh.container("hog")
            waiting.append(container["state"].get("waiting", {}).get("reason", ""))
            return int(container["restartCount"]) >= 3

        wait_for(restarted_thrice, "hog's third restart")
        backoff = time.monotonic() - first
        assert backoff >= 5.0, "restarts 2 and 3 come after 2s and 4s"
        assert "CrashLoopBackOff" in waiting
        assert "survived" not in mesh.log("hog")
        written = cgroup_file("hog", ("memory.limit_in_bytes", "memory.max"))
        assert written.read_text().strip() == str(64 * MI)

        # The fd hog: EMFILE at its own limit, and it keeps running.
        wait_for(lambda: "EMFILE after" in mesh.log("fds"), "fds to run out of descriptors")
        nofile = expected_nofile()
        assert f"NOFILE {nofile} {nofile}" in mesh.log("fds")
        opened = int(re.findall(r"EMFILE after (\d+)", mesh.log("fds"))[0])
        assert nofile - 10 < opened < nofile
        assert "running" in mesh.container("fds")["state"]

        # The spinner: throttled by its CFS quota.
        stat = cgroup_file("spin", ("cpu.stat",))
        wait_for(
            lambda: int(re.findall(r"nr_throttled (\d+)", stat.read_text())[0]) > 10,
            "spin to be throttled",
        )
        time.sleep(2.0)  # the neighbour keeps serving while all three go on
    print(
        f"hog: restarts 1 to 3 in {backoff:.1f}s; fds: EMFILE after {opened} (limit {nofile});"
        f" spin: {stat.read_text().split()}; web: {prober.ok} answers, "
        f"{len(prober.failures)} failures"
    )
    assert prober.failures == [], prober.failures[:10]
    assert prober.ok > 100
    assert mesh.status("web")["containerStatuses"][0]["restartCount"] == 0


def test_osm_down_leaves_no_cgroup_behind(mesh: Mesh) -> None:
    assert cgroup_dirs(PREFIX), "the pods' cgroups exist while they run"
    daemon.down(mesh.settings.state_dir)
    assert cgroup_dirs(PREFIX) == []
    assert demo.left_behind(PREFIX) == {"netns": [], "etc": []}
    assert hostutil.output("ps", "-eo", "args").count(f"{PREFIX}") == 0, (
        "no process of this mesh is left"
    )
