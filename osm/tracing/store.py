"""Spans in one SQLite file: Zipkin's storage queries, bounded by a span count and an age.

The one idea: a span is stored once, as the normalized JSON the API returns
(`model.Span.to_json_text`), beside the few columns queries filter on; a ``traces`` row per
trace keeps what trace-level queries need (the trace's timestamp as Zipkin's queries define
it, its span count, when it was last written to), so that ``/api/v2/traces`` walks traces
newest first through an index and tests each criterion with an indexed ``EXISTS`` on that
trace's spans, stopping at ``limit``. The SQL is the same predicate as `model.matches` (the
tests hold them to each other).

Threads: one thread owns the writing connection and does every write (WAL, so readers never
wait for it); reads run on a small pool, each thread with its own read-only connection, and
each read statement sees a committed state. Durability: ``synchronous=NORMAL`` in WAL mode,
so an accepted batch survives a crash of the process (not necessarily of the machine: a
trace store trades that for write throughput). Exact duplicates of a span (a client that
re-sends a batch) are stored once.

Retention keeps whole traces: when the store holds more than ``max_spans``, the traces
written to longest ago are deleted until it holds at most 90% of it (so pruning, which also
rebuilds the service-name index, happens once per tenth of the bound); traces not written to
for ``retention`` seconds are deleted too. Freed pages are reused, so the file stops growing
once the bound is reached.

Tables::

    spans(seq PRIMARY KEY, trace_id, id, parent_id, kind, name, ts, duration,
          local_service, remote_service, digest, body)
    traces(trace_id PRIMARY KEY, root_ts, min_ts, ts = coalesce(root_ts, min_ts), spans,
           last_written)
    names(service, kind, value)   -- 0: a span name, 1: a remote service, 2: the service
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from osm.tracing import model

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spans(
    seq INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    parent_id TEXT,
    kind TEXT,
    name TEXT,
    ts INTEGER,
    duration INTEGER,
    local_service TEXT,
    remote_service TEXT,
    digest INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_by_trace ON spans(trace_id, id, digest);
CREATE TABLE IF NOT EXISTS traces(
    trace_id TEXT PRIMARY KEY,
    root_ts INTEGER,
    min_ts INTEGER,
    ts INTEGER GENERATED ALWAYS AS (coalesce(root_ts, min_ts)) VIRTUAL,
    spans INTEGER NOT NULL,
    last_written REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_ts ON traces(ts);
CREATE INDEX IF NOT EXISTS traces_by_written ON traces(last_written);
CREATE TABLE IF NOT EXISTS names(
    service TEXT NOT NULL,
    kind INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY(service, kind, value)
) WITHOUT ROWID;
"""

SPAN_NAME, REMOTE_SERVICE, SERVICE = 0, 1, 2
PRUNE_TO: Final = 0.9
"""Pruning by count deletes down to this share of ``max_spans``."""
AGE_CHECK_S: Final = 1.0
"""Writes check the age bound at most this often."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Limits:
    max_spans: int = 500_000
    """More spans than this are pruned (whole traces, least recently written first)."""
    retention_s: float | None = 24 * 3600.0
    """Traces not written to for this long are pruned (None: kept until the count bound)."""


@dataclass(frozen=True, slots=True)
class Stats:
    spans: int
    traces: int
    file_bytes: int
    pruned_spans: int


class TraceStore:
    """The store behind the Zipkin API. Open with `TraceStore.open`; every method is a
    coroutine safe to call concurrently from one event loop; `close` once at the end."""

    def __init__(self, path: Path, limits: Limits, clock: Callable[[], float]) -> None:
        self.path = path
        self.limits = limits
        self._clock = clock
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trace-write")
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="trace-read")
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write: sqlite3.Connection | None = None
        self._span_count = 0
        self._trace_count = 0
        self._pruned = 0
        self._last_age_check = float("-inf")

    @classmethod
    async def open(
        cls,
        path: Path | str,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> TraceStore:
        """Opens (creating if needed) the store at ``path``; ``clock`` gives seconds since the
        epoch (retention's time). Raises `sqlite3.Error` if the file is not a store."""
        store = cls(Path(path), limits or Limits(), clock)
        await store._on_writer(store._open_writer)
        return store

    # -- the writer thread -----------------------------------------------------------------

    def _open_writer(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA journal_size_limit=67108864")
        connection.execute("PRAGMA busy_timeout=5000")
        connection.executescript(SCHEMA)
        self._write = connection
        self._span_count = connection.execute("SELECT count(*) FROM spans").fetchone()[0]
        self._trace_count = connection.execute("SELECT count(*) FROM traces").fetchone()[0]

    def _accept(self, spans: Sequence[model.Span]) -> int:
        connection = self._write
        assert connection is not None
        now = self._clock()
        rows = []
        names: set[tuple[str, int, str]] = set()
        for span in spans:
            body = span.to_json_text()
            digest = int.from_bytes(
                hashlib.blake2b(body.encode(), digest_size=8).digest(), "big", signed=True
            )
            local, remote = span.local_service_name, span.remote_service_name
            rows.append(
                (
                    span.trace_id,
                    span.id,
                    span.parent_id,
                    span.kind,
                    span.name,
                    span.timestamp,
                    span.duration,
                    local,
                    remote,
                    digest,
                    body,
                )
            )
            if local is not None:
                names.add((local, SERVICE, ""))
                if span.name is not None:
                    names.add((local, SPAN_NAME, span.name))
                if remote is not None:
                    names.add((local, REMOTE_SERVICE, remote))
        trace_ids = sorted({span.trace_id for span in spans})
        connection.execute("BEGIN IMMEDIATE")
        try:
            before = connection.total_changes
            connection.executemany(
                "INSERT OR IGNORE INTO spans(trace_id, id, parent_id, kind, name, ts, duration,"
                " local_service, remote_service, digest, body) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            inserted = connection.total_changes - before
            connection.executemany(
                "INSERT INTO traces(trace_id, root_ts, min_ts, spans, last_written) "
                "SELECT trace_id, min(CASE WHEN parent_id IS NULL THEN ts END), min(ts),"
                " count(*), ? FROM spans WHERE trace_id = ? GROUP BY trace_id "
                "ON CONFLICT(trace_id) DO UPDATE SET root_ts = excluded.root_ts,"
                " min_ts = excluded.min_ts, spans = excluded.spans,"
                " last_written = excluded.last_written",
                [(now, trace_id) for trace_id in trace_ids],
            )
            traces_after = connection.execute("SELECT count(*) FROM traces").fetchone()[0]
            connection.executemany(
                "INSERT OR IGNORE INTO names(service, kind, value) VALUES (?,?,?)", sorted(names)
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        with self._lock:
            self._span_count += inserted
            self._trace_count = traces_after
        self._prune_if_due(now)
        return inserted

    def _prune_if_due(self, now: float) -> None:
        if self._span_count > self.limits.max_spans:
            self._prune(now, by_count=True)
        elif self.limits.retention_s is not None and now - self._last_age_check >= AGE_CHECK_S:
            self._prune(now, by_count=False)

    def _prune(self, now: float, *, by_count: bool) -> int:
        """Deletes the traces past the limits (all of them past the age bound; when
        ``by_count``, the least recently written until at most `PRUNE_TO` of the count
        bound is left); returns how many spans went."""
        connection = self._write
        assert connection is not None
        self._last_age_check = now
        doomed: list[str] = []
        doomed_spans = 0
        if self.limits.retention_s is not None:
            for trace_id, count in connection.execute(
                "SELECT trace_id, spans FROM traces WHERE last_written < ?",
                (now - self.limits.retention_s,),
            ):
                doomed.append(trace_id)
                doomed_spans += count
        if by_count:
            excess = self._span_count - doomed_spans - int(self.limits.max_spans * PRUNE_TO)
            if excess > 0:
                chosen = set(doomed)
                for trace_id, count in connection.execute(
                    "SELECT trace_id, spans FROM traces ORDER BY last_written, trace_id"
                ):
                    if excess <= 0:
                        break
                    if trace_id in chosen:
                        continue
                    doomed.append(trace_id)
                    excess -= count
        if not doomed:
            return 0
        connection.execute("BEGIN IMMEDIATE")
        try:
            before = connection.total_changes
            connection.executemany(
                "DELETE FROM spans WHERE trace_id = ?", [(trace_id,) for trace_id in doomed]
            )
            removed = connection.total_changes - before
            connection.executemany(
                "DELETE FROM traces WHERE trace_id = ?", [(trace_id,) for trace_id in doomed]
            )
            connection.execute("DELETE FROM names")
            connection.execute(
                "INSERT OR IGNORE INTO names(service, kind, value) "
                "SELECT DISTINCT local_service, 2, '' FROM spans WHERE local_service IS NOT NULL "
                "UNION SELECT DISTINCT local_service, 0, name FROM spans "
                "WHERE local_service IS NOT NULL AND name IS NOT NULL "
                "UNION SELECT DISTINCT local_service, 1, remote_service FROM spans "
                "WHERE local_service IS NOT NULL AND remote_service IS NOT NULL"
            )
            traces = connection.execute("SELECT count(*) FROM traces").fetchone()[0]
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        with self._lock:
            self._span_count -= removed
            self._trace_count = traces
            self._pruned += removed
        return int(removed)

    def _close_writer(self) -> None:
        if self._write is not None:
            self._write.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._write.close()
            self._write = None

    # -- reads ---------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute("PRAGMA busy_timeout=5000")
            self._local.connection = connection
            with self._lock:
                self._reader_connections.append(connection)
        return connection

    def _column(self, sql: str, *parameters: Any) -> list[str]:
        return [row[0] for row in self._reader().execute(sql, parameters)]

    def _bodies(self, trace_ids: Sequence[str]) -> list[list[str]]:
        connection = self._reader()
        found: list[list[str]] = []
        for trace_id in trace_ids:
            bodies = [
                row[0]
                for row in connection.execute(
                    "SELECT body FROM spans WHERE trace_id = ? ORDER BY seq", (trace_id,)
                )
            ]
            if bodies:
                found.append(bodies)
        return found

    def _find(self, query: model.Query) -> list[str]:
        connection = self._reader()
        if query.service_name is not None and not self._known(query.service_name, SERVICE, ""):
            return []  # the common miss (a service with no spans) without a scan
        if (
            query.service_name is not None
            and query.span_name is not None
            and not self._known(query.service_name, SPAN_NAME, query.span_name)
        ):
            return []
        sql, parameters = query_sql(query)
        return [row[0] for row in connection.execute(sql, parameters)]

    def _known(self, service: str, kind: int, value: str) -> bool:
        row = (
            self._reader()
            .execute(
                "SELECT 1 FROM names WHERE service = ? AND kind = ? AND value = ?",
                (service, kind, value),
            )
            .fetchone()
        )
        return row is not None

    def _dependencies(self, end_ts: int, lookback: int) -> list[model.DependencyLink]:
        low, high = (end_ts - lookback) * 1000, end_ts * 1000
        connection = self._reader()
        trace_ids = [
            row[0]
            for row in connection.execute(
                "SELECT trace_id FROM traces WHERE ts BETWEEN ? AND ?", (low, high)
            )
        ]
        traces = (
            [model.span_from_stored(body) for body in bodies] for bodies in self._bodies(trace_ids)
        )
        return model.dependency_links(traces)

    # -- the coroutines ------------------------------------------------------------------------

    async def _on_writer(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, function, *args)

    async def _on_reader(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, function, *args)

    async def accept(self, spans: Sequence[model.Span]) -> int:
        """Stores ``spans`` in one transaction (durable when this returns); returns how many
        were new (exact duplicates of stored spans are not)."""
        if not spans:
            return 0
        return await self._on_writer(self._accept, spans)

    async def prune(self) -> int:
        """Applies both bounds now; returns how many spans were deleted."""
        return await self._on_writer(
            lambda: self._prune(self._clock(), by_count=self._span_count > self.limits.max_spans)
        )

    async def services(self) -> list[str]:
        return await self._on_reader(
            self._column, "SELECT service FROM names WHERE kind = 2 ORDER BY service"
        )

    async def span_names(self, service: str) -> list[str]:
        return await self._on_reader(
            self._column,
            "SELECT value FROM names WHERE service = ? AND kind = 0 ORDER BY value",
            service.lower(),
        )

    async def remote_services(self, service: str) -> list[str]:
        return await self._on_reader(
            self._column,
            "SELECT value FROM names WHERE service = ? AND kind = 1 ORDER BY value",
            service.lower(),
        )

    async def trace(self, trace_id: str) -> list[str]:
        """The JSON of the trace's spans in the order they were stored (empty: unknown)."""
        found = await self._on_reader(self._bodies, [trace_id])
        return found[0] if found else []

    async def traces(self, trace_ids: Sequence[str]) -> list[list[str]]:
        """The known ones of ``trace_ids``, in the order asked, each as `trace` gives it."""
        return await self._on_reader(self._bodies, list(dict.fromkeys(trace_ids)))

    async def query(self, query: model.Query) -> list[list[str]]:
        """The traces `model.matches` ``query``, newest first, at most ``query.limit``."""

        def run() -> list[list[str]]:
            return self._bodies(self._find(query))

        return await self._on_reader(run)

    async def dependencies(self, end_ts: int, lookback: int) -> list[model.DependencyLink]:
        """The links among the traces whose timestamp is in ``[end_ts - lookback, end_ts]``
        (milliseconds)."""
        return await self._on_reader(self._dependencies, end_ts, lookback)

    def stats(self) -> Stats:
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                size += os.stat(f"{self.path}{suffix}").st_size
        with self._lock:
            return Stats(self._span_count, self._trace_count, size, self._pruned)

    async def close(self) -> None:
        """Checkpoints and closes the file; the store is unusable afterwards."""
        await self._on_writer(self._close_writer)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()


def query_sql(query: model.Query) -> tuple[str, list[Any]]:
    """The SELECT of the trace ids answering ``query``, newest first, limited: the trace's
    timestamp in the window and, for each criterion, an ``EXISTS`` over the trace's spans
    (of ``serviceName``'s, when given), as `model.matches` tests them."""
    low, high = query.window_us
    where = ["t.ts BETWEEN ? AND ?"]
    parameters: list[Any] = [low, high]

    def exists(condition: str, *values: Any) -> None:
        service = ""
        if query.service_name is not None:
            service = " AND s.local_service = ?"
            values = (query.service_name, *values)
        where.append(
            f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id{service}{condition})"
        )
        parameters.extend(values)

    if query.service_name is not None:
        exists("")
    if query.remote_service_name is not None:
        exists(" AND s.remote_service = ?", query.remote_service_name)
    if query.span_name is not None:
        exists(" AND s.name = ?", query.span_name)
    if query.min_duration is not None:
        if query.max_duration is not None:
            exists(
                " AND coalesce(s.duration, 0) BETWEEN ? AND ?",
                query.min_duration,
                query.max_duration,
            )
        else:
            exists(" AND coalesce(s.duration, 0) >= ?", query.min_duration)
    for key, value in query.annotation_query.items():
        if value:
            exists(
                " AND EXISTS (SELECT 1 FROM json_each(s.body, '$.tags') g"
                " WHERE g.key = ? AND g.value = ?)",
                key,
                value,
            )
        else:
            exists(
                " AND (EXISTS (SELECT 1 FROM json_each(s.body, '$.tags') g WHERE g.key = ?)"
                " OR EXISTS (SELECT 1 FROM json_each(s.body, '$.annotations') a"
                " WHERE json_extract(a.value, '$.value') = ?))",
                key,
                key,
            )
    sql = (
        f"SELECT t.trace_id FROM traces t WHERE {' AND '.join(where)} "
        "ORDER BY t.ts DESC, t.trace_id LIMIT ?"
    )
    parameters.append(query.limit)
    return sql, parameters


def encode_trace(bodies: Iterable[str]) -> str:
    """A trace's stored span JSONs as the JSON list Zipkin's API answers."""
    return "[" + ",".join(bodies) + "]"


def encode_traces(traces: Iterable[Iterable[str]]) -> str:
    return "[" + ",".join(encode_trace(bodies) for bodies in traces) + "]"


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
