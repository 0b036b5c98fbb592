"""The caBundle of a webhook configuration: the mesh roots the API server verifies the
webhooks' serving certificates with, kept current by the processes that serve them.

One idea: read, set ``webhooks[*].clientConfig.caBundle`` on every webhook, replace at the
resourceVersion read, and on 409 Conflict start again from a fresh read. A JSON merge
patch cannot do it (it replaces the ``webhooks`` list whole, so it would have to restate
every webhook and lose a concurrent edit); a replace at a resourceVersion changes only
the caBundles and loses nothing. Nothing is written when every caBundle is current, so
calling it at every start and every trust-bundle change is cheap.
"""

from __future__ import annotations

import base64
import copy
from typing import Any, Literal

from osm.kube.client import KubeClient
from osm.kube.errors import ApiError

Kind = Literal["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
ATTEMPTS = 5
"""Read-modify-replace rounds before giving up on a configuration others keep changing."""


class ConfigurationChanging(Exception):
    """Every attempt met a concurrent write (409 Conflict)."""


async def keep_ca_bundle(client: KubeClient, kind: Kind, name: str, bundle_pem: bytes) -> bool:
    """Set the caBundle of every webhook of the `kind` configuration `name` to
    `bundle_pem` (PEM of the mesh roots); True if it wrote, False if every caBundle was
    current. Raises `osm.kube.errors.ApiError` (404: the configuration does not exist,
    as before ``osm install``), `ConfigurationChanging` after `ATTEMPTS` conflicts."""
    encoded = base64.b64encode(bundle_pem).decode()
    for _ in range(ATTEMPTS):
        stored = await client.get(kind, None, name)
        updated = with_ca_bundle(stored, encoded)
        if updated == stored:
            return False
        try:
            await client.replace(updated)
        except ApiError as error:
            if error.code == 409:
                continue
            raise
        return True
    raise ConfigurationChanging(f"{kind} {name} kept changing under {ATTEMPTS} updates")


def with_ca_bundle(configuration: dict[str, Any], encoded: str) -> dict[str, Any]:
    """A copy of `configuration` with every webhook's ``clientConfig.caBundle`` set to
    `encoded` (base64 of the PEM) and everything else as it was."""
    updated = copy.deepcopy(configuration)
    for webhook in updated.get("webhooks") or []:
        if isinstance(webhook, dict):
            webhook.setdefault("clientConfig", {})["caBundle"] = encoded
    return updated
