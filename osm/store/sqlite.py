"""A durable `osm.store.api.Store` in one SQLite file (stdlib sqlite3, WAL).

The one idea: one thread owns the writing connection and does every write and every
multi-row read, each apply/delete batch being ONE transaction, so a batch is all-or-nothing
even across a ``kill -9``, and writes are serialized without locks on the event loop.
Right after a COMMIT that thread schedules the batch's publication on the event loop
(``call_soon_threadsafe`` keeps batches in commit order); watchers are in-process.

Point reads (``get``) skip the hop to that thread and back: they run on the event loop's
thread through a second, read-only connection (``query_only``). In WAL mode a reader never
waits for the writer, and each read statement, run to its end in autocommit mode, is its
own read transaction whose snapshot holds every transaction committed before it began, so
a ``get`` after an ``apply`` returned sees that batch, and one during a batch sees all of
it or none of it. Should the reader ever find the file busy, it asks the store's thread.

Tables::

    meta(key PRIMARY KEY, value)           -- 'schema' and the 'resource_version' counter
    objects(kind, namespace, name PRIMARY KEY, resource_version, body JSON)
    events(rv PRIMARY KEY, type, kind, namespace, name, body JSON)   -- the last N changes

The rv counter lives in ``meta`` and survives restarts; ``events`` keeps the last
``history`` changes so that a watcher (say, a restarted controller) can resume from its
last rv, and older rvs are answered with a RESYNC.

Durability: ``synchronous=FULL`` by default. In WAL mode NORMAL already survives a process
crash (a committed transaction is in the OS's page cache) and never corrupts the file, but
a power loss or kernel crash can roll back the last transactions after they were
acknowledged. An acknowledged ``osm apply`` should not silently disappear, and since the
store commits once per batch, the extra fsync per commit is cheap; pass
``synchronous="NORMAL"`` to trade that guarantee for write latency.

A full filesystem: SQLite answers SQLITE_FULL where it needs a new block (a statement
spilling pages into the WAL, the COMMIT appending its frames, a checkpoint growing the
database file) and rolls the transaction back; the store raises `InsufficientStorage` and,
since publication and the in-memory rv follow only a COMMIT that returned, nothing of the
batch is visible anywhere. A checkpoint that cannot grow the file fails on its own (SQLite
ignores an automatic checkpoint's error) and leaves the WAL as it was, so later writes
append to it and the next checkpoint after space returns catches up. The WAL keeps the
size it grew to (``journal_size_limit`` stays -1): once checkpointed, its room is reused
without new blocks, which is why a write can still succeed on a full filesystem and why
the first refused write is the one that needs the WAL to grow. Recovery needs no restart.

The store assumes it is the only writer of its file; other processes may read it.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from typing import Literal, ParamSpec, TypeVar

from osm.store import changes, watchers
from osm.store.api import (
    InsufficientStorage,
    NotFound,
    Object,
    ObjectKey,
    Selector,
    StoreClosed,
    StoreError,
    WatchEvent,
    check_limit,
    labels_of,
)

SCHEMA_VERSION = 1
LOOKUP_CHUNK = 500
"""How many names one lookup query asks for (SQLite limits the number of parameters)."""
HISTORY_PAGE = 1_000
"""How many events a resuming watcher reads from the events table at a time."""
LIST_CHUNK = 500
"""How many rows a list fetches at a time while it filters them for a page."""
NEARLY_FULL = 64 * 1024
"""Free bytes below which an I/O error of the store counts as its filesystem being full."""

Synchronous = Literal["FULL", "NORMAL"]
_P = ParamSpec("_P")
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('resource_version', 0);
"""

_UPSERT = (
    "INSERT INTO objects (kind, namespace, name, resource_version, body) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (kind, namespace, name) DO UPDATE"
    " SET resource_version = excluded.resource_version, body = excluded.body"
)


def _in_list(count: int) -> str:
    return "(" + ",".join("?" * count) + ")"


def _get(connection: sqlite3.Connection, key: ObjectKey) -> str | None:
    """The body stored under ``key``. Runs the statement to its end (``fetchall``), so that
    in autocommit mode its read transaction ends with it and the next read on the
    connection takes a fresh WAL snapshot."""
    rows = connection.execute(
        "SELECT body FROM objects WHERE kind=? AND namespace=? AND name=?",
        (key.kind, key.namespace, key.name),
    ).fetchall()
    return str(rows[0][0]) if rows else None


def _list_query(
    kind: str, namespace: str | None, after: tuple[str, str] | None
) -> tuple[str | None, builtins.list[object]]:
    """A list's SELECT: a range of the primary key in (namespace, name) order, starting
    strictly after ``after``; None if nothing in ``namespace`` can come after it."""
    select = "SELECT body FROM objects WHERE kind=?"
    if namespace is None:
        if after is None:
            return f"{select} ORDER BY namespace, name", [kind]
        return f"{select} AND (namespace, name) > (?, ?) ORDER BY namespace, name", [kind, *after]
    if after is None or after[0] < namespace:
        name_after = ""  # names are never empty
    elif after[0] == namespace:
        name_after = after[1]
    else:
        return None, []
    return f"{select} AND namespace=? AND name > ? ORDER BY name", [kind, namespace, name_after]


def _open_writer(path: str, synchronous: Synchronous) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        connection.close()
        raise
    return connection


def _filesystem_full(path: str) -> bool:
    """Whether the filesystem of ``path`` has (next to) no room left for us: fewer free
    bytes than a few pages (root may use the blocks reserved for it)."""
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    free = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail
    return free * stat.f_frsize < NEARLY_FULL


def store_error(error: sqlite3.Error, path: str) -> StoreError:
    """What the store raises for a SQLite error: `InsufficientStorage` when the file's
    filesystem is full (SQLITE_FULL, wherever it surfaces: a statement, the COMMIT, the
    WAL's growth; or an I/O error while the filesystem has no room, as when the WAL
    index cannot grow), else a `StoreError` with SQLite's message."""
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL or (
        primary == sqlite3.SQLITE_IOERR and _filesystem_full(path)
    ):
        return InsufficientStorage(path)
    return StoreError(f"sqlite: {error}")


def _open_reader(path: str) -> sqlite3.Connection:
    """The read-only connection of the event loop's point reads. Opened on the store's
    thread (it touches the file), used only on the event loop's thread afterwards."""
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        reader.execute("PRAGMA query_only=ON")
        reader.execute("PRAGMA busy_timeout=0")  # never make the event loop wait
    except BaseException:
        reader.close()
        raise
    return reader


class _Database:
    """The writer's connection and every blocking operation, used only by the store's one
    thread; and ``reader``, which it opens for the event loop's thread."""

    def __init__(self, path: str, history: int, synchronous: Synchronous) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        self.path = path
        self.synchronous = synchronous
        self.history_size = history
        self.connection = _open_writer(path, synchronous)
        try:
            self.connection.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA}"
                f"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', {SCHEMA_VERSION});"
                "COMMIT;"
            )
            (schema,) = self.connection.execute(
                "SELECT value FROM meta WHERE key='schema'"
            ).fetchone()
            if schema != SCHEMA_VERSION:
                raise StoreError(f"{path}: store schema {schema}, expected {SCHEMA_VERSION}")
            self.reader = _open_reader(path)  # now that the file is in WAL mode
        except BaseException:
            self.connection.close()
            raise

    @contextlib.contextmanager
    def transaction(self, begin: str = "BEGIN") -> Iterator[None]:
        """One transaction, rolled back on any error. SQLite may have rolled it back
        itself (SQLITE_FULL at COMMIT usually does); should the ROLLBACK fail too, the
        writer is reopened rather than left inside a transaction that would refuse every
        later BEGIN."""
        self.connection.execute(begin)
        try:
            yield
            self.connection.execute("COMMIT")
        except BaseException:
            if self.connection.in_transaction:
                try:
                    self.connection.rollback()
                except sqlite3.Error:
                    self._reopen()
            raise

    def _reopen(self) -> None:
        """A new writer connection; closing the old one discards its open transaction."""
        with contextlib.suppress(sqlite3.Error):
            self.connection.close()
        self.connection = _open_writer(self.path, self.synchronous)

    def resource_version(self) -> int:
        row = self.connection.execute(
            "SELECT value FROM meta WHERE key='resource_version'"
        ).fetchone()
        return int(row[0])

    def lookup(self, keys: Collection[ObjectKey]) -> dict[ObjectKey, changes.Stored]:
        """The stored objects among ``keys``: one query per (kind, namespace, chunk)."""
        names: dict[tuple[str, str], builtins.list[str]] = {}
        for key in keys:
            names.setdefault((key.kind, key.namespace), []).append(key.name)
        found = {}
        for (kind, namespace), wanted in names.items():
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                rows = self.connection.execute(
                    "SELECT name, body FROM objects WHERE kind=? AND namespace=?"
                    f" AND name IN {_in_list(len(chunk))}",
                    (kind, namespace, *chunk),
                )
                for name, body in rows:
                    found[ObjectKey(kind, namespace, name)] = changes.Stored(
                        changes.load(body), body
                    )
        return found

    def write(
        self,
        planner: Callable[[changes.Lookup, int], changes.Plan],
        on_commit: Callable[[list[changes.Record]], None],
    ) -> changes.Plan:
        """Plan against the current state and commit, all in one write transaction."""
        connection = self.connection
        with self.transaction("BEGIN IMMEDIATE"):
            plan = planner(self.lookup, self.resource_version() + 1)
            if not plan.records:
                return plan
            upserts = []
            deletes = []
            for key, stored in plan.written.items():
                if stored is None:
                    deletes.append((key.kind, key.namespace, key.name))
                else:
                    rv = int(stored.obj["metadata"]["resourceVersion"])
                    upserts.append((key.kind, key.namespace, key.name, rv, stored.body))
            connection.executemany(_UPSERT, upserts)
            connection.executemany(
                "DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", deletes
            )
            connection.executemany(
                "INSERT INTO events (rv, type, kind, namespace, name, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.resource_version, r.type, r.key.kind, r.key.namespace, r.key.name, r.body)
                    for r in plan.records
                ],
            )
            last_rv = plan.records[-1].resource_version
            connection.execute("UPDATE meta SET value=? WHERE key='resource_version'", (last_rv,))
            connection.execute("DELETE FROM events WHERE rv <= ?", (last_rv - self.history_size,))
        on_commit(plan.records)
        return plan

    def get(self, key: ObjectKey) -> str | None:
        return _get(self.connection, key)

    def list(
        self,
        kind: str,
        namespace: str | None,
        selector: Selector | None,
        after: tuple[str, str] | None,
        limit: int | None,
    ) -> tuple[builtins.list[Object], int]:
        """See `osm.store.api.Store.list`. One read transaction walks the primary key from
        ``after`` and decodes rows only until ``limit`` of them match ``selector``."""
        query, parameters = _list_query(kind, namespace, after)
        if query is None:
            return [], self.resource_version()
        if selector is None and limit is not None:
            query += " LIMIT ?"
            parameters.append(limit)
        items: builtins.list[Object] = []
        with self.transaction():
            rows = self.connection.execute(query, parameters)
            try:
                while limit is None or len(items) < limit:
                    chunk = rows.fetchmany(LIST_CHUNK)
                    for (body,) in chunk:
                        item = changes.load(body)
                        if selector is None or selector.matches(labels_of(item)):
                            items.append(item)
                            if len(items) == limit:
                                break
                    if len(chunk) < LIST_CHUNK:
                        break
            finally:
                rows.close()
            rv = self.resource_version()
        return items, rv

    def history(
        self, after: int, until: int, kinds: frozenset[str] | None
    ) -> tuple[builtins.list[changes.Record], int] | None:
        with self.transaction():
            (oldest,) = self.connection.execute("SELECT MIN(rv) FROM events").fetchone()
            if oldest is None or oldest > after + 1:
                return None
            query = (
                "SELECT rv, type, kind, namespace, name, body FROM events WHERE rv > ? AND rv <= ?"
            )
            parameters: builtins.list[object] = [after, until]
            if kinds is not None:
                query += " AND kind IN " + _in_list(len(kinds))
                parameters.extend(sorted(kinds))
            query += " ORDER BY rv LIMIT ?"
            parameters.append(HISTORY_PAGE)
            rows = self.connection.execute(query, parameters).fetchall()
        records = [
            changes.Record(rv, type_, ObjectKey(kind, namespace, name), body)
            for rv, type_, kind, namespace, name, body in rows
        ]
        read_to = records[-1].resource_version if len(records) == HISTORY_PAGE else until
        return records, read_to

    def snapshot(self, kinds: frozenset[str] | None) -> tuple[builtins.list[str], int]:
        query = "SELECT body FROM objects"
        parameters: builtins.list[str] = []
        if kinds is not None:
            query += " WHERE kind IN " + _in_list(len(kinds))
            parameters.extend(sorted(kinds))
        query += " ORDER BY kind, namespace, name"
        with self.transaction():
            bodies = [body for (body,) in self.connection.execute(query, parameters)]
            return bodies, self.resource_version()

    def close(self) -> None:
        """Close the writer; the reader is the event loop's to close, before this."""
        self.connection.close()


class SqliteStore:
    """Implements `osm.store.api.Store` on a SQLite file; see there for the contract.

    Create it with ``await SqliteStore.open(path)`` (async because opening touches the
    file, off the event loop); the store then belongs to that running loop. Close it
    with ``await store.close()`` or ``async with``.
    """

    def __init__(
        self,
        database: _Database,
        loop: asyncio.AbstractEventLoop,
        executor: concurrent.futures.ThreadPoolExecutor,
        resource_version: int,
        watch_queue_size: int,
    ) -> None:
        """Private: use `open`."""
        self._database = database
        self._reader = database.reader
        self._loop = loop
        self._executor = executor
        self._rv = resource_version
        self._hub = watchers.WatcherHub(watch_queue_size)
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        history: int = 100_000,
        watch_queue_size: int = watchers.DEFAULT_QUEUE_SIZE,
        synchronous: Synchronous = "FULL",
    ) -> SqliteStore:
        """Open (creating if needed) the store in ``path``, keeping ``history`` events."""
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        loop = asyncio.get_running_loop()
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="osm-store")
        try:
            database = await loop.run_in_executor(
                executor, _Database, os.fspath(path), history, synchronous
            )
            resource_version = await loop.run_in_executor(executor, database.resource_version)
        except sqlite3.Error as error:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open the store in {os.fspath(path)}: {error}") from error
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(database, loop, executor, resource_version, watch_queue_size)

    @property
    def resource_version(self) -> int:
        return self._rv

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._closed:
            raise StoreClosed()
        try:
            return await self._loop.run_in_executor(
                self._executor, lambda: function(*args, **kwargs)
            )
        except sqlite3.Error as error:
            raise store_error(error, self._database.path) from error

    def _on_commit(self, records: builtins.list[changes.Record]) -> None:
        """Called on the store's thread right after COMMIT."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is watching
            self._loop.call_soon_threadsafe(self._publish, records)

    def _publish(self, records: builtins.list[changes.Record]) -> None:
        self._rv = records[-1].resource_version
        self._hub.publish(records)

    async def apply(self, objects: Sequence[Object]) -> builtins.list[Object]:
        def planner(lookup: changes.Lookup, next_rv: int) -> changes.Plan:
            return changes.plan_apply(objects, lookup, next_rv)

        plan = await self._run(self._database.write, planner, self._on_commit)
        return [changes.load(body) for body in plan.results]

    async def get(self, key: ObjectKey) -> Object:
        if self._closed:
            raise StoreClosed()
        try:
            body = _get(self._reader, key)
        except sqlite3.OperationalError:
            # Busy or locked (say, another process holds the file in exclusive mode): the
            # store's thread may wait for it, the event loop may not.
            body = await self._run(self._database.get, key)
        except sqlite3.Error as error:
            raise store_error(error, self._database.path) from error
        if body is None:
            raise NotFound(key)
        return changes.load(body)

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: Selector | None = None,
        *,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> tuple[builtins.list[Object], int]:
        check_limit(limit)
        return await self._run(self._database.list, kind, namespace, selector, after, limit)

    async def delete(self, keys: Sequence[ObjectKey]) -> builtins.list[Object]:
        def planner(lookup: changes.Lookup, next_rv: int) -> changes.Plan:
            return changes.plan_delete(keys, lookup, next_rv)

        plan = await self._run(self._database.write, planner, self._on_commit)
        return [changes.load(body) for body in plan.results]

    def watch(
        self,
        since: int | None = None,
        kinds: Collection[str] | None = None,
        *,
        shared: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        return self._hub.watch(self, since, self._rv, kinds, shared)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        self._reader.close()
        try:
            # Runs after every call already queued on the store's thread.
            await self._loop.run_in_executor(self._executor, self._database.close)
        finally:
            self._executor.shutdown(wait=False)

    # --- watchers.EventSource ------------------------------------------------------------

    async def history(
        self, after: int, until: int, kinds: frozenset[str] | None
    ) -> tuple[builtins.list[changes.Record], int] | None:
        return await self._run(self._database.history, after, until, kinds)

    async def snapshot(self, kinds: frozenset[str] | None) -> tuple[builtins.list[str], int]:
        return await self._run(self._database.snapshot, kinds)
