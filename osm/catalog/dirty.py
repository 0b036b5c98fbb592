"""Dirty tracking: which cached answers, and so which proxies, a change may alter.

The one idea: `dirty_from` maps a change (`Changed`: the resources it touched, before
and after) to the services, identities and pods whose answers may differ; it may name
more than changed, never less. A catalog derived with it (`Catalog.derive`) recomputes
just those answers and keeps the others, warnings included (`Dirty.stale`), and the xDS
generator rebuilds only the proxies they reach.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from osm.base.identity import Identity
from osm.catalog import membership
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.state import Changed, MeshState, apex_name
from osm.catalog.warn import WarningKey
from osm.model.config import MeshConfig
from osm.model.core import Endpoints, Namespace, Pod, Service
from osm.model.meta import ObjectRef, Resource
from osm.model.policy import Egress, IngressBackend, Retry, UpstreamTrafficSetting
from osm.model.smi import HTTPRouteGroup, TCPRoute, TrafficSplit, TrafficTarget


@dataclass(frozen=True, slots=True)
class Dirty:
    """What a change may have altered, in the catalog's terms (see `dirty_from`)."""

    services: frozenset[ServiceId] = frozenset()
    identities: frozenset[Identity] = frozenset()
    pods: frozenset[ProxyId] = frozenset()
    mesh_services: bool = False
    everything: bool = False

    def stale(self, key: WarningKey) -> bool:
        """Whether a cached warning's key is invalidated by this change."""
        tag, subject = key
        if tag == "outbound":
            return True
        return subject in self.services or subject in self.identities or subject in self.pods


def dirty_from(
    before: MeshState,
    after: MeshState,
    changed: Changed,
    identities_before: Callable[[ServiceId], tuple[Identity, ...]],
) -> Dirty:
    """What ``changed`` (taking ``before`` to ``after``) may alter.

    ``identities_before`` is `membership.identities_of` over ``before`` (the previous
    catalog's cached answer). Conservative: it may name more than changed, never less.
    Services whose pods, endpoints, ports or splits changed are dirty, and so are the
    apexes of splits they are backends of; identities named by changed TrafficTargets
    (directly or through a changed route) are dirty, and in SMI mode so are the
    sources of TrafficTargets to identities whose services changed.

    OSM's policy kinds: an Egress or a Retry makes its source identities dirty (their
    outbound policy); an UpstreamTrafficSetting the services whose FQDN is its host (their
    clusters and served ports) and the sources of Egresses naming it; an IngressBackend
    its backend services; a route group, the Egresses and IngressBackends naming it; a
    Service (or its Endpoints), the backends of IngressBackends with it as a source.
    """
    if changed.everything:
        return Dirty(everything=True)
    kinds = changed.kinds
    if kinds & {Namespace.KIND, MeshConfig.KIND}:
        return Dirty(everything=True)
    services: set[ServiceId] = set()
    identities: set[Identity] = set()
    pods: set[ProxyId] = set()
    mesh_services = False
    states = (before, after)

    def versions(ref: ObjectRef) -> list[Resource]:
        return changed.versions(ref)

    for ref in changed.refs:
        if ref.kind == Service.KIND:
            sid = ServiceId(ref.namespace, ref.name)
            services.add(sid)
            if ref not in changed.before or ref not in changed.after:
                mesh_services = True
            for version in versions(ref):
                assert isinstance(version, Service)
                for state in states:
                    pods.update(
                        ProxyId(p.namespace, p.name) for p in state.pods_selected_by(version)
                    )
        elif ref.kind == Pod.KIND:
            pods.add(ProxyId(ref.namespace, ref.name))
            for version in versions(ref):
                assert isinstance(version, Pod)
                identities.add(Identity(version.namespace, version.spec.service_account_name))
                for state in states:
                    services.update(
                        ServiceId(s.namespace, s.name)
                        for s in state.services_selecting(
                            version.namespace, version.metadata.labels
                        )
                    )
        elif ref.kind == Endpoints.KIND:
            services.add(ServiceId(ref.namespace, ref.name))
        elif ref.kind == TrafficSplit.KIND:
            for version in versions(ref):
                assert isinstance(version, TrafficSplit)
                services.add(ServiceId(version.namespace, apex_name(version)))
        elif ref.kind in (HTTPRouteGroup.KIND, TCPRoute.KIND):
            for state in states:
                for target in state.targets_with_rule(ref.namespace, ref.kind, ref.name):
                    identities.update(_target_identities(target))
                if ref.kind == HTTPRouteGroup.KIND:
                    for split in state.splits_with_group(ref.namespace, ref.name):
                        services.add(ServiceId(split.namespace, apex_name(split)))
        elif ref.kind == TrafficTarget.KIND:
            for version in versions(ref):
                assert isinstance(version, TrafficTarget)
                identities.update(_target_identities(version))
        elif ref.kind == Egress.KIND:
            for version in versions(ref):
                assert isinstance(version, Egress)
                identities.update(Identity(s.namespace, s.name) for s in version.sources)
        elif ref.kind == Retry.KIND:
            for version in versions(ref):
                assert isinstance(version, Retry)
                identities.add(Identity(version.source.namespace, version.source.name))
        elif ref.kind == UpstreamTrafficSetting.KIND:
            for version in versions(ref):
                assert isinstance(version, UpstreamTrafficSetting)
                services.update(_services_with_host(states, version.namespace, version.host))
        elif ref.kind == IngressBackend.KIND:
            for version in versions(ref):
                assert isinstance(version, IngressBackend)
                services.update(ServiceId(version.namespace, b.name) for b in version.backends)
        if ref.kind in (HTTPRouteGroup.KIND, UpstreamTrafficSetting.KIND):
            for state in states:
                for egress in state.egresses_matching(ref.namespace, ref.kind, ref.name):
                    identities.update(Identity(s.namespace, s.name) for s in egress.sources)
                for backend in state.ingress_backends_matching(ref.namespace, ref.kind, ref.name):
                    services.update(ServiceId(backend.namespace, b.name) for b in backend.backends)
    # Backends of IngressBackends whose Service sources changed (their source IPs).
    for sid in list(services):
        for state in states:
            for backend in state.ingress_backends_from(sid):
                services.update(ServiceId(backend.namespace, b.name) for b in backend.backends)
    # Apexes whose backends changed.
    for sid in list(services):
        for state in states:
            for split in state.splits_with_backend(sid):
                services.add(ServiceId(split.namespace, apex_name(split)))
    # SMI: who reaches a changed service depends on the identities behind it.
    if not after.mesh_config.permissive:
        behind: set[Identity] = set(identities)
        for sid in services:
            behind.update(identities_before(sid))
            behind.update(membership.identities_of(after, sid))
        for identity in behind:
            for state in states:
                for target in state.targets_to(identity):
                    identities.update(_target_identities(target))
    return Dirty(frozenset(services), frozenset(identities), frozenset(pods), mesh_services, False)


def _services_with_host(
    states: tuple[MeshState, MeshState], namespace: str, host: str
) -> Iterable[ServiceId]:
    """The services of ``namespace`` whose FQDN is ``host`` (an UpstreamTrafficSetting's
    host names a service as ``<svc>.<ns>.svc.cluster.local``)."""
    name, _, rest = host.partition(".")
    sid = ServiceId(namespace, name)
    if rest and sid.fqdn == host:
        yield sid


def _target_identities(target: TrafficTarget) -> Iterable[Identity]:
    yield Identity(target.destination.namespace, target.destination.name)
    for source in target.sources:
        yield Identity(source.namespace, source.name)
