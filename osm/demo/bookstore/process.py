"""Process plumbing the demo apps share: run until SIGTERM or SIGINT, log compact lines.

Each app is an ``async def main(stopped: asyncio.Event)`` that returns once `stopped` is set;
`run` owns the event loop and the signal handlers so that the apps own neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable

Main = Callable[[asyncio.Event], Awaitable[None]]


def log(identity: str, message: str) -> None:
    """One line to stdout, flushed at once (the runtime keeps the logs, often via a pipe).
    A line that cannot be written (the log's filesystem full) is lost, not fatal."""
    with contextlib.suppress(OSError):
        print(f"{time.strftime('%H:%M:%S')} {identity}: {message}", flush=True)


def run(main: Main) -> None:
    """Runs `main` until it returns; SIGTERM and SIGINT ask it to stop."""

    async def supervise() -> None:
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        await main(stopped)

    asyncio.run(supervise())


async def every(seconds: float, stopped: asyncio.Event, tick: Callable[[], None]) -> None:
    """Calls `tick` every `seconds` until `stopped` is set; never if `seconds` is not positive."""
    if seconds <= 0:
        await stopped.wait()
        return
    while True:
        try:
            async with asyncio.timeout(seconds):
                await stopped.wait()
            return
        except TimeoutError:
            tick()
