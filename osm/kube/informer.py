"""An informer: one stream of events from which a consumer keeps a full picture of some kinds.

One idea: the stream has two events. `Sync` carries every object of the watched kinds and
means "replace your whole state with this"; `Change` is one ADDED, MODIFIED or DELETED
object to apply. The informer lists every kind, emits a `Sync`, then watches each kind from
its list's resourceVersion and merges the watches into the stream. A watch that fails is
resumed from the last resourceVersion it saw (bookmarks count: they are asked for, and
never emitted). When resuming is impossible, because the version has expired (410) or the
watch kept failing after `watch_retries` retries with backoff, every kind is listed again
and a new `Sync` follows: that is how the consumer learns of deletions it missed in the gap.
A failing list is retried with backoff, for ever (the API server may be restarting); each
failure is logged. A watch that ends without an event counts as failed (`KubeClient.watch`
never ends by itself; another source must not make the informer spin).

Contracts: events of one kind arrive in the server's order; kinds interleave. Events of the
old watches may precede a `Sync`, never follow it. Iterating is cancel-safe: a cancelled
``__anext__`` (a timeout around it) loses no event and the informer goes on. `aclose` (or
leaving ``async with``) stops the watches; the work runs in a background task that starts
on the first ``__anext__``. An unexpected error in that task ends the stream by raising it
in the consumer. Time (the backoff's sleeps) is injected, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from osm.kube.errors import ApiError, BadResponse, ConnectionFailed
from osm.model import kinds as model_kinds

log = logging.getLogger(__name__)

Manifest = dict[str, Any]
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
_CHANGE_TYPES: Mapping[str, ChangeType] = {
    "ADDED": "ADDED",
    "MODIFIED": "MODIFIED",
    "DELETED": "DELETED",
}


@dataclass(frozen=True, slots=True)
class Sync:
    """Every object of the watched kinds: the consumer replaces its whole state with these.
    ``resource_versions`` maps each kind to the version its list was taken at (each kind is
    listed by a request of its own)."""

    objects: tuple[Manifest, ...]
    resource_versions: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Change:
    """One object added, modified or deleted (a DELETED object is its last state)."""

    type: ChangeType
    object: Manifest = field(repr=False)


Event = Sync | Change


class Source(Protocol):
    """What the informer needs of a client (`osm.kube.client.KubeClient` is one)."""

    async def list(self, kind: str, namespace: str | None = None) -> tuple[list[Manifest], str]: ...

    def watch(
        self, kind: str, namespace: str | None = None, resource_version: str | None = None
    ) -> AsyncGenerator[tuple[str, Manifest], None]: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between retries: `initial`, times `factor` per consecutive failure, at most
    `maximum` seconds. No jitter: the clients of local mode's API are a handful of processes."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0

    def delay(self, failures: int) -> float:
        """The pause after the `failures`-th consecutive failure (1 for the first)."""
        return float(min(self.maximum, self.initial * self.factor ** max(0, failures - 1)))


class _Relist(Exception):
    """A watch that cannot resume: list everything again."""


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None


class Informer:
    """Lists and watches `kinds` (names `osm.model.kinds.lookup` accepts) through `client`,
    in `namespace` or in all namespaces. Use ``async with Informer(...) as events:`` and
    ``async for event in events``."""

    def __init__(
        self,
        client: Source,
        kinds: Sequence[str],
        *,
        namespace: str | None = None,
        backoff: Backoff = Backoff(),
        watch_retries: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        buffer: int = 1024,
    ) -> None:
        if not kinds:
            raise ValueError("an informer needs at least one kind")
        try:
            known = [model_kinds.lookup(kind).kind for kind in kinds]
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        self._kinds = tuple(dict.fromkeys(known))
        self._client = client
        self._namespace = namespace
        self._backoff = backoff
        self._watch_retries = watch_retries
        self._sleep = sleep
        self._events: asyncio.Queue[Event | _End] = asyncio.Queue(maxsize=buffer)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def kinds(self) -> tuple[str, ...]:
        return self._kinds

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"informer {self._kinds}")
        if self._closed and self._events.empty():
            raise StopAsyncIteration
        item = await self._events.get()
        if isinstance(item, _End):
            self._events.put_nowait(item)  # every later call ends the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop the watches; the stream ends (events not yet taken are dropped)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while not self._events.empty():
            self._events.get_nowait()
        self._events.put_nowait(_End(None))  # wakes a consumer waiting in __anext__

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the background task ----------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                objects, versions = await self._list_all()
                await self._events.put(Sync(tuple(objects), versions))
                reason = await self._watch_all(versions)
                log.info("informer %s: listing again: %s", ", ".join(self._kinds), reason)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug: end the stream with it rather than hang
            log.exception("informer %s failed", ", ".join(self._kinds))
            await self._events.put(_End(error))

    async def _list_all(self) -> tuple[list[Manifest], dict[str, str]]:
        objects: list[Manifest] = []
        versions: dict[str, str] = {}
        for kind in self._kinds:
            failures = 0
            while True:
                try:
                    items, versions[kind] = await self._client.list(kind, self._namespace)
                    break
                except (ApiError, BadResponse, ConnectionFailed) as error:
                    failures += 1
                    delay = self._backoff.delay(failures)
                    log.warning("listing %s failed (retry in %.1fs): %s", kind, delay, error)
                    await self._sleep(delay)
            objects.extend(items)
        return objects, versions

    async def _watch_all(self, versions: Mapping[str, str]) -> str:
        """Run one watch per kind until one of them needs a new list; say why."""
        tasks = [
            asyncio.create_task(self._watch(kind, versions[kind]), name=f"watch {kind}")
            for kind in self._kinds
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            error = next(task.exception() for task in done)
            if isinstance(error, _Relist):
                return str(error)
            assert error is not None  # watches end only by raising
            raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, kind: str, version: str) -> None:
        """Watch `kind` from `version` for ever, resuming from the last version seen; raise
        `_Relist` when that is impossible."""
        failures = 0
        while True:
            try:
                delivered = False
                stream = self._client.watch(kind, self._namespace, version or None)
                async with aclosing(stream):
                    async for event_type, obj in stream:
                        failures, delivered = 0, True
                        metadata = obj.get("metadata")
                        if isinstance(metadata, Mapping) and metadata.get("resourceVersion"):
                            version = str(metadata["resourceVersion"])
                        change_type = _CHANGE_TYPES.get(event_type)
                        if change_type is not None:
                            await self._events.put(Change(change_type, obj))
                        elif event_type != "BOOKMARK":
                            log.warning("watch %s: ignored an event of type %r", kind, event_type)
                if delivered:
                    continue  # the source ended the watch: resume from the last version
                problem: Exception = ConnectionFailed(f"the watch of {kind} ended at once")
            except ApiError as error:
                if error.expired:
                    raise _Relist(f"{kind} at resourceVersion {version}: {error}") from None
                problem = error
            except (BadResponse, ConnectionFailed) as error:
                problem = error
            failures += 1
            if failures > self._watch_retries:
                raise _Relist(f"watching {kind} failed {failures} times: {problem}")
            delay = self._backoff.delay(failures)
            log.warning("watch %s failed (resuming in %.1fs): %s", kind, delay, problem)
            await self._sleep(delay)
