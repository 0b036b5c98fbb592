"""The API server's REST semantics, as kube-apiserver answers them (plain HTTP here, with
a test authenticator; TLS and client certificates are tested in test_auth and in the
kubectl integration tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from osm.apiserver import server
from osm.store.memory import MemoryStore

Client = TestClient[Any, Any]
USER_HEADER = "X-Test-User"
NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
PODS = "/api/v1/namespaces/shop/pods"
SPLITS = "/apis/split.smi-spec.io/v1alpha4/namespaces/shop/trafficsplits"


def by_header(request: web.Request) -> str | None:
    """Stands in for the client certificate: the user named by a test header."""
    return request.headers.get(USER_HEADER) or None


def pod(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "app", "command": ["sleep"]}]},
    }
    body.update(extra)
    return body


def split(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": name},
        "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": 100}], **spec},
    }


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Client]:
    store = MemoryStore()
    settings = server.Settings(
        logs_dir=tmp_path / "logs", bookmark_seconds=0.2, namespace_finalize_seconds=0.05
    )
    app = server.ApiServer(store, by_header, settings=settings).make_app()
    async with TestClient(TestServer(app), headers={USER_HEADER: "admin"}) as client:
        response = await client.post("/api/v1/namespaces", json=NS)
        assert response.status == 201, await response.text()
        yield client
    await store.close()


async def call(
    client: Client, method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    response = await client.request(method, path, json=body, **kwargs)
    text = await response.text()
    return response.status, json.loads(text) if text.startswith("{") else text


# -- authentication ------------------------------------------------------------------
async def test_a_request_without_a_client_identity_gets_401_status(api: Client) -> None:
    for path in ("/api/v1/pods", "/version", "/apis", "/metrics"):
        status, body = await call(api, "GET", path, headers={USER_HEADER: ""})
        assert (status, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")
    status, body = await call(api, "GET", "/api/v1/pods")
    assert (status, body["kind"]) == (200, "PodList")


# -- discovery -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/version", {"major": "1", "minor": server.KUBERNETES_MINOR}),
        ("/api", {"kind": "APIVersions", "versions": ["v1"]}),
        ("/apis/split.smi-spec.io", {"kind": "APIGroup", "name": "split.smi-spec.io"}),
        ("/api/v1", {"kind": "APIResourceList", "groupVersion": "v1"}),
        ("/apis/apps/v1", {"kind": "APIResourceList", "groupVersion": "apps/v1"}),
    ],
)
async def test_discovery_documents(api: Client, path: str, expected: dict[str, Any]) -> None:
    status, body = await call(api, "GET", path)
    assert status == 200
    assert {key: body[key] for key in expected} == expected


async def test_resource_lists_name_verbs_short_names_and_subresources(api: Client) -> None:
    _, body = await call(api, "GET", "/api/v1")
    by_name = {entry["name"]: entry for entry in body["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"]
    assert "watch" in by_name["pods"]["verbs"]
    assert by_name["pods/log"]["verbs"] == ["get"]
    assert by_name["namespaces"]["namespaced"] is False
    _, groups = await call(api, "GET", "/apis")
    names = {group["name"] for group in groups["groups"]}
    assert {"apps", "split.smi-spec.io", "config.openservicemesh.io"} <= names


# -- create, get, list -----------------------------------------------------------------
async def test_create_answers_201_with_server_fields_and_get_reads_it_back(api: Client) -> None:
    status, created = await call(api, "POST", PODS, pod("web"))
    assert status == 201
    meta = created["metadata"]
    assert meta["namespace"] == "shop"
    assert meta["uid"] and meta["creationTimestamp"] and meta["resourceVersion"]
    status, got = await call(api, "GET", f"{PODS}/web")
    assert (status, got) == (200, created)


@pytest.mark.parametrize(
    ("path", "body", "code", "reason"),
    [
        (PODS, pod("web"), 409, "AlreadyExists"),
        ("/api/v1/namespaces/nowhere/pods", pod("x"), 404, "NotFound"),
        (PODS, {**pod("x"), "apiVersion": "v2"}, 400, "BadRequest"),
        (PODS, {**pod("x"), "kind": "Service"}, 400, "BadRequest"),
        (PODS, {**pod("x"), "metadata": {"name": "x", "namespace": "other"}}, 400, "BadRequest"),
        (PODS, {**pod("x"), "status": {"podIP": "not-an-ip"}}, 422, "Invalid"),
        (PODS, {"kind": "Pod", "apiVersion": "v1", "metadata": {}}, 422, "Invalid"),
        (SPLITS, split(service=7), 422, "Invalid"),
    ],
)
async def test_create_refusals_are_statuses(
    api: Client, path: str, body: dict[str, Any], code: int, reason: str
) -> None:
    await call(api, "POST", PODS, pod("web"))
    status, answer = await call(api, "POST", path, body)
    assert (status, answer["kind"], answer["reason"], answer["code"]) == (
        code,
        "Status",
        reason,
        code,
    )


async def test_an_invalid_object_names_every_field_in_causes(api: Client) -> None:
    bad = split(backends=[{"service": "", "weight": -1}])
    status, answer = await call(api, "POST", SPLITS, bad)
    assert status == 422
    fields = {cause["field"] for cause in answer["details"]["causes"]}
    assert {"spec.backends[0].service", "spec.backends[0].weight"} <= fields
    _, listed = await call(api, "GET", SPLITS)
    assert listed["items"] == []


@pytest.mark.parametrize(
    ("validation", "status", "stored_field"),
    [("Strict", 400, None), ("Warn", 201, False), ("Ignore", 201, False), ("", 201, False)],
)
async def test_field_validation_decides_what_unknown_fields_do(
    api: Client, validation: str, status: int, stored_field: bool | None
) -> None:
    query = f"?fieldValidation={validation}" if validation else ""
    response = await api.post(SPLITS + query, json=split(colour="blue"))
    assert response.status == status
    body = await response.json()
    if status == 400:
        assert "strict decoding error" in body["message"]
        assert 'unknown field "spec.colour"' in body["message"]
        return
    assert "colour" not in body["spec"]
    warned = response.headers.getall("Warning", [])
    assert bool(warned) == (validation in ("Warn", ""))


async def test_list_filters_by_label_and_field_selectors_and_pages(api: Client) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web"), ("d", "web")):
        await call(api, "POST", PODS, pod(name, {"tier": tier}))
    _, web_pods = await call(api, "GET", PODS, params={"labelSelector": "tier=web"})
    assert [p["metadata"]["name"] for p in web_pods["items"]] == ["a", "c", "d"]
    _, named = await call(api, "GET", "/api/v1/pods", params={"fieldSelector": "metadata.name=b"})
    assert [p["metadata"]["name"] for p in named["items"]] == ["b"]
    pages: list[str] = []
    params = {"limit": "3"}
    while True:
        _, page = await call(api, "GET", PODS, params=params)
        pages += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        params = {"limit": "3", "continue": token}
    assert pages == ["a", "b", "c", "d"]
    status, answer = await call(api, "GET", PODS, params={"fieldSelector": "spec.colour=x"})
    assert (status, answer["reason"]) == (400, "BadRequest")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["a", "b", "c", "d", "e", "f", "g"]),
        ({"fieldSelector": "metadata.name!=b"}, ["a", "c", "d", "e", "f", "g"]),
        ({"fieldSelector": "metadata.name=f"}, ["f"]),
        ({"labelSelector": "tier=web", "fieldSelector": "metadata.name!=c"}, ["a", "d", "g"]),
        ({"fieldSelector": "metadata.name=none"}, []),
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 3, 10])
async def test_pages_joined_are_the_unpaged_list(
    api: Client, query: dict[str, str], expected: list[str], limit: int
) -> None:
    for number, name in enumerate("gfedcba"):
        await call(api, "POST", PODS, pod(name, {"tier": "web" if number % 3 == 0 else "db"}))
    _, whole = await call(api, "GET", PODS, params=query)
    assert [p["metadata"]["name"] for p in whole["items"]] == expected
    joined: list[dict[str, Any]] = []
    params = {**query, "limit": str(limit)}
    while True:
        _, page = await call(api, "GET", PODS, params=params)
        assert len(page["items"]) <= limit
        assert page["metadata"]["resourceVersion"] == whole["metadata"]["resourceVersion"]
        joined += page["items"]
        token = page["metadata"].get("continue")
        if not token:
            break
        params = {**query, "limit": str(limit), "continue": token}
    assert joined == whole["items"]


# -- update, patch, status -------------------------------------------------------------
async def test_update_with_a_stale_resource_version_is_a_conflict(api: Client) -> None:
    _, created = await call(api, "POST", SPLITS, split())
    changed = {**created, "spec": {**created["spec"], "backends": [{"service": "b", "weight": 1}]}}
    status, updated = await call(api, "PUT", f"{SPLITS}/web", changed)
    assert status == 200
    assert updated["metadata"]["generation"] == 2
    status, answer = await call(api, "PUT", f"{SPLITS}/web", changed)
    assert (status, answer["reason"]) == (409, "Conflict")


async def test_a_no_op_update_keeps_the_resource_version(api: Client) -> None:
    _, created = await call(api, "POST", SPLITS, split())
    _, same = await call(api, "PUT", f"{SPLITS}/web", created)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_status_is_written_only_through_the_status_subresource(api: Client) -> None:
    await call(api, "POST", PODS, pod("web"))
    _, stored = await call(api, "GET", f"{PODS}/web")
    with_status = {**stored, "status": {"phase": "Running", "podIP": "10.0.0.5"}}
    _, main = await call(api, "PUT", f"{PODS}/web", with_status)
    assert "status" not in main
    status, written = await call(api, "PUT", f"{PODS}/web/status", with_status)
    assert status == 200
    assert written["status"]["podIP"] == "10.0.0.5"
    bad = {**written, "status": {"podIP": "nope"}}
    status, answer = await call(api, "PUT", f"{PODS}/web/status", bad)
    assert (status, answer["details"]["causes"][0]["field"]) == (422, "status.podIP")


async def test_merge_and_json_patches(api: Client) -> None:
    await call(api, "POST", PODS, pod("web"))
    merge = {"metadata": {"labels": {"tier": "web", "app": None}}}
    status, patched = await call(
        api,
        "PATCH",
        f"{PODS}/web",
        data=json.dumps(merge),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert status == 200
    assert patched["metadata"]["labels"] == {"tier": "web"}
    ops = [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
    status, patched = await call(
        api,
        "PATCH",
        f"{PODS}/web",
        data=json.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert (status, patched["metadata"]["annotations"]) == (200, {"a": "b"})


# -- delete ------------------------------------------------------------------------------
async def test_a_namespace_goes_terminating_then_vanishes_after_its_content(api: Client) -> None:
    await call(api, "POST", PODS, pod("web"))
    status, answer = await call(api, "DELETE", "/api/v1/namespaces/shop")
    assert status == 200
    assert answer["status"]["phase"] == "Terminating"
    assert answer["metadata"]["deletionTimestamp"]
    for _ in range(50):
        status, _ = await call(api, "GET", "/api/v1/namespaces/shop")
        if status == 404:
            break
        await asyncio.sleep(0.02)
    assert status == 404
    status, _ = await call(api, "GET", f"{PODS}/web")
    assert status == 404


async def test_deleting_an_owner_deletes_the_pods_it_owns(api: Client) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod("x")["spec"]},
        },
    }
    _, owner = await call(api, "POST", "/apis/apps/v1/namespaces/shop/deployments", deployment)
    reference = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    reference["uid"] = owner["metadata"]["uid"]
    owned = pod("web-1")
    owned["metadata"]["ownerReferences"] = [reference]
    await call(api, "POST", PODS, owned)
    await call(api, "POST", PODS, pod("alone"))
    status, _ = await call(api, "DELETE", "/apis/apps/v1/namespaces/shop/deployments/web")
    assert status == 200
    _, left = await call(api, "GET", PODS)
    assert [p["metadata"]["name"] for p in left["items"]] == ["alone"]


# -- watch -------------------------------------------------------------------------------
async def read_events(response: Any, count: int) -> list[dict[str, Any]]:
    events = []
    while len(events) < count:
        line = await asyncio.wait_for(response.content.readline(), 5)
        if not line:
            break
        events.append(json.loads(line))
    return events


async def test_watch_from_a_version_then_bookmarks_then_timeout(api: Client) -> None:
    _, first = await call(api, "POST", PODS, pod("a"))
    rv = first["metadata"]["resourceVersion"]
    params = {
        "watch": "1",
        "resourceVersion": rv,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "2",
    }
    async with api.get(PODS, params=params) as response:
        await call(api, "POST", PODS, pod("b"))
        await call(api, "DELETE", f"{PODS}/a")
        events = await read_events(response, 3)
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
            ("ADDED", "b"),
            ("DELETED", "a"),
            ("BOOKMARK", None),
        ]
        assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(rv)
        rest = await asyncio.wait_for(response.content.read(), 5)  # ends at timeoutSeconds
    assert all(json.loads(line)["type"] == "BOOKMARK" for line in rest.splitlines())


async def test_watch_without_a_version_starts_with_the_current_objects(api: Client) -> None:
    await call(api, "POST", PODS, pod("a"))
    async with api.get(PODS, params={"watch": "true", "timeoutSeconds": "1"}) as response:
        events = await read_events(response, 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]


async def test_watch_from_a_compacted_version_gets_410_expired(tmp_path: Path) -> None:
    store = MemoryStore(history=1)
    app = server.ApiServer(store, by_header).make_app()
    async with TestClient(TestServer(app), headers={USER_HEADER: "admin"}) as client:
        await call(client, "POST", "/api/v1/namespaces", NS)
        for name in "abc":
            await call(client, "POST", PODS, pod(name))
        async with client.get(PODS, params={"watch": "1", "resourceVersion": "1"}) as response:
            events = await read_events(response, 1)
    await store.close()
    assert events[0]["type"] == "ERROR"
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


# -- logs ----------------------------------------------------------------------------------
async def test_pod_logs_tail_and_container_choice(api: Client, tmp_path: Path) -> None:
    two = pod("web")
    two["spec"]["containers"].append({"name": "side", "image": "x", "command": ["x"]})
    await call(api, "POST", PODS, two)
    logs = tmp_path / "logs" / "shop" / "web"
    logs.mkdir(parents=True)
    (logs / "app.log").write_text("one\ntwo\nthree\n")
    status, text = await call(api, "GET", f"{PODS}/web/log", params={"container": "app"})
    assert (status, text) == (200, "one\ntwo\nthree\n")
    _, tail = await call(
        api, "GET", f"{PODS}/web/log", params={"container": "app", "tailLines": "1"}
    )
    assert tail == "three\n"
    status, answer = await call(api, "GET", f"{PODS}/web/log")
    assert status == 400
    assert (
        "a container name must be specified for pod web, choose one of: [app side]"
        in (answer["message"])
    )


# -- bad requests never 500 ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("POST", PODS, b"{not json"),
        ("POST", PODS, b"[]"),
        ("GET", "/api/v1/namespaces/shop/widgets", None),
        ("GET", "/apis/nowhere/v1", None),
        ("PATCH", f"{PODS}/web", b"{}"),
        ("GET", PODS + "?limit=x", None),
        ("GET", PODS + "?continue=garbage", None),
        ("DELETE", f"{PODS}/missing", None),
        ("GET", PODS + "?watch=1&resourceVersion=abc", None),
    ],
)
async def test_bad_requests_are_client_errors(
    api: Client, method: str, path: str, data: bytes | None
) -> None:
    response = await api.request(method, path, data=data)
    assert 400 <= response.status < 500
    assert (await response.json())["kind"] == "Status"


async def test_a_body_over_the_limit_is_refused_with_413(tmp_path: Path) -> None:
    store = MemoryStore()
    settings = server.Settings(max_body=1024)
    app = server.ApiServer(store, by_header, settings=settings).make_app()
    async with TestClient(TestServer(app), headers={USER_HEADER: "admin"}) as client:
        big = {**NS, "metadata": {"name": "x", "annotations": {"a": "b" * 4096}}}
        status, answer = await call(client, "POST", "/api/v1/namespaces", big)
    await store.close()
    assert (status, answer["reason"]) == (413, "RequestEntityTooLarge")


async def test_a_deployments_scale_reads_and_writes_its_replicas(api: Client) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod("x")["spec"]},
        },
    }
    path = "/apis/apps/v1/namespaces/shop/deployments/web"
    await call(api, "POST", "/apis/apps/v1/namespaces/shop/deployments", deployment)
    status, scale = await call(api, "GET", f"{path}/scale")
    assert (status, scale["kind"], scale["spec"], scale["status"]["selector"]) == (
        200,
        "Scale",
        {"replicas": 1},
        "app=web",
    )
    merge = {"Content-Type": "application/merge-patch+json"}
    body = json.dumps({"spec": {"replicas": 3}})
    status, scaled = await call(api, "PATCH", f"{path}/scale", data=body, headers=merge)
    assert (status, scaled["spec"]["replicas"]) == (200, 3)
    _, stored = await call(api, "GET", path)
    assert stored["spec"]["replicas"] == 3
    body = json.dumps({"spec": {"replicas": -1}})
    status, answer = await call(api, "PATCH", f"{path}/scale", data=body, headers=merge)
    assert (status, answer["details"]["causes"][0]["field"]) == (422, "spec.replicas")


CLIENT_GO_ACCEPT = "application/vnd.kubernetes.protobuf, */*"
"""What client-go's typed clients (Prometheus's pod discovery, kube-controller-manager's
informers) accept: protobuf first, anything else after; JSON is what they get here."""


async def test_client_gos_reflector_lists_and_watches_pods_in_json(api: Client) -> None:
    await call(api, "POST", PODS, pod("a"))
    headers = {"Accept": CLIENT_GO_ACCEPT}
    listed = await api.get(
        "/api/v1/pods", params={"limit": "500", "resourceVersion": "0"}, headers=headers
    )
    assert listed.status == 200
    assert listed.content_type == "application/json"
    body = await listed.json()
    assert [item["metadata"]["name"] for item in body["items"]] == ["a"]
    params = {
        "allowWatchBookmarks": "true",
        "resourceVersion": body["metadata"]["resourceVersion"],
        "timeoutSeconds": "2",
        "watch": "true",
    }
    async with api.get("/api/v1/pods", params=params, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        await call(api, "DELETE", f"{PODS}/a")
        events = await read_events(response, 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "a")]
