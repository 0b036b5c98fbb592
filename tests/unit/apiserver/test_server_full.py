"""The API over a store whose filesystem is full: each refused write is a 507
InsufficientStorage Status naming the verb, the object and the store's file; reads go on;
the same write succeeds once there is room. The store here refuses writes while told it is
full, as `SqliteStore` does on a full disk (tests/unit/store/test_store_full.py);
tests/integration/test_store_full_disk.py fills a real filesystem under the real HTTPS
server."""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from osm.apiserver import server
from osm.store import ObjectKey, SqliteStore
from osm.store import api as store_api
from osm.store.memory import MemoryStore
from tests.unit.apiserver.test_server import USER_HEADER, Client, by_header, call
from tests.unit.store.test_store_full import BIG

CONFIGMAPS = "/api/v1/namespaces/shop/configmaps"
FULL = "the store's filesystem is full ({db}): nothing was written; free space and retry"


def config_map(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"big": BIG, **data},
    }


class FillableStore(MemoryStore):
    """A store whose writes raise `InsufficientStorage` while `full`."""

    def __init__(self, db: Path) -> None:
        super().__init__()
        self.db = db
        self.full = False

    async def apply(self, objects: Sequence[store_api.Object]) -> list[store_api.Object]:
        if self.full:
            raise store_api.InsufficientStorage(str(self.db))
        return await super().apply(objects)

    async def delete(self, keys: Sequence[ObjectKey]) -> list[store_api.Object]:
        if self.full:
            raise store_api.InsufficientStorage(str(self.db))
        return await super().delete(keys)


class Api:
    def __init__(self, client: Client, store: FillableStore) -> None:
        self.client = client
        self.store = store
        self.db = store.db


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = FillableStore(tmp_path / "store.db")
    settings = server.Settings(logs_dir=tmp_path / "logs", namespace_finalize_seconds=0.3)
    app = server.ApiServer(store, by_header, settings=settings).make_app()
    async with TestClient(TestServer(app), headers={USER_HEADER: "admin"}) as client:
        for path, body in (
            ("/api/v1/namespaces", {"kind": "Namespace", "metadata": {"name": "shop"}}),
            (CONFIGMAPS, config_map("old")),
        ):
            status, answer = await call(client, "POST", path, body)
            assert status == 201, answer
        yield Api(client, store)
    await store.close()


MERGE = {"Content-Type": "application/merge-patch+json"}
NAMESPACE = "/api/v1/namespaces/shop"
WRITES: dict[str, tuple[str, str, Any, Mapping[str, str], str, dict[str, str]]] = {
    # what: (method, path, body, headers, the message's start, the Status' details)
    "create": (
        "POST", CONFIGMAPS, config_map("new"), {},
        "create ConfigMap shop/new", {"kind": "ConfigMap", "name": "new"},
    ),
    "update": (
        "PUT", f"{CONFIGMAPS}/old", config_map("old", more="1"), {},
        "update ConfigMap shop/old", {"kind": "ConfigMap", "name": "old"},
    ),
    "merge patch": (
        "PATCH", f"{CONFIGMAPS}/old", {"data": {"more": BIG}}, MERGE,
        "patch ConfigMap shop/old", {"kind": "ConfigMap", "name": "old"},
    ),
    "delete": (
        "DELETE", f"{CONFIGMAPS}/old", None, {},
        "delete ConfigMap shop/old", {"kind": "ConfigMap", "name": "old"},
    ),
    "delete a collection": (
        "DELETE", CONFIGMAPS, None, {},
        "deletecollection ConfigMap shop/*", {"kind": "ConfigMap"},
    ),
    "delete a namespace": (
        "DELETE", NAMESPACE, None, {},
        "delete Namespace shop", {"kind": "Namespace", "name": "shop"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("what", WRITES)
async def test_a_write_refused_for_a_full_filesystem_is_a_507_and_succeeds_with_room(
    api: Api, what: str
) -> None:
    method, path, body, headers, message, details = WRITES[what]
    _, listed = await call(api.client, "GET", CONFIGMAPS)
    _, namespace = await call(api.client, "GET", NAMESPACE)
    api.store.full = True

    status, answer = await call(api.client, method, path, body, headers=headers)

    assert (status, answer) == (
        507,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "code": 507,
            "reason": "InsufficientStorage",
            "message": f"{message}: {FULL.format(db=api.db)}",
            "details": details,
        },
    )
    assert await call(api.client, "GET", CONFIGMAPS) == (200, listed), "nothing was written"
    assert await call(api.client, "GET", NAMESPACE) == (200, namespace)

    api.store.full = False
    status, answer = await call(api.client, method, path, body, headers=headers)
    assert status in (200, 201), answer


async def test_reads_and_watches_answer_while_the_filesystem_is_full(api: Api) -> None:
    _, listed = await call(api.client, "GET", CONFIGMAPS)
    rv = listed["metadata"]["resourceVersion"]
    watch = await api.client.get(CONFIGMAPS, params={"watch": "1", "resourceVersion": rv})
    api.store.full = True
    status, _ = await call(api.client, "POST", CONFIGMAPS, config_map("refused"))
    assert status == 507
    assert await call(api.client, "GET", f"{CONFIGMAPS}/old") == (200, listed["items"][0])
    api.store.full = False
    status, created = await call(api.client, "POST", CONFIGMAPS, config_map("after"))
    assert status == 201
    line = json.loads(await asyncio.wait_for(watch.content.readline(), 5))
    assert (line["type"], line["object"]["metadata"]["name"]) == ("ADDED", "after")
    assert int(created["metadata"]["resourceVersion"]) == int(rv) + 1, "no rv was consumed"
    watch.close()


async def test_a_namespace_refused_its_deletion_goes_once_there_is_room(api: Api) -> None:
    status, _ = await call(api.client, "DELETE", NAMESPACE)
    assert status == 200
    api.store.full = True  # before its content is deleted
    await asyncio.sleep(0.6)
    status, namespace = await call(api.client, "GET", NAMESPACE)
    assert (status, namespace["status"]["phase"]) == (200, "Terminating")
    api.store.full = False
    async with asyncio.timeout(5):
        while (await call(api.client, "GET", NAMESPACE))[0] != 404:
            await asyncio.sleep(0.05)


class FullDiskAdmission(server.ModelAdmission):
    """Admission that needs a file of its own and finds no room (as the CA writing its
    state while it issues a Pod's certificate)."""

    async def admit(
        self, store: store_api.Store, obj: Mapping[str, Any], *, creating: bool
    ) -> server.Admitted:
        raise OSError(errno.ENOSPC, "No space left on device", "/state/ca/.state.json.tmp")

    async def deleting(self, store: store_api.Store, keys: Sequence[ObjectKey]) -> list[ObjectKey]:
        return list(keys)


async def test_another_file_a_write_needs_on_a_full_filesystem_is_a_507_naming_it(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "store.db")
    await store.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}])
    app = server.ApiServer(store, by_header, FullDiskAdmission()).make_app()
    async with TestClient(TestServer(app), headers={USER_HEADER: "admin"}) as client:
        status, answer = await call(client, "POST", CONFIGMAPS, config_map("new"))
    await store.close()
    assert (status, answer["reason"]) == (507, "InsufficientStorage")
    assert answer["message"] == (
        "create ConfigMap shop/new: the filesystem of /state/ca/.state.json.tmp is full: "
        "nothing was written; free space and retry"
    )
