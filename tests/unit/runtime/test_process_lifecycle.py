"""A container's life as a kubelet runs it: restart policies, startup probes gating the
others, liveness failures killing the process (which its policy then restarts). No root:
processes run outside any namespace and probes are scripted."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from osm.model.core import Container, Probe
from osm.runtime import process, record
from osm.runtime.process import Backoff, ContainerProcess, ProbeTarget, ProcessSpec

pytestmark = pytest.mark.timeout(30)

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")


def run_here(argv: Sequence[str], uid: int, gid: int) -> list[str]:
    return list(argv)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[record.Journal]:
    with record.Journal.open(tmp_path) as opened:
        yield opened


def spec(tmp_path: Path, argv: Sequence[str], **fields: object) -> ProcessSpec:
    return ProcessSpec(
        "app",
        "no-netns",
        tuple(argv),
        {},
        tmp_path / "app.log",
        launcher=run_here,
        probe_target=ProbeTarget("no-netns", "127.0.0.1", Container("app")),
        **fields,  # type: ignore[arg-type]
    )


def exits(code: int) -> tuple[str, ...]:
    return (sys.executable, "-c", f"raise SystemExit({code})")


FAST = Backoff(initial=0.01, maximum=0.01)


@pytest.mark.parametrize(
    ("policy", "code", "restarted"),
    [
        ("Always", 0, True),
        ("Always", 3, True),
        ("OnFailure", 3, True),
        ("OnFailure", 0, False),
        ("Never", 3, False),
        ("Never", 0, False),
    ],
)
async def test_restart_policy(
    tmp_path: Path, journal: record.Journal, policy: str, code: int, restarted: bool
) -> None:
    running = ContainerProcess(
        spec(tmp_path, exits(code), restart_policy=policy), journal, backoff=FAST
    )
    await running.start()
    try:
        if restarted:
            async with asyncio.timeout(10):
                while running.restarts < 2:
                    await asyncio.sleep(0.01)
            assert not running.finished.is_set()
        else:
            async with asyncio.timeout(10):
                assert await running.wait() == code
            assert running.restarts == 0 and running.state == "terminated"
            assert running.last_termination == ("Completed" if code == 0 else "Error")
    finally:
        await running.stop(grace=1.0)


def test_an_unknown_restart_policy_is_refused(tmp_path: Path, journal: record.Journal) -> None:
    with pytest.raises(process.ProcessError, match="valid are Always, OnFailure, Never"):
        ContainerProcess(spec(tmp_path, SLEEPER, restart_policy="Sometimes"), journal)


class ScriptedProbes:
    """Answers each probe kind from a script (then repeats its last answer)."""

    def __init__(self, **answers: list[bool]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.by_probe: dict[int, str] = {}

    async def __call__(self, probe: Probe, target: ProbeTarget) -> bool:
        kind = self.by_probe[id(probe)]
        self.calls.append(kind)
        script = self.answers[kind]
        return script.pop(0) if len(script) > 1 else script[0]


def probe(port: int) -> Probe:
    return Probe("tcpSocket", port=port, period_seconds=1, failure_threshold=2)


async def test_liveness_failures_kill_the_process_and_it_is_restarted(
    tmp_path: Path, journal: record.Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    liveness = probe(1)
    scripted = ScriptedProbes(liveness=[True, False, False, True])
    scripted.by_probe[id(liveness)] = "liveness"
    monkeypatch.setattr(process, "probe_once", scripted)
    running = ContainerProcess(
        spec(tmp_path, SLEEPER, liveness=liveness),
        journal,
        backoff=FAST,
        fast_probe_interval=0.01,
        kill_grace=1.0,
    )
    await running.start()
    try:
        async with asyncio.timeout(10):
            while running.restarts < 1 or running.pid is None:
                await asyncio.sleep(0.01)
        assert running.last_termination == "liveness probe failed"
        assert "liveness probe failed: killing app" in (tmp_path / "app.log").read_text()
    finally:
        await running.stop(grace=1.0)


async def test_the_startup_probe_gates_readiness(
    tmp_path: Path, journal: record.Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    startup, readiness = probe(1), probe(2)
    scripted = ScriptedProbes(startup=[False, True], readiness=[True])
    scripted.by_probe.update({id(startup): "startup", id(readiness): "readiness"})
    monkeypatch.setattr(process, "probe_once", scripted)
    running = ContainerProcess(
        spec(tmp_path, SLEEPER, startup=startup, readiness=readiness),
        journal,
        fast_probe_interval=0.01,
    )
    await running.start()
    try:
        assert not running.started and not running.ready
        async with asyncio.timeout(10):
            while not running.ready:
                await asyncio.sleep(0.01)
        assert running.started
        first_readiness = scripted.calls.index("readiness")
        assert scripted.calls[:first_readiness] == ["startup", "startup"]
        assert "startup" not in scripted.calls[first_readiness:]
    finally:
        await running.stop(grace=1.0)


async def test_without_probes_a_running_container_is_ready(
    tmp_path: Path, journal: record.Journal
) -> None:
    running = ContainerProcess(spec(tmp_path, SLEEPER), journal)
    await running.start()
    try:
        assert running.ready and running.state == "running"
    finally:
        await running.stop(grace=1.0)
    assert not running.ready


async def test_a_log_that_cannot_be_written_does_not_stop_supervision(
    journal: record.Journal,
) -> None:
    """Its filesystem full (``/dev/full`` answers every write with ENOSPC), a container's
    log loses lines; the container is still started and restarted by its policy."""
    full = ProcessSpec(
        "app",
        "no-netns",
        exits(3),
        {},
        Path("/dev/full"),
        launcher=run_here,
        restart_policy="OnFailure",
    )
    container = ContainerProcess(full, journal, backoff=FAST)
    await container.start()
    deadline = asyncio.get_running_loop().time() + 10
    while container.restarts < 2:
        assert asyncio.get_running_loop().time() < deadline, "not restarted"
        await asyncio.sleep(0.01)
    assert container.last_exit_code == 3
    await container.stop()
