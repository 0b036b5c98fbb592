"""Snapshots: per proxy, a frozen, checked and versioned set of resources per xDS type.

The one idea: a proxy's resources are a stack of shared *layers*, never a merged copy.
A `Layer` is what one slice of a policy builds (`osm.xds.layers` says which slices),
checked and versioned per type once, whoever uses it. A type's `TypedResources` is a
read-only view over the layers that have resources of that type (`LayeredResources`),
and its version combines the layers' versions (each a hash of its resources' content
hashes): changing one layer costs one short hash per class, never a re-hash or copy of
the others.

Every set is consistent before anyone sees it (every cluster, route configuration,
secret and load assignment a resource names exists): the references between the two
outbound layers are resolved once per pair (`join_outbound`), and what remains, plus
the inbound layer's needs, is checked per set (`combine`); a set that fails is refused
with `InconsistentSnapshot`. Everything here is an immutable value, safe to share;
`osm.xds.generator` makes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message

from osm.base.wellknown import PUSH_ORDER, message_name
from osm.catalog.ids import ProxyId
from osm.catalog.policy import CatalogWarning, Proxy, ProxyPolicy
from osm.catalog.state import MeshState
from osm.xds.resources import Built, Reference


class InconsistentSnapshot(Exception):
    """A resource set names resources it does not contain (a bug in the builders,
    never the user's fault): it is refused before any proxy sees it."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(f"inconsistent snapshot for {what}: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, eq=False)
class TypedResources:
    """The resources of one type, by name, and their version (a content hash:
    compare for equality only)."""

    type_url: str
    version: str
    resources: Mapping[str, Built]

    def messages(self) -> dict[str, Message]:
        """Name -> message; the caller must not modify the messages."""
        return {name: built.message for name, built in self.resources.items()}


@dataclass(frozen=True, slots=True, eq=False)
class ResourceSet:
    """Everything one class of proxies gets: a `TypedResources` for each type URL."""

    policy: ProxyPolicy
    types: Mapping[str, TypedResources]
    layers: tuple[Layer, ...] = ()
    """The (upstream, routes, inbound) layers the types are views over."""

    def versions(self) -> dict[str, str]:
        return {url: typed.version for url, typed in self.types.items()}


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """One proxy's configuration. ``resources.types`` has every type URL of
    `osm.xds.resources.TYPE_URLS` (possibly with no resources)."""

    proxy: Proxy
    resources: ResourceSet

    def version(self, type_url: str) -> str:
        return self.resources.types[type_url].version

    def of_type(self, type_url: str) -> Mapping[str, Built]:
        return self.resources.types[type_url].resources


@dataclass(frozen=True, slots=True)
class BuildStats:
    proxies: int = 0
    proxies_recomputed: int = 0
    classes_recomputed: int = 0
    resources_built: int = 0
    resources_reused: int = 0
    full: bool = True


@dataclass(frozen=True, slots=True, eq=False)
class Snapshots:
    """The result of one build: a snapshot per proxy, plus what went wrong.

    ``errors`` names proxies whose update failed (missing certificate, inconsistent
    set); such a proxy keeps its previous snapshot when it had one. ``changed`` are the
    proxies whose resources (by version) or `Proxy` differ from the previous build's (new
    ones included; a new policy that serves the same resources is not a change);
    ``removed`` those that are gone.
    """

    state: MeshState
    snapshots: Mapping[ProxyId, Snapshot]
    warnings: tuple[CatalogWarning, ...] = ()
    errors: Mapping[ProxyId, str] = field(default_factory=dict)
    changed: frozenset[ProxyId] = frozenset()
    removed: frozenset[ProxyId] = frozenset()
    stats: BuildStats = BuildStats()


def version_of(resources: Iterable[Built]) -> str:
    digest = hashlib.sha256()
    for built in resources:
        digest.update(built.name.encode())
        digest.update(b"\0")
        digest.update(built.digest.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def consistency_problems(types: Mapping[str, Mapping[str, Built]]) -> list[str]:
    """Every reference in ``types`` that ``types`` does not satisfy (empty: consistent)."""
    problems: list[str] = []
    for type_url in PUSH_ORDER:
        for built in types.get(type_url, {}).values():
            for wanted_type, wanted in sorted(built.references):
                if wanted not in types.get(wanted_type, {}):
                    problems.append(
                        f"{message_name(type_url)} {built.name!r} names "
                        f"{message_name(wanted_type)} {wanted!r}, which is not in the snapshot"
                    )
    return problems


_EMPTY_MAP: Mapping[str, Built] = MappingProxyType({})


class LayeredResources(Mapping[str, Built]):
    """A read-only name -> resource view over several layers' resources of one type,
    without copying them. Iteration is in layer order (each layer sorted by name), a
    name shadowed by an earlier layer coming once; lookups prefer the later layer (the
    two are equal: `combine` refuses sets where they are not)."""

    __slots__ = ("_layers", "_length")

    def __init__(self, layers: tuple[Mapping[str, Built], ...], length: int) -> None:
        self._layers = layers
        self._length = length

    def __getitem__(self, name: str) -> Built:
        for layer in reversed(self._layers):
            found = layer.get(name)
            if found is not None:
                return found
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(name in layer for layer in self._layers)

    def __iter__(self) -> Iterator[str]:
        yield from self._layers[0]
        for index in range(1, len(self._layers)):
            earlier = self._layers[:index]
            for name in self._layers[index]:
                if not any(name in layer for layer in earlier):
                    yield name

    def __len__(self) -> int:
        return self._length


@dataclass(frozen=True, slots=True, eq=False)
class Layer:
    """The resources one slice of a policy builds (see `osm.xds.layers`), by type
    and sorted by name, with a version per type and the references they make that the
    layer itself does not satisfy. Shared; never modified."""

    by_type: Mapping[str, Mapping[str, Built]]
    versions: Mapping[str, str]
    unresolved: frozenset[Reference]
    typed: Mapping[str, TypedResources]


@dataclass(frozen=True, slots=True, eq=False)
class OutboundLayers:
    """The two outbound layers of one outbound policy, and the references they leave
    to the inbound layer (in practice the proxy's own certificate)."""

    upstreams: Layer
    routes: Layer
    unresolved: frozenset[Reference]


_A_LAYER = "a layer"
"""What `make_layer` and `join_outbound` say is inconsistent: they are shared, and
their callers name the proxy (`osm.xds.layers.resource_set`)."""


def make_layer(resources: Iterable[Built]) -> Layer:
    """The layer of ``resources`` (one of a name: two different ones raise)."""
    by_type: dict[str, dict[str, Built]] = {url: {} for url in PUSH_ORDER}
    for built in resources:
        existing = by_type[built.type_url].get(built.name)
        if existing is not None and existing.digest != built.digest:
            raise InconsistentSnapshot(
                _A_LAYER,
                [f"two different {message_name(built.type_url)} named {built.name!r}"],
            )
        by_type[built.type_url][built.name] = built
    sorted_types: dict[str, Mapping[str, Built]] = {}
    for url in PUSH_ORDER:
        found = by_type[url]
        sorted_types[url] = (
            MappingProxyType({n: found[n] for n in sorted(found)}) if found else _EMPTY_MAP
        )
    unresolved = frozenset(
        reference
        for resources in sorted_types.values()
        for built in resources.values()
        for reference in built.references
        if reference[1] not in sorted_types[reference[0]]
    )
    versions = {url: version_of(sorted_types[url].values()) for url in PUSH_ORDER}
    typed = {url: TypedResources(url, versions[url], sorted_types[url]) for url in PUSH_ORDER}
    return Layer(sorted_types, versions, unresolved, typed)


def _check_clashes(url: str, maps: tuple[Mapping[str, Built], ...], what: str) -> int:
    """Raises when two layers hold different resources with one name; returns how many
    names a later layer repeats from an earlier one."""
    repeated = 0
    for index in range(1, len(maps)):
        for name, built in maps[index].items():
            for earlier in maps[:index]:
                clash = earlier.get(name)
                if clash is not None:
                    if clash.digest != built.digest:
                        raise InconsistentSnapshot(
                            what, [f"two different {message_name(url)} named {name!r}"]
                        )
                    repeated += 1
                    break
    return repeated


def join_outbound(upstreams: Layer, routes: Layer) -> OutboundLayers:
    """The two outbound layers, checked against each other, with what they leave to the
    inbound layer."""
    for url in PUSH_ORDER:
        _check_clashes(url, (upstreams.by_type[url], routes.by_type[url]), _A_LAYER)
    unresolved = frozenset(
        reference
        for reference in upstreams.unresolved | routes.unresolved
        if reference[1] not in routes.by_type[reference[0]]
        and reference[1] not in upstreams.by_type[reference[0]]
    )
    return OutboundLayers(upstreams, routes, unresolved)


def combine(
    policy: ProxyPolicy,
    outbound: OutboundLayers,
    inbound: Layer,
    what: str,
    old: ResourceSet | None = None,
) -> ResourceSet:
    """The resource set over the three layers, checked. Types whose layers are those
    of ``old`` keep ``old``'s `TypedResources` object."""
    layers = (outbound.upstreams, outbound.routes, inbound)
    old_layers = old.layers if old is not None and len(old.layers) == 3 else None
    types: dict[str, TypedResources] = {}
    for url in PUSH_ORDER:
        maps = (layers[0].by_type[url], layers[1].by_type[url], inbound.by_type[url])
        if (
            old is not None
            and old_layers is not None
            and old_layers[0].by_type[url] is maps[0]
            and old_layers[1].by_type[url] is maps[1]
            and old_layers[2].by_type[url] is maps[2]
        ):
            types[url] = old.types[url]
            continue
        present = [index for index in range(3) if maps[index]]
        if len(present) <= 1:
            types[url] = layers[present[0] if present else 2].typed[url]
            continue
        present_maps = tuple(maps[index] for index in present)
        repeated = _check_clashes(url, present_maps, what)
        joined = "/".join(layers[index].versions[url] for index in present)
        version = hashlib.sha256(joined.encode()).hexdigest()[:16]
        length = sum(len(m) for m in present_maps) - repeated
        types[url] = TypedResources(url, version, LayeredResources(present_maps, length))
    wanted = outbound.unresolved | inbound.unresolved if inbound.unresolved else outbound.unresolved
    missing = [ref for ref in wanted if ref[1] not in types[ref[0]].resources]
    if missing:
        raise InconsistentSnapshot(
            what,
            [
                f"a resource names {message_name(wanted_type)} {name!r}, "
                "which is not in the snapshot"
                for wanted_type, name in sorted(missing)
            ],
        )
    return ResourceSet(policy, MappingProxyType(types), layers)


__all__ = [
    "BuildStats",
    "InconsistentSnapshot",
    "Layer",
    "LayeredResources",
    "OutboundLayers",
    "ResourceSet",
    "Snapshot",
    "Snapshots",
    "TypedResources",
    "combine",
    "consistency_problems",
    "join_outbound",
    "make_layer",
    "version_of",
]
