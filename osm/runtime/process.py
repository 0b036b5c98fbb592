"""A pod's containers as processes: run in the pod's namespace, restarted, probed, logged.

The one idea: a container is ``ip netns exec <pod netns> setpriv --reuid U --regid G
--clear-groups -- <command> <args>``. ``ip netns exec`` enters the namespace and
bind-mounts ``/etc/netns/<pod>/hosts`` over ``/etc/hosts``; ``setpriv`` drops root; both
exec. It runs as the child of its shim (`SHIM`), which the runtime starts in a session of
its own: the pid the runtime sees is the shim's, whose process group (shim and container)
is killed as a whole, and which outlives the runtime, so a runtime killed does not take
the containers with it. `ContainerProcess` restarts it with
exponential backoff (Kubernetes' restartPolicy Always), appends its output to a log file
under the state dir (for ``osm logs``) and tracks readiness from the readinessProbe
(run inside the pod's namespace, with the probe's period and thresholds).

Users: applications run as a fixed unprivileged user (``nobody`` by default; never UID
1500, whose traffic the interception rules let through unproxied); the sidecar runs as
UID 1500 (`osm.base.wellknown.PROXY_UID`). No users are created. A process running
as those UIDs must be able to read its interpreter and code: a virtualenv or pyenv
under ``/root`` (mode 0700) is not. `access_problem` checks this before a pod starts
and says what to do (let ``osm up`` build ``/opt/osm/venv``, or make a venv from an
interpreter outside /root and point the runtime at it). We propose
not to copy or bind-mount interpreters.

A restarted runtime adopts the container processes its predecessor started
(`ContainerProcess.adopt`): they are not its children, so it learns of their exit from a
pidfd, without an exit status (reported as Kubernetes reports a lost container: 137,
``ContainerStatusUnknown``), and restarts them as its own children.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from osm.model.core import Container, Probe
from osm.runtime import podspec, record
from osm.runtime.network import socket_in_netns

APP_UID = podspec.APP_UID
APP_GID = podspec.APP_GID
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class ProcessError(RuntimeError):
    """A container cannot be started as specified (no command, unknown port name, ...)."""


# -- commands ------------------------------------------------------------------------------
def as_user(argv: Sequence[str], *, uid: int, gid: int) -> list[str]:
    """``setpriv`` running ``argv`` as ``uid``/``gid`` without supplementary groups or the
    means to regain privileges (it execs: the pid stays the same)."""
    if not argv:
        raise ProcessError("nothing to run: the command is empty")
    privileges = [f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs"]
    return ["setpriv", *privileges, "--", *argv]


def pod_command(netns: str, argv: Sequence[str], *, uid: int, gid: int) -> list[str]:
    """The argv that runs ``argv`` in pod namespace ``netns`` as ``uid``/``gid`` (`as_user`).
    For a pod with volumes, `osm.runtime.sandbox.PodSandbox.command` instead."""
    return ["ip", "netns", "exec", netns, *as_user(argv, uid=uid, gid=gid)]


def log_path(state_dir: Path, namespace: str, pod: str, container: str) -> Path:
    """Where a container's output goes: ``<state>/logs/<namespace>/<pod>/<container>.log``."""
    return state_dir / "logs" / namespace / pod / f"{container}.log"


def access_problem(argv: Sequence[str], *, uid: int, gid: int, timeout: float = 20.0) -> str | None:
    """Runs ``argv`` (e.g. ``[python, "-c", "import osm.proxy"]``) as ``uid``/``gid``
    in the current namespace; None if it exits 0, else a message saying what to do."""
    command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd="/", check=False
        )
    except subprocess.TimeoutExpired:
        return f"{' '.join(argv)} did not finish in {timeout:g}s as uid {uid}"
    if result.returncode == 0:
        return None
    detail = (result.stderr or result.stdout).strip().splitlines()
    return (
        f"{' '.join(argv)} cannot run as uid {uid}: {detail[-1] if detail else result.returncode}."
        " The interpreter and code must be readable by that user; a virtualenv or pyenv "
        "under /root is not. Let osm up build /opt/osm/venv, or create a venv from an "
        "interpreter outside /root, e.g. /usr/bin/python3 -m venv /srv/osm-venv && "
        "/srv/osm-venv/bin/pip install <osm>, and run the mesh from it."
    )


# -- the shim: each container's parent ------------------------------------------------------
SHIM = """\
import signal, subprocess, sys
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(number, lambda *_: None)
code = subprocess.Popen(sys.argv[1:], restore_signals=True).wait()
sys.exit(128 - code if code < 0 else code)
"""
"""What each container runs under (as containerd's shim or conmon do for a kubelet): its
parent, which outlives the runtime. A container whose parent dies may die with it (Envoy
sets ``PR_SET_PDEATHSIG``); its shim lives until it ends, waits for it and exits with its
code (128 + the signal that killed it). Signals to the process group reach the container;
the shim ignores them and waits. Isolated (``-I -S``): the pod's env (which the container
inherits through it) cannot change what the shim runs."""


def shim_command(argv: Sequence[str]) -> list[str]:
    """``argv`` under its shim (`SHIM`)."""
    return [sys.executable, "-I", "-S", "-c", SHIM, *argv]


def _note(log: BinaryIO, text: str) -> None:
    """Appends one ``--- osm:`` line to a container's log (opened unbuffered). A log that
    cannot take it (its filesystem full) loses the line: supervision goes on whatever the
    disk says."""
    with contextlib.suppress(OSError):
        log.write(f"--- osm: {text}\n".encode())


def _kill_group(pid: int) -> None:
    """Kills what is left of the process group that ``pid`` led, once it has exited: a
    shim killed on its own leaves its container running, which must not outlive it (its
    successor would find the container's ports taken). The group's id is not reused while
    anything is in it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def exit_code(returncode: int) -> int:
    """A container's exit code as Kubernetes reports it: 128 + N when signal N killed it
    (asyncio says -N when it killed the shim too)."""
    return 128 - returncode if returncode < 0 else returncode


# -- restart backoff -----------------------------------------------------------------------
@dataclass
class Backoff:
    """Delays before restarts: ``initial`` doubling (``factor``) up to ``maximum``; reset
    to ``initial`` once a process has run for ``reset_after`` seconds."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    reset_after: float = 120.0
    _next: float = field(default=0.0, init=False)

    def delay(self, ran_for: float) -> float:
        """The delay before the next start of a process that ran for ``ran_for`` seconds."""
        if ran_for >= self.reset_after or self._next == 0.0:
            self._next = self.initial
        current = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return current


# -- readiness -----------------------------------------------------------------------------
@dataclass
class Readiness:
    """Kubernetes' readiness rule: not ready at first; ready after ``success_threshold``
    successes in a row; not ready after ``failure_threshold`` failures in a row."""

    success_threshold: int = 1
    failure_threshold: int = 3
    ready: bool = False
    _successes: int = field(default=0, init=False)
    _failures: int = field(default=0, init=False)

    def observe(self, success: bool) -> bool:
        """Records one probe result; returns whether the container is ready now."""
        if success:
            self._successes += 1
            self._failures = 0
            if self._successes >= self.success_threshold:
                self.ready = True
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= self.failure_threshold:
                self.ready = False
        return self.ready

    @property
    def failing(self) -> bool:
        """``failure_threshold`` failures in a row (what kills a container for liveness)."""
        return self._failures >= self.failure_threshold

    def reset(self) -> None:
        self.ready = False
        self._successes = self._failures = 0


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where a probe runs: the network namespace its connections are made from (a
    kubelet's are made from the node, outside the pod), the pod's IP, the container (for
    named ports), and the user and launcher (default: `pod_command` in ``netns``) of exec
    probes, which run in the pod."""

    netns: str
    pod_ip: str
    container: Container
    uid: int = APP_UID
    gid: int = APP_GID
    launcher: Callable[[Sequence[str], int, int], list[str]] | None = None


def resolve_port(container: Container, port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    for declared in container.ports:
        if declared.name == port:
            return declared.container_port
    raise ProcessError(f'container "{container.name}" has no port named "{port}"')


PROBE_USER_AGENT = "kube-probe/osm"


def probe_request(probe: Probe, host: str) -> bytes:
    """The request of an ``httpGet`` probe, as the kubelet makes it: ``Host`` (``host``),
    ``User-Agent`` and ``Accept: */*`` unless the probe's ``httpHeaders`` name them (by
    any case; an empty ``Accept`` removes it), then the probe's headers in order, and
    ``Connection: close``. The headers carry what the target needs: OSM's rewritten
    tcpSocket probes name the app's port in ``Original-Tcp-Port``."""
    given = {name.lower() for name, _ in probe.http_headers}
    lines = [f"GET {probe.path} HTTP/1.1"]
    defaults = (("Host", host), ("User-Agent", PROBE_USER_AGENT), ("Accept", "*/*"))
    lines += [f"{name}: {value}" for name, value in defaults if name.lower() not in given]
    for name, value in probe.http_headers:
        if not (name.lower() == "accept" and value == ""):
            lines.append(f"{name}: {value}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def probe_once(probe: Probe, target: ProbeTarget) -> bool:
    """Runs one probe inside the pod's namespace; True on success. A probe that takes
    longer than ``timeout_seconds`` fails, and so does one that cannot be made at all
    (say, no socket could be created in the namespace: `NetworkError`, a RuntimeError):
    as for the kubelet, an error is a failed probe, and probing goes on."""
    try:
        async with asyncio.timeout(probe.timeout_seconds):
            return await _probe(probe, target)
    except (TimeoutError, OSError, ssl.SSLError, ValueError, RuntimeError):
        return False


async def _probe(probe: Probe, target: ProbeTarget) -> bool:
    if probe.kind == "exec":
        if target.launcher is not None:
            argv = target.launcher(probe.command, target.uid, target.gid)
        else:
            argv = pod_command(target.netns, probe.command, uid=target.uid, gid=target.gid)
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return await child.wait() == 0
        finally:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                await child.wait()
    port = resolve_port(target.container, probe.port)
    loop = asyncio.get_running_loop()
    # Created in this thread (a helper thread's setns takes well under a millisecond): an
    # awaited hand-over could leak the socket when the probe is cancelled.
    sock = socket_in_netns(target.netns)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (target.pod_ip, port))
    except BaseException:
        sock.close()
        raise
    if probe.kind == "tcpSocket":
        sock.close()
        return True
    context = None
    if probe.scheme == "HTTPS":  # like the kubelet: TLS without verification
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname="" if context else None
        )
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(probe_request(probe, f"{target.pod_ip}:{port}"))
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    parts = status_line.split()
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


# -- supervision ---------------------------------------------------------------------------
Launcher = Callable[[Sequence[str], int, int], list[str]]
"""``(argv, uid, gid) -> the argv that runs it in the pod`` (e.g. a sandbox's ``nsenter``)."""

RESTART_POLICIES = ("Always", "OnFailure", "Never")


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One container process: what runs, where, as whom, where its output goes, how it is
    probed and whether it is restarted (Kubernetes' ``restartPolicy``: ``Always``,
    ``OnFailure`` — what init containers get — or ``Never``)."""

    name: str
    netns: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    log: Path
    uid: int = APP_UID
    gid: int = APP_GID
    cwd: str = "/"
    readiness: Probe | None = None
    probe_target: ProbeTarget | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    restart_policy: str = "Always"
    launcher: Launcher | None = None
    """Default: `pod_command` in ``netns``."""
    exit_reason: Callable[[], str] | None = None
    """Asked when the process has exited: a reason the runtime knows (``OOMKilled``), or
    "" for the usual ``Completed`` or ``Error``."""

    def command(self) -> list[str]:
        if self.launcher is not None:
            return self.launcher(self.argv, self.uid, self.gid)
        return pod_command(self.netns, self.argv, uid=self.uid, gid=self.gid)


UNKNOWN_EXIT_CODE = 137
"""What an adopted process's exit is reported as: its status cannot be read (it is not
this process's child), so, as Kubernetes reports a container whose runtime lost it, exit
code 137 with reason `UNKNOWN_EXIT_REASON`."""
UNKNOWN_EXIT_REASON = "ContainerStatusUnknown"


class AdoptedProcess:
    """A running container process that an earlier runtime started, watched through a
    pidfd (``pidfd_open(2)``, Linux 5.3+): it becomes readable when the process exits.
    It is not a child, so it cannot be waited for: its exit code is `UNKNOWN_EXIT_CODE`.
    The `asyncio.subprocess.Process` subset `ContainerProcess` uses; make it in the loop.

    Raises ProcessLookupError if ``pid`` is not (any more) the process that started at
    ``start_time``: the pidfd pins the process, and the start time is read after it is
    opened, so a reused pid is never taken for the old process."""

    def __init__(self, pid: int, start_time: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._fd = os.pidfd_open(pid)
        if not record.process_alive(pid, start_time):
            os.close(self._fd)
            raise ProcessLookupError(f"process {pid} (started at {start_time}) is gone")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_exit)

    def _on_exit(self) -> None:
        self.close()
        self.returncode = UNKNOWN_EXIT_CODE
        self._exited.set()

    def close(self) -> None:
        """Stops watching (idempotent)."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class ContainerProcess:
    """Runs a `ProcessSpec` as a kubelet runs a container, until `stop`: restarted on exit
    after a `Backoff` delay as its restart policy says; a startup probe gates the other
    two; a liveness probe that fails ``failureThreshold`` times in a row (or a startup
    probe that does) kills the process, which is then restarted; a readiness probe says
    whether it is ready. Use from one event loop; ``ready``, ``restarts`` and ``state`` may
    be read at any time. Every started process is recorded in the journal while it lives.

    `adopt` takes over a process an earlier runtime started (`AdoptedProcess`) instead of
    starting one: supervised and probed the same way, and restarted as a child of this
    one when it exits; `completed` stands for an init container that ran to its end."""

    def __init__(
        self,
        spec: ProcessSpec,
        journal: record.Journal,
        *,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        on_ready_change: Callable[[bool], None] | None = None,
        fast_probe_interval: float | None = None,
        kill_grace: float = 2.0,
    ) -> None:
        """``fast_probe_interval``: while not ready (or not started), probe this often
        instead of every ``periodSeconds`` (local mode reports a pod ready as soon as it
        is, not up to a period later); once ready, probes follow the spec."""
        if spec.restart_policy not in RESTART_POLICIES:
            raise ProcessError(
                f"restart policy {spec.restart_policy!r}: valid are {', '.join(RESTART_POLICIES)}"
            )
        self.spec = spec
        self._fast_probe_interval = fast_probe_interval
        self.journal = journal
        self.backoff = backoff or Backoff()
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.last_termination = ""
        """Why the process last ended: ``Completed``, ``Error`` or the probe that killed it."""
        self.finished = asyncio.Event()
        """Set once the process has exited for good (its restart policy says no more)."""
        self._sleep = sleep
        self._clock = clock
        self._kill_grace = kill_grace
        self._on_ready_change = on_ready_change
        self._process: asyncio.subprocess.Process | AdoptedProcess | None = None
        self._entry: record.Entry | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = 0.0
        self._generation = 0
        """Counts spawns: a probe result from an earlier run is thrown away."""
        self._adopted_ready = -1
        """The generation (an adopted process) whose readiness starts as ready."""
        self._killing: str = ""
        probe = spec.readiness
        self.readiness = Readiness(
            probe.success_threshold if probe else 1, probe.failure_threshold if probe else 3
        )
        self.started = spec.startup is None
        """Kubernetes' ``started``: the startup probe succeeded (or there is none)."""

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def ready(self) -> bool:
        """With a readiness probe, what it says; without, whether it runs and has started."""
        if self.spec.readiness is None:
            return self.pid is not None and self.started
        return self.readiness.ready

    @property
    def state(self) -> str:
        """``running``, ``terminated`` (for good) or ``waiting`` (to be restarted)."""
        if self.pid is not None:
            return "running"
        return "terminated" if self.finished.is_set() else "waiting"

    async def start(self) -> None:
        """Starts the process (raising if it cannot be spawned at all) and supervises it."""
        self.spec.log.parent.mkdir(parents=True, exist_ok=True)
        await self._spawn()
        self._supervise_and_probe()

    async def adopt(self, entry: record.Entry, *, ready: bool, started: bool) -> None:
        """Supervises the running process of the journal's PROCESS ``entry`` (an earlier
        runtime started it; the entry stays this one's until the process ends). ``ready``
        and ``started`` are what the Pod's status last said: readiness starts there and
        the probes correct it (a ready container is not flipped to not-ready meanwhile),
        without the initial delay. Raises ProcessLookupError if the process is gone."""
        pid, start_time = int(entry.data["pid"]), int(entry.data["start_time"])
        self.spec.log.parent.mkdir(parents=True, exist_ok=True)
        self._process = AdoptedProcess(pid, start_time)
        self._entry = entry
        self._started_at = self._clock() - _age(start_time)
        self._generation += 1
        self._killing = ""
        self.started = started or self.spec.startup is None
        if self.spec.readiness is not None and ready and self.started:
            self._adopted_ready = self._generation
            self.readiness.ready = True
        if self.ready:
            self._notify(True)
        self._supervise_and_probe()

    def completed(self, exit_code: int = 0) -> None:
        """Marks the container as one that ran to its end under an earlier runtime (an
        adopted pod's init containers): terminated with ``exit_code``; nothing runs."""
        self.last_exit_code = exit_code
        self.last_termination = "Completed" if exit_code == 0 else "Error"
        self.finished.set()

    def _supervise_and_probe(self) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(), name=f"run-{self.spec.name}"))
        if self.spec.probe_target is not None:
            for kind in ("startup", "readiness", "liveness"):
                if getattr(self.spec, kind) is not None:
                    task = asyncio.create_task(
                        self._probe_loop(kind), name=f"{kind}-{self.spec.name}"
                    )
                    self._tasks.append(task)

    async def wait(self) -> int:
        """Waits until the process has exited for good; its last exit code."""
        await self.finished.wait()
        return self.last_exit_code if self.last_exit_code is not None else -1

    async def stop(self, grace: float = 5.0) -> None:
        """Stops supervising; SIGTERM to the process group, SIGKILL after ``grace``."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._terminate(grace)
        if isinstance(self._process, AdoptedProcess):
            self._process.close()
        self._forget()
        self._set_ready(False)

    async def _terminate(self, grace: float) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()

    async def _spawn(self) -> None:
        spec = self.spec
        argv = shim_command(spec.command())
        with spec.log.open("ab", buffering=0) as log:
            _note(log, f"starting {spec.name} (restart {self.restarts})")
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(spec.env),
                cwd=spec.cwd,
                start_new_session=True,
            )
        self._entry = record.record_process(
            self.journal, self._process.pid, netns=spec.netns, name=spec.name
        )
        self._started_at = self._clock()
        self._generation += 1
        self._killing = ""
        self.started = spec.startup is None
        if spec.readiness is None and self.started:
            self._notify(True)

    def _restarts_after(self, code: int) -> bool:
        policy = self.spec.restart_policy
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def _supervise(self) -> None:
        while True:
            assert self._process is not None
            code = exit_code(await self._process.wait())
            _kill_group(self._process.pid)
            self.last_exit_code = code
            adopted = isinstance(self._process, AdoptedProcess)
            known = self.spec.exit_reason() if self.spec.exit_reason else ""
            ended = UNKNOWN_EXIT_REASON if adopted else "Completed" if code == 0 else "Error"
            self.last_termination = self._killing or known or ended
            self._forget()
            self._set_ready(False)
            why = f" ({self._killing})" if self._killing else ""
            how = "ended (status unknown: an earlier runtime's)" if adopted else "exited"
            self._log(f"{self.spec.name} {how} with {code}{why}")
            if self._stopping:
                return
            if not self._restarts_after(code):
                self.finished.set()
                return
            delay = self.backoff.delay(self._clock() - self._started_at)
            while True:
                await self._sleep(delay)
                if self.stopping:  # stop() may have run during the delay
                    return
                self.restarts += 1
                try:
                    await self._spawn()
                    break
                except OSError as error:  # cannot fork now, say: try again later, not never
                    self._log(f"cannot start {self.spec.name}: {error}")
                    delay = self.backoff.delay(0.0)

    async def _probe_loop(self, kind: str) -> None:
        """One probe (``startup``, ``readiness`` or ``liveness``) for as long as the
        container is supervised: each run of the process starts it over, after the probe's
        initial delay; readiness and liveness wait for the startup probe."""
        probe: Probe | None = getattr(self.spec, kind)
        target = self.spec.probe_target
        assert probe is not None and target is not None
        idle = self._fast_probe_interval or 0.05
        generation = 0
        state = Readiness(probe.success_threshold, probe.failure_threshold)
        while not self._stopping:
            waiting = self.pid is None or self._killing or self.started != (kind != "startup")
            if waiting:
                await self._sleep(idle)
                continue
            if generation != self._generation:
                generation = self._generation
                state.reset()
                # Alive until it fails failureThreshold times; an adopted ready container
                # stays ready until its readiness probe fails as many times.
                adopted = kind == "readiness" and generation == self._adopted_ready
                if kind == "liveness" or adopted:
                    state.ready = True
                delay = probe.initial_delay_seconds - (self._clock() - self._started_at)
                if delay > 0:
                    await self._sleep(delay)
                    continue
            success = await probe_once(probe, target)
            if generation != self._generation or self._stopping:
                continue
            state.observe(success)
            if kind == "readiness":
                self._set_probe_ready(state.ready)
            elif kind == "startup" and state.ready:
                self.started = True
                if self.spec.readiness is None:
                    self._notify(True)
            elif state.failing:
                await self._kill_for(f"{kind} probe failed")
                continue
            period: float = probe.period_seconds
            if self._fast_probe_interval is not None and not state.ready:
                period = min(period, self._fast_probe_interval)
            await self._sleep(period)

    async def _kill_for(self, reason: str) -> None:
        """Kills the running process because a probe says so; supervision restarts it."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        self._killing = reason
        self._log(f"{reason}: killing {self.spec.name}")
        await self._terminate(self._kill_grace)

    def _log(self, text: str) -> None:
        """One line of the runtime's own in the container's log, if it can be written."""
        with contextlib.suppress(OSError), self.spec.log.open("ab", buffering=0) as log:
            _note(log, text)

    def _set_probe_ready(self, ready: bool) -> None:
        before = self.readiness.ready
        self.readiness.ready = ready
        if before != ready:
            self._notify(ready)

    def _set_ready(self, ready: bool) -> None:
        """Called with False when the process is gone (probes start over)."""
        if self.spec.readiness is None:
            self._notify(ready)
            return
        before = self.readiness.ready
        if not ready:
            self.readiness.reset()
        if before != self.readiness.ready:
            self._notify(self.readiness.ready)

    def _notify(self, ready: bool) -> None:
        if self._on_ready_change is not None:
            self._on_ready_change(ready)

    def _forget(self) -> None:
        if self._entry is not None:
            self.journal.removed(self._entry.kind, self._entry.key)
            self._entry = None


def _age(start_time: int) -> float:
    """Seconds since a process started, from its start time in clock ticks since boot."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, uptime - start_time / os.sysconf("SC_CLK_TCK"))
