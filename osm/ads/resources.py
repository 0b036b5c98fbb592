"""How the server treats each xDS type (wildcards, referrers), and the `AdsSnapshot` it reads.

One idea: the server needs only three things from a proxy's configuration, per type URL:
an opaque version of the whole set, an opaque version per resource (for delta xDS), and
each resource packed in an ``Any`` (serialized once, shared by every stream). `AdsSnapshot`
states exactly that, so `osm.ads` does not depend on how `osm.xds` builds or checks its
snapshots (`xds_snapshot` adapts those). `MappingSnapshot` is a small frozen
implementation with content-hash versions, for tests and tools.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol

from google.protobuf import any_pb2
from google.protobuf.message import Message

from osm.base.wellknown import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    SECRET_TYPE,
    short_name,
)

WILDCARD_TYPES: frozenset[str] = frozenset({CLUSTER_TYPE, LISTENER_TYPE})
"""Types whose first request with no names means "everything" (legacy wildcard, gRFC A46).
For the others an empty name list subscribes to nothing."""

REFERRERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        CLUSTER_TYPE: (LISTENER_TYPE, ROUTE_TYPE),
        ENDPOINT_TYPE: (CLUSTER_TYPE,),
        LISTENER_TYPE: (),
        ROUTE_TYPE: (LISTENER_TYPE,),
        SECRET_TYPE: (CLUSTER_TYPE, LISTENER_TYPE),
    }
)
"""For each type, the types whose resources name resources of it. A resource removed from a
snapshot is removed from a proxy only once its referrers are up to date ("removals last")."""

WILDCARD = "*"


def order_key(type_url: str) -> int:
    """Sort key placing known types in `PUSH_ORDER` and any other type after them."""
    try:
        return PUSH_ORDER.index(type_url)
    except ValueError:
        return len(PUSH_ORDER)


class AdsSnapshot(Protocol):
    """A proxy's complete configuration, immutable once built.

    Contract: every method accepts any type URL; a type without resources has an empty
    mapping and still a stable version. Versions are opaque strings compared only for
    equality: `version(t)` changes whenever any resource of type `t` is added, removed or
    changed, and `resource_versions(t)[n]` whenever resource `n` changes. `packed(t, n)`
    is resource `n` in an ``Any`` (KeyError if absent); returned objects belong to the
    snapshot, are shared between streams and are never modified by anyone. Methods are
    pure, so a snapshot may be read from any thread.
    """

    def version(self, type_url: str) -> str: ...

    def resource_versions(self, type_url: str) -> Mapping[str, str]: ...

    def packed(self, type_url: str, name: str) -> any_pb2.Any: ...


def content_version(message: Message) -> str:
    """A content hash of one resource (deterministic serialization, 16 hex digits)."""
    data = message.SerializeToString(deterministic=True)
    return hashlib.sha256(data).hexdigest()[:16]


def set_version(resource_versions: Mapping[str, str]) -> str:
    """A content hash of a set of resources from their names and per-resource versions."""
    digest = hashlib.sha256()
    for name in sorted(resource_versions):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(resource_versions[name].encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class MappingSnapshot:
    """An `AdsSnapshot` over plain mappings, versioned by content hashes. Immutable.

    `versions` may pin a type's set version (tests use readable versions like ``"v1"``);
    types left out get a hash of their resources. No consistency check is done here: that
    is the snapshot builder's job (`osm.xds`).
    """

    __slots__ = ("_packed", "_resource_versions", "_versions")

    def __init__(
        self,
        resources: Mapping[str, Mapping[str, Message] | Iterable[Message]],
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self._packed: dict[str, Mapping[str, any_pb2.Any]] = {}
        self._resource_versions: dict[str, Mapping[str, str]] = {}
        for type_url, items in resources.items():
            named = items if isinstance(items, Mapping) else {_name_of(m): m for m in items}
            self._packed[type_url] = MappingProxyType({n: _pack(m) for n, m in named.items()})
            self._resource_versions[type_url] = MappingProxyType(
                {n: content_version(m) for n, m in named.items()}
            )
        self._versions = {t: set_version(v) for t, v in self._resource_versions.items()}
        self._versions.update(versions or {})

    def version(self, type_url: str) -> str:
        return self._versions.get(type_url, _EMPTY_SET_VERSION)

    def resource_versions(self, type_url: str) -> Mapping[str, str]:
        return self._resource_versions.get(type_url, _EMPTY_VERSIONS)

    def packed(self, type_url: str, name: str) -> any_pb2.Any:
        return self._packed.get(type_url, {})[name]

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{short_name(t)}={self._versions[t]}:{sorted(self.resource_versions(t))}"
            for t in sorted(self._versions, key=order_key)
        )
        return f"MappingSnapshot({parts})"


_EMPTY_VERSIONS: Mapping[str, str] = MappingProxyType({})
_EMPTY_SET_VERSION = set_version({})


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _name_of(message: Message) -> str:
    """The name of an Envoy resource: `name`, or `cluster_name` for a ClusterLoadAssignment."""
    for field in ("name", "cluster_name"):
        if field in message.DESCRIPTOR.fields_by_name:
            value = getattr(message, field)
            if isinstance(value, str) and value:
                return value
    raise ValueError(f"{message.DESCRIPTOR.full_name} has no name; pass a mapping of names")
