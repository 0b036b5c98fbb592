"""The local runtime's decisions: which Pods each Deployment wants, what a Pod's status
says, which addresses each Service's Endpoints list.

The one idea: two reconcile loops, as Kubernetes' ReplicaSet controller and kubelet do it,
over what the API stores. `plan` compares the pods each Deployment wants (replicas of its
current template) with the Pod objects it owns, and says which to create (`pod_manifest`,
sent through the API, whose admission injects the sidecar) and which to delete (a changed
template rolls: new pods first, old ones once the new are ready). The kubelet runs every
stored Pod as it was admitted, and writes back what it observes: the Pod's ``status``
(`pod_status`: IP, phase, conditions, container states and restarts) and ``Endpoints``
(ready addresses per Service), which the push loop turns into proxy configuration.
Everything in this module is pure: the I/O lives in `osm.runtime.kubelet`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from osm.base import wellknown
from osm.model.core import Container, Deployment, Endpoints, HostAlias, Pod, Service
from osm.runtime.network import HostEntry, service_hostnames

DEPLOYMENT_ANNOTATION = wellknown.LOCAL_ANNOTATION_PREFIX + "deployment"
MANAGED_ANNOTATION = wellknown.LOCAL_ANNOTATION_PREFIX + "managed-by"
MANAGER = "osm-runtime"
TEMPLATE_HASH_LABEL = "pod-template-hash"


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


def hosts_entries(
    services: Iterable[Service],
    namespace: str,
    controller_ip: str = "",
    aliases: Iterable[HostAlias] = (),
    headless: Mapping[tuple[str, str], Sequence[str]] | None = None,
) -> list[HostEntry]:
    """The hosts file lines of a pod in ``namespace``: the controller's Service names at
    ``controller_ip`` (where pods reach its xDS and metrics ports), then every Service under
    its names (the short name only for Services of the pod's own namespace): a ClusterIP
    Service at its ClusterIP, a headless one at each of its ready endpoints' IPs
    (``headless``: (namespace, name) -> IPs, `ready_addresses`; as cluster DNS answers a
    headless name with its pods' A records; none while it has none), then the pod's own
    ``hostAliases`` in their order (last, as the kubelet writes them)."""
    entries = []
    ready = headless or {}
    if controller_ip:
        names = service_hostnames(
            wellknown.CONTROLLER_SERVICE, wellknown.CONTROL_PLANE_NAMESPACE, short=False
        )
        entries.append(HostEntry(controller_ip, names))
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        if controller_ip and (service.namespace, service.name) == (
            wellknown.CONTROL_PLANE_NAMESPACE,
            wellknown.CONTROLLER_SERVICE,
        ):
            continue
        names = service_hostnames(
            service.name, service.namespace, short=service.namespace == namespace
        )
        if service.headless:
            entries += [
                HostEntry(ip, names) for ip in ready.get((service.namespace, service.name), ())
            ]
        elif service.cluster_ip:
            entries.append(HostEntry(service.cluster_ip, names))
    entries += [HostEntry(alias.ip, alias.hostnames) for alias in aliases]
    return entries


def ready_addresses(endpoints: Mapping[str, Any]) -> list[str]:
    """The IPs of an ``Endpoints`` object's ready addresses, sorted, each once."""
    found = {
        str(address["ip"])
        for subset in endpoints.get("subsets") or ()
        for address in subset.get("addresses") or ()
        if address.get("ip")
    }
    return sorted(found)


# -- Pods of Deployments ---------------------------------------------------------------------
def pod_manifest(deployment: Deployment, template: str, name: str) -> dict[str, Any]:
    """The Pod a Deployment's controller asks the API for: the template's metadata and
    spec, the ``pod-template-hash`` label, the owning Deployment (an annotation, which
    `owned_pods` reads, and an ``ownerReference`` as Kubernetes writes one)."""
    spec = deployment.manifest.get("spec")
    template_doc = spec.get("template") if isinstance(spec, Mapping) else None
    template_doc = template_doc if isinstance(template_doc, Mapping) else {}
    template_meta = template_doc.get("metadata")
    template_meta = template_meta if isinstance(template_meta, Mapping) else {}
    owner: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment.name,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    if deployment.metadata.uid:
        owner["uid"] = deployment.metadata.uid
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": deployment.namespace,
            "labels": {**dict(template_meta.get("labels") or {}), TEMPLATE_HASH_LABEL: template},
            "annotations": {
                **dict(template_meta.get("annotations") or {}),
                DEPLOYMENT_ANNOTATION: deployment.name,
            },
            "ownerReferences": [owner],
        },
        "spec": json.loads(json.dumps(template_doc.get("spec") or {})),
    }


def owned_pods(pods: Iterable[Pod], ready: Mapping[tuple[str, str], bool]) -> list[PodState]:
    """The stored Pods that a Deployment's controller made, for `plan`; ``ready`` overrides
    what a Pod's stored status says (the kubelet knows better, and sooner)."""
    states = []
    for pod in pods:
        deployment = pod.metadata.annotations.get(DEPLOYMENT_ANNOTATION)
        if not deployment:
            continue
        key = (pod.namespace, pod.name)
        states.append(
            PodState(
                pod.namespace,
                pod.name,
                deployment,
                pod.metadata.labels.get(TEMPLATE_HASH_LABEL, ""),
                ready.get(key, pod.ready),
                _created(pod.metadata.creation_timestamp),
            )
        )
    return states


def _created(timestamp: str) -> float:
    """An RFC 3339 creation timestamp as seconds since the epoch (0 when unreadable)."""
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


# -- Pod status, as the kubelet reports it ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """One container as the kubelet observes it. ``state``: ``running``, ``waiting`` (with
    a ``reason``: ContainerCreating, PodInitializing, CrashLoopBackOff) or ``terminated``
    (with ``exit_code`` and ``reason``: Completed, Error, or the probe that killed it)."""

    name: str
    state: str
    ready: bool = False
    started: bool = False
    restarts: int = 0
    reason: str = ""
    exit_code: int | None = None
    last_exit_code: int | None = None
    last_reason: str = ""
    image: str = ""
    """The spec's image; always written with an ``imageID`` (empty: no image ran), as
    Kubernetes clients (lightkube's models) require both."""


@dataclass(frozen=True, slots=True)
class PodReport:
    """One pod as the kubelet observes it: for its status and its Services' Endpoints."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    pod_ip: str
    phase: str
    ready: bool
    host_ip: str = ""
    initialized: bool = False
    init_containers: tuple[ContainerStatus, ...] = ()
    containers: tuple[ContainerStatus, ...] = ()
    message: str = ""
    reason: str = ""
    start_time: str = ""
    containers_spec: tuple[Container, ...] = field(default=())


def pod_status(report: PodReport) -> dict[str, Any]:
    """The ``status`` of a Pod, in the shape kube-apiserver serves it."""

    def condition(kind: str, true: bool) -> dict[str, str]:
        return {"type": kind, "status": "True" if true else "False"}

    containers_ready = bool(report.containers) and all(c.ready for c in report.containers)
    status: dict[str, Any] = {
        "phase": report.phase,
        "conditions": [
            condition("PodScheduled", True),
            condition("Initialized", report.initialized),
            condition("ContainersReady", containers_ready),
            condition("Ready", report.ready),
        ],
    }
    if report.host_ip:
        status["hostIP"] = report.host_ip
    if report.pod_ip:
        status["podIP"] = report.pod_ip
        status["podIPs"] = [{"ip": report.pod_ip}]
    if report.start_time:
        status["startTime"] = report.start_time
    if report.message:
        status["message"] = report.message
    if report.reason:
        status["reason"] = report.reason
    if report.init_containers:
        status["initContainerStatuses"] = [_container_status(c) for c in report.init_containers]
    if report.containers:
        status["containerStatuses"] = [_container_status(c) for c in report.containers]
    return status


def exit_status(code: int) -> int:
    """A container's exit code as Kubernetes reports it: 128 + the signal that killed it
    (a process's return code is minus the signal), else its own."""
    return 128 - code if code < 0 else code


def _container_status(container: ContainerStatus) -> dict[str, Any]:
    state: dict[str, Any]
    if container.state == "running":
        state = {"running": {}}
    elif container.state == "terminated":
        state = {"terminated": {"exitCode": exit_status(container.exit_code or 0)}}
        if container.reason:
            state["terminated"]["reason"] = container.reason
    else:
        state = {"waiting": {"reason": container.reason} if container.reason else {}}
    status: dict[str, Any] = {
        "name": container.name,
        "image": container.image,
        "imageID": "",
        "ready": container.ready,
        "started": container.started,
        "restartCount": container.restarts,
        "state": state,
    }
    if container.last_exit_code is not None:
        last = {"exitCode": exit_status(container.last_exit_code)}
        status["lastState"] = {
            "terminated": {**last, "reason": container.last_reason}
            if container.last_reason
            else last
        }
    return status


def with_status(
    manifest: Mapping[str, Any], status: Mapping[str, Any], netns: str = ""
) -> dict[str, Any]:
    """The stored Pod with its ``status`` replaced and, given ``netns``, the annotation that
    says where it runs (`wellknown.NETNS_ANNOTATION`: ``osm proxy get`` enters it). Its
    ``resourceVersion`` is kept, so the write is refused (Conflict) if the Pod changed or was
    deleted meanwhile, rather than bringing a deleted Pod back."""
    obj: dict[str, Any] = json.loads(json.dumps(manifest))
    obj["status"] = dict(status)
    if netns:
        obj["metadata"].setdefault("annotations", {})[wellknown.NETNS_ANNOTATION] = netns
    return obj


def deployment_status(
    deployment: Deployment,
    pods: Sequence[PodState],
    refusal: str,
    now: str,
) -> dict[str, Any]:
    """A Deployment's ``status`` as Kubernetes' deployment controller writes it: replica
    counts of its pods, and the conditions ``Available`` (at least ``replicas`` minus
    Kubernetes' default maxUnavailable of 25% are ready), ``Progressing`` and, while the
    API refuses its pods, ``ReplicaFailure`` (reason FailedCreate, the API's message). A
    condition keeps its transition time while its status does not change."""
    mine = [
        p for p in pods if p.namespace == deployment.namespace and p.deployment == deployment.name
    ]
    current = template_hash(deployment)
    updated = [p for p in mine if p.template_hash == current]
    ready = [p for p in mine if p.ready]
    wanted = deployment.replicas
    available = len(ready) >= wanted - wanted // 4
    done = len(updated) == wanted == len(mine) and all(p.ready for p in updated)
    previous = {
        c.get("type"): c
        for c in (deployment.manifest.get("status") or {}).get("conditions") or ()
        if isinstance(c, Mapping)
    }

    def condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        text = "True" if status else "False"
        before = previous.get(kind) or {}
        changed = before.get("status") != text
        since = now if changed else before.get("lastTransitionTime", now)
        updated_at = (
            now if changed or before.get("reason") != reason else before.get("lastUpdateTime", now)
        )
        return {
            "type": kind,
            "status": text,
            "lastUpdateTime": updated_at,
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }

    name = f'Deployment "{deployment.name}"'
    conditions = [
        condition(
            "Available",
            available,
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            f"{name} has minimum availability."
            if available
            else f"{name} does not have minimum availability.",
        ),
        condition(
            "Progressing",
            True,
            "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
            f"{name} has successfully progressed." if done else f"{name} is progressing.",
        ),
    ]
    if refusal:
        conditions.append(condition("ReplicaFailure", True, "FailedCreate", refusal))
    status: dict[str, Any] = {
        "observedGeneration": deployment.metadata.generation,
        "replicas": len(mine),
        "updatedReplicas": len(updated),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready),
        "conditions": conditions,
    }
    if len(mine) > len(ready):
        status["unavailableReplicas"] = len(mine) - len(ready)
    return {k: v for k, v in status.items() if v != 0 or k in ("replicas", "observedGeneration")}


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch (RFC 7386) of a status that turns ``old`` into ``new``: every field
    of ``new``, and null for the top-level fields ``old`` has and ``new`` has not (a Pod's
    status has lists and scalars at the top, which a merge patch replaces whole)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    patch.update(new)
    return patch


# -- Endpoints ----------------------------------------------------------------------------------
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
