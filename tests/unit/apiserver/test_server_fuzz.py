"""Fuzzing the API's paths, queries and bodies: never a 500, never a stop, always a
Status for an error (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osm.apiserver import server
from osm.store.memory import MemoryStore

SEGMENTS = st.sampled_from(
    [
        "api", "apis", "v1", "apps", "namespaces", "shop", "pods", "web", "status", "log",
        "deployments", "split.smi-spec.io", "v1alpha4", "trafficsplits", "x", "", "..", "%00",
        "services", "meshconfigs", "config.openservicemesh.io", "v1alpha2", "openapi", "v3",
    ]
)  # fmt: skip
QUERY = st.dictionaries(
    st.sampled_from(
        [
            "watch",
            "resourceVersion",
            "limit",
            "continue",
            "labelSelector",
            "fieldSelector",
            "timeoutSeconds",
            "dryRun",
            "fieldValidation",
            "container",
            "tailLines",
        ]
    ),
    st.text(max_size=12),
    max_size=3,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["kind", "apiVersion", "metadata", "name", "spec", "status", "a"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.builds(
        lambda name, spec: json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
        ).encode(),
        st.text(max_size=10),
        JSON_VALUES,
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "text/plain",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    segments=st.lists(SEGMENTS, max_size=8),
    query=QUERY,
    body=BODIES,
    content_type=CONTENT_TYPES,
)
async def test_no_request_gets_a_500(
    method: str, segments: list[str], query: dict[str, str], body: bytes, content_type: str
) -> None:
    store = MemoryStore()
    app = server.ApiServer(store, lambda request: "fuzz").make_app()
    if "watch" in query:  # a watch ends after a second
        query = {**query, "watch": "true", "timeoutSeconds": "1"}
    async with TestClient(TestServer(app)) as client:
        await client.post(
            "/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "shop"}}
        )
        response = await client.request(
            method,
            "/" + "/".join(segments).lstrip("/"),
            params=query,
            data=body,
            headers={"Content-Type": content_type},
            timeout=5,  # type: ignore[arg-type]
        )
        text = await response.read()
        assert response.status < 500, text
        if response.status >= 400:
            status: Any = json.loads(text)
            assert (status["kind"], status["code"]) == ("Status", response.status)
        health = await client.get("/healthz")
        assert health.status == 200
    await store.close()


WRITE_PATHS = st.sampled_from(
    [
        "/api/v1/namespaces/shop/pods",
        "/api/v1/namespaces/shop/pods/web",
        "/api/v1/namespaces/shop/pods/web/status",
        "/api/v1/namespaces/shop/services",
        "/apis/split.smi-spec.io/v1alpha4/namespaces/shop/trafficsplits",
        "/apis/split.smi-spec.io/v1alpha4/namespaces/shop/trafficsplits/web",
        "/api/v1/namespaces/shop",
    ]
)
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"containers": [{"name": "app", "image": "app"}]},
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH"]),
    path=WRITE_PATHS,
    body=BODIES,
    content_type=CONTENT_TYPES,
)
async def test_no_write_body_gets_a_500(
    method: str, path: str, body: bytes, content_type: str
) -> None:
    store = MemoryStore()
    app = server.ApiServer(store, lambda request: "fuzz").make_app()
    async with TestClient(TestServer(app)) as client:
        await client.post(
            "/api/v1/namespaces", json={"kind": "Namespace", "metadata": {"name": "shop"}}
        )
        await client.post("/api/v1/namespaces/shop/pods", json=POD)
        response = await client.request(
            method, path, data=body, headers={"Content-Type": content_type}
        )
        text = await response.read()
        assert response.status < 500, text
        health = await client.get("/healthz")
        assert health.status == 200
    await store.close()
