"""The mesh CA's root kept in a Secret (OSM's ``osm-ca-bundle``), so that every process of
the control plane, and every restart of one, signs with the same root.

One idea: the Secret is the root's home and the local CA directory only a working copy.
`load_or_create` reads the Secret; when there is none it makes a root and creates the
Secret, and when another process created one first (the controller and the injector race
at first start: 409 AlreadyExists) it takes the winner's, so both end with one root. The
root is then adopted into a CA directory (`osm.ca.builtin.BuiltinCA.adopt`) which the
process signs from as in local mode.

Keys (PEM): ``ca.crt`` the root certificate, ``private.key`` its key, as OSM's. Root
rotation through the Secret is not done here (the directory's rotation stays local).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from osm.base import wellknown
from osm.ca import builtin
from osm.ca.errors import CAError
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError

SECRET_NAME = wellknown.CA_BUNDLE_SECRET_NAME
CERT_KEY = "ca.crt"
PRIVATE_KEY_KEY = "private.key"


class CASecretError(CAError):
    """The Secret exists but does not hold a usable root (someone else's fault: say what
    to do)."""


async def load_or_create(
    client: KubeClient,
    namespace: str,
    name: str,
    ca_dir: Path,
    now: datetime,
    *,
    config: builtin.CAConfig | None = None,
    labels: Mapping[str, str] | None = None,
) -> builtin.BuiltinCA:
    """The mesh CA whose root is in Secret `namespace`/`name`, working from `ca_dir` (an
    empty directory, or one that holds this root already). Creates the root and the
    Secret (with `labels`) if there is none. Raises `osm.kube.errors.KubeError` when the
    API cannot be read or written, `CAError` when the Secret's root is unusable."""
    config = config or builtin.CAConfig()
    secret = await _read(client, namespace, name)
    if secret is None:
        cert, key = builtin.create_root(config.root_key, now, config.root_validity)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            secret = await client.create(_manifest(namespace, name, cert_pem, key_pem, labels))
        except ApiError as error:
            if error.reason != "AlreadyExists" and error.code != 409:
                raise
            secret = await _read(client, namespace, name)  # the winner's
            if secret is None:
                raise CASecretError(
                    f"Secret {namespace}/{name} was created and deleted while this process "
                    "started; start it again"
                ) from None
    cert_pem, key_pem = root_of(secret)
    return builtin.BuiltinCA.adopt(ca_dir, cert_pem, key_pem, now, config)


def root_of(secret: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The root certificate and key (PEM) a ``osm-ca-bundle`` Secret holds."""
    meta = secret.get("metadata")
    where = "Secret"
    if isinstance(meta, Mapping):
        where = f"Secret {meta.get('namespace')}/{meta.get('name')}"
    data = secret.get("data")
    data = data if isinstance(data, Mapping) else {}
    values = []
    for key in (CERT_KEY, PRIVATE_KEY_KEY):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise CASecretError(
                f"{where}: data.{key} is missing; it must hold the mesh root ({CERT_KEY}) and "
                f"its key ({PRIVATE_KEY_KEY}) as PEM: restore it, or delete the Secret to "
                "create a new root (every proxy then needs new certificates)"
            )
        try:
            values.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise CASecretError(f"{where}: data.{key} is not base64") from None
    return values[0], values[1]


def _manifest(
    namespace: str,
    name: str,
    cert_pem: bytes,
    key_pem: bytes,
    labels: Mapping[str, str] | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {
            CERT_KEY: base64.b64encode(cert_pem).decode(),
            PRIVATE_KEY_KEY: base64.b64encode(key_pem).decode(),
        },
    }


async def _read(client: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await client.get("Secret", namespace, name)
    except ApiError as error:
        if error.code == 404:
            return None
        raise
