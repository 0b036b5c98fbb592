"""Store benchmark: MemoryStore (the baseline) against SqliteStore, side by side.

    python bench/store.py [--n 10000] [--latency-n 1000] [--repeat 3] [--dir DIR]

Measures, for each store, apply throughput with N objects as one batch (create, then an
update of all N) and as N single-object applies, and the watch latency: the time from an
apply call to a watcher receiving its event, over one apply at a time (p50, p99). Each
measurement runs ``--repeat`` times on a fresh store; the table shows the median with the
range, and the ratio of the medians against the memory store. SQLite runs with its default
``synchronous=FULL`` (an fsync per committed batch) and with NORMAL.
Not run by CI; nothing here is a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from osm.store import MemoryStore, SqliteStore, Store

StoreMaker = Callable[[], contextlib.AbstractAsyncContextManager[Store]]


def manifest(i: int, version: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{i:06}",
            "namespace": f"ns-{i % 20}",
            "labels": {"app": f"app-{i % 7}", "tier": "backend"},
            "annotations": {"owner": "bench"},
        },
        "data": {"version": str(version), "payload": "x" * 200},
    }


async def batch_create(store: Store, n: int) -> float:
    objects = [manifest(i) for i in range(n)]
    start = time.perf_counter()
    await store.apply(objects)
    return n / (time.perf_counter() - start)


async def batch_update(store: Store, n: int) -> float:
    await store.apply([manifest(i) for i in range(n)])
    objects = [manifest(i, version=1) for i in range(n)]
    start = time.perf_counter()
    await store.apply(objects)
    return n / (time.perf_counter() - start)


async def single_applies(store: Store, n: int) -> float:
    objects = [manifest(i) for i in range(n)]
    start = time.perf_counter()
    for obj in objects:
        await store.apply([obj])
    return n / (time.perf_counter() - start)


async def watch_latency(store: Store, n: int) -> tuple[float, float]:
    """One apply at a time; waits for the watcher to get each event before the next."""
    received: asyncio.Queue[float] = asyncio.Queue()

    async def watcher(events: AsyncIterator[Any]) -> None:
        async for _ in events:
            received.put_nowait(time.perf_counter())

    task = asyncio.create_task(watcher(store.watch()))
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        await store.apply([manifest(i)])
        latencies.append(await received.get() - start)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return p50 * 1e3, p99 * 1e3


async def measure(
    make: StoreMaker, run: Callable[[Store], Awaitable[float]], repeat: int
) -> list[float]:
    results = []
    for _ in range(repeat):
        async with make() as store:
            results.append(await run(store))
    return results


def cell(values: list[float], digits: int) -> str:
    def short(value: float) -> str:
        return f"{value:,.{digits}f}"

    return f"{short(statistics.median(values))} [{short(min(values))}-{short(max(values))}]"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="objects per throughput run")
    parser.add_argument("--latency-n", type=int, default=1_000, help="applies for latency")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the SQLite files go (a real disk)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="osm-bench-store-") as directory:
        counter = iter(range(1_000_000))

        def sqlite_maker(synchronous: Any) -> StoreMaker:
            def make() -> contextlib.AbstractAsyncContextManager[Store]:
                @contextlib.asynccontextmanager
                async def opened() -> AsyncIterator[Store]:
                    path = pathlib.Path(directory) / f"store-{next(counter)}.db"
                    async with await SqliteStore.open(path, synchronous=synchronous) as store:
                        yield store

                return opened()

            return make

        @contextlib.asynccontextmanager
        async def memory() -> AsyncIterator[Store]:
            async with MemoryStore() as store:
                yield store

        stores: list[tuple[str, StoreMaker]] = [
            ("memory", memory),
            ("sqlite FULL", sqlite_maker("FULL")),
            ("sqlite NORMAL", sqlite_maker("NORMAL")),
        ]
        n, latency_n = args.n, args.latency_n
        rows: list[tuple[str, int, list[list[float]]]] = []
        throughput: list[tuple[str, Callable[[Store], Awaitable[float]]]] = [
            (f"batch create {n:,} (obj/s)", lambda store: batch_create(store, n)),
            (f"batch update {n:,} (obj/s)", lambda store: batch_update(store, n)),
            (f"{n:,} single applies (obj/s)", lambda store: single_applies(store, n)),
        ]
        for title, run in throughput:
            rows.append((title, 0, [await measure(make, run, args.repeat) for _, make in stores]))
        p50s, p99s = [], []
        for _, make in stores:
            pairs: list[tuple[float, float]] = []
            for _ in range(args.repeat):
                async with make() as store:
                    pairs.append(await watch_latency(store, latency_n))
            p50s.append([p50 for p50, _ in pairs])
            p99s.append([p99 for _, p99 in pairs])
        rows.append((f"watch latency p50 (ms, {latency_n:,} applies)", 3, p50s))
        rows.append((f"watch latency p99 (ms, {latency_n:,} applies)", 3, p99s))

    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}; median [min-max] of {args.repeat} runs; "
        "ratio = median / memory median"
    )
    header = ["measurement"]
    for index, (name, _) in enumerate(stores):
        header += [name] + (["ratio"] if index else [])
    table = [header]
    for title, digits, per_store in rows:
        baseline = statistics.median(per_store[0])
        line = [title]
        for index, values in enumerate(per_store):
            line.append(cell(values, digits if digits else 0))
            if index:
                line.append(f"{statistics.median(values) / baseline:.2f}x")
        table.append(line)
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for number, line in enumerate(table):
        print(
            "  ".join(
                text.ljust(width) if column == 0 else text.rjust(width)
                for column, (text, width) in enumerate(zip(line, widths, strict=True))
            )
        )
        if number == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    asyncio.run(main())
