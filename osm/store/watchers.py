"""Watch fan-out shared by every store backend: bounded queues, history replay, RESYNC.

A backend owns one `WatcherHub`. After each commit it calls `WatcherHub.publish` with the
batch's records, in rv order, on the event loop; the hub appends them to every
subscriber's queue in one step, so a watcher sees a batch all at once or not at all.

The one idea: a `Watch` keeps a cursor (the last rv it delivered) and drops anything at or
below it. That makes every recovery path gap-free without coordination: when the history
a watcher needs is compacted, or its queue overflowed (the queue is then cleared), it asks
the backend for a snapshot at some rv R (`EventSource.snapshot`), yields it as a RESYNC,
sets its cursor to R and carries on with the queued events above R. A snapshot read while
another overflow happened is discarded and read again.

Copies: a watch decodes each event's JSON for its consumer, who owns the result. A
``shared`` watch's consumer promises not to mutate what it gets, so the hub wraps each
published record once (`SharedRecord`) for all shared watches, and the first of them to
deliver it decodes it for all: one ``json.loads`` per event instead of one per watcher.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Collection, Sequence
from typing import Protocol

from osm.store import changes
from osm.store.api import Object, ObjectKey, StoreClosed, WatchEvent

DEFAULT_QUEUE_SIZE = 10_000


class EventSource(Protocol):
    """What a `Watch` needs from its backend beyond the live events."""

    async def history(
        self, after: int, until: int, kinds: frozenset[str] | None
    ) -> tuple[list[changes.Record], int] | None:
        """Records with ``after < rv <= until`` of ``kinds``, in rv order, possibly only a
        first page, and the rv up to which they were read (every record up to it is
        included). None if part of that range has been compacted away."""
        ...

    async def snapshot(self, kinds: frozenset[str] | None) -> tuple[list[str], int]:
        """The bodies of all objects of ``kinds`` sorted by (kind, namespace, name), and the
        rv they reflect (at least every rv published so far)."""
        ...


class SharedRecord:
    """A published record and its object, decoded once, on the first delivery, for every
    shared watch that queued it (they all get the same dict)."""

    __slots__ = ("_object", "record")

    def __init__(self, record: changes.Record) -> None:
        self.record = record
        self._object: Object | None = None

    @property
    def resource_version(self) -> int:
        return self.record.resource_version

    @property
    def key(self) -> ObjectKey:
        return self.record.key

    def object(self) -> Object:
        if self._object is None:
            self._object = changes.load(self.record.body)
        return self._object


Queued = changes.Record | SharedRecord
"""What a watch's live queue holds: records to decode, or (shared watches) shared ones."""


class _Subscription:
    """The hub's side of one watch: the live queue. Holds no reference to the `Watch`."""

    __slots__ = ("closed", "kinds", "overflows", "queue", "queue_size", "shared", "wakeup")

    def __init__(self, kinds: frozenset[str] | None, queue_size: int, shared: bool) -> None:
        self.kinds = kinds
        self.queue_size = queue_size
        self.shared = shared
        self.queue: collections.deque[Queued] = collections.deque()
        self.overflows = 0
        self.closed = False
        self.wakeup = asyncio.Event()

    def offer(self, records: Sequence[Queued]) -> None:
        kinds = self.kinds
        wanted = records if kinds is None else [r for r in records if r.key.kind in kinds]
        if not wanted:
            return
        if len(self.queue) + len(wanted) > self.queue_size:
            # Never drop silently: forget everything queued and make the watcher resync.
            self.queue.clear()
            self.overflows += 1
        else:
            self.queue.extend(wanted)
        self.wakeup.set()


class WatcherHub:
    """The set of live watches of one store. Use only from the store's event loop."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError("a watch queue holds at least one event")
        self.queue_size = queue_size
        self._subscriptions: set[_Subscription] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._subscriptions)

    def watch(
        self,
        source: EventSource,
        since: int | None,
        current_rv: int,
        kinds: Collection[str] | None,
        shared: bool = False,
    ) -> Watch:
        """Subscribe now; ``current_rv`` is the rv of the last batch already published.
        ``shared``: the consumer will not mutate the events' objects (module docstring)."""
        if self._closed:
            raise StoreClosed()
        if since is not None and since < 0:
            raise ValueError(f"since must be a resourceVersion >= 0, not {since}")
        wanted = None if kinds is None else frozenset(kinds)
        subscription = _Subscription(wanted, self.queue_size, shared)
        start = current_rv if since is None else since
        return Watch(source, subscription, self._subscriptions, start, current_rv)

    def publish(self, records: Sequence[changes.Record]) -> None:
        """Hand one committed batch (in rv order) to every watch."""
        if self._closed or not records:
            return
        shared: list[SharedRecord] | None = None
        for subscription in self._subscriptions:
            if subscription.shared:
                if shared is None:
                    shared = [SharedRecord(record) for record in records]
                subscription.offer(shared)
            else:
                subscription.offer(records)

    def close(self) -> None:
        """End every watch at its next step. Idempotent."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.closed = True
            subscription.wakeup.set()
        self._subscriptions.clear()


class Watch:
    """An async iterator of `WatchEvent` (see `osm.store.api.Store.watch`).

    One consumer at a time. Ends (StopAsyncIteration) when the store closes or `aclose` is
    called; unconsumed events are dropped then. Each event's dicts are fresh copies, except
    in a shared watch's live events, whose objects other shared watches get too.
    Cancelling a pending ``__anext__`` (say, under ``asyncio.wait_for``) loses no event:
    state changes only when an event is returned.
    """

    def __init__(
        self,
        source: EventSource,
        subscription: _Subscription,
        registry: set[_Subscription],
        start: int,
        current_rv: int,
    ) -> None:
        self._source = source
        self._subscription = subscription
        registry.add(subscription)
        # Unsubscribe on aclose(), or when the consumer drops the iterator unfinished.
        self._detach = weakref.finalize(self, registry.discard, subscription)
        self._cursor = start  # the last rv delivered (or skipped as not wanted)
        self._history_read_to = start  # history (start, history_until] comes from source
        self._history_until = current_rv  # after that, the live queue has everything
        self._pending: collections.deque[changes.Record] = collections.deque()
        self._overflows_seen = 0

    def __aiter__(self) -> Watch:
        return self

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching; the iterator ends. Idempotent."""
        self._detach()
        self._subscription.closed = True
        self._subscription.queue.clear()
        self._subscription.wakeup.set()

    async def __anext__(self) -> WatchEvent:
        subscription = self._subscription
        try:
            while not subscription.closed:
                if subscription.overflows != self._overflows_seen:
                    return await self._resync()
                if self._pending:
                    record = self._pending.popleft()
                    if record.resource_version > self._cursor:
                        return self._deliver(record)
                    continue
                if self._history_read_to < self._history_until:
                    page = await self._source.history(
                        self._history_read_to, self._history_until, subscription.kinds
                    )
                    if page is None:
                        return await self._resync()
                    records, read_to = page
                    self._pending.extend(records)
                    self._history_read_to = read_to
                    continue
                if subscription.queue:
                    queued = subscription.queue.popleft()
                    if queued.resource_version > self._cursor:
                        return self._deliver(queued)
                    continue
                subscription.wakeup.clear()
                await subscription.wakeup.wait()
        except StoreClosed:
            pass
        raise StopAsyncIteration

    def _deliver(self, queued: Queued) -> WatchEvent:
        self._cursor = queued.resource_version
        if isinstance(queued, SharedRecord):
            record, obj = queued.record, queued.object()
        else:
            record, obj = queued, changes.load(queued.body)
        return WatchEvent(record.type, record.resource_version, obj)

    async def _resync(self) -> WatchEvent:
        subscription = self._subscription
        while True:
            overflows = subscription.overflows
            bodies, rv = await self._source.snapshot(subscription.kinds)
            if subscription.closed:
                raise StoreClosed()
            if subscription.overflows == overflows:
                break  # no event published since the snapshot was lost from the queue
        self._overflows_seen = overflows
        self._pending.clear()
        while subscription.queue and subscription.queue[0].resource_version <= rv:
            subscription.queue.popleft()  # already in the snapshot: free their room now
        self._cursor = self._history_read_to = self._history_until = rv
        objects = tuple(changes.load(body) for body in bodies)
        return WatchEvent("RESYNC", rv, None, objects)
