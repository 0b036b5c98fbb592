"""An open-loop HTTP/1.1 load generator (stdlib only): GETs at a fixed rate over a pool of
keep-alive connections, one JSON line per interval on stdout.

The one idea: requests are scheduled by the clock, not by replies. Request ``i`` is due at
``start + i / rate``; it is timed from that moment (so a slow server or a slow generator
shows as latency, not as fewer requests: no coordinated omission) and fails with
``timeout`` if it has no complete answer ``--timeout`` seconds after it was due. A request
takes an idle connection, or opens one while fewer than ``--connections`` are open, or
waits for one to come back. A connection that timed out or failed is closed, never reused.

Outcomes: ``ok`` (2xx/3xx), ``status_4xx``, ``status_5xx``, ``timeout``, ``connect``
(cannot connect: refused, unreachable, no such name), ``reset`` (the peer closed or reset
before answering; also on a reused connection), ``protocol`` (not a valid HTTP/1.1 answer).

Each line: ``t`` (seconds since start, at the interval's end), ``requests`` (requests
decided in the interval), the outcomes, ``scheduled`` (requests that fell due),
``late_ms_max`` (how late the generator's own loop issued a due request: the generator
falling behind), ``behind`` (requests issued more than ``LATE_S`` after they were due),
``in_flight``, ``connections`` (open), ``p50_ms``/``p99_ms``/``max_ms`` of the decided
requests (from a log-bucketed histogram, 2% resolution), and ``hist`` (that histogram,
bucket index -> count, for merging intervals; `bucket_ms` gives a bucket's value). The
last line has ``"final": true``; it is written once the requests still in flight at the
end have their outcome (within ``--timeout``) and covers the time since the previous line.

It runs as the unprivileged user of a pod's app (bench/soak.py starts it with ``ip netns
exec`` and ``setpriv``), so it imports nothing outside the standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

OUTCOMES = ("ok", "status_4xx", "status_5xx", "timeout", "connect", "reset", "protocol")
LATE_S = 0.010
"""A request issued later than this after it was due counts as ``behind``."""
GROWTH = 1.02
"""Histogram buckets grow by 2%: bucket ``b`` holds latencies near ``GROWTH ** b`` us."""
MAX_HEAD = 64 * 1024


def bucket(seconds: float) -> int:
    return max(0, int(math.log(max(seconds * 1e6, 1.0), GROWTH)))


def bucket_ms(index: int) -> float:
    return GROWTH ** (index + 0.5) / 1000.0


def quantile(hist: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, in ms; None if it is empty."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_ms(index)
    return bucket_ms(max(hist))


class ProtocolError(Exception):
    pass


@dataclass
class Interval:
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    hist: Counter[int] = field(default_factory=Counter)
    max_s: float = 0.0
    scheduled: int = 0
    behind: int = 0
    late_max_s: float = 0.0

    def line(self, t: float, in_flight: int, connections: int, final: bool) -> str:
        hist = dict(self.hist)
        p50, p99 = quantile(hist, 0.50), quantile(hist, 0.99)
        data = {
            "t": round(t, 3),
            "requests": sum(self.outcomes.values()),
            **{name: self.outcomes[name] for name in OUTCOMES},
            "scheduled": self.scheduled,
            "behind": self.behind,
            "late_ms_max": round(self.late_max_s * 1000, 3),
            "in_flight": in_flight,
            "connections": connections,
            "p50_ms": None if p50 is None else round(p50, 3),
            "p99_ms": None if p99 is None else round(p99, 3),
            "max_ms": round(self.max_s * 1000, 3),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "examples": self.examples,
            "hist": {str(k): v for k, v in sorted(hist.items())},
        }
        if final:
            data["final"] = True
        return json.dumps(data, separators=(",", ":"))


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urllib.parse.urlsplit(args.url)
        if url.scheme != "http" or not url.hostname:
            raise SystemExit(f"{args.url}: expected http://HOST[:PORT]")
        self.host = url.hostname
        self.port = url.port or 80
        self.authority = url.netloc
        self.paths = [p if p.startswith("/") else "/" + p for p in args.paths.split(",") if p]
        self.headers = "".join(f"{h}\r\n" for h in args.header)
        self.rate = args.rate
        self.timeout = args.timeout
        self.max_connections = args.connections
        self.idle: list[Connection] = []
        self.open = 0
        self.waiting: asyncio.Queue[Connection | None] | None = None
        self.waiters = 0
        self.in_flight = 0
        self.current = Interval()
        self.tasks: set[asyncio.Task[None]] = set()
        self.detail = ""
        """What the last failed exchange said (a status line and body, or an exception)."""

    # -- connections ------------------------------------------------------------------------
    async def acquire(self) -> Connection:
        """An idle connection, a new one, or the next one given back."""
        if self.idle:
            return self.idle.pop()
        if self.open < self.max_connections:
            self.open += 1
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except BaseException:
                self.open -= 1
                self.handoff()
                raise
            return Connection(reader, writer)
        assert self.waiting is not None
        while True:
            self.waiters += 1
            try:
                given = await self.waiting.get()
            finally:
                self.waiters -= 1
            if given is not None:
                return given
            if self.open < self.max_connections:  # a slot freed by a closed connection
                return await self.acquire()

    def release(self, connection: Connection) -> None:
        assert self.waiting is not None
        if self.waiters > self.waiting.qsize():  # someone waits: hand it over
            self.waiting.put_nowait(connection)
        else:
            self.idle.append(connection)

    def discard(self, connection: Connection) -> None:
        connection.close()
        self.open -= 1
        self.handoff()

    def handoff(self) -> None:
        assert self.waiting is not None
        if self.waiters > self.waiting.qsize():
            self.waiting.put_nowait(None)  # wake one waiter: it may open a connection

    # -- one request ----------------------------------------------------------------------
    async def exchange(self, connection: Connection, path: str) -> int:
        request = f"GET {path} HTTP/1.1\r\nHost: {self.authority}\r\n{self.headers}\r\n"
        connection.writer.write(request.encode("latin-1"))
        await connection.writer.drain()
        try:
            head = await connection.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise ConnectionResetError("closed before answering") from error
            raise ProtocolError("truncated head") from error
        except asyncio.LimitOverrunError as error:
            raise ProtocolError("head too long") from error
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size = int((await connection.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await connection.reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif "content-length" in headers:
                body = await connection.reader.readexactly(int(headers["content-length"]))
                if status >= 400:
                    self.detail = f"{lines[0]}: {body[:160].decode('latin-1')!r}"
            else:
                raise ProtocolError("no content-length")
        except (asyncio.IncompleteReadError, ValueError) as error:
            raise ProtocolError(f"bad body: {error}") from error
        if status >= 400 and "content-length" not in headers:
            self.detail = lines[0]
        if headers.get("connection", "").lower() == "close":
            raise _Close(status)
        return status

    async def one(self, due: float, path: str) -> None:
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        connection: Connection | None = None
        outcome = "ok"
        try:
            async with asyncio.timeout_at(due + self.timeout):
                try:
                    connection = await self.acquire()
                except OSError as error:
                    outcome, self.detail = "connect", repr(error)
                    return
                try:
                    status = await self.exchange(connection, path)
                except _Close as close:
                    self.discard(connection)
                    connection = None
                    status = close.status
                except OSError as error:  # reset, broken pipe, unreachable mid-exchange
                    outcome, self.detail = "reset", repr(error)
                    return
                except ProtocolError as error:
                    outcome, self.detail = "protocol", str(error)
                    return
                if connection is not None:
                    self.release(connection)
                    connection = None
                if status >= 400:
                    outcome = "status_5xx" if status >= 500 else "status_4xx"
                    self.current.statuses[status] += 1
        except TimeoutError:
            outcome = "timeout"
        except asyncio.CancelledError:  # the generator is stopping: no outcome
            outcome = ""
            raise
        finally:
            if connection is not None:
                self.discard(connection)
            self.in_flight -= 1
            if outcome:
                self.record(outcome, loop.time() - due)

    def record(self, outcome: str, elapsed: float) -> None:
        interval = self.current
        interval.outcomes[outcome] += 1
        if outcome != "ok" and outcome not in interval.examples:
            interval.examples[outcome] = self.detail if outcome != "timeout" else ""
        if outcome not in ("connect", "timeout"):
            interval.hist[bucket(elapsed)] += 1
            interval.max_s = max(interval.max_s, elapsed)

    # -- the schedule ---------------------------------------------------------------------
    async def run(self, duration: float, report_every: float) -> None:
        loop = asyncio.get_running_loop()
        self.waiting = asyncio.Queue()
        start = loop.time()
        end = start + duration
        period = 1.0 / self.rate
        number = 0
        next_report = start + report_every
        while True:
            now = loop.time()
            if now >= end:  # what is in flight ends by its own timeout, then the last line
                await asyncio.gather(*self.tasks, return_exceptions=True)
                line = self.current.line(loop.time() - start, self.in_flight, self.open, True)
                print(line, flush=True)
                break
            if now >= next_report:
                print(self.current.line(now - start, self.in_flight, self.open, False), flush=True)
                self.current = Interval()
                next_report += report_every
            due = start + number * period
            while due <= now and due < end:
                late = now - due
                interval = self.current
                interval.scheduled += 1
                interval.late_max_s = max(interval.late_max_s, late)
                if late > LATE_S:
                    interval.behind += 1
                task = loop.create_task(self.one(due, self.paths[number % len(self.paths)]))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                number += 1
                due = start + number * period
            await asyncio.sleep(max(0.0, min(due, next_report, end) - loop.time()))
        for connection in self.idle:
            connection.close()


class _Close(Exception):
    """The answer was complete but the server closes the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://HOST:PORT of the service")
    parser.add_argument("--paths", default="/", help="comma-separated, taken in turn")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between lines")
    parser.add_argument("--timeout", type=float, default=1.5, help="per request, seconds")
    parser.add_argument("--connections", type=int, default=32, help="at most this many open")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.interval <= 0 or args.connections < 1:
        raise SystemExit("--rate, --duration, --interval and --connections must be positive")
    generator = Generator(args)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(generator.run(args.duration, args.interval))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
