"""The injector's view of the cluster (`osm.webhook.view.ClusterView`) against the local API
server: what a pod's admission reads, kept by watches.

- after its first list it holds every Namespace and the MeshConfig;
- a namespace labelled through the API is seen by the view moments after the write
  answers (the API sends a change to its watchers before it answers the writer);
- a MeshConfig changed through the API changes what the next pod gets; deleted, the
  defaults again;
- with the view, a pod's admission makes no read of the API (only its Secret's create).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from osm.apiserver import local
from osm.apiserver import server as apiserver
from osm.base import wellknown
from osm.base.identity import Identity
from osm.controller import install
from osm.injector import admission
from osm.injector.values import BootstrapCertificate
from osm.kube.client import KubeClient
from osm.store.memory import MemoryStore
from osm.webhook import injector, review
from osm.webhook.view import ClusterView
from tests.unit.injector.injector_support import container, namespace, pod
from tests.unit.webhook.reviews import request

pytestmark = pytest.mark.timeout(60)

MESH_CONFIG = ("MeshConfig", wellknown.CONTROL_PLANE_NAMESPACE, wellknown.MESH_CONFIG_NAME)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[KubeClient]:
    store = MemoryStore()
    await install.ensure(store)
    api = await local.start(store, tmp_path / "api", port=0, admission=apiserver.ModelAdmission())
    try:
        async with KubeClient.from_kubeconfig(api.kubeconfig) as kube:
            yield kube
    finally:
        await api.stop()
        await store.close()


@pytest.fixture
async def view(client: KubeClient) -> AsyncIterator[ClusterView]:
    watching = ClusterView(client, wellknown.CONTROL_PLANE_NAMESPACE)
    task = asyncio.create_task(watching.run())
    try:
        await asyncio.wait_for(watching.wait_synced(), 10)
        yield watching
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_view_holds_every_namespace_and_the_mesh_config(
    client: KubeClient, view: ClusterView
) -> None:
    assert wellknown.CONTROL_PLANE_NAMESPACE in view.namespaces
    assert view.mesh_config().ref.name == wellknown.MESH_CONFIG_NAME
    await client.create(namespace("late", monitored=None))
    await until(lambda: "late" in view.namespaces)
    await client.delete("Namespace", None, "late")
    await until(lambda: "late" not in view.namespaces)


async def test_a_label_written_through_the_api_decides_the_next_pod(
    client: KubeClient, view: ClusterView
) -> None:
    await client.create(namespace("shop", monitored=None))
    await until(lambda: "shop" in view.namespaces)
    handler = injector.PodInjector(client, admission.AdmissionSettings(), _no_issue, view=view)
    sent = pod("web", ns="shop", containers=[container("app")])
    assert (await handler(review_of(sent))).patch is None  # not monitored: not injected
    await client.patch(
        "Namespace",
        None,
        "shop",
        {"metadata": {"labels": {wellknown.MONITORED_BY_LABEL: "osm"}}},
    )
    answered = asyncio.get_running_loop().time()

    def labelled() -> bool:
        labels = view.namespaces["shop"]["metadata"]["labels"]
        return bool(labels.get(wellknown.MONITORED_BY_LABEL) == "osm")

    await until(labelled, timeout=1.0)
    waited = asyncio.get_running_loop().time() - answered
    print(f"the label was in the view {1000 * waited:.1f} ms after the patch answered")


async def test_a_mesh_config_change_reaches_the_view_and_its_deletion_restores_defaults(
    client: KubeClient, view: ClusterView
) -> None:
    kind, ns, name = MESH_CONFIG
    await client.patch(kind, ns, name, {"spec": {"sidecar": {"logLevel": "debug"}}})
    await until(lambda: view.mesh_config().sidecar.log_level == "debug")
    await client.delete(kind, ns, name)
    await until(lambda: view.mesh_config().sidecar.log_level != "debug")


async def test_with_the_view_an_admission_reads_nothing_from_the_api(
    client: KubeClient, view: ClusterView, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[object, ...]] = []
    original = client.get

    async def counted(*args: object, **kwargs: object) -> object:
        reads.append(args)
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client, "get", counted)
    handler = injector.PodInjector(client, admission.AdmissionSettings(), _no_issue, view=view)
    sent = pod("web", ns=wellknown.CONTROL_PLANE_NAMESPACE, containers=[container("app")])
    answer = await handler(review_of(sent))
    assert answer.allowed and reads == []
    unseen = pod("web", ns="nowhere", containers=[container("app")])
    answer = await handler(review_of(unseen))
    assert not answer.allowed and reads == [("Namespace", None, "nowhere")]  # read, not assumed


def review_of(sent: dict[str, Any]) -> review.Request:
    namespace_name = sent["metadata"]["namespace"]
    return review.decode(json.dumps(request(sent, namespace=namespace_name)).encode())


def _no_issue(identity: Identity, proxy_uuid: uuid.UUID) -> BootstrapCertificate:
    raise AssertionError("no pod here is injected")
