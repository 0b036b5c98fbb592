"""An in-memory `osm.store.api.Store`: dicts plus a ring buffer of recent events.

For tests, for embedding, and as the baseline of the benchmarks. Every method runs to
completion without awaiting, so each call is atomic with respect to other coroutines on
the loop, and a batch's events are published in the same step as its commit. Objects are
kept as JSON text (what callers get copies of) next to a parsed, never-shared dict (used
for selectors and change detection).

Because every committed rv produces exactly one event, the event with rv ``r`` lives at
``ring[r % history]`` as long as ``r > resource_version - history``.
"""

from __future__ import annotations

import bisect
import builtins
from collections.abc import AsyncIterator, Collection, Sequence

from osm.store import changes, watchers
from osm.store.api import (
    NotFound,
    Object,
    ObjectKey,
    Selector,
    StoreClosed,
    WatchEvent,
    check_limit,
    labels_of,
)


class MemoryStore:
    """Implements `osm.store.api.Store`; see there for the contract.

    ``history`` is how many recent events are kept for ``watch(since=...)``;
    ``watch_queue_size`` bounds each watcher's backlog before it is resynced.
    """

    def __init__(
        self, history: int = 100_000, *, watch_queue_size: int = watchers.DEFAULT_QUEUE_SIZE
    ) -> None:
        if history < 0:
            raise ValueError("history must be >= 0")
        self._history = history
        self._ring: builtins.list[changes.Record | None] = [None] * history
        self._by_kind: dict[str, dict[tuple[str, str], changes.Stored]] = {}
        self._order: dict[str, builtins.list[tuple[str, str]]] = {}
        """Per kind, its (namespace, name) positions sorted; dropped when one is created or
        deleted, sorted again by the next list of that kind."""
        self._rv = 0
        self._hub = watchers.WatcherHub(watch_queue_size)

    @property
    def resource_version(self) -> int:
        return self._rv

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._hub.closed:
            raise StoreClosed()

    def _lookup_one(self, key: ObjectKey) -> changes.Stored | None:
        return self._by_kind.get(key.kind, {}).get((key.namespace, key.name))

    def _lookup(self, keys: Collection[ObjectKey]) -> dict[ObjectKey, changes.Stored]:
        found = ((key, self._lookup_one(key)) for key in keys)
        return {key: stored for key, stored in found if stored is not None}

    def _commit(self, plan: changes.Plan) -> None:
        for key, stored in plan.written.items():
            objects = self._by_kind.setdefault(key.kind, {})
            position = (key.namespace, key.name)
            if stored is None or position not in objects:
                self._order.pop(key.kind, None)
            if stored is None:
                del objects[position]
            else:
                # The plan's dict shares values with the caller's input: keep our own.
                objects[position] = changes.Stored(changes.load(stored.body), stored.body)
        if self._history:
            for record in plan.records:
                self._ring[record.resource_version % self._history] = record
        if plan.records:
            self._rv = plan.records[-1].resource_version
        self._hub.publish(plan.records)

    async def apply(self, objects: Sequence[Object]) -> builtins.list[Object]:
        self._check_open()
        plan = changes.plan_apply(objects, self._lookup, self._rv + 1)
        self._commit(plan)
        return [changes.load(body) for body in plan.results]

    async def get(self, key: ObjectKey) -> Object:
        self._check_open()
        stored = self._lookup_one(key)
        if stored is None:
            raise NotFound(key)
        return changes.load(stored.body)

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: Selector | None = None,
        *,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> tuple[builtins.list[Object], int]:
        self._check_open()
        check_limit(limit)
        objects = self._by_kind.get(kind, {})
        order = self._order.get(kind)
        if order is None:
            order = self._order[kind] = sorted(objects)
        start = 0 if namespace is None else bisect.bisect_left(order, (namespace, ""))
        if after is not None:
            start = max(start, bisect.bisect_right(order, (after[0], after[1])))
        items = []
        for index in range(start, len(order)):
            position = order[index]
            if namespace is not None and position[0] != namespace:
                break
            stored = objects[position]
            if selector is not None and not selector.matches(labels_of(stored.obj)):
                continue
            items.append(changes.load(stored.body))
            if len(items) == limit:
                break
        return items, self._rv

    async def delete(self, keys: Sequence[ObjectKey]) -> builtins.list[Object]:
        self._check_open()
        plan = changes.plan_delete(keys, self._lookup, self._rv + 1)
        self._commit(plan)
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
        self._hub.close()

    # --- watchers.EventSource ------------------------------------------------------------

    async def history(
        self, after: int, until: int, kinds: frozenset[str] | None
    ) -> tuple[builtins.list[changes.Record], int] | None:
        self._check_open()
        oldest = max(1, self._rv - self._history + 1)
        if after + 1 < oldest:
            return None
        records = []
        for rv in range(after + 1, until + 1):
            record = self._ring[rv % self._history]
            assert record is not None and record.resource_version == rv
            if kinds is None or record.key.kind in kinds:
                records.append(record)
        return records, until

    async def snapshot(self, kinds: frozenset[str] | None) -> tuple[builtins.list[str], int]:
        self._check_open()
        bodies = [
            objects[place].body
            for kind in sorted(self._by_kind if kinds is None else kinds & self._by_kind.keys())
            for objects in (self._by_kind[kind],)
            for place in sorted(objects)
        ]
        return bodies, self._rv
