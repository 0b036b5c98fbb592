"""The Kubernetes client (`osm.kube.client.KubeClient`) and the informer against the REAL
local API server, over HTTPS with the admin's client certificate.

The server is `osm.apiserver.local.start` over a `SqliteStore` with little history, so a
resourceVersion expires after a handful of writes. Two ways a watch learns that it cannot
resume, both of which the informer must answer with a new `Sync` (a full list) and then
resume watching from it:

- the API restarts while more changes than the store keeps are written (the watch is
  resumed from a version that is gone: 410 Expired when the server is back);
- the watch falls behind (one batch bigger than the server's watcher queue: the server
  ends the live watch with an ERROR event carrying 410).

A deletion made in the gap is visible only through the `Sync`: that is what relisting is for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from osm.apiserver import local
from osm.kube import informer
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError
from osm.store import SqliteStore
from osm.store import api as store_api

pytestmark = pytest.mark.timeout(60)

HISTORY = 5
"""Events the store keeps: a version more than this many writes old has expired."""
WATCH_QUEUE = 8
"""Events the server's watch of one client may have queued before it is ended with 410."""
FAST = informer.Backoff(initial=0.05, factor=1.0, maximum=0.05)
EVENT_TIMEOUT = 10.0


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def split(name: str, weights: tuple[int, int] = (50, 50)) -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": "books"},
        "spec": {
            "service": "bookstore",
            "backends": [
                {"service": "bookstore-v1", "weight": weights[0]},
                {"service": "bookstore-v2", "weight": weights[1]},
            ],
        },
    }


class Server:
    """The API over one store, which can be stopped and started again on its port."""

    def __init__(self, store: SqliteStore, state_dir: Path) -> None:
        self.store = store
        self.state_dir = state_dir
        self.api: local.LocalApi | None = None
        self.port = 0

    async def start(self) -> local.LocalApi:
        self.api = await local.start(self.store, self.state_dir, port=self.port)
        self.port = self.api.port
        return self.api

    async def stop(self) -> None:
        if self.api is not None:
            await self.api.stop()
            self.api = None


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    store = await SqliteStore.open(
        tmp_path / "store.db", history=HISTORY, watch_queue_size=WATCH_QUEUE
    )
    running = Server(store, tmp_path / "state")
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        await store.close()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[KubeClient]:
    assert server.api is not None
    async with KubeClient.from_kubeconfig(server.api.kubeconfig) as kube:
        await kube.create(namespace("books"))
        yield kube


def names(objects: Any) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)


def weights(obj: dict[str, Any]) -> list[int]:
    return [backend["weight"] for backend in obj["spec"]["backends"]]


async def next_event(events: informer.Informer) -> informer.Event:
    return await asyncio.wait_for(events.__anext__(), EVENT_TIMEOUT)


# -- the client -----------------------------------------------------------------------------
async def test_the_client_lists_and_watches_from_the_lists_version(client: KubeClient) -> None:
    await client.create(split("one"))
    await client.create(split("two"))
    items, version = await client.list("TrafficSplit", "books")
    assert names(items) == ["TrafficSplit/one", "TrafficSplit/two"]

    seen: list[tuple[str, str, list[int]]] = []

    async def watch() -> None:
        async for event_type, obj in client.watch("TrafficSplit", "books", version):
            if event_type != "BOOKMARK":
                seen.append((event_type, obj["metadata"]["name"], weights(obj)))
            if len(seen) == 3:
                return

    watching = asyncio.create_task(watch())
    await client.patch(
        "TrafficSplit", "books", "one", {"spec": {"backends": [{"service": "v1", "weight": 1}]}}
    )
    await client.create(split("three", (10, 90)))
    await client.delete("TrafficSplit", "books", "two")
    await asyncio.wait_for(watching, EVENT_TIMEOUT)
    assert seen == [
        ("MODIFIED", "one", [1]),
        ("ADDED", "three", [10, 90]),
        ("DELETED", "two", [50, 50]),
    ]


async def test_a_watch_from_an_expired_version_raises_410(
    server: Server, client: KubeClient
) -> None:
    created = await client.create(split("one"))
    expired = created["metadata"]["resourceVersion"]
    for weight in range(HISTORY + 2):
        backends = [{"service": "bookstore-v1", "weight": weight + 1}]
        await client.patch("TrafficSplit", "books", "one", {"spec": {"backends": backends}})

    with pytest.raises(ApiError) as raised:
        async for _ in client.watch("TrafficSplit", "books", expired):
            pass
    assert (raised.value.code, raised.value.expired) == (410, True)


# -- the informer ---------------------------------------------------------------------------
async def test_the_informer_syncs_then_follows_changes_in_order(client: KubeClient) -> None:
    await client.create(split("one"))
    async with informer.Informer(client, ["TrafficSplit", "Namespace"], backoff=FAST) as events:
        sync = await next_event(events)
        assert isinstance(sync, informer.Sync)
        assert names(sync.objects) == ["Namespace/books", "TrafficSplit/one"]
        assert set(sync.resource_versions) == {"TrafficSplit", "Namespace"}

        await client.create(split("two"))
        await client.delete("TrafficSplit", "books", "one")
        changes = [await next_event(events) for _ in range(2)]

    assert [(c.type, c.object["metadata"]["name"]) for c in changes] == [  # type: ignore[union-attr]
        ("ADDED", "two"),
        ("DELETED", "one"),
    ]


async def test_after_a_restart_past_the_history_the_informer_relists_and_resumes(
    server: Server, client: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.create(split("stays"))
    await client.create(split("goes"))
    caplog.set_level(logging.INFO, logger="osm.kube.informer")
    kinds = ["TrafficSplit"]
    async with informer.Informer(client, kinds, backoff=FAST, watch_retries=1000) as events:
        first = await next_event(events)
        assert isinstance(first, informer.Sync)
        assert names(first.objects) == ["TrafficSplit/goes", "TrafficSplit/stays"]

        await server.stop()  # the watch is cut; the informer keeps trying to resume it
        store = server.store
        for weight in range(HISTORY + 3):  # more changes than the store keeps
            await store.apply([split("stays", (weight, 100 - weight))])
        await store.delete([store_api.ObjectKey("TrafficSplit", "books", "goes")])
        await server.start()

        again = await next_event(events)
        assert isinstance(again, informer.Sync), f"not a relist: {again}"
        assert names(again.objects) == ["TrafficSplit/stays"]  # the deletion in the gap
        assert weights(again.objects[0]) == [HISTORY + 2, 100 - HISTORY - 2]
        assert "listing again: TrafficSplit at resourceVersion" in caplog.text
        assert "Expired: too old resource version" in caplog.text

        await client.create(split("after"))  # resumed from the new list's version
        change = await next_event(events)

    assert isinstance(change, informer.Change)
    assert (change.type, change.object["metadata"]["name"]) == ("ADDED", "after")


async def test_a_watch_that_falls_behind_is_ended_with_410_and_the_informer_relists(
    server: Server, client: KubeClient
) -> None:
    async with informer.Informer(client, ["TrafficSplit"], backoff=FAST) as events:
        first = await next_event(events)
        assert isinstance(first, informer.Sync) and first.objects == ()

        # One batch with more events than the server's watch may queue.
        await server.store.apply([split(f"s{i}") for i in range(WATCH_QUEUE + 1)])

        again = await next_event(events)
        assert isinstance(again, informer.Sync), f"not a relist: {again}"
        assert len(again.objects) == WATCH_QUEUE + 1

        await client.delete("TrafficSplit", "books", "s0")
        change = await next_event(events)

    assert isinstance(change, informer.Change)
    assert (change.type, change.object["metadata"]["name"]) == ("DELETED", "s0")
