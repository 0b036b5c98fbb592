"""A sliding-window rate: events per second over the last few seconds, on an injected clock."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RateWindow:
    """Counts events and answers how many per second happened in the last `window` seconds.

    While younger than the window, the rate is over the time since creation (at least one
    second, so that the first event does not read as a thousand per second).
    """

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._start = clock()
        self._times: deque[float] = deque()

    def record(self) -> None:
        now = self._clock()
        self._times.append(now)
        self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        span = min(self._window, max(now - self._start, 1.0))
        return len(self._times) / span

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self._window:
            self._times.popleft()
