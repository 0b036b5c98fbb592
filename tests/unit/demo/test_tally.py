"""The client's counters and the sliding-window rate, on a fake clock."""

from __future__ import annotations

from osm.demo.bookstore import client, meter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_over_the_window_and_forgets_old_events() -> None:
    clock = FakeClock()
    rate = meter.RateWindow(5.0, clock)

    rate.record()
    assert rate.rate() == 1.0  # young: over at least one second, not a thousand per second
    for _ in range(10):
        clock.now += 0.5
        rate.record()
    assert rate.rate() == 10 / 5.0
    clock.now += 10
    assert rate.rate() == 0.0


def test_tally_sorts_outcomes() -> None:
    clock = FakeClock()
    tally = client.Tally("bookbuyer", clock)

    outcomes = [
        tally.record_status(200, "bookstore-v1"),
        tally.record_status(200, "bookstore-v2"),
        tally.record_status(200, "bookstore-v1"),
        tally.record_status(403, None),
        tally.record_status(404, None),
        tally.record_status(503, None),
        tally.record_failure("timeout"),
        tally.record_failure("connect"),
    ]
    clock.now += 2
    metrics = tally.metrics()

    assert outcomes == ["ok"] * 3 + ["denied"] * 2 + ["http-error", "timeout", "connect"]
    assert metrics["requests"] == 8
    assert (metrics["ok"], metrics["denied"], metrics["errors"]) == (3, 2, 3)
    assert metrics["by_identity"] == {"bookstore-v1": 2, "bookstore-v2": 1}
    assert metrics["by_status"] == {"200": 3, "403": 1, "404": 1, "503": 1}
    assert metrics["by_status_class"] == {"2xx": 3, "4xx": 2, "5xx": 1}
    assert metrics["by_error"] == {"timeout": 1, "connect": 1}
    assert metrics["requests_per_second"] == 4.0
    assert metrics["uptime_seconds"] == 2.0
    assert metrics["last_outcome"] == "connect"
    assert "ok 3, denied 2, errors 3" in tally.summary()
