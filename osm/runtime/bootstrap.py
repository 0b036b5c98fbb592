"""A Python sidecar's bootstrap for a sidecar run outside a pod (tests, benchmarks, by hand).

One idea: the document and its certificate files are exactly what the injector puts in a
pod's bootstrap Secret (`osm.injector.secret`, which owns the layout); this module issues
the bootstrap certificate from the mesh CA, writes those files to a directory, and lets the
caller move the admin interface and listeners off OSM's fixed ports (several sidecars on
one host's loopback). Pods never use it: the local kubelet mounts their Secret.
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
from osm.injector import secret
from osm.injector.probes import HealthProbes
from osm.injector.values import XdsServer
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
    identity's SPIFFE ID, by which the xDS server authenticates it) and write the files of a
    Python sidecar's bootstrap Secret (`osm.injector.secret`: the certificate, key and CA
    bundle, and ``bootstrap.json``, all mode 0600) to `directory` (created 0700), with the
    admin interface at `admin` and `listeners` moved as given. The node id is
    ``<proxy_id>.sidecar.<sa>.<ns>``.
    """
    node = NodeId.of(proxy_id, identity)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    issued = issuer.issue(
        LeafRequest.bootstrap(identity, proxy_uuid or uuid.uuid4(), trust_domain=trust_domain),
        now,
    )
    host, _, port = xds_address.rpartition(":")
    xds = XdsServer(host.strip("[]"), server_name or "", int(port))
    document = secret.python_bootstrap(node, xds, HealthProbes())
    if not server_name:
        del document["xds"]["tls"]["server_name"]
    document["node"]["metadata"] = dict(metadata or {})
    document["admin"] = {"address": admin[0], "port": admin[1]}
    if access_log is not None:
        document["access_log"] = str(access_log)
    if listeners:
        document["listeners"] = {name: f"{h}:{p}" for name, (h, p) in listeners.items()}
    files = {
        secret.CERT_FILE: issued.cert_pem,
        secret.KEY_FILE: issued.key_pem,
        secret.CA_FILE: issued.trust_bundle_pem,
        secret.PYTHON_BOOTSTRAP_FILE: (json.dumps(document, indent=2) + "\n").encode(),
    }
    for name, data in files.items():
        descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    path = directory / secret.PYTHON_BOOTSTRAP_FILE
    bootstrap.parse(document, str(path), directory)  # what we write must read back
    return Written(path, str(node), issued.serial, issued.not_after)
