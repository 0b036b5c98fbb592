"""ClusterIPs are allocated by the controller's apply path, as the API server does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from osm.controller import api
from osm.store.memory import MemoryStore

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}


def service(name: str, cluster_ip: str = "", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80}], **spec}
    if cluster_ip:
        body["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": body,
    }


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    store = MemoryStore()
    async with TestClient(TestServer(api.make_app(store))) as test_client:
        yield test_client
    await store.close()


async def apply(client: TestClient[Any, Any], *objects: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/apply", json={"objects": list(objects)})
    body: dict[str, Any] = await response.json()
    body["status"] = response.status
    return body


async def cluster_ip(client: TestClient[Any, Any], name: str) -> str:
    response = await client.get(f"/api/v1/objects/Service/shop/{name}")
    return str((await response.json())["spec"]["clusterIP"])


async def test_a_service_without_cluster_ip_gets_the_lowest_free_one(
    client: TestClient[Any, Any],
) -> None:
    await apply(client, NAMESPACE, service("web"), service("db"))
    assert await cluster_ip(client, "web") == "10.234.0.1"
    assert await cluster_ip(client, "db") == "10.234.0.2"


async def test_reapplying_without_cluster_ip_keeps_it_and_is_unchanged(
    client: TestClient[Any, Any],
) -> None:
    await apply(client, NAMESPACE, service("web"))
    again = await apply(client, service("web"))
    assert again["results"][0]["action"] == "unchanged"
    assert await cluster_ip(client, "web") == "10.234.0.1"


async def test_a_freed_address_is_reused_and_given_ones_are_respected(
    client: TestClient[Any, Any],
) -> None:
    await apply(client, NAMESPACE, service("a"), service("b", "10.234.0.1"))
    assert await cluster_ip(client, "a") == "10.234.0.2"  # .1 was given to b in the batch
    await client.post(
        "/api/v1/delete", json={"objects": [{"kind": "Service", "namespace": "shop", "name": "b"}]}
    )
    await apply(client, service("c"))
    assert await cluster_ip(client, "c") == "10.234.0.1"


async def test_a_taken_or_changed_cluster_ip_is_refused(client: TestClient[Any, Any]) -> None:
    await apply(client, NAMESPACE, service("a"))
    taken = await apply(client, service("b", "10.234.0.1"))
    assert taken["status"] == 422
    assert "already allocated" in taken["problems"][0]["message"]
    changed = await apply(client, service("a", "10.234.0.9"))
    assert changed["status"] == 422
    assert "immutable" in changed["problems"][0]["message"]


async def test_headless_and_external_name_services_get_none(
    client: TestClient[Any, Any],
) -> None:
    external = service("ext", type="ExternalName", externalName="example.org")
    await apply(client, NAMESPACE, service("headless", "None"), external)
    assert await cluster_ip(client, "headless") == "None"
    response = await client.get("/api/v1/objects/Service/shop/ext")
    assert "clusterIP" not in (await response.json())["spec"]
