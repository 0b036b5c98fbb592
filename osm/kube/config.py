"""Kubeconfig files: writing local mode's, and finding the one a process should use.

One idea: a kubeconfig written here is self-contained (the CA, the client certificate and
its key embedded as ``*-data`` fields), so it can be copied anywhere and read by kubectl,
lightkube or any other client; it holds a private key, so it is 0600 from the moment it
exists and replaces any older file in one rename.

The search order is kubectl's, with local mode's file before the user's own: an explicit
``--kubeconfig``, then ``$KUBECONFIG``, then ``<state dir>/kubeconfig``, then
``~/.kube/config``. Unlike kubectl, a ``$KUBECONFIG`` list is not merged: its first existing
file is used whole.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from osm import paths
from osm.ca.store import write_atomic
from osm.kube.errors import KubeConfigError

IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
"""Set by the kubelet in every pod (with ``KUBERNETES_SERVICE_PORT``): a client there uses
its service account (`osm.kube.client.KubeClient.from_kubeconfig` with no path)."""
DEFAULT_CLUSTER = "osm-local"
DEFAULT_CONTEXT = "osm-local"


def kubeconfig_document(
    *,
    server: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    user: str,
    cluster: str = DEFAULT_CLUSTER,
    context: str = DEFAULT_CONTEXT,
) -> dict[str, Any]:
    """The kubeconfig as a document: one cluster, one user, one context, made current."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    user: str,
    cluster: str = DEFAULT_CLUSTER,
    context: str = DEFAULT_CONTEXT,
) -> Path:
    """Write a self-contained kubeconfig to `path` (mode 0600 from creation, replacing any
    file there in one rename; a missing parent directory is created 0700); return `path`.
    `user` names the kubeconfig's user entry (the identity is the certificate's CN)."""
    document = kubeconfig_document(
        server=server,
        ca_pem=ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        user=user,
        cluster=cluster,
        context=context,
    )
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text.encode(), 0o600)  # never wider than 0600, whatever the umask
    return path


def find_kubeconfig(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path | None:
    """The kubeconfig to use: `explicit` (a ``--kubeconfig`` flag; it must exist), else the
    first existing file of ``$KUBECONFIG`` (colon-separated), else local mode's
    ``paths.kubeconfig_path()``, else ``~/.kube/config``; None if there is none (then a
    client falls back to the in-cluster configuration)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise KubeConfigError(f"kubeconfig {explicit} (given explicitly) does not exist")
        return path
    env = os.environ if environ is None else environ
    candidates = [Path(part).expanduser() for part in env.get("KUBECONFIG", "").split(":") if part]
    candidates.append(paths.kubeconfig_path(paths.default_state_dir(env)))
    candidates.append((home if home is not None else Path.home()) / ".kube" / "config")
    return next((path for path in candidates if path.is_file()), None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def in_a_pod(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a pod (the kubelet set `IN_CLUSTER_ENV`, not empty)."""
    return bool((os.environ if environ is None else environ).get(IN_CLUSTER_ENV))
