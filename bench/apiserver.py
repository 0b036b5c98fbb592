"""API server benchmark: the Kubernetes API over HTTPS against the store it serves, side by side.

    python bench/apiserver.py [--n 10000] [--concurrency 8,32] [--watchers 1,100]
                              [--latency-n 300] [--lists 5] [--block 500] [--quick]
                              [--dir DIR] [--trace] [--profile DIR]

The API is local mode's (`osm.apiserver.local.start`: HTTPS with the admin's client
certificate, the controller's admission chain, the model's validation) over a
`SqliteStore` (``synchronous=FULL``, local mode's default), served by a child process so
that the clients here do not share its CPU. The baseline is the same store, opened here and
called directly, in the same run; every object is the same ConfigMap shape in 20
namespaces (as in bench/store.py). Clients keep their HTTPS connections open (aiohttp).

Measures, on fresh stores:

- create and update of N objects: the store with one batch, and with N single applies in
  sequence; the API with N single requests (POST, then PUT), ``--concurrency`` in flight.
  The single writes of the store and of each API take turns every ``--block`` objects, so
  that all meet the same disk and the same neighbours (fsync times drift on a shared VM);
- list of N objects: ``store.list`` against ``GET /api/v1/configmaps`` (one response, and
  in pages of 500 as kubectl and lightkube ask), the median of ``--lists``;
- watch latency with 1 and 100 watchers: one write at a time, waiting for every watcher;
  the time from the write's return (the store's ``apply``, the API's response) to each
  watcher's receipt of its event, p50 and p99 over every (write, watcher) pair (an event
  received before the write returned counts 0), and the p99 from the moment the write was
  sent (which includes the write). Watchers and writer share this process.

Prints objects/s or ms and the ratio API/store, then the goals of issue #15 (single-object
create through the API >= 0.5x the store's direct single-object rate; watch p99 <= 5 ms with
100 watchers). ``--trace`` times, inside the API servers, each write's wait for the write
lock, its hold and its store calls; ``--profile DIR`` runs each API server under cProfile
and prints its top functions. ``--quick``: N = 1,000. Not run by CI; nothing here is a
pass/fail threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import cProfile
import dataclasses
import json
import os
import pathlib
import platform
import pstats
import re
import signal
import sqlite3
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Literal

import aiohttp
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from _report import print_table

from osm.apiserver import local
from osm.apiserver import server as apiserver
from osm.ca import builtin
from osm.controller import admission
from osm.injector import admission as rules
from osm.store import SqliteStore
from osm.store import api as store_api
from osm.webhook import certificates

NAMESPACES = 20
PAGE = 500
"""Objects per page, as kubectl and lightkube list."""
TIMEOUT = 30.0
"""Seconds any one wait may take before the run is abandoned."""
EVENT_NAME = re.compile(rb'^\{"type":"(?:ADDED|MODIFIED)".*?"name":"([^"]+)"')
"""A watch event's line as the server writes it: its type first, then the object, whose
first ``name`` is its metadata's (a bench ConfigMap has no other)."""
GOAL_CREATE_RATIO = 0.5
GOAL_WATCH_P99_MS = 5.0
GOAL_WATCHERS = 100


def manifest(i: int, version: int = 0, namespace: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{i:06}",
            "namespace": namespace or f"ns-{i % NAMESPACES}",
            "labels": {"app": f"app-{i % 7}", "tier": "backend"},
            "annotations": {"owner": "bench"},
        },
        "data": {"version": str(version), "payload": "x" * 200},
    }


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 in ms."""
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1e3, p99 * 1e3


# -- the API server, in a child process ------------------------------------------------------
class Trace:
    """Where a write request's wall time goes, measured in the child by wrapping the
    server's write handlers, its write lock and the store's calls (``--trace``)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = collections.defaultdict(float)
        self.counts: dict[str, int] = collections.defaultdict(int)

    def add(self, what: str, seconds: float) -> None:
        self.sums[what] += seconds
        self.counts[what] += 1

    def instrument(self, server: apiserver.ApiServer, store: SqliteStore) -> None:
        trace = self

        def handler(name: str) -> None:
            original = getattr(server, name)

            async def timed(*args: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await original(*args)
                finally:
                    trace.add("request", time.perf_counter() - start)

            setattr(server, name, timed)

        for name in ("create", "update", "patch"):
            handler(name)

        class TimedLock(asyncio.Lock):
            held_since = 0.0

            async def acquire(self) -> Literal[True]:
                start = time.perf_counter()
                acquired = await super().acquire()
                self.held_since = time.perf_counter()
                trace.add("lock wait", self.held_since - start)
                return acquired

            def release(self) -> None:
                trace.add("lock held", time.perf_counter() - self.held_since)
                super().release()

        server.writes = TimedLock()
        run = store._run

        async def timed_run(function: Any, *args: Any, **kwargs: Any) -> Any:
            what = "store call" if server.writes.locked() else "store read"  # lists, gets

            def in_thread() -> Any:
                start = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    if what == "store call":
                        trace.add("store thread", time.perf_counter() - start)

            start = time.perf_counter()
            try:
                return await run(in_thread)
            finally:
                trace.add(what, time.perf_counter() - start)

        store._run = timed_run  # type: ignore[method-assign]

    def dump(self, path: str) -> None:
        summary = {what: (self.sums[what], self.counts[what]) for what in self.sums}
        pathlib.Path(path).write_text(json.dumps(summary))


async def serve(directory: pathlib.Path, trace: str = "") -> None:
    """The child: the API over a new store in ``directory``; prints its kubeconfig's path
    and serves until its stdin closes."""
    store = await SqliteStore.open(directory / "store.db")
    ca = builtin.BuiltinCA.open(directory / "ca", builtin.utc_now())
    chain = admission.ServerAdmission(
        admission.PodAdmission(rules.AdmissionSettings(), certificates.issuing(ca, builtin.utc_now))
    )
    api = await local.start(store, directory / "state", port=0, admission=chain)
    tracing = Trace()
    if trace:
        tracing.instrument(api.server, store)
    print(api.kubeconfig, flush=True)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), closed.set)
    loop.add_signal_handler(signal.SIGTERM, closed.set)
    await closed.wait()
    await api.stop()
    await store.close()
    if trace:
        tracing.dump(trace)


def serve_main(directory: str, profile: str, trace: str) -> None:
    if not profile:
        asyncio.run(serve(pathlib.Path(directory), trace))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(serve(pathlib.Path(directory), trace))
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


@dataclasses.dataclass
class Api:
    """A running API child and an HTTPS client for it (the admin's certificate)."""

    url: str
    ssl: ssl.SSLContext
    process: asyncio.subprocess.Process

    def session(self, connections: int) -> aiohttp.ClientSession:
        """Keep-alive connections, at most ``connections`` (0: no limit)."""
        connector = aiohttp.TCPConnector(ssl=self.ssl, limit=connections, force_close=False)
        return aiohttp.ClientSession(
            self.url, connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )


@contextlib.asynccontextmanager
async def api_server(
    directory: pathlib.Path, profile: str = "", trace: str = ""
) -> AsyncIterator[Api]:
    directory.mkdir(parents=True)
    argv = [sys.executable, __file__, "--serve", str(directory)]
    if profile:
        argv += ["--serve-profile", profile]
    if trace:
        argv += ["--serve-trace", trace]
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        if not line:
            raise RuntimeError("the API server did not start (see its output above)")
        yield client_of(pathlib.Path(line.decode().strip()), process, directory)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


def client_of(
    kubeconfig: pathlib.Path, process: asyncio.subprocess.Process, directory: pathlib.Path
) -> Api:
    document = yaml.safe_load(kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    files = {}
    for name, field in (
        ("ca.pem", cluster["certificate-authority-data"]),
        ("cert.pem", user["client-certificate-data"]),
        ("key.pem", user["client-key-data"]),
    ):
        path = directory / name
        path.write_bytes(base64.b64decode(field))
        os.chmod(path, 0o600)
        files[name] = str(path)
    context = ssl.create_default_context(cafile=files["ca.pem"])
    context.load_cert_chain(files["cert.pem"], files["key.pem"])
    return Api(cluster["server"], context, process)


async def request(
    session: aiohttp.ClientSession, method: str, path: str, body: Any = None, expect: int = 200
) -> Any:
    async with session.request(method, path, json=body) as response:
        answer = await response.json()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {answer}")
        return answer


async def create_namespaces(api: Api) -> None:
    async with api.session(1) as session:
        for n in range(NAMESPACES):
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}"}}
            await request(session, "POST", "/api/v1/namespaces", body, 201)


def path_of(obj: dict[str, Any], *, collection: bool = False) -> str:
    metadata = obj["metadata"]
    base = f"/api/v1/namespaces/{metadata['namespace']}/configmaps"
    return base if collection else f"{base}/{metadata['name']}"


async def in_flight(
    indices: range, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> float:
    """Runs ``one(i)`` for every i of ``indices``, ``concurrency`` at a time; the seconds
    it took."""
    pending = iter(indices)

    async def worker() -> None:
        for i in pending:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


# -- measurements ------------------------------------------------------------------------
@dataclasses.dataclass
class Results:
    rates: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    """(create|update, column) -> objects/s."""
    list_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    latency: dict[tuple[int, str], tuple[float, float, float, float]] = dataclasses.field(
        default_factory=dict
    )
    """(watchers, "store"|"API") -> (p50, p99) ms."""


@contextlib.asynccontextmanager
async def fresh_store(directory: pathlib.Path, name: str) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(directory / f"{name}.db") as store:
        yield store


async def store_batches(directory: pathlib.Path, n: int, results: Results) -> None:
    async with fresh_store(directory, "batch") as store:
        start = time.perf_counter()
        await store.apply([manifest(i) for i in range(n)])
        results.rates[("create", "batch")] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        await store.apply([manifest(i, version=1) for i in range(n)])
        results.rates[("update", "batch")] = n / (time.perf_counter() - start)


def api_writer(
    session: aiohttp.ClientSession, method: str, version: int, expect: int
) -> Callable[[int], Awaitable[None]]:
    """Writes object i through the API: POST (create) or PUT (update)."""

    async def write(i: int) -> None:
        obj = manifest(i, version)
        await request(session, method, path_of(obj, collection=method == "POST"), obj, expect)

    return write


async def single_writes(
    store: SqliteStore, apis: dict[int, Api], n: int, block: int, results: Results
) -> None:
    """N creates, then N updates, one object per write: the store called here in sequence
    and each API with its requests in flight, taking turns block by block, so that all of
    them meet the same disk and the same neighbours."""
    sessions = {c: api.session(c) for c, api in apis.items()}
    try:
        for verb, version, method, expect in (
            ("create", 0, "POST", 201),
            ("update", 1, "PUT", 200),
        ):
            seconds: dict[str, float] = collections.defaultdict(float)
            for first in range(0, n, block):
                indices = range(first, min(n, first + block))
                start = time.perf_counter()
                for i in indices:
                    await store.apply([manifest(i, version)])
                seconds["store"] += time.perf_counter() - start
                for concurrency, session in sessions.items():
                    one = api_writer(session, method, version, expect)
                    seconds[f"API c={concurrency}"] += await in_flight(indices, concurrency, one)
            for column, total in seconds.items():
                results.rates[(verb, column)] = n / total
    finally:
        for session in sessions.values():
            await session.close()


async def store_lists(store: SqliteStore, n: int, lists: int, results: Results) -> None:
    times = []
    for _ in range(lists):
        start = time.perf_counter()
        items, _ = await store.list("ConfigMap")
        times.append(time.perf_counter() - start)
        assert len(items) == n
    results.list_ms["store"] = statistics.median(times) * 1e3


async def api_lists(api: Api, n: int, lists: int, results: Results) -> None:
    async with api.session(1) as session:
        whole, paged = [], []
        for _ in range(lists):
            start = time.perf_counter()
            listed = await request(session, "GET", "/api/v1/configmaps")
            whole.append(time.perf_counter() - start)
            assert len(listed["items"]) == n
            start = time.perf_counter()
            count, token = 0, ""
            while True:
                query = f"?limit={PAGE}" + (f"&continue={token}" if token else "")
                page = await request(session, "GET", "/api/v1/configmaps" + query)
                count += len(page["items"])
                token = page["metadata"].get("continue", "")
                if not token:
                    break
            paged.append(time.perf_counter() - start)
            assert count == n
    results.list_ms["API"] = statistics.median(whole) * 1e3
    results.list_ms[f"API pages of {PAGE}"] = statistics.median(paged) * 1e3


class Receipts:
    """When each watcher received the event of each write (by object name)."""

    def __init__(self, watchers: int) -> None:
        self.watchers = watchers
        self.times: dict[str, list[float]] = {}
        self.complete: dict[str, asyncio.Event] = {}

    def expect(self, name: str) -> asyncio.Event:
        self.times.setdefault(name, [])
        return self.complete.setdefault(name, asyncio.Event())

    def received(self, name: str) -> None:
        times = self.times.setdefault(name, [])
        times.append(time.perf_counter())
        if len(times) == self.watchers:
            self.expect(name).set()


async def measure_latency(
    write: Callable[[int], Awaitable[None]], receipts: Receipts, writes: int
) -> tuple[float, float, float, float]:
    """p50 and p99 (ms) of each watcher's receipt after the write's answer (0 when the
    event came first), then after the write was sent (which includes the write itself)."""
    after_answer: list[float] = []
    after_request: list[float] = []
    for i in range(writes):
        name = manifest(i)["metadata"]["name"]
        complete = receipts.expect(name)
        sent = time.perf_counter()
        await write(i)
        returned = time.perf_counter()
        await asyncio.wait_for(complete.wait(), TIMEOUT)
        after_answer += [max(0.0, t - returned) for t in receipts.times[name]]
        after_request += [t - sent for t in receipts.times[name]]
    return (*percentiles(after_answer), *percentiles(after_request))


async def store_latency(
    directory: pathlib.Path, watchers: int, writes: int
) -> tuple[float, float, float, float]:
    async with fresh_store(directory, f"watch-{watchers}") as store:
        receipts = Receipts(watchers)

        async def watch(events: AsyncIterator[store_api.WatchEvent]) -> None:
            async for event in events:
                if event.object is not None:
                    receipts.received(event.object["metadata"]["name"])

        tasks = [asyncio.create_task(watch(aiter(store.watch()))) for _ in range(watchers)]

        async def write(i: int) -> None:
            await store.apply([manifest(i, namespace="ns-0")])

        try:
            return await measure_latency(write, receipts, writes)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def api_latency(api: Api, watchers: int, writes: int) -> tuple[float, float, float, float]:
    receipts = Receipts(watchers)
    collection = "/api/v1/namespaces/ns-0/configmaps"
    async with api.session(0) as watching, api.session(1) as writing:
        listed = await request(writing, "GET", collection)
        since = listed["metadata"]["resourceVersion"]
        responses = [
            await watching.get(f"{collection}?watch=true&resourceVersion={since}")
            for _ in range(watchers)
        ]  # each watch is subscribed once its response headers are in

        async def watch(response: aiohttp.ClientResponse) -> None:
            async for line in response.content:
                found = EVENT_NAME.search(line)  # cheaper than json.loads: 100 share one CPU
                if found:
                    receipts.received(found.group(1).decode())

        tasks = [asyncio.create_task(watch(response)) for response in responses]

        async def write(i: int) -> None:
            obj = manifest(i + 1_000_000, namespace="ns-0")
            obj["metadata"]["name"] = manifest(i)["metadata"]["name"]
            await request(writing, "POST", collection, obj, 201)

        try:
            return await measure_latency(write, receipts, writes)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for response in responses:
                response.close()


# -- the report ---------------------------------------------------------------------------
def report(args: argparse.Namespace, results: Results, seconds: float) -> None:
    n = args.n
    print(
        f"\nPython {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; one run of each; N = {n:,}; "
        f"{seconds:.0f} s in all. API/store = the API's figure / the store's."
    )
    api_columns = [f"API c={c}" for c in args.concurrency]
    header = ["objects/s", "store, one batch", "store, single", *api_columns]
    header += [f"API/store c={c}" for c in args.concurrency]
    rows = [header]
    for verb in ("create", "update"):
        single = results.rates[(verb, "store")]
        row = [f"{verb} {n:,}", f"{results.rates[(verb, 'batch')]:,.0f}", f"{single:,.0f}"]
        row += [f"{results.rates[(verb, column)]:,.0f}" for column in api_columns]
        row += [f"{results.rates[(verb, column)] / single:.2f}x" for column in api_columns]
        rows.append(row)
    print()
    print_table(rows)

    store_ms = results.list_ms["store"]
    rows = [["list", "ms", "API/store"]]
    rows += [
        [
            f"{where}, {n:,} objects",
            f"{ms:,.1f}",
            "" if where == "store" else f"{ms / store_ms:.1f}x",
        ]
        for where, ms in results.list_ms.items()
    ]
    print()
    print_table(rows)

    rows = [
        [
            "watch latency (ms)",
            "store p50",
            "store p99",
            "API p50",
            "API p99",
            "store p99 from write sent",
            "API p99 from write sent",
        ]
    ]
    for watchers in args.watchers:
        s50, s99, _, s99_sent = results.latency[(watchers, "store")]
        a50, a99, _, a99_sent = results.latency[(watchers, "API")]
        rows.append(
            [
                f"{watchers} watcher{'s' if watchers > 1 else ''}, {args.latency_n} writes",
                f"{s50:.3f}",
                f"{s99:.3f}",
                f"{a50:.3f}",
                f"{a99:.3f}",
                f"{s99_sent:.3f}",
                f"{a99_sent:.3f}",
            ]
        )
    print()
    print_table(rows)

    print("\nGoals (issue #15):")
    single = results.rates[("create", "store")]
    for column in api_columns:
        ratio = results.rates[("create", column)] / single
        verdict = "met" if ratio >= GOAL_CREATE_RATIO else "MISSED"
        print(
            f"  single-object create, {column} >= {GOAL_CREATE_RATIO}x the store's single "
            f"rate: {ratio:.2f}x -- {verdict}"
        )
    if (GOAL_WATCHERS, "API") in results.latency:
        p99 = results.latency[(GOAL_WATCHERS, "API")][1]
        verdict = "met" if p99 <= GOAL_WATCH_P99_MS else "MISSED"
        print(
            f"  watch p99 with {GOAL_WATCHERS} watchers <= {GOAL_WATCH_P99_MS} ms: "
            f"{p99:.2f} ms -- {verdict}"
        )


def print_traces(summaries: dict[int, dict[str, tuple[float, int]]]) -> None:
    """Per write request (create or update), in ms: wall time in the handler, waiting for
    the write lock, holding it, and the store calls made while holding it (their wall time
    and, of that, the time in the store's thread; the rest is the hop to the thread and
    back, and waiting for the GIL)."""
    print("\nWhere a write request's time goes in the API server (--trace; mean ms per write)")
    header = ["in flight", "handler", "lock wait", "lock held", "store calls/write"]
    header += ["store call wall", "in store thread", "held, not in store"]
    rows = [header]
    for concurrency, summary in summaries.items():
        writes = summary["request"][1]

        def per_write(what: str, summary: dict[str, Any] = summary, writes: int = writes) -> float:
            return float(summary.get(what, (0.0, 0))[0]) / writes * 1e3

        calls = summary.get("store call", (0.0, 0))[1] / writes
        rows.append(
            [
                f"c={concurrency}",
                f"{per_write('request'):.3f}",
                f"{per_write('lock wait'):.3f}",
                f"{per_write('lock held'):.3f}",
                f"{calls:.1f}",
                f"{per_write('store call'):.3f}",
                f"{per_write('store thread'):.3f}",
                f"{per_write('lock held') - per_write('store call'):.3f}",
            ]
        )
    print_table(rows)


def print_profile(path: pathlib.Path, top: int) -> None:
    print(f"\nWhere the API server's time went: {path.name} (top {top} by own time)")
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = []
    for (filename, line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        own, cumulative = row[2], row[3]
        entries.append((own, cumulative, row[1], f"{short_path(filename)}:{line}({function})"))
    entries.sort(reverse=True)
    print(f"{'own s':>8} {'own %':>6} {'cum s':>8} {'calls':>9}  function")
    for own, cumulative, calls, where in entries[:top]:
        print(f"{own:8.2f} {own / total * 100:5.1f}% {cumulative:8.2f} {calls:9,}  {where}")


def short_path(filename: str) -> str:
    for marker in ("site-packages/", "/osm/", "lib/python3"):
        if marker in filename:
            return filename[filename.index(marker) :].removeprefix("site-packages/")
    return filename


@contextlib.contextmanager
def working_directory(parent: str | None) -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(dir=parent, prefix="osm-bench-apiserver-") as directory:
        yield pathlib.Path(directory)


async def run(args: argparse.Namespace) -> None:
    results = Results()
    started = time.perf_counter()
    profiles: list[pathlib.Path] = []
    traces: dict[int, pathlib.Path] = {}

    def profile(name: str) -> str:
        if not args.profile:
            return ""
        path = pathlib.Path(args.profile).resolve() / f"apiserver-{name}.prof"
        path.parent.mkdir(parents=True, exist_ok=True)
        profiles.append(path)
        return str(path)

    with working_directory(args.dir) as directory:
        print(f"store: {args.n:,} creates and updates in one batch", flush=True)
        await store_batches(directory, args.n, results)
        in_flights = ", ".join(f"{c} in flight" for c in args.concurrency)
        print(
            f"store and API ({in_flights}): {args.n:,} single creates and updates, taking "
            f"turns every {args.block:,}; lists",
            flush=True,
        )
        async with contextlib.AsyncExitStack() as servers:
            apis = {}
            for concurrency in args.concurrency:
                trace = str(directory / f"trace-c{concurrency}.json") if args.trace else ""
                if trace:
                    traces[concurrency] = pathlib.Path(trace)
                apis[concurrency] = await servers.enter_async_context(
                    api_server(
                        directory / f"api-c{concurrency}",
                        profile(f"writes-c{concurrency}"),
                        trace,
                    )
                )
                await create_namespaces(apis[concurrency])
            async with fresh_store(directory, "single") as store:
                await single_writes(store, apis, args.n, args.block, results)
                await store_lists(store, args.n, args.lists, results)
            await api_lists(apis[args.concurrency[-1]], args.n, args.lists, results)
        for watchers in args.watchers:
            print(f"watch latency: {watchers} watchers, store and API", flush=True)
            results.latency[(watchers, "store")] = await store_latency(
                directory, watchers, args.latency_n
            )
            async with api_server(
                directory / f"api-watch-{watchers}", profile(f"watch-{watchers}")
            ) as api:
                await create_namespaces(api)
                results.latency[(watchers, "API")] = await api_latency(
                    api, watchers, args.latency_n
                )
        summaries = {c: json.loads(path.read_text()) for c, path in traces.items()}
    report(args, results, time.perf_counter() - started)
    if summaries:
        print_traces(summaries)
    for path in profiles:
        print_profile(path, args.top)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="objects per throughput run")
    parser.add_argument(
        "--concurrency", type=numbers, default=[8, 32], help="API requests in flight (8,32)"
    )
    parser.add_argument("--watchers", type=numbers, default=[1, 100], help="watchers (1,100)")
    parser.add_argument("--latency-n", type=int, default=300, help="writes per latency run")
    parser.add_argument("--lists", type=int, default=5, help="lists per list measurement")
    parser.add_argument("--block", type=int, default=500, help="writes per turn (500)")
    parser.add_argument("--quick", action="store_true", help="N=1,000, 100 writes, 3 lists")
    parser.add_argument("--dir", default=None, help="where the SQLite files go (a real disk)")
    parser.add_argument("--profile", default=None, help="cProfile each API server into DIR")
    parser.add_argument("--top", type=int, default=20, help="functions per profile")
    parser.add_argument("--serve", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-profile", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-trace", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--trace", action="store_true", help="time each write's lock and store calls"
    )
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.serve_profile, args.serve_trace)
        return
    if args.quick:
        args.n, args.latency_n, args.lists = 1_000, 100, 3
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
