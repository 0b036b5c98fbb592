"""``osm up`` and ``osm down``: the controller and the runtime as two background processes.

The one idea: two daemons, each with a pid file in the state dir, so either can stop or
die without the other. The controller (``osm controller``) owns the store, serves the
Kubernetes API over it (HTTPS; it writes the kubeconfigs in the state dir: the user's,
`paths.kubeconfig_path`, and the runtime's) and the CA, and serves xDS; the runtime
(``python -m osm.runtime``, root) runs the pods, a client of the API with its own
kubeconfig (`paths.kubelet_kubeconfig_path`). ``osm up`` waits for the API by reading
through it with the user's kubeconfig, as any client would. Killing the controller
leaves the pods and sidecars running on their last configuration; ``osm up`` again starts
whichever of the two is missing. Killing the runtime leaves them running too: the one the
next ``osm up`` starts adopts them (`osm.runtime.adoption`), as a restarted kubelet keeps
its containers. ``osm down`` stops the runtime (which removes its pods and network),
tears down whatever its journal still names (also after a crash), then stops the
controller. ``mesh.json`` records the ports and names that ``osm up`` chose,
for the other commands. The runtime runs every pod
from the build of the pods' venv that its ``osm up`` made (`runtime_argv`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import osm
from osm import paths
from osm.base import wellknown
from osm.kube.client import KubeClient
from osm.kube.errors import KubeError
from osm.runtime import record, sidecar_env
from osm.runtime.kubelet import READY_FILE

MESH_FILE = "mesh.json"
_SPAWNED: list[subprocess.Popen[bytes]] = []
"""Daemons this process started and has not reaped. They outlive their Popen on purpose (a
Popen collected before it read its child's exit status warns); `_alive` reaps them
through it once they have exited, and forgets them."""
Progress = Callable[[str], None]
REAP_TIMEOUT = 2.0
"""Seconds to wait for a dead daemon's last threads before reaping it is left for later."""
HEALTH_TIMEOUT = 1.0
"""Seconds one readiness read of the API may take while ``osm up`` waits."""


class DaemonError(RuntimeError):
    """A daemon did not start or stop; the message says where its log is."""


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """What ``osm up`` starts, and where."""

    state_dir: Path
    api_port: int = wellknown.API_PORT
    xds_port: int = wellknown.XDS_PORT
    prefix: str = "osm"
    pod_python: Path = sidecar_env.DEFAULT_VENV
    http_port: int = wellknown.CONTROLLER_HTTP_PORT
    """The controller's metrics, health and ``/debug/proxies`` endpoint (plain HTTP)."""

    @property
    def server(self) -> str:
        """The Kubernetes API's URL."""
        return f"https://{wellknown.LOCALHOST}:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        """The user's kubeconfig, which the controller writes."""
        return paths.kubeconfig_path(self.state_dir)

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        (self.state_dir / MESH_FILE).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> MeshSettings | None:
        try:
            data = json.loads((state_dir / MESH_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(
            state_dir=state_dir,
            api_port=int(data["api_port"]),
            xds_port=int(data["xds_port"]),
            prefix=str(data["prefix"]),
            pod_python=Path(data["pod_python"]),
            http_port=int(data.get("http_port", wellknown.CONTROLLER_HTTP_PORT)),
        )


@dataclass(frozen=True, slots=True)
class Daemon:
    """One background process: its name, pid file and log."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid if the process that wrote the pid file still runs, else None."""
        try:
            pid_text, start_text = self.pid_file.read_text().split()
            pid, start = int(pid_text), int(start_text)
        except (OSError, ValueError):
            return None
        return pid if record.process_start_time(pid) == start and _alive(pid) else None

    def spawn(self, argv: list[str]) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
                env=daemon_env(os.environ),
            )
        _SPAWNED.append(child)
        start = record.process_start_time(child.pid)
        self.pid_file.write_text(f"{child.pid} {start}\n")
        return child.pid

    def stop(self, *, grace: float) -> bool:
        """SIGTERM, then SIGKILL after ``grace``; True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def daemon_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The daemons' environment: ``environ``, unbuffered, with the directory this process
    imported ``osm`` from first on ``PYTHONPATH``. Daemons run ``python -m osm...`` from
    ``/``, which would otherwise import the ``osm`` installed in the interpreter's venv:
    from a source tree that venv was not made from (a second checkout sharing it), that
    is another version than the one ``osm up`` runs, builds the pods' venv from
    (`sidecar_env.project_root`) and tests."""
    source = str(Path(osm.__file__).resolve().parent.parent)
    others = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != source]
    return {**environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([source, *others])}


def controller(state_dir: Path) -> Daemon:
    return Daemon("controller", state_dir)


def runtime(state_dir: Path) -> Daemon:
    return Daemon("runtime", state_dir)


def up(settings: MeshSettings, progress: Progress = lambda _: None) -> None:
    """Starts what is not running: the pod interpreter (once), the controller, the runtime."""
    state_dir = settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pod_python = sidecar_env.ensure(settings.pod_python, progress=progress)
    settings.save()
    python = sys.executable
    ctl = controller(state_dir)
    if ctl.pid() is None:
        for port, what in (
            (settings.api_port, "Kubernetes API"),
            (settings.http_port, "HTTP endpoint"),
            (settings.xds_port, "xDS"),
        ):
            if not _port_free(port):
                raise DaemonError(
                    f"port {port} (the controller's {what}) is in use by another process; "
                    "stop it, or choose other ports (osm up --port/--http-port/--xds-port)"
                )
        progress(f"starting the controller (API {settings.server}, xDS {settings.xds_port})")
        pid = ctl.spawn(
            [
                python,
                "-m",
                "osm.cli",
                "controller",
                "--state-dir",
                str(state_dir),
                "--port",
                str(settings.api_port),
                "--http-port",
                str(settings.http_port),
                "--xds-port",
                str(settings.xds_port),
            ]
        )
        _wait(lambda: api_answers(settings.kubeconfig), ctl, pid, 30, "the API to answer")
    run = runtime(state_dir)
    if run.pid() is None:
        progress(f"starting the runtime (pods in network namespaces {settings.prefix}-*)")
        ready_file = state_dir / READY_FILE
        ready_file.unlink(missing_ok=True)
        pid = run.spawn(runtime_argv(settings, pod_python.build or settings.pod_python))
        _wait(lambda: _ready_pid(ready_file) == pid, run, pid, 60, "the runtime to be ready")


def runtime_argv(settings: MeshSettings, pod_build: Path) -> list[str]:
    """The runtime's command line. Its pods run ``pod_build``, the build that this
    ``osm up`` made of its sources, not whatever the shared venv symlink names when a
    pod starts: an ``osm up`` from another checkout switches that symlink, and the pods
    of one mesh would otherwise run two versions of the project. Naming the build on
    the command line also keeps it from being pruned while the runtime runs
    (`sidecar_env` keeps the builds a running process names)."""
    return [
        sys.executable,
        "-m",
        "osm.runtime",
        "--state-dir",
        str(settings.state_dir),
        "--kubeconfig",
        str(paths.kubelet_kubeconfig_path(settings.state_dir)),
        "--xds-port",
        str(settings.xds_port),
        "--http-port",
        str(settings.http_port),
        "--prefix",
        settings.prefix,
        "--pod-python",
        str(pod_build),
    ]


def down(state_dir: Path, progress: Progress = lambda _: None) -> list[str]:
    """Stops the runtime and the controller and removes everything the runtime made.
    Idempotent; works after a crash. Returns what teardown still had to remove."""
    if runtime(state_dir).stop(grace=30):
        progress("stopped the runtime (pods and mesh network removed)")
    report = record.teardown(state_dir)
    if report.failed:
        raise DaemonError("teardown could not remove: " + "; ".join(report.failed))
    if controller(state_dir).stop(grace=10):
        progress("stopped the controller")
    (state_dir / READY_FILE).unlink(missing_ok=True)
    return report.removed


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def api_answers(kubeconfig: Path) -> bool:
    """The API answers an authenticated read through `kubeconfig`: the control plane's
    Namespace, which the controller creates before its API serves (False while the
    kubeconfig is not written yet, or the API does not answer or refuses)."""

    async def read() -> None:
        async with KubeClient.from_kubeconfig(kubeconfig, timeout=HEALTH_TIMEOUT) as client:
            await client.get("Namespace", None, wellknown.CONTROL_PLANE_NAMESPACE)

    if not kubeconfig.is_file():
        return False
    try:
        asyncio.run(read())
    except KubeError:
        return False
    return True


def _ready_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _wait(check: Callable[[], bool], daemon: Daemon, pid: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not _alive(pid):
            raise DaemonError(
                f"the {daemon.name} exited while waiting for {what}; its log "
                f"({daemon.log}) ends with:\n{daemon.tail()}"
            )
        if time.monotonic() > deadline:
            raise DaemonError(
                f"timed out after {timeout:g}s waiting for {what}; see {daemon.log}:\n"
                f"{daemon.tail()}"
            )
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running: not gone and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat[stat.rindex(")") + 2] == "Z":
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    """Reap an exited child: through its Popen if this process spawned it (so the Popen
    knows its status and does not warn "still running" when collected), else directly."""
    for child in _SPAWNED:
        if child.pid == pid:
            # A thread group's leader shows as a zombie while its other threads still
            # exit, and cannot be reaped until they have: wait for that, briefly.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=REAP_TIMEOUT)
            if child.returncode is not None:
                _SPAWNED.remove(child)
            return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
