"""Admission in the local API: each Pod created is stored as the injector made it, with its
bootstrap Secret first; a Pod that cannot be injected is refused (by `PodAdmission` with
every problem of its batch; by the API server, which admits one object per request, with a
422 Status whose causes name the fields) and nothing is stored; a Pod replaced keeps what
the injector added; a Pod deleted takes its Secret along."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from osm.apiserver import server as apiserver
from osm.base import wellknown
from osm.base.identity import Identity
from osm.ca import builtin
from osm.controller import admission, install
from osm.injector import admission as rules
from osm.injector import secret as injector_secret
from osm.model import config, kinds
from osm.store import api as store_api
from osm.store.memory import MemoryStore
from osm.webhook import certificates
from tests.unit.ca import catesting
from tests.unit.injector.injector_support import container, namespace, pod

UUIDS = [uuid.UUID(f"00000000-0000-4000-8000-{n:012d}") for n in range(1, 100)]
FIRST = UUIDS[0]
SECRET = f"envoy-bootstrap-config-{FIRST}"
UUID_LABEL = f'metadata.labels["{wellknown.PROXY_UUID_LABEL}"]'


def _annotation(key: str) -> str:
    return f'metadata.annotations["{key}"]'


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> builtin.BuiltinCA:
    return builtin.BuiltinCA.open(tmp_path_factory.mktemp("ca") / "ca", builtin.utc_now())


def _admission(ca: builtin.BuiltinCA, **settings: Any) -> admission.PodAdmission:
    numbers: Iterator[uuid.UUID] = iter(UUIDS)
    return admission.PodAdmission(
        rules.AdmissionSettings(**settings),
        certificates.issuing(ca, builtin.utc_now),
        new_uuid=lambda: next(numbers),
    )


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore()
    yield memory
    await memory.close()


async def _admit(
    store: MemoryStore, ca: builtin.BuiltinCA, *objects: dict[str, Any], **settings: Any
) -> admission.Admitted:
    return await _admission(ca, **settings).admit(store, list(objects))


USER_HEADER = "X-Test-User"


@contextlib.asynccontextmanager
async def _api(ca: builtin.BuiltinCA) -> AsyncIterator[tuple[TestClient[Any, Any], MemoryStore]]:
    """The API server with the controller's admission (plain HTTP, a test header for the
    client certificate)."""
    store = MemoryStore()
    app = apiserver.ApiServer(
        store,
        lambda request: request.headers.get(USER_HEADER),
        admission.ServerAdmission(_admission(ca)),
    ).make_app()
    try:
        async with TestClient(TestServer(app), headers={USER_HEADER: "admin"}) as client:
            yield client, store
    finally:
        await store.close()


def _kinds(admitted: admission.Admitted) -> list[str]:
    return [f"{r.kind} {r.namespace}/{r.name}" for r in admitted.resources]


def _problems(admitted: admission.Admitted) -> list[tuple[str, str, str]]:
    return [(p.object_ref, p.path, p.message) for p in admitted.errors]


def _containers(obj: dict[str, Any], key: str = "containers") -> list[str]:
    return [c["name"] for c in obj["spec"].get(key, [])]


# -- who is injected --------------------------------------------------------------------------
INJECTED = [
    pytest.param(namespace(), {}, {}, "envoy", id="monitored namespace with injection enabled"),
    pytest.param(
        namespace(injection=None),
        {wellknown.SIDECAR_INJECTION_ANNOTATION: "enabled"},
        {},
        "envoy",
        id="the pod enables it, its namespace says nothing",
    ),
    pytest.param(
        namespace(annotations={wellknown.DATA_PLANE_ANNOTATION: "python"}),
        {},
        {},
        "osm-sidecar",
        id="the namespace asks for the Python sidecar",
    ),
    pytest.param(
        namespace(),
        {wellknown.DATA_PLANE_ANNOTATION: "python"},
        {},
        "osm-sidecar",
        id="the pod asks for the Python sidecar",
    ),
    pytest.param(
        namespace(),
        {wellknown.SIDECAR_INJECTION_ANNOTATION: "disabled"},
        {},
        None,
        id="the pod disables it",
    ),
    pytest.param(namespace(injection=None), {}, {}, None, id="nobody asks for injection"),
    pytest.param(namespace(monitored=None), {}, {}, None, id="namespace not monitored"),
    pytest.param(namespace(monitored="other"), {}, {}, None, id="monitored by another mesh"),
    pytest.param(
        namespace(labels={wellknown.IGNORE_LABEL: "true"}), {}, {}, None, id="ignored namespace"
    ),
    pytest.param(namespace(), {}, {"hostNetwork": True}, None, id="host network pod"),
    pytest.param(
        namespace("osm-system"), {}, {}, None, id="the control plane's namespace is never"
    ),
    pytest.param(namespace("kube-system"), {}, {}, None, id="kube-system is never"),
]


@pytest.mark.parametrize(("the_namespace", "annotations", "spec", "sidecar"), INJECTED)
async def test_a_pod_created_is_injected_when_osm_would(
    store: MemoryStore,
    ca: builtin.BuiltinCA,
    the_namespace: dict[str, Any],
    annotations: dict[str, str],
    spec: dict[str, Any],
    sidecar: str | None,
) -> None:
    ns = the_namespace["metadata"]["name"]
    await store.apply([the_namespace])
    admitted = await _admit(store, ca, pod(ns=ns, annotations=annotations, **spec))
    assert admitted.errors == []
    stored = [r.to_dict() for r in admitted.resources]
    if sidecar is None:
        assert _kinds(admitted) == [f"Pod {ns}/bookstore-v1"]
        assert _containers(stored[0]) == ["bookstore"]
        assert wellknown.PROXY_UUID_LABEL not in stored[0]["metadata"].get("labels", {})
        assert admitted.added == frozenset()
        return
    assert _kinds(admitted) == [f"Secret {ns}/{SECRET}", f"Pod {ns}/bookstore-v1"]
    secret, injected = stored
    assert secret["metadata"]["labels"] == {
        wellknown.APP_NAME_LABEL: wellknown.APP_NAME,
        wellknown.APP_INSTANCE_LABEL: rules.DEFAULT_MESH_NAME,
    }
    assert _containers(injected) == ["bookstore", sidecar]
    assert _containers(injected, "initContainers") == ["osm-init"]
    assert injected["metadata"]["labels"][wellknown.PROXY_UUID_LABEL] == str(FIRST)
    assert admitted.added == {store_api.ObjectKey("Secret", ns, SECRET)}


async def test_the_secret_is_named_after_the_uuid_of_the_label_and_mounted(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    await store.apply([namespace()])
    admitted = await _admit(store, ca, pod())
    secret, injected = (r.to_dict() for r in admitted.resources)
    label = injected["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
    assert secret["metadata"]["name"] == f"{wellknown.BOOTSTRAP_SECRET_PREFIX}{label}"
    assert {"name": wellknown.BOOTSTRAP_VOLUME_NAME, "secret": {"secretName": SECRET}} in (
        injected["spec"]["volumes"]
    )
    assert rules.bootstrap_secret_of(injected) == SECRET


async def test_the_bootstrap_certificate_names_the_pods_identity_and_proxy(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    await store.apply([namespace()])
    admitted = await _admit(store, ca, pod(serviceAccountName="bookstore-v1"))
    files = {
        name: base64.b64decode(data)
        for name, data in admitted.resources[0].manifest["data"].items()
    }
    cert = x509.load_pem_x509_certificate(files[injector_secret.CERT_FILE])
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    spiffe = Identity("bookstore", "bookstore-v1").spiffe_id()
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe]
    with warnings.catch_warnings():  # OSM's CN is longer than X.520's 64 characters
        warnings.simplefilter("ignore", UserWarning)
        common_name = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert common_name == f"{FIRST}.sidecar.bookstore-v1.bookstore.cluster.local"
    assert files[injector_secret.CA_FILE] == ca.trust_bundle().pem
    assert catesting.verifies(
        files[injector_secret.CERT_FILE], files[injector_secret.CA_FILE], builtin.utc_now()
    )


async def test_the_sidecar_reaches_the_controllers_service_name_and_the_host_is_a_setting(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    await store.apply([namespace()])
    annotations = {wellknown.DATA_PLANE_ANNOTATION: "python"}
    default = await _admit(store, ca, pod(annotations=annotations))
    moved = await _admit(store, ca, pod(annotations=annotations), xds_host="10.233.0.1")

    def xds_address(admitted: admission.Admitted) -> str:
        data = admitted.resources[0].manifest["data"][injector_secret.PYTHON_BOOTSTRAP_FILE]
        return str(json.loads(base64.b64decode(data))["xds"]["address"])

    assert rules.CONTROLLER_HOST == "osm-controller.osm-system.svc.cluster.local"
    assert xds_address(default) == f"{rules.CONTROLLER_HOST}:{wellknown.XDS_PORT}"
    assert xds_address(moved) == f"10.233.0.1:{wellknown.XDS_PORT}"


async def test_the_mesh_name_is_a_setting(store: MemoryStore, ca: builtin.BuiltinCA) -> None:
    await store.apply([namespace(monitored="blue")])
    assert len((await _admit(store, ca, pod())).resources) == 1
    assert len((await _admit(store, ca, pod(), mesh_name="blue")).resources) == 2


async def test_the_stored_mesh_config_is_used_and_one_in_the_batch_wins(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    privileged = config.default_manifest()
    privileged["spec"]["sidecar"]["enablePrivilegedInitContainer"] = True
    await store.apply([namespace(), *install.control_plane_objects()])

    def init_privileged(admitted: admission.Admitted) -> bool:
        (init,) = admitted.resources[-1].manifest["spec"]["initContainers"]
        return bool(init["securityContext"]["privileged"])

    assert not init_privileged(await _admit(store, ca, pod()))
    assert init_privileged(await _admit(store, ca, privileged, pod()))
    await store.apply([privileged])
    assert init_privileged(await _admit(store, ca, pod()))


async def test_a_namespace_in_the_same_batch_is_the_one_read(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    await store.apply([namespace(injection=None)])
    admitted = await _admit(store, ca, namespace(), pod())
    assert _kinds(admitted) == [
        "Namespace /bookstore",
        f"Secret bookstore/{SECRET}",
        "Pod bookstore/bookstore-v1",
    ]


async def test_a_pod_of_a_missing_namespace_is_left_to_the_apis_namespace_check(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    admitted = await _admit(store, ca, pod())
    assert (_kinds(admitted), admitted.errors) == (["Pod bookstore/bookstore-v1"], [])


# -- refused at creation --------------------------------------------------------------------
POD = "Pod bookstore/bookstore-v1"
OUT_PORTS = wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION
BAD_INPUT = [
    pytest.param(
        pod(annotations={OUT_PORTS: "6379,redis"}),
        namespace(),
        (
            POD,
            _annotation(OUT_PORTS),
            '"redis" is not a port number (1-65535); expected a comma-separated list such '
            'as "8080,8443"',
        ),
        id="malformed exclusion annotation",
    ),
    pytest.param(
        pod(annotations={wellknown.DATA_PLANE_ANNOTATION: "linkerd"}),
        namespace(),
        (
            POD,
            _annotation(wellknown.DATA_PLANE_ANNOTATION),
            'unknown sidecar "linkerd"; valid values: envoy, python',
        ),
        id="unknown sidecar kind on the pod",
    ),
    pytest.param(
        pod(),
        namespace(annotations={wellknown.DATA_PLANE_ANNOTATION: "linkerd"}),
        (
            "Namespace bookstore",
            _annotation(wellknown.DATA_PLANE_ANNOTATION),
            'unknown sidecar "linkerd"; valid values: envoy, python; so Pod '
            "bookstore/bookstore-v1 cannot be injected and is refused",
        ),
        id="unknown sidecar kind on the namespace",
    ),
    pytest.param(
        pod(containers=[container("bookstore"), container("metrics", port=15001)]),
        namespace(),
        (
            POD,
            "spec.containers[1].ports[0].containerPort",
            "port 15001 is the sidecar's outbound listener port; the sidecar uses 15000, "
            "15001, 15003, 15010, 15901, 15902, 15903, 15904, so an app must listen on another",
        ),
        id="port clash with the sidecar",
    ),
    pytest.param(
        pod(annotations={wellknown.SIDECAR_INJECTION_ANNOTATION: "maybe"}),
        namespace(),
        (
            POD,
            _annotation(wellknown.SIDECAR_INJECTION_ANNOTATION),
            '"maybe" is not a valid value; expected one of enabled, yes, true, disabled, no, false',
        ),
        id="injection annotation neither on nor off",
    ),
    pytest.param(
        pod(containers=[container("bookstore"), container("envoy", port=9901)]),
        namespace(),
        (
            POD,
            "spec.containers[1].name",
            '"envoy" is the name of what the injector adds (is the pod injected already?); '
            "rename it",
        ),
        id="a container named as the sidecar",
    ),
]


@pytest.mark.parametrize(("the_pod", "the_namespace", "expected"), BAD_INPUT)
async def test_a_pod_that_cannot_be_injected_is_refused_with_the_object_and_field(
    store: MemoryStore,
    ca: builtin.BuiltinCA,
    the_pod: dict[str, Any],
    the_namespace: dict[str, Any],
    expected: tuple[str, str, str],
) -> None:
    await store.apply([the_namespace])
    admitted = await _admit(store, ca, the_pod)
    assert _problems(admitted) == [expected]
    assert [p.document for p in admitted.errors] == [0]
    assert admitted.resources == [] and admitted.added == frozenset()


@pytest.mark.parametrize(("the_pod", "the_namespace", "expected"), BAD_INPUT)
async def test_the_api_refuses_the_pod_stores_nothing_and_the_status_names_the_field(
    ca: builtin.BuiltinCA,
    the_pod: dict[str, Any],
    the_namespace: dict[str, Any],
    expected: tuple[str, str, str],
) -> None:
    async with _api(ca) as (client, store):
        assert (await client.post("/api/v1/namespaces", json=the_namespace)).status == 201
        rv = store.resource_version
        response = await client.post("/api/v1/namespaces/bookstore/pods", json=the_pod)
        body = await response.json()
        assert store.resource_version == rv, "nothing stored"
        assert (await store.list("Secret"))[0] == []
    assert (response.status, body["kind"], body["reason"]) == (422, "Status", "Invalid")
    assert (body["details"]["kind"], body["details"]["name"]) == ("Pod", "bookstore-v1")
    at_fault, path, message = expected
    assert [(c["field"], c["message"]) for c in body["details"]["causes"]] == [(path, message)]
    if not at_fault.startswith("Pod "):
        assert at_fault in body["message"], "the Status names the object at fault"


async def test_every_refusal_of_a_batch_is_reported_at_once(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    await store.apply([namespace()])
    bad_port = pod("bookstore-v2", containers=[container("bookstore", port=15003)])
    bad_model = pod("bookstore-v3") | {"spec": {"containers": "no"}}
    admitted = await _admit(store, ca, pod(annotations={OUT_PORTS: "x"}), bad_port, bad_model)
    assert [(p.name, p.path) for p in admitted.errors] == [
        ("bookstore-v3", "spec.containers"),
        ("bookstore-v1", _annotation(OUT_PORTS)),
        ("bookstore-v2", "spec.containers[0].ports[0].containerPort"),
    ]


# -- updates ----------------------------------------------------------------------------------
def _injected() -> dict[str, Any]:
    """A pod as the injector stored it (Envoy), with a status."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "bookstore-v1",
            "namespace": "bookstore",
            "labels": {"app": "bookstore", wellknown.PROXY_UUID_LABEL: str(FIRST)},
            "annotations": {"a": "b"},
        },
        "spec": {
            "serviceAccountName": "bookstore",
            "containers": [container("bookstore"), container("envoy", port=15003)],
            "initContainers": [{"name": "osm-init", "image": "openservicemesh/init:v1.2.4"}],
            "volumes": [
                {"name": wellknown.BOOTSTRAP_VOLUME_NAME, "secret": {"secretName": SECRET}}
            ],
        },
        "status": {"phase": "Pending"},
    }


def _change(path: str | tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The injected pod with `path` (dotted, list indexes as numbers, or the parts) set
    to `value`, or removed for `...`."""
    obj = _injected()
    parts = (
        [int(p) if p.isdigit() else p for p in path.split(".")] if isinstance(path, str) else path
    )
    *parents, last = parts
    target: Any = obj
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return obj


IMMUTABLE = rules.SPEC_IMMUTABLE
UPDATES = [
    pytest.param(_change("status", {"phase": "Running", "podIP": "10.1.0.5"}), [], id="status"),
    pytest.param(_change("metadata.labels.version", "v2"), [], id="a label added"),
    pytest.param(_change("metadata.annotations", {}), [], id="annotations removed"),
    pytest.param(_change("metadata.resourceVersion", "7"), [], id="a resourceVersion"),
    pytest.param(
        _change("spec.containers.0.image", "bookstore:v2"), [], id="an app container's image"
    ),
    pytest.param(_change("spec.activeDeadlineSeconds", 30), [], id="activeDeadlineSeconds"),
    pytest.param(
        _change(("metadata", "labels", wellknown.PROXY_UUID_LABEL), str(UUIDS[1])),
        [
            (
                UUID_LABEL,
                f'is the UUID of the proxy the injector added ("{FIRST}"); it cannot be changed '
                "or removed (delete the pod and create it again for a new proxy)",
            )
        ],
        id="the uuid label changed",
    ),
    pytest.param(
        _change(("metadata", "labels", wellknown.PROXY_UUID_LABEL), ...),
        [
            (
                UUID_LABEL,
                f'is the UUID of the proxy the injector added ("{FIRST}"); it cannot be changed '
                "or removed (delete the pod and create it again for a new proxy)",
            )
        ],
        id="the uuid label removed",
    ),
    pytest.param(
        _change(("metadata", "annotations", wellknown.DATA_PLANE_ANNOTATION), "python"),
        [
            (
                _annotation(wellknown.DATA_PLANE_ANNOTATION),
                "names the sidecar the injector added (envoy); it cannot change (delete the "
                "pod and create it again for another sidecar)",
            )
        ],
        id="the sidecar annotation added to an injected pod",
    ),
    pytest.param(
        _change("spec.containers.1.image", "envoyproxy/envoy:v1.99"),
        [("spec.containers[1]", '"envoy" was added by the sidecar injector; it cannot change')],
        id="the sidecar's image",
    ),
    pytest.param(
        _change("spec.containers.1.args", ["--log-level", "debug"]),
        [("spec.containers[1]", '"envoy" was added by the sidecar injector; it cannot change')],
        id="the sidecar's arguments",
    ),
    pytest.param(
        _change("spec.containers", [container("bookstore")]),
        [
            ("spec.containers", IMMUTABLE),
            (
                "spec.containers[1]",
                '"envoy" was added by the sidecar injector; it cannot be removed',
            ),
        ],
        id="the sidecar removed",
    ),
    pytest.param(
        _change("spec.initContainers", ...),
        [
            ("spec.initContainers", IMMUTABLE),
            (
                "spec.initContainers[0]",
                '"osm-init" was added by the sidecar injector; it cannot be removed',
            ),
        ],
        id="the init container removed",
    ),
    pytest.param(
        _change("spec.volumes.0.secret.secretName", "mine"),
        [
            (
                "spec.volumes[0]",
                '"envoy-bootstrap-config-volume" was added by the sidecar injector; it cannot '
                "change",
            )
        ],
        id="the bootstrap volume changed",
    ),
    pytest.param(
        _change("spec.serviceAccountName", "other"),
        [("spec.serviceAccountName", IMMUTABLE)],
        id="another spec field",
    ),
    pytest.param(
        _change("spec.containers.0.ports.0.containerPort", 8080),
        [("spec.containers[0].ports[0].containerPort", IMMUTABLE)],
        id="an app container's port",
    ),
    pytest.param(
        _change("spec.nodeSelector", {"kubernetes.io/os": "linux"}),
        [("spec.nodeSelector", IMMUTABLE)],
        id="a field added to the spec",
    ),
    pytest.param(_change("spec", ...), [("spec", IMMUTABLE)], id="no spec"),
]


@pytest.mark.parametrize(("updated", "expected"), UPDATES)
def test_an_update_keeps_the_spec_and_what_the_injector_added(
    updated: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    problems = rules.check_pod_update(_injected(), updated)
    assert [(p.path, p.message) for p in problems] == expected
    assert all(p.object_ref == POD for p in problems)


def test_a_pod_that_was_not_injected_cannot_claim_a_proxy_uuid() -> None:
    plain = pod()
    claimed = copy.deepcopy(plain)
    claimed["metadata"]["labels"] = {wellknown.PROXY_UUID_LABEL: str(FIRST)}
    (problem,) = rules.check_pod_update(plain, claimed)
    assert (problem.path, problem.message) == (
        UUID_LABEL,
        "is set by the sidecar injector when it creates a pod; it cannot be added to a pod "
        "that was not injected",
    )
    other = copy.deepcopy(plain)
    other["metadata"]["annotations"] = {wellknown.DATA_PLANE_ANNOTATION: "python"}
    assert rules.check_pod_update(plain, other) == []


async def test_an_update_is_not_injected_again(store: MemoryStore, ca: builtin.BuiltinCA) -> None:
    await store.apply([namespace(), _injected()])
    admitted = await _admit(store, ca, _change("status", {"phase": "Running"}))
    assert admitted.errors == []
    assert _kinds(admitted) == ["Pod bookstore/bookstore-v1"]
    assert admitted.resources[0].to_dict()["spec"] == _injected()["spec"]


async def test_an_update_that_drops_the_sidecar_is_refused_with_its_document(
    store: MemoryStore, ca: builtin.BuiltinCA
) -> None:
    await store.apply([namespace(), _injected()])
    admitted = await _admit(
        store, ca, namespace(), _change("spec.containers", [container("bookstore")])
    )
    assert [(p.path, p.document) for p in admitted.errors] == [
        ("spec.containers", 1),
        ("spec.containers[1]", 1),
    ]


# -- deletion ---------------------------------------------------------------------------------
POD_KEY = store_api.ObjectKey("Pod", "bookstore", "bookstore-v1")
SECRET_KEY = store_api.ObjectKey("Secret", "bookstore", SECRET)
BOOTSTRAP = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": SECRET, "namespace": "bookstore"},
}


def _without_volume() -> dict[str, Any]:
    obj = _injected()
    del obj["spec"]["volumes"]
    return obj


DELETIONS = [
    pytest.param([_injected(), BOOTSTRAP], [POD_KEY], [POD_KEY, SECRET_KEY], id="its secret"),
    pytest.param([_injected()], [POD_KEY], [POD_KEY], id="its secret is gone already"),
    pytest.param(
        [_injected(), BOOTSTRAP],
        [SECRET_KEY, POD_KEY],
        [SECRET_KEY, POD_KEY],
        id="the secret named too",
    ),
    pytest.param([pod(), BOOTSTRAP], [POD_KEY], [POD_KEY], id="a pod not injected"),
    pytest.param(
        [_without_volume(), BOOTSTRAP],
        [POD_KEY],
        [POD_KEY],
        id="a label that its spec does not mount",
    ),
    pytest.param([BOOTSTRAP], [SECRET_KEY], [SECRET_KEY], id="the secret alone"),
]


@pytest.mark.parametrize(("stored", "deleted", "expected"), DELETIONS)
async def test_deleting_a_pod_takes_its_bootstrap_secret_along(
    store: MemoryStore,
    stored: list[dict[str, Any]],
    deleted: list[store_api.ObjectKey],
    expected: list[store_api.ObjectKey],
) -> None:
    await store.apply([namespace(), *stored])
    assert await admission.with_bootstrap_secrets(store, deleted) == expected


# -- what osm install creates ----------------------------------------------------------------
async def test_the_control_plane_objects_are_created_once_and_never_overwritten(
    store: MemoryStore,
) -> None:
    for obj in install.control_plane_objects():
        resource, problems = kinds.parse(obj)
        assert resource is not None and problems == []
    assert [str(key) for key in await install.ensure(store)] == [
        "Namespace osm-system",
        "MeshConfig osm-system/osm-mesh-config",
    ]
    mine = config.default_manifest()
    mine["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] = False
    await store.apply([mine])
    rv = store.resource_version
    assert await install.ensure(store) == []
    assert store.resource_version == rv
    stored = await store.get(
        store_api.ObjectKey("MeshConfig", "osm-system", wellknown.MESH_CONFIG_NAME)
    )
    assert stored["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] is False


async def test_a_lost_default_mesh_config_is_created_again(store: MemoryStore) -> None:
    await install.ensure(store)
    await store.delete(
        [store_api.ObjectKey("MeshConfig", "osm-system", wellknown.MESH_CONFIG_NAME)]
    )
    assert [str(key) for key in await install.ensure(store)] == [
        "MeshConfig osm-system/osm-mesh-config"
    ]


def test_a_ca_that_cannot_issue_makes_admission_unavailable(tmp_path: Path) -> None:
    class Broken:
        def issue(self, request: Any, now: Any) -> Any:
            from osm.ca.errors import CAError

            raise CAError("the root expired")

    issue = certificates.issuing(Broken(), builtin.utc_now)  # type: ignore[arg-type]
    with pytest.raises(rules.AdmissionUnavailable, match="the root expired"):
        issue(Identity("bookstore", "bookstore"), FIRST)


async def test_deleting_a_namespace_deletes_its_pods_and_their_secrets_once(
    ca: builtin.BuiltinCA,
) -> None:
    async with _api(ca) as (client, store):
        assert (await client.post("/api/v1/namespaces", json=namespace())).status == 201
        response = await client.post("/api/v1/namespaces/bookstore/pods", json=pod())
        assert response.status == 201, await response.json()
        since = store.resource_version
        events = store.watch(since)
        response = await client.delete("/api/v1/namespaces/bookstore")
        body = await response.json()
        assert response.status == 200, body
        assert body["status"]["phase"] == "Terminating"
        seen: list[tuple[str, str, str]] = []
        async with asyncio.timeout(10):
            async for event in events:
                assert event.object is not None
                seen.append((event.type, event.object["kind"], event.object["metadata"]["name"]))
                if seen[-1] == ("DELETED", "Namespace", "bookstore"):
                    break
        assert (await store.list("Secret"))[0] == []
        assert (await store.list("Pod"))[0] == []
    assert seen[0] == ("MODIFIED", "Namespace", "bookstore"), "Terminating first"
    assert sorted(seen[1:]) == [
        ("DELETED", "Namespace", "bookstore"),
        ("DELETED", "Pod", "bookstore-v1"),
        ("DELETED", "Secret", SECRET),
    ]
