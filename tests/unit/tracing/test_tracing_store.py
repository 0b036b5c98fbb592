"""The SQLite trace store: its SQL answers queries as `model.matches` does, spans survive a
restart and a killed process, duplicates are stored once, and retention bounds the store
by span count and by age (a fake clock) so its file stops growing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from osm.tracing import model
from osm.tracing.store import Limits, TraceStore

NOW_MS = 1_700_000_000_000
NOW_US = NOW_MS * 1000
SERVICES = ["bookbuyer", "bookstore", "bookwarehouse", "bookthief"]
NAMES = ["get /books", "post /buy", "query"]


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    stores: list[TraceStore] = []

    async def open_store(**options: Any) -> TraceStore:
        store = await TraceStore.open(tmp_path / "traces.db", **options)
        stores.append(store)
        return store

    yield open_store
    for store in stores:
        if store._write is not None:
            await store.close()


def trace(number: int, spans: int = 3, start_us: int = NOW_US, **extra: Any) -> list[model.Span]:
    """A chain of ``spans`` spans: service i calls service i+1."""
    trace_id = f"{number + 1:016x}"
    out = []
    for index in range(spans):
        document: dict[str, Any] = {
            "traceId": trace_id,
            "id": f"{index + 1:016x}",
            "kind": "CLIENT" if index < spans - 1 else "SERVER",
            "name": NAMES[index % len(NAMES)],
            "timestamp": start_us + index * 10,
            "duration": 1000 - index * 100,
            "localEndpoint": {"serviceName": SERVICES[index % len(SERVICES)]},
            **extra,
        }
        if index:
            document["parentId"] = f"{index:016x}"
        out.append(model.parse_span(document))
    return out


def ids(traces: list[list[str]]) -> list[str]:
    return [json.loads(spans[0])["traceId"] for spans in traces]


# -- the SQL and the reference predicate ----------------------------------------------------


def random_trace(rng: random.Random, number: int) -> list[model.Span]:
    trace_id = f"{number + 1:016x}"
    spans = []
    for index in range(rng.randint(1, 4)):
        document: dict[str, Any] = {
            "traceId": trace_id,
            "id": f"{index + 1:016x}",
            "timestamp": NOW_US - rng.randint(0, 3_600_000_000) if rng.random() < 0.9 else 0,
            "duration": rng.choice([0, 10, 100, 1000, 5000]),
            "name": rng.choice([*NAMES, ""]),
            "kind": rng.choice([None, *model.KINDS]),
        }
        if index and rng.random() < 0.9:
            document["parentId"] = f"{rng.randint(1, index):016x}"
        if rng.random() < 0.9:
            document["localEndpoint"] = {"serviceName": rng.choice(SERVICES)}
        if rng.random() < 0.5:
            document["remoteEndpoint"] = {"serviceName": rng.choice(SERVICES)}
        tags = {}
        for key, values in (("error", ["", "true"]), ("http.method", ["GET", "POST"])):
            if rng.random() < 0.3:
                tags[key] = rng.choice(values)
        document["tags"] = tags
        if rng.random() < 0.3:
            document["annotations"] = [{"timestamp": NOW_US, "value": rng.choice(["ws", "wr"])}]
        spans.append(model.parse_span(document))
    return spans


def random_query(rng: random.Random) -> dict[str, str]:
    choices: dict[str, list[str]] = {
        "serviceName": SERVICES,
        "remoteServiceName": SERVICES,
        "spanName": NAMES,
        "annotationQuery": ["error", "error=true", "http.method=GET", "ws", "ws and error"],
        "minDuration": ["10", "100", "1000"],
        "endTs": [str(NOW_MS), str(NOW_MS - 1_800_000)],
        "lookback": ["600000", "1800000", "3600000"],
        "limit": ["1", "5", "100"],
    }
    query = {key: rng.choice(values) for key, values in choices.items() if rng.random() < 0.35}
    if "minDuration" in query and rng.random() < 0.5:
        query["maxDuration"] = str(int(query["minDuration"]) * 10)
    return query


async def test_the_sql_answers_queries_as_the_reference_predicate(opened: Any) -> None:
    rng = random.Random(18)
    store = await opened()
    traces = [random_trace(rng, number) for number in range(150)]
    for trace_spans in traces:
        await store.accept(trace_spans)
    for _ in range(300):
        parameters = random_query(rng)
        query = model.Query.from_params(parameters, NOW_MS)
        matching = [t for t in traces if model.matches(query, t)]
        matching.sort(key=lambda t: (-(model.trace_timestamp(t) or 0), t[0].trace_id))
        expected = [t[0].trace_id for t in matching[: query.limit]]
        assert ids(await store.query(query)) == expected, parameters


async def test_a_trace_is_its_spans_in_the_order_they_came(opened: Any) -> None:
    store = await opened()
    spans = trace(1, spans=4)
    await store.accept(spans[2:])
    await store.accept(spans[:2])
    stored = await store.trace(spans[0].trace_id)
    assert [json.loads(body)["id"] for body in stored] == [s.id for s in spans[2:] + spans[:2]]
    assert await store.trace("00000000000000ff") == []


async def test_exact_duplicates_are_stored_once(opened: Any) -> None:
    store = await opened()
    spans = trace(1)
    assert await store.accept(spans) == 3
    assert await store.accept(spans) == 0
    assert store.stats().spans == 3
    assert len(await store.trace(spans[0].trace_id)) == 3


async def test_names_of_services_spans_and_remote_services(opened: Any) -> None:
    store = await opened()
    remote = {"remoteEndpoint": {"serviceName": "bookstore"}}
    await store.accept(trace(1) + trace(2, spans=1, **remote))
    assert await store.services() == ["bookbuyer", "bookstore", "bookwarehouse"]
    assert await store.span_names("BookBuyer") == ["get /books"]
    assert await store.remote_services("bookbuyer") == ["bookstore"]
    assert await store.remote_services("nobody") == []


# -- durability -----------------------------------------------------------------------------


async def test_spans_survive_a_restart(opened: Any) -> None:
    store = await opened()
    spans = trace(7)
    await store.accept(spans)
    await store.close()
    reopened = await opened()
    assert reopened.stats().spans == 3
    assert [json.loads(b) for b in await reopened.trace(spans[0].trace_id)] == [
        s.to_json() for s in spans
    ]
    assert await reopened.services() == ["bookbuyer", "bookstore", "bookwarehouse"]


KILLED = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from osm.tracing import model
    from osm.tracing.store import TraceStore

    async def main():
        store = await TraceStore.open(sys.argv[1])
        span = model.parse_span({"traceId": "abc", "id": "1", "timestamp": 5,
                                 "localEndpoint": {"serviceName": "killed"}})
        await store.accept([span])
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def test_an_accepted_span_survives_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    result = subprocess.run(
        [sys.executable, "-c", KILLED, str(path)], timeout=60, capture_output=True, text=True
    )
    assert result.returncode == -signal.SIGKILL, result.stderr

    async def read() -> tuple[int, list[str]]:
        store = await TraceStore.open(path)
        try:
            return store.stats().spans, await store.services()
        finally:
            await store.close()

    assert asyncio.run(read()) == (1, ["killed"])


# -- retention ------------------------------------------------------------------------------


async def test_the_span_bound_prunes_whole_traces_least_recently_written_first(
    opened: Any,
) -> None:
    clock = Clock()
    store = await opened(limits=Limits(max_spans=100, retention_s=None), clock=clock)
    for number in range(100):
        clock.now += 1
        await store.accept(trace(number, spans=5 if number < 30 else 2))
        assert store.stats().spans <= 100
    kept = {number for number in range(100) if await store.trace(trace(number)[0].trace_id)}
    assert kept == set(range(min(kept), 100)), "the newest traces are kept, whole"
    assert min(kept) > 30
    for number in kept:
        assert len(await store.trace(trace(number)[0].trace_id)) == 2
    assert await store.services() == ["bookbuyer", "bookstore"], "pruned services are gone"
    assert store.stats().pruned_spans == 30 * 5 + 70 * 2 - store.stats().spans


async def test_the_age_bound_prunes_traces_not_written_to_for_the_retention(opened: Any) -> None:
    clock = Clock()
    store = await opened(limits=Limits(max_spans=1000, retention_s=60), clock=clock)
    await store.accept(trace(1))
    clock.now += 30
    await store.accept(trace(2))
    clock.now += 31
    assert await store.prune() == 3
    assert await store.trace(trace(1)[0].trace_id) == []
    assert len(await store.trace(trace(2)[0].trace_id)) == 3
    clock.now += 30
    await store.accept(trace(3, spans=1))
    assert await store.trace(trace(2)[0].trace_id) == [], "writes apply the age bound too"
    assert store.stats().spans == 1


async def test_a_trace_written_to_again_is_kept(opened: Any) -> None:
    clock = Clock()
    store = await opened(limits=Limits(max_spans=1000, retention_s=60), clock=clock)
    first, rest = trace(1)[:1], trace(1)[1:]
    await store.accept(first)
    clock.now += 50
    await store.accept(rest)
    clock.now += 50
    await store.prune()
    assert len(await store.trace(first[0].trace_id)) == 3


async def test_the_file_stops_growing_at_the_span_bound(tmp_path: Path, opened: Any) -> None:
    store = await opened(limits=Limits(max_spans=2000, retention_s=None))
    tags = {"http.url": "http://bookstore.bookstore:14001/books-bought" * 3}
    number = 0

    async def write(count: int) -> None:
        nonlocal number
        for _ in range(count):
            await store.accept(trace(number, spans=10, tags=tags))
            number += 1

    await write(400)
    filled = os.stat(tmp_path / "traces.db").st_size
    await write(1200)
    assert store.stats().spans <= 2000
    grown = os.stat(tmp_path / "traces.db").st_size
    assert grown <= filled * 1.25, (filled, grown)
