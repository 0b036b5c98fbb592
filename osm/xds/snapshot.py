"""Snapshots: per proxy, a frozen and checked set of resources per xDS type.

The one idea: a proxy's resources are a stack of shared *layers*, never a merged
copy. A layer is what one slice of a policy builds, checked and versioned per type
once, whoever uses it:

* the *upstream* layer (outbound listener, clusters, load assignments, outbound
  root certificates) reads only the route-free view of the outbound ports, the proxy
  kind and TLS settings, so in permissive mode every proxy of the mesh shares one;
* the *routes* layer (``rds-outbound.<port>``; a gRPC client's listeners) reads only
  the namespace and the ports' route view, so it is one per namespace (permissive) or
  per identity (SMI), and a TrafficSplit change rebuilds it and nothing else;
* the *inbound* layer (inbound listener, local clusters, the proxy's own secrets) is
  one per class of proxies (same `Proxy.class_key`).

A type's `TypedResources` is a read-only view over the layers that have resources of
that type (`LayeredResources`), and its version combines the layers' versions (each a
hash of its resources' content hashes): changing one layer costs one short hash per
class, never a re-hash or copy of the others. Cross-layer references are resolved
once per (upstream, routes) pair; what remains, plus the inbound layer's needs, is
checked per class, so every set is consistent (every cluster, route configuration,
secret and load assignment a resource names exists) before anyone sees it.

`Generator.build(state, changed)` recomputes only the classes a change can affect
(`osm.catalog.catalog.dirty_from`). A class that is affected only through what it
reaches (say a split on a service it calls) keeps its inbound layer and policy and
gets the new outbound layers; a type whose layers are the same objects keeps its
`TypedResources`. Proxies of unchanged classes are not touched, and `Snapshots.changed`
names exactly the proxies whose resources or proxy value changed. That is what the
controller calls after each (debounced) batch of events. Generators are not
thread-safe; the `Snapshots` they return are immutable and safe to share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from google.protobuf.message import Message

from osm.base.identity import TRUST_DOMAIN, Identity, ProxyKind
from osm.base.wellknown import PUSH_ORDER
from osm.catalog import catalog as catalog_module
from osm.catalog.catalog import Catalog, Dirty
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import (
    CatalogWarning,
    OutboundPolicy,
    OutboundPort,
    Proxy,
    ProxyPolicy,
    is_http,
)
from osm.catalog.state import Changed, MeshState
from osm.model.core import Pod
from osm.xds import cds, eds, lds, rds, sds
from osm.xds.context import Context, CredentialSource, MissingCredentials
from osm.xds.resources import Built, Reference

K = TypeVar("K")
V = TypeVar("V")


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
                        f"{_short(type_url)} {built.name!r} names {_short(wanted_type)} "
                        f"{wanted!r}, which is not in the snapshot"
                    )
    return problems


def _short(type_url: str) -> str:
    return type_url.rpartition(".")[2]


_EMPTY_MAP: Mapping[str, Built] = MappingProxyType({})


class LayeredResources(Mapping[str, Built]):
    """A read-only name -> resource view over several layers' resources of one type,
    without copying them. Iteration is in layer order (each layer sorted by name), a
    name shadowed by an earlier layer coming once; lookups prefer the later layer (the
    two are equal: `_combine` refuses sets where they are not)."""

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
    """The resources one slice of a policy builds (see the module docstring), by type
    and sorted by name, with a version per type and the references they make that the
    layer itself does not satisfy. Shared; never modified."""

    by_type: Mapping[str, Mapping[str, Built]]
    versions: Mapping[str, str]
    unresolved: frozenset[Reference]
    typed: Mapping[str, TypedResources]


@dataclass(frozen=True, slots=True, eq=False)
class _Outbound:
    """The two outbound layers of one outbound policy, and the references they leave
    to the inbound layer (in practice the proxy's own certificate)."""

    upstreams: Layer
    routes: Layer
    unresolved: frozenset[Reference]


_UPSTREAM_BUILDERS: tuple[Callable[[ProxyPolicy, Context], list[Built]], ...] = (
    cds.outbound_resources,
    eds.outbound_resources,
    sds.outbound_resources,
)
_INBOUND_BUILDERS: tuple[Callable[[ProxyPolicy, Context], list[Built]], ...] = (
    lds.inbound_resources,
    rds.inbound_resources,
    cds.inbound_resources,
    eds.inbound_resources,
    sds.inbound_resources,
)


def _layer(
    policy: ProxyPolicy,
    context: Context,
    builders: Iterable[Callable[[ProxyPolicy, Context], list[Built]]],
    what: str,
) -> Layer:
    by_type: dict[str, dict[str, Built]] = {url: {} for url in PUSH_ORDER}
    for builder in builders:
        for built in builder(policy, context):
            existing = by_type[built.type_url].get(built.name)
            if existing is not None and existing.digest != built.digest:
                raise InconsistentSnapshot(
                    what, [f"two different {_short(built.type_url)} named {built.name!r}"]
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


def _views(
    context: Context,
    tag: str,
    ports: tuple[OutboundPort, ...],
    view: Callable[[OutboundPort], OutboundPort],
) -> tuple[OutboundPort, ...]:
    """``view`` of every port, memoized on the tuple itself: in permissive mode every
    namespace's policy holds the same ports tuple."""
    entry = context.cached((tag, id(ports)), lambda: (ports, tuple(view(port) for port in ports)))
    if entry[0] is not ports:  # pragma: no cover - the entry keeps ``ports`` alive
        raise AssertionError("stale port views")
    return entry[1]


def _upstream_view(port: OutboundPort, context: Context) -> OutboundPort:
    """What the upstream layer reads of a port: everything but an HTTP port's routes
    (clusters come from ``upstreams``; HTTP routing is RDS, in the routes layer)."""
    if not is_http(port.protocol) or not port.routes:
        return port
    return context.cached(("upstream-view", port), lambda: _replace_routes(port))


def _replace_routes(port: OutboundPort) -> OutboundPort:
    return OutboundPort(
        port.service, port.port, port.protocol, port.cluster_ip, port.match_ips, (), port.upstreams
    )


def _outbound(policy: ProxyPolicy, context: Context, what: str) -> _Outbound:
    """The outbound layers of ``policy``, shared by every policy with the same views."""
    key = ("outbound", policy.outbound, policy.kind, policy.tls)
    found = context.layers.get(key)
    if isinstance(found, _Outbound):
        return found
    outbound = policy.outbound
    upstream_ports = _views(
        context, "upstream-views", outbound.ports, lambda p: _upstream_view(p, context)
    )
    route_ports = _views(
        context, "route-views", outbound.ports, lambda p: rds.route_view(p, context)
    )
    upstreams = _cached_layer(
        context,
        ("upstreams", OutboundPolicy("", upstream_ports, outbound.egress), policy.kind, policy.tls),
        policy,
        _UPSTREAM_BUILDERS
        if policy.kind == ProxyKind.GRPC
        else (lds.outbound_resources, *_UPSTREAM_BUILDERS),
        what,
    )
    routes = _cached_layer(
        context,
        ("routes", OutboundPolicy(outbound.namespace, route_ports, False), policy.kind, policy.tls),
        policy,
        (rds.outbound_resources, lds.outbound_resources)
        if policy.kind == ProxyKind.GRPC
        else (rds.outbound_resources,),
        what,
    )
    pair_key = ("pair", upstreams, routes)
    pair = context.layers.get(pair_key)
    if not isinstance(pair, _Outbound):
        for url in PUSH_ORDER:
            _check_clashes(url, (upstreams.by_type[url], routes.by_type[url]), what)
        unresolved = frozenset(
            reference
            for reference in upstreams.unresolved | routes.unresolved
            if reference[1] not in routes.by_type[reference[0]]
            and reference[1] not in upstreams.by_type[reference[0]]
        )
        pair = _Outbound(upstreams, routes, unresolved)
        context.layers[pair_key] = pair
    context.layers[key] = pair
    return pair


def _cached_layer(
    context: Context,
    key: tuple[object, ...],
    policy: ProxyPolicy,
    builders: Iterable[Callable[[ProxyPolicy, Context], list[Built]]],
    what: str,
) -> Layer:
    """The layer built from the policy slice ``key[1]`` (built from a policy that holds
    only that slice, so the builders cannot read anything else)."""
    found = context.layers.get(key)
    if isinstance(found, Layer):
        return found
    outbound = key[1]
    assert isinstance(outbound, OutboundPolicy)
    sliced = ProxyPolicy(policy.identity, policy.kind, policy.inbound, outbound, policy.tls)
    layer = _layer(sliced, context, builders, what)
    context.layers[key] = layer
    return layer


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
                            what, [f"two different {_short(url)} named {name!r}"]
                        )
                    repeated += 1
                    break
    return repeated


def _combine(
    policy: ProxyPolicy,
    outbound: _Outbound,
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
                f"a resource names {_short(wanted_type)} {name!r}, which is not in the snapshot"
                for wanted_type, name in sorted(missing)
            ],
        )
    return ResourceSet(policy, MappingProxyType(types), layers)


def resource_set(
    policy: ProxyPolicy, context: Context, what: str = "", old: ResourceSet | None = None
) -> ResourceSet:
    """Builds, checks and versions the resources of one policy.

    The outbound layers are built once per distinct view of the outbound policy and
    shared (see the module docstring); only the inbound layer is per policy. With
    ``old`` (the set this one replaces), an inbound layer of the same content is
    ``old``'s, and types whose layers did not change keep ``old``'s objects. Raises
    InconsistentSnapshot or MissingCredentials.
    """
    what = what or str(policy.identity)
    outbound = _outbound(policy, context, what)
    inbound = _layer(policy, context, _INBOUND_BUILDERS, what)
    if old is not None and len(old.layers) == 3:
        kept = old.layers[2]
        if kept.versions == inbound.versions and kept.unresolved == inbound.unresolved:
            inbound = kept
    return _combine(policy, outbound, inbound, what, old)


def _outbound_set(
    policy: ProxyPolicy, outbound: OutboundPolicy, old: ResourceSet, context: Context, what: str
) -> ResourceSet:
    """``old`` with a new outbound policy: its inbound layer is kept as it is."""
    new_policy = ProxyPolicy(policy.identity, policy.kind, policy.inbound, outbound, policy.tls)
    layers = _outbound(new_policy, context, what)
    return _combine(new_policy, layers, old.layers[2], what, old)


class ClassKey:
    """A class of proxies (`Proxy.class_key`), interned by the `Generator` so that its
    many dict and set operations hash by identity, not by a nested tuple of values."""

    __slots__ = ("value",)

    def __init__(self, value: tuple[object, ...]) -> None:
        self.value = value


class Generator:
    """Turns mesh states into snapshots, reusing everything a change did not touch.

    ``credentials`` gives each identity's PEM credentials (None: placeholders, for
    offline tools); ``grpc_mtls`` False builds plaintext clusters for proxyless gRPC
    clients. Not thread-safe: call `build` from one task at a time.

    Between builds it keeps, per class of proxies, the resource set, the members (the
    proxies whose snapshot is that set) and one member's `Proxy` (a class's policy
    depends only on its key), plus indexes from services, identities and outbound
    policies to classes. Invariant: every member's snapshot holds its class's set.
    """

    def __init__(
        self,
        *,
        credentials: CredentialSource | None = None,
        trust_bundle: bytes = b"",
        grpc_mtls: bool = True,
        trust_domain: str = TRUST_DOMAIN,
    ) -> None:
        self.context = Context(
            credentials=credentials,
            trust_bundle=trust_bundle,
            grpc_mtls=grpc_mtls,
            trust_domain=trust_domain,
        )
        self._last: Snapshots | None = None
        self._catalog: Catalog | None = None
        self._reset_indexes()
        self._live_after_prune = 0

    @property
    def last(self) -> Snapshots | None:
        return self._last

    def build(
        self,
        state: MeshState,
        changed: Changed | None = None,
        *,
        rotated: Iterable[Identity] | None = None,
        trust_bundle: bytes | None = None,
    ) -> Snapshots:
        """Snapshots for every proxy of ``state``.

        ``changed`` is what took the previous build's state to ``state`` (from
        `MeshState.with_changes`, merged over a batch); None, or no previous build,
        means a full build. ``rotated`` names identities whose credentials changed
        (their secrets are rebuilt); a new ``trust_bundle`` rebuilds everything. Full and
        incremental builds give equal snapshots.
        """
        if trust_bundle is not None and trust_bundle != self.context.trust_bundle:
            self.context.trust_bundle = trust_bundle
            changed = None
        memo = self.context.memo
        built_before, reused_before = memo.built, memo.reused
        previous = self._last
        if previous is None or self._catalog is None or changed is None:
            dirty = Dirty(everything=True)
        else:
            dirty = catalog_module.dirty_from(self._catalog, state, changed)
        work = _Work(previous)
        self._reached.clear()
        if dirty.everything:
            catalog = Catalog(state)
            self._full(catalog, work)
        else:
            assert self._catalog is not None
            catalog = self._catalog.derive(state, dirty)
            self._incremental(catalog, dirty, rotated, work)
        self._catalog = catalog
        self._maybe_prune(dirty.everything)
        result = Snapshots(
            state,
            MappingProxyType(work.snapshots),
            tuple(catalog.warnings),
            MappingProxyType(work.errors),
            frozenset(work.changed),
            frozenset(work.gone),
            BuildStats(
                len(work.snapshots),
                work.proxies_recomputed,
                work.classes_recomputed,
                memo.built - built_before,
                memo.reused - reused_before,
                dirty.everything,
            ),
        )
        self._last = result
        return result

    # -- full and incremental builds ----------------------------------------------------
    def _full(self, catalog: Catalog, work: _Work) -> None:
        prior_sets = {key.value: resources for key, resources in self._sets.items()}
        self._reset_indexes()
        work.snapshots = {}
        by_class: dict[ClassKey, list[Proxy]] = {}
        for pod in catalog.state.typed(Pod):
            if catalog.pod_in_mesh(pod):
                proxy = catalog.proxy_for(pod)
                by_class.setdefault(self._intern(proxy.class_key), []).append(proxy)
        for key, proxies in by_class.items():
            outcome = self._class_set(catalog, proxies[0], prior_sets.get(key.value))
            work.classes_recomputed += 1
            work.proxies_recomputed += len(proxies)
            if isinstance(outcome, str):
                for proxy in proxies:
                    work.fail(proxy.id, outcome)
                continue
            self._adopt(key, outcome, proxies[0], catalog)
            for proxy in proxies:
                self._join(key, proxy, work)
        previous = work.previous
        if previous is not None:
            work.gone = set(previous.snapshots) - set(work.snapshots)

    def _incremental(
        self,
        catalog: Catalog,
        dirty: Dirty,
        rotated: Iterable[Identity] | None,
        work: _Work,
    ) -> None:
        previous = work.previous
        assert previous is not None
        # Proxies whose pod (or a service selecting it) changed, and those that failed
        # last time (retried every time), are resolved again; the rest keep their Proxy.
        pending: dict[ClassKey, list[Proxy]] = {}
        for proxy_id in dirty.pods | previous.errors.keys():
            work.errors.pop(proxy_id, None)
            self._leave(proxy_id)
            pod = catalog.state.pod(proxy_id.namespace, proxy_id.name)
            if pod is None or not catalog.pod_in_mesh(pod):
                if work.snapshots.pop(proxy_id, None) is not None:
                    work.gone.add(proxy_id)
                continue
            proxy = catalog.proxy_for(pod)
            pending.setdefault(self._intern(proxy.class_key), []).append(proxy)
            work.proxies_recomputed += 1
        whole, outbound_only = self._affected_classes(dirty, catalog, rotated)
        whole.update(key for key in pending if key not in self._sets)
        for key in (*whole, *(k for k in outbound_only if k not in whole)):
            members = self._members.get(key, set())
            joining = pending.get(key, [])
            if not members and not joining:
                self._drop(key)
                continue
            old = self._sets.get(key)
            work.classes_recomputed += 1
            work.proxies_recomputed += len(members)
            if key in whole or old is None:
                proxy = joining[0] if joining else self._proxies[key]
                outcome = self._class_set(catalog, proxy, old)
            else:
                outcome = self._outbound_class_set(catalog, key, old)
            if isinstance(outcome, str):
                for proxy_id in members:
                    work.fail(proxy_id, outcome)
                for proxy in joining:
                    work.fail(proxy.id, outcome)
                self._drop(key)
                continue
            if outcome is old:
                continue
            self._adopt(key, outcome, joining[0] if joining else self._proxies[key], catalog)
            served_again = old is not None and _same_content(old, outcome)
            for proxy_id in members:
                snapshot = work.snapshots[proxy_id]
                work.snapshots[proxy_id] = Snapshot(snapshot.proxy, outcome)
                if not served_again:
                    work.changed.add(proxy_id)
        for key, proxies in pending.items():
            if key in self._sets:
                for proxy in proxies:
                    self._join(key, proxy, work)
        for key in [k for k, members in self._members.items() if not members]:
            self._drop(key)

    # -- classes -----------------------------------------------------------------------
    def _class_set(
        self, catalog: Catalog, proxy: Proxy, old: ResourceSet | None
    ) -> ResourceSet | str:
        """The resource set of a class (the previous object when nothing in it
        changed), or why it could not be built."""
        try:
            built = resource_set(catalog.policy(proxy), self.context, str(proxy.id), old)
        except (InconsistentSnapshot, MissingCredentials) as error:
            return str(error)
        return _same_or(old, built)

    def _outbound_class_set(
        self, catalog: Catalog, key: ClassKey, old: ResourceSet
    ) -> ResourceSet | str:
        """A class affected only through what it reaches: new outbound layers, the
        same inbound layer."""
        policy = old.policy
        outbound = catalog.outbound(policy.identity, self._proxies[key].sidecar)
        if outbound is policy.outbound:
            return old
        try:
            built = _outbound_set(policy, outbound, old, self.context, str(self._proxies[key].id))
        except InconsistentSnapshot as error:
            return str(error)
        return _same_or(old, built)

    def _intern(self, value: tuple[object, ...]) -> ClassKey:
        key = self._interned.get(value)
        if key is None:
            key = self._interned[value] = ClassKey(value)
        return key

    def _reset_indexes(self) -> None:
        self._interned: dict[tuple[object, ...], ClassKey] = {}
        self._sets: dict[ClassKey, ResourceSet] = {}
        self._members: dict[ClassKey, set[ProxyId]] = {}
        self._proxies: dict[ClassKey, Proxy] = {}
        self._class_of: dict[ProxyId, ClassKey] = {}
        self._by_local_service: dict[ServiceId, set[ClassKey]] = {}
        self._by_identity: dict[Identity, set[ClassKey]] = {}
        self._by_outbound_key: dict[object, set[ClassKey]] = {}
        self._outbound_keys_by_service: dict[ServiceId, set[object]] = {}
        self._registered: dict[object, tuple[tuple[OutboundPort, ...], frozenset[ServiceId]]] = {}
        self._reached: dict[int, tuple[tuple[OutboundPort, ...], frozenset[ServiceId]]] = {}

    def _outbound_key(self, catalog: Catalog, identity: Identity) -> object:
        return ("namespace", identity.namespace) if catalog.permissive else identity

    def _adopt(self, key: ClassKey, resources: ResourceSet, proxy: Proxy, catalog: Catalog) -> None:
        """Makes ``resources`` the set of class ``key`` and indexes what it depends on
        (indexes only grow between full builds: a stale entry costs a recomputation)."""
        first = key not in self._sets
        self._sets[key] = resources
        self._proxies.setdefault(key, proxy)
        self._members.setdefault(key, set())
        policy = resources.policy
        if first:
            self._by_identity.setdefault(policy.identity, set()).add(key)
            for port in policy.inbound.ports:
                self._by_local_service.setdefault(port.service, set()).add(key)
        outbound_key = self._outbound_key(catalog, policy.identity)
        self._by_outbound_key.setdefault(outbound_key, set()).add(key)
        reached = policy.outbound.ports
        registered = self._registered.get(outbound_key)
        if registered is None or registered[0] is not reached:
            services = self._services_reached(reached)
            new = services if registered is None else services - registered[1]
            for service in new:
                self._outbound_keys_by_service.setdefault(service, set()).add(outbound_key)
            known = services if registered is None else registered[1] | new
            self._registered[outbound_key] = (reached, known)

    def _services_reached(self, ports: tuple[OutboundPort, ...]) -> frozenset[ServiceId]:
        """Services of ``ports`` and of their upstreams (memoized per tuple within a
        build: permissive namespaces share one)."""
        found = self._reached.get(id(ports))
        if found is None or found[0] is not ports:
            services = {port.service for port in ports}
            services.update(u.service for port in ports for u in port.upstreams)
            found = (ports, frozenset(services))
            self._reached[id(ports)] = found
        return found[1]

    def _join(self, key: ClassKey, proxy: Proxy, work: _Work) -> None:
        """Makes ``proxy`` a member of class ``key``, its snapshot the class's set."""
        resources = self._sets[key]
        self._class_of[proxy.id] = key
        self._members[key].add(proxy.id)
        old = work.previous.snapshots.get(proxy.id) if work.previous else None
        if old is not None and old.resources is resources and old.proxy == proxy:
            work.snapshots[proxy.id] = old
            return
        work.snapshots[proxy.id] = Snapshot(proxy, resources)
        if old is None or old.proxy != proxy or not _same_content(old.resources, resources):
            work.changed.add(proxy.id)

    def _leave(self, proxy_id: ProxyId) -> None:
        key = self._class_of.pop(proxy_id, None)
        if key is not None:
            self._members[key].discard(proxy_id)

    def _drop(self, key: ClassKey) -> None:
        for proxy_id in self._members.pop(key, set()):
            self._class_of.pop(proxy_id, None)
        self._sets.pop(key, None)
        self._proxies.pop(key, None)
        if self._interned.get(key.value) is key:
            del self._interned[key.value]

    def _affected_classes(
        self, dirty: Dirty, catalog: Catalog, rotated: Iterable[Identity] | None
    ) -> tuple[set[ClassKey], set[ClassKey]]:
        """Classes to rebuild whole (their inbound side may have changed) and classes
        affected only through their outbound policy."""
        whole: set[ClassKey] = set()
        for service in dirty.services:
            whole |= self._by_local_service.get(service, set())
        for identity in (*dirty.identities, *(rotated or ())):
            whole |= self._by_identity.get(identity, set())
        if dirty.mesh_services and catalog.permissive:
            return whole, set(self._members)
        outbound_keys: set[object] = set()
        for service in dirty.services:
            outbound_keys |= self._outbound_keys_by_service.get(service, set())
        outbound: set[ClassKey] = set()
        for outbound_key in outbound_keys:
            outbound |= self._by_outbound_key.get(outbound_key, set())
        return whole, outbound

    # -- memory ------------------------------------------------------------------------
    def _maybe_prune(self, full: bool) -> None:
        """Drops memoized resources, layers and parts no snapshot uses any more, after
        a full build or when the memo has grown to twice what was live at the last
        prune."""
        memo = self.context.memo
        if not full and len(memo) <= 2 * max(self._live_after_prune, 1000):
            return
        layers: dict[int, Layer] = {}
        for resources in self._sets.values():
            for layer in resources.layers:
                layers[id(layer)] = layer
        live: set[int] = {id(lds._NONE)}
        for layer in layers.values():
            for typed in layer.by_type.values():
                live.update(id(b) for b in typed.values())
        memo.retain(live)
        self.context.layers = {
            key: value
            for key, value in self.context.layers.items()
            if all(id(layer) in layers for layer in _layers_of(value))
        }
        self.context.new_generation()
        self._live_after_prune = len(memo)


def _layers_of(value: object) -> tuple[Layer, ...]:
    if isinstance(value, _Outbound):
        return (value.upstreams, value.routes)
    assert isinstance(value, Layer)
    return (value,)


def _same_or(old: ResourceSet | None, built: ResourceSet) -> ResourceSet:
    """``old`` when ``built`` has the same content and policy (so that its proxies do
    not count as changed), else ``built``."""
    if old is None:
        return built
    for url in PUSH_ORDER:
        before, after = old.types[url], built.types[url]
        if before is not after and before.version != after.version:
            return built
    return old if old.policy == built.policy else built


def _same_content(old: ResourceSet, new: ResourceSet) -> bool:
    """Whether two sets serve the same resources (their policies may differ in what no
    resource shows, such as the order of a proxyless client's ports)."""
    return all(old.types[url].version == new.types[url].version for url in PUSH_ORDER)


def _copy(mapping: Mapping[K, V]) -> dict[K, V]:
    """A dict copy; of a dict behind a MappingProxyType, a fast one (hashes kept)."""
    if isinstance(mapping, MappingProxyType):
        copied = mapping.copy()
        if isinstance(copied, dict):
            return copied
    return dict(mapping)


class _Work:
    """The state of one build in progress."""

    __slots__ = (
        "changed",
        "classes_recomputed",
        "errors",
        "gone",
        "previous",
        "proxies_recomputed",
        "snapshots",
    )

    def __init__(self, previous: Snapshots | None) -> None:
        self.previous = previous
        self.snapshots: dict[ProxyId, Snapshot] = _copy(previous.snapshots) if previous else {}
        self.errors: dict[ProxyId, str] = _copy(previous.errors) if previous else {}
        self.changed: set[ProxyId] = set()
        self.gone: set[ProxyId] = set()
        self.classes_recomputed = 0
        self.proxies_recomputed = 0

    def fail(self, proxy_id: ProxyId, error: str) -> None:
        """Records a failed update; the proxy keeps its previous snapshot, if any."""
        self.errors[proxy_id] = error
        if self.previous is not None and proxy_id in self.previous.snapshots:
            self.snapshots[proxy_id] = self.previous.snapshots[proxy_id]


def build_snapshots(
    state: MeshState,
    *,
    credentials: CredentialSource | None = None,
    trust_bundle: bytes = b"",
    grpc_mtls: bool = True,
    trust_domain: str = TRUST_DOMAIN,
) -> Snapshots:
    """One full build with a fresh `Generator` (tools and tests)."""
    generator = Generator(
        credentials=credentials,
        trust_bundle=trust_bundle,
        grpc_mtls=grpc_mtls,
        trust_domain=trust_domain,
    )
    return generator.build(state)


__all__ = [
    "BuildStats",
    "Generator",
    "InconsistentSnapshot",
    "Layer",
    "LayeredResources",
    "ResourceSet",
    "Snapshot",
    "Snapshots",
    "TypedResources",
    "build_snapshots",
    "consistency_problems",
    "resource_set",
]
