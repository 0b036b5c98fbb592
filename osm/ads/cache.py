"""The snapshot cache: the current `AdsSnapshot` of every proxy, and watches that wake streams.

One idea: state lives here and protocol lives in the streams. The controller sets a whole
snapshot per node id; each ADS stream holds one `SnapshotWatch` on its node naming the type URLs it
serves, and is woken (a plain callback) when a snapshot whose version differs for one of
those types is set. The cache never imports grpc or asyncio.

Concurrency: not thread-safe. Call every method from one thread, the asyncio loop that runs
both the controller and the grpc.aio server; from another thread, hop onto the loop first
(``loop.call_soon_threadsafe(cache.set_snapshot, node_id, snapshot)``). Callbacks run
synchronously inside `set_snapshot`, so they must be quick and must not call back into the
cache; the server's callback only sets an `asyncio.Event`. Snapshots themselves are
immutable and may be built on any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from osm.ads.resources import AdsSnapshot

Notify = Callable[[], None]


class SnapshotWatch:
    """A stream's interest in one node's snapshot. Create with `SnapshotCache.watch`."""

    __slots__ = ("_cache", "_notify", "_types", "node_id")

    def __init__(self, cache: SnapshotCache, node_id: str, notify: Notify) -> None:
        self._cache = cache
        self._notify = notify
        self._types: frozenset[str] = frozenset()
        self.node_id = node_id

    @property
    def types(self) -> frozenset[str]:
        return self._types

    def set_types(self, type_urls: Iterable[str]) -> None:
        """Watch exactly `type_urls` from now on. Does not notify: the stream reads the
        current snapshot itself whenever its subscriptions change."""
        self._types = frozenset(type_urls)

    def fire(self) -> None:
        self._notify()

    def cancel(self) -> None:
        """Stop watching; idempotent."""
        self._cache._remove(self)


class SnapshotCache:
    """Snapshots by node id, plus watches. See the module docstring for threading."""

    def __init__(self) -> None:
        self._snapshots: dict[str, AdsSnapshot] = {}
        self._watches: dict[str, set[SnapshotWatch]] = {}

    def set_snapshot(self, node_id: str, snapshot: AdsSnapshot) -> frozenset[str]:
        """Make `snapshot` current for `node_id` (the caller has checked its consistency).

        Wakes every watch on `node_id` that watches a type whose version differs from the
        previous snapshot's (every watched type if there was none). Returns the type URLs
        that woke someone, for logging and tests.
        """
        previous = self._snapshots.get(node_id)
        self._snapshots[node_id] = snapshot
        woken: set[str] = set()
        for watch in list(self._watches.get(node_id, ())):
            changed = {
                t
                for t in watch.types
                if previous is None or previous.version(t) != snapshot.version(t)
            }
            if changed:
                woken |= changed
                watch.fire()
        return frozenset(woken)

    def get(self, node_id: str) -> AdsSnapshot | None:
        """The current snapshot of `node_id`, or None if none was set."""
        return self._snapshots.get(node_id)

    def clear(self, node_id: str) -> None:
        """Forget `node_id`'s snapshot. Open streams keep the configuration they sent and
        are not woken; a later `set_snapshot` is diffed against nothing (wakes all)."""
        self._snapshots.pop(node_id, None)

    def node_ids(self) -> list[str]:
        """Node ids that have a snapshot, sorted; a new list owned by the caller."""
        return sorted(self._snapshots)

    def watch(self, node_id: str, notify: Notify, type_urls: Iterable[str] = ()) -> SnapshotWatch:
        """Register `notify` for changes of `type_urls` in `node_id`'s snapshot."""
        watch = SnapshotWatch(self, node_id, notify)
        watch.set_types(type_urls)
        self._watches.setdefault(node_id, set()).add(watch)
        return watch

    def watch_count(self, node_id: str) -> int:
        return len(self._watches.get(node_id, ()))

    def _remove(self, watch: SnapshotWatch) -> None:
        watches = self._watches.get(watch.node_id)
        if watches is None:
            return
        watches.discard(watch)
        if not watches:
            del self._watches[watch.node_id]
