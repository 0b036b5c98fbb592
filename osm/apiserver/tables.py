"""Server-side printing: a list of objects as the ``meta.k8s.io/v1`` Table kubectl prints.

kubectl asks for a Table (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``) and
prints its cells verbatim, so every cell here is computed as kube-apiserver's printers
compute it (``pkg/printers/internalversion``): a pod's STATUS from its container states
(``Init:0/1``, ``PodInitializing``, ``CrashLoopBackOff``, ``Completed``, ``Terminating``),
ages in kubectl's short form (`human_duration`), ``<none>`` where Kubernetes writes it.
Columns with priority 1 are those ``-o wide`` adds; the Table always carries them (kubectl
hides them). Each row's ``object`` is the object's metadata as a PartialObjectMetadata,
which kubectl reads for ``--show-labels``, ``-L`` and the NAMESPACE column.

The mesh's own kinds get the columns a CRD's ``additionalPrinterColumns`` would give them,
with their key fields. Objects are read as stored, defensively: a field missing or of an
unexpected type prints as Kubernetes prints an unset one, never as an error. Pure: the
caller passes the clock.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from osm.apiserver.resources import Resource
from osm.model import config
from osm.model.fields import format_duration, parse_duration

NONE = "<none>"
UNKNOWN = "<unknown>"
Cell = str | int


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One column: its definition in the Table and how a cell of it is computed."""

    name: str
    description: str
    cell: Callable[[Mapping[str, Any], datetime.datetime], Cell]
    priority: int = 0
    type: str = "string"
    format: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def table(
    resource: Resource,
    objects: Sequence[Mapping[str, Any]],
    *,
    now: datetime.datetime,
    resource_version: str,
) -> dict[str, Any]:
    """The Table of ``objects`` (of ``resource``'s kind), with ages relative to ``now`` (an
    aware datetime). The caller owns the returned dict."""
    columns = COLUMNS.get(resource.kind, DEFAULT)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {
            "cells": [column.cell(obj, now) for column in columns],
            "object": partial_object_metadata(obj),
        }
        if resource.kind == "Pod" and (conditions := _pod_row_conditions(obj)):
            row["conditions"] = conditions
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [column.definition() for column in columns],
        "rows": rows,
    }


def partial_object_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object's metadata as kube-apiserver puts it in a row (``includeObject=Metadata``)."""
    metadata = obj.get("metadata")
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": _copy(metadata) if isinstance(metadata, Mapping) else {},
    }


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


# -- reading stored objects defensively ------------------------------------------------------
def _get(obj: Any, *path: str) -> Any:
    """The value at ``path``, or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _list(obj: Any, *path: str) -> list[Any]:
    value = _get(obj, *path)
    return value if isinstance(value, list) else []


def _maps(obj: Any, *path: str) -> list[Mapping[str, Any]]:
    return [item for item in _list(obj, *path) if isinstance(item, Mapping)]


def _text(obj: Any, *path: str, default: str = "") -> str:
    value = _get(obj, *path)
    return value if isinstance(value, str) and value else default


def _number(obj: Any, *path: str, default: int = 0) -> int:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _flag(obj: Any, *path: str, default: bool) -> bool:
    value = _get(obj, *path)
    return value if isinstance(value, bool) else default


def _size(obj: Any, *path: str) -> int:
    value = _get(obj, *path)
    return len(value) if isinstance(value, Mapping | list) else 0


# -- time -----------------------------------------------------------------------------------
def parse_time(text: object) -> datetime.datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes it (``2025-01-01T00:00:00Z``), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def human_duration(elapsed: datetime.timedelta) -> str:
    """A duration as kubectl's AGE column prints it (apimachinery's ``HumanDuration``):
    exact seconds up to 2 minutes, then ever coarser (``5m4s``, ``12m``, ``3h25m``, ``2d3h``,
    ``400d``, ``3y5d``); less than 2 seconds in the future (clock skew) is ``0s``."""
    microseconds = elapsed // datetime.timedelta(microseconds=1)
    seconds = int(microseconds / 1_000_000)  # truncated toward zero, as Go's int()
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d" if rest == 0 else f"{days}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{days // 365}y" if rest == 0 else f"{days // 365}y{rest}d"
    return f"{days // 365}y"


def since(timestamp: object, now: datetime.datetime) -> str:
    """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` without one."""
    moment = parse_time(timestamp)
    return UNKNOWN if moment is None else human_duration(now - moment)


def _age(obj: Mapping[str, Any], now: datetime.datetime) -> str:
    return since(_get(obj, "metadata", "creationTimestamp"), now)


def _name(obj: Mapping[str, Any], now: datetime.datetime) -> str:
    return _text(obj, "metadata", "name")


NAME = Column(
    "Name",
    "Name must be unique within a namespace; it cannot be updated.",
    _name,
    format="name",
)
AGE = Column(
    "Age",
    "The time since the object was created (its creationTimestamp).",
    _age,
)
DEFAULT = (NAME, AGE)


# -- label selectors ------------------------------------------------------------------------
def format_labels(labels: object) -> str:
    """``labels.FormatLabels``: ``k=v`` sorted by key, comma-separated; ``<none>`` if empty."""
    if not isinstance(labels, Mapping) or not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_selector(selector: object) -> str:
    """A Deployment's LabelSelector as ``labels.Selector.String()`` prints it: requirements
    sorted by key (``app=web``, ``tier in (a,b)``, ``tier notin (c)``, ``beta``, ``!beta``),
    comma-separated; empty for an empty selector, ``<invalid>`` for a malformed one."""
    if not isinstance(selector, Mapping):
        return ""
    requirements: list[tuple[str, str]] = []
    match_labels = selector.get("matchLabels")
    if isinstance(match_labels, Mapping):
        requirements += [(str(k), f"{k}={v}") for k, v in match_labels.items()]
    for expression in _maps(selector, "matchExpressions"):
        key, operator = expression.get("key"), expression.get("operator")
        values = sorted(str(v) for v in _list(expression, "values"))
        if not isinstance(key, str):
            return "<invalid>"
        if operator == "In" and values:
            requirements.append((key, f"{key} in ({','.join(values)})"))
        elif operator == "NotIn" and values:
            requirements.append((key, f"{key} notin ({','.join(values)})"))
        elif operator == "Exists" and not values:
            requirements.append((key, key))
        elif operator == "DoesNotExist" and not values:
            requirements.append((key, f"!{key}"))
        else:
            return "<invalid>"
    return ",".join(text for _, text in sorted(requirements, key=lambda r: r[0]))


# -- Pod ------------------------------------------------------------------------------------
def pod_status(pod: Mapping[str, Any]) -> str:
    """The STATUS column: the pod's phase, or what its containers say (kubectl's rules)."""
    return _pod_summary(pod, None)[1]


def _restartable(init_specs: Mapping[str, Any], name: object) -> bool:
    """A sidecar container: an init container with ``restartPolicy: Always``."""
    return _text(init_specs.get(str(name)), "restartPolicy") == "Always"


def _pod_summary(pod: Mapping[str, Any], now: datetime.datetime | None) -> tuple[str, str, str]:
    """READY, STATUS and RESTARTS, as kube-apiserver's ``printPod`` computes them."""
    status = _get(pod, "status")
    phase = _text(status, "phase", default="Pending")  # what kube-apiserver writes on create
    reason = _text(status, "reason", default=phase)
    for condition in _maps(status, "conditions"):
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {str(c.get("name")): c for c in _maps(pod, "spec", "initContainers")}
    total = len(_list(pod, "spec", "containers"))
    total += sum(1 for name in init_specs if _restartable(init_specs, name))
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart: datetime.datetime | None = None
    last_sidecar_restart: datetime.datetime | None = None

    def finished(container: Mapping[str, Any]) -> datetime.datetime | None:
        return parse_time(_get(container, "lastState", "terminated", "finishedAt"))

    def later(a: datetime.datetime | None, b: datetime.datetime | None) -> datetime.datetime | None:
        return b if a is None or (b is not None and b > a) else a

    initializing = False
    init_statuses = _maps(status, "initContainerStatuses")
    for index, container in enumerate(init_statuses):
        count = _number(container, "restartCount")
        restarts += count
        last_restart = later(last_restart, finished(container))
        sidecar = _restartable(init_specs, container.get("name"))
        if sidecar:
            sidecar_restarts += count
            last_sidecar_restart = later(last_sidecar_restart, finished(container))
        terminated = _get(container, "state", "terminated")
        waiting_reason = _text(container, "state", "waiting", "reason")
        if isinstance(terminated, Mapping) and _number(terminated, "exitCode") == 0:
            continue
        if sidecar and container.get("started") is True:
            ready += 1 if container.get("ready") is True else 0
            continue
        if isinstance(terminated, Mapping):
            if _text(terminated, "reason"):
                reason = "Init:" + _text(terminated, "reason")
            elif _number(terminated, "signal"):
                reason = f"Init:Signal:{_number(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{_number(terminated, 'exitCode')}"
        elif waiting_reason and waiting_reason != "PodInitializing":
            reason = "Init:" + waiting_reason
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(
        c.get("type") == "Initialized" and c.get("status") == "True"
        for c in _maps(status, "conditions")
    )
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        running = False
        for container in reversed(_maps(status, "containerStatuses")):
            restarts += _number(container, "restartCount")
            last_restart = later(last_restart, finished(container))
            waiting = _get(container, "state", "waiting")
            terminated = _get(container, "state", "terminated")
            if isinstance(waiting, Mapping) and _text(waiting, "reason"):
                reason = _text(waiting, "reason")
            elif isinstance(terminated, Mapping) and _text(terminated, "reason"):
                reason = _text(terminated, "reason")
            elif isinstance(terminated, Mapping):
                signal = _number(terminated, "signal")
                exit_code = _number(terminated, "exitCode")
                reason = f"Signal:{signal}" if signal else f"ExitCode:{exit_code}"
            elif container.get("ready") is True and isinstance(
                _get(container, "state", "running"), Mapping
            ):
                running = True
                ready += 1
        if reason == "Completed" and running:
            pod_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in _maps(status, "conditions")
            )
            reason = "Running" if pod_ready else "NotReady"

    deleting = _get(pod, "metadata", "deletionTimestamp") is not None
    if deleting and _text(status, "reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restart_cell = str(restarts)
    if restarts and last_restart is not None and now is not None:
        restart_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"
    return f"{ready}/{total}", reason, restart_cell


def _pod_row_conditions(pod: Mapping[str, Any]) -> list[dict[str, str]]:
    phase = _text(pod, "status", "phase")
    if phase == "Succeeded":
        return [_completed("Succeeded", "The pod has completed successfully.")]
    if phase == "Failed":
        return [_completed("Failed", "The pod failed.")]
    return []


def _completed(reason: str, message: str) -> dict[str, str]:
    return {"type": "Completed", "status": "True", "reason": reason, "message": message}


def _pod_ip(pod: Mapping[str, Any]) -> str:
    ips = _maps(pod, "status", "podIPs")
    address = _text(ips[0], "ip") if ips else _text(pod, "status", "podIP")
    return address or NONE


def _readiness_gates(pod: Mapping[str, Any]) -> str:
    gates = _maps(pod, "spec", "readinessGates")
    if not gates:
        return NONE
    conditions = _maps(pod, "status", "conditions")
    passed = 0
    for gate in gates:
        condition = next(
            (c for c in conditions if c.get("type") == gate.get("conditionType")), None
        )
        passed += 1 if condition is not None and condition.get("status") == "True" else 0
    return f"{passed}/{len(gates)}"


POD = (
    NAME,
    Column(
        "Ready",
        "The aggregate readiness state of this pod for accepting traffic.",
        lambda o, now: _pod_summary(o, now)[0],
    ),
    Column(
        "Status",
        "The aggregate status of the containers in this pod.",
        lambda o, now: _pod_summary(o, now)[1],
    ),
    Column(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the "
        "last container in this pod has restarted.",
        lambda o, now: _pod_summary(o, now)[2],
    ),
    AGE,
    Column("IP", "The IP address allocated to the pod.", lambda o, now: _pod_ip(o), priority=1),
    Column(
        "Node",
        "The node the pod is scheduled onto.",
        lambda o, now: _text(o, "spec", "nodeName", default=NONE),
        priority=1,
    ),
    Column(
        "Nominated Node",
        "The node the scheduler nominated for the pod, while it preempts others.",
        lambda o, now: _text(o, "status", "nominatedNodeName", default=NONE),
        priority=1,
    ),
    Column(
        "Readiness Gates",
        "The pod's readiness gates that are true, out of all of them.",
        lambda o, now: _readiness_gates(o),
        priority=1,
    ),
)


# -- Deployment ------------------------------------------------------------------------------
def _deployment_ready(deployment: Mapping[str, Any]) -> str:
    desired = _number(deployment, "spec", "replicas", default=1)
    return f"{_number(deployment, 'status', 'readyReplicas')}/{desired}"


def _containers(deployment: Mapping[str, Any], field: str) -> str:
    containers = _maps(deployment, "spec", "template", "spec", "containers")
    return ",".join(_text(c, field) for c in containers)


DEPLOYMENT = (
    NAME,
    Column(
        "Ready",
        "Number of the deployment's pods that are ready, out of the desired replicas.",
        lambda o, now: _deployment_ready(o),
    ),
    Column(
        "Up-to-date",
        "Total number of non-terminated pods targeted by this deployment that have the "
        "desired template spec.",
        lambda o, now: _number(o, "status", "updatedReplicas"),
        type="integer",
    ),
    Column(
        "Available",
        "Total number of available pods (ready for at least minReadySeconds).",
        lambda o, now: _number(o, "status", "availableReplicas"),
        type="integer",
    ),
    AGE,
    Column(
        "Containers",
        "Names of each container in the template.",
        lambda o, now: _containers(o, "name"),
        priority=1,
    ),
    Column(
        "Images",
        "Images referenced by each container in the template.",
        lambda o, now: _containers(o, "image"),
        priority=1,
    ),
    Column(
        "Selector",
        "Label selector for pods; the pods it selects are the deployment's.",
        lambda o, now: format_selector(_get(o, "spec", "selector")),
        priority=1,
    ),
)


# -- Service ---------------------------------------------------------------------------------
def _cluster_ip(service: Mapping[str, Any]) -> str:
    addresses = [a for a in _list(service, "spec", "clusterIPs") if isinstance(a, str)]
    return (addresses[0] if addresses else _text(service, "spec", "clusterIP")) or NONE


def _service_type(service: Mapping[str, Any]) -> str:
    return _text(service, "spec", "type", default="ClusterIP")


def _external_ip(service: Mapping[str, Any]) -> str:
    """kube-apiserver's ``getServiceExternalIP`` (wide: load balancer addresses unclipped)."""
    kind = _service_type(service)
    external = [a for a in _list(service, "spec", "externalIPs") if isinstance(a, str)]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or NONE
    if kind == "LoadBalancer":
        ingress = sorted(
            {
                _text(i, "ip") or _text(i, "hostname")
                for i in _maps(service, "status", "loadBalancer", "ingress")
            }
            - {""}
        )
        if external:
            return ",".join([*ingress, *external])
        return ",".join(ingress) or "<pending>"
    if kind == "ExternalName":
        return _text(service, "spec", "externalName")
    return UNKNOWN


def _service_ports(service: Mapping[str, Any]) -> str:
    pieces = []
    for port in _maps(service, "spec", "ports"):
        number = _number(port, "port")
        protocol = _text(port, "protocol", default="TCP")
        node_port = _number(port, "nodePort")
        pieces.append(
            f"{number}:{node_port}/{protocol}" if node_port > 0 else f"{number}/{protocol}"
        )
    return ",".join(pieces) or NONE


SERVICE = (
    NAME,
    Column(
        "Type",
        "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName.",
        lambda o, now: _service_type(o),
    ),
    Column(
        "Cluster-IP",
        "The service's virtual IP address; None for a headless service.",
        lambda o, now: _cluster_ip(o),
    ),
    Column(
        "External-IP",
        "The addresses the service is reachable at from outside the cluster.",
        lambda o, now: _external_ip(o),
    ),
    Column("Port(s)", "The ports the service exposes.", lambda o, now: _service_ports(o)),
    AGE,
    Column(
        "Selector",
        "The labels of the pods the service sends traffic to.",
        lambda o, now: format_labels(_get(o, "spec", "selector")),
        priority=1,
    ),
)


# -- Namespace, Endpoints, Secret, ConfigMap, ServiceAccount ---------------------------------
def _namespace_phase(namespace: Mapping[str, Any]) -> str:
    """The stored phase; Active (or Terminating, once deleted) where the store wrote none,
    which is what kube-apiserver would have written."""
    deleting = _get(namespace, "metadata", "deletionTimestamp") is not None
    return _text(namespace, "status", "phase", default="Terminating" if deleting else "Active")


def _host_port(ip: str, port: int) -> str:
    try:
        bracketed = ipaddress.ip_address(ip).version == 6
    except ValueError:
        bracketed = ":" in ip
    return f"[{ip}]:{port}" if bracketed else f"{ip}:{port}"


def format_endpoints(endpoints: Mapping[str, Any], shown: int = 3) -> str:
    """kube-apiserver's ``formatEndpoints``: the first ready ``ip:port`` pairs, then
    `` + N more...``; ``<none>`` without subsets (only not-ready addresses print empty)."""
    subsets = _maps(endpoints, "subsets")
    if not subsets:
        return NONE
    listed: list[str] = []
    count = 0
    for subset in subsets:
        addresses = [_text(a, "ip") for a in _maps(subset, "addresses")]
        ports = _maps(subset, "ports")
        if not ports:
            count += len(addresses)
            listed += addresses[: max(shown - len(listed), 0)]
            continue
        for port in ports:
            count += len(addresses)
            for ip in addresses:
                if len(listed) < shown:
                    listed.append(_host_port(ip, _number(port, "port")))
    text = ",".join(listed)
    return f"{text} + {count - shown} more..." if count > shown else text


def _secret_data(secret: Mapping[str, Any]) -> int:
    """The keys stored: ``data`` with ``stringData`` merged in, as kube-apiserver stores it."""
    keys: set[str] = set()
    for field in ("data", "stringData"):
        value = _get(secret, field)
        if isinstance(value, Mapping):
            keys |= {str(k) for k in value}
    return len(keys)


NAMESPACE = (
    NAME,
    Column(
        "Status",
        "The phase of the namespace: Active, or Terminating once deleted.",
        lambda o, now: _namespace_phase(o),
    ),
    AGE,
)
ENDPOINTS = (
    NAME,
    Column(
        "Endpoints",
        "The ready addresses and ports of the service's pods.",
        lambda o, now: format_endpoints(o),
    ),
    AGE,
)
SECRET = (
    NAME,
    Column(
        "Type",
        "The type of the secret's data.",
        lambda o, now: _text(o, "type", default="Opaque"),
    ),
    Column(
        "Data",
        "The number of keys the secret holds.",
        lambda o, now: _secret_data(o),
        type="integer",
    ),
    AGE,
)
CONFIG_MAP = (
    NAME,
    Column(
        "Data",
        "The number of keys the config map holds (data and binaryData).",
        lambda o, now: _size(o, "data") + _size(o, "binaryData"),
        type="integer",
    ),
    AGE,
)
SERVICE_ACCOUNT = (
    NAME,
    Column(
        "Secrets",
        "The number of secrets the service account lists.",
        lambda o, now: _size(o, "secrets"),
        type="integer",
    ),
    AGE,
)

CREATED_AT = Column(
    "Created At",
    "When the object was created, as kubectl shows cluster infrastructure.",
    lambda o, now: _text(o, "metadata", "creationTimestamp"),
    format="date",
)


def _subjects(binding: Mapping[str, Any], kind: str) -> str:
    names = [
        (f"{s.get('namespace')}/" if kind == "ServiceAccount" else "") + str(s.get("name"))
        for s in _maps(binding, "subjects")
        if s.get("kind") == kind
    ]
    return ", ".join(names)


ROLE_BINDING = (
    NAME,
    Column(
        "Role",
        "The role the binding grants.",
        lambda o, now: f"{_text(o, 'roleRef', 'kind')}/{_text(o, 'roleRef', 'name')}",
    ),
    AGE,
    Column("Users", "The users bound.", lambda o, now: _subjects(o, "User"), priority=1),
    Column("Groups", "The groups bound.", lambda o, now: _subjects(o, "Group"), priority=1),
    Column(
        "ServiceAccounts",
        "The service accounts bound.",
        lambda o, now: _subjects(o, "ServiceAccount"),
        priority=1,
    ),
)
WEBHOOK_CONFIGURATION = (
    NAME,
    Column(
        "Webhooks",
        "The number of webhooks the configuration holds.",
        lambda o, now: _size(o, "webhooks"),
        type="integer",
    ),
    AGE,
)


# -- the mesh's own kinds --------------------------------------------------------------------
def _joined(values: Sequence[str], empty: str = NONE) -> str:
    return ",".join(values) or empty


def _identity(identity: Mapping[str, Any], own_namespace: str) -> str:
    """``namespace/name`` of a service account, the TrafficTarget's namespace by default."""
    namespace = _text(identity, "namespace", default=own_namespace)
    return f"{namespace}/{_text(identity, 'name')}"


def _sources(target: Mapping[str, Any]) -> str:
    own = _text(target, "metadata", "namespace")
    return _joined([_identity(s, own) for s in _maps(target, "spec", "sources")])


def _rules(target: Mapping[str, Any]) -> str:
    return _joined(
        [f"{_text(r, 'kind')}/{_text(r, 'name')}" for r in _maps(target, "spec", "rules")]
    )


def _backends(split: Mapping[str, Any]) -> str:
    return _joined(
        [f"{_text(b, 'service')}:{_number(b, 'weight')}" for b in _maps(split, "spec", "backends")]
    )


def _ports(route: Mapping[str, Any]) -> str:
    ports = sorted({p for p in _list(route, "spec", "matches", "ports") if isinstance(p, int)})
    return _joined([str(p) for p in ports], empty="<all>")


def _mode(mesh: Mapping[str, Any]) -> str:
    permissive = _flag(
        mesh,
        "spec",
        "traffic",
        "enablePermissiveTrafficPolicyMode",
        default=config.TrafficSettings().enable_permissive_traffic_policy_mode,
    )
    return "permissive" if permissive else "smi"


def _egress(mesh: Mapping[str, Any]) -> str:
    default = config.TrafficSettings().enable_egress
    return str(_flag(mesh, "spec", "traffic", "enableEgress", default=default)).lower()


def _cert_validity(mesh: Mapping[str, Any]) -> str:
    default = config.CertificateSettings().service_cert_validity_duration
    seconds = parse_duration(_text(mesh, "spec", "certificate", "serviceCertValidityDuration"))
    return format_duration(seconds if seconds is not None else default)


TRAFFIC_TARGET = (
    NAME,
    Column(
        "Destination",
        "The service account whose pods the sources may reach.",
        lambda o, now: _text(o, "spec", "destination", "name", default=NONE),
    ),
    AGE,
    Column(
        "Sources",
        "The service accounts allowed, as namespace/name.",
        lambda o, now: _sources(o),
        priority=1,
    ),
    Column(
        "Rules",
        "The routes allowed, as kind/name.",
        lambda o, now: _rules(o),
        priority=1,
    ),
)
HTTP_ROUTE_GROUP = (
    NAME,
    Column(
        "Matches",
        "The names of the group's matches.",
        lambda o, now: _joined([_text(m, "name") for m in _maps(o, "spec", "matches")]),
    ),
    AGE,
)
TCP_ROUTE = (
    NAME,
    Column(
        "Ports", "The destination ports matched; <all> for every port.", lambda o, now: _ports(o)
    ),
    AGE,
)
TRAFFIC_SPLIT = (
    NAME,
    Column(
        "Service",
        "The root service whose traffic is split.",
        lambda o, now: _text(o, "spec", "service", default=NONE),
    ),
    AGE,
    Column(
        "Backends",
        "The backend services and their weights, as service:weight.",
        lambda o, now: _backends(o),
        priority=1,
    ),
    Column(
        "Matches",
        "The HTTPRouteGroups that select the traffic split; <all> for every request.",
        lambda o, now: _joined([_text(m, "name") for m in _maps(o, "spec", "matches")], "<all>"),
        priority=1,
    ),
)
MESH_CONFIG = (
    NAME,
    Column(
        "Mode",
        "The traffic policy mode: permissive (all traffic allowed) or smi (TrafficTargets).",
        lambda o, now: _mode(o),
    ),
    Column(
        "Egress", "Whether pods may reach destinations outside the mesh.", lambda o, now: _egress(o)
    ),
    AGE,
    Column(
        "Cert-Validity",
        "How long a proxy's certificate is valid.",
        lambda o, now: _cert_validity(o),
        priority=1,
    ),
)


# OSM's policy kinds: OSM's CRDs print a Status column (``.status.currentStatus``) for
# IngressBackend and UpstreamTrafficSetting, and nothing else; the key fields are added.
def _policy_port(port: Mapping[str, Any]) -> str:
    return f"{_number(port, 'number')}/{_text(port, 'protocol').lower()}"


def _egress_sources(egress: Mapping[str, Any]) -> str:
    return _joined(
        [f"{_text(s, 'namespace')}/{_text(s, 'name')}" for s in _maps(egress, "spec", "sources")]
    )


def _egress_destinations(egress: Mapping[str, Any]) -> str:
    hosts = [h for h in _list(egress, "spec", "hosts") if isinstance(h, str)]
    addresses = [a for a in _list(egress, "spec", "ipAddresses") if isinstance(a, str)]
    return _joined([*hosts, *addresses])


def _ingress_backends(ingress: Mapping[str, Any]) -> str:
    return _joined(
        [
            f"{_text(b, 'name')}:{_policy_port(_get(b, 'port') or {})}"
            for b in _maps(ingress, "spec", "backends")
        ]
    )


def _ingress_sources(ingress: Mapping[str, Any]) -> str:
    pieces = []
    for source in _maps(ingress, "spec", "sources"):
        namespace = _text(source, "namespace")
        name = f"{namespace}/{_text(source, 'name')}" if namespace else _text(source, "name")
        pieces.append(f"{_text(source, 'kind')}/{name}")
    return _joined(pieces)


def _policy_status(obj: Mapping[str, Any], now: datetime.datetime) -> str:
    return _text(obj, "status", "currentStatus")


EGRESS = (
    NAME,
    Column(
        "Sources",
        "The service accounts let out, as namespace/name.",
        lambda o, now: _egress_sources(o),
    ),
    Column(
        "Destinations",
        "The external hosts and address ranges allowed.",
        lambda o, now: _egress_destinations(o),
    ),
    Column(
        "Ports",
        "The destination ports allowed, as number/protocol.",
        lambda o, now: _joined([_policy_port(p) for p in _maps(o, "spec", "ports")]),
    ),
    AGE,
)
INGRESS_BACKEND = (
    NAME,
    Column(
        "Backends",
        "The backend services admitted, as name:port/protocol.",
        lambda o, now: _ingress_backends(o),
    ),
    Column("Status", "Current status of the IngressBackend policy.", _policy_status),
    AGE,
    Column(
        "Sources",
        "The clients allowed, as kind/name.",
        lambda o, now: _ingress_sources(o),
        priority=1,
    ),
)
RETRY = (
    NAME,
    Column(
        "Source",
        "The service account whose requests are retried, as namespace/name.",
        lambda o, now: _identity(
            _get(o, "spec", "source") or {}, _text(o, "metadata", "namespace")
        ),
    ),
    Column(
        "Destinations",
        "The services whose requests are retried, as namespace/name.",
        lambda o, now: _joined(
            [
                f"{_text(d, 'namespace')}/{_text(d, 'name')}"
                for d in _maps(o, "spec", "destinations")
            ]
        ),
    ),
    Column(
        "Retry-On",
        "The conditions a request is retried on.",
        lambda o, now: _text(o, "spec", "retryPolicy", "retryOn", default=NONE),
    ),
    AGE,
    Column(
        "Retries",
        "The most retries of one request.",
        lambda o, now: _number(o, "spec", "retryPolicy", "numRetries"),
        priority=1,
        type="integer",
    ),
)
UPSTREAM_TRAFFIC_SETTING = (
    NAME,
    Column(
        "Host",
        "The upstream host the settings apply to.",
        lambda o, now: _text(o, "spec", "host", default=NONE),
    ),
    Column("Status", "Current status of the UpstreamTrafficSetting policy.", _policy_status),
    AGE,
)

COLUMNS: Mapping[str, tuple[Column, ...]] = {
    "Pod": POD,
    "Deployment": DEPLOYMENT,
    "Service": SERVICE,
    "Namespace": NAMESPACE,
    "Endpoints": ENDPOINTS,
    "Secret": SECRET,
    "ConfigMap": CONFIG_MAP,
    "ServiceAccount": SERVICE_ACCOUNT,
    "CustomResourceDefinition": (NAME, CREATED_AT),
    "ClusterRole": (NAME, CREATED_AT),
    "Role": (NAME, CREATED_AT),
    "ClusterRoleBinding": ROLE_BINDING,
    "RoleBinding": ROLE_BINDING,
    "MutatingWebhookConfiguration": WEBHOOK_CONFIGURATION,
    "ValidatingWebhookConfiguration": WEBHOOK_CONFIGURATION,
    "TrafficTarget": TRAFFIC_TARGET,
    "HTTPRouteGroup": HTTP_ROUTE_GROUP,
    "TCPRoute": TCP_ROUTE,
    "TrafficSplit": TRAFFIC_SPLIT,
    "Egress": EGRESS,
    "IngressBackend": INGRESS_BACKEND,
    "Retry": RETRY,
    "UpstreamTrafficSetting": UPSTREAM_TRAFFIC_SETTING,
    "MeshConfig": MESH_CONFIG,
}
"""The columns of each kind; a kind not listed gets NAME and AGE."""
