"""The catalog: a MeshState's answers to "what may this proxy do".

The one idea: every answer is computed from one `MeshState` and cached per service or
per identity, and a catalog for the next state can take over the caches of the
previous one except for the services and identities a change made dirty
(`Catalog.derive`). Answers are `policy` values; problems in the resources come back
as `CatalogWarning` values (`Catalog.warnings`), never as log lines.

Rules (SMI access v1alpha3, specs v1alpha4, split v1alpha2/v1alpha4, OSM's modes):

* Mesh membership: see `membership`.
* Permissive mode (MeshConfig ``enablePermissiveTrafficPolicyMode``, default): any
  mesh identity may call any port of any service, and every proxy reaches every mesh
  service.
* SMI mode: who reaches which service: see `outbound` and `inbound`.
* TrafficSplit: see `splits`.
* Endpoints: see `outbound`.
* Python sidecars (pods annotated ``osm-py.io/sidecar: python``) proxy gRPC ports as
  TCP: they speak HTTP/1.1 only, so the application's HTTP/2 crosses them as opaque
  bytes inside the mTLS tunnel. Their policy on a gRPC port is never more permissive
  than the HTTP policy it replaces: see `outbound` and `inbound`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from osm.catalog import inbound, membership, outbound, policy
from osm.catalog.ids import Identity, ProxyId, ServiceId
from osm.catalog.policy import (
    ENVOY,
    CatalogWarning,
    Endpoint,
    InboundPolicy,
    OutboundPolicy,
    OutboundPort,
    Proxy,
    ProxyPolicy,
    TlsSettings,
    Upstream,
)
from osm.catalog.state import Changed, MeshState, apex_name
from osm.catalog.warn import WarningKey, Warnings
from osm.model.config import MeshConfig
from osm.model.core import Endpoints, Namespace, Pod, Service, ServicePort
from osm.model.meta import ObjectRef, Resource
from osm.model.smi import HTTPRouteGroup, TCPRoute, TrafficSplit, TrafficTarget


@dataclass(frozen=True, slots=True)
class Dirty:
    """What a change may have altered, in the catalog's terms (see `dirty_from`)."""

    services: frozenset[ServiceId] = frozenset()
    identities: frozenset[Identity] = frozenset()
    pods: frozenset[ProxyId] = frozenset()
    mesh_services: bool = False
    everything: bool = False


@dataclass(slots=True)
class _Caches:
    upstreams: dict[tuple[ServiceId, int], Upstream] = field(default_factory=dict)
    service_ports: dict[ServiceId, tuple[OutboundPort, ...]] = field(default_factory=dict)
    identities: dict[ServiceId, tuple[Identity, ...]] = field(default_factory=dict)
    grants: dict[Identity, inbound.Grants] = field(default_factory=dict)
    reachable: dict[Identity, tuple[ServiceId, ...]] = field(default_factory=dict)
    tunnelled: dict[OutboundPort, OutboundPort] = field(default_factory=dict)
    mesh_services: tuple[ServiceId, ...] | None = None
    warnings: Warnings = field(default_factory=Warnings)


class Catalog:
    """Answers for one `MeshState`. Caches are filled lazily; not thread-safe."""

    def __init__(self, state: MeshState, *, _caches: _Caches | None = None) -> None:
        self.state = state
        self.config: MeshConfig = state.mesh_config
        self._c = _caches or _Caches()
        self._warn = self._c.warnings.warn
        self._outbound: dict[object, OutboundPolicy] = {}
        self._permissive_ports: tuple[OutboundPort, ...] | None = None
        self._tunnelled_ports: dict[
            int, tuple[tuple[OutboundPort, ...], tuple[OutboundPort, ...]]
        ] = {}

    # -- incremental -------------------------------------------------------------------
    def derive(self, state: MeshState, dirty: Dirty) -> Catalog:
        """A catalog for ``state`` that keeps this one's cached answers not in ``dirty``.

        ``dirty`` must cover everything the change from ``self.state`` to ``state`` can
        alter (`dirty_from` computes it); the caller owns that contract.
        """
        if dirty.everything or state.mesh_config != self.config:
            return Catalog(state)
        old = self._c
        services = dirty.services
        identities = dirty.identities
        caches = _Caches(
            upstreams={k: v for k, v in old.upstreams.items() if k[0] not in services},
            service_ports={k: v for k, v in old.service_ports.items() if k not in services},
            identities={k: v for k, v in old.identities.items() if k not in services},
            grants={k: v for k, v in old.grants.items() if k not in identities},
            reachable={k: v for k, v in old.reachable.items() if k not in identities},
            tunnelled={k: v for k, v in old.tunnelled.items() if k.service not in services},
            mesh_services=None if dirty.mesh_services else old.mesh_services,
            warnings=old.warnings.without(lambda key: _stale(key, dirty)),
        )
        return Catalog(state, _caches=caches)

    @property
    def warnings(self) -> list[CatalogWarning]:
        """Warnings of every answer computed so far (deduplicated, sorted)."""
        return self._c.warnings.all()

    # -- mesh membership ---------------------------------------------------------------
    @property
    def permissive(self) -> bool:
        return self.config.permissive

    def in_mesh_namespace(self, namespace: str) -> bool:
        return membership.in_mesh_namespace(self.state, namespace)

    def pod_in_mesh(self, pod: Pod) -> bool:
        return membership.pod_in_mesh(self.state, pod)

    def mesh_services(self) -> tuple[ServiceId, ...]:
        """Every Service in a mesh namespace, sorted."""
        if self._c.mesh_services is None:
            self._c.mesh_services = membership.mesh_services(self.state)
        return self._c.mesh_services

    # -- proxies -----------------------------------------------------------------------
    def proxies(self) -> list[Proxy]:
        """Every proxy of the mesh (pods in the mesh), sorted by namespace and name."""
        return [self.proxy_for(pod) for pod in self.state.typed(Pod) if self.pod_in_mesh(pod)]

    def proxy(self, proxy_id: ProxyId) -> Proxy | None:
        pod = self.state.pod(proxy_id.namespace, proxy_id.name)
        if pod is None or not self.pod_in_mesh(pod):
            return None
        return self.proxy_for(pod)

    def proxy_for(self, pod: Pod) -> Proxy:
        return membership.proxy_for(self.state, pod, self._warn)

    def policy(self, proxy: Proxy) -> ProxyPolicy:
        """The full policy of ``proxy`` (equal for proxies with equal class keys)."""
        sidecar = self.config.sidecar
        inbound_policy = (
            self.inbound(proxy)
            if proxy.kind == policy.SIDECAR
            else InboundPolicy(proxy.identity, ())
        )
        return ProxyPolicy(
            proxy.identity,
            proxy.kind,
            inbound_policy,
            self.outbound(proxy.identity, proxy.sidecar),
            TlsSettings(sidecar.tls_min_protocol_version, sidecar.tls_max_protocol_version),
        )

    # -- services ----------------------------------------------------------------------
    def identities_of(self, service_id: ServiceId) -> tuple[Identity, ...]:
        """Service accounts of the pods the service selects (its peer identities)."""
        cached = self._c.identities.get(service_id)
        if cached is None:
            cached = membership.identities_of(self.state, service_id)
            self._c.identities[service_id] = cached
        return cached

    def services_of(self, identity: Identity) -> list[ServiceId]:
        """Services selecting at least one pod running as ``identity``."""
        return membership.services_of(self.state, identity)

    def endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        """Ready endpoints of one service port (`outbound.endpoints`)."""
        return outbound.endpoints(self.state, service, port)

    def upstream(self, service: Service, port: ServicePort) -> Upstream:
        sid = ServiceId(service.namespace, service.name)
        key = (sid, port.port)
        cached = self._c.upstreams.get(key)
        if cached is None:
            cached = outbound.upstream(self.state, service, port, self.identities_of(sid))
            self._c.upstreams[key] = cached
        return cached

    def service_ports(self, service_id: ServiceId) -> tuple[OutboundPort, ...]:
        """How clients reach each TCP port of a service, splits applied."""
        cached = self._c.service_ports.get(service_id)
        if cached is None:
            service = self.state.service(service_id)
            cached = (
                ()
                if service is None
                else outbound.service_ports(self.state, service, self.upstream, self._warn)
            )
            self._c.service_ports[service_id] = cached
        return cached

    # -- outbound ----------------------------------------------------------------------
    def reachable(self, identity: Identity) -> tuple[ServiceId, ...]:
        """The services ``identity`` may call (all mesh services in permissive mode)."""
        if self.permissive:
            return self.mesh_services()
        cached = self._c.reachable.get(identity)
        if cached is None:
            cached = outbound.reachable(self.state, identity)
            self._c.reachable[identity] = cached
        return cached

    def outbound(self, identity: Identity, sidecar: str = ENVOY) -> OutboundPolicy:
        """Outbound policy of a proxy running as ``identity`` with data plane ``sidecar``.

        Its ports are `outbound.outbound_ports` of the services it reaches. For a sidecar
        that tunnels gRPC (`policy.tunnels_grpc`) gRPC ports are TCP ports
        (`outbound.tunnelled`); without gRPC ports its policy is the very object Envoy's
        is.
        """
        if policy.tunnels_grpc(sidecar):
            return self._tunnelling_outbound(identity, sidecar)
        key: object = identity.namespace if self.permissive else identity
        cached = self._outbound.get(key)
        if cached is not None:
            return cached
        if self.permissive:
            # Every namespace reaches the same ports: one tuple, shared.
            if self._permissive_ports is None:
                self._permissive_ports = self._outbound_ports(self.mesh_services())
            ports = self._permissive_ports
        else:
            ports = self._outbound_ports(self.reachable(identity))
        result = OutboundPolicy(identity.namespace, ports, self.config.traffic.enable_egress)
        self._outbound[key] = result
        return result

    def _outbound_ports(self, services: tuple[ServiceId, ...]) -> tuple[OutboundPort, ...]:
        return outbound.outbound_ports(self.state, services, self.service_ports, self._warn)

    def _tunnelling_outbound(self, identity: Identity, sidecar: str) -> OutboundPolicy:
        base = self.outbound(identity)
        key = (sidecar, identity.namespace if self.permissive else identity)
        cached = self._outbound.get(key)
        if cached is not None:
            return cached
        # One tuple per tuple of ports: permissive namespaces share theirs, and so do
        # their tunnelled ones (the snapshot's layers memoize on the tuple).
        entry = self._tunnelled_ports.get(id(base.ports))
        if entry is None or entry[0] is not base.ports:
            tunnelled = tuple(self._tunnelled(port) for port in base.ports)
            if all(new is old for new, old in zip(tunnelled, base.ports, strict=True)):
                tunnelled = base.ports
            entry = (base.ports, tunnelled)
            self._tunnelled_ports[id(base.ports)] = entry
        ports = entry[1]
        result = base if ports is base.ports else OutboundPolicy(base.namespace, ports, base.egress)
        self._outbound[key] = result
        return result

    def _tunnelled(self, port: OutboundPort) -> OutboundPort:
        """`outbound.tunnelled`, cached; ports without gRPC are returned as they are."""
        if not outbound.carries_grpc(port):
            return port
        cached = self._c.tunnelled.get(port)
        if cached is None:
            cached = outbound.tunnelled(self.state, port, self._warn)
            self._c.tunnelled[port] = cached
        return cached

    # -- inbound -----------------------------------------------------------------------
    def inbound(self, proxy: Proxy) -> InboundPolicy:
        """Who may call the service ports ``proxy`` serves, and which requests."""
        if self.permissive:
            return inbound.inbound_policy(proxy, True, inbound.NO_GRANTS, self._warn)
        cached = self._c.grants.get(proxy.identity)
        if cached is None:
            cached = inbound.grants(self.state, proxy.identity, self._warn)
            self._c.grants[proxy.identity] = cached
        return inbound.inbound_policy(proxy, False, cached, self._warn)


# -- change analysis ---------------------------------------------------------------------
def dirty_from(before: Catalog, after: MeshState, changed: Changed) -> Dirty:
    """What ``changed`` (taking ``before.state`` to ``after``) may alter.

    Conservative: it may name more than changed, never less. Services whose pods,
    endpoints, ports or splits changed are dirty, and so are the apexes of splits
    they are backends of; identities named by changed TrafficTargets (directly or
    through a changed route) are dirty, and in SMI mode so are the sources of
    TrafficTargets to identities whose services changed.
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
    states = (before.state, after)

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
    # Apexes whose backends changed.
    for sid in list(services):
        for state in states:
            for split in state.splits_with_backend(sid):
                services.add(ServiceId(split.namespace, apex_name(split)))
    # SMI: who reaches a changed service depends on the identities behind it.
    if not after.mesh_config.permissive:
        behind: set[Identity] = set(identities)
        after_catalog = Catalog(after)
        for sid in services:
            behind.update(before.identities_of(sid))
            behind.update(after_catalog.identities_of(sid))
        for identity in behind:
            for state in states:
                for target in state.targets_to(identity):
                    identities.update(_target_identities(target))
    return Dirty(frozenset(services), frozenset(identities), frozenset(pods), mesh_services, False)


def _stale(key: WarningKey, dirty: Dirty) -> bool:
    """Whether a cached warning's key is invalidated by ``dirty``."""
    tag, subject = key
    if tag == "outbound":
        return True
    return subject in dirty.services or subject in dirty.identities or subject in dirty.pods


def _target_identities(target: TrafficTarget) -> Iterable[Identity]:
    yield Identity(target.destination.namespace, target.destination.name)
    for source in target.sources:
        yield Identity(source.namespace, source.name)
