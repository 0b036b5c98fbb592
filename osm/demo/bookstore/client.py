"""The client app (bookbuyer, bookthief): buys books forever and counts what happens.

bookbuyer and bookthief are this one program with different identities; the mesh, not the
client, decides which of them may buy. Each request's outcome is one of: ``ok`` (2xx),
``denied`` (403 or 404, as the mesh answers for a caller that no TrafficTarget allows),
``http-error`` (any other status), ``timeout``, ``connect`` (refused, unreachable, no such
name), ``reset`` (closed before answering, as a sidecar does to a refused TLS peer) and
``protocol`` (not HTTP). The counters are served as JSON on an admin port at /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from osm.demo.bookstore import meter, process, wire

PATHS = ("/buy-a-book/new", "/books-bought")
DENIED_STATUSES = frozenset({403, 404})


@dataclass(frozen=True)
class Settings:
    identity: str = "client"
    bookstore_url: str = "http://bookstore.bookstore:14001"
    rate: float = 5.0  # requests per second, both paths together
    timeout: float = 1.5
    host: str = "0.0.0.0"
    metrics_port: int = 14002
    report_every: float = 5.0  # seconds between summary lines; 0 logs every request


class Tally:
    """The client's counters; pure, so tests drive it with a fake clock."""

    def __init__(self, identity: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.identity = identity
        self.requests = 0
        self.ok = 0
        self.denied = 0
        self.errors = 0
        self.by_identity: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_error: Counter[str] = Counter()
        self.books_bought: int | None = None
        self.last_outcome = ""
        self._clock = clock
        self._started = clock()
        self._rate = meter.RateWindow(5.0, clock)

    def record_status(self, status: int, responder: str | None) -> str:
        """Counts one response and returns its outcome."""
        self._count()
        self.by_status[status] += 1
        if responder:
            self.by_identity[responder] += 1
        if 200 <= status < 300:
            self.ok += 1
            outcome = "ok"
        elif status in DENIED_STATUSES:
            self.denied += 1
            outcome = "denied"
        else:
            self.errors += 1
            outcome = "http-error"
        self.last_outcome = outcome
        return outcome

    def record_failure(self, kind: str) -> str:
        """Counts a request that got no response (timeout, connect, reset, protocol)."""
        self._count()
        self.errors += 1
        self.by_error[kind] += 1
        self.last_outcome = kind
        return kind

    def _count(self) -> None:
        self.requests += 1
        self._rate.record()

    def metrics(self) -> dict[str, object]:
        classes: Counter[str] = Counter()
        for status, count in self.by_status.items():
            classes[f"{status // 100}xx"] += count
        return {
            "role": "client",
            "identity": self.identity,
            "uptime_seconds": round(self._clock() - self._started, 1),
            "requests": self.requests,
            "requests_per_second": round(self._rate.rate(), 2),
            "ok": self.ok,
            "denied": self.denied,
            "errors": self.errors,
            "by_identity": dict(self.by_identity),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_status_class": dict(sorted(classes.items())),
            "by_error": dict(self.by_error),
            "books_bought": self.books_bought,
            "last_outcome": self.last_outcome,
        }

    def summary(self) -> str:
        served = ", ".join(f"{k} {v}" for k, v in sorted(self.by_identity.items())) or "nobody"
        return (
            f"{self._rate.rate():.1f} req/s; {self.requests} requests: ok {self.ok},"
            f" denied {self.denied}, errors {self.errors}; served by {served}"
        )


class Client:
    """Calls the bookstore at a steady rate and keeps a `Tally` of the outcomes."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.tally = Tally(settings.identity, clock)

    async def call(self, path: str) -> tuple[str, str]:
        """One GET of `path` on the bookstore; returns (outcome, a detail for the log)."""
        url = self.settings.bookstore_url.rstrip("/") + path
        headers = {"client-identity": self.settings.identity}
        try:
            response = await wire.request(
                "GET", url, headers=headers, timeout=self.settings.timeout
            )
        except TimeoutError:
            kind, detail = "timeout", f"no answer within {self.settings.timeout:g} s"
        except (ConnectionResetError, BrokenPipeError) as error:
            kind, detail = "reset", str(error) or type(error).__name__
        except OSError as error:
            kind, detail = "connect", str(error) or type(error).__name__
        except wire.ProtocolError as error:
            kind, detail = "protocol", str(error)
        else:
            responder = response.headers.get("identity")
            outcome = self.tally.record_status(response.status, responder)
            if path == "/books-bought" and outcome == "ok":
                self._note_books_bought(response)
            return outcome, f"GET {path} -> {response.status} from {responder or 'the mesh'}"
        return self.tally.record_failure(kind), f"GET {path} -> {kind}: {detail}"

    def _note_books_bought(self, response: wire.Response) -> None:
        with contextlib.suppress(ValueError, TypeError, LookupError):
            payload = json.loads(response.body)
            self.tally.books_bought = int(payload["books_bought"])

    async def run(self) -> None:
        """Calls the bookstore forever, alternating the two paths, at `settings.rate`."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.rate
        next_at = loop.time()
        previous = ""
        for number in itertools.count():
            outcome, detail = await self.call(PATHS[number % len(PATHS)])
            if self.settings.report_every <= 0:
                process.log(self.settings.identity, f"{outcome}: {detail}")
            elif outcome != previous:
                was = f" (was {previous})" if previous else ""
                process.log(self.settings.identity, f"now {outcome}{was}: {detail}")
            previous = outcome
            next_at = max(next_at + interval, loop.time())
            await asyncio.sleep(next_at - loop.time())

    async def handle_admin(self, request: wire.Request) -> wire.Response:
        if request.method != "GET":
            return wire.text_response("GET only\n", 405)
        if request.path == "/metrics":
            return wire.json_response(self.tally.metrics())
        if request.path == "/ready":
            return wire.text_response("ready\n")
        if request.path == "/":
            return wire.text_response(f"{self.settings.identity}: {self.tally.summary()}\n")
        return wire.text_response(f"no route {request.path}; try /metrics\n", 404)


async def main(settings: Settings, stopped: asyncio.Event) -> None:
    client = Client(settings)
    admin = await wire.Server.start(client.handle_admin, settings.host, settings.metrics_port)
    process.log(
        settings.identity,
        f"buying from {settings.bookstore_url} at {settings.rate:g} req/s;"
        f" counters at http://{settings.host}:{admin.port}/metrics",
    )

    def report() -> None:
        process.log(settings.identity, client.tally.summary())

    work = asyncio.create_task(client.run())
    watch = asyncio.create_task(process.every(settings.report_every, stopped, report))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, watch):
            task.cancel()
        await asyncio.gather(work, watch, return_exceptions=True)
        await admin.close()
    if work.done() and not work.cancelled() and work.exception() is not None:
        raise RuntimeError("the request loop stopped") from work.exception()
    process.log(settings.identity, f"stopped; {client.tally.summary()}")
