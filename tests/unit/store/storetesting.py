"""Helpers shared by the store tests: manifests and waiting for watch events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

from osm.store import Store, WatchEvent


class StoreFactory(Protocol):
    def __call__(self, **options: Any) -> Awaitable[Store]: ...


def config_map(
    name: str,
    namespace: str = "default",
    *,
    labels: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels is not None:
        metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": data if data is not None else {"key": "value"},
        **extra,
    }


async def next_event(events: AsyncIterator[WatchEvent], timeout: float = 5.0) -> WatchEvent:
    event: WatchEvent = await asyncio.wait_for(anext(events), timeout)
    return event


async def take(
    events: AsyncIterator[WatchEvent], count: int, timeout: float = 5.0
) -> list[WatchEvent]:
    return [await next_event(events, timeout) for _ in range(count)]


async def nothing_pending(events: AsyncIterator[WatchEvent]) -> bool:
    """True if the watch has no event ready (gives the store a few loop turns first)."""
    try:
        await asyncio.wait_for(anext(events), 0.05)
    except TimeoutError:
        return True
    return False
