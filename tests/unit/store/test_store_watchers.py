"""The shared watch fan-out against a scripted event source: the races a real store rarely
hits on cue (an overflow while a snapshot is being read, consumers that go away)."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from osm.store import ObjectKey
from osm.store.changes import Record
from osm.store.watchers import WatcherHub
from tests.unit.store.storetesting import next_event


def record(rv: int, name: str = "x") -> Record:
    body = {"kind": "ConfigMap", "metadata": {"name": name, "resourceVersion": str(rv)}}
    return Record(rv, "ADDED", ObjectKey("ConfigMap", "", name), json.dumps(body))


class ScriptedSource:
    """Serves snapshots at a given rv; can run a hook while a snapshot is "in flight"."""

    def __init__(self, rv: int) -> None:
        self.rv = rv
        self.snapshots = 0
        self.during_snapshot: list[object] = []

    async def history(
        self, after: int, until: int, kinds: frozenset[str] | None
    ) -> tuple[list[Record], int] | None:
        return [record(rv) for rv in range(after + 1, until + 1)], until

    async def snapshot(self, kinds: frozenset[str] | None) -> tuple[list[str], int]:
        self.snapshots += 1
        rv = self.rv
        await asyncio.sleep(0)
        if self.during_snapshot:
            hook = self.during_snapshot.pop(0)
            assert callable(hook)
            hook()
        return [], rv


async def test_an_overflow_during_a_snapshot_read_forces_a_fresh_snapshot() -> None:
    hub = WatcherHub(queue_size=2)
    source = ScriptedSource(rv=0)
    events = hub.watch(source, since=None, current_rv=0, kinds=None)
    hub.publish([record(1), record(2), record(3)])  # overflow: resync pending
    source.rv = 3

    def more_writes() -> None:  # rv 4..6 are published and lost while reading at 3
        hub.publish([record(4), record(5), record(6)])
        source.rv = 6

    source.during_snapshot.append(more_writes)
    resync = await next_event(events)
    assert (resync.type, resync.resource_version, source.snapshots) == ("RESYNC", 6, 2)
    hub.publish([record(7)])
    assert (await next_event(events)).resource_version == 7


async def test_events_already_in_a_snapshot_are_not_repeated() -> None:
    hub = WatcherHub(queue_size=2)
    source = ScriptedSource(rv=0)
    events = hub.watch(source, since=None, current_rv=0, kinds=None)
    hub.publish([record(1), record(2), record(3)])
    source.rv = 5  # the snapshot already includes rv 4 and 5, published next
    hub.publish([record(4)])
    hub.publish([record(5)])
    resync = await next_event(events)
    assert resync.resource_version == 5
    hub.publish([record(6)])
    assert (await next_event(events)).resource_version == 6


async def test_history_and_live_events_join_without_gap_or_repeat() -> None:
    hub = WatcherHub()
    events = hub.watch(ScriptedSource(rv=3), since=1, current_rv=3, kinds=None)
    hub.publish([record(4)])
    got = [(await next_event(events)).resource_version for _ in range(3)]
    assert got == [2, 3, 4]


async def test_a_dropped_watch_unsubscribes() -> None:
    hub = WatcherHub()
    events = hub.watch(ScriptedSource(rv=0), since=None, current_rv=0, kinds=None)
    assert len(hub) == 1
    del events
    gc.collect()
    assert len(hub) == 0
    closed = hub.watch(ScriptedSource(rv=0), since=None, current_rv=0, kinds=None)
    await closed.aclose()
    assert len(hub) == 0


async def test_shared_watches_get_one_decoded_object_and_the_others_their_own() -> None:
    hub = WatcherHub()
    source = ScriptedSource(rv=0)
    shared = [hub.watch(source, None, 0, None, shared=True) for _ in range(3)]
    owned = [hub.watch(source, None, 0, None) for _ in range(2)]
    hub.publish([record(1)])
    shared_objects = [(await next_event(events)).object for events in shared]
    owned_objects = [(await next_event(events)).object for events in owned]
    assert shared_objects[0] is not None
    assert all(obj is shared_objects[0] for obj in shared_objects)
    assert owned_objects[0] is not owned_objects[1]
    assert all(obj == shared_objects[0] and obj is not shared_objects[0] for obj in owned_objects)


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WatcherHub(queue_size=0)
