"""The trace store (osm.tracing, issue #18): span ingestion rate and query latency.

Ingestion: spans per second through ``POST /api/v2/spans`` (aiohttp client, batches of
``--batch`` spans as Envoy's reporter sends them, ``--concurrency`` in flight) and, in the
same run, straight into the store (`TraceStore.accept`, no HTTP or JSON) as the baseline.
Queries, with ``--n`` spans stored: ``/api/v2/traces`` latency (p50/p99 over ``--queries``
requests) for a service, a service and span name, an annotation query, a minimum duration,
a service that has no trace in the window (the worst case: every trace in the window is
tested), and ``/api/v2/trace/{id}``, ``/api/v2/services``, ``/api/v2/dependencies``.

    .venv/bin/python bench/trace_store.py [--n 100000] [--batch 50] [--concurrency 4]
                                          [--queries 200] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from osm.base import wellknown
from osm.tracing import model, server
from osm.tracing.store import Limits, TraceStore

SERVICES = [f"service-{n}" for n in range(20)]
NOW_MS = int(time.time() * 1000)


def make_trace(rng: random.Random, number: int) -> list[dict[str, Any]]:
    """An Envoy-like trace: a chain of 2-6 client/server span pairs over the last hour."""
    trace_id = f"{rng.getrandbits(64) | 1:016x}"
    start = (NOW_MS - rng.randint(0, 3_600_000)) * 1000
    spans: list[dict[str, Any]] = []
    parent = None
    for hop in range(rng.randint(1, 3)):
        caller, callee = rng.sample(SERVICES, 2)
        span_id = f"{rng.getrandbits(64) | 1:016x}"
        common = {"traceId": trace_id, "id": span_id, "name": f"get /api/{hop}"}
        duration = rng.randint(100, 100_000)
        tags = {
            "http.method": "GET",
            "http.url": f"http://{callee}.bookstore:14001/api/{hop}",
            "http.status_code": "500" if rng.random() < 0.02 else "200",
            "upstream_cluster": f"bookstore/{callee}|14001",
            "node_id": f"{number}.{caller}",
            "guid:x-request-id": f"{rng.getrandbits(128):032x}",
            "response_flags": "-",
        }
        if tags["http.status_code"] == "500":
            tags["error"] = "true"
        began = start + hop * 10
        client = {
            **common, "kind": "CLIENT", "timestamp": began, "duration": duration, "tags": tags,
            "localEndpoint": {"serviceName": caller, "ipv4": "10.0.0.1"},
        }  # fmt: skip
        server_span = {
            **common, "kind": "SERVER", "shared": True, "timestamp": began + 5, "tags": tags,
            "duration": duration - 5, "localEndpoint": {"serviceName": callee, "ipv4": "10.0.0.2"},
        }  # fmt: skip
        if parent is not None:
            client["parentId"] = server_span["parentId"] = parent
        spans += [client, server_span]
        parent = span_id
    return spans


def spans_of(rng: random.Random, count: int) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    number = 0
    while len(spans) < count:
        spans += make_trace(rng, number)
        number += 1
    return spans[:count]


def batches(spans: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [spans[i : i + size] for i in range(0, len(spans), size)]


async def served(store: TraceStore) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(server.make_app(store), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, wellknown.LOCALHOST, 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def ingest_http(base: str, groups: list[list[dict[str, Any]]], concurrency: int) -> float:
    queue = list(reversed(groups))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while queue:
                group = queue.pop()
                async with session.post(f"{base}{wellknown.ZIPKIN_SPANS_PATH}", json=group) as r:
                    assert r.status == 202, await r.text()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began


async def ingest_direct(store: TraceStore, groups: list[list[dict[str, Any]]]) -> float:
    parsed = [[model.parse_span(span) for span in group] for group in groups]
    began = time.perf_counter()
    for group in parsed:
        await store.accept(group)
    return time.perf_counter() - began


async def latency(
    session: aiohttp.ClientSession, url: str, repeat: int
) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        began = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
            assert response.status == 200, body[:200]
        times.append((time.perf_counter() - began) * 1000)
        size = len(body)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], size


async def run(arguments: argparse.Namespace, directory: Path) -> None:
    rng = random.Random(18)
    ingest_n = min(arguments.n, 50_000)
    sample = spans_of(rng, ingest_n)
    groups = batches(sample, arguments.batch)
    limits = Limits(max_spans=max(arguments.n * 2, 1000), retention_s=None)

    print(f"# ingestion: {ingest_n} spans in batches of {arguments.batch}")
    print(f"{'path':<44} {'spans/s':>10} {'ratio':>7}")
    direct_store = await TraceStore.open(directory / "direct.db", limits)
    direct = ingest_n / await ingest_direct(direct_store, groups)
    await direct_store.close()
    store = await TraceStore.open(directory / "http.db", limits)
    runner, base = await served(store)
    try:
        through_http = ingest_n / await ingest_http(base, groups, arguments.concurrency)
        print(f"{'TraceStore.accept (baseline)':<44} {direct:>10,.0f} {1.0:>7.2f}")
        label = f"POST /api/v2/spans ({arguments.concurrency} in flight)"
        print(f"{label:<44} {through_http:>10,.0f} {through_http / direct:>7.2f}")

        rest = spans_of(rng, arguments.n - ingest_n) if arguments.n > ingest_n else []
        await store.accept([model.parse_span(span) for span in rest])
        stats = store.stats()
        print(f"\n# queries: {stats.spans} spans, {stats.traces} traces stored, "
              f"{stats.file_bytes / 1e6:.1f} MB; p50/p99 of {arguments.queries}")  # fmt: skip
        some_trace = sample[0]["traceId"]
        queries = [
            ("traces?serviceName=S&limit=10", "/api/v2/traces?serviceName=service-3&limit=10"),
            ("traces?serviceName=S&limit=100", "/api/v2/traces?serviceName=service-3&limit=100"),
            ("traces?serviceName&spanName",
             "/api/v2/traces?serviceName=service-3&spanName=get%20/api/2"),
            ("traces?annotationQuery=error", "/api/v2/traces?annotationQuery=error&limit=10"),
            ("traces?minDuration=90000", "/api/v2/traces?minDuration=90000&limit=10"),
            ("traces?serviceName=<none in window>", "/api/v2/traces?serviceName=nobody"),
            ("trace/{id}", f"/api/v2/trace/{some_trace}"),
            ("services", "/api/v2/services"),
            ("dependencies (1h, all traces)",
             f"/api/v2/dependencies?endTs={NOW_MS + 1000}&lookback=3700000"),
        ]  # fmt: skip
        print(f"{'GET /api/v2/...':<44} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>9}")
        async with aiohttp.ClientSession() as session:
            for label, path in queries:
                repeat = 5 if label.startswith("dependencies") else arguments.queries
                p50, p99, size = await latency(session, f"{base}{path}", repeat)
                print(f"{label:<44} {p50:>8.1f} {p99:>8.1f} {size:>9,}")
    finally:
        await runner.cleanup()
        await store.close()


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--n", type=int, default=100_000, help="spans stored for the queries")
    parse.add_argument("--batch", type=int, default=50)
    parse.add_argument("--concurrency", type=int, default=4)
    parse.add_argument("--queries", type=int, default=200)
    parse.add_argument("--dir", type=Path, default=None)
    arguments = parse.parse_args()
    if arguments.dir is not None:
        arguments.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(arguments, arguments.dir))
        return
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(arguments, Path(directory)))


if __name__ == "__main__":
    main()
