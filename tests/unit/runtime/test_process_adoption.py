"""A container process an earlier runtime started, taken over by a new one: watched
through a pidfd (it is not a child), restarted as a child when it ends, its readiness
seeded from the Pod's status. No root: real processes outside any namespace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from osm.model.core import Container, Probe
from osm.runtime import process, record
from osm.runtime.process import Backoff, ContainerProcess, ProbeTarget, ProcessSpec

pytestmark = pytest.mark.timeout(30)


def run_here(argv: Sequence[str], uid: int, gid: int) -> list[str]:
    return list(argv)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[record.Journal]:
    with record.Journal.open(tmp_path) as opened:
        yield opened


@pytest.fixture
def orphan() -> Iterator[int]:
    """A ``sleep`` in a session of its own whose parent has exited: not this process's
    child, as a container is not the child of the runtime that adopts it."""
    shell = subprocess.run(
        ["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    pid = int(shell.stdout)
    try:
        yield pid
    finally:
        kill(pid)


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def recorded(journal: record.Journal, pid: int) -> record.Entry:
    entry = record.record_process(journal, pid, netns="no-netns", name="app")
    assert entry is not None
    return entry


def spec(tmp_path: Path, readiness: Probe | None = None) -> ProcessSpec:
    return ProcessSpec(
        "app",
        "no-netns",
        ("sleep", "60"),
        {"PATH": process.DEFAULT_PATH},
        tmp_path / "app.log",
        launcher=run_here,
        readiness=readiness,
        probe_target=ProbeTarget("no-netns", "127.0.0.1", Container("app"), launcher=run_here),
    )


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_an_adopted_process_is_supervised_and_restarted_as_a_child_when_it_dies(
    tmp_path: Path, journal: record.Journal, orphan: int
) -> None:
    entry = recorded(journal, orphan)
    container = ContainerProcess(spec(tmp_path), journal, backoff=Backoff(initial=0.01))
    container.restarts = 4  # what the Pod's status said
    await container.adopt(entry, ready=True, started=True)
    try:
        assert (container.pid, container.state, container.ready) == (orphan, "running", True)
        assert journal.get(record.PROCESS, entry.key) == entry

        os.kill(orphan, signal.SIGKILL)
        await until(lambda: container.restarts == 5 and container.pid is not None, "a restart")
        assert container.pid != orphan
        assert container.last_exit_code == process.UNKNOWN_EXIT_CODE
        assert container.last_termination == process.UNKNOWN_EXIT_REASON
        assert journal.get(record.PROCESS, entry.key) is None
        (child,) = journal.live(record.PROCESS)
        assert child.data["pid"] == container.pid
        assert "ended (status unknown" in container.spec.log.read_text()
    finally:
        restarted = container.pid
        await container.stop(grace=1.0)
    assert restarted is not None and record.process_start_time(restarted) is None  # reaped
    assert journal.live(record.PROCESS) == []


async def test_stopping_an_adopted_process_kills_it(
    tmp_path: Path, journal: record.Journal, orphan: int
) -> None:
    container = ContainerProcess(spec(tmp_path), journal)
    await container.adopt(recorded(journal, orphan), ready=True, started=True)
    await container.stop(grace=1.0)
    assert not record.process_alive(orphan, int(record.process_start_time(orphan) or 0))
    assert journal.live(record.PROCESS) == []


async def test_a_process_that_is_gone_is_not_adopted(
    tmp_path: Path, journal: record.Journal, orphan: int
) -> None:
    entry = recorded(journal, orphan)
    stale = record.Entry(entry.kind, entry.key, {**entry.data, "start_time": 1})
    container = ContainerProcess(spec(tmp_path), journal)
    with pytest.raises(ProcessLookupError):
        await container.adopt(stale, ready=True, started=True)
    assert container.pid is None


@pytest.mark.parametrize(
    ("command", "was_ready", "changes"),
    [
        # A ready container stays ready while its probe succeeds: no flip at all.
        (("true",), True, [True]),
        # It turns not-ready only after failureThreshold failures, as any ready container.
        (("false",), True, [True, False]),
        # One not ready when adopted becomes ready at its first success.
        (("true",), False, [True]),
    ],
)
async def test_readiness_starts_where_the_pods_status_left_it(
    tmp_path: Path,
    journal: record.Journal,
    orphan: int,
    command: tuple[str, ...],
    was_ready: bool,
    changes: list[bool],
) -> None:
    probe = Probe("exec", command=command, period_seconds=1, failure_threshold=3)
    seen: list[bool] = []
    probes = 0

    async def fast_sleep(seconds: float) -> None:
        nonlocal probes
        probes += 1
        await asyncio.sleep(min(seconds, 0.01))

    container = ContainerProcess(
        spec(tmp_path, readiness=probe), journal, on_ready_change=seen.append, sleep=fast_sleep
    )
    await container.adopt(recorded(journal, orphan), ready=was_ready, started=True)
    assert container.ready == was_ready
    try:
        await until(lambda: probes >= 6, "six probe periods")
    finally:
        await container.stop(grace=1.0)
    assert seen[: len(changes)] == changes
    assert seen[len(changes) :] == [False] * (len(seen) - len(changes))  # stop: not ready


def test_the_kernel_has_pidfds() -> None:
    fd = os.pidfd_open(os.getpid())
    os.close(fd)


DIES_WITH_ITS_PARENT = (
    "import ctypes, signal, time\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG, as Envoy does\n"
    "print('running', flush=True)\n"
    "time.sleep(60)\n"
)
RUNTIME = """
import asyncio, sys
from pathlib import Path
from osm.runtime import process, record
from osm.runtime.process import ContainerProcess, ProcessSpec

async def main() -> None:
    state = Path(sys.argv[1])
    journal = record.Journal.open(state)
    spec = ProcessSpec(
        "app", "no-netns", (sys.executable, "-c", sys.argv[2]), {}, state / "app.log",
        launcher=lambda argv, uid, gid: list(argv),
    )
    container = ContainerProcess(spec, journal)
    await container.start()
    print(container.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_container_outlives_a_killed_runtime_even_if_it_asks_to_die_with_its_parent(
    tmp_path: Path,
) -> None:
    runtime = subprocess.Popen(
        [sys.executable, "-c", RUNTIME, str(tmp_path), DIES_WITH_ITS_PARENT],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runtime.stdout is not None
    shim = int(runtime.stdout.readline())
    try:
        deadline = time.monotonic() + 10
        while "running" not in (tmp_path / "app.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        runtime.kill()
        runtime.wait(timeout=10)
        time.sleep(0.3)
        (entry,) = record.Journal.open(tmp_path).live(record.PROCESS)
        assert entry.data["pid"] == shim
        assert record.process_alive(shim, int(entry.data["start_time"]))
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(shim)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == 1  # the container, still running under its shim
    finally:
        runtime.stdout.close()
        kill(shim)


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("raise SystemExit(3)", 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 143),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137),
    ],
)
async def test_exit_codes_are_reported_as_kubernetes_does(
    tmp_path: Path, journal: record.Journal, script: str, code: int
) -> None:
    spec_ = ProcessSpec(
        "app",
        "no-netns",
        (sys.executable, "-c", script),
        {},
        tmp_path / "app.log",
        launcher=run_here,
        restart_policy="Never",
    )
    container = ContainerProcess(spec_, journal)
    await container.start()
    assert await container.wait() == code


async def test_a_shim_killed_on_its_own_takes_its_container_along(
    tmp_path: Path, journal: record.Journal
) -> None:
    """The container must not outlive its shim: its successor would find its ports taken."""
    spec_ = ProcessSpec(
        "app",
        "no-netns",
        ("sleep", "60"),
        {"PATH": process.DEFAULT_PATH},
        tmp_path / "app.log",
        launcher=run_here,
        restart_policy="Never",
    )
    container = ContainerProcess(spec_, journal)
    await container.start()
    shim = container.pid
    assert shim is not None

    def children() -> list[int]:
        path = Path(f"/proc/{shim}/task/{shim}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    await until(lambda: bool(children()), "the shim's container")
    (sleeper,) = children()
    os.kill(shim, signal.SIGKILL)
    assert await container.wait() == 137
    await until(lambda: not _running(sleeper), "the container killed")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped by init, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
