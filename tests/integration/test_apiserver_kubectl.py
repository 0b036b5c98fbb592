"""The real kubectl against our OpenAPI documents and Tables, served by a stand-in server.

The stand-in serves only what these modules own: ``/version`` (minor 32, so the machine's
kubectl dispatcher runs kubectl 1.32), discovery (`osm.apiserver.resources`), the OpenAPI
v3 documents (`osm.apiserver.openapi`) and canned answers per test; everything else is a
404 Status. It records every request, so the tests check what kubectl sends as well as
what it prints. The API server itself is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from osm.apiserver import openapi, resources, tables
from osm.model import schema
from tests.kubectl_harness import needs_kubectl
from tests.unit.apiserver import printing
from tests.unit.apiserver import test_tables as fixtures
from tests.unit.model import model_examples as ex

pytestmark = needs_kubectl
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
TABLE_ACCEPT = "as=Table;v=v1;g=meta.k8s.io"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    accept: str
    content_type: str
    body: bytes


Answer = Callable[[Request], tuple[int, Any]]


def not_found(path: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": f"{path} not found",
        "reason": "NotFound",
        "code": 404,
    }


class StandIn:
    """Discovery, /version and OpenAPI from our modules; canned answers for the rest."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answers: dict[tuple[str, str], Answer] = {}
        self.documents: Callable[[str], dict[str, Any] | None] = openapi.v3_document
        self.address = ""

    def answer(self, method: str, path: str, answer: Answer) -> None:
        self.answers[(method, path)] = answer

    def requested(self, method: str, prefix: str = "/") -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    async def handle(self, http: web.Request) -> web.Response:
        request = Request(
            http.method,
            http.path,
            dict(http.query),
            http.headers.get("Accept", ""),
            http.headers.get("Content-Type", ""),
            await http.read(),
        )
        self.requests.append(request)
        status, body = self._route(request)
        return web.json_response(body, status=status)

    def _route(self, request: Request) -> tuple[int, Any]:
        path = request.path
        parts = path.strip("/").split("/")
        found: Any = None
        if request.method == "GET":
            if path == "/version":
                found = VERSION
            elif path == "/api":
                found = resources.api_versions(self.address)
            elif path == "/apis":
                found = resources.api_group_list()
            elif path == "/api/v1":
                found = resources.api_resource_list("", "v1")
            elif parts[0] == "apis" and len(parts) == 2:
                found = resources.api_group(parts[1])
            elif parts[0] == "apis" and len(parts) == 3:
                found = resources.api_resource_list(parts[1], parts[2])
            elif path == "/openapi/v3":
                found = openapi.v3_root()
            elif path.startswith("/openapi/v3/"):
                found = self.documents(path)
        if found is not None:
            return 200, found
        answer = self.answers.get((request.method, path))
        return answer(request) if answer else (404, not_found(path))


@dataclasses.dataclass(frozen=True)
class Kubectl:
    server: StandIn
    home: Path

    async def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            "kubectl",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(self.home), "KUBECONFIG": str(self.home / "config")},
        )
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[Kubectl]:
    server = StandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.address = f"127.0.0.1:{port}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "osm", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "osm", "user": {}}],
        "contexts": [{"name": "osm",
                      "context": {"cluster": "osm", "user": "osm", "namespace": "shop"}}],
        "current-context": "osm",
    }  # fmt: skip
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    try:
        yield Kubectl(server, tmp_path)
    finally:
        await runner.cleanup()


# -- explain ----------------------------------------------------------------------------------
def description(kind: str, api_version: str, *path: str) -> str:
    node = schema.schema(kind, api_version)
    for field in path:
        node = node.get("items", node)["properties"][field]
    return str(node["description"])


def words(text: str) -> list[str]:
    return text.split()


async def test_explain_prints_our_fields_types_and_descriptions(kubectl: Kubectl) -> None:
    code, out, err = await kubectl("explain", "trafficsplit.spec")
    assert (code, err) == (0, "")
    assert "KIND:       TrafficSplit\nVERSION:    v1alpha4\n\nFIELD: spec <Object>" in out
    assert "backends\t<[]Object> -required-" in out
    assert "matches\t<[]Object>\n" in out
    assert "service\t<string> -required-" in out
    spec = description("TrafficSplit", "split.smi-spec.io/v1alpha4", "spec")
    assert words(spec) == words(out.split("DESCRIPTION:")[1].split("FIELDS:")[0])
    backends = description("TrafficSplit", "split.smi-spec.io/v1alpha4", "spec", "backends")
    assert " ".join(words(backends)) in " ".join(words(out))


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        ("trafficsplit.spec.backends", "weight\t<integer> -required-"),
        ("ts.spec.backends.weight --api-version=split.smi-spec.io/v1alpha2",
         "FIELD: weight <integer>"),
        ("traffictarget.spec.rules.kind", "ENUM:\n    HTTPRouteGroup\n    TCPRoute"),
        ("meshconfig.spec.traffic", "enablePermissiveTrafficPolicyMode\t<boolean>"),
        ("httproutegroup.spec.matches", "name\t<string> -required-"),
        ("tcproute.spec.matches.ports", "FIELD: ports <[]integer>"),
        ("trafficsplit.metadata", "labels\t<map[string]string>"),
    ],
)  # fmt: skip
async def test_explain_walks_into_every_custom_kind(
    kubectl: Kubectl, field: str, shown: str
) -> None:
    code, out, err = await kubectl("explain", *field.split())
    assert (code, err) == (0, "")
    assert shown in out


async def test_explain_of_a_built_in_kind_says_there_is_no_schema(kubectl: Kubectl) -> None:
    code, _, err = await kubectl("explain", "pods")
    assert code == 1
    assert "not found in OpenAPI schema" in err


# -- apply, create ------------------------------------------------------------------------------
def manifest(text: str) -> dict[str, Any]:
    return dict(yaml.safe_load(text))


def stored(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``obj`` as a server would hold it after an earlier apply of it with ``changes``."""
    earlier = json.loads(json.dumps(obj))
    earlier["spec"].update(changes)
    applied = json.dumps(earlier, separators=(",", ":"))
    earlier["metadata"].update(
        annotations={LAST_APPLIED: applied}, uid="u-1", resourceVersion="5",
        creationTimestamp="2025-06-01T11:55:00Z",
    )  # fmt: skip
    return earlier


async def test_apply_dry_run_client_needs_nothing_but_our_openapi(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    path = tmp_path / "split.yaml"
    path.write_text(ex.TRAFFIC_SPLIT_V1ALPHA4 + "---\n" + ex.DEPLOYMENT_MINIMAL)
    code, out, err = await kubectl("apply", "--dry-run=client", "-f", str(path))
    assert (code, err) == (0, "")
    assert out == (
        "trafficsplit.split.smi-spec.io/web-canary created (dry run)\n"
        "deployment.apps/web created (dry run)\n"
    )
    assert kubectl.server.requested("GET", "/openapi/v2") == []


async def test_without_field_validation_kubectl_validates_itself_and_fails(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    """The control: what our documents spare users."""

    def without(path: str) -> dict[str, Any] | None:
        document = openapi.v3_document(path)
        for item in (document or {}).get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict) and "parameters" in operation:
                    operation["parameters"] = [
                        p for p in operation["parameters"] if p["name"] != "fieldValidation"
                    ]
        return document

    kubectl.server.documents = without
    path = tmp_path / "split.yaml"
    path.write_text(ex.TRAFFIC_SPLIT_V1ALPHA4)
    code, _, err = await kubectl("apply", "--dry-run=client", "-f", str(path))
    assert code == 1
    assert "turn validation off with --validate=false" in err


async def test_apply_of_changed_objects_patches_with_strict_field_validation(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    split, deployment = manifest(ex.TRAFFIC_SPLIT_V1ALPHA4), manifest(ex.DEPLOYMENT_MINIMAL)
    objects = {
        "/apis/split.smi-spec.io/v1alpha4/namespaces/shop/trafficsplits/web-canary": stored(
            split, service="web"
        ),
        "/apis/apps/v1/namespaces/shop/deployments/web": stored(deployment, replicas=3),
    }
    for path, obj in objects.items():
        kubectl.server.answer("GET", path, lambda request, obj=obj: (200, obj))
        kubectl.server.answer("PATCH", path, lambda request, obj=obj: (200, obj))
    file = tmp_path / "both.yaml"
    file.write_text(ex.TRAFFIC_SPLIT_V1ALPHA4 + "---\n" + ex.DEPLOYMENT_MINIMAL)
    code, out, err = await kubectl("apply", "-f", str(file))
    assert (code, err) == (0, ""), "no warning about OpenAPI or patches"
    assert out == (
        "trafficsplit.split.smi-spec.io/web-canary configured\ndeployment.apps/web configured\n"
    )
    patches = {r.path: (r.content_type, r.query) for r in kubectl.server.requested("PATCH")}
    strict = {"fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"}
    assert patches == {
        "/apis/split.smi-spec.io/v1alpha4/namespaces/shop/trafficsplits/web-canary": (
            "application/merge-patch+json",
            strict,
        ),
        "/apis/apps/v1/namespaces/shop/deployments/web": (
            "application/strategic-merge-patch+json",
            strict,
        ),
    }


async def test_create_leaves_validation_to_the_server(kubectl: Kubectl, tmp_path: Path) -> None:
    path = "/apis/split.smi-spec.io/v1alpha4/namespaces/shop/trafficsplits"
    kubectl.server.answer("POST", path, lambda request: (201, json.loads(request.body)))
    file = tmp_path / "split.yaml"
    file.write_text(ex.TRAFFIC_SPLIT_V1ALPHA4.replace("weight: 0", "weight: 0, extra: 1"))
    code, out, err = await kubectl("create", "-f", str(file))
    assert (code, out, err) == (0, "trafficsplit.split.smi-spec.io/web-canary created\n", "")
    (created,) = kubectl.server.requested("POST")
    assert created.query == {"fieldManager": "kubectl-create", "fieldValidation": "Strict"}
    assert json.loads(created.body)["spec"]["backends"][0]["extra"] == 1


# -- get: Tables and ages ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "wide", "all_namespaces"),
    [((), False, False), (("-o", "wide"), True, False), (("-A",), False, True)],
)
async def test_get_prints_our_table_as_we_expect(
    kubectl: Kubectl, flags: tuple[str, ...], wide: bool, all_namespaces: bool
) -> None:
    pods = fixtures._examples()["Pod"]
    pod_resource = next(r for r in resources.RESOURCES if r.kind == "Pod")
    table = tables.table(pod_resource, pods, now=fixtures.NOW, resource_version="9")
    for path in ("/api/v1/namespaces/shop/pods", "/api/v1/pods"):
        kubectl.server.answer("GET", path, lambda request: (200, table))
    code, out, err = await kubectl("get", "pods", *flags)
    assert (code, err) == (0, "")
    assert out == printing.kubectl_get(table, wide=wide, all_namespaces=all_namespaces)
    (listed,) = kubectl.server.requested("GET", "/api/v1/")[-1:]
    assert TABLE_ACCEPT in listed.accept


async def test_ages_are_those_kubectl_computes_itself(kubectl: Kubectl) -> None:
    """Served as a plain list, a pod's AGE is computed by kubectl: the oracle for ours."""
    elapsed = [5, 100, 150, 700, 3 * 3600 + 1800, 30 * 3600, 3 * 86400 + 5 * 3600,
               100 * 86400, 3 * 365 * 86400 + 40 * 86400]  # fmt: skip
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    items = [
        fixtures.pod(name=f"p{i}", creationTimestamp=(before - datetime.timedelta(seconds=s))
                     .strftime("%Y-%m-%dT%H:%M:%SZ"))
        for i, s in enumerate(elapsed)
    ]  # fmt: skip
    listing = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
    kubectl.server.answer("GET", "/api/v1/namespaces/shop/pods", lambda request: (200, listing))
    code, out, err = await kubectl("get", "pods")
    after = datetime.datetime.now(datetime.UTC)
    assert (code, err) == (0, "")
    printed = [line.split()[1] for line in out.splitlines()[1:]]
    for seconds, age in zip(elapsed, printed, strict=True):
        moments = range(int((after - before).total_seconds()) + 2)
        ours = {tables.human_duration(datetime.timedelta(seconds=seconds + d)) for d in moments}
        assert age in ours, (seconds, age, ours)


async def test_get_prints_a_custom_kinds_table(kubectl: Kubectl) -> None:
    splits = fixtures._examples()["TrafficSplit"]
    resource = next(r for r in resources.RESOURCES if r.api_version == "split.smi-spec.io/v1alpha4")
    table = tables.table(resource, splits, now=fixtures.NOW, resource_version="9")
    path = "/apis/split.smi-spec.io/v1alpha4/namespaces/shop/trafficsplits"
    kubectl.server.answer("GET", path, lambda request: (200, table))
    code, out, err = await kubectl("get", "ts", "-o", "wide")
    assert (code, err) == (0, "")
    assert out == printing.kubectl_get(table, wide=True)
    assert out.splitlines()[0].split() == ["NAME", "SERVICE", "AGE", "BACKENDS", "MATCHES"]
