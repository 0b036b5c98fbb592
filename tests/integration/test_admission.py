"""Admission through a real controller's Kubernetes API (HTTPS, client certificate): a Pod is
stored as the injector made it, after its bootstrap Secret; a Pod that cannot be injected
is refused with a Status naming the field and leaves nothing behind; deleting the Pod
deletes its Secret; label and status updates pass without a second injection; the ADS
server accepts the bootstrap certificate for the pod's node id; and the controller starts
with what ``osm install`` creates."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc

from osm.base import wellknown
from osm.controller import server
from osm.injector import secret as injector_secret
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError
from osm.model import config
from tests import controllers, kubeapi
from tests.unit.ads.adstesting import request
from tests.unit.injector.injector_support import container, namespace, pod

pytestmark = pytest.mark.timeout(120)

NS = "bookstore"
POD = "bookstore-v1"


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[server.Controller]:
    async with controllers.running(tmp_path / "state") as running:
        yield running


@pytest.fixture
async def client(controller: server.Controller) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(controller.kubeconfig) as kube:
        yield kube


async def secrets(client: KubeClient) -> list[str]:
    items, _ = await client.list("Secret", NS)
    return [item["metadata"]["name"] for item in items]


async def resource_version(client: KubeClient) -> int:
    """The store's resourceVersion (a list's answers it)."""
    _, version = await client.list("Namespace")
    return int(version)


async def first_event(client: KubeClient, kind: str, since: int) -> tuple[str, str, int]:
    """The first change of `kind` after `since`: (type, name, resourceVersion)."""
    async with asyncio.timeout(10):
        async for event_type, obj in client.watch(kind, NS, str(since), bookmarks=False):
            meta = obj["metadata"]
            return event_type, meta["name"], int(meta["resourceVersion"])
    raise AssertionError(f"no {kind} event")


async def injected(client: KubeClient) -> dict[str, Any]:
    await kubeapi.apply(client, namespace())
    return await client.create(pod())


async def test_a_pod_is_stored_injected_after_its_secret(client: KubeClient) -> None:
    await client.create(namespace())
    since = await resource_version(client)
    created = await client.create(pod())
    assert created["kind"] == "Pod", "the answer is the Pod; the Secret is not the user's"
    assert await client.get("Pod", NS, POD) == created
    proxy_uuid = created["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
    secret = f"{wellknown.BOOTSTRAP_SECRET_PREFIX}{proxy_uuid}"
    assert [c["name"] for c in created["spec"]["containers"]] == ["bookstore", "envoy"]
    assert [c["name"] for c in created["spec"]["initContainers"]] == ["osm-init"]
    assert await secrets(client) == [secret]
    secret_event = await first_event(client, "Secret", since)
    pod_event = await first_event(client, "Pod", since)
    assert (secret_event[:2], pod_event[:2]) == (("ADDED", secret), ("ADDED", POD))
    assert secret_event[2] < pod_event[2], "the Secret is written first"


async def test_a_pod_that_cannot_be_injected_is_refused_and_leaves_nothing(
    client: KubeClient,
) -> None:
    await client.create(namespace())
    since = await resource_version(client)
    bad = pod(containers=[container("bookstore", port=wellknown.PROXY_INBOUND_PORT)])
    with pytest.raises(ApiError) as refused:
        await client.create(bad)
    assert (refused.value.code, refused.value.reason) == (422, "Invalid")
    assert (refused.value.details["kind"], refused.value.details["name"]) == ("Pod", POD)
    assert [c.field for c in refused.value.causes] == ["spec.containers[0].ports[0].containerPort"]
    with pytest.raises(ApiError) as missing:
        await client.get("Pod", NS, POD)
    assert missing.value.code == 404
    assert await secrets(client) == []
    assert await resource_version(client) == since


async def test_a_dry_run_is_admitted_and_stores_nothing(
    client: KubeClient, controller: server.Controller
) -> None:
    await client.create(namespace())
    since = await resource_version(client)
    bad = pod(annotations={wellknown.DATA_PLANE_ANNOTATION: "linkerd"})
    path = f"/api/v1/namespaces/{NS}/pods?dryRun=All"
    async with kubeapi.https(controller.kubeconfig) as session:
        async with session.post(path, json=pod()) as response:
            assert response.status == 201, await response.text()
            answer = await response.json()
        async with session.post(path, json=bad) as response:
            assert response.status == 422, await response.text()
    assert [c["name"] for c in answer["spec"]["containers"]] == ["bookstore", "envoy"]
    assert await secrets(client) == []
    assert await resource_version(client) == since


async def test_deleting_the_pod_deletes_its_secret(client: KubeClient) -> None:
    await injected(client)
    assert len(await secrets(client)) == 1
    await client.delete("Pod", NS, POD)
    assert await secrets(client) == []


async def test_label_and_status_updates_are_accepted_and_not_injected_again(
    client: KubeClient, controller: server.Controller
) -> None:
    stored = await injected(client)
    stored["metadata"]["labels"]["version"] = "v1"
    labelled = await client.replace(stored)
    assert labelled["spec"] == stored["spec"]
    assert labelled["metadata"]["labels"] == stored["metadata"]["labels"]
    labelled["status"] = {"phase": "Running", "podIP": "10.233.0.7"}
    async with kubeapi.https(controller.kubeconfig) as session:
        await kubeapi.replace_status(session, labelled)
    again = await client.get("Pod", NS, POD)
    assert again["spec"] == stored["spec"]
    assert again["status"]["podIP"] == "10.233.0.7"
    assert len(await secrets(client)) == 1


async def test_an_update_that_drops_the_sidecar_is_refused_naming_every_field(
    client: KubeClient,
) -> None:
    await injected(client)
    with pytest.raises(ApiError) as refused:
        await kubeapi.apply(client, pod())
    assert refused.value.code == 422
    assert [c.field for c in refused.value.causes] == [
        f'metadata.labels["{wellknown.PROXY_UUID_LABEL}"]',
        "spec.containers",
        "spec.containers[1]",
        "spec.initContainers",
        "spec.initContainers[0]",
        "spec.volumes",
        "spec.volumes[0]",
    ]


async def test_concurrent_creates_of_one_pod_inject_it_once(client: KubeClient) -> None:
    await client.create(namespace())
    answers = await asyncio.gather(
        *(client.create(pod()) for _ in range(4)), return_exceptions=True
    )
    refusals = sorted(a.reason for a in answers if isinstance(a, ApiError))
    assert refusals == ["AlreadyExists"] * 3, answers
    assert len(await secrets(client)) == 1


async def test_the_ads_server_accepts_the_bootstrap_certificate_for_the_pods_node(
    client: KubeClient, controller: server.Controller
) -> None:
    stored = await injected(client)
    proxy_uuid = stored["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
    secret = await client.get("Secret", NS, wellknown.BOOTSTRAP_SECRET_PREFIX + proxy_uuid)
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
        connected = await kubeapi.proxies(controller.http_port)
        assert [(p["node_id"], p["authenticated"]) for p in connected] == [(node, True)]
        call.cancel()


async def test_the_controller_starts_with_the_control_plane_namespace_and_mesh_config(
    controller: server.Controller, client: KubeClient, tmp_path: Path
) -> None:
    name = (wellknown.CONTROL_PLANE_NAMESPACE, wellknown.MESH_CONFIG_NAME)
    stored = await client.get("MeshConfig", *name)
    assert stored["spec"] == config.default_manifest()["spec"]
    await client.get("Namespace", None, wellknown.CONTROL_PLANE_NAMESPACE)
    mine = config.default_manifest()
    mine["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] = False
    await kubeapi.apply(client, mine)
    await controller.stop()
    async with (
        controllers.running(tmp_path / "state") as restarted,
        KubeClient.from_kubeconfig(restarted.kubeconfig) as again,
    ):
        kept = await again.get("MeshConfig", *name)
    assert kept["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] is False
