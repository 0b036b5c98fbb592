"""SqliteStore when its filesystem is full: a refused write leaves no trace, reads go on,
and writes succeed again once there is room, without reopening the store.

"Full" is SQLite's own SQLITE_FULL, provoked here by capping the database's page count on
the writer's connection (``PRAGMA max_page_count``), which fails exactly where a full disk
does: wherever a write needs a new page. tests/integration/test_store_full_disk.py fills a
real filesystem.
"""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from osm.store import Conflict, InsufficientStorage, ObjectKey, SqliteStore, StoreError, sqlite
from tests.unit.store.storetesting import config_map, next_event, nothing_pending

BIG = "x" * 20_000
"""A value that takes pages of its own: every write of it needs new pages."""
UNLIMITED = 1 << 30


async def cap_pages(store: SqliteStore, pages: int | None) -> None:
    """Caps the file at its current size (None) or at ``pages``; on the store's thread,
    which owns the writer's connection."""

    def cap() -> None:
        connection = store._database.connection
        if pages is None:
            (count,) = connection.execute("PRAGMA page_count").fetchone()
            connection.execute(f"PRAGMA max_page_count={count}")
        else:
            connection.execute(f"PRAGMA max_page_count={pages}")

    await store._run(cap)


def key(name: str) -> ObjectKey:
    return ObjectKey("ConfigMap", "default", name)


Write = Callable[[SqliteStore], Awaitable[Any]]
WRITES: dict[str, Write] = {
    "create": lambda store: store.apply([config_map("new", data={"big": BIG})]),
    "update": lambda store: store.apply([config_map("old", data={"big": BIG + "z"})]),
    "delete": lambda store: store.delete([key("old")]),
    "batch": lambda store: store.apply(
        [config_map("new", data={"big": BIG}), config_map("old", data={"big": BIG + "y"})]
    ),
}


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> Any:
    async with await SqliteStore.open(tmp_path / "store.db") as opened:
        yield opened


@pytest.mark.parametrize("write", WRITES, ids=list(WRITES))
async def test_a_refused_write_leaves_no_trace_and_the_same_write_succeeds_with_room(
    store: SqliteStore, write: str
) -> None:
    await store.apply([config_map("old", data={"big": BIG})])
    listed_before = await store.list("ConfigMap")
    old = await store.get(key("old"))
    rv = store.resource_version
    events = store.watch()
    await cap_pages(store, None)

    with pytest.raises(InsufficientStorage) as refused:
        await WRITES[write](store)

    assert refused.value.path == store._database.path
    assert store.resource_version == rv, "no resourceVersion is consumed"
    assert await store.list("ConfigMap") == listed_before, "list shows the old state"
    assert await store.get(key("old")) == old
    assert await nothing_pending(events), "no watcher hears of a refused write"
    resumed = store.watch(since=rv)
    assert await nothing_pending(resumed), "the history has no trace of it either"

    await cap_pages(store, UNLIMITED)
    await WRITES[write](store)
    event = await next_event(events)
    assert event.resource_version == rv + 1, "the next write takes the next rv"
    assert (await next_event(resumed)).resource_version == rv + 1


async def test_reads_and_watches_answer_while_writes_are_refused(store: SqliteStore) -> None:
    await store.apply([config_map(f"cm-{i}") for i in range(5)])
    await cap_pages(store, None)
    for attempt in range(3):
        with pytest.raises(InsufficientStorage):
            await store.apply([config_map(f"big-{attempt}", data={"big": BIG})])
    items, rv = await store.list("ConfigMap", limit=2)
    assert [item["metadata"]["name"] for item in items] == ["cm-0", "cm-1"]
    assert rv == store.resource_version == 5
    watch = store.watch(since=0)
    assert [(await next_event(watch)).resource_version for _ in range(5)] == [1, 2, 3, 4, 5]
    assert await nothing_pending(watch)


async def test_what_was_refused_is_not_there_after_a_restart_and_what_succeeded_is(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "store.db"
    async with await SqliteStore.open(path) as store:
        await store.apply([config_map("before")])
        await cap_pages(store, None)
        with pytest.raises(InsufficientStorage):
            await store.apply([config_map("refused", data={"big": BIG})])
        await cap_pages(store, UNLIMITED)
        await store.apply([config_map("after", data={"big": BIG})])
        expected = await store.list("ConfigMap")
    async with await SqliteStore.open(path) as store:
        assert await store.list("ConfigMap") == expected
        assert [item["metadata"]["name"] for item in expected[0]] == ["after", "before"]
        assert store.resource_version == 2
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()


def sqlite_error(code: int) -> sqlite3.Error:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


SQLITE_IOERR_SHMSIZE = sqlite3.SQLITE_IOERR | (19 << 8)


@pytest.mark.parametrize(
    ("code", "filesystem_full", "expected"),
    [
        (sqlite3.SQLITE_FULL, False, InsufficientStorage),
        (sqlite3.SQLITE_IOERR, True, InsufficientStorage),
        (SQLITE_IOERR_SHMSIZE, True, InsufficientStorage),
        (sqlite3.SQLITE_IOERR, False, StoreError),
        (sqlite3.SQLITE_CORRUPT, True, StoreError),
    ],
    ids=["full", "ioerror-no-room", "wal-index-no-room", "ioerror-with-room", "corrupt"],
)
def test_which_sqlite_errors_mean_the_filesystem_is_full(
    monkeypatch: pytest.MonkeyPatch, code: int, filesystem_full: bool, expected: type
) -> None:
    monkeypatch.setattr(sqlite, "_filesystem_full", lambda path: filesystem_full)
    error = sqlite.store_error(sqlite_error(code), "/state/store.db")
    assert type(error) is expected
    if isinstance(error, InsufficientStorage):
        assert error.path == "/state/store.db"


class RollbackFails:
    """The writer's connection, but its ROLLBACK fails (as it may on a sick disk)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)

    def rollback(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_writer_whose_rollback_fails_is_reopened_not_left_in_its_transaction(
    store: SqliteStore,
) -> None:
    await store.apply([config_map("old")])
    store._database.connection = RollbackFails(store._database.connection)  # type: ignore[assignment]
    stale = config_map("old", data={"key": "stale"})
    stale["metadata"]["resourceVersion"] = "7"
    with pytest.raises(Conflict):  # raised inside the write transaction
        await store.apply([stale])
    assert not isinstance(store._database.connection, RollbackFails), "a new connection"
    [created] = await store.apply([config_map("new", data={"big": BIG})])
    assert created["metadata"]["resourceVersion"] == "2"
