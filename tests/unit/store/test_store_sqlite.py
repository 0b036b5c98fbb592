"""SqliteStore beyond the contract: restarts, resuming watches, the file's layout, reads
on the event loop's thread and pages along the primary key."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3

import pytest

from osm.store import NotFound, ObjectKey, SqliteStore, StoreError, parse_selector
from tests.unit.store.storetesting import config_map, next_event, take


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store.db"


async def test_a_restart_keeps_objects_and_the_resource_version_counter(
    path: pathlib.Path,
) -> None:
    async with await SqliteStore.open(path) as store:
        created = await store.apply([config_map("a"), config_map("b")])
        await store.delete([ObjectKey("ConfigMap", "default", "b")])
    async with await SqliteStore.open(path) as store:
        assert store.resource_version == 3
        items, rv = await store.list("ConfigMap")
        assert (items, rv) == ([created[0]], 3)
        [updated] = await store.apply([config_map("a", data={"key": "2"})])
        assert updated["metadata"]["resourceVersion"] == "4"
        assert updated["metadata"]["uid"] == created[0]["metadata"]["uid"]
        assert updated["metadata"]["generation"] == 2


async def test_a_watcher_resumes_from_its_last_resource_version_after_a_restart(
    path: pathlib.Path,
) -> None:
    async with await SqliteStore.open(path) as store:
        events = store.watch()
        await store.apply([config_map("a"), config_map("b")])
        last_seen = (await next_event(events)).resource_version  # the consumer saw rv 1
        await store.apply([config_map("c")])
    async with await SqliteStore.open(path) as store:
        events = store.watch(since=last_seen)
        await store.apply([config_map("d")])
        got = await take(events, 3)
        assert [(e.type, e.resource_version) for e in got] == [
            ("ADDED", 2),
            ("ADDED", 3),
            ("ADDED", 4),
        ]
        assert got[0].object is not None and got[0].object["metadata"]["name"] == "b"


async def test_history_is_read_in_pages(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from osm.store import sqlite

    monkeypatch.setattr(sqlite, "HISTORY_PAGE", 3)
    async with await SqliteStore.open(path) as store:
        await store.apply([config_map(f"o{i}") for i in range(10)])
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
        await store.apply([secret])
        assert [e.resource_version for e in await take(store.watch(since=1), 10)] == list(
            range(2, 12)
        )
        kinds = store.watch(since=0, kinds=["Secret"])
        assert (await next_event(kinds)).resource_version == 11


async def test_compaction_survives_a_restart(path: pathlib.Path) -> None:
    async with await SqliteStore.open(path, history=2) as store:
        await store.apply([config_map(name) for name in "abcde"])
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT rv FROM events ORDER BY rv").fetchall()
    connection.close()
    assert rows == [(4,), (5,)]
    async with await SqliteStore.open(path, history=2) as store:
        assert [e.resource_version for e in await take(store.watch(since=3), 2)] == [4, 5]
        resync = await next_event(store.watch(since=2))
        assert (resync.type, resync.resource_version, len(resync.objects)) == ("RESYNC", 5, 5)


async def test_a_failed_batch_leaves_the_file_unchanged(path: pathlib.Path) -> None:
    async with await SqliteStore.open(path) as store:
        await store.apply([config_map("a")])
        stale = config_map("a", data={"key": "x"})
        stale["metadata"]["resourceVersion"] = "99"
        with pytest.raises(StoreError):
            await store.apply([config_map("b"), stale])
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM objects").fetchone() == (1,)
        assert connection.execute("SELECT count(*) FROM events").fetchone() == (1,)
        assert connection.execute(
            "SELECT value FROM meta WHERE key='resource_version'"
        ).fetchone() == (1,)
    connection.close()


@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("NORMAL", 1)])
async def test_the_file_is_in_wal_mode(
    path: pathlib.Path, synchronous: str, level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await SqliteStore.open(path, synchronous=synchronous) as store:  # type: ignore[arg-type]
        await store.apply([config_map("a")])
        database = store._database

        def pragmas() -> tuple[str, int]:
            connection = database.connection
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            sync = connection.execute("PRAGMA synchronous").fetchone()[0]
            return mode, sync

        assert await store._run(pragmas) == ("wal", level)


async def test_bulk_apply_of_ten_thousand_objects(path: pathlib.Path) -> None:
    async with await SqliteStore.open(path) as store:
        objects = [config_map(f"cm-{i:05}", f"ns-{i % 10}") for i in range(10_000)]
        stored = await store.apply(objects)
        assert stored[-1]["metadata"]["resourceVersion"] == "10000"
        assert await store.apply(objects) == stored  # all no-ops
        items, rv = await store.list("ConfigMap", "ns-3")
        assert (len(items), rv) == (1_000, 10_000)


async def test_an_unknown_schema_is_refused(path: pathlib.Path) -> None:
    async with await SqliteStore.open(path):
        pass
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value=99 WHERE key='schema'")
    connection.close()
    with pytest.raises(StoreError, match="schema 99"):
        await SqliteStore.open(path)


async def test_sqlite_errors_become_store_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore.open(tmp_path)  # a directory
    with pytest.raises(ValueError, match="synchronous"):
        await SqliteStore.open(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]


# --- point reads on the event loop's thread, pages along the primary key ------------------


async def test_get_answers_on_the_event_loops_thread(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await SqliteStore.open(path) as store:
        [created] = await store.apply([config_map("a")])

        async def no_hop(*args: object, **kwargs: object) -> None:
            raise AssertionError("get went to the store's thread")

        monkeypatch.setattr(store, "_run", no_hop)
        assert await store.get(ObjectKey("ConfigMap", "default", "a")) == created
        with pytest.raises(NotFound):
            await store.get(ObjectKey("ConfigMap", "default", "b"))


async def test_every_get_sees_every_write_committed_before_it(path: pathlib.Path) -> None:
    a = ObjectKey("ConfigMap", "default", "a")
    async with await SqliteStore.open(path) as store:
        for version in range(30):
            [stored] = await store.apply([config_map("a", data={"version": str(version)})])
            assert await store.get(a) == stored
        await store.delete([a])
        with pytest.raises(NotFound):
            await store.get(a)


async def test_a_get_during_a_batch_sees_all_of_it_or_none(path: pathlib.Path) -> None:
    first, last = (ObjectKey("ConfigMap", "default", f"o{i:04}") for i in (0, 1999))
    async with await SqliteStore.open(path) as store:
        writing = asyncio.create_task(store.apply([config_map(f"o{i:04}") for i in range(2000)]))
        seen = []
        while not writing.done():
            seen.append((await _exists(store, last), await _exists(store, first)))
            await asyncio.sleep(0)
        await writing
        assert (True, False) not in seen  # the last without the first: half a batch
        assert await _exists(store, last)


async def _exists(store: SqliteStore, key: ObjectKey) -> bool:
    try:
        await store.get(key)
    except NotFound:
        return False
    return True


class _BusyReader:
    def execute(self, *args: object) -> None:
        raise sqlite3.OperationalError("database is locked")


async def test_a_busy_reader_leaves_the_read_to_the_stores_thread(path: pathlib.Path) -> None:
    async with await SqliteStore.open(path) as store:
        [created] = await store.apply([config_map("a")])
        reader, store._reader = store._reader, _BusyReader()  # type: ignore[assignment]
        try:
            assert await store.get(ObjectKey("ConfigMap", "default", "a")) == created
        finally:
            store._reader = reader


async def test_the_reader_cannot_write(path: pathlib.Path) -> None:
    async with await SqliteStore.open(path) as store:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._reader.execute("DELETE FROM objects")


@pytest.mark.parametrize(
    ("namespace", "after"),
    [(None, None), (None, ("ns", "a")), ("ns", None), ("ns", ("ns", "a")), ("ns", ("a", "b"))],
)
async def test_a_page_is_a_range_of_the_primary_key(
    path: pathlib.Path, namespace: str | None, after: tuple[str, str] | None
) -> None:
    from osm.store import sqlite

    query, parameters = sqlite._list_query("ConfigMap", namespace, after)
    assert query is not None
    async with await SqliteStore.open(path) as store:
        plan = " ".join(
            row[3] for row in store._reader.execute(f"EXPLAIN QUERY PLAN {query}", parameters)
        )
    assert "USING PRIMARY KEY" in plan
    assert "TEMP B-TREE" not in plan  # already in order: no sort


async def test_a_filtered_page_reads_rows_in_chunks(
    path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from osm.store import sqlite

    monkeypatch.setattr(sqlite, "LIST_CHUNK", 3)
    async with await SqliteStore.open(path) as store:
        await store.apply(
            [
                config_map(f"o{i:02}", labels={"app": "web" if i % 5 == 0 else "db"})
                for i in range(30)
            ]
        )
        web = parse_selector("app=web")
        cases = [(None, 2, ["o00", "o05"]), (("default", "o05"), 3, ["o10", "o15", "o20"])]
        cases += [(("default", "o20"), 5, ["o25"]), (("default", "o25"), 1, [])]
        for after, limit, expected in cases:
            items, rv = await store.list("ConfigMap", None, web, after=after, limit=limit)
            assert ([i["metadata"]["name"] for i in items], rv) == (expected, 30), after
