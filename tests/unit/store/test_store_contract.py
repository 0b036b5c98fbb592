"""The `Store` contract, run against every implementation (see conftest.make_store)."""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from typing import Any

import pytest

from osm.store import (
    Conflict,
    InvalidObject,
    NotFound,
    ObjectKey,
    Store,
    StoreClosed,
    parse_selector,
)
from tests.unit.store.storetesting import (
    StoreFactory,
    config_map,
    next_event,
    nothing_pending,
    take,
)

CM = "ConfigMap"


def key(name: str, namespace: str = "default", kind: str = CM) -> ObjectKey:
    return ObjectKey(kind, namespace, name)


def rv_of(obj: dict[str, Any]) -> str:
    rv: str = obj["metadata"]["resourceVersion"]
    return rv


# --- apply --------------------------------------------------------------------------------


async def test_create_sets_the_server_metadata(store: Store) -> None:
    [created] = await store.apply([config_map("a")])
    metadata = created["metadata"]
    assert metadata["resourceVersion"] == "1"
    assert metadata["generation"] == 1
    assert uuid.UUID(metadata["uid"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metadata["creationTimestamp"])
    assert store.resource_version == 1
    assert await store.get(key("a")) == created


async def test_each_object_of_a_batch_gets_the_next_resource_version(store: Store) -> None:
    created = await store.apply([config_map(name) for name in "abc"])
    assert [rv_of(obj) for obj in created] == ["1", "2", "3"]
    more = await store.apply([config_map("d")])
    assert rv_of(more[0]) == "4"
    assert store.resource_version == 4


async def test_update_keeps_uid_and_creation_timestamp(store: Store) -> None:
    [created] = await store.apply([config_map("a")])
    [updated] = await store.apply([config_map("a", data={"key": "other"})])
    assert rv_of(updated) == "2"
    for field in ("uid", "creationTimestamp"):
        assert updated["metadata"][field] == created["metadata"][field]


async def test_input_server_fields_are_ignored(store: Store) -> None:
    [created] = await store.apply([config_map("a")])
    forged = config_map("a", data={"key": "new"})
    forged["metadata"].update(uid="forged", creationTimestamp="1970-01-01T00:00:00Z")
    forged["metadata"]["generation"] = 99
    [updated] = await store.apply([forged])
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert updated["metadata"]["generation"] == 2


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    target = obj
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return obj


@pytest.mark.parametrize(
    ("change", "generation"),
    [
        pytest.param("data.key", 2, id="data changes bump generation"),
        pytest.param("spec.replicas", 2, id="spec changes bump generation"),
        pytest.param("metadata.labels.app", 1, id="labels do not"),
        pytest.param("metadata.annotations.note", 1, id="annotations do not"),
        pytest.param("status.phase", 1, id="status does not"),
    ],
)
async def test_generation_counts_changes_outside_metadata_and_status(
    store: Store, change: str, generation: int
) -> None:
    original = config_map("a")
    await store.apply([original])
    [updated] = await store.apply([_with(original, change, "changed")])
    assert rv_of(updated) == "2"
    assert updated["metadata"]["generation"] == generation


async def test_applying_unchanged_content_is_a_no_op(store: Store) -> None:
    created, _ = await store.apply([config_map("a"), config_map("b")])
    events = store.watch()
    again = await store.apply([config_map("a")])  # without server fields
    assert again == [created]
    roundtrip = await store.apply([created])  # with them (and a matching rv)
    assert roundtrip == [created]
    assert store.resource_version == 2
    assert await nothing_pending(events)


async def test_a_batch_writes_only_what_changed(store: Store) -> None:
    await store.apply([config_map("a"), config_map("b")])
    result = await store.apply([config_map("a"), config_map("b", data={"key": "new"})])
    assert [rv_of(obj) for obj in result] == ["1", "3"]


async def test_cluster_scoped_objects_have_an_empty_namespace(store: Store) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    [created] = await store.apply([namespace])
    assert "namespace" not in created["metadata"]
    assert ObjectKey.of(created) == ObjectKey("Namespace", "", "shop")
    assert await store.get(ObjectKey("Namespace", "", "shop")) == created
    explicit = {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "shop", "namespace": ""},
    }
    assert await store.apply([explicit]) == [created]
    items, _ = await store.list("Namespace")
    assert items == [created]


async def test_later_objects_in_a_batch_see_earlier_ones(store: Store) -> None:
    first, second = await store.apply([config_map("a"), config_map("a", data={"key": "2"})])
    assert (rv_of(first), rv_of(second)) == ("1", "2")
    assert second["metadata"]["generation"] == 2
    assert (await store.get(key("a")))["data"] == {"key": "2"}


async def test_apply_does_not_mutate_its_input(store: Store) -> None:
    objects = [config_map("a", labels={"app": "web"}), config_map("b")]
    before = copy.deepcopy(objects)
    await store.apply(objects)
    updated = [config_map("a", labels={"app": "api"})]
    await store.apply(updated)
    assert objects == before
    assert updated == [config_map("a", labels={"app": "api"})]


async def test_returned_objects_are_copies(store: Store) -> None:
    source = config_map("a", labels={"app": "web"})
    [created] = await store.apply([source])
    created["data"]["key"] = "corrupted"
    source["data"]["key"] = "corrupted too"
    got = await store.get(key("a"))
    assert got["data"] == {"key": "value"}
    got["metadata"]["labels"]["app"] = "corrupted"
    items, _ = await store.list(CM)
    assert items[0]["metadata"]["labels"] == {"app": "web"}
    items[0]["data"].clear()
    assert (await store.get(key("a")))["data"] == {"key": "value"}


async def test_empty_batches_do_nothing(store: Store) -> None:
    assert await store.apply([]) == []
    assert await store.delete([]) == []
    assert store.resource_version == 0


# --- optimistic concurrency and all-or-nothing ---------------------------------------------


async def test_matching_resource_version_is_accepted(store: Store) -> None:
    [created] = await store.apply([config_map("a")])
    [updated] = await store.apply([_with(created, "data.key", "new")])
    assert rv_of(updated) == "2"


async def test_stale_resource_version_conflicts_and_writes_nothing(store: Store) -> None:
    [created] = await store.apply([config_map("a")])
    await store.apply([config_map("a", data={"key": "moved on"})])
    events = store.watch()
    stale = _with(created, "data.key", "stale")
    with pytest.raises(Conflict) as caught:
        await store.apply([config_map("new"), stale])
    assert (caught.value.key, caught.value.expected_rv, caught.value.actual_rv) == (
        key("a"),
        "1",
        "2",
    )
    assert store.resource_version == 2
    with pytest.raises(NotFound):
        await store.get(key("new"))
    assert (await store.get(key("a")))["data"] == {"key": "moved on"}
    assert await nothing_pending(events)


async def test_resource_version_of_a_missing_object_conflicts(store: Store) -> None:
    ghost = _with(config_map("ghost"), "metadata.resourceVersion", "7")
    with pytest.raises(Conflict) as caught:
        await store.apply([ghost])
    assert caught.value.actual_rv is None
    assert store.resource_version == 0


async def test_an_invalid_object_fails_the_whole_batch(store: Store) -> None:
    await store.apply([config_map("a")])
    invalid: list[Any] = [
        {"kind": CM, "metadata": {}},
        {"metadata": {"name": "x"}},
        {"kind": CM, "metadata": {"name": "x", "namespace": 3}},
        config_map("x", data={"key": float("nan")}),  # type: ignore[dict-item]
        config_map("x", data={"key": {1, 2}}),  # type: ignore[dict-item]
    ]
    for bad in invalid:
        with pytest.raises(InvalidObject):
            await store.apply([config_map("b"), config_map("a", data={"k": "v"}), bad])
    assert store.resource_version == 1
    items, _ = await store.list(CM)
    assert [item["metadata"]["name"] for item in items] == ["a"]
    assert items[0]["data"] == {"key": "value"}


# --- get, list ----------------------------------------------------------------------------


async def test_get_a_missing_object_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as caught:
        await store.get(key("nope"))
    assert caught.value.key == key("nope")


async def test_list_by_kind_namespace_and_selector(store: Store) -> None:
    await store.apply(
        [
            config_map("b", "prod", labels={"app": "web", "tier": "front"}),
            config_map("a", "prod", labels={"app": "db"}),
            config_map("c", "dev", labels={"app": "web"}),
            config_map("z", "dev"),
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "dev"}},
        ]
    )

    def names(items: list[dict[str, Any]]) -> list[str]:
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items]

    cases = [
        (None, None, ["dev/c", "dev/z", "prod/a", "prod/b"]),
        ("prod", None, ["prod/a", "prod/b"]),
        ("nowhere", None, []),
        (None, "app=web", ["dev/c", "prod/b"]),
        (None, "app!=web", ["dev/z", "prod/a"]),
        (None, "app in (db,web),!tier", ["dev/c", "prod/a"]),
        ("prod", "tier", ["prod/b"]),
    ]
    for namespace, selector, expected in cases:
        parsed = None if selector is None else parse_selector(selector)
        items, rv = await store.list(CM, namespace, parsed)
        assert names(items) == expected, (namespace, selector)
        assert rv == 5
    assert (await store.list("Service")) == ([], 5)


_PAGED = [
    config_map("b", "prod", labels={"app": "web"}),
    config_map("a", "prod", labels={"app": "db"}),
    config_map("c", "dev", labels={"app": "web"}),
    config_map("z", "dev"),
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "dev"}},
]
"""dev/c, dev/z, prod/a, prod/b (and a Secret that no ConfigMap list shows)."""


@pytest.mark.parametrize(
    ("namespace", "selector", "after", "limit", "expected"),
    [
        (None, None, None, 2, ["dev/c", "dev/z"]),
        (None, None, ("dev", "z"), None, ["prod/a", "prod/b"]),
        (None, None, ("dev", "z"), 1, ["prod/a"]),
        (None, None, ("dev", "d"), 2, ["dev/z", "prod/a"]),  # after a position not stored
        (None, None, ("dev", ""), None, ["dev/c", "dev/z", "prod/a", "prod/b"]),
        (None, None, ("prod", "b"), None, []),
        (None, None, None, 100, ["dev/c", "dev/z", "prod/a", "prod/b"]),
        ("prod", None, ("dev", "z"), None, ["prod/a", "prod/b"]),  # an earlier namespace
        ("dev", None, ("prod", "a"), None, []),  # a later namespace
        ("dev", None, ("dev", "c"), 5, ["dev/z"]),
        (None, "app=web", None, 1, ["dev/c"]),
        (None, "app=web", ("dev", "c"), 1, ["prod/b"]),  # the limit counts after the selector
        (None, "app=web", ("prod", "b"), 1, []),
        ("prod", "app", ("prod", "a"), 1, ["prod/b"]),
    ],
)
async def test_list_pages_start_after_a_position_and_hold_at_most_limit_objects(
    store: Store,
    namespace: str | None,
    selector: str | None,
    after: tuple[str, str] | None,
    limit: int | None,
    expected: list[str],
) -> None:
    await store.apply(_PAGED)
    parsed = None if selector is None else parse_selector(selector)
    items, rv = await store.list(CM, namespace, parsed, after=after, limit=limit)
    assert [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items] == expected
    assert rv == 5


@pytest.mark.parametrize("selector", [None, "app=app-1", "app=none"])
@pytest.mark.parametrize("size", [1, 3, 7, 40])
async def test_pages_joined_are_the_whole_list(
    store: Store, selector: str | None, size: int
) -> None:
    await store.apply(
        [config_map(f"o{i:02}", f"ns-{i % 3}", labels={"app": f"app-{i % 4}"}) for i in range(30)]
    )
    parsed = None if selector is None else parse_selector(selector)
    whole, _ = await store.list(CM, None, parsed)
    joined: list[dict[str, Any]] = []
    after = None
    while True:
        page, _ = await store.list(CM, None, parsed, after=after, limit=size)
        assert len(page) <= size
        joined += page
        if len(page) < size:
            break
        after = (page[-1]["metadata"]["namespace"], page[-1]["metadata"]["name"])
    assert joined == whole


async def test_a_page_sees_objects_created_and_deleted_before_it(store: Store) -> None:
    await store.apply([config_map("b"), config_map("d")])
    first, _ = await store.list(CM, limit=1)
    await store.apply([config_map("c"), config_map("a")])
    await store.delete([key("d")])
    rest, rv = await store.list(CM, after=("default", "b"), limit=5)
    assert [i["metadata"]["name"] for i in first + rest] == ["b", "c"]
    assert rv == 5


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_page_holds_at_least_one_object(store: Store, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list(CM, limit=limit)


# --- delete -------------------------------------------------------------------------------


async def test_delete_returns_the_last_state_at_the_deletion_rv(store: Store) -> None:
    created, _ = await store.apply([config_map("a"), config_map("b")])
    events = store.watch()
    [deleted] = await store.delete([key("a")])
    assert rv_of(deleted) == "3"
    assert {k: v for k, v in deleted.items() if k != "metadata"} == {
        k: v for k, v in created.items() if k != "metadata"
    }
    assert deleted["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(NotFound):
        await store.get(key("a"))
    event = await next_event(events)
    assert (event.type, event.resource_version, event.object) == ("DELETED", 3, deleted)
    [recreated] = await store.apply([config_map("a")])
    assert recreated["metadata"]["uid"] != created["metadata"]["uid"]
    assert rv_of(recreated) == "4"


async def test_delete_is_all_or_nothing(store: Store) -> None:
    await store.apply([config_map("a"), config_map("b")])
    with pytest.raises(NotFound) as caught:
        await store.delete([key("a"), key("missing"), key("b")])
    assert caught.value.key == key("missing")
    with pytest.raises(NotFound):
        await store.delete([key("a"), key("a")])
    items, rv = await store.list(CM)
    assert len(items) == 2
    assert rv == 2


async def test_a_batch_deletes_with_consecutive_resource_versions(store: Store) -> None:
    await store.apply([config_map(name) for name in "abc"])
    deleted = await store.delete([key("c"), key("a")])
    assert [rv_of(obj) for obj in deleted] == ["4", "5"]
    assert (await store.list(CM))[1] == 5


# --- watch --------------------------------------------------------------------------------


async def test_watch_from_now_sees_only_later_changes(store: Store) -> None:
    await store.apply([config_map("before")])
    events = store.watch()
    await store.apply([config_map("a"), config_map("b")])
    await store.apply([config_map("a", data={"key": "2"})])
    await store.delete([key("b")])
    got = await take(events, 4)
    assert [(e.type, e.resource_version) for e in got] == [
        ("ADDED", 2),
        ("ADDED", 3),
        ("MODIFIED", 4),
        ("DELETED", 5),
    ]
    assert got[2].object == await store.get(key("a"))
    assert all(e.objects == () for e in got)


async def test_watch_starts_when_called_not_when_first_iterated(store: Store) -> None:
    events = store.watch()
    await store.apply([config_map("a")])
    assert (await next_event(events)).resource_version == 1


async def test_concurrent_writers_produce_ordered_gapless_events(store: Store) -> None:
    events = store.watch()
    batches = [[config_map(f"{i}-{j}") for j in range(i % 3 + 1)] for i in range(30)]
    results = await asyncio.gather(*(store.apply(batch) for batch in batches))
    total = sum(len(batch) for batch in batches)
    got = await take(events, total)
    assert [e.resource_version for e in got] == list(range(1, total + 1))
    for result in results:  # each batch got consecutive resource versions
        rvs = [int(rv_of(obj)) for obj in result]
        assert rvs == list(range(rvs[0], rvs[0] + len(rvs)))


async def test_a_watcher_sees_a_batch_only_once_it_is_committed(store: Store) -> None:
    events = store.watch()
    task = asyncio.create_task(store.apply([config_map(name) for name in "abcde"]))
    first = await next_event(events)
    assert first.resource_version == 1
    assert store.resource_version == 5
    items, rv = await store.list(CM)
    assert (len(items), rv) == (5, 5)
    await task


async def test_watch_from_a_past_resource_version_replays_history(store: Store) -> None:
    await store.apply([config_map(name) for name in "abcd"])
    await store.delete([key("a")])
    got = await take(store.watch(since=2), 3)
    assert [(e.type, e.resource_version) for e in got] == [
        ("ADDED", 3),
        ("ADDED", 4),
        ("DELETED", 5),
    ]
    everything = store.watch(since=0)
    assert [e.resource_version for e in await take(everything, 5)] == [1, 2, 3, 4, 5]
    await store.apply([config_map("live")])
    assert (await next_event(everything)).resource_version == 6


async def test_list_then_watch_misses_nothing_under_concurrent_writes(store: Store) -> None:
    writer = asyncio.create_task(store.apply([config_map(f"w{i}") for i in range(50)]))
    items, rv = await store.list(CM)
    events = store.watch(since=rv)
    await writer
    await store.apply([config_map("last")])
    seen = {item["metadata"]["name"] for item in items}
    while len(seen) < 51:
        event = await next_event(events)
        assert event.type == "ADDED" and event.resource_version > rv
        name = event.object["metadata"]["name"] if event.object else ""
        assert name not in seen
        seen.add(name)


async def test_watch_filters_by_kind(store: Store) -> None:
    events = store.watch(kinds=["Secret"])
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"}}
    await store.apply([config_map("a"), secret, config_map("b")])
    event = await next_event(events)
    assert (event.type, event.resource_version) == ("ADDED", 2)
    assert await nothing_pending(events)
    history = store.watch(since=0, kinds={"ConfigMap"})
    assert [e.resource_version for e in await take(history, 2)] == [1, 3]


async def test_each_watcher_gets_its_own_copies(store: Store) -> None:
    first, second = store.watch(), store.watch()
    await store.apply([config_map("a")])
    event = await next_event(first)
    assert event.object is not None
    event.object["data"]["key"] = "corrupted"
    other = await next_event(second)
    assert other.object is not None and other.object["data"] == {"key": "value"}
    assert (await store.get(key("a")))["data"] == {"key": "value"}


async def test_shared_watchers_see_the_same_events_as_the_others(store: Store) -> None:
    await store.apply([config_map("old")])
    owned, shared, replaying = store.watch(), store.watch(shared=True), store.watch(0, shared=True)
    await store.apply([config_map("a"), config_map("b")])
    await store.delete([key("a")])
    mine = await take(owned, 3)
    for event in mine:
        assert event.object is not None
        event.object["data"]["key"] = "mutated by its owner"
    expected = [(e.type, e.resource_version, e.object) for e in await take(store.watch(0), 4)]
    assert [(e.type, e.resource_version, e.object) for e in await take(shared, 3)] == expected[1:]
    assert [(e.type, e.resource_version, e.object) for e in await take(replaying, 4)] == expected


async def test_compacted_history_is_replaced_by_a_resync(make_store: StoreFactory) -> None:
    store = await make_store(history=3)
    for name in "abcdef":
        await store.apply([config_map(name)])
    await store.delete([key("a")])  # rv 7; history keeps 5..7
    replay = await take(store.watch(since=4), 3)
    assert [e.resource_version for e in replay] == [5, 6, 7]
    events = store.watch(since=3)
    resync = await next_event(events)
    assert (resync.type, resync.resource_version, resync.object) == ("RESYNC", 7, None)
    assert [obj["metadata"]["name"] for obj in resync.objects] == list("bcdef")
    await store.apply([config_map("g")])
    assert (await next_event(events)).resource_version == 8


async def test_a_watcher_that_falls_behind_gets_a_resync(make_store: StoreFactory) -> None:
    store = await make_store(watch_queue_size=4)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"}}
    events = store.watch()
    filtered = store.watch(kinds=[CM])
    keeping_up = store.watch()
    await store.apply([config_map("a"), config_map("b")])
    assert [e.resource_version for e in await take(keeping_up, 2)] == [1, 2]
    await store.apply([config_map("c"), secret])
    await store.apply([config_map("d")])  # 5 events queued: more than 4
    # A filtered watch counts only the events it wants: 4 fit.
    assert [e.resource_version for e in await take(filtered, 4)] == [1, 2, 3, 5]
    await store.delete([key("a")])
    resync = await next_event(events)
    assert (resync.type, resync.resource_version) == ("RESYNC", 6)
    assert [(o["kind"], o["metadata"]["name"]) for o in resync.objects] == [
        (CM, "b"),
        (CM, "c"),
        (CM, "d"),
        ("Secret", "s"),
    ]
    assert [e.resource_version for e in await take(keeping_up, 4)] == [3, 4, 5, 6]
    await store.apply([config_map("e")])
    assert (await next_event(events)).resource_version == 7
    assert [e.resource_version for e in await take(filtered, 2)] == [6, 7]
    # One batch larger than the queue also resyncs rather than overflowing.
    await store.apply([config_map(f"big{i}") for i in range(5)])
    resync = await next_event(events)
    assert (resync.type, resync.resource_version, len(resync.objects)) == ("RESYNC", 12, 10)


async def test_watch_ends_when_the_store_closes(store: Store) -> None:
    events = store.watch()
    waiting = asyncio.create_task(anext(events, "ended"))
    await asyncio.sleep(0)
    idle = store.watch()
    await store.close()
    assert await asyncio.wait_for(waiting, 5) == "ended"
    assert await anext(idle, "ended") == "ended"
    with pytest.raises(StoreClosed):
        store.watch()
    with pytest.raises(StoreClosed):
        await store.apply([config_map("a")])
    with pytest.raises(StoreClosed):
        await store.get(key("a"))
    with pytest.raises(StoreClosed):
        await store.list(CM)
    with pytest.raises(StoreClosed):
        await store.delete([key("a")])
    await store.close()  # idempotent


async def test_a_watch_can_be_closed_by_its_consumer(store: Store) -> None:
    events = store.watch()
    await store.apply([config_map("a")])
    aclose = getattr(events, "aclose")  # noqa: B009 - AsyncIterator has no aclose
    await aclose()
    assert await anext(events, "ended") == "ended"


async def test_cancelling_a_pending_next_loses_no_event(store: Store) -> None:
    events = store.watch(since=0)
    assert await nothing_pending(events)
    await store.apply([config_map("a")])
    assert (await next_event(events)).resource_version == 1


async def test_negative_since_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="since"):
        store.watch(since=-1)
