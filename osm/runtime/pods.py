"""The local runtime's pods: Deployments become pods in network namespaces, with sidecars.

The one idea: a reconcile loop, as a kubelet and a ReplicaSet controller do it together.
The runtime holds the latest Namespaces, Services, Deployments and MeshConfig it read from
the controller's watch; `plan` compares the pods each Deployment wants (replicas of its
current template) with the pods that run, and says which to start and which to remove
(a changed template rolls: new pods first, old ones once the new are ready). What the
runtime observes goes back to the controller as ``Pod`` objects (IP, phase, Ready,
restarts) and ``Endpoints`` objects (ready addresses per Service), which the push loop
turns into proxy configuration. Everything in this module is pure: the I/O lives in
`osm.runtime.kubelet`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from osm.base import wellknown
from osm.base.identity import DataPlane
from osm.model.core import Container, Deployment, Endpoints, Namespace, Service, injection_enabled
from osm.runtime.network import HostEntry, service_hostnames

DEPLOYMENT_ANNOTATION = wellknown.LOCAL_ANNOTATION_PREFIX + "deployment"
MANAGED_ANNOTATION = wellknown.LOCAL_ANNOTATION_PREFIX + "managed-by"
MANAGER = "osm-runtime"
TEMPLATE_HASH_LABEL = "pod-template-hash"
SIDECAR_CONTAINER = "sidecar"


@dataclass(frozen=True, slots=True)
class PodState:
    """What the planner needs to know about one running (or starting) pod."""

    namespace: str
    name: str
    deployment: str
    template_hash: str
    ready: bool = False
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class NewPod:
    """A pod to start: the Deployment it belongs to and its template's hash."""

    namespace: str
    deployment: str
    template_hash: str


@dataclass(frozen=True, slots=True)
class Plan:
    start: tuple[NewPod, ...] = ()
    remove: tuple[PodState, ...] = ()


def template_hash(deployment: Deployment) -> str:
    """Kubernetes' ``pod-template-hash``: 10 characters that change with the template."""
    spec = deployment.manifest.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def pod_name(deployment: str, template: str, suffix: str) -> str:
    """``<deployment>-<template hash>-<suffix>``, cut to a 63-character DNS label."""
    return f"{deployment[: 63 - len(template) - len(suffix) - 2].rstrip('-')}-{template}-{suffix}"


def netns_name(prefix: str, namespace: str, pod: str) -> str:
    """The pod's network namespace: ``<prefix>-<namespace>-<pod>``, or a hash of it where
    that would pass the 63 characters `ip netns` names may have."""
    readable = f"{prefix}-{namespace}-{pod}"
    if len(readable) <= 63:
        return readable
    return f"{prefix}-" + hashlib.sha256(f"{namespace}/{pod}".encode()).hexdigest()[:20]


def plan(deployments: Iterable[Deployment], pods: Iterable[PodState]) -> Plan:
    """What to start and remove so that each Deployment runs ``replicas`` pods of its
    current template. Old-template pods go once as many new ones are ready as wanted
    (or at once when the Deployment wants none); pods without a Deployment go at once;
    surplus pods go unready first, then newest first."""
    wanted = {(d.namespace, d.name): d for d in deployments}
    by_deployment: dict[tuple[str, str], list[PodState]] = {}
    remove: list[PodState] = []
    for pod in pods:
        if (pod.namespace, pod.deployment) not in wanted:
            remove.append(pod)
        else:
            by_deployment.setdefault((pod.namespace, pod.deployment), []).append(pod)
    start: list[NewPod] = []
    for key, deployment in sorted(wanted.items()):
        current_hash = template_hash(deployment)
        mine = by_deployment.get(key, [])
        current = [p for p in mine if p.template_hash == current_hash]
        old = [p for p in mine if p.template_hash != current_hash]
        replicas = deployment.replicas
        if len(current) < replicas:
            start += [NewPod(key[0], key[1], current_hash)] * (replicas - len(current))
        elif len(current) > replicas:
            surplus = sorted(current, key=lambda p: (p.ready, -p.created, p.name))
            remove += surplus[: len(current) - replicas]
            current = surplus[len(current) - replicas :]
        if old and sum(p.ready for p in current) >= replicas:
            remove += old
    return Plan(tuple(start), tuple(remove))


def hosts_entries(services: Iterable[Service], namespace: str) -> list[HostEntry]:
    """The hosts file lines of a pod in ``namespace``: every Service with a ClusterIP
    under its names (the short name only for Services of the pod's own namespace)."""
    entries = []
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        if not service.cluster_ip or service.headless:
            continue
        names = service_hostnames(
            service.name, service.namespace, short=service.namespace == namespace
        )
        entries.append(HostEntry(service.cluster_ip, names))
    return entries


def sidecar_injected(namespace: Namespace | None, pod_annotations: Mapping[str, str]) -> bool:
    """OSM's rule: the pod's annotation if it has one, else its namespace's."""
    explicit = injection_enabled(pod_annotations)
    if explicit is not None:
        return explicit
    return namespace is not None and namespace.sidecar_injection


def pod_annotations(template: Mapping[str, str], injected: bool) -> dict[str, str]:
    """The annotations of a pod the runtime starts: its template's and, when the runtime
    injects its sidecar, ``osm-py.io/sidecar: python`` (`wellknown.DATA_PLANE_ANNOTATION`),
    whatever the template says: the runtime runs the Python sidecar only, and the
    control plane builds a Python sidecar's configuration (gRPC ports as TCP) from it,
    as OSM's webhook marks the pods it injected."""
    annotations = dict(template)
    if injected:
        annotations[wellknown.DATA_PLANE_ANNOTATION] = DataPlane.PYTHON.value
    return annotations


# -- objects written back to the controller -------------------------------------------------
@dataclass(frozen=True, slots=True)
class ContainerStatus:
    name: str
    ready: bool
    restarts: int
    running: bool


@dataclass(frozen=True, slots=True)
class PodReport:
    """One pod as the runtime observes it, for its ``Pod`` object."""

    namespace: str
    name: str
    deployment: str
    template_hash: str
    netns: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]
    pod_ip: str
    phase: str
    ready: bool
    containers: tuple[ContainerStatus, ...] = ()
    message: str = ""
    start_time: str = ""
    containers_spec: tuple[Container, ...] = field(default=())


def pod_object(report: PodReport) -> dict[str, Any]:
    """The ``Pod`` manifest of a running pod (status included)."""
    annotations = {
        **report.annotations,
        wellknown.NETNS_ANNOTATION: report.netns,
        DEPLOYMENT_ANNOTATION: report.deployment,
        MANAGED_ANNOTATION: MANAGER,
    }
    status: dict[str, Any] = {
        "phase": report.phase,
        "conditions": [{"type": "Ready", "status": "True" if report.ready else "False"}],
        "containerStatuses": [
            {
                "name": c.name,
                "ready": c.ready,
                "restartCount": c.restarts,
                "state": {"running": {}} if c.running else {"waiting": {}},
            }
            for c in report.containers
        ],
    }
    if report.pod_ip:
        status["podIP"] = report.pod_ip
    if report.message:
        status["message"] = report.message
    if report.start_time:
        status["startTime"] = report.start_time
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": report.name,
            "namespace": report.namespace,
            "labels": {**report.labels, TEMPLATE_HASH_LABEL: report.template_hash},
            "annotations": annotations,
        },
        "spec": dict(report.spec),
        "status": status,
    }


def endpoints_object(service: Service, pods: Sequence[PodReport]) -> dict[str, Any] | None:
    """The ``Endpoints`` of ``service``: its selected pods' addresses (ready ones under
    ``addresses``, the others under ``notReadyAddresses``), with each service port mapped
    to its target port (a port name is resolved per pod, so pods with different numbers
    for one name land in different subsets). None for a Service without a selector."""
    if not service.selector:
        return None
    groups: dict[tuple[tuple[str, int, str], ...], list[tuple[PodReport, bool]]] = {}
    for pod in sorted(pods, key=lambda p: (p.pod_ip, p.name)):
        if pod.namespace != service.namespace or not pod.pod_ip:
            continue
        if any(pod.labels.get(k) != v for k, v in service.selector.items()):
            continue
        ports: list[tuple[str, int, str]] = []
        for port in service.ports:
            target = _resolve_target(port.target_port, pod.containers_spec)
            if target is not None:
                ports.append((port.name, target, port.app_protocol))
        groups.setdefault(tuple(ports), []).append((pod, pod.ready))
    subsets = []
    for ports_key, members in sorted(groups.items()):
        subset: dict[str, Any] = {}
        ready = [_address(pod) for pod, is_ready in members if is_ready]
        waiting = [_address(pod) for pod, is_ready in members if not is_ready]
        if ready:
            subset["addresses"] = ready
        if waiting:
            subset["notReadyAddresses"] = waiting
        subset["ports"] = [
            {k: v for k, v in (("name", name), ("port", number), ("appProtocol", proto)) if v}
            for name, number, proto in ports_key
        ]
        subsets.append(subset)
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": service.name,
            "namespace": service.namespace,
            "labels": dict(service.metadata.labels),
            "annotations": {MANAGED_ANNOTATION: MANAGER},
        },
        "subsets": subsets,
    }


def _address(pod: PodReport) -> dict[str, Any]:
    return {
        "ip": pod.pod_ip,
        "targetRef": {"kind": "Pod", "name": pod.name, "namespace": pod.namespace},
    }


def _resolve_target(target: int | str, containers: Sequence[Container]) -> int | None:
    if isinstance(target, int):
        return target
    for container in containers:
        for port in container.ports:
            if port.name == target:
                return port.container_port
    return None


def managed(obj: Mapping[str, Any]) -> bool:
    """Whether a stored Pod or Endpoints object was written by a local runtime."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return isinstance(annotations, Mapping) and annotations.get(MANAGED_ANNOTATION) == MANAGER


def stale_endpoints(
    published: Iterable[tuple[str, str]], services: Iterable[Endpoints | Service]
) -> list[tuple[str, str]]:
    """Endpoints the runtime wrote whose Service is gone."""
    alive = {(s.namespace, s.name) for s in services}
    return sorted(key for key in published if key not in alive)
