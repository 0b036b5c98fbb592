"""Writing a Python sidecar's bootstrap: its certificate files and `osm.proxy.bootstrap`'s format.

One idea: whoever injects a sidecar writes its bootstrap, issuing the pod's bootstrap
certificate from the mesh CA; the sidecar only reads it (`osm.proxy.bootstrap`, which owns
the format and checks what is written here reads back). The local runtime writes one per
pod; the files are what a Kubernetes bootstrap Secret would hold.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from osm.base.identity import TRUST_DOMAIN, Identity, NodeId
from osm.ca.issuer import Issuer, LeafRequest
from osm.proxy import bootstrap


@dataclass(frozen=True, slots=True)
class Written:
    """What `write` produced: the bootstrap path and the certificate it issued."""

    path: Path
    node_id: str
    serial: int
    not_after: datetime


def write(
    directory: Path,
    *,
    proxy_id: str,
    identity: Identity,
    xds_address: str,
    issuer: Issuer,
    now: datetime,
    trust_domain: str = TRUST_DOMAIN,
    proxy_uuid: uuid.UUID | None = None,
    admin: tuple[str, int] = (bootstrap.DEFAULT_ADMIN_HOST, bootstrap.DEFAULT_ADMIN_PORT),
    server_name: str | None = None,
    listeners: Mapping[str, tuple[str, int]] | None = None,
    access_log: Path | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Written:
    """Issue the proxy's bootstrap certificate (`LeafRequest.bootstrap`: its URI SAN is the
    identity's SPIFFE ID, by which the xDS server authenticates it) and write
    ``cert.pem``, ``key.pem`` (mode 0600), ``ca.pem`` and ``bootstrap.json`` (JSON, which
    the sidecar reads without PyYAML) to `directory` (created 0700). The node id is
    ``<proxy_id>.sidecar.<sa>.<ns>``.
    """
    node = NodeId.of(proxy_id, identity)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    issued = issuer.issue(
        LeafRequest.bootstrap(identity, proxy_uuid or uuid.uuid4(), trust_domain=trust_domain),
        now,
    )
    (directory / "cert.pem").write_bytes(issued.cert_pem)
    key_path = directory / "key.pem"
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(issued.key_pem)
    (directory / "ca.pem").write_bytes(issued.trust_bundle_pem)
    tls: dict[str, Any] = {"cert": "cert.pem", "key": "key.pem", "ca": "ca.pem"}
    if server_name:
        tls["server_name"] = server_name
    document: dict[str, Any] = {
        "node": {
            "id": str(node),
            "cluster": identity.service_account,
            "metadata": dict(metadata or {}),
        },
        "xds": {"address": xds_address, "tls": tls},
        "admin": {"address": admin[0], "port": admin[1]},
    }
    if access_log is not None:
        document["access_log"] = str(access_log)
    if listeners:
        document["listeners"] = {name: f"{h}:{p}" for name, (h, p) in listeners.items()}
    path = directory / "bootstrap.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    bootstrap.parse(document, str(path), directory)  # what we write must read back
    return Written(path, str(node), issued.serial, issued.not_after)
