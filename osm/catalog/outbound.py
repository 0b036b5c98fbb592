"""Outbound policy: which service ports a proxy may call, and how it reaches each.

The one idea: how a client reaches a service port (`service_ports`: its addresses,
routes with splits applied, upstreams with endpoints and peer identities) does not
depend on the client, so it is computed once per service and shared; a client's
outbound policy is the ports of the services it reaches (`reachable`), with each
address claimed once (`outbound_ports`).

Rules: in permissive mode (MeshConfig ``enablePermissiveTrafficPolicyMode``, default)
every proxy reaches every mesh service; in SMI mode (access v1alpha3) a proxy reaches
the services (in the mesh) whose pods run as the destination of a TrafficTarget
listing the proxy's identity as a source. A service's endpoints are its ready
addresses from its Endpoints object; when it has none, its ready pods with an IP
(targetPort resolved per pod). For a sidecar that tunnels gRPC (the Python sidecar,
`DataPlane.tunnels_grpc`) a gRPC port is a TCP port to the default route's targets: split
routes by ``matches`` do not apply (a warning says so), and no upstream is gRPC
(`tunnelled`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from osm.base.identity import Identity
from osm.catalog import membership, policy, splits
from osm.catalog.ids import ServiceId
from osm.catalog.policy import Endpoint, OutboundPort, Upstream
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn
from osm.model.core import EndpointPort, Endpoints, Service, ServicePort
from osm.model.policy import ConnectionSettings


def endpoints(state: MeshState, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
    """Ready endpoints of one service port (see the module docstring), sorted."""
    sid = ServiceId(service.namespace, service.name)
    found: set[Endpoint] = set()
    listed = state.endpoints(sid)
    if isinstance(listed, Endpoints):
        for subset in listed.subsets:
            endpoint_port = _endpoint_port(subset.ports, port)
            if endpoint_port is None:
                continue
            for address in subset.addresses:
                if address.ready:
                    found.add(Endpoint(address.ip, endpoint_port))
    else:
        for pod in state.pods_selected_by(service):
            if not (pod.ready and pod.pod_ip):
                continue
            target = membership.target_port(port, pod)
            if target is not None:
                found.add(Endpoint(pod.pod_ip, target))
    return tuple(sorted(found, key=lambda e: (e.ip, e.port)))


def upstream(
    state: MeshState,
    service: Service,
    port: ServicePort,
    identities: tuple[Identity, ...],
    connection: ConnectionSettings | None = None,
) -> Upstream:
    """One service port as a destination; ``identities`` are the service's
    (`membership.identities_of`), ``connection`` its circuit breaking
    (`traffic.connection_for`)."""
    sid = ServiceId(service.namespace, service.name)
    found = endpoints(state, service, port)
    return Upstream(sid, port.port, port.app_protocol, identities, found, connection)


def service_ports(
    state: MeshState, service: Service, upstream: splits.UpstreamOf, warn: Warn
) -> tuple[OutboundPort, ...]:
    """How clients reach each TCP port of a service, splits applied."""
    sid = ServiceId(service.namespace, service.name)
    apex_splits = state.splits_for(sid)
    result: list[OutboundPort] = []
    for port in membership.tcp_ports(service):
        own = upstream(service, port)
        if service.cluster_ip and not service.headless:
            match_ips: tuple[str, ...] = (service.cluster_ip,)
        else:
            match_ips = tuple(sorted({e.ip for e in own.endpoints}))
        routes, upstreams = splits.split_routes(state, service, port, apex_splits, upstream, warn)
        result.append(
            OutboundPort(
                sid,
                port.port,
                port.app_protocol,
                service.cluster_ip if not service.headless else "",
                match_ips,
                routes,
                upstreams,
            )
        )
    return tuple(result)


def reachable(state: MeshState, identity: Identity) -> tuple[ServiceId, ...]:
    """SMI mode: the mesh services ``identity`` may call, sorted."""
    found: set[ServiceId] = set()
    for target in state.targets_from(identity):
        destination = Identity(target.destination.namespace, target.destination.name)
        found.update(membership.services_of(state, destination))
    return tuple(s for s in sorted(found) if membership.in_mesh_namespace(state, s.namespace))


def outbound_ports(
    state: MeshState,
    services: tuple[ServiceId, ...],
    service_ports: Callable[[ServiceId], tuple[OutboundPort, ...]],
    warn: Warn,
) -> tuple[OutboundPort, ...]:
    """The ports of ``services`` (sorted), each (IP, port) kept by the first to claim it.

    Filter chains are told apart by destination IP and port, so when two service ports
    would claim the same (IP, port) the first by (service, port) keeps it and the other
    loses that IP, with a warning.
    """
    claimed: dict[tuple[str, int], ServiceId] = {}
    ports: list[OutboundPort] = []
    for sid in services:
        for outbound_port in service_ports(sid):
            kept: list[str] = []
            for ip in outbound_port.match_ips:
                owner = claimed.setdefault((ip, outbound_port.port), sid)
                if owner == sid:
                    kept.append(ip)
                else:
                    warn(
                        ("outbound", sid),
                        state.service(sid),
                        f"{ip}:{outbound_port.port} is also an address of Service "
                        f'"{owner}"; connections to it are routed as {owner}',
                    )
            if len(kept) != len(outbound_port.match_ips):
                outbound_port = dataclasses.replace(outbound_port, match_ips=tuple(kept))
            ports.append(outbound_port)
    return tuple(ports)


def carries_grpc(port: OutboundPort) -> bool:
    """Whether `tunnelled` changes ``port``: it or one of its upstreams is gRPC."""
    grpc = policy.GRPC_PROTOCOL
    return port.protocol == grpc or any(u.protocol == grpc for u in port.upstreams)


def tunnelled(state: MeshState, port: OutboundPort, warn: Warn) -> OutboundPort:
    """``port`` as a sidecar that tunnels gRPC reaches it: a gRPC port becomes a TCP
    port to its default route's targets, and no upstream is gRPC (no HTTP/2 cluster;
    a split can send an HTTP port to a backend's gRPC port). Only for ports that
    `carries_grpc`."""
    grpc = policy.GRPC_PROTOCOL
    routes, upstreams = port.routes, port.upstreams
    if port.protocol == grpc:
        if len(routes) > 1:
            warn(
                ("service", port.service),
                state.service(port.service),
                f"port {port.port} is gRPC: TrafficSplit matches on it do not apply "
                "to clients with the Python sidecar (it proxies gRPC as TCP); they "
                "split all their traffic as the default route does",
            )
        routes = routes[-1:]
        named = {target.service for target in routes[0].targets}
        upstreams = tuple(u for u in upstreams if u.service in named)
    return dataclasses.replace(
        port,
        protocol=policy.TCP_PROTOCOL if port.protocol == grpc else port.protocol,
        routes=routes,
        upstreams=tuple(
            dataclasses.replace(u, protocol=policy.TCP_PROTOCOL) if u.protocol == grpc else u
            for u in upstreams
        ),
    )


def _endpoint_port(ports: Iterable[EndpointPort], port: ServicePort) -> int | None:
    """The Endpoints subset port for a service port: same name, or the only one."""
    candidates = list(ports)
    for candidate in candidates:
        if candidate.name == port.name:
            return candidate.port
    if len(candidates) == 1 and not port.name:
        return candidates[0].port
    return None
