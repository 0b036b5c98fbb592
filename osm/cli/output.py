"""How `osm get` prints objects: kubectl-style tables (per-kind columns), YAML, JSON
and names."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from osm.model import core, kinds, smi
from osm.model.fields import format_duration
from osm.model.meta import Resource

Column = tuple[str, Callable[[Any], str]]


def age(resource: Resource, now: datetime.datetime | None = None) -> str:
    """Age as kubectl prints it: 45s, 12m, 3h, 7d."""
    stamp = resource.metadata.creation_timestamp
    if not stamp:
        return "<unknown>"
    try:
        created = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _labels(values: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(values.items())) or "<none>"


def _ports(service: core.Service) -> str:
    return ",".join(f"{p.port}/{p.protocol}" for p in service.ports) or "<none>"


def _endpoints(endpoints: core.Endpoints) -> str:
    shown = [
        f"{a.ip}:{p.port}"
        for s in endpoints.subsets
        for a in s.addresses
        if a.ready
        for p in s.ports
    ]
    if not shown:
        return "<none>"
    return ",".join(shown[:3]) + (f" + {len(shown) - 3} more..." if len(shown) > 3 else "")


def _ready(pod: core.Pod) -> str:
    """Ready containers out of the pod's containers, as kubectl's READY column shows it."""
    status = pod.manifest.get("status")
    statuses = status.get("containerStatuses") if isinstance(status, Mapping) else None
    ready = 0
    if isinstance(statuses, list):
        ready = sum(1 for s in statuses if isinstance(s, Mapping) and s.get("ready") is True)
    return f"{ready}/{len(pod.spec.containers)}"


def _restarts(pod: core.Pod) -> str:
    """The sum of status.containerStatuses[].restartCount, as kubectl shows it."""
    status = pod.manifest.get("status")
    statuses = status.get("containerStatuses") if isinstance(status, Mapping) else None
    if not isinstance(statuses, list):
        return "0"
    counts = (s.get("restartCount") for s in statuses if isinstance(s, Mapping))
    return str(sum(c for c in counts if isinstance(c, int) and not isinstance(c, bool)))


def _backends(split: smi.TrafficSplit) -> str:
    return ",".join(f"{b.service}:{b.weight}" for b in split.backends)


COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {
    # kind: (default columns after NAME, extra columns for -o wide)
    "Namespace": (
        [("STATUS", lambda r: "Active")],
        [("SIDECAR-INJECTION", lambda r: "enabled" if r.sidecar_injection else "-")],
    ),
    "ServiceAccount": ([], []),
    "Service": (
        [
            ("TYPE", lambda r: r.type),
            ("CLUSTER-IP", lambda r: r.cluster_ip or "<none>"),
            ("PORT(S)", _ports),
        ],
        [
            ("APP-PROTOCOL", lambda r: ",".join(p.app_protocol for p in r.ports)),
            ("SELECTOR", lambda r: _labels(r.selector)),
        ],
    ),
    "Deployment": (
        [("REPLICAS", lambda r: str(r.replicas))],
        [
            ("CONTAINERS", lambda r: ",".join(c.name for c in r.template.spec.containers)),
            ("SERVICE-ACCOUNT", lambda r: r.template.spec.service_account_name),
            ("SELECTOR", lambda r: _labels(r.selector)),
        ],
    ),
    "Pod": (
        [
            ("READY", _ready),
            ("STATUS", lambda r: r.phase or "Pending"),
            ("RESTARTS", _restarts),
        ],
        [
            ("IP", lambda r: r.pod_ip or "<none>"),
            ("SERVICE-ACCOUNT", lambda r: r.spec.service_account_name),
        ],
    ),
    "Endpoints": ([("ENDPOINTS", _endpoints)], []),
    "Secret": ([("TYPE", lambda r: r.type), ("DATA", lambda r: str(len(r.data)))], []),
    "ConfigMap": ([("DATA", lambda r: str(len(r.data) + len(r.binary_data)))], []),
    "TrafficTarget": (
        [
            ("DESTINATION", lambda r: str(r.destination)),
            ("SOURCES", lambda r: ",".join(str(s) for s in r.sources)),
        ],
        [("RULES", lambda r: ",".join(f"{x.kind}/{x.name}" for x in r.rules))],
    ),
    "HTTPRouteGroup": ([("MATCHES", lambda r: ",".join(m.name for m in r.matches))], []),
    "TCPRoute": ([("PORTS", lambda r: ",".join(map(str, r.ports)) or "<all>")], []),
    "TrafficSplit": (
        [("SERVICE", lambda r: r.service), ("BACKENDS", _backends)],
        [("MATCHES", lambda r: ",".join(r.matches) or "<all>")],
    ),
    "MeshConfig": (
        [
            ("MODE", lambda r: "permissive" if r.permissive else "smi"),
            ("EGRESS", lambda r: str(r.traffic.enable_egress).lower()),
        ],
        [
            (
                "CERT-VALIDITY",
                lambda r: format_duration(r.certificate.service_cert_validity_duration),
            )
        ],
    ),
}


def table(
    resources: Sequence[Resource], *, wide: bool = False, all_namespaces: bool = False
) -> str:
    """Aligned columns, one row per object, as kubectl prints them."""
    if not resources:
        return ""
    kind = resources[0].kind
    normal, extra = COLUMNS.get(kind, ([], []))
    columns: list[Column] = [("NAME", lambda r: r.name), *normal, ("AGE", age)]
    if wide:
        columns += extra
    if all_namespaces and kinds.BY_KIND[kind].namespaced:
        columns.insert(0, ("NAMESPACE", lambda r: r.namespace))
    rows = [[header for header, _ in columns]]
    rows += [[render(resource) for _, render in columns] for resource in resources]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()


def name_of(resource: Resource) -> str:
    return f"{resource.kind.lower()}/{resource.name}"
