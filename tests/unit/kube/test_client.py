"""The client's mapping of kinds to requests and of failures to errors, against an in-memory
HTTP transport: the URL each call reaches, the patch Content-Types, plain dicts even where
lightkube has typed models, and every failure as one of `osm.kube.errors`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import lightkube
import pytest
from lightkube.config.models import Cluster, User

from osm.kube.client import KubeClient
from osm.kube.errors import ApiError, BadResponse, ConnectionFailed, KubeConfigError
from osm.model import kinds

SERVER = "https://api.test"
Handler = Callable[[httpx2.Request], httpx2.Response]


def client(handler: Handler) -> KubeClient:
    config = lightkube.KubeConfig.from_one(cluster=Cluster(server=SERVER), user=User())
    return KubeClient(lightkube.AsyncClient(config, transport=httpx2.MockTransport(handler)))


class Recorder:
    """Answers every request with `answer` (an echo of the request's object by default)."""

    def __init__(self, answer: Any = None) -> None:
        self.requests: list[httpx2.Request] = []
        self.answer = answer

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.answer is not None:
            return httpx2.Response(200, json=self.answer)
        if request.method == "GET" and request.url.params.get("limit"):
            return httpx2.Response(200, json={"metadata": {"resourceVersion": "1"}, "items": []})
        body = json.loads(request.content) if request.content else {}
        return httpx2.Response(200, json=body if isinstance(body, dict) else {})

    @property
    def last(self) -> str:
        request = self.requests[-1]
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        return f"{request.method} {request.url.path}{query}"


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns"}}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}
SPLIT = {
    "apiVersion": "split.smi-spec.io/v1alpha2",
    "kind": "TrafficSplit",
    "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "3"},
}


@pytest.mark.parametrize(
    ("call", "request_line"),
    [
        (lambda c: c.get("Pod", "ns", "a"), "GET /api/v1/namespaces/ns/pods/a"),
        (lambda c: c.get("deploy", "ns", "d"), "GET /apis/apps/v1/namespaces/ns/deployments/d"),
        (lambda c: c.get("Namespace", None, "ns"), "GET /api/v1/namespaces/ns"),
        (
            lambda c: c.get("ts", "ns", "s"),
            "GET /apis/split.smi-spec.io/v1alpha4/namespaces/ns/trafficsplits/s",
        ),
        (lambda c: c.create(POD), "POST /api/v1/namespaces/ns/pods"),
        (lambda c: c.create(NAMESPACE), "POST /api/v1/namespaces"),
        (
            lambda c: c.replace(SPLIT),
            "PUT /apis/split.smi-spec.io/v1alpha2/namespaces/ns/trafficsplits/s",
        ),
        (lambda c: c.delete("Secret", "ns", "k"), "DELETE /api/v1/namespaces/ns/secrets/k"),
        (lambda c: c.list("Pod"), "GET /api/v1/pods?limit=500"),
        (
            lambda c: c.list("mc", "osm-system", page_size=10),
            "GET /apis/config.openservicemesh.io/v1alpha2/namespaces/osm-system/meshconfigs"
            "?limit=10",
        ),
        (
            lambda c: c.list("ns", None, "a=b", "metadata.name=x"),
            "GET /api/v1/namespaces?limit=500&labelSelector=a%3Db&fieldSelector=metadata.name%3Dx",
        ),
    ],
)
async def test_each_call_reaches_its_kinds_url(
    call: Callable[[KubeClient], Any], request_line: str
) -> None:
    recorder = Recorder()
    kube = client(recorder)
    await call(kube)
    await kube.close()
    assert recorder.last == request_line


@pytest.mark.parametrize(
    ("patch_type", "patch", "content_type"),
    [
        ("merge", {"metadata": {"labels": {"a": None}}}, "application/merge-patch+json"),
        ("json", [{"op": "remove", "path": "/metadata/labels/a"}], "application/json-patch+json"),
        ("strategic", {"spec": {}}, "application/strategic-merge-patch+json"),
    ],
)
async def test_patches_say_their_type(patch_type: Any, patch: Any, content_type: str) -> None:
    recorder = Recorder(answer=POD)
    kube = client(recorder)
    assert await kube.patch("Pod", "ns", "a", patch, patch_type) == POD
    await kube.close()
    sent = recorder.requests[-1]
    assert (sent.headers["content-type"], json.loads(sent.content)) == (content_type, patch)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.get("Pod", None, "a"), "Pod is namespaced: give a namespace"),
        (lambda c: c.get("Widget", "ns", "a"), 'unknown resource type "Widget"'),
        (lambda c: c.create({"kind": "Pod", "apiVersion": "v2"}), "Pod is not served at v2"),
        (lambda c: c.create({"kind": "Pod"}), "the object has no apiVersion"),
        (lambda c: c.replace(POD), "replace needs metadata.resourceVersion"),
    ],
)
async def test_a_call_the_api_would_refuse_is_refused_before_sending(
    call: Callable[[KubeClient], Any], error: str
) -> None:
    recorder = Recorder()
    kube = client(recorder)
    with pytest.raises(ValueError, match=error):
        await call(kube)
    await kube.close()
    assert recorder.requests == []


STATUS = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "reason": "Invalid",
    "message": 'Pod "a" is invalid',
    "code": 422,
    "details": {"causes": [{"field": "spec.containers", "message": "Required value"}]},
}


def _status(content_type: str) -> Handler:
    body = json.dumps(STATUS).encode()
    return lambda request: httpx2.Response(
        422, content=body, headers={"content-type": content_type}
    )


def _refused(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("handler", "error", "attributes"),
    [
        pytest.param(
            _status("application/json"),
            ApiError,
            (422, "Invalid", 'Pod "a" is invalid', ["spec.containers"]),
            id="a Status lightkube decodes",
        ),
        pytest.param(
            _status("application/json; charset=utf-8"),
            ApiError,
            (422, "Invalid", 'Pod "a" is invalid', ["spec.containers"]),
            id="a Status lightkube does not decode",
        ),
        pytest.param(
            lambda request: httpx2.Response(502, text="bad gateway"),
            ApiError,
            (502, "Bad Gateway", f"{SERVER}/api/v1/namespaces/ns/pods/a", []),
            id="no Status",
        ),
        pytest.param(_refused, ConnectionFailed, None, id="no connection"),
        pytest.param(
            lambda request: httpx2.Response(200, text="<html>"),
            BadResponse,
            None,
            id="not JSON",
        ),
    ],
)
async def test_failures_become_the_clients_errors(
    handler: Handler, error: type[Exception], attributes: tuple[Any, ...] | None
) -> None:
    kube = client(handler)
    with pytest.raises(error) as raised:
        await kube.get("Pod", "ns", "a")
    await kube.close()
    if isinstance(raised.value, ApiError):
        found = raised.value
        assert (found.code, found.reason, found.message, [c.field for c in found.causes]) == (
            attributes
        )
    else:
        assert str(raised.value).startswith(f"{SERVER}: ")


def test_every_kind_is_a_resource_of_its_plural_and_scope() -> None:
    from osm.kube import client as client_module

    for info in kinds.KINDS:
        for api_version in info.versions:
            resource = client_module._resource(info.kind, api_version)
            api_info = resource._api_info
            assert (api_info.plural, api_info.resource.api_version) == (info.plural, api_version)
            assert issubclass(resource, lightkube.core.resource.NamespacedResource) is (
                info.namespaced
            )


TYPED_FIRST = """
import asyncio, json, httpx2, lightkube
from lightkube.config.models import Cluster, User
from lightkube.core.resource_registry import resource_registry
typed = resource_registry.load("v1", "Pod")  # what lightkube.codecs does on first use
from osm.kube.client import KubeClient
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns"},
       "spec": {"containers": [{"name": "c", "image": "i"}]}}
def answer(request):
    return httpx2.Response(200, json=POD)
async def main():
    config = lightkube.KubeConfig.from_one(cluster=Cluster(server="https://x"), user=User())
    kube = KubeClient(lightkube.AsyncClient(config, transport=httpx2.MockTransport(answer)))
    got = await kube.get("Pod", "ns", "a")
    await kube.close()
    print(json.dumps({"typed": not issubclass(typed, dict), "type": type(got).__name__,
                      "same": got == POD}))
asyncio.run(main())
"""


def test_objects_are_plain_dicts_even_where_lightkube_has_a_typed_model() -> None:
    result = subprocess.run(
        [sys.executable, "-c", TYPED_FIRST], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == {"typed": True, "type": "dict", "same": True}


KUBECONFIGS = [
    ("missing", None, "not found"),
    ("not yaml", "{{{", "not usable"),
    ("not a kubeconfig", "[1, 2]", "not usable"),
    (
        "no user",
        "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
        "the context names no user",
    ),
    (
        "garbled key",
        "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
        "users: [{name: u, user: {client-certificate-data: eA==, client-key-data: eA==}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
        "unusable credentials",
    ),
]


@pytest.mark.parametrize(
    ("text", "error"), [pytest.param(t, e, id=name) for name, t, e in KUBECONFIGS]
)
def test_an_unusable_kubeconfig_is_a_config_error(
    tmp_path: Path, text: str | None, error: str
) -> None:
    path = tmp_path / "kubeconfig"
    if text is not None:
        path.write_text(text)
    with pytest.raises(KubeConfigError, match=error) as raised:
        KubeClient.from_kubeconfig(path)
    assert str(raised.value).startswith(str(path))


def test_without_a_kubeconfig_outside_a_cluster_is_a_config_error() -> None:
    with pytest.raises(KubeConfigError, match=r"^the in-cluster configuration: "):
        KubeClient.from_kubeconfig(None)
