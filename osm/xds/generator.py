"""The generator: from the catalog's policy to every proxy's snapshot, incrementally.

The one idea: proxies come in *classes* (same `Proxy.class_key`, same policy, one
shared resource set), and `Generator.build(state, changed)` recomputes only the
classes a change can affect (`osm.catalog.catalog.dirty_from`). A class that is
affected only through what it reaches (say a split on a service it calls) keeps its
inbound layer and policy and gets the new outbound layers (`osm.xds.layers`); a type
whose layers are the same objects keeps its `TypedResources`. Proxies of unchanged
classes are not touched, and `Snapshots.changed` names exactly the proxies whose
resources or proxy value changed. That is what the controller calls after each
(debounced) batch of events. Generators are not thread-safe; the `Snapshots` they
return are immutable and safe to share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

from osm.base.identity import TRUST_DOMAIN, Identity
from osm.base.wellknown import PUSH_ORDER
from osm.catalog import catalog as catalog_module
from osm.catalog.catalog import Catalog, Dirty
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import OutboundPort, Proxy
from osm.catalog.state import Changed, MeshState
from osm.model.core import Pod
from osm.xds import layers, tracing
from osm.xds.context import Context, CredentialSource, MissingCredentials, Settings
from osm.xds.snapshot import BuildStats, InconsistentSnapshot, ResourceSet, Snapshot, Snapshots

K = TypeVar("K")
V = TypeVar("V")


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
        self.context = Context()
        self.credentials = credentials
        self.settings = Settings(
            trust_domain=trust_domain,
            grpc_mtls=grpc_mtls,
            trust_bundle=trust_bundle,
            placeholders=credentials is None,
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
        if trust_bundle is not None and trust_bundle != self.settings.trust_bundle:
            self.settings = dataclasses.replace(self.settings, trust_bundle=trust_bundle)
            changed = None
        traced = tracing.from_mesh_config(state.mesh_config)
        if traced != self.settings.tracing:  # a MeshConfig change: everything is dirty
            self.settings = dataclasses.replace(self.settings, tracing=traced)
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
            built = layers.resource_set(
                catalog.policy(proxy),
                self.settings,
                self.credentials,
                self.context,
                str(proxy.id),
                old,
            )
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
            built = layers.outbound_set(
                policy, outbound, old, self.settings, self.context, str(self._proxies[key].id)
            )
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
        layers.prune(self.context, self._sets.values())
        self._live_after_prune = len(memo)


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


__all__ = ["ClassKey", "Generator", "build_snapshots"]
