"""The bookstore demo's objects (demo/bookstore/manifests) as a running mesh would hold
them: pods made up for each Deployment (`osm.catalog.offline.synthesize`) and marked
injected (their ``osm-proxy-uuid`` label is ``uuid-<pod>``), in permissive or SMI mode;
and Prometheus answers shaped as Prometheus returns them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from osm.base import wellknown
from osm.catalog import offline
from osm.catalog.catalog import Catalog
from osm.catalog.state import MeshState
from osm.model import manifest
from osm.model.core import Pod
from osm.model.meta import Resource

MANIFESTS = Path(__file__).resolve().parents[3] / "demo" / "bookstore" / "manifests"


def mesh_config(permissive: bool) -> dict[str, Any]:
    return {
        "apiVersion": "config.openservicemesh.io/v1alpha2",
        "kind": "MeshConfig",
        "metadata": {"name": wellknown.MESH_CONFIG_NAME, "namespace": "osm-system"},
        "spec": {"traffic": {"enablePermissiveTrafficPolicyMode": permissive}},
    }


def resources(permissive: bool, extra: list[dict[str, Any]] | None = None) -> list[Resource]:
    loaded = manifest.load_paths([MANIFESTS])
    assert not loaded.errors, [str(p) for p in loaded.errors]
    docs = manifest.load_objects([mesh_config(permissive), *(extra or [])])
    assert not docs.errors, [str(p) for p in docs.errors]
    kept = [r for r in loaded.resources if r.kind != "MeshConfig"] + docs.resources
    found: list[Resource] = []
    for resource in offline.synthesize(kept):
        if isinstance(resource, Pod):
            labels = {
                **resource.metadata.labels,
                wellknown.PROXY_UUID_LABEL: f"uuid-{resource.name}",
            }
            resource = dataclasses.replace(
                resource, metadata=dataclasses.replace(resource.metadata, labels=labels)
            )
        found.append(resource)
    return found


def catalog(permissive: bool, extra: list[dict[str, Any]] | None = None) -> Catalog:
    return Catalog(MeshState.from_resources(resources(permissive, extra)))


def sample(value: float, **labels: str) -> dict[str, Any]:
    """One sample of an instant vector, as Prometheus's ``data.result`` holds it."""
    return {"metric": labels, "value": [1700000000.0, str(value)]}


def edge(source_ns: str, workload: str, cluster: str, value: float, **more: str) -> dict[str, Any]:
    return sample(
        value,
        source_namespace=source_ns,
        source_workload_name=workload,
        envoy_cluster_name=cluster,
        **more,
    )
