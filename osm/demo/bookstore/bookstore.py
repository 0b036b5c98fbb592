"""The bookstore app: sells books, says which version it is, restocks from the warehouse.

Every response carries an ``identity`` header (bookstore-v1, bookstore-v2) so that clients
can count which version the mesh's TrafficSplit sent them to. Every `restock_every` sales it
POSTs /restock-books to the warehouse in the background; a failed restock is counted and
logged, never fatal, and never delays a sale.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from osm.demo.bookstore import meter, process, wire


@dataclass(frozen=True)
class Settings:
    identity: str = "bookstore"
    host: str = "0.0.0.0"
    port: int = 14001
    warehouse_url: str = ""  # empty: sell without restocking
    restock_every: int = 5
    timeout: float = 1.5
    report_every: float = 10.0


class Bookstore:
    """The bookstore's counters and its HTTP routes; `close` waits for restocks in flight."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.books_sold = 0
        self.requests = 0
        self.by_client: Counter[str] = Counter()
        self.restocks_ok = 0
        self.restocks_failed = 0
        self.last_restock_error = ""
        self._sales = meter.RateWindow(10.0, clock)
        self._restocks: set[asyncio.Task[None]] = set()
        self._reported: tuple[int, int, int] = (0, 0, 0)

    def metrics(self) -> dict[str, object]:
        return {
            "role": "bookstore",
            "identity": self.settings.identity,
            "books_sold": self.books_sold,
            "sales_per_second": round(self._sales.rate(), 2),
            "by_client": dict(self.by_client),
            "restocks_ok": self.restocks_ok,
            "restocks_failed": self.restocks_failed,
            "last_restock_error": self.last_restock_error,
            "requests": self.requests,
        }

    async def handle(self, request: wire.Request) -> wire.Response:
        self.requests += 1
        headers = {"identity": self.settings.identity}
        routes = {
            "/buy-a-book/new": ("GET", self._sell),
            "/books-bought": ("GET", self._books_bought),
            "/ready": ("GET", self._ready),
            "/metrics": ("GET", self._metrics),
            "/": ("GET", self._page),
        }
        if request.path not in routes:
            return wire.text_response(f"no route {request.path}\n", 404, headers)
        method, answer = routes[request.path]
        if request.method != method:
            return wire.text_response(f"{request.path} takes {method}\n", 405, headers)
        response = answer(request)
        return wire.Response(response.status, {**response.headers, **headers}, response.body)

    def _sell(self, request: wire.Request) -> wire.Response:
        self.books_sold += 1
        self._sales.record()
        self.by_client[request.headers.get("client-identity", "unknown")] += 1
        if self.settings.warehouse_url and self.books_sold % self.settings.restock_every == 0:
            task = asyncio.create_task(self._restock(wire.trace_headers(request.headers)))
            self._restocks.add(task)
            task.add_done_callback(self._restocks.discard)
        return wire.json_response(
            {"identity": self.settings.identity, "books_sold": self.books_sold}
        )

    def _books_bought(self, _: wire.Request) -> wire.Response:
        return wire.json_response(
            {"identity": self.settings.identity, "books_bought": self.books_sold}
        )

    def _ready(self, _: wire.Request) -> wire.Response:
        return wire.text_response("ready\n")

    def _metrics(self, _: wire.Request) -> wire.Response:
        return wire.json_response(self.metrics())

    def _page(self, _: wire.Request) -> wire.Response:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in self.metrics().items()
        )
        title = html.escape(self.settings.identity)
        page = f"<!doctype html><title>{title}</title><h1>{title}</h1><table>{rows}</table>\n"
        return wire.text_response(page, content_type="text/html; charset=utf-8")

    async def _restock(self, trace: dict[str, str]) -> None:
        """Restocks from the warehouse, forwarding the trace headers of the sale that
        asked for it (``trace``), so the restock is part of the buyer's trace."""
        url = self.settings.warehouse_url.rstrip("/") + "/restock-books"
        body = json.dumps({"books": self.settings.restock_every}).encode()
        headers = {
            **trace,
            "content-type": "application/json",
            "client-identity": self.settings.identity,
        }
        try:
            response = await wire.request(
                "POST", url, headers=headers, body=body, timeout=self.settings.timeout
            )
            error = "" if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (OSError, wire.ProtocolError) as failure:  # TimeoutError is an OSError
            error = f"{type(failure).__name__}: {failure}".rstrip(": ")
        if error:
            self.restocks_failed += 1
            if not self.last_restock_error:
                process.log(self.settings.identity, f"restock from {url} failed: {error}")
        else:
            self.restocks_ok += 1
            if self.last_restock_error or self.restocks_ok == 1:
                process.log(self.settings.identity, f"restocked from {url}")
        self.last_restock_error = error

    def report(self) -> None:
        now = (self.books_sold, self.restocks_ok, self.restocks_failed)
        if now != self._reported:
            self._reported = now
            buyers = ", ".join(f"{k} {v}" for k, v in sorted(self.by_client.items()))
            process.log(
                self.settings.identity,
                f"sold {self.books_sold} ({buyers}); restocks ok {self.restocks_ok}"
                f" failed {self.restocks_failed}",
            )

    async def close(self) -> None:
        if self._restocks:
            await asyncio.wait(list(self._restocks), timeout=self.settings.timeout)


async def main(settings: Settings, stopped: asyncio.Event) -> None:
    store = Bookstore(settings)
    server = await wire.Server.start(store.handle, settings.host, settings.port)
    restock = settings.warehouse_url or "nowhere (no WAREHOUSE_URL)"
    process.log(
        settings.identity,
        f"bookstore listening on {settings.host}:{server.port}; restocks from {restock}",
    )
    await process.every(settings.report_every, stopped, store.report)
    await server.close()
    await store.close()
    process.log(settings.identity, f"stopped after selling {store.books_sold} books")
