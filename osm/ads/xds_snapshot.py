"""Adapts the snapshots `osm.xds` builds to the `resources.AdsSnapshot` protocol.

One idea: `osm.xds` already serialized and hashed every resource once (`Built`), so the
adapter serves those bytes and digests as they are: packing is a copy of bytes, never a
new serialization. Wrap a `ResourceSet` once and share the wrapper between the proxies
that have it (`Generator` shares sets between proxies of one class); it memoizes per type.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf import any_pb2

from osm.ads.resources import set_version
from osm.xds import snapshot as xds_snapshot

_EMPTY_SET_VERSION = set_version({})
_EMPTY: Mapping[str, str] = MappingProxyType({})


class XdsSnapshot:
    """A `resources.AdsSnapshot` over an `osm.xds.snapshot.ResourceSet`. Immutable in effect
    (its memo only fills); use from one thread, like the cache."""

    __slots__ = ("_packed", "_resource_versions", "_set")

    def __init__(self, resource_set: xds_snapshot.ResourceSet) -> None:
        self._set = resource_set
        self._resource_versions: dict[str, Mapping[str, str]] = {}
        self._packed: dict[tuple[str, str], any_pb2.Any] = {}

    @classmethod
    def of(cls, snapshot: xds_snapshot.Snapshot) -> XdsSnapshot:
        return cls(snapshot.resources)

    @property
    def resource_set(self) -> xds_snapshot.ResourceSet:
        return self._set

    def version(self, type_url: str) -> str:
        typed = self._set.types.get(type_url)
        return typed.version if typed is not None else _EMPTY_SET_VERSION

    def resource_versions(self, type_url: str) -> Mapping[str, str]:
        versions = self._resource_versions.get(type_url)
        if versions is None:
            typed = self._set.types.get(type_url)
            if typed is None:
                return _EMPTY
            versions = MappingProxyType({n: b.digest for n, b in typed.resources.items()})
            self._resource_versions[type_url] = versions
        return versions

    def packed(self, type_url: str, name: str) -> any_pb2.Any:
        key = (type_url, name)
        packed = self._packed.get(key)
        if packed is None:
            typed = self._set.types.get(type_url)
            if typed is None:
                raise KeyError(name)
            built = typed.resources[name]
            packed = any_pb2.Any(type_url=built.type_url, value=built.serialized)
            self._packed[key] = packed
        return packed
