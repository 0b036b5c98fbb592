"""bench/_load.py's open-loop generator and outcomes, and bench/soak.py's verdict rules."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench import _load, soak

# -- the generator -------------------------------------------------------------------------
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 7\r\n\r\nno peer"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


async def serve(answer: bytes | None, close: bool) -> tuple[asyncio.Server, int]:
    """A server that answers every request's head with ``answer`` (None: never answers;
    ``close``: closes the connection instead of answering)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if close:
                    break
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def run_generator(answer: bytes | None, close: bool, port: int | None, timeout: float) -> None:
    """Half a second at 100/s against `serve` (or a closed ``port``); lines on stdout."""

    async def main() -> None:
        server, bound = await serve(answer, close)
        args = argparse.Namespace(
            url=f"http://127.0.0.1:{bound if port is None else port}",
            paths="/a,/b",
            header=["client-identity: test"],
            rate=100.0,
            timeout=timeout,
            connections=4,
        )
        generator = _load.Generator(args)
        try:
            await generator.run(duration=0.5, report_every=10.0)
        finally:
            server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("answer", "close", "closed_port", "outcome"),
    [
        (OK, False, False, "ok"),
        (UNAVAILABLE, False, False, "status_5xx"),
        (NOT_FOUND, False, False, "status_4xx"),
        (None, False, False, "timeout"),
        (None, True, False, "reset"),
        (b"SPDY/9 what\r\n\r\n", False, False, "protocol"),
        (OK, False, True, "connect"),
    ],
)
def test_every_due_request_gets_exactly_one_outcome(
    answer: bytes | None,
    close: bool,
    closed_port: bool,
    outcome: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = None
    if closed_port:
        with socket.socket() as probe:  # a port nobody listens on once it is closed
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    # A second to answer (a busy machine), but only 0.2 s where nothing answers.
    run_generator(answer, close, port, timeout=0.2 if outcome == "timeout" else 1.0)
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["final"] is True
    assert line["scheduled"] == 50  # 0.5 s at 100/s: due by the clock, whatever the answers
    assert line["requests"] == line[outcome] == 50
    if outcome != "ok":
        assert outcome in line["examples"]
    if outcome == "status_5xx":
        assert line["statuses"] == {"503": 50}
        assert "no peer" in line["examples"]["status_5xx"]


def test_quantiles_come_from_buckets_two_percent_wide() -> None:
    hist: dict[int, int] = {}
    for ms in range(1, 101):  # 1..100 ms, once each
        index = _load.bucket(ms / 1000)
        hist[index] = hist.get(index, 0) + 1
    assert _load.quantile(hist, 0.50) == pytest.approx(50, rel=0.02)
    assert _load.quantile(hist, 0.99) == pytest.approx(99, rel=0.02)
    assert _load.quantile({}, 0.5) is None


# -- the verdicts --------------------------------------------------------------------------
def series(minutes: float, per_hour: float, noise: float, every_s: float = 10) -> list:
    """(hours, value) samples every ``every_s`` rising at ``per_hour`` with alternating
    +-``noise``."""
    count = int(minutes * 60 / every_s) + 1
    return [
        (i * every_s / 3600, 100 + per_hour * i * every_s / 3600 + (noise if i % 2 else -noise))
        for i in range(count)
    ]


def step(minutes: float, at_minute: float, by: float, every_s: float = 10) -> list:
    """Flat at 100, then at 100 + ``by`` from ``at_minute`` on."""
    count = int(minutes * 60 / every_s) + 1
    return [
        (i * every_s / 3600, 100 + (by if i * every_s >= at_minute * 60 else 0.0))
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("points", "verdict"),
    [
        (series(25, 0.0, 0.3), "flat"),  # noise only
        (series(25, 0.5, 0.0), "flat"),  # below the 1 MB/h floor
        (series(25, 4.0, 0.05), "GROWS"),  # +1.7 MB over 25 min, noise 0.05
        (series(25, 4.0, 2.0), "flat"),  # the same rise inside +-2 MB of noise
        (step(25, at_minute=8, by=10.0), "STEP"),  # +10 MB in a burst, then held
        (series(2, 30.0, 0.0), "inconclusive"),  # a 2-minute window: warm-up or leak
        (series(0.5, 30.0, 0.0), "too"),  # 4 samples
    ],
)
def test_growth_needs_the_floor_the_noise_a_long_window_and_to_last(
    points: list[tuple[float, float]], verdict: str
) -> None:
    judged, _slope = soak.judge(points, soak.FLOORS["rss_mb"], " MB")
    assert judged.split(" ")[0] == verdict


def test_interval_lines_merge_into_one_histogram_and_named_failures() -> None:
    lines = [
        {
            "requests": 3, "ok": 2, "scheduled": 3, "behind": 0, "status_5xx": 1,
            "statuses": {"503": 1}, "examples": {"status_5xx": "HTTP/1.1 503: 'x'"},
            "hist": {str(_load.bucket(0.002)): 2}, "late_ms_max": 1.0, "max_ms": 2.0,
        },
        {
            "requests": 2, "ok": 1, "scheduled": 2, "behind": 1, "reset": 1,
            "examples": {"reset": "ConnectionResetError()"},
            "hist": {str(_load.bucket(0.010)): 2}, "late_ms_max": 12.0, "max_ms": 10.0,
        },
    ]  # fmt: skip
    merged = soak.merge(lines)
    assert (merged["requests"], merged["ok"], merged["failures"], merged["behind"]) == (5, 3, 2, 1)
    assert merged["p50_ms"] == pytest.approx(2, rel=0.02)
    assert merged["max_ms"] == 10.0
    assert soak.describe_failures(merged) == (
        "status_5xx 1 (503 x1; HTTP/1.1 503: 'x'), reset 1 (ConnectionResetError())"
    )
