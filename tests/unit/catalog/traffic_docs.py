"""Manifests of OSM's Retry and UpstreamTrafficSetting for tests, as a user writes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.unit.catalog.meshes import Doc

POLICY_API = "policy.openservicemesh.io/v1alpha1"
RETRY_5XX: Doc = {
    "retryOn": "5xx",
    "perTryTimeout": "1s",
    "numRetries": 3,
    "retryBackoffBaseInterval": "10ms",
}


def retry(
    ns: str,
    name: str,
    source: str,
    destinations: Sequence[tuple[str, str]],
    policy: Doc | None = None,
) -> Doc:
    """A Retry from service account ``ns/source`` to the (namespace, name) services."""
    return {
        "apiVersion": POLICY_API,
        "kind": "Retry",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": {"kind": "ServiceAccount", "name": source, "namespace": ns},
            "destinations": [
                {"kind": "Service", "namespace": d_ns, "name": d_name}
                for d_ns, d_name in destinations
            ],
            "retryPolicy": policy or RETRY_5XX,
        },
    }


def upstream_setting(ns: str, name: str, host: str, **spec: Any) -> Doc:
    """An UpstreamTrafficSetting for ``host``; ``spec`` keys are its fields (camelCase)."""
    return {
        "apiVersion": POLICY_API,
        "kind": "UpstreamTrafficSetting",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"host": host, **spec},
    }
