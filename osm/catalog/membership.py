"""Mesh membership: which pods are proxies, of which kind, serving which service ports.

The one idea: membership is read off the state alone (a namespace's injection
annotation, a pod's own annotations and labels, the Services selecting it), so these
are pure functions of a `MeshState`; the catalog caches the ones asked often.

Rules: a namespace is in the mesh when its sidecar-injection annotation is enabled; a
pod is a proxy when its own annotation says so, else when its namespace is. A proxy
serves the TCP ports (UDP and SCTP pass by) of the Services selecting its pod, target
ports resolved against its containers. Its kind (`wellknown.PROXY_KIND_ANNOTATION`) and
sidecar (`wellknown.DATA_PLANE_ANNOTATION`) come from annotations, its UUID (the first
part of the node id its sidecar presents) from the injector's ``osm-proxy-uuid`` label;
a proxyless gRPC client is its own data plane, so its sidecar is always Envoy's.
"""

from __future__ import annotations

from osm.base import wellknown
from osm.base.identity import DataPlane, Identity, ProxyKind
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import LocalPort, Proxy
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn
from osm.model.core import Namespace, Pod, Service, ServicePort, injection_enabled


def in_mesh_namespace(state: MeshState, namespace: str) -> bool:
    ns = state.namespace(namespace)
    return isinstance(ns, Namespace) and ns.sidecar_injection


def pod_in_mesh(state: MeshState, pod: Pod) -> bool:
    explicit = injection_enabled(pod.metadata.annotations)
    if explicit is not None:
        return explicit
    return in_mesh_namespace(state, pod.namespace)


def mesh_services(state: MeshState) -> tuple[ServiceId, ...]:
    """Every Service in a mesh namespace, sorted."""
    return tuple(
        ServiceId(s.namespace, s.name)
        for s in state.typed(Service)
        if in_mesh_namespace(state, s.namespace)
    )


def proxy_for(state: MeshState, pod: Pod, warn: Warn) -> Proxy:
    """The proxy of a pod of the mesh (`pod_in_mesh`)."""
    services = state.services_selecting(pod.namespace, pod.metadata.labels)
    local_ports: list[LocalPort] = []
    for service in services:
        sid = ServiceId(service.namespace, service.name)
        for port in tcp_ports(service):
            target = target_port(port, pod)
            if target is None:
                warn(
                    ("pod", ProxyId(pod.namespace, pod.name)),
                    service,
                    f'targetPort "{port.target_port}" of port {port.port} names no '
                    f"container port of pod {pod.namespace}/{pod.name}",
                )
                continue
            local_ports.append(LocalPort(sid, port.port, target, port.app_protocol))
    kind = ProxyKind(
        _annotation(pod, wellknown.PROXY_KIND_ANNOTATION, tuple(ProxyKind), ProxyKind.SIDECAR, warn)
    )
    sidecar = DataPlane(
        _annotation(pod, wellknown.DATA_PLANE_ANNOTATION, tuple(DataPlane), DataPlane.ENVOY, warn)
    )
    if kind != ProxyKind.SIDECAR:
        sidecar = DataPlane.ENVOY  # a proxyless client is its own data plane
    return Proxy(
        ProxyId(pod.namespace, pod.name),
        Identity(pod.namespace, pod.spec.service_account_name),
        pod.pod_ip,
        tuple(ServiceId(s.namespace, s.name) for s in services),
        tuple(local_ports),
        kind,
        sidecar,
        pod.metadata.labels.get(wellknown.PROXY_UUID_LABEL, ""),
    )


def identities_of(state: MeshState, service_id: ServiceId) -> tuple[Identity, ...]:
    """Service accounts of the pods the service selects (its peer identities), sorted."""
    service = state.service(service_id)
    pods = state.pods_selected_by(service) if service is not None else []
    return tuple(sorted({Identity(p.namespace, p.spec.service_account_name) for p in pods}))


def services_of(state: MeshState, identity: Identity) -> list[ServiceId]:
    """Services selecting at least one pod running as ``identity``, sorted."""
    found: set[ServiceId] = set()
    # Replicas share their labels: each distinct label set is matched once.
    seen: set[frozenset[tuple[str, str]]] = set()
    for pod in state.pods_with_identity(identity):
        labels = frozenset(pod.metadata.labels.items())
        if labels in seen:
            continue
        seen.add(labels)
        for service in state.services_selecting(pod.namespace, pod.metadata.labels):
            found.add(ServiceId(service.namespace, service.name))
    return sorted(found)


def tcp_ports(service: Service) -> list[ServicePort]:
    """The ports the mesh proxies (TCP; UDP and SCTP pass by)."""
    return [p for p in service.ports if p.protocol == "TCP"]


def target_port(port: ServicePort, pod: Pod) -> int | None:
    """The port number ``port`` reaches on ``pod`` (named target ports looked up)."""
    if isinstance(port.target_port, int):
        return port.target_port
    for container in pod.spec.containers:
        for container_port in container.ports:
            if container_port.name == port.target_port:
                return container_port.container_port
    return None


def _annotation(pod: Pod, name: str, allowed: tuple[str, ...], default: str, warn: Warn) -> str:
    """The pod's annotation `name`: one of `allowed`, else `default` with a warning."""
    value = pod.metadata.annotations.get(name, default)
    if value in allowed:
        return value
    warn(
        ("pod", ProxyId(pod.namespace, pod.name)),
        pod,
        f'annotation {name}="{value}" is not one of {", ".join(allowed)}; treated as {default}',
    )
    return default
