"""ClusterIPs are allocated by the API, as kube-apiserver allocates them: a Service created
without ``spec.clusterIP`` gets the lowest free address of the service range, keeps it on
every later write that omits it, and a given address must be free and never changes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from osm.apiserver import clusterip, server
from osm.store.memory import MemoryStore

Client = TestClient[Any, Any]
USER_HEADER = "X-Test-User"
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
SERVICES = "/api/v1/namespaces/shop/services"


def by_header(request: web.Request) -> str | None:
    """Stands in for the client certificate: the user named by a test header."""
    return request.headers.get(USER_HEADER) or None


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
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore()
    yield memory
    await memory.close()


@pytest.fixture
async def api(store: MemoryStore) -> AsyncIterator[Client]:
    app = server.ApiServer(store, by_header).make_app()
    async with TestClient(TestServer(app), headers={USER_HEADER: "admin"}) as client:
        assert (await client.post("/api/v1/namespaces", json=NAMESPACE)).status == 201
        yield client


async def call(api: Client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    response = await api.request(method, path, json=body)
    return response.status, json.loads(await response.text())


async def create(api: Client, obj: dict[str, Any]) -> dict[str, Any]:
    status, created = await call(api, "POST", SERVICES, obj)
    assert status == 201, created
    assert isinstance(created, dict)
    return created


async def cluster_ip(api: Client, name: str) -> str:
    status, stored = await call(api, "GET", f"{SERVICES}/{name}")
    assert status == 200, stored
    return str(stored["spec"].get("clusterIP", "(none)"))


async def test_a_service_without_cluster_ip_gets_the_lowest_free_one(api: Client) -> None:
    created = await create(api, service("web"))
    assert created["spec"]["clusterIP"] == "10.234.0.1", "the answer shows the address"
    await create(api, service("db"))
    assert [await cluster_ip(api, name) for name in ("web", "db")] == ["10.234.0.1", "10.234.0.2"]


async def test_a_replace_without_cluster_ip_keeps_it_and_changes_nothing(
    api: Client, store: MemoryStore
) -> None:
    created = await create(api, service("web"))
    rv = store.resource_version
    again = service("web")
    again["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    status, replaced = await call(api, "PUT", f"{SERVICES}/web", again)
    assert status == 200, replaced
    assert replaced["spec"]["clusterIP"] == "10.234.0.1"
    assert replaced["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert store.resource_version == rv, "a no-op write: no new resourceVersion, no event"


async def test_a_freed_address_is_reused_and_a_given_one_is_skipped(api: Client) -> None:
    await create(api, service("b", "10.234.0.1"))
    await create(api, service("a"))
    assert await cluster_ip(api, "a") == "10.234.0.2"
    status, _ = await call(api, "DELETE", f"{SERVICES}/b")
    assert status == 200
    await create(api, service("c"))
    assert await cluster_ip(api, "c") == "10.234.0.1"


async def test_a_taken_or_changed_cluster_ip_is_refused_with_the_field(
    api: Client, store: MemoryStore
) -> None:
    created = await create(api, service("a"))
    rv = store.resource_version
    status, taken = await call(api, "POST", SERVICES, service("b", "10.234.0.1"))
    changed_body = service("a", "10.234.0.9")
    changed_body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    code, changed = await call(api, "PUT", f"{SERVICES}/a", changed_body)
    for answer, (expected_code, words) in (
        ((status, taken), (422, "already allocated")),
        ((code, changed), (422, "immutable")),
    ):
        got_code, body = answer
        assert (got_code, body["kind"], body["reason"]) == (expected_code, "Status", "Invalid")
        causes = body["details"]["causes"]
        assert {cause["field"] for cause in causes} == {"spec.clusterIP"}
        assert words in causes[0]["message"]
    assert store.resource_version == rv, "nothing stored"
    assert await cluster_ip(api, "a") == "10.234.0.1"


async def test_a_taken_cluster_ip_is_one_cause(api: Client) -> None:
    await create(api, service("a"))
    _, taken = await call(api, "POST", SERVICES, service("b", "10.234.0.1"))
    assert len(taken["details"]["causes"]) == 1, taken["details"]["causes"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (service("headless", "None"), "None"),
        (service("ext", type="ExternalName", externalName="example.org"), "(none)"),
    ],
    ids=["headless", "ExternalName"],
)
async def test_headless_and_external_name_services_get_no_address(
    api: Client, obj: dict[str, Any], expected: str
) -> None:
    await create(api, obj)
    assert await cluster_ip(api, obj["metadata"]["name"]) == expected
    await create(api, service("next"))
    assert await cluster_ip(api, "next") == "10.234.0.1", "nothing was taken from the range"


async def test_in_one_assignment_given_addresses_are_taken_before_free_ones_are_handed_out(
    store: MemoryStore,
) -> None:
    objects = [service("a"), service("b", "10.234.0.1")]
    assert await clusterip.assign(store, objects) == []
    assert [o["spec"]["clusterIP"] for o in objects] == ["10.234.0.2", "10.234.0.1"]
