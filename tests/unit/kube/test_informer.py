"""The informer's stream, against a scripted source on a fake clock: a Sync first, Changes
merged from every kind, resumption from the last version seen (bookmarks included), a new
Sync after an expired version or a watch that keeps failing, and a stream that survives a
cancelled wait and stops when closed."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from osm.kube import informer
from osm.kube.errors import ApiError, ConnectionFailed

HOLD = "hold"  # a watch step: stay open until cancelled
Step = tuple[str, dict[str, Any]] | Exception | asyncio.Event | str


def obj(kind: str, name: str, version: str) -> dict[str, Any]:
    api_version = {"Pod": "v1", "TrafficSplit": "split.smi-spec.io/v1alpha4"}[kind]
    metadata = {"name": name, "namespace": "ns", "resourceVersion": version}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def bookmark(kind: str, version: str) -> tuple[str, dict[str, Any]]:
    return ("BOOKMARK", {"kind": kind, "metadata": {"resourceVersion": version}})


EXPIRED = ApiError(410, "Expired", "too old resource version: 1 (40)")


class FakeSource:
    """Lists answer from `lists` in order; each watch plays the next script of its kind
    (then holds). Records every call; counts the watches open now."""

    def __init__(
        self,
        lists: dict[str, list[tuple[list[dict[str, Any]], str] | Exception]],
        watches: dict[str, list[list[Step]]],
    ) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[tuple[str, str, str | None]] = []
        self.open_watches = 0

    async def list(
        self, kind: str, namespace: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        self.calls.append(("list", kind, None))
        answer = self.lists[kind].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)

    async def watch(
        self, kind: str, namespace: str | None = None, resource_version: str | None = None
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        self.calls.append(("watch", kind, resource_version))
        scripts = self.watches.setdefault(kind, [])
        script = scripts.pop(0) if scripts else [HOLD]
        self.open_watches += 1
        try:
            for step in script:
                if step == HOLD:
                    await asyncio.Event().wait()
                elif isinstance(step, asyncio.Event):
                    await step.wait()
                elif isinstance(step, Exception):
                    raise step
                elif isinstance(step, tuple):
                    yield copy.deepcopy(step)
        finally:
            self.open_watches -= 1

    def watched_from(self, kind: str) -> list[str | None]:
        return [version for call, k, version in self.calls if call == "watch" and k == kind]


class FakeClock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


def summary(event: informer.Event) -> tuple[Any, ...]:
    if isinstance(event, informer.Sync):
        names = sorted(o["metadata"]["name"] for o in event.objects)
        return ("Sync", *names)
    return (event.type, event.object["metadata"]["name"])


async def take(events: informer.Informer, count: int) -> list[tuple[Any, ...]]:
    return [summary(await asyncio.wait_for(anext(events), 5)) for _ in range(count)]


def make(source: FakeSource, clock: FakeClock, kinds: list[str]) -> informer.Informer:
    return informer.Informer(source, kinds, sleep=clock.sleep, watch_retries=3)


async def test_a_sync_of_every_kind_comes_first_then_changes_of_every_kind() -> None:
    source = FakeSource(
        lists={
            "Pod": [([obj("Pod", "a", "1")], "1")],
            "TrafficSplit": [([obj("TrafficSplit", "s", "2")], "2")],
        },
        watches={
            "Pod": [[("ADDED", obj("Pod", "b", "3")), HOLD]],
            "TrafficSplit": [[("MODIFIED", obj("TrafficSplit", "s", "4")), HOLD]],
        },
    )
    async with make(source, FakeClock(), ["pods", "ts"]) as events:
        first = await asyncio.wait_for(anext(events), 5)
        assert isinstance(first, informer.Sync)
        assert first.resource_versions == {"Pod": "1", "TrafficSplit": "2"}
        assert summary(first) == ("Sync", "a", "s")
        assert sorted(await take(events, 2)) == [("ADDED", "b"), ("MODIFIED", "s")]
    assert source.watched_from("Pod") == ["1"]
    assert source.watched_from("TrafficSplit") == ["2"]
    assert source.open_watches == 0


async def test_a_broken_watch_resumes_from_the_last_version_seen_bookmarks_included() -> None:
    source = FakeSource(
        lists={"Pod": [([obj("Pod", "a", "1")], "1")]},
        watches={
            "Pod": [
                [("ADDED", obj("Pod", "b", "3")), bookmark("Pod", "7"), ConnectionFailed("reset")],
                [("MODIFIED", obj("Pod", "b", "8")), HOLD],
            ]
        },
    )
    clock = FakeClock()
    async with make(source, clock, ["Pod"]) as events:
        assert await take(events, 3) == [("Sync", "a"), ("ADDED", "b"), ("MODIFIED", "b")]
    assert source.watched_from("Pod") == ["1", "7"]
    assert clock.slept == [0.5]


async def test_an_expired_version_lists_every_kind_again_and_syncs() -> None:
    source = FakeSource(
        lists={
            "Pod": [([obj("Pod", "a", "1")], "1"), ([obj("Pod", "c", "20")], "20")],
            "TrafficSplit": [([], "2"), ([obj("TrafficSplit", "s", "21")], "21")],
        },
        watches={"Pod": [[("ADDED", obj("Pod", "b", "3")), EXPIRED]]},
    )
    async with make(source, FakeClock(), ["Pod", "TrafficSplit"]) as events:
        assert await take(events, 3) == [("Sync", "a"), ("ADDED", "b"), ("Sync", "c", "s")]
        await asyncio.sleep(0.01)  # the new watches start
        assert source.open_watches == 2
    assert source.watched_from("Pod") == ["1", "20"]
    assert source.watched_from("TrafficSplit") == ["2", "21"]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param([ConnectionFailed("refused")], id="connection refused"),
        pytest.param([ApiError(500, "InternalError", "boom")], id="server error"),
        pytest.param([], id="ends without an event"),
    ],
)
async def test_a_watch_that_keeps_failing_lists_again_after_its_retries(
    failure: list[Step],
) -> None:
    source = FakeSource(
        lists={"Pod": [([obj("Pod", "a", "1")], "1"), ([obj("Pod", "a", "9")], "9")]},
        watches={"Pod": [list(failure) for _ in range(4)]},
    )
    clock = FakeClock()
    async with make(source, clock, ["Pod"]) as events:
        assert await take(events, 2) == [("Sync", "a"), ("Sync", "a")]
    assert source.watched_from("Pod")[:5] == ["1", "1", "1", "1", "9"]
    assert clock.slept == [0.5, 1.0, 2.0]


async def test_a_failing_list_is_retried_with_backoff() -> None:
    source = FakeSource(
        lists={
            "Pod": [
                ConnectionFailed("refused"),
                ApiError(503, "ServiceUnavailable", "starting"),
                ([obj("Pod", "a", "1")], "1"),
            ]
        },
        watches={},
    )
    clock = FakeClock()
    async with make(source, clock, ["Pod"]) as events:
        assert await take(events, 1) == [("Sync", "a")]
    assert clock.slept == [0.5, 1.0]


async def test_a_cancelled_wait_loses_no_event() -> None:
    release = asyncio.Event()
    source = FakeSource(
        lists={"Pod": [([], "1")]},
        watches={"Pod": [[release, ("ADDED", obj("Pod", "b", "2")), HOLD]]},
    )
    async with make(source, FakeClock(), ["Pod"]) as events:
        assert await take(events, 1) == [("Sync",)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(events), 0.05)
        release.set()
        assert await take(events, 1) == [("ADDED", "b")]


async def test_closing_stops_the_watches_and_ends_the_stream() -> None:
    source = FakeSource(lists={"Pod": [([], "1")]}, watches={})
    events = make(source, FakeClock(), ["Pod"])
    assert await take(events, 1) == [("Sync",)]
    waiting = asyncio.create_task(anext(events))
    await asyncio.sleep(0.01)
    assert source.open_watches == 1
    await events.aclose()
    assert source.open_watches == 0
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(StopAsyncIteration):
        await anext(events)


async def test_an_unexpected_error_ends_the_stream_with_it() -> None:
    source = FakeSource(
        lists={"Pod": [([], "1")]}, watches={"Pod": [[RuntimeError("a bug in the source")]]}
    )
    async with make(source, FakeClock(), ["Pod"]) as events:
        assert await take(events, 1) == [("Sync",)]
        for _ in range(2):
            with pytest.raises(RuntimeError, match="a bug in the source"):
                await asyncio.wait_for(anext(events), 5)


@pytest.mark.parametrize(("failures", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0)])
def test_backoff_doubles_up_to_its_maximum(failures: int, delay: float) -> None:
    assert informer.Backoff().delay(failures) == delay


@pytest.mark.parametrize(
    ("kinds", "error"), [([], "at least one kind"), (["Widget"], "unknown resource type")]
)
def test_kinds_must_be_known(kinds: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        informer.Informer(FakeSource({}, {}), kinds)
