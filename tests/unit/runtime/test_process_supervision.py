"""`ContainerProcess` keeps a container going through errors that are not its own: a
restart that cannot be spawned is tried again later, and a probe that cannot be made is
a failed probe, not the end of probing (no root: processes run outside any namespace)."""

from __future__ import annotations

import asyncio
import errno
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osm.model.core import Container, Probe
from osm.runtime import process, record
from osm.runtime.process import Backoff, ContainerProcess, ProbeTarget, ProcessSpec


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[record.Journal]:
    with record.Journal.open(tmp_path) as opened:
        yield opened


async def test_a_restart_that_cannot_be_spawned_is_retried_with_backoff(
    tmp_path: Path, journal: record.Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run the command itself (no `ip netns exec`, no setpriv): it exits at once.
    monkeypatch.setattr(process, "pod_command", lambda netns, argv, **_: list(argv))
    real_exec = asyncio.create_subprocess_exec
    spawns = 0

    async def flaky_exec(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        nonlocal spawns
        spawns += 1
        if spawns in (2, 3):  # the first two restarts: fork fails
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return await real_exec(*argv, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", flaky_exec)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    log = tmp_path / "logs" / "app.log"
    spec = ProcessSpec("app", "no-netns", (sys.executable, "-c", "pass"), {}, log)
    running = ContainerProcess(
        spec, journal, backoff=Backoff(initial=1.0, maximum=8.0), sleep=sleep, clock=lambda: 0.0
    )
    await running.start()
    try:
        async with asyncio.timeout(10):
            while spawns < 4:
                await asyncio.sleep(0.01)
    finally:
        await running.stop(grace=1.0)
    assert delays[:3] == [1.0, 2.0, 4.0]  # exit, then two failed spawns, then it runs
    assert "cannot start app: [Errno 11]" in log.read_text()


async def test_a_probe_that_cannot_enter_the_namespace_fails_instead_of_raising() -> None:
    target = ProbeTarget("osm-test-no-such-netns", "127.0.0.1", Container("app"))
    probe = Probe("tcpSocket", port=1)
    assert await process.probe_once(probe, target) is False
