"""What ``osm install`` creates besides the processes, ensured by the controller at start:
the control plane's namespace ``osm-system`` and the default MeshConfig ``osm-mesh-config``.

One idea: create what is absent, never overwrite; a user's MeshConfig (or a namespace
with their labels) stays as it is. The controller ensures them before its API serves, so
no request races with it, and a MeshConfig applied right after ``osm up`` finds its
namespace.
"""

from __future__ import annotations

from typing import Any

from osm.base import wellknown
from osm.model import config
from osm.store import api as store_api


def control_plane_objects() -> list[dict[str, Any]]:
    """The namespace and the MeshConfig, as ``osm install`` writes them."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": wellknown.CONTROL_PLANE_NAMESPACE,
            # Written to the store directly, so not through the API, which labels
            # every Namespace it admits with its name (as kube-apiserver does).
            "labels": {wellknown.NAMESPACE_NAME_LABEL: wellknown.CONTROL_PLANE_NAMESPACE},
            "annotations": {wellknown.LOCAL_MODE_ANNOTATION: "built-in control plane"},
        },
    }
    return [namespace, config.default_manifest(wellknown.CONTROL_PLANE_NAMESPACE)]


async def ensure(store: store_api.Store) -> list[store_api.ObjectKey]:
    """Creates the `control_plane_objects` that `store` lacks, in one write; returns
    their keys (empty when all exist). The caller makes sure nobody writes meanwhile."""
    missing = []
    for obj in control_plane_objects():
        key = store_api.ObjectKey.of(obj)
        try:
            await store.get(key)
        except store_api.NotFound:
            missing.append((key, obj))
    if missing:
        await store.apply([obj for _, obj in missing])
    return [key for key, _ in missing]
