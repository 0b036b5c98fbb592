"""Batching watch events before recomputing: a sliding window with a maximum.

Sans-IO and clock-free: the caller passes the time in. The first event opens a batch
due ``window`` seconds later; each further event pushes the deadline to ``window``
after it, but never past ``maximum`` after the first, so a steady stream of changes
still gets pushed at least every ``maximum`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Debouncer:
    window: float = 0.05
    maximum: float = 0.5
    _first: float | None = None
    _deadline: float | None = None

    def add(self, now: float) -> float:
        """Records an event at `now`; returns the batch's deadline."""
        if self._first is None:
            self._first = now
        self._deadline = min(now + self.window, self._first + self.maximum)
        return self._deadline

    @property
    def deadline(self) -> float | None:
        """When the open batch is due, or None when no event is waiting."""
        return self._deadline

    def due(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    def flush(self) -> None:
        """Closes the batch: the next event opens a new one."""
        self._first = None
        self._deadline = None
