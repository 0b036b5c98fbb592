"""open_store: which URL opens which store."""

from __future__ import annotations

import pathlib

import pytest

from osm.store import MemoryStore, SqliteStore, open_store


async def test_memory_url() -> None:
    store = await open_store("memory:", history=5)
    assert isinstance(store, MemoryStore)
    await store.close()


@pytest.mark.parametrize("form", ["url", "relative-url", "plain"])
async def test_sqlite_urls_and_paths(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.chdir(tmp_path)
    url = {
        "url": f"sqlite://{tmp_path}/store.db",
        "relative-url": "sqlite:store.db",
        "plain": str(tmp_path / "store.db"),
    }[form]
    store = await open_store(url)
    assert isinstance(store, SqliteStore)
    await store.close()
    assert (tmp_path / "store.db").exists()


@pytest.mark.parametrize(
    "url", ["", "memory:x", "postgres://db/store", "sqlite://host/x.db", "sqlite:", "sqlite://"]
)
async def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        await open_store(url)
