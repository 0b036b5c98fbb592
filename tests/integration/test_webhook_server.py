"""The webhooks as the cluster calls them: AdmissionReview v1 over HTTPS, the client
verifying the server's certificate against the mesh root under the Service's DNS name,
with the local API server (no built-in injection: the model's admission only) as the
cluster's API.

- the injector: a Pod created in a monitored namespace gets a patch that, applied by the
  ``jsonpatch`` library to the pod as sent, gives a Pod that passes Kubernetes' own schema
  (strict), and its bootstrap Secret is in the API; in an ignored namespace, allowed
  without a patch; exclusion annotations reach the init container's rules; a dry run
  creates no Secret; a malformed body is answered ``allowed: false`` with HTTP 200, as is
  a request that is not a Pod CREATE;
- the validator: a bad TrafficSplit is denied with its field paths, a good one allowed;
- the serving certificate: a short-lived leaf is replaced without a restart (a new TLS
  handshake sees the new certificate);
- health and metrics on plain HTTP;
- the CA Secret: two processes starting at once end with one root;
- the caBundle: every webhook of a configuration gets it, and nothing else changes.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509

from osm.apiserver import local
from osm.apiserver import server as apiserver
from osm.base import wellknown
from osm.ca import builtin
from osm.controller import install
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError
from osm.store.memory import MemoryStore
from osm.webhook import ca_secret, cabundle, run, server, validator
from tests.unit.injector.injector_support import container, namespace, pod
from tests.unit.webhook.reviews import request

pytestmark = pytest.mark.timeout(120)

INJECTOR_NAME = "osm-injector.osm-system.svc"
VALIDATOR_NAME = "osm-validator.osm-system.svc"
KUBERNETES_VERSION = "1.32"


@dataclass
class Cluster:
    client: KubeClient
    ca: builtin.BuiltinCA
    root: ssl.SSLContext
    """A client TLS context that trusts the mesh root only."""


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    store = MemoryStore()
    await install.ensure(store)
    api = await local.start(store, tmp_path / "api", port=0, admission=apiserver.ModelAdmission())
    try:
        async with KubeClient.from_kubeconfig(api.kubeconfig) as client:
            await client.create(namespace("bookstore"))
            await client.create(namespace("ignored", monitored=None))
            ca = await ca_secret.load_or_create(
                client,
                wellknown.CONTROL_PLANE_NAMESPACE,
                ca_secret.SECRET_NAME,
                tmp_path / "ca",
                builtin.utc_now(),
            )
            root = ssl.create_default_context(cadata=ca.trust_bundle().pem.decode())
            yield Cluster(client, ca, root)
    finally:
        await api.stop()
        await store.close()


@pytest.fixture
async def injector(cluster: Cluster) -> AsyncIterator[server.WebhookServer]:
    settings = run.InjectorSettings(host=wellknown.LOCALHOST, webhook_port=0, http_port=0)
    webhook = await run.start_injector(cluster.client, cluster.ca, settings)
    webhook.set_ready()
    try:
        yield webhook
    finally:
        await webhook.stop()


async def post(
    cluster: Cluster, port: int, path: str, body: bytes | io.BytesIO, name: str = INJECTOR_NAME
) -> dict[str, Any]:
    """POST `body`; the AdmissionReview's response (the HTTP status must be 200)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://{wellknown.LOCALHOST}:{port}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            ssl=cluster.root,
            server_hostname=name,
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
        review = await answer.json()
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response: dict[str, Any] = review["response"]
    return response


async def inject(
    cluster: Cluster, webhook: server.WebhookServer, sent: dict[str, Any]
) -> dict[str, Any]:
    return await post(cluster, webhook.port, "/mutate-pod-creation", json.dumps(sent).encode())


def patched(original: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The pod the API server stores: the response's patch applied by the jsonpatch
    library to the pod as sent."""
    assert response["patchType"] == "JSONPatch"
    operations = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(original), operations)
    return result


async def secret_names(cluster: Cluster, ns: str = "bookstore") -> set[str]:
    items, _ = await cluster.client.list("Secret", ns)
    return {item["metadata"]["name"] for item in items}


async def test_a_pod_in_a_monitored_namespace_is_injected_and_its_secret_created(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    original = pod()
    del original["metadata"]["namespace"]  # as a ReplicaSet's pods arrive
    sent = request(original, uid="pod-1")
    response = await inject(cluster, injector, sent)
    assert (response["uid"], response["allowed"]) == ("pod-1", True)
    injected = patched(original, response)
    kubernetes_validate.validate(injected, KUBERNETES_VERSION, strict=True)
    names = [c["name"] for c in injected["spec"]["containers"]]
    assert names == ["bookstore", wellknown.ENVOY_CONTAINER_NAME]
    assert [c["name"] for c in injected["spec"]["initContainers"]] == [
        wellknown.INIT_CONTAINER_NAME
    ]
    proxy_uuid = injected["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
    secret = await cluster.client.get(
        "Secret", "bookstore", f"{wellknown.BOOTSTRAP_SECRET_PREFIX}{proxy_uuid}"
    )
    assert secret["data"]
    volume = next(
        v for v in injected["spec"]["volumes"] if v["name"] == wellknown.BOOTSTRAP_VOLUME_NAME
    )
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


async def test_a_pod_in_an_ignored_namespace_is_allowed_unchanged(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    response = await inject(cluster, injector, request(pod(ns="ignored"), namespace="ignored"))
    assert response["allowed"] is True
    assert "patch" not in response
    assert await secret_names(cluster, "ignored") == set()


async def test_exclusion_annotations_reach_the_init_containers_rules(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    annotations = {
        wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION: "6379,5432",
        wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION: "9999",
        wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION: "10.96.0.0/12",
    }
    original = pod(annotations=annotations)
    injected = patched(original, await inject(cluster, injector, request(original)))
    kubernetes_validate.validate(injected, KUBERNETES_VERSION, strict=True)
    (init,) = injected["spec"]["initContainers"]
    script = init["args"][-1]
    for excluded in ("6379", "5432", "9999", "10.96.0.0/12"):
        assert excluded in script, excluded


async def test_a_dry_run_creates_no_secret(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    before = await secret_names(cluster)
    response = await inject(cluster, injector, request(pod(), dry_run=True))
    assert response["allowed"] is True and "patch" in response
    assert await secret_names(cluster) == before


async def test_a_pod_the_rules_refuse_is_denied_with_the_field_path(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    clash = pod(containers=[container("bookstore", port=wellknown.PROXY_ADMIN_PORT)])
    response = await inject(cluster, injector, request(clash))
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    assert "spec.containers[0].ports[0].containerPort" in response["status"]["message"]


async def test_the_injectors_images_are_its_settings(cluster: Cluster) -> None:
    settings = run.InjectorSettings(
        host=wellknown.LOCALHOST,
        webhook_port=0,
        http_port=0,
        sidecar_image="registry.example/envoy:1",
        init_container_image="registry.example/init:1",
    )
    webhook = await run.start_injector(cluster.client, cluster.ca, settings)
    try:
        original = pod()
        injected = patched(original, await inject(cluster, webhook, request(original)))
    finally:
        await webhook.stop()
    images = {c["name"]: c["image"] for c in injected["spec"]["containers"]}
    assert images[wellknown.ENVOY_CONTAINER_NAME] == "registry.example/envoy:1"
    assert injected["spec"]["initContainers"][0]["image"] == "registry.example/init:1"


MALFORMED = [
    ("empty", b""),
    ("not JSON", b"<xml/>"),
    ("v1beta1", json.dumps({**request(pod()), "apiVersion": "admission.k8s.io/v1beta1"}).encode()),
]


@pytest.mark.parametrize("body", [c[1] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
async def test_a_malformed_body_gets_allowed_false_and_http_200(
    cluster: Cluster, injector: server.WebhookServer, body: bytes
) -> None:
    response = await post(cluster, injector.port, "/mutate-pod-creation", body)
    assert response["allowed"] is False
    assert response["status"]["message"].startswith("not an AdmissionReview v1 request")


async def test_a_request_that_is_not_a_pod_create_is_denied_as_misrouted(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    split = {"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": {}}
    response = await inject(cluster, injector, request(split))
    assert response["allowed"] is False
    assert "admits Pod CREATE only, not TrafficSplit CREATE" in response["status"]["message"]


async def test_a_body_over_the_limit_gets_allowed_false(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    huge = io.BytesIO(b" " * (server.MAX_BODY + 1))
    response = await post(cluster, injector.port, "/mutate-pod-creation", huge)
    assert response["allowed"] is False
    assert "larger than" in response["status"]["message"]


async def test_health_and_metrics_on_plain_http(
    cluster: Cluster, injector: server.WebhookServer
) -> None:
    await inject(cluster, injector, request(pod()))
    await post(cluster, injector.port, "/mutate-pod-creation", b"")
    base = f"http://{wellknown.LOCALHOST}:{injector.health_port}"
    async with aiohttp.ClientSession() as session:
        for path in ("/health/ready", "/health/alive"):
            async with session.get(base + path) as answer:
                assert answer.status == 200, path
        async with session.get(base + "/metrics") as answer:
            metrics = await answer.text()
    assert 'osm_admission_webhook_response_total{kind="Pod",success="true"} 1.0' in metrics
    assert 'osm_admission_webhook_response_total{kind="unknown",success="false"} 1.0' in metrics
    injector.set_ready(False)
    async with aiohttp.ClientSession() as session, session.get(base + "/health/ready") as answer:
        assert answer.status == 503


BAD_SPLIT = {
    "apiVersion": "split.smi-spec.io/v1alpha2",
    "kind": "TrafficSplit",
    "metadata": {"name": "web-canary", "namespace": "bookstore"},
    "spec": {"backends": [{"service": "web-v1", "weight": -1}]},
}
GOOD_SPLIT = {
    **BAD_SPLIT,
    "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": 1}]},
}


async def test_the_validator_denies_a_bad_split_with_field_paths(cluster: Cluster) -> None:
    webhook = await run.start_validator(cluster.ca, host=wellknown.LOCALHOST, port=0)
    try:
        bad = await post(
            cluster,
            webhook.port,
            validator.PATH,
            json.dumps(request(BAD_SPLIT)).encode(),
            VALIDATOR_NAME,
        )
        good = await post(
            cluster,
            webhook.port,
            validator.PATH,
            json.dumps(request(GOOD_SPLIT)).encode(),
            VALIDATOR_NAME,
        )
    finally:
        await webhook.stop()
    assert bad["allowed"] is False
    assert "spec.service" in bad["status"]["message"]
    assert "spec.backends[0].weight" in bad["status"]["message"]
    assert good["allowed"] is True


async def peer_certificate(cluster: Cluster, port: int) -> x509.Certificate:
    """The certificate a new TLS handshake gets (verified against the mesh root)."""
    _, writer = await asyncio.open_connection(
        wellknown.LOCALHOST, port, ssl=cluster.root, server_hostname=INJECTOR_NAME
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


async def test_a_short_lived_certificate_is_replaced_without_a_restart(cluster: Cluster) -> None:
    webhook = server.WebhookServer(
        {},
        cluster.ca,
        builtin.utc_now,
        server.ServerSettings(
            service="osm-injector",
            host=wellknown.LOCALHOST,
            port=0,
            health_port=None,
            certificate_validity=timedelta(seconds=4),
        ),
    )
    await webhook.start()
    try:
        first = await peer_certificate(cluster, webhook.port)
        names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [
            INJECTOR_NAME,
            f"{INJECTOR_NAME}.cluster.local",
        ]
        for _ in range(60):
            await asyncio.sleep(0.1)
            second = await peer_certificate(cluster, webhook.port)
            if second.serial_number != first.serial_number:
                break
        assert second.serial_number != first.serial_number, "not renewed within 6 s"
        assert second.not_valid_after_utc > first.not_valid_after_utc
    finally:
        await webhook.stop()


async def test_two_processes_starting_at_once_share_one_root(
    cluster: Cluster, tmp_path: Path
) -> None:
    name = "osm-ca-bundle-race"
    cas = await asyncio.gather(
        *(
            ca_secret.load_or_create(
                cluster.client,
                wellknown.CONTROL_PLANE_NAMESPACE,
                name,
                tmp_path / f"ca-{n}",
                builtin.utc_now(),
            )
            for n in range(2)
        )
    )
    assert cas[0].trust_bundle().pem == cas[1].trust_bundle().pem
    stored = await cluster.client.get("Secret", wellknown.CONTROL_PLANE_NAMESPACE, name)
    cert_pem, _ = ca_secret.root_of(stored)
    assert cert_pem == cas[0].trust_bundle().pem
    again = await ca_secret.load_or_create(
        cluster.client,
        wellknown.CONTROL_PLANE_NAMESPACE,
        name,
        tmp_path / "ca-2",
        builtin.utc_now(),
    )
    assert again.signing_root_fingerprint() == cas[0].signing_root_fingerprint()


class ReadsTooEarly(KubeClient):
    """A client whose first read of the Secret comes before the other process's create:
    the 409 AlreadyExists path, deterministically."""

    def __init__(self, client: KubeClient) -> None:
        super().__init__(client._client)
        self.reads = 0
        self.conflicts = 0

    async def get(self, kind: str, namespace: str | None, name: str, **kw: Any) -> Any:
        self.reads += 1
        if self.reads == 1:
            raise ApiError(404, "NotFound", f'secrets "{name}" not found')
        return await super().get(kind, namespace, name, **kw)

    async def create(self, obj: Any, *, dry_run: bool = False) -> Any:
        try:
            return await super().create(obj, dry_run=dry_run)
        except ApiError as error:
            self.conflicts += error.code == 409
            raise


async def test_the_loser_of_the_first_start_race_takes_the_winners_root(
    cluster: Cluster, tmp_path: Path
) -> None:
    late = ReadsTooEarly(cluster.client)
    ca = await ca_secret.load_or_create(
        late,
        wellknown.CONTROL_PLANE_NAMESPACE,
        ca_secret.SECRET_NAME,
        tmp_path / "late",
        builtin.utc_now(),
    )
    assert late.conflicts == 1
    assert ca.trust_bundle().pem == cluster.ca.trust_bundle().pem


def webhook_entry(name: str, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {
            "service": {"name": "osm-injector", "namespace": "osm-system", "path": path},
        },
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
            }
        ],
        "failurePolicy": "Fail",
        "sideEffects": "NoneOnDryRun",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchLabels": {wellknown.MONITORED_BY_LABEL: "osm"}},
    }


async def test_the_ca_bundle_is_set_on_every_webhook_and_nothing_else_changes(
    cluster: Cluster,
) -> None:
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "osm-webhook-osm", "labels": {"app": "osm-injector"}},
        "webhooks": [
            webhook_entry("osm-inject.k8s.io", "/mutate-pod-creation"),
            webhook_entry("other.k8s.io", "/other"),
        ],
    }
    await cluster.client.create(configuration)
    bundle = cluster.ca.trust_bundle().pem
    kind = "MutatingWebhookConfiguration"
    assert await cabundle.keep_ca_bundle(cluster.client, kind, "osm-webhook-osm", bundle)
    stored = await cluster.client.get(kind, None, "osm-webhook-osm")
    for webhook in stored["webhooks"]:
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == bundle
    without = copy.deepcopy(stored)
    for webhook in without["webhooks"]:
        del webhook["clientConfig"]["caBundle"]
    assert without["webhooks"] == configuration["webhooks"]
    assert without["metadata"]["labels"] == configuration["metadata"]["labels"]
    # Current already: nothing is written.
    assert not await cabundle.keep_ca_bundle(cluster.client, kind, "osm-webhook-osm", bundle)
