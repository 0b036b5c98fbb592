"""The push loop's debounce: a sliding window, capped by a maximum (fake clock)."""

from __future__ import annotations

import pytest

from osm.controller.debounce import Debouncer


@pytest.mark.parametrize(
    ("events", "expected_deadline"),
    [
        ([0.0], 0.05),
        ([0.0, 0.03], 0.08),
        ([0.0, 0.03, 0.06, 0.09], 0.14),
        ([0.0, 0.2, 0.4, 0.48], 0.5),
    ],
    ids=[
        "one event waits one window",
        "a second event slides the window",
        "a burst keeps sliding",
        "a steady stream is cut at the maximum",
    ],
)
def test_deadline(events: list[float], expected_deadline: float) -> None:
    debouncer = Debouncer(window=0.05, maximum=0.5)
    for now in events:
        debouncer.add(now)
    assert debouncer.deadline == pytest.approx(expected_deadline)
    assert not debouncer.due(expected_deadline - 0.001)
    assert debouncer.due(expected_deadline)


def test_flush_starts_a_new_batch() -> None:
    debouncer = Debouncer(window=0.05, maximum=0.5)
    debouncer.add(0.0)
    debouncer.add(0.45)
    debouncer.flush()
    assert debouncer.deadline is None and not debouncer.due(10.0)
    assert debouncer.add(1.0) == pytest.approx(1.05)
