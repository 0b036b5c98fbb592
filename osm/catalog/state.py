"""MeshState: an immutable, indexed snapshot of every resource of the mesh.

The one idea: a state is never modified; `MeshState.with_changes` returns a new state
that shares every index the change did not touch (copy-on-write per kind and per
index, one dict copy each, no rebuild from scratch), together with a `Changed` value
naming what changed, so a caller can find the proxies affected.

Indexes answer the catalog's questions without scanning: services selecting a pod's
labels, pods selected by a service, pods per identity, TrafficTargets by destination,
source and rule, TrafficSplits by apex, backend and route group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from osm.base import wellknown
from osm.base.identity import Identity
from osm.catalog.ids import ServiceId
from osm.model.config import MeshConfig, default_mesh_config
from osm.model.core import Endpoints, Namespace, Pod, Service
from osm.model.meta import ObjectRef, Resource
from osm.model.policy import (
    MATCH_KINDS,
    Egress,
    IngressBackend,
    Retry,
    UpstreamTrafficSetting,
)
from osm.model.smi import HTTPRouteGroup, TCPRoute, TrafficSplit, TrafficTarget

Key = tuple[str, str]
"""(namespace, name) of an object within its kind; namespace is "" for cluster kinds."""

R = TypeVar("R", bound=Resource)
_EMPTY: frozenset[Key] = frozenset()


def apex_name(split: TrafficSplit) -> str:
    """The apex Service's name; a FQDN-style ``svc.ns...`` apex means its first label."""
    return split.service.split(".", 1)[0]


def _service_labels(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, Service)
    return [(resource.namespace, k, v) for k, v in resource.selector.items()]


def _pod_labels(resource: Resource) -> Iterable[object]:
    return [(resource.namespace, k, v) for k, v in resource.metadata.labels.items()]


def _pod_identity(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, Pod)
    return [Identity(resource.namespace, resource.spec.service_account_name)]


def _target_destination(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, TrafficTarget)
    return [Identity(resource.destination.namespace, resource.destination.name)]


def _target_sources(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, TrafficTarget)
    return [Identity(source.namespace, source.name) for source in resource.sources]


def _target_rules(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, TrafficTarget)
    return [(resource.namespace, rule.kind, rule.name) for rule in resource.rules]


def _split_apex(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, TrafficSplit)
    return [ServiceId(resource.namespace, apex_name(resource))]


def _split_backends(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, TrafficSplit)
    return [ServiceId(resource.namespace, backend.service) for backend in resource.backends]


def _split_groups(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, TrafficSplit)
    return [(resource.namespace, group) for group in resource.matches]


def _egress_sources(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, Egress)
    return [Identity(source.namespace, source.name) for source in resource.sources]


def _policy_matches(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, (Egress, IngressBackend))
    return [
        (resource.namespace, match.kind, match.name)
        for match in resource.matches
        if MATCH_KINDS.get(match.api_group) == match.kind
    ]


def _ingress_backends(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, IngressBackend)
    return [ServiceId(resource.namespace, backend.name) for backend in resource.backends]


def _ingress_source_services(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, IngressBackend)
    return [
        ServiceId(source.namespace or resource.namespace, source.name)
        for source in resource.sources
        if source.kind == Service.KIND
    ]


def _retry_source(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, Retry)
    return [Identity(resource.source.namespace, resource.source.name)]


def _setting_host(resource: Resource) -> Iterable[object]:
    assert isinstance(resource, UpstreamTrafficSetting)
    return [(resource.namespace, resource.host)]


# index name -> (kind indexed, function giving the index keys of one object)
_INDEXES: Mapping[str, tuple[str, Callable[[Resource], Iterable[object]]]] = {
    "services_by_label": (Service.KIND, _service_labels),
    "pods_by_label": (Pod.KIND, _pod_labels),
    "pods_by_identity": (Pod.KIND, _pod_identity),
    "targets_by_destination": (TrafficTarget.KIND, _target_destination),
    "targets_by_source": (TrafficTarget.KIND, _target_sources),
    "targets_by_rule": (TrafficTarget.KIND, _target_rules),
    "splits_by_apex": (TrafficSplit.KIND, _split_apex),
    "splits_by_backend": (TrafficSplit.KIND, _split_backends),
    "splits_by_group": (TrafficSplit.KIND, _split_groups),
    "egress_by_source": (Egress.KIND, _egress_sources),
    "egress_by_match": (Egress.KIND, _policy_matches),
    "ingress_by_backend": (IngressBackend.KIND, _ingress_backends),
    "ingress_by_match": (IngressBackend.KIND, _policy_matches),
    "ingress_by_source_service": (IngressBackend.KIND, _ingress_source_services),
    "retries_by_source": (Retry.KIND, _retry_source),
    "settings_by_host": (UpstreamTrafficSetting.KIND, _setting_host),
}
_INDEXES_OF_KIND: Mapping[str, tuple[str, ...]] = {
    kind: tuple(name for name, (k, _) in _INDEXES.items() if k == kind)
    for kind in {k for k, _ in _INDEXES.values()}
}


@dataclass(frozen=True, slots=True)
class Changed:
    """What one `MeshState.with_changes` call (or several, `merged`) changed.

    ``before`` maps each changed object to its previous version (absent: it is new);
    ``after`` to its new version (absent: it was deleted). Upserting an object equal to
    the stored one is not a change. ``everything`` asks the consumer to treat the whole
    state as changed (a first build, a relist).
    """

    refs: frozenset[ObjectRef] = frozenset()
    before: Mapping[ObjectRef, Resource] = field(default_factory=dict)
    after: Mapping[ObjectRef, Resource] = field(default_factory=dict)
    everything: bool = False

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(ref.kind for ref in self.refs)

    def __bool__(self) -> bool:
        return self.everything or bool(self.refs)

    def of_kind(self, kind: str) -> list[ObjectRef]:
        return sorted((r for r in self.refs if r.kind == kind), key=lambda r: (r.namespace, r.name))

    def versions(self, ref: ObjectRef) -> list[Resource]:
        """The object's versions before and after the change that exist (0 to 2)."""
        return [v for v in (self.before.get(ref), self.after.get(ref)) if v is not None]

    def merged(self, later: Changed) -> Changed:
        """This change followed by ``later`` as one change (for batching events)."""
        before = {r: v for r, v in later.before.items() if r not in self.refs}
        before.update(self.before)
        after = dict(self.after)
        after.update(later.after)
        for ref in later.refs:
            if ref not in later.after:
                after.pop(ref, None)
        return Changed(self.refs | later.refs, before, after, self.everything or later.everything)

    @classmethod
    def all(cls) -> Changed:
        return cls(everything=True)


class MeshState:
    """An immutable snapshot of the mesh's resources (typed `osm.model` objects).

    Build one with `from_resources`, derive the next with `with_changes`. Lookups
    return objects in a deterministic order (by namespace, then name). Safe to share
    between threads: nothing mutates after construction.
    """

    __slots__ = ("_indexes", "_mesh_config", "_objects")

    def __init__(
        self,
        objects: Mapping[str, Mapping[Key, Resource]],
        indexes: Mapping[str, Mapping[object, frozenset[Key]]],
        mesh_config: MeshConfig,
    ) -> None:
        self._objects = objects
        self._indexes = indexes
        self._mesh_config = mesh_config

    @classmethod
    def empty(cls) -> MeshState:
        return cls({}, {name: {} for name in _INDEXES}, default_mesh_config())

    @classmethod
    def from_resources(cls, resources: Iterable[Resource]) -> MeshState:
        """A state holding ``resources`` (a later object with the same ref wins)."""
        return cls.empty().with_changes(upserts=resources)[0]

    # -- updates ----------------------------------------------------------------------
    def with_changes(
        self, upserts: Iterable[Resource] = (), deletes: Iterable[ObjectRef] = ()
    ) -> tuple[MeshState, Changed]:
        """The state after applying ``upserts`` then ``deletes``, and what changed.

        Cost is proportional to the kinds and indexes touched (one dict copy each) plus
        the changed objects, never a rebuild of the whole state. ``self`` is unchanged.
        """
        objects: dict[str, Mapping[Key, Resource]] = dict(self._objects)
        indexes: dict[str, Mapping[object, frozenset[Key]]] = dict(self._indexes)
        copied: set[str] = set()
        before: dict[ObjectRef, Resource] = {}
        after: dict[ObjectRef, Resource] = {}
        refs: set[ObjectRef] = set()

        def writable(kind: str) -> dict[Key, Resource]:
            if kind not in copied:
                copied.add(kind)
                objects[kind] = dict(objects.get(kind, {}))
                for name in _INDEXES_OF_KIND.get(kind, ()):
                    indexes[name] = dict(indexes[name])
            table = objects[kind]
            assert isinstance(table, dict)
            return table

        def reindex(kind: str, key: Key, old: Resource | None, new: Resource | None) -> None:
            for name in _INDEXES_OF_KIND.get(kind, ()):
                index = indexes[name]
                assert isinstance(index, dict)
                keys_of = _INDEXES[name][1]
                old_keys = set(keys_of(old)) if old is not None else set()
                new_keys = set(keys_of(new)) if new is not None else set()
                for index_key in old_keys - new_keys:
                    remaining = index.get(index_key, _EMPTY) - {key}
                    if remaining:
                        index[index_key] = remaining
                    else:
                        index.pop(index_key, None)
                for index_key in new_keys - old_keys:
                    index[index_key] = index.get(index_key, _EMPTY) | {key}

        def record(ref: ObjectRef, old: Resource | None, new: Resource | None) -> None:
            if ref not in refs:
                refs.add(ref)
                if old is not None:
                    before[ref] = old
            if new is None:
                after.pop(ref, None)
            else:
                after[ref] = new

        for resource in upserts:
            key = (resource.namespace, resource.name)
            old = objects.get(resource.kind, {}).get(key)
            if old is not None and old == resource:
                continue
            writable(resource.kind)[key] = resource
            reindex(resource.kind, key, old, resource)
            record(resource.ref, old, resource)
        for ref in deletes:
            key = (ref.namespace, ref.name)
            old = objects.get(ref.kind, {}).get(key)
            if old is None:
                continue
            del writable(ref.kind)[key]
            reindex(ref.kind, key, old, None)
            record(ref, old, None)
        # A change that was undone within the batch is no change.
        for ref in list(refs):
            if before.get(ref) == after.get(ref):
                refs.discard(ref)
                before.pop(ref, None)
                after.pop(ref, None)
        mesh_config = self._mesh_config
        if MeshConfig.KIND in copied:
            mesh_config = _select_mesh_config(objects.get(MeshConfig.KIND, {}))
        for kind in copied:
            objects[kind] = MappingProxyType(dict(objects[kind]))
        state = MeshState(objects, indexes, mesh_config)
        return state, Changed(frozenset(refs), before, after)

    # -- lookups ----------------------------------------------------------------------
    @property
    def mesh_config(self) -> MeshConfig:
        """The MeshConfig named ``osm-mesh-config`` (OSM's defaults when there is none)."""
        return self._mesh_config

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        return self._objects.get(kind, {}).get((namespace, name))

    def get_ref(self, ref: ObjectRef) -> Resource | None:
        return self.get(ref.kind, ref.namespace, ref.name)

    def all(self, kind: str) -> list[Resource]:
        """Every object of ``kind``, sorted by namespace and name."""
        table = self._objects.get(kind, {})
        return [table[key] for key in sorted(table)]

    def count(self, kind: str) -> int:
        return len(self._objects.get(kind, {}))

    def typed(self, cls: type[R]) -> Iterator[R]:
        for resource in self.all(cls.KIND):
            assert isinstance(resource, cls)
            yield resource

    def _one(self, cls: type[R], namespace: str, name: str) -> R | None:
        resource = self._objects.get(cls.KIND, {}).get((namespace, name))
        assert resource is None or isinstance(resource, cls)
        return resource

    def _many(self, cls: type[R], keys: Iterable[Key]) -> list[R]:
        table = self._objects.get(cls.KIND, {})
        result: list[R] = []
        for key in sorted(keys):
            resource = table.get(key)
            if resource is not None:
                assert isinstance(resource, cls)
                result.append(resource)
        return result

    def _lookup(self, index: str, key: object) -> frozenset[Key]:
        return self._indexes[index].get(key, _EMPTY)

    def namespace(self, name: str) -> Namespace | None:
        return self._one(Namespace, "", name)

    def service(self, service: ServiceId) -> Service | None:
        return self._one(Service, service.namespace, service.name)

    def pod(self, namespace: str, name: str) -> Pod | None:
        return self._one(Pod, namespace, name)

    def endpoints(self, service: ServiceId) -> Endpoints | None:
        return self._one(Endpoints, service.namespace, service.name)

    def route_group(self, namespace: str, name: str) -> HTTPRouteGroup | None:
        return self._one(HTTPRouteGroup, namespace, name)

    def tcp_route(self, namespace: str, name: str) -> TCPRoute | None:
        return self._one(TCPRoute, namespace, name)

    def services_selecting(self, namespace: str, labels: Mapping[str, str]) -> list[Service]:
        """Services in ``namespace`` whose (non-empty) selector matches ``labels``."""
        candidates: set[Key] = set()
        for label, value in labels.items():
            candidates |= self._lookup("services_by_label", (namespace, label, value))
        return [
            service
            for service in self._many(Service, candidates)
            if all(labels.get(k) == v for k, v in service.selector.items())
        ]

    def pods_selected_by(self, service: Service) -> list[Pod]:
        """Pods (ready or not) that ``service``'s selector matches; none if it has none."""
        if not service.selector:
            return []
        sets = [
            self._lookup("pods_by_label", (service.namespace, k, v))
            for k, v in service.selector.items()
        ]
        smallest = min(sets, key=len)
        pods = self._many(Pod, smallest)
        return [
            pod
            for pod in pods
            if all(pod.metadata.labels.get(k) == v for k, v in service.selector.items())
        ]

    def pods_with_identity(self, identity: Identity) -> list[Pod]:
        return self._many(Pod, self._lookup("pods_by_identity", identity))

    def targets_to(self, identity: Identity) -> list[TrafficTarget]:
        """TrafficTargets whose destination is ``identity``."""
        return self._many(TrafficTarget, self._lookup("targets_by_destination", identity))

    def targets_from(self, identity: Identity) -> list[TrafficTarget]:
        """TrafficTargets that list ``identity`` among their sources."""
        return self._many(TrafficTarget, self._lookup("targets_by_source", identity))

    def targets_with_rule(self, namespace: str, kind: str, name: str) -> list[TrafficTarget]:
        return self._many(TrafficTarget, self._lookup("targets_by_rule", (namespace, kind, name)))

    def splits_for(self, apex: ServiceId) -> list[TrafficSplit]:
        """TrafficSplits whose apex is ``apex``, sorted by name."""
        return self._many(TrafficSplit, self._lookup("splits_by_apex", apex))

    def splits_with_backend(self, backend: ServiceId) -> list[TrafficSplit]:
        return self._many(TrafficSplit, self._lookup("splits_by_backend", backend))

    def splits_with_group(self, namespace: str, group: str) -> list[TrafficSplit]:
        return self._many(TrafficSplit, self._lookup("splits_by_group", (namespace, group)))

    # -- OSM policy kinds (policy.openservicemesh.io) ---------------------------------
    def egresses_from(self, identity: Identity) -> list[Egress]:
        """Egress objects listing ``identity`` as a source, sorted by (namespace, name)."""
        return self._many(Egress, self._lookup("egress_by_source", identity))

    def egresses_matching(self, namespace: str, kind: str, name: str) -> list[Egress]:
        """Egress objects whose ``matches`` name the object (HTTPRouteGroup or
        UpstreamTrafficSetting, in the Egress's namespace)."""
        return self._many(Egress, self._lookup("egress_by_match", (namespace, kind, name)))

    def ingress_backends_for(self, service: ServiceId) -> list[IngressBackend]:
        """IngressBackends naming ``service`` as a backend (in its namespace)."""
        return self._many(IngressBackend, self._lookup("ingress_by_backend", service))

    def ingress_backends_matching(
        self, namespace: str, kind: str, name: str
    ) -> list[IngressBackend]:
        return self._many(IngressBackend, self._lookup("ingress_by_match", (namespace, kind, name)))

    def ingress_backends_from(self, service: ServiceId) -> list[IngressBackend]:
        """IngressBackends with a ``Service`` source naming ``service``."""
        return self._many(IngressBackend, self._lookup("ingress_by_source_service", service))

    def retries_from(self, identity: Identity) -> list[Retry]:
        """Retry objects whose ``source`` is ``identity``, sorted by (namespace, name)."""
        return self._many(Retry, self._lookup("retries_by_source", identity))

    def upstream_settings_for(self, namespace: str, host: str) -> list[UpstreamTrafficSetting]:
        """UpstreamTrafficSettings in ``namespace`` whose ``host`` is ``host``, sorted by
        name (more than one is a conflict: the first wins, see the catalog)."""
        return self._many(
            UpstreamTrafficSetting, self._lookup("settings_by_host", (namespace, host))
        )

    def upstream_setting(self, namespace: str, name: str) -> UpstreamTrafficSetting | None:
        return self._one(UpstreamTrafficSetting, namespace, name)


def _select_mesh_config(table: Mapping[Key, Resource]) -> MeshConfig:
    """The MeshConfig named ``osm-mesh-config``; with several (in different namespaces)
    the first by namespace; OSM's defaults when there is none."""
    for key in sorted(table):
        resource = table[key]
        if key[1] == wellknown.MESH_CONFIG_NAME and isinstance(resource, MeshConfig):
            return resource
    return default_mesh_config()
