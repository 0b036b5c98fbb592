"""What the live view shows: the demo apps' counters as plain values, and a way to fetch them.

The view takes a ``sample()`` callable that returns `DemoCounters`, so it knows nothing of
how counters are fetched. `parse` turns one app's /metrics JSON into a part, `unreachable`
stands in for an app that did not answer, and `assemble` puts the parts together. `fetch`
does all three over plain HTTP for the simple case where every app is reachable by URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from osm.demo.bookstore import wire

ROLES = ("client", "bookstore", "bookwarehouse")


@dataclass(frozen=True)
class ClientCounters:
    """A bookbuyer or bookthief. `problem` says why its counters could not be read."""

    identity: str
    requests: int = 0
    requests_per_second: float = 0.0
    ok: int = 0
    denied: int = 0
    errors: int = 0
    by_identity: Mapping[str, int] = field(default_factory=dict)
    problem: str = ""


@dataclass(frozen=True)
class BookstoreCounters:
    """One bookstore version."""

    identity: str
    books_sold: int = 0
    sales_per_second: float = 0.0
    restocks_ok: int = 0
    restocks_failed: int = 0
    problem: str = ""


@dataclass(frozen=True)
class WarehouseCounters:
    """The bookwarehouse."""

    identity: str
    restocks: int = 0
    books_restocked: int = 0
    problem: str = ""


Part = ClientCounters | BookstoreCounters | WarehouseCounters


@dataclass(frozen=True)
class DemoCounters:
    """One sample of every app's counters, each group sorted by identity."""

    clients: tuple[ClientCounters, ...] = ()
    bookstores: tuple[BookstoreCounters, ...] = ()
    warehouses: tuple[WarehouseCounters, ...] = ()


def _int(payload: Mapping[str, object], key: str) -> int:
    value = payload.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(payload: Mapping[str, object], key: str) -> float:
    value = payload.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _counts(payload: Mapping[str, object], key: str) -> dict[str, int]:
    value = payload.get(key)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int)}


def parse(payload: Mapping[str, object]) -> Part:
    """One app's /metrics JSON as a part; missing or malformed numbers read as zero."""
    role = payload.get("role")
    identity = str(payload.get("identity") or role)
    if role == "client":
        return ClientCounters(
            identity=identity,
            requests=_int(payload, "requests"),
            requests_per_second=_float(payload, "requests_per_second"),
            ok=_int(payload, "ok"),
            denied=_int(payload, "denied"),
            errors=_int(payload, "errors"),
            by_identity=_counts(payload, "by_identity"),
        )
    if role == "bookstore":
        return BookstoreCounters(
            identity=identity,
            books_sold=_int(payload, "books_sold"),
            sales_per_second=_float(payload, "sales_per_second"),
            restocks_ok=_int(payload, "restocks_ok"),
            restocks_failed=_int(payload, "restocks_failed"),
        )
    if role == "bookwarehouse":
        return WarehouseCounters(
            identity=identity,
            restocks=_int(payload, "restocks"),
            books_restocked=_int(payload, "books_restocked"),
        )
    raise ValueError(f"/metrics payload has role {role!r}; valid roles: {', '.join(ROLES)}")


def unreachable(role: str, label: str, problem: str) -> Part:
    """A stand-in for an app whose counters could not be read; `problem` says why."""
    if role == "client":
        return ClientCounters(identity=label, problem=problem)
    if role == "bookstore":
        return BookstoreCounters(identity=label, problem=problem)
    if role == "bookwarehouse":
        return WarehouseCounters(identity=label, problem=problem)
    raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")


def assemble(parts: Iterable[Part]) -> DemoCounters:
    clients: list[ClientCounters] = []
    bookstores: list[BookstoreCounters] = []
    warehouses: list[WarehouseCounters] = []
    for part in parts:
        if isinstance(part, ClientCounters):
            clients.append(part)
        elif isinstance(part, BookstoreCounters):
            bookstores.append(part)
        else:
            warehouses.append(part)
    return DemoCounters(
        clients=tuple(sorted(clients, key=lambda p: p.identity)),
        bookstores=tuple(sorted(bookstores, key=lambda p: p.identity)),
        warehouses=tuple(sorted(warehouses, key=lambda p: p.identity)),
    )


async def _fetch_one(role: str, url: str, timeout: float) -> Part:
    label = urlsplit(url).netloc or url
    try:
        response = await wire.request("GET", url, timeout=timeout)
        if response.status != 200:
            return unreachable(role, label, f"HTTP {response.status}")
        payload = response.json()
        if not isinstance(payload, dict):
            return unreachable(role, label, "/metrics is not a JSON object")
        return parse(payload)
    except TimeoutError:
        return unreachable(role, label, f"no answer within {timeout:g} s")
    except (OSError, ValueError, wire.ProtocolError) as error:
        return unreachable(role, label, str(error) or type(error).__name__)


async def fetch_async(targets: Sequence[tuple[str, str]], timeout: float = 1.0) -> DemoCounters:
    """Reads every (role, metrics URL) target at once; a failing one becomes `unreachable`."""
    for role, _ in targets:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    parts = await asyncio.gather(*(_fetch_one(role, url, timeout) for role, url in targets))
    return assemble(parts)


def fetch(targets: Sequence[tuple[str, str]], timeout: float = 1.0) -> DemoCounters:
    """`fetch_async` for callers without an event loop (a view's ``sample()``).

    Each target is (role, URL of its /metrics), e.g. ("client", "http://127.0.0.1:14002/metrics").
    """
    return asyncio.run(fetch_async(targets, timeout))
