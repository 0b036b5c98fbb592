"""Snapshots: per proxy, a frozen and checked set of resources per xDS type.

The one idea: proxies with the same policy (same `Proxy.class_key`) share one
`ResourceSet`, whose resources are shared with every other set that needs them
(builders are memoized on policy values), so the cost of a build grows with distinct
resources, not proxies x services. Each set is checked for consistency before anyone
sees it (every cluster, route configuration, secret and load assignment a resource
names exists) and versioned per type by a hash of its resources' content.

`Generator.build(state, changed)` recomputes only the proxies a change can affect
(`osm.catalog.catalog.dirty_from`) and reuses everything else; that is what the
controller calls after each (debounced) batch of events. Generators are not
thread-safe; the `Snapshots` they return are immutable and safe to share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from google.protobuf.message import Message

from osm.catalog import catalog as catalog_module
from osm.catalog.catalog import Catalog, Dirty
from osm.catalog.ids import TRUST_DOMAIN, Identity, ProxyId, ServiceId
from osm.catalog.policy import CatalogWarning, Proxy, ProxyPolicy
from osm.catalog.state import Changed, MeshState
from osm.xds import cds, eds, lds, rds, sds
from osm.xds.context import Context, CredentialSource, MissingCredentials
from osm.xds.resources import TYPE_URLS, Built


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
    proxies whose snapshot differs from the previous build's (new ones included);
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
    for type_url in TYPE_URLS:
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


@dataclass(frozen=True, slots=True, eq=False)
class _Part:
    """Resources of one side (outbound or inbound) of a policy, checked internally."""

    by_type: Mapping[str, Mapping[str, Built]]
    versions: Mapping[str, str]
    unresolved: frozenset[tuple[str, str]]
    typed: Mapping[str, TypedResources]


_OUTBOUND_BUILDERS = (
    lds.outbound_resources,
    rds.outbound_resources,
    cds.outbound_resources,
    eds.outbound_resources,
    sds.outbound_resources,
)
_INBOUND_BUILDERS = (
    lds.inbound_resources,
    rds.inbound_resources,
    cds.inbound_resources,
    eds.inbound_resources,
    sds.inbound_resources,
)


def _part(policy: ProxyPolicy, context: Context, builders: Iterable[Any], what: str) -> _Part:
    by_type: dict[str, dict[str, Built]] = {url: {} for url in TYPE_URLS}
    for builder in builders:
        for built in builder(policy, context):
            existing = by_type[built.type_url].get(built.name)
            if existing is not None and existing.digest != built.digest:
                raise InconsistentSnapshot(
                    what, [f"two different {_short(built.type_url)} named {built.name!r}"]
                )
            by_type[built.type_url][built.name] = built
    sorted_types = {url: {n: by_type[url][n] for n in sorted(by_type[url])} for url in TYPE_URLS}
    unresolved = frozenset(
        reference
        for resources in sorted_types.values()
        for built in resources.values()
        for reference in built.references
        if reference[1] not in sorted_types[reference[0]]
    )
    versions = {url: version_of(sorted_types[url].values()) for url in TYPE_URLS}
    typed = {
        url: TypedResources(url, versions[url], MappingProxyType(sorted_types[url]))
        for url in TYPE_URLS
    }
    return _Part(sorted_types, versions, unresolved, typed)


def resource_set(policy: ProxyPolicy, context: Context, what: str = "") -> ResourceSet:
    """Builds, checks and versions the resources of one policy.

    The outbound half (everything that depends only on ``policy.outbound``, the proxy
    kind and TLS settings: upstream clusters, load assignments, outbound listener and
    routes) is built and checked once per distinct outbound policy and shared; only
    the inbound half is per policy. A type's version is a hash of both halves'
    content hashes. Raises InconsistentSnapshot or MissingCredentials.
    """
    what = what or str(policy.identity)
    key = ("outbound", policy.outbound, policy.kind, policy.tls)
    outbound = context.bundles.get(key)
    if outbound is None:
        outbound = _part(policy, context, _OUTBOUND_BUILDERS, what)
        context.bundles[key] = outbound
    inbound = _part(policy, context, _INBOUND_BUILDERS, what)
    types: dict[str, TypedResources] = {}
    problems: list[str] = []
    for url in TYPE_URLS:
        inner = inbound.by_type[url]
        if not inner:
            types[url] = outbound.typed[url]
            continue
        outer = outbound.by_type[url]
        for name, built in inner.items():
            clash = outer.get(name)
            if clash is not None and clash.digest != built.digest:
                problems.append(f"two different {_short(url)} named {name!r}")
        merged = {**outer, **inner}
        version = hashlib.sha256(
            f"{outbound.versions[url]}/{inbound.versions[url]}".encode()
        ).hexdigest()[:16]
        types[url] = TypedResources(url, version, MappingProxyType(merged))
    for wanted_type, wanted in sorted(outbound.unresolved | inbound.unresolved):
        if wanted not in types[wanted_type].resources:
            problems.append(
                f"a resource names {_short(wanted_type)} {wanted!r}, which is not in the snapshot"
            )
    if problems:
        raise InconsistentSnapshot(what, problems)
    return ResourceSet(policy, MappingProxyType(types))


ClassKey = tuple[object, ...]


class Generator:
    """Turns mesh states into snapshots, reusing everything a change did not touch.

    ``credentials`` gives each identity's PEM credentials (None: placeholders, for
    offline tools); ``grpc_mtls`` False builds plaintext clusters for proxyless gRPC
    clients. Not thread-safe: call `build` from one task at a time.
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
        self._sets: dict[ClassKey, ResourceSet] = {}
        self._members: dict[ClassKey, set[ProxyId]] = {}
        self._class_of: dict[ProxyId, ClassKey] = {}
        self._by_local_service: dict[ServiceId, set[ClassKey]] = {}
        self._by_identity: dict[Identity, set[ClassKey]] = {}
        self._by_outbound_key: dict[object, set[ClassKey]] = {}
        self._outbound_keys_by_service: dict[ServiceId, set[object]] = {}
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
        prior_sets = dict(self._sets)
        if dirty.everything:
            catalog = Catalog(state)
            proxies = catalog.proxies()
            targets = {p.id for p in proxies}
            self._reset_indexes()
            gone: set[ProxyId] = set(previous.snapshots) - targets if previous else set()
        else:
            assert self._catalog is not None and previous is not None
            catalog = self._catalog.derive(state, dirty)
            classes = self._affected_classes(dirty, catalog, rotated)
            # Proxies that failed last time are retried every time.
            targets = set(dirty.pods) | set(previous.errors)
            for key in classes:
                targets |= self._members.get(key, set())
            gone = set()
        snapshots: dict[ProxyId, Snapshot] = dict(previous.snapshots) if previous else {}
        errors: dict[ProxyId, str] = {}
        if previous and not dirty.everything:
            errors = {k: v for k, v in previous.errors.items() if k not in targets}
        changed_ids: set[ProxyId] = set()
        recomputed: dict[ClassKey, ResourceSet | str] = {}
        for proxy_id in sorted(targets):
            self._forget(proxy_id)
            pod = state.pod(proxy_id.namespace, proxy_id.name)
            if pod is None or not catalog.pod_in_mesh(pod):
                if snapshots.pop(proxy_id, None) is not None:
                    gone.add(proxy_id)
                continue
            proxy = catalog.proxy_for(pod)
            key = proxy.class_key
            outcome = recomputed.get(key)
            if outcome is None:
                outcome = self._class_set(catalog, proxy, prior_sets.get(key))
                recomputed[key] = outcome
            if isinstance(outcome, str):
                errors[proxy_id] = outcome  # the previous snapshot, if any, stays
                continue
            self._remember(proxy_id, key, outcome, catalog)
            old = snapshots.get(proxy_id)
            if old is not None and old.proxy == proxy and old.resources is outcome:
                continue
            snapshots[proxy_id] = Snapshot(proxy, outcome)
            changed_ids.add(proxy_id)
        for proxy_id in gone:
            snapshots.pop(proxy_id, None)
        self._catalog = catalog
        self._maybe_prune(dirty.everything)
        result = Snapshots(
            state,
            MappingProxyType(snapshots),
            tuple(catalog.warnings),
            MappingProxyType(errors),
            frozenset(changed_ids),
            frozenset(gone),
            BuildStats(
                len(snapshots),
                len(targets),
                len(recomputed),
                memo.built - built_before,
                memo.reused - reused_before,
                dirty.everything,
            ),
        )
        self._last = result
        return result

    # -- classes -----------------------------------------------------------------------
    def _class_set(
        self, catalog: Catalog, proxy: Proxy, old: ResourceSet | None
    ) -> ResourceSet | str:
        """The resource set of a class (the previous object when nothing in it
        changed), or why it could not be built."""
        try:
            built = resource_set(catalog.policy(proxy), self.context, str(proxy.id))
        except (InconsistentSnapshot, MissingCredentials) as error:
            return str(error)
        if old is not None and old.versions() == built.versions() and old.policy == built.policy:
            return old
        return built

    def _reset_indexes(self) -> None:
        self._sets = {}
        self._members = {}
        self._class_of = {}
        self._by_local_service = {}
        self._by_identity = {}
        self._by_outbound_key = {}
        self._outbound_keys_by_service = {}

    def _outbound_key(self, catalog: Catalog, identity: Identity) -> object:
        return ("namespace", identity.namespace) if catalog.permissive else identity

    def _remember(
        self, proxy_id: ProxyId, key: ClassKey, resources: ResourceSet, catalog: Catalog
    ) -> None:
        self._class_of[proxy_id] = key
        members = self._members.setdefault(key, set())
        first = not members
        members.add(proxy_id)
        self._sets[key] = resources
        if not first:
            return
        policy = resources.policy
        self._by_identity.setdefault(policy.identity, set()).add(key)
        for port in policy.inbound.ports:
            self._by_local_service.setdefault(port.service, set()).add(key)
        outbound_key = self._outbound_key(catalog, policy.identity)
        classes = self._by_outbound_key.setdefault(outbound_key, set())
        if not classes:
            services = {p.service for p in policy.outbound.ports}
            services |= {u.service for p in policy.outbound.ports for u in p.upstreams}
            for service in services:
                self._outbound_keys_by_service.setdefault(service, set()).add(outbound_key)
        classes.add(key)

    def _forget(self, proxy_id: ProxyId) -> None:
        key = self._class_of.pop(proxy_id, None)
        if key is None:
            return
        members = self._members.get(key)
        if members is not None:
            members.discard(proxy_id)
            if not members:
                del self._members[key]
                self._sets.pop(key, None)

    def _affected_classes(
        self, dirty: Dirty, catalog: Catalog, rotated: Iterable[Identity] | None
    ) -> set[ClassKey]:
        if dirty.mesh_services and catalog.permissive:
            return set(self._members)
        classes: set[ClassKey] = set()
        outbound_keys: set[object] = set()
        for service in dirty.services:
            classes |= self._by_local_service.get(service, set())
            outbound_keys |= self._outbound_keys_by_service.get(service, set())
        for outbound_key in outbound_keys:
            classes |= self._by_outbound_key.get(outbound_key, set())
        for identity in (*dirty.identities, *(rotated or ())):
            classes |= self._by_identity.get(identity, set())
        return classes

    # -- memory ------------------------------------------------------------------------
    def _maybe_prune(self, full: bool) -> None:
        """Drops memoized resources no snapshot uses any more, after a full build or
        when the memo has grown to twice what was live at the last prune."""
        memo = self.context.memo
        if not full and len(memo) <= 2 * max(self._live_after_prune, 1000):
            return
        live: set[int] = set()
        seen_sets: set[int] = set()
        for resources in self._sets.values():
            if id(resources) in seen_sets:
                continue
            seen_sets.add(id(resources))
            for typed in resources.types.values():
                live.update(id(b) for b in typed.resources.values())
        memo.retain(live | {id(lds._NONE)})
        self.context.parts.clear()
        self.context.bundles.clear()
        self._live_after_prune = len(memo)


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
    "ResourceSet",
    "Snapshot",
    "Snapshots",
    "TypedResources",
    "build_snapshots",
    "consistency_problems",
    "resource_set",
]
