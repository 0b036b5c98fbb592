"""Helpers shared by the xDS tests: the bookstore demo as a state, and JSON views."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from osm.catalog import offline
from osm.catalog.state import MeshState
from osm.model import manifest
from osm.model.config import MeshConfig, TrafficSettings
from osm.model.meta import Resource
from osm.xds.resources import TYPE_URLS
from osm.xds.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[3]
BOOKSTORE = ROOT / "demo" / "bookstore" / "manifests"


def bookstore(*, permissive: bool, egress: bool = False) -> MeshState:
    """The demo's manifests with synthesized pods, in the mode asked for."""
    loaded = manifest.load_paths([BOOKSTORE])
    assert not loaded.errors, loaded.errors
    resources: list[Resource] = []
    for resource in offline.synthesize(loaded.resources):
        if isinstance(resource, MeshConfig):
            traffic = TrafficSettings(
                enable_egress=egress, enable_permissive_traffic_policy_mode=permissive
            )
            resource = dataclasses.replace(resource, traffic=traffic)
        resources.append(resource)
    return MeshState.from_resources(resources)


def as_json(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot as protobuf JSON, by short type name (versions left out)."""
    return {
        "proxy": str(snapshot.proxy.id),
        "identity": str(snapshot.proxy.identity),
        "services": [str(s) for s in snapshot.proxy.services],
        "resources": {
            url.rpartition(".")[2]: [
                json_format.MessageToDict(b.message)
                for _, b in sorted(snapshot.of_type(url).items())
            ]
            for url in TYPE_URLS
        },
    }
