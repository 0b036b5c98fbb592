"""Store read benchmark: point reads, list pages and watch fan-out, MemoryStore against SQLite.

    python bench/store_reads.py [--n 10000] [--reads 3000] [--watchers 100] [--repeat 3]
                                [--dir DIR]

On a store holding N ConfigMaps in 20 namespaces (as in bench/store.py), measures:

- ``get`` of an existing object and of a missing one (NotFound), one at a time (µs/call);
- one page of 500 from the middle of the kind, all namespaces, with and without a label
  selector that keeps 1 object in 7 (ms/page); and relisting all N in pages of 500 (ms),
  next to one unpaged list. Where the store has no ``after``/``limit`` (an older tree),
  a page is what the API server used to do: list everything and slice;
- watch fan-out: ``--watchers`` watchers, one batch of 200 changes, the time to drain every
  watcher divided by (watchers x events) (µs per watcher per event); again with
  ``watch(shared=True)`` where the store has it.

Each figure is the median of ``--repeat`` runs. **Baseline:** `MemoryStore` in the same
run, and this script run from an older tree for before/after. Not run by CI; nothing here
is a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import pathlib
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from _report import print_table

from osm.store import MemoryStore, NotFound, ObjectKey, SqliteStore, Store, parse_selector

NAMESPACES = 20
PAGE = 500
EVENTS = 200
KIND = "ConfigMap"


def manifest(i: int, version: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": KIND,
        "metadata": {
            "name": f"cm-{i:06}",
            "namespace": f"ns-{i % NAMESPACES}",
            "labels": {"app": f"app-{i % 7}", "tier": "backend"},
            "annotations": {"owner": "bench"},
        },
        "data": {"version": str(version), "payload": "x" * 200},
    }


def key_of(i: int) -> ObjectKey:
    return ObjectKey(KIND, f"ns-{i % NAMESPACES}", f"cm-{i:06}")


async def page(
    store: Store, after: tuple[str, str] | None, selector: Any = None
) -> tuple[list[dict[str, Any]], tuple[str, str] | None]:
    """One page of PAGE objects after ``after`` and the position to continue from."""
    if "after" in inspect.signature(store.list).parameters:
        items, _ = await store.list(KIND, None, selector, after=after, limit=PAGE)
    else:  # an older store: list everything and slice, as the API server did
        items, _ = await store.list(KIND, None, selector)
        if after is not None:
            items = [
                i for i in items if (i["metadata"]["namespace"], i["metadata"]["name"]) > after
            ]
        items = items[:PAGE]
    if len(items) < PAGE:
        return items, None
    last = items[-1]["metadata"]
    return items, (last["namespace"], last["name"])


async def timed(repeat: int, one: Callable[[], Any]) -> float:
    """Seconds of one call of ``one`` (a coroutine function), median over ``repeat``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await one()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def measure(store: Store, n: int, reads: int, watchers: int, repeat: int) -> dict[str, float]:
    await store.apply([manifest(i) for i in range(n)])
    rng = random.Random(1)
    hits = [key_of(rng.randrange(n)) for _ in range(reads)]
    misses = [ObjectKey(KIND, "ns-0", f"missing-{i}") for i in range(reads)]
    middle = (f"ns-{NAMESPACES // 2}", "")
    selector = parse_selector("app=app-3")
    figures: dict[str, float] = {}

    async def get_hits() -> None:
        for key in hits:
            await store.get(key)

    async def get_misses() -> None:
        for key in misses:
            with contextlib.suppress(NotFound):
                await store.get(key)

    async def relist() -> None:
        after: tuple[str, str] | None = None
        count = 0
        while True:
            items, after = await page(store, after)
            count += len(items)
            if after is None:
                break
        assert count == n, count

    figures["get, existing (µs)"] = await timed(repeat, get_hits) / reads * 1e6
    figures["get, missing (µs)"] = await timed(repeat, get_misses) / reads * 1e6
    figures[f"page of {PAGE}, middle (ms)"] = await timed(repeat, lambda: page(store, middle)) * 1e3
    figures[f"page of {PAGE}, app=app-3 (ms)"] = (
        await timed(repeat, lambda: page(store, middle, selector)) * 1e3
    )
    figures[f"relist {n:,} in pages (ms)"] = await timed(repeat, relist) * 1e3
    figures[f"list {n:,} unpaged (ms)"] = await timed(repeat, lambda: store.list(KIND)) * 1e3
    figures[f"watch, {watchers} watchers (µs/watcher/event)"] = (
        await fan_out(store, watchers, repeat, 1) * 1e6
    )
    if "shared" in inspect.signature(store.watch).parameters:
        figures[f"watch, {watchers} shared (µs/watcher/event)"] = (
            await fan_out(store, watchers, repeat, repeat + 1, shared=True) * 1e6
        )
    return figures


async def fan_out(
    store: Store, watchers: int, repeat: int, first_version: int, shared: bool = False
) -> float:
    """Seconds per watcher per event, median over ``repeat`` batches of EVENTS changes
    (versions from ``first_version`` on, so that no apply is a no-op)."""
    options: dict[str, Any] = {"shared": True} if shared else {}
    times = []
    for version in range(first_version, first_version + repeat):
        streams = [aiter(store.watch(**options)) for _ in range(watchers)]
        await store.apply([manifest(i, version) for i in range(EVENTS)])
        start = time.perf_counter()
        for stream in streams:
            for _ in range(EVENTS):
                await anext(stream)
        times.append((time.perf_counter() - start) / (watchers * EVENTS))
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
    return statistics.median(times)


@contextlib.asynccontextmanager
async def opened(kind: str, directory: pathlib.Path) -> AsyncIterator[Store]:
    store: Store
    if kind == "memory":
        store = MemoryStore()
    else:
        store = await SqliteStore.open(directory / "reads.db")
    try:
        yield store
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="objects in the store")
    parser.add_argument("--reads", type=int, default=3_000, help="gets per measurement")
    parser.add_argument("--watchers", type=int, default=100, help="watchers for the fan-out")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--dir", default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for kind in ("memory", "sqlite"):
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="osm-bench-reads-") as directory:
            async with opened(kind, pathlib.Path(directory)) as store:
                results[kind] = await measure(store, args.n, args.reads, args.watchers, args.repeat)
    print(
        f"\n{pathlib.Path(__file__).resolve().parents[1]}: Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}; N = {args.n:,}; median of {args.repeat}"
    )
    rows = [["", "memory", "sqlite", "sqlite/memory"]]
    for what, memory in results["memory"].items():
        sqlite = results["sqlite"][what]
        rows.append([what, f"{memory:,.1f}", f"{sqlite:,.1f}", f"{sqlite / memory:.1f}x"])
    print_table(rows)


if __name__ == "__main__":
    asyncio.run(main())
