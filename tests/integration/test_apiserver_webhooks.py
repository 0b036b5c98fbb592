"""The local API server calls admission webhooks as kube-apiserver does: a real HTTPS
webhook server in the test (its certificate from a test CA), registered by creating
Mutating/ValidatingWebhookConfiguration objects through the API, and writes through the
API (and kubectl) that the webhooks patch, refuse, or fail to answer.

Every webhook path of the test server is one behaviour (`Hooks`); a configuration names
the path, so each test reads as the configuration it writes and the answer it gets.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from osm.apiserver import auth, local, webhooks
from osm.ca import tls
from osm.store.memory import MemoryStore
from tests import kubeapi, kubectl_harness

SERVICE_HOST = "hooks.webhooks.svc"
PODS = "/api/v1/namespaces/shop/pods"
MUTATING_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@dataclasses.dataclass
class Hooks:
    """The test's webhook server: what it was asked, and how to answer each path."""

    reviews: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        for path in ("/allow", "/label", "/deny", "/deny-403", "/sleep", "/wrong-uid", "/warn"):
            app.router.add_post(path, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        uid = review["request"]["uid"]
        response: dict[str, Any] = {"uid": uid, "allowed": True}
        match request.path:
            case "/label":
                has_labels = "labels" in review["request"]["object"]["metadata"]
                operations = (
                    [{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]
                    if has_labels
                    else [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
                )
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(operations).encode()).decode()
            case "/deny":
                response = {"uid": uid, "allowed": False, "status": {"message": "no pods here"}}
            case "/deny-403":
                response = {
                    "uid": uid,
                    "allowed": False,
                    "status": {"code": 403, "reason": "Forbidden", "message": "not you"},
                }
            case "/sleep":
                await asyncio.sleep(3)
            case "/wrong-uid":
                response["uid"] = "not-" + uid
            case "/warn":
                response["warnings"] = ["think twice"]
        return web.json_response(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )


@dataclasses.dataclass
class World:
    api: local.LocalApi
    session: aiohttp.ClientSession
    hooks: Hooks
    ca_bundle: str
    other_ca_bundle: str
    hook_port: int
    kubectl: kubectl_harness.Kubectl

    def service(self, path: str, *, ca_bundle: str | None = None) -> dict[str, Any]:
        return {
            "service": {"namespace": "webhooks", "name": "hooks", "path": path},
            "caBundle": self.ca_bundle if ca_bundle is None else ca_bundle,
        }

    async def register(
        self, path: str, *, mutating: bool = False, name: str = "hooks", **fields: Any
    ) -> None:
        webhook: dict[str, Any] = {
            "name": f"{path.strip('/')}.example.com",
            "clientConfig": self.service(path),
            "rules": [
                {
                    "operations": ["CREATE", "UPDATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                }
            ],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            **fields,
        }
        kind = "MutatingWebhookConfiguration" if mutating else "ValidatingWebhookConfiguration"
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name},
            "webhooks": [webhook],
        }
        status, answer, _ = await self.post(MUTATING_PATH if mutating else VALIDATING_PATH, body)
        assert status == 201, answer

    async def post(
        self, path: str, body: dict[str, Any], **query: str
    ) -> tuple[int, dict[str, Any], list[str]]:
        async with self.session.post(path, json=body, params=query) as response:
            return response.status, await response.json(), response.headers.getall("Warning", [])

    async def create_pod(self, name: str = "web", **query: str) -> tuple[int, dict[str, Any]]:
        status, body, _ = await self.post(PODS, pod(name), **query)
        return status, body

    async def stored(self, name: str = "web") -> dict[str, Any] | None:
        async with self.session.get(f"{PODS}/{name}") as response:
            return await response.json() if response.status == 200 else None


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "web:1"}]},
    }


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
    }


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    ca = auth.ApiCA.open(tmp_path / "webhook-ca")
    other = auth.ApiCA.open(tmp_path / "other-ca")
    credentials = ca.issue_server([SERVICE_HOST, "localhost"], ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(context, credentials.cert_pem, credentials.key_pem)
    hooks = Hooks()
    runner = web.AppRunner(hooks.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    hook_port = local.bound_port(site, 0)

    async def resolve(namespace: str, name: str, port: int) -> tuple[str, int]:
        if (namespace, name) != ("webhooks", "hooks"):
            raise webhooks.ResolveError(f'service "{name}" not found')
        return "127.0.0.1", hook_port

    store = MemoryStore()
    api = await local.start(store, tmp_path / "state", port=0, webhooks=True, resolver=resolve)
    home = tmp_path / "home"
    home.mkdir()
    try:
        async with kubeapi.https(api.kubeconfig) as session:
            found = World(
                api,
                session,
                hooks,
                base64.b64encode(credentials.ca_pem).decode(),
                base64.b64encode(other.cert_pem).decode(),
                hook_port,
                kubectl_harness.Kubectl(api.kubeconfig, home),
            )
            status, body, _ = await found.post("/api/v1/namespaces", namespace("shop"))
            assert status == 201, body
            yield found
    finally:
        await api.stop()
        await runner.cleanup()
        await store.close()


async def test_a_namespace_carries_its_name_as_a_label(world: World) -> None:
    async with world.session.get("/api/v1/namespaces/shop") as response:
        labels = (await response.json())["metadata"]["labels"]
    assert labels == {"kubernetes.io/metadata.name": "shop"}


async def test_a_mutating_webhooks_patch_lands_in_the_stored_object(world: World) -> None:
    await world.register("/label", mutating=True)
    status, body = await world.create_pod()
    assert status == 201, body
    stored = await world.stored()
    assert stored is not None
    assert stored["metadata"]["labels"] == {"app": "web", "mutated": "yes"}
    (review,) = world.hooks.reviews
    request = review["request"]
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert (request["operation"], request["namespace"], request["name"]) == (
        "CREATE",
        "shop",
        "web",
    )
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["userInfo"]["username"] == local.ADMIN_USER
    assert request["dryRun"] is False


async def test_mutating_then_validating_each_sees_what_came_before(world: World) -> None:
    await world.register("/label", mutating=True)
    await world.register("/allow")
    status, body = await world.create_pod()
    assert status == 201, body
    mutated, validated = world.hooks.reviews
    assert "mutated" not in mutated["request"]["object"]["metadata"]["labels"]
    assert validated["request"]["object"]["metadata"]["labels"]["mutated"] == "yes"


async def test_an_update_sends_the_old_object(world: World) -> None:
    assert (await world.create_pod())[0] == 201
    await world.register("/allow")
    stored = await world.stored()
    assert stored is not None
    stored["metadata"]["labels"]["v"] = "2"
    async with world.session.put(f"{PODS}/web", json=stored) as response:
        assert response.status == 200, await response.text()
    (review,) = world.hooks.reviews
    assert review["request"]["operation"] == "UPDATE"
    assert review["request"]["oldObject"]["metadata"]["labels"] == {"app": "web"}
    assert review["request"]["object"]["metadata"]["labels"]["v"] == "2"


DENIALS = [
    # (path, code, reason, message)
    ("/deny", 400, None, 'admission webhook "deny.example.com" denied the request: no pods here'),
    (
        "/deny-403",
        403,
        "Forbidden",
        'admission webhook "deny-403.example.com" denied the request: not you',
    ),
]


@pytest.mark.parametrize(("path", "code", "reason", "message"), DENIALS)
@pytest.mark.parametrize("mutating", [False, True], ids=["validating", "mutating"])
async def test_a_denial_refuses_with_kubes_message_and_stores_nothing(
    world: World, path: str, code: int, reason: str | None, message: str, mutating: bool
) -> None:
    await world.register(path, mutating=mutating)
    status, body = await world.create_pod()
    assert (status, body["code"], body.get("reason"), body["message"]) == (
        code,
        code,
        reason,
        message,
    )
    assert await world.stored() is None


async def test_namespace_selector_skips_an_unlabelled_namespace(world: World) -> None:
    selector = {"matchLabels": {"openservicemesh.io/monitored-by": "osm"}}
    await world.register("/deny", namespaceSelector=selector)
    assert (await world.create_pod("free"))[0] == 201
    status, _, _ = await world.post(
        "/api/v1/namespaces", namespace("mesh", {"openservicemesh.io/monitored-by": "osm"})
    )
    assert status == 201
    meshed = {**pod("web"), "metadata": {"name": "web", "namespace": "mesh"}}
    status, body, _ = await world.post("/api/v1/namespaces/mesh/pods", meshed)
    assert status == 400, body


async def test_namespace_selector_by_the_automatic_name_label(world: World) -> None:
    selector = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["shop"]}
        ]
    }
    await world.register("/deny", namespaceSelector=selector)
    assert (await world.create_pod())[0] == 201


async def test_object_selector_chooses_by_the_objects_labels(world: World) -> None:
    await world.register("/deny", objectSelector={"matchLabels": {"app": "db"}})
    assert (await world.create_pod("web"))[0] == 201
    assert (await world.create_pod("db"))[0] == 400


FAILURES = [
    # (failurePolicy, code)
    ("Fail", 500),
    ("Ignore", 201),
]


@pytest.mark.parametrize(("policy", "code"), FAILURES)
async def test_a_webhook_that_is_down_fails_by_its_policy(
    world: World, policy: str, code: int
) -> None:
    down = {"service": {"namespace": "webhooks", "name": "gone", "path": "/allow"}}
    await world.register("/allow", clientConfig=down, failurePolicy=policy)
    status, body = await world.create_pod()
    assert status == code, body
    if code == 500:
        assert body["reason"] == "InternalError"
        assert body["message"].startswith(
            'Internal error occurred: failed calling webhook "allow.example.com": failed to '
            'call webhook: Post "https://gone.webhooks.svc:443/allow?timeout=10s"'
        )
        assert await world.stored() is None
    else:
        assert await world.stored() is not None


async def test_a_refused_connection_is_a_failed_call(world: World) -> None:
    closed = {"url": "https://127.0.0.1:1/allow", "caBundle": world.ca_bundle}
    await world.register("/allow", clientConfig=closed)
    status, body = await world.create_pod()
    assert status == 500
    assert 'failed calling webhook "allow.example.com"' in body["message"]


async def test_a_webhook_slower_than_its_timeout_is_refused_in_time(world: World) -> None:
    await world.register("/sleep", timeoutSeconds=1)
    started = time.monotonic()
    status, body = await world.create_pod()
    took = time.monotonic() - started
    assert status == 500
    assert body["message"].endswith('?timeout=1s": context deadline exceeded')
    assert took < 1.8, took


async def test_a_ca_bundle_that_does_not_sign_the_server_refuses(world: World) -> None:
    await world.register(
        "/allow", clientConfig=world.service("/allow", ca_bundle=world.other_ca_bundle)
    )
    status, body = await world.create_pod()
    assert status == 500
    assert "certificate verify failed" in body["message"]
    assert world.hooks.reviews == []


async def test_the_service_name_is_what_the_certificate_must_carry(world: World) -> None:
    """Reached by its IP, the server is still checked against ``hooks.webhooks.svc``; a
    url of a name the certificate lacks fails."""
    elsewhere = {"url": f"https://127.0.0.2:{world.hook_port}/allow", "caBundle": world.ca_bundle}
    await world.register("/allow", clientConfig=elsewhere)
    status, body = await world.create_pod()
    assert status == 500
    assert "failed calling webhook" in body["message"]


async def test_an_answer_with_another_uid_is_a_failed_call(world: World) -> None:
    await world.register("/wrong-uid")
    status, body = await world.create_pod()
    assert status == 500
    assert "received invalid webhook response: expected response.uid=" in body["message"]


async def test_warnings_come_back_as_warning_headers(world: World) -> None:
    await world.register("/warn")
    status, body, warnings = await world.post(PODS, pod("web"))
    assert status == 201, body
    assert warnings == ['299 - "think twice"']


DRY_RUNS = [
    # (sideEffects, code)
    ("Unknown", 400),
    ("Some", 400),
    ("NoneOnDryRun", 201),
    ("None", 201),
]


@pytest.mark.parametrize(("side_effects", "code"), DRY_RUNS)
async def test_a_dry_run_reaches_only_webhooks_without_side_effects(
    world: World, side_effects: str, code: int
) -> None:
    await world.register("/allow", sideEffects=side_effects)
    status, body = await world.create_pod(dryRun="All")
    assert status == code, body
    if code == 400:
        assert body["message"] == 'admission webhook "allow.example.com" does not support dry run'
        assert world.hooks.reviews == []
    else:
        (review,) = world.hooks.reviews
        assert review["request"]["dryRun"] is True
    assert await world.stored() is None


async def test_a_delete_reaches_webhooks_that_ask_for_it(world: World) -> None:
    assert (await world.create_pod())[0] == 201
    rules = [
        {"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
    ]
    await world.register("/deny", rules=rules)
    async with world.session.delete(f"{PODS}/web") as response:
        assert response.status == 400
        assert "denied the request: no pods here" in (await response.json())["message"]
    (review,) = world.hooks.reviews
    assert review["request"]["operation"] == "DELETE"
    assert review["request"]["object"] is None
    assert review["request"]["oldObject"]["metadata"]["name"] == "web"
    assert await world.stored() is not None


async def test_webhook_configurations_are_not_sent_to_webhooks(world: World) -> None:
    everything = [
        {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}
    ]
    await world.register("/deny", rules=everything)
    status, _, _ = await world.post(
        VALIDATING_PATH,
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "another"},
            "webhooks": [],
        },
    )
    assert status == 201
    async with world.session.delete(f"{VALIDATING_PATH}/hooks") as response:
        assert response.status == 200


async def test_configurations_run_in_name_order(world: World) -> None:
    await world.register("/label", mutating=True, name="b-second")
    await world.register("/allow", mutating=True, name="a-first")
    assert (await world.create_pod())[0] == 201
    first, second = world.hooks.reviews
    assert "mutated" not in first["request"]["object"]["metadata"]["labels"]
    assert "mutated" not in second["request"]["object"]["metadata"]["labels"]
    stored = await world.stored()
    assert stored is not None and stored["metadata"]["labels"]["mutated"] == "yes"


@kubectl_harness.needs_kubectl
async def test_kubectl_prints_kubes_error_for_a_denying_webhook(world: World) -> None:
    await world.register("/deny")
    manifest = json.dumps(pod("web"))
    run = await world.kubectl("apply", "-f", "-", stdin=manifest)
    assert (run.code, run.err.strip()) == (
        1,
        'Error from server: error when creating "STDIN": admission webhook '
        '"deny.example.com" denied the request: no pods here',
    )
    assert await world.stored() is None
