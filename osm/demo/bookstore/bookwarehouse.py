"""The bookwarehouse app: counts the restocks that bookstores POST to /restock-books.

OSM's warehouse kept its stock in MySQL; here a counter per calling bookstore is enough to
show that bookstore-v1 and bookstore-v2 reach it through the mesh (or that they cannot).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

from osm.demo.bookstore import process, wire


@dataclass(frozen=True)
class Settings:
    identity: str = "bookwarehouse"
    host: str = "0.0.0.0"
    port: int = 14001
    report_every: float = 10.0


class Warehouse:
    """The warehouse's counters and its HTTP routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.restocks = 0
        self.books_restocked = 0
        self.requests = 0
        self.by_bookstore: Counter[str] = Counter()
        self._reported = 0

    def metrics(self) -> dict[str, object]:
        return {
            "role": "bookwarehouse",
            "identity": self.settings.identity,
            "restocks": self.restocks,
            "books_restocked": self.books_restocked,
            "by_bookstore": dict(self.by_bookstore),
            "requests": self.requests,
        }

    async def handle(self, request: wire.Request) -> wire.Response:
        self.requests += 1
        headers = {"identity": self.settings.identity}
        route = (request.method, request.path)
        if route == ("POST", "/restock-books"):
            return self._restock(request, headers)
        if route == ("GET", "/ready"):
            return wire.text_response("ready\n", headers=headers)
        if route == ("GET", "/metrics"):
            return wire.json_response(self.metrics(), headers=headers)
        known = {"/restock-books", "/ready", "/metrics"}
        if request.path in known:
            return wire.text_response(f"{request.method} not allowed\n", 405, headers)
        return wire.text_response(f"no route {request.path}\n", 404, headers)

    def _restock(self, request: wire.Request, headers: dict[str, str]) -> wire.Response:
        try:
            payload = json.loads(request.body or b"{}")
            books = int(payload.get("books", 1)) if isinstance(payload, dict) else 1
        except (ValueError, TypeError):
            return wire.text_response('body must be JSON like {"books": 5}\n', 400, headers)
        self.restocks += 1
        self.books_restocked += books
        self.by_bookstore[request.headers.get("client-identity", "unknown")] += 1
        return wire.json_response({"restocked": books, "restocks": self.restocks}, 200, headers)

    def report(self) -> None:
        if self.restocks != self._reported:
            self._reported = self.restocks
            callers = ", ".join(f"{k} {v}" for k, v in sorted(self.by_bookstore.items()))
            process.log(
                self.settings.identity,
                f"{self.restocks} restocks, {self.books_restocked} books ({callers})",
            )


async def main(settings: Settings, stopped: asyncio.Event) -> None:
    warehouse = Warehouse(settings)
    server = await wire.Server.start(warehouse.handle, settings.host, settings.port)
    process.log(settings.identity, f"bookwarehouse listening on {settings.host}:{server.port}")
    await process.every(settings.report_every, stopped, warehouse.report)
    await server.close()
    process.log(settings.identity, f"stopped after {warehouse.restocks} restocks")
