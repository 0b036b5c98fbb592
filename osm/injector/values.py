"""The injector's inputs that are not Kubernetes objects, and its one error type.

One idea: everything an injector would otherwise fetch or make up (the xDS server's
address, the bootstrap certificate) is a frozen value handed in, and every refusal is an
`InjectionError` that names the object and the field path a user must fix, as the API
server's own validation does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from osm.base import address, wellknown


class InjectionError(ValueError):
    """A pod that cannot be injected (fail closed: the pod is refused).

    `object_ref` is ``Pod ns/name`` (or the Namespace, or ``MeshConfig``), `path` a
    kubectl-style field path such as ``spec.containers[0].ports[1].containerPort``.
    """

    def __init__(self, object_ref: str, path: str, message: str) -> None:
        self.object_ref = object_ref
        self.path = path
        self.message = message
        super().__init__(": ".join(part for part in (object_ref, path, message) if part))


@dataclass(frozen=True, slots=True)
class XdsServer:
    """Where a sidecar finds the controller's ADS server: `host` (an IP address or a DNS
    name) and `port`; `server_name` is the name its serving certificate carries (sent as
    SNI and matched against the certificate's SANs)."""

    host: str
    server_name: str
    port: int = wellknown.XDS_PORT

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets)."""
        return address.join_host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class BootstrapCertificate:
    """The proxy's bootstrap client certificate (issued for its identity, CN
    ``<uuid>.sidecar.<sa>.<ns>.<trust-domain>``), its key and the CA bundle, as PEM."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes


# -- reading Kubernetes dicts ---------------------------------------------------------------
def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def string_map(obj: Mapping[str, Any], key: str) -> dict[str, str]:
    """``metadata.<key>`` (labels or annotations) of a Kubernetes object; {} if absent."""
    value = metadata(obj).get(key)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def object_ref(obj: Mapping[str, Any], kind: str, namespace: str = "") -> str:
    """``Pod ns/name`` for messages; a pod not yet named shows its ``generateName``."""
    meta = metadata(obj)
    name = str(meta.get("name") or meta.get("generateName") or "")
    namespace = namespace or str(meta.get("namespace") or "")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def annotation_path(key: str) -> str:
    """The field path of an annotation: ``metadata.annotations["osm-py.io/sidecar"]``."""
    return f"metadata.annotations[{json.dumps(key)}]"


def label_path(key: str) -> str:
    return f"metadata.labels[{json.dumps(key)}]"
