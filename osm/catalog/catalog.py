"""The catalog: a MeshState's answers to "what may this proxy do".

The one idea: every answer is computed from one `MeshState` by the rules of
`membership` (which pods are proxies), `splits`, `outbound` and `inbound`, and cached
here per service or per identity; a catalog for the next state can take over the
caches of the previous one except for the services and identities a change made dirty
(`Catalog.derive`, with `dirty.dirty_from`). Answers are `policy` values; problems in
the resources come back as `CatalogWarning` values (`Catalog.warnings`), never as log
lines.

Modes: in permissive mode (MeshConfig ``enablePermissiveTrafficPolicyMode``, default)
any mesh identity may call any port of any mesh service; in SMI mode TrafficTargets
say who may call what (`outbound`, `inbound`). Python sidecars (pods annotated
``osm-py.io/sidecar: python``) proxy gRPC ports as TCP: they speak HTTP/1.1 only, so
the application's HTTP/2 crosses them as opaque bytes inside the mTLS tunnel; their
policy on a gRPC port is never more permissive than the HTTP policy it replaces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from osm.base.identity import DataPlane, Identity, ProxyKind
from osm.catalog import egress, inbound, ingress, membership, outbound, traffic
from osm.catalog.dirty import Dirty
from osm.catalog.dirty import dirty_from as _dirty_from
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import (
    CatalogWarning,
    EgressPolicy,
    Endpoint,
    InboundPolicy,
    IngressPort,
    OutboundPolicy,
    OutboundPort,
    Proxy,
    ProxyPolicy,
    RateLimits,
    TlsSettings,
    Upstream,
    is_http,
)
from osm.catalog.state import Changed, MeshState
from osm.catalog.warn import Warnings
from osm.model.config import MeshConfig
from osm.model.core import Pod, Service, ServicePort
from osm.model.meta import ObjectRef
from osm.model.policy import ConnectionSettings, RetryPolicy

__all__ = ["Catalog", "Dirty", "dirty_from"]


@dataclass(slots=True)
class _Caches:
    """The answers a derived catalog may keep (`Catalog.derive`)."""

    upstreams: dict[tuple[ServiceId, int], Upstream] = field(default_factory=dict)
    service_ports: dict[ServiceId, tuple[OutboundPort, ...]] = field(default_factory=dict)
    identities: dict[ServiceId, tuple[Identity, ...]] = field(default_factory=dict)
    grants: dict[Identity, inbound.Grants] = field(default_factory=dict)
    reachable: dict[Identity, tuple[ServiceId, ...]] = field(default_factory=dict)
    tunnelled: dict[OutboundPort, OutboundPort] = field(default_factory=dict)
    mesh_services: tuple[ServiceId, ...] | None = None
    connections: dict[ServiceId, ConnectionSettings | None] = field(default_factory=dict)
    rate_limits: dict[ServiceId, RateLimits | None] = field(default_factory=dict)
    ingress: dict[ServiceId, tuple[IngressPort, ...]] = field(default_factory=dict)
    personal: dict[Identity, _Personal] = field(default_factory=dict)
    warnings: Warnings = field(default_factory=Warnings)


_Grants = inbound.Grants

_Personal = tuple[EgressPolicy | None, Mapping[ServiceId, tuple[RetryPolicy, ObjectRef]]]
"""What a client's outbound policy has of its own: its Egress policy and its retries."""


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
            connections={k: v for k, v in old.connections.items() if k not in services},
            rate_limits={k: v for k, v in old.rate_limits.items() if k not in services},
            ingress={k: v for k, v in old.ingress.items() if k not in services},
            personal={k: v for k, v in old.personal.items() if k not in identities},
            warnings=old.warnings.without(dirty.stale),
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

    # -- the whole policy --------------------------------------------------------------
    def policy(self, proxy: Proxy) -> ProxyPolicy:
        """The full policy of ``proxy`` (equal for proxies with equal class keys)."""
        sidecar = self.config.sidecar
        inbound_policy = (
            self.inbound(proxy)
            if proxy.kind == ProxyKind.SIDECAR
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
    def endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        """Ready endpoints of one service port (`outbound.endpoints`)."""
        return outbound.endpoints(self.state, service, port)

    def upstream(self, service: Service, port: ServicePort) -> Upstream:
        sid = ServiceId(service.namespace, service.name)
        key = (sid, port.port)
        cached = self._c.upstreams.get(key)
        if cached is None:
            cached = outbound.upstream(
                self.state, service, port, self.identities_of(sid), self.connection(sid)
            )
            self._c.upstreams[key] = cached
        return cached

    def connection(self, service_id: ServiceId) -> ConnectionSettings | None:
        """Circuit breaking of a service's clusters (`traffic.connection_for`)."""
        if service_id not in self._c.connections:
            self._c.connections[service_id] = traffic.connection_for(
                self.state, service_id, self._warn
            )
        return self._c.connections[service_id]

    def rate_limits(self, service_id: ServiceId) -> RateLimits | None:
        """Local rate limits of a service's proxies (`traffic.rate_limits_for`)."""
        if service_id not in self._c.rate_limits:
            self._c.rate_limits[service_id] = traffic.rate_limits_for(
                self.state, service_id, self._warn
            )
        return self._c.rate_limits[service_id]

    def ingress(self, service_id: ServiceId) -> tuple[IngressPort, ...]:
        """What IngressBackends admit to a service (`ingress.ingress_ports`)."""
        cached = self._c.ingress.get(service_id)
        if cached is None:
            cached = ingress.ingress_ports(
                self.state, service_id, self.rate_limits(service_id), self._warn
            )
            self._c.ingress[service_id] = cached
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

    def outbound(self, identity: Identity, sidecar: DataPlane = DataPlane.ENVOY) -> OutboundPolicy:
        """Outbound policy of a proxy running as ``identity`` with data plane ``sidecar``.

        Its ports are `outbound.outbound_ports` of the services it reaches. For a sidecar
        that tunnels gRPC (`DataPlane.tunnels_grpc`) gRPC ports are TCP ports
        (`outbound.tunnelled`); without gRPC ports its policy is the very object Envoy's
        is. A client that an Egress or a Retry names gets its own policy: the shared one
        with its `EgressPolicy` and its HTTP ports' retry policies (`personal`).
        """
        shared = self._shared_outbound(identity, sidecar)
        egress_policy, retries = self.personal(identity)
        if egress_policy is None and not retries:
            return shared
        key = ("personal", sidecar, identity)
        cached = self._outbound.get(key)
        if cached is None:
            ports = shared.ports
            if retries:
                ports = tuple(_with_retry(port, retries.get(port.service)) for port in ports)
            cached = OutboundPolicy(shared.namespace, ports, shared.egress, egress_policy)
            self._outbound[key] = cached
        return cached

    def personal(self, identity: Identity) -> _Personal:
        """The Egress policy (with mesh-wide egress off) and the retries (with
        ``featureFlags.enableRetryPolicy`` on) of a client running as ``identity``."""
        cached = self._c.personal.get(identity)
        if cached is None:
            egress_policy = (
                None
                if self.config.traffic.enable_egress
                else egress.egress_policy(self.state, identity, self._warn)
            )
            retries: Mapping[ServiceId, tuple[RetryPolicy, ObjectRef]] = (
                traffic.retries_for(self.state, identity, self._warn)
                if self.config.feature_flags.enable_retry_policy
                else {}
            )
            cached = self._c.personal[identity] = (egress_policy, retries)
        return cached

    def _shared_outbound(self, identity: Identity, sidecar: DataPlane) -> OutboundPolicy:
        if sidecar.tunnels_grpc:
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

    def _tunnelling_outbound(self, identity: Identity, sidecar: DataPlane) -> OutboundPolicy:
        base = self._shared_outbound(identity, DataPlane.ENVOY)
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
        grants = self.grants_of(proxy.identity)
        result = inbound.inbound_policy(proxy, self.permissive, grants, self._warn)
        return self._with_service_policies(proxy, result)

    def grants_of(self, identity: Identity) -> _Grants:
        """What the TrafficTargets to ``identity`` grant, each with the TrafficTarget rule
        that grants it (`inbound.grants`; `inbound.NO_GRANTS` in permissive mode): the
        input of `inbound`, and of explanations of it."""
        if self.permissive:
            return inbound.NO_GRANTS
        cached = self._c.grants.get(identity)
        if cached is None:
            cached = inbound.grants(self.state, identity, self._warn)
            self._c.grants[identity] = cached
        return cached

    def _with_service_policies(self, proxy: Proxy, policy: InboundPolicy) -> InboundPolicy:
        """``policy`` with its services' rate limits and the ingress they admit."""
        ports = tuple(
            port
            if (limits := self.rate_limits(port.service)) is None
            else dataclasses.replace(port, rate_limits=limits)
            for port in policy.ports
        )
        admitted = tuple(
            sorted(
                {p for service in proxy.services for p in self.ingress(service)},
                key=lambda p: (p.service, p.target_port, p.protocol),
            )
        )
        if not admitted and all(a is b for a, b in zip(ports, policy.ports, strict=True)):
            return policy
        return InboundPolicy(policy.identity, ports, admitted)


def _with_retry(port: OutboundPort, retry: tuple[RetryPolicy, ObjectRef] | None) -> OutboundPort:
    """``port`` with a client's retry policy (HTTP ports only; others are unchanged)."""
    if retry is None or not is_http(port.protocol):
        return port
    return dataclasses.replace(port, retry=retry[0], retry_ref=retry[1])


def dirty_from(before: Catalog, after: MeshState, changed: Changed) -> Dirty:
    """What ``changed`` (taking ``before.state`` to ``after``) may alter (`dirty.dirty_from`)."""
    return _dirty_from(before.state, after, changed, before.identities_of)
