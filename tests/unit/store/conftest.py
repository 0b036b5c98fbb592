"""Fixtures for the store tests: every contract test runs against each implementation."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from osm.store import MemoryStore, SqliteStore, Store
from tests.unit.store.storetesting import StoreFactory


@pytest.fixture(params=["memory", "sqlite"])
async def make_store(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> AsyncIterator[StoreFactory]:
    """Opens stores of the parametrized kind (options: history, watch_queue_size); closes
    them all at the end. The SQLite ones share one file, so a second call reopens it."""
    opened: list[Store] = []

    async def factory(**options: Any) -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore(**options)
        else:
            store = await SqliteStore.open(tmp_path / "store.db", **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store()
