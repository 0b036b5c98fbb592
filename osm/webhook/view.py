"""What the injector reads for every pod, kept current by watches: the Namespaces and the
mesh's MeshConfig.

One idea: two informers (`osm.kube.informer`: every Namespace; the MeshConfig in the
control plane's namespace only, which is all the injector's Role may read) fold their
events into two plain dicts, so admitting a pod reads memory instead of making two API
requests while the API server waits on the webhook (OSM's injector reads both through
informers too). Freshness: the API server sends a change to its watchers before it answers
the write (measured: `bench/apiserver.py`), so a namespace labelled by ``kubectl label``
is in the view within milliseconds of kubectl's return, before a pod created next reaches
the webhook in any sequence a person or a script runs (a pod created by a request racing
the label's own may be decided by the old labels, as with OSM's informers). A namespace
the view has not seen (created a moment ago) is read through the API
(`PodInjector` falls back), never taken as missing.

`synced` is set once both informers have listed; until then the injector reads through the
API, and the webhook reports not ready (`osm.webhook.run`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from osm.base import wellknown
from osm.injector.admission import mesh_config_for_injection
from osm.kube.client import KubeClient
from osm.kube.informer import Change, Informer, Sync
from osm.model.config import MeshConfig

log = logging.getLogger(__name__)


class ClusterView:
    """The Namespaces by name and the MeshConfig, from informers over `client`."""

    def __init__(self, client: KubeClient, osm_namespace: str) -> None:
        self.client = client
        self.osm_namespace = osm_namespace
        self.namespaces: dict[str, Mapping[str, Any]] = {}
        self._mesh_config: MeshConfig = mesh_config_for_injection(None, osm_namespace)
        self._synced = {"Namespace": asyncio.Event(), "MeshConfig": asyncio.Event()}

    @property
    def synced(self) -> bool:
        return all(event.is_set() for event in self._synced.values())

    async def wait_synced(self) -> None:
        await asyncio.gather(*(event.wait() for event in self._synced.values()))

    def mesh_config(self) -> MeshConfig:
        """The MeshConfig as last seen; its defaults when there is none or it is unreadable
        (logged: pods are injected as a fresh install would)."""
        return self._mesh_config

    async def run(self) -> None:
        """Follow both kinds until cancelled."""
        await asyncio.gather(
            self._follow(Informer(self.client, ["Namespace"]), self._namespace_event),
            self._follow(
                Informer(self.client, ["MeshConfig"], namespace=self.osm_namespace),
                self._mesh_config_event,
            ),
        )

    async def _follow(self, informer: Informer, apply: Any) -> None:
        async with informer as events:
            async for event in events:
                apply(event)

    def _namespace_event(self, event: Sync | Change) -> None:
        if isinstance(event, Sync):
            self.namespaces = {_name(obj): obj for obj in event.objects}
            self._synced["Namespace"].set()
        elif event.type == "DELETED":
            self.namespaces.pop(_name(event.object), None)
        else:
            self.namespaces[_name(event.object)] = event.object

    def _mesh_config_event(self, event: Sync | Change) -> None:
        if isinstance(event, Sync):
            found = [o for o in event.objects if _name(o) == wellknown.MESH_CONFIG_NAME]
            self._mesh_config = self._decode(found[0]) if found else self._default()
            self._synced["MeshConfig"].set()
        elif _name(event.object) == wellknown.MESH_CONFIG_NAME:
            deleted = event.type == "DELETED"
            self._mesh_config = self._default() if deleted else self._decode(event.object)

    def _default(self) -> MeshConfig:
        return mesh_config_for_injection(None, self.osm_namespace)

    def _decode(self, stored: Mapping[str, Any]) -> MeshConfig:
        return mesh_config_for_injection(stored, self.osm_namespace)


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
