"""Admission through a real controller's HTTP API: a Pod is stored as the injector made
it, after its bootstrap Secret; a Pod that cannot be injected is refused and leaves
nothing behind; deleting the Pod deletes its Secret; status updates pass without a second
injection; the ADS server accepts the bootstrap certificate for the pod's node id; and the
controller starts with what ``osm install`` creates."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc

from osm.base import wellknown
from osm.injector import secret as injector_secret
from osm.model import config
from tests.conftest import RunningController, start_controller
from tests.unit.ads.adstesting import request
from tests.unit.injector.injector_support import container, namespace, pod

pytestmark = pytest.mark.timeout(120)

POD_PATH = "/api/v1/objects/Pod/bookstore/bookstore-v1"
MESH_CONFIG_PATH = "/api/v1/objects/MeshConfig/osm-system/osm-mesh-config"


@pytest.fixture
async def api(controller: RunningController) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(controller.url) as session:
        yield Api(session)


class Api:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def apply(self, *objects: dict[str, Any], dry_run: bool = False) -> tuple[int, Any]:
        body = {"objects": list(objects), "dryRun": dry_run}
        async with self.session.post("/api/v1/apply", json=body) as response:
            return response.status, await response.json()

    async def delete(self, kind: str, namespace_name: str, name: str) -> tuple[int, Any]:
        body = {"objects": [{"kind": kind, "namespace": namespace_name, "name": name}]}
        async with self.session.post("/api/v1/delete", json=body) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(path) as response:
            return response.status, await response.json()

    async def secrets(self) -> list[str]:
        _, body = await self.get("/api/v1/objects/Secret?namespace=bookstore")
        return [item["metadata"]["name"] for item in body["items"]]

    async def resource_version(self) -> int:
        _, body = await self.get("/healthz")
        return int(body["resourceVersion"])

    async def events(self, since: int, count: int) -> list[tuple[str, str, str]]:
        """The first `count` events after `since`: (type, kind, name)."""
        found: list[tuple[str, str, str]] = []
        path = f"/api/v1/watch?since={since}&kinds=Pod,Secret"
        async with asyncio.timeout(10), self.session.get(path) as response:
            async for line in response.content:
                event = json.loads(line)
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    obj = event["object"]
                    found.append((event["type"], obj["kind"], obj["metadata"]["name"]))
                if len(found) == count:
                    return found
        raise AssertionError(f"the watch ended after {found}")


async def _injected(api: Api) -> dict[str, Any]:
    status, body = await api.apply(namespace(), pod())
    assert status == 200, body
    status, stored = await api.get(POD_PATH)
    assert status == 200
    assert isinstance(stored, dict)
    return stored


async def test_a_pod_is_stored_injected_after_its_secret(api: Api) -> None:
    await api.apply(namespace())
    since = await api.resource_version()
    status, body = await api.apply(pod())
    assert status == 200, body
    assert [r["kind"] for r in body["results"]] == ["Pod"], "the Secret is not the user's"
    _, stored = await api.get(POD_PATH)
    proxy_uuid = stored["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
    secret = f"{wellknown.BOOTSTRAP_SECRET_PREFIX}{proxy_uuid}"
    assert [c["name"] for c in stored["spec"]["containers"]] == ["bookstore", "envoy"]
    assert [c["name"] for c in stored["spec"]["initContainers"]] == ["osm-init"]
    assert await api.secrets() == [secret]
    assert await api.events(since, 2) == [
        ("ADDED", "Secret", secret),
        ("ADDED", "Pod", "bookstore-v1"),
    ]


async def test_a_pod_that_cannot_be_injected_is_refused_and_leaves_nothing(api: Api) -> None:
    await api.apply(namespace())
    since = await api.resource_version()
    bad = pod(containers=[container("bookstore", port=wellknown.PROXY_INBOUND_PORT)])
    status, body = await api.apply(bad)
    assert status == 422
    (problem,) = body["problems"]
    assert (problem["kind"], problem["namespace"], problem["name"], problem["path"]) == (
        "Pod",
        "bookstore",
        "bookstore-v1",
        "spec.containers[0].ports[0].containerPort",
    )
    assert (await api.get(POD_PATH))[0] == 404
    assert await api.secrets() == []
    assert await api.resource_version() == since


async def test_a_dry_run_is_admitted_and_stores_nothing(api: Api) -> None:
    await api.apply(namespace())
    since = await api.resource_version()
    status, body = await api.apply(pod(), dry_run=True)
    assert (status, body["results"][0]["action"]) == (200, "created (dry run)")
    bad = pod(annotations={wellknown.DATA_PLANE_ANNOTATION: "linkerd"})
    assert (await api.apply(bad, dry_run=True))[0] == 422
    assert await api.secrets() == []
    assert await api.resource_version() == since


async def test_deleting_the_pod_deletes_its_secret(api: Api) -> None:
    stored = await _injected(api)
    secret = wellknown.BOOTSTRAP_SECRET_PREFIX + stored["metadata"]["labels"]["osm-proxy-uuid"]
    status, body = await api.delete("Pod", "bookstore", "bookstore-v1")
    assert status == 200, body
    assert [(r["kind"], r["name"]) for r in body["results"]] == [
        ("Pod", "bookstore-v1"),
        ("Secret", secret),
    ]
    assert await api.secrets() == []


async def test_a_status_update_is_accepted_and_not_injected_again(api: Api) -> None:
    stored = await _injected(api)
    stored["status"] = {"phase": "Running", "podIP": "10.233.0.7"}
    stored["metadata"]["labels"]["version"] = "v1"
    status, body = await api.apply(stored)
    assert (status, body["results"][0]["action"]) == (200, "configured")
    _, again = await api.get(POD_PATH)
    assert again["spec"] == stored["spec"]
    assert again["metadata"]["labels"] == stored["metadata"]["labels"]
    assert again["status"]["podIP"] == "10.233.0.7"
    assert len(await api.secrets()) == 1


async def test_an_update_that_drops_the_sidecar_is_refused(api: Api) -> None:
    await _injected(api)
    status, body = await api.apply(pod())
    assert status == 422
    assert [p["path"] for p in body["problems"]] == [
        f'metadata.labels["{wellknown.PROXY_UUID_LABEL}"]',
        "spec.containers",
        "spec.containers[1]",
        "spec.initContainers",
        "spec.initContainers[0]",
        "spec.volumes",
        "spec.volumes[0]",
    ]


async def test_concurrent_creates_of_one_pod_inject_it_once(api: Api) -> None:
    await api.apply(namespace())
    answers = await asyncio.gather(*(api.apply(pod()) for _ in range(4)))
    assert sorted(status for status, _ in answers) == [200, 422, 422, 422]
    assert len(await api.secrets()) == 1


async def test_the_ads_server_accepts_the_bootstrap_certificate_for_the_pods_node(
    api: Api, controller: RunningController
) -> None:
    stored = await _injected(api)
    proxy_uuid = stored["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
    name = wellknown.BOOTSTRAP_SECRET_PREFIX + proxy_uuid
    _, secret = await api.get(f"/api/v1/objects/Secret/bookstore/{name}")
    files = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files[injector_secret.CA_FILE],
        private_key=files[injector_secret.KEY_FILE],
        certificate_chain=files[injector_secret.CERT_FILE],
    )
    node = f"{proxy_uuid}.sidecar.bookstore.bookstore"
    options = [("grpc.ssl_target_name_override", wellknown.XDS_SERVER_NAME)]
    target = f"127.0.0.1:{controller.xds_port}"
    async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(request("CDS", node=node))
        response = await asyncio.wait_for(call.read(), 10)
        assert response.type_url == wellknown.CLUSTER_TYPE
        assert response.resources, "the pod's proxy gets its clusters"
        _, connected = await api.get("/api/v1/proxies")
        assert [(p["node_id"], p["authenticated"]) for p in connected["proxies"]] == [(node, True)]
        call.cancel()


async def test_the_controller_starts_with_the_control_plane_namespace_and_mesh_config(
    api: Api, controller: RunningController
) -> None:
    status, mesh_config = await api.get(MESH_CONFIG_PATH)
    assert status == 200
    assert mesh_config["spec"] == config.default_manifest()["spec"]
    mine = config.default_manifest()
    mine["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] = False
    status, body = await api.apply(mine)
    assert (status, body["results"][0]["action"]) == (200, "configured")
    controller.stop()
    restarted = start_controller(controller.state_dir)
    try:
        async with aiohttp.ClientSession(restarted.url) as session:
            _, kept = await Api(session).get(MESH_CONFIG_PATH)
        assert kept["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] is False
    finally:
        restarted.stop()
