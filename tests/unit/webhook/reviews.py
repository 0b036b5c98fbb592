"""AdmissionReview v1 requests as kube-apiserver sends them, for the webhook's tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

GROUPS = {"Pod": "", "TrafficSplit": "split.smi-spec.io", "MeshConfig": "config.openservicemesh.io"}
PLURALS = {"Pod": "pods", "TrafficSplit": "trafficsplits", "MeshConfig": "meshconfigs"}


def request(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str = "bookstore",
    dry_run: bool = False,
    uid: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 request for `obj` (or `old`, on DELETE)."""
    subject = obj if obj is not None else old or {}
    kind = kind or subject.get("kind", "Pod")
    api_version = subject.get("apiVersion", "v1")
    version = api_version.rpartition("/")[2]
    group = GROUPS.get(kind, api_version.rpartition("/")[0])
    name = subject.get("metadata", {}).get("name", "")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": PLURALS.get(kind, "x")},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": "x"},
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def body(review: dict[str, Any]) -> bytes:
    return json.dumps(review).encode()
