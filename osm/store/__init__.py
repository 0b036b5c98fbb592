"""The resource store: one interface (apply/get/list/delete/watch), memory and SQLite.

The contract is `osm.store.api.Store`; `open_store` picks an implementation from a URL.
"""

from __future__ import annotations

import re
from typing import Any

from osm.store.api import (
    Conflict,
    EventType,
    InsufficientStorage,
    InvalidObject,
    LabelSelector,
    NotFound,
    Object,
    ObjectKey,
    Requirement,
    Selector,
    SelectorError,
    Store,
    StoreClosed,
    StoreError,
    WatchEvent,
    parse_selector,
)
from osm.store.memory import MemoryStore
from osm.store.sqlite import SqliteStore

__all__ = [
    "Conflict",
    "EventType",
    "InsufficientStorage",
    "InvalidObject",
    "LabelSelector",
    "MemoryStore",
    "NotFound",
    "Object",
    "ObjectKey",
    "Requirement",
    "Selector",
    "SelectorError",
    "SqliteStore",
    "Store",
    "StoreClosed",
    "StoreError",
    "WatchEvent",
    "open_store",
    "parse_selector",
]

_OTHER_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


async def open_store(url: str, **options: Any) -> Store:
    """Open the store named by ``url``; ``options`` go to the implementation's constructor.

    - ``memory:`` -- a new, empty `MemoryStore`;
    - ``sqlite:///abs/path.db`` (absolute path), ``sqlite:relative/path.db``, or a plain
      file path -- a `SqliteStore` in that file, created if needed.

    Must be awaited on the event loop that will use the store.
    """
    if url == "memory:":
        return MemoryStore(**options)
    if url.startswith("sqlite:"):
        rest = url.removeprefix("sqlite:")
        if rest.startswith("//"):
            authority, slash, path = rest[2:].partition("/")
            if authority or not slash or not path:
                raise ValueError(f"{url!r}: bad sqlite URL; expected sqlite:///absolute/path.db")
            rest = "/" + path.lstrip("/")  # sqlite:////abs/path names /abs/path too
        if not rest:
            raise ValueError(f"{url!r}: the sqlite URL has no path")
        return await SqliteStore.open(rest, **options)
    if _OTHER_SCHEME.match(url) or url.startswith("memory:"):
        raise ValueError(f"{url!r}: unsupported store URL; use memory:, sqlite:///path or a path")
    if not url:
        raise ValueError("an empty store URL; use memory:, sqlite:///path or a path")
    return await SqliteStore.open(url, **options)
