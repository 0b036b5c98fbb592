"""A pod's bootstrap Secret, ``envoy-bootstrap-config-<proxy-uuid>``, for either data plane.

One idea: the Secret is everything a sidecar knows before its first xDS response, mounted
read-only at ``/etc/envoy``. For Envoy it holds ``bootstrap.yaml`` (`envoy_bootstrap`,
certificate inline, as OSM v1.2); for the Python sidecar ``bootstrap.json`` in the format
`osm.proxy.bootstrap` reads, which names the certificate files beside it. Both carry the
bootstrap certificate, its key and the CA bundle as files under OSM's names, so either
sidecar (and a person debugging it) finds them in the same place.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from osm.base import wellknown
from osm.base.identity import DataPlane, NodeId
from osm.injector import envoy_bootstrap
from osm.injector.probes import HealthProbes
from osm.injector.values import BootstrapCertificate, XdsServer
from osm.model.config import SidecarSettings

ENVOY_BOOTSTRAP_FILE = "bootstrap.yaml"
PYTHON_BOOTSTRAP_FILE = "bootstrap.json"
CA_FILE = "ca_cert.pem"
CERT_FILE = "sds_cert.pem"
KEY_FILE = "sds_key.pem"


def secret_name(proxy_uuid: uuid.UUID) -> str:
    return f"{wellknown.BOOTSTRAP_SECRET_PREFIX}{proxy_uuid}"


def bootstrap_path(data_plane: DataPlane) -> str:
    """Where the sidecar's container finds its bootstrap file."""
    name = ENVOY_BOOTSTRAP_FILE if data_plane is DataPlane.ENVOY else PYTHON_BOOTSTRAP_FILE
    return f"{wellknown.BOOTSTRAP_MOUNT_PATH}/{name}"


def bootstrap_files(
    data_plane: DataPlane,
    *,
    node: NodeId,
    xds: XdsServer,
    certificate: BootstrapCertificate,
    sidecar: SidecarSettings,
    probes: HealthProbes,
) -> dict[str, bytes]:
    """The Secret's files: the data plane's bootstrap and the certificate files."""
    files = {
        CA_FILE: certificate.ca_pem,
        CERT_FILE: certificate.cert_pem,
        KEY_FILE: certificate.key_pem,
    }
    if data_plane is DataPlane.ENVOY:
        proto = envoy_bootstrap.build(
            node=node, xds=xds, certificate=certificate, sidecar=sidecar, probes=probes
        )
        files[ENVOY_BOOTSTRAP_FILE] = envoy_bootstrap.to_yaml(proto).encode()
    else:
        document = python_bootstrap(node, xds, probes)
        files[PYTHON_BOOTSTRAP_FILE] = (json.dumps(document, indent=2) + "\n").encode()
    return dict(sorted(files.items()))


def python_bootstrap(node: NodeId, xds: XdsServer, probes: HealthProbes) -> dict[str, Any]:
    """The Python sidecar's bootstrap document (`osm.proxy.bootstrap`'s format); its TLS
    files are named relative to the bootstrap, so they are read from the same mount.
    The probes it forwards (`HealthProbes.forwarded`, what Envoy's bootstrap has listeners
    for) are in ``health_probes``, when there are any."""
    document: dict[str, Any] = {
        # Envoy's node cluster is its --service-cluster, ``<sa>.<ns>`` as OSM's injector
        # passes it (`patch`); the same here, so both planes name themselves alike (the xDS
        # node, and the serviceName of their spans).
        "node": {
            "id": str(node),
            "cluster": f"{node.identity.service_account}.{node.identity.namespace}",
        },
        "xds": {
            "address": xds.address,
            "tls": {
                "cert": CERT_FILE,
                "key": KEY_FILE,
                "ca": CA_FILE,
                "server_name": xds.server_name,
            },
        },
        "admin": {"address": wellknown.LOCALHOST, "port": wellknown.PROXY_ADMIN_PORT},
    }
    forwarded = probes.forwarded()
    if forwarded:
        document["health_probes"] = [
            {
                "kind": probe.kind.short,
                "scheme": "HTTPS" if probe.https else "HTTP",
                "port": probe.port,
                "path": probe.path,
                "timeout_seconds": probe.timeout_seconds,
            }
            for probe in forwarded
        ]
    return document


def bootstrap_secret(
    *, proxy_uuid: uuid.UUID, namespace: str, mesh_name: str, files: Mapping[str, bytes]
) -> dict[str, Any]:
    """The Secret (a Kubernetes dict, ``data`` base64 as the API serves it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(proxy_uuid),
            "namespace": namespace,
            "labels": {
                wellknown.APP_NAME_LABEL: wellknown.APP_NAME,
                wellknown.APP_INSTANCE_LABEL: mesh_name,
            },
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode("ascii") for key, value in files.items()},
    }
