"""Object metadata and the base every resource kind shares.

Resources are frozen dataclasses. Each keeps the manifest it was read from (normalised:
defaults applied by the store are in ``metadata``), so writing an object back out is
lossless, while the typed fields are what the rest of the mesh reads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from osm.model.fields import Fields, check_dns_label, check_dns_subdomain

EMPTY: Mapping[str, Any] = MappingProxyType({})


def empty_map() -> Mapping[str, Any]:
    return EMPTY


def frozen_map(data: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(data)) if data else EMPTY


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """``metadata``: identity, labels and the fields the store maintains.

    ``namespace`` is ``""`` for cluster-scoped kinds. ``resource_version`` is opaque
    (compare for equality only) and empty until the object has been stored.
    """

    name: str
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=empty_map)
    annotations: Mapping[str, str] = field(default_factory=empty_map)
    resource_version: str = ""
    generation: int = 0
    uid: str = ""
    creation_timestamp: str = ""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A (kind, namespace, name) triple naming one object, e.g. in messages and lookups."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else (f"{self.kind} {self.name}")
        )


@dataclass(frozen=True, slots=True)
class Resource:
    """Base of every kind. Subclasses set ``KIND`` and add their typed fields."""

    KIND: ClassVar[str] = ""
    api_version: str
    metadata: ObjectMeta
    manifest: Mapping[str, Any] = field(default_factory=empty_map, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.KIND, self.metadata.namespace, self.metadata.name)

    def to_dict(self) -> dict[str, Any]:
        """The object as a manifest dict; the caller owns the returned copy."""
        return copy.deepcopy(dict(self.manifest))


def read_metadata(
    doc: Fields, *, namespaced: bool, default_namespace: str = "default"
) -> ObjectMeta:
    """Reads ``metadata`` leniently (unknown keys are Kubernetes' business, not ours)."""
    meta = doc.object("metadata", required=True, strict=False)
    name = meta.string("name", required=True)
    if name and (complaint := check_dns_subdomain(name)):
        meta.error("name", complaint)
    namespace = ""
    if namespaced:
        namespace = meta.string("namespace") or default_namespace
        if complaint := check_dns_label(namespace):
            meta.error("namespace", complaint)
    elif meta.has("namespace"):
        meta.error("namespace", "this kind is cluster-scoped and takes no namespace")
    generation = meta.raw("generation")
    return ObjectMeta(
        name=name,
        namespace=namespace,
        labels=frozen_map(meta.str_map("labels", check_labels=True)),
        annotations=frozen_map(meta.str_map("annotations")),
        resource_version=str(meta.raw("resourceVersion") or ""),
        generation=generation if isinstance(generation, int) else 0,
        uid=str(meta.raw("uid") or ""),
        creation_timestamp=str(meta.raw("creationTimestamp") or ""),
    )
