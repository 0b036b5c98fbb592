"""The dashboard's answers, computed from what its sources returned: pure, no I/O.

The one idea: every JSON body of the dashboard's API (the contract of issue #18) is a
function of three plain inputs: the mesh's objects as a `MeshState`, Prometheus's query
results as it returns them (``data.result`` of a vector or a matrix), and the
controller's ``/debug/proxies`` list (and, for traces, Zipkin v2 spans). Policy verdicts
are `osm.catalog.explain`'s, read off the same catalog that configures the proxies, so the
graph cannot disagree with ``osm policy check-pods``.

Conventions: a source that answered nothing is ``None`` (its fields come out null, never
zero); times are seconds as floats from the caller's clock; ids are the contract's
(``workload:<ns>/<name>``, ``service:<ns>/<name>``). Inbound clusters (``...|local``) and
clusters that name no ``<ns>/<service>|<port>`` are not edges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from osm.base import wellknown
from osm.base.identity import DataPlane, Identity, InvalidIdentity
from osm.catalog import explain, policy
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.state import MeshState
from osm.model.core import Deployment, Pod
from osm.model.smi import TrafficSplit

Json = dict[str, Any]
Vector = Sequence[Mapping[str, Any]]
"""Prometheus's ``data.result`` of an instant query: ``[{"metric": {...}, "value": [t, "v"]}]``."""
Matrix = Sequence[Mapping[str, Any]]
"""Prometheus's ``data.result`` of a range query: ``[{"metric", "values": [[t, "v"]...]}]``."""

SOURCE_NAMESPACE = "source_namespace"
SOURCE_WORKLOAD = "source_workload_name"
CLUSTER = "envoy_cluster_name"
CODE_CLASS = "envoy_response_code_class"
EXPIRING_SOON_S = 3600.0
"""A proxy whose mesh certificate ends within this many seconds is `expiring_soon`."""
_CLUSTER_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\|(\d+)$"
)
_TEMPLATE_HASH_LABEL = "pod-template-hash"


# -- Prometheus answers ---------------------------------------------------------------------
def cluster_service(cluster: str) -> ServiceId | None:
    """The service an outbound cluster ``<ns>/<svc>|<port>`` sends to; None for any other
    cluster (inbound ``|local``, the tracing and controller clusters, passthrough)."""
    found = _CLUSTER_NAME.match(cluster)
    return ServiceId(found.group(1), found.group(3)) if found else None


def sample_value(sample: Mapping[str, Any]) -> float | None:
    """The value of one vector sample; None when missing or not a finite number (a
    ``histogram_quantile`` of no requests is NaN)."""
    try:
        value = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


EdgeKey = tuple[str, str, ServiceId]
"""(source namespace, source workload, destination service)."""


@dataclass(frozen=True, slots=True)
class Signals:
    """Golden signals of an edge or a service over one window; None: no data."""

    rps: float | None = None
    success_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None

    def to_json(self) -> Json:
        return {
            "rps": _round(self.rps),
            "success_rate": _round(self.success_rate, 4),
            "p50_ms": _round(self.p50_ms),
            "p99_ms": _round(self.p99_ms),
        }


@dataclass(frozen=True, slots=True)
class Metrics:
    """Prometheus's answers for one window, per edge and per destination service.
    ``seen`` are the edges with requests within the lookback (for denied edges)."""

    edges: Mapping[EdgeKey, Signals] = field(default_factory=dict)
    services: Mapping[ServiceId, Signals] = field(default_factory=dict)
    seen: frozenset[EdgeKey] = frozenset()


def _edge_key(metric: Mapping[str, str]) -> EdgeKey | None:
    service = cluster_service(metric.get(CLUSTER, ""))
    namespace, workload = metric.get(SOURCE_NAMESPACE, ""), metric.get(SOURCE_WORKLOAD, "")
    if service is None or not namespace or not workload:
        return None
    return (namespace, workload, service)


def _by_edge(vector: Vector) -> dict[EdgeKey, float]:
    found: dict[EdgeKey, float] = {}
    for sample in vector:
        key = _edge_key(sample.get("metric") or {})
        value = sample_value(sample)
        if key is not None and value is not None:
            found[key] = found.get(key, 0.0) + value
    return found


def _by_service(vector: Vector) -> dict[ServiceId, float]:
    found: dict[ServiceId, float] = {}
    for sample in vector:
        service = cluster_service((sample.get("metric") or {}).get(CLUSTER, ""))
        value = sample_value(sample)
        if service is not None and value is not None:
            found[service] = found.get(service, 0.0) + value
    return found


def metrics_from(
    rps: Vector,
    classes: Vector,
    p50: Vector,
    p99: Vector,
    service_p50: Vector,
    service_p99: Vector,
    seen: Vector,
) -> Metrics:
    """Folds the answers of `osm.dashboard.sources.window_queries` (same names) into
    `Metrics`. ``classes`` are request rates per response code class; success is the
    2xx and 3xx share of them (None without requests)."""
    edge_rps = _by_edge(rps)
    good: dict[EdgeKey, float] = {}
    total: dict[EdgeKey, float] = {}
    service_good: dict[ServiceId, float] = {}
    service_total: dict[ServiceId, float] = {}
    for sample in classes:
        metric = sample.get("metric") or {}
        key = _edge_key(metric)
        value = sample_value(sample)
        if key is None or value is None:
            continue
        ok = metric.get(CODE_CLASS) in ("2", "3")
        total[key] = total.get(key, 0.0) + value
        service_total[key[2]] = service_total.get(key[2], 0.0) + value
        if ok:
            good[key] = good.get(key, 0.0) + value
            service_good[key[2]] = service_good.get(key[2], 0.0) + value
    edge_p50, edge_p99 = _by_edge(p50), _by_edge(p99)
    edges = {
        key: Signals(
            edge_rps.get(key),
            _ratio(good.get(key, 0.0), total.get(key, 0.0)),
            edge_p50.get(key),
            edge_p99.get(key),
        )
        for key in set(edge_rps) | set(total)
    }
    service_rps: dict[ServiceId, float] = {}
    for (_ns, _workload, service), value in edge_rps.items():
        service_rps[service] = service_rps.get(service, 0.0) + value
    svc_p50, svc_p99 = _by_service(service_p50), _by_service(service_p99)
    services = {
        service: Signals(
            service_rps.get(service),
            _ratio(service_good.get(service, 0.0), service_total.get(service, 0.0)),
            svc_p50.get(service),
            svc_p99.get(service),
        )
        for service in set(service_rps) | set(service_total) | set(svc_p50)
    }
    seen_edges = frozenset(key for key, value in _by_edge(seen).items() if value > 0)
    return Metrics(edges, services, seen_edges | {k for k, s in edges.items() if s.rps})


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def series(matrix: Matrix) -> list[list[float | None]]:
    """One range query's single series as ``[[unix_s, value|null], ...]`` (the first
    series when Prometheus answers several; NaN is null)."""
    if not matrix:
        return []
    points: list[list[float | None]] = []
    for point in matrix[0].get("values") or []:
        try:
            at = float(point[0])
        except (IndexError, TypeError, ValueError):
            continue
        value = sample_value({"value": point})
        points.append([at, None if value is None else round(value, 4)])
    return points


# -- workloads -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Workload:
    """A Deployment (or a bare pod) of a mesh namespace and its pods."""

    namespace: str
    name: str
    pods: tuple[Pod, ...]
    service_account: str

    @property
    def id(self) -> str:
        return f"workload:{self.namespace}/{self.name}"


def workload_of(pod: Pod, deployments: Sequence[Deployment]) -> str:
    """The workload a pod belongs to, as Prometheus's ``source_workload_name`` names it:
    the Deployment that owns it (directly, as local mode's pods; or through its
    ReplicaSet, as Kubernetes's), else the Deployment of ``deployments`` (those of its
    namespace) whose selector matches its labels, else the pod itself."""
    return _WorkloadIndex(deployments).workload_of(pod)


class _WorkloadIndex:
    """`workload_of` for many pods: the Deployments indexed by their selectors' first
    label, so a pod is matched against the few whose selector can match it (the first
    of ``deployments`` that matches wins, as a scan would find it)."""

    def __init__(self, deployments: Sequence[Deployment]) -> None:
        self._by_label: dict[tuple[str, str, str], list[tuple[int, Deployment]]] = {}
        for order, deployment in enumerate(deployments):
            if deployment.selector:
                label, value = next(iter(deployment.selector.items()))
                key = (deployment.namespace, label, value)
                self._by_label.setdefault(key, []).append((order, deployment))

    def workload_of(self, pod: Pod) -> str:
        for owner in (pod.manifest.get("metadata") or {}).get("ownerReferences") or ():
            kind, name = owner.get("kind"), str(owner.get("name") or "")
            if kind == "Deployment" and name:
                return name
            if kind == "ReplicaSet" and name:
                suffix = pod.metadata.labels.get(_TEMPLATE_HASH_LABEL, "")
                return name.removesuffix(f"-{suffix}") if suffix else name.rsplit("-", 1)[0]
        labels = pod.metadata.labels
        best: tuple[int, Deployment] | None = None
        for label, value in labels.items():
            for order, deployment in self._by_label.get((pod.namespace, label, value), ()):
                if (best is None or order < best[0]) and all(
                    labels.get(k) == v for k, v in deployment.selector.items()
                ):
                    best = (order, deployment)
        return best[1].name if best is not None else pod.name


def workloads(catalog: Catalog) -> dict[tuple[str, str], Workload]:
    """Every workload of the mesh's namespaces: their Deployments (with or without pods)
    and bare pods, by (namespace, name)."""
    state = catalog.state
    in_mesh: dict[str, bool] = {}

    def meshed(namespace: str) -> bool:
        if namespace not in in_mesh:
            in_mesh[namespace] = catalog.in_mesh_namespace(namespace)
        return in_mesh[namespace]

    deployments = [d for d in state.typed(Deployment) if meshed(d.namespace)]
    index = _WorkloadIndex(deployments)
    pods: dict[tuple[str, str], list[Pod]] = {}
    for pod in state.typed(Pod):
        if meshed(pod.namespace):
            pods.setdefault((pod.namespace, index.workload_of(pod)), []).append(pod)
    found: dict[tuple[str, str], Workload] = {}
    for deployment in deployments:
        key = (deployment.namespace, deployment.name)
        account = deployment.template.spec.service_account_name or "default"
        found[key] = Workload(*key, tuple(pods.pop(key, ())), account)
    for key, members in pods.items():
        account = members[0].spec.service_account_name or "default"
        found[key] = Workload(*key, tuple(members), account)
    return dict(sorted(found.items()))


def pod_data_plane(catalog: Catalog, pod: Pod) -> str | None:
    """The data plane of a pod's sidecar as the catalog reads it (the injector's
    annotation; Envoy by default), None for a pod without one."""
    if not (_injected(pod) and catalog.pod_in_mesh(pod)):
        return None
    value = pod.metadata.annotations.get(wellknown.DATA_PLANE_ANNOTATION, DataPlane.ENVOY.value)
    return value if value in tuple(DataPlane) else DataPlane.ENVOY.value


def _data_plane(planes: Iterable[str | None]) -> str | None:
    found = {plane for plane in planes if plane is not None}
    if not found:
        return None
    return found.pop() if len(found) == 1 else "mixed"


def _injected(pod: Pod) -> bool:
    return bool(pod.metadata.labels.get(wellknown.PROXY_UUID_LABEL)) or any(
        c.name in explain.SIDECAR_CONTAINERS for c in pod.spec.containers
    )


# -- policy of an edge -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EdgePolicy:
    allowed: bool
    by: str
    suggestion: str | None = None

    def to_json(self) -> Json:
        return {"allowed": self.allowed, "by": self.by, "suggestion": self.suggestion}


Explainer = Callable[[ProxyId, ProxyId], explain.Explanation]
"""`explain.explain` of one catalog between two pods (a `Topology` remembers its answers)."""


def edge_policy(
    catalog: Catalog,
    workload: Workload,
    service: ServiceId,
    selected: Sequence[Pod] | None = None,
    explainer: Explainer | None = None,
) -> EdgePolicy:
    """Whether ``workload`` may call ``service`` now, and what decides: `explain.explain`
    between its first pod and the first pod the service selects (``selected``, when the
    caller has them; the ports of that service only); without pods on either side,
    whether the service is among those the workload's service account may reach
    (`Catalog.reachable`). ``explainer`` answers for `explain.explain` when given."""
    state = catalog.state
    if selected is None:
        target = state.service(service)
        selected = state.pods_selected_by(target) if target else []
    source_pods = [min(workload.pods, key=lambda p: p.name)] if workload.pods else []
    destination_pods = [min(selected, key=lambda p: p.name)] if selected else []
    try:
        source_identity = Identity(workload.namespace, workload.service_account)
    except InvalidIdentity:
        return EdgePolicy(False, f"service account {workload.service_account!r} is not valid")
    if source_pods and destination_pods:
        src, dst = source_pods[0], destination_pods[0]
        pair = (ProxyId(src.namespace, src.name), ProxyId(dst.namespace, dst.name))
        found = explainer(*pair) if explainer else explain.explain(catalog, *pair)
        ports = [p for p in found.ports if p.service == service]
        if found.membership:
            allowed = bool(ports) and all(p.allowed for p in ports)
            return EdgePolicy(allowed, "; ".join(found.membership))
        if ports:
            return _from_ports(catalog, ports, source_identity, found.destination_identity)
    reachable = service in catalog.reachable(source_identity)
    if catalog.permissive:
        return EdgePolicy(True, "permissive mode")
    identities = catalog.identities_of(service)
    if reachable:
        refs = [
            t
            for t in catalog.state.targets_from(source_identity)
            if Identity(t.destination.namespace, t.destination.name) in identities
        ]
        return EdgePolicy(True, ", ".join(str(t.ref) for t in refs) or "a TrafficTarget")
    destination_identity = identities[0] if identities else None
    return _denied(catalog, source_identity, destination_identity, service)


def _from_ports(
    catalog: Catalog,
    ports: Sequence[explain.PortAnswer],
    source: Identity,
    destination: Identity,
) -> EdgePolicy:
    allowed = [p for p in ports if p.allowed]
    if allowed:
        if catalog.permissive:
            return EdgePolicy(True, "permissive mode")
        refs = sorted({str(ref) for p in allowed for ref in p.objects})
        return EdgePolicy(True, ", ".join(refs) or allowed[0].decided_by[0])
    return _denied(catalog, source, destination, ports[0].service)


def _denied(
    catalog: Catalog, source: Identity, destination: Identity | None, service: ServiceId
) -> EdgePolicy:
    if destination is None:
        return EdgePolicy(False, f"Service {service} selects no pod of the mesh")
    if catalog.permissive:  # permissive mode denies only what the mesh cannot carry
        return EdgePolicy(False, f"{source}'s sidecar has no route to Service {service}")
    return EdgePolicy(
        False,
        f"no TrafficTarget allows {source} → {destination}",
        suggest_target(catalog.state, source, destination, service),
    )


def suggest_target(
    state: MeshState, source: Identity, destination: Identity, service: ServiceId
) -> str:
    """The YAML of a TrafficTarget that lets ``source`` call ``destination``: the rules
    the destination's other TrafficTargets grant (so the new source gets what the others
    get), else a new HTTPRouteGroup (every request) and TCPRoute (every port) for the
    service's ports, documents before the TrafficTarget that names them."""
    documents: list[Json] = []
    rules: list[Json] = []
    for existing in state.targets_to(destination):
        for rule in existing.manifest.get("spec", {}).get("rules") or ():
            if rule not in rules:
                rules.append(dict(rule))
    name = f"{source.service_account}-access-{destination.service_account}"
    if not rules:
        target = state.service(service)
        protocols = {
            policy.is_http(port.app_protocol) for port in (target.ports if target else ())
        } or {True}
        if True in protocols:
            documents.append(
                {
                    "apiVersion": "specs.smi-spec.io/v1alpha4",
                    "kind": "HTTPRouteGroup",
                    "metadata": {"name": f"{name}-routes", "namespace": destination.namespace},
                    "spec": {"matches": [{"name": "all", "pathRegex": ".*", "methods": ["*"]}]},
                }
            )
            rules.append({"kind": "HTTPRouteGroup", "name": f"{name}-routes", "matches": ["all"]})
        if False in protocols:
            documents.append(
                {
                    "apiVersion": "specs.smi-spec.io/v1alpha4",
                    "kind": "TCPRoute",
                    "metadata": {"name": f"{name}-tcp", "namespace": destination.namespace},
                    "spec": {"matches": {"ports": []}},
                }
            )
            rules.append({"kind": "TCPRoute", "name": f"{name}-tcp"})
    documents.append(
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": {"name": name, "namespace": destination.namespace},
            "spec": {
                "destination": {
                    "kind": "ServiceAccount",
                    "name": destination.service_account,
                    "namespace": destination.namespace,
                },
                "rules": rules,
                "sources": [
                    {
                        "kind": "ServiceAccount",
                        "name": source.service_account,
                        "namespace": source.namespace,
                    }
                ],
            },
        }
    )
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents)


# -- the graph -------------------------------------------------------------------------------
class Topology:
    """What the graph has of one `MeshState` alone, computed once per state and shared by
    every refresh until the state changes: its workload and service nodes, ``serves``
    edges, the traffic pairs the policy allows (SMI mode), and each pair's `EdgePolicy`
    (asked lazily, kept). Read-only for its users; not thread-safe."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        state = catalog.state
        self.workloads = workloads(catalog)
        planes = {
            (p.namespace, p.name): pod_data_plane(catalog, p)
            for w in self.workloads.values()
            for p in w.pods
        }
        self.nodes: list[Json] = [
            {
                "id": workload.id,
                "kind": "workload",
                "namespace": workload.namespace,
                "name": workload.name,
                "label": workload.name,
                "data_plane": _data_plane(planes[(p.namespace, p.name)] for p in workload.pods),
                "pods": len(workload.pods),
            }
            for workload in self.workloads.values()
        ]
        self.serves: list[Json] = []
        self.selected_by: dict[ServiceId, list[Pod]] = {}
        workload_of_pod = {
            (p.namespace, p.name): w for w in self.workloads.values() for p in w.pods
        }
        for service_id in catalog.mesh_services():
            service = state.service(service_id)
            selected = state.pods_selected_by(service) if service else []
            self.selected_by[service_id] = selected
            self.nodes.append(
                {
                    "id": f"service:{service_id}",
                    "kind": "service",
                    "namespace": service_id.namespace,
                    "name": service_id.name,
                    "label": service_id.name,
                    "data_plane": _data_plane(
                        planes[key] if key in planes else pod_data_plane(catalog, p)
                        for p in selected
                        for key in [(p.namespace, p.name)]
                    ),
                    "pods": len(selected),
                }
            )
            served = {
                workload_of_pod[(p.namespace, p.name)].id
                for p in selected
                if (p.namespace, p.name) in workload_of_pod
            }
            for workload_id in sorted(served):
                self.serves.append(
                    {
                        "id": f"service:{service_id}->{workload_id}",
                        "source": f"service:{service_id}",
                        "target": workload_id,
                        "kind": "serves",
                        "state": "active",
                        **Signals().to_json(),
                        "policy": None,
                    }
                )
        self.allowed: set[EdgeKey] = set()
        if not catalog.permissive:
            for workload in self.workloads.values():
                try:
                    identity = Identity(workload.namespace, workload.service_account)
                except InvalidIdentity:
                    continue
                for service_id in catalog.reachable(identity):
                    self.allowed.add((workload.namespace, workload.name, service_id))
        self._policies: dict[EdgeKey, EdgePolicy] = {}
        self._explained: dict[tuple[ProxyId, ProxyId], explain.Explanation] = {}

    def workload(self, namespace: str, name: str) -> Workload:
        """The workload (one without pods or Deployment when the state has none)."""
        return self.workloads.get((namespace, name)) or Workload(namespace, name, (), "default")

    def policy(self, key: EdgeKey) -> EdgePolicy:
        """`edge_policy` of (source namespace, source workload, service), kept."""
        decided = self._policies.get(key)
        if decided is None:
            namespace, name, service_id = key
            decided = edge_policy(
                self.catalog,
                self.workload(namespace, name),
                service_id,
                self.selected_by.get(service_id),
                self._explain,
            )
            self._policies[key] = decided
        return decided

    def _explain(self, source: ProxyId, destination: ProxyId) -> explain.Explanation:
        found = self._explained.get((source, destination))
        if found is None:
            found = explain.explain(self.catalog, source, destination)
            self._explained[(source, destination)] = found
        return found


def graph(
    catalog: Catalog, metrics: Metrics | None, window: str, topology: Topology | None = None
) -> Json:
    """The contract's ``/api/graph`` body without ``errors``: a node per workload and per
    mesh service, ``serves`` edges from each service to the workloads it selects, and
    ``traffic`` edges from a workload to a service that carried requests within the
    lookback or that an SMI TrafficTarget allows (in permissive mode every pair is
    allowed, so only pairs with requests are drawn). A traffic edge is ``denied`` when the
    policy denies it now, else ``active`` with requests in the window, else ``idle``.
    The apex of a TrafficSplit carries the sum of its backends' rates from each source.
    ``topology`` is ``catalog``'s `Topology` when the caller keeps one.
    """
    if topology is None or topology.catalog is not catalog:
        topology = Topology(catalog)
    nodes = list(topology.nodes)
    edges = list(topology.serves)
    apex = _apex_sums(catalog.state, metrics)
    candidates = set(topology.allowed)
    if metrics is not None:
        # Envoy reports every cluster it has, called or not: only requests make an edge
        # (to a split's apex too: what a client calls when its requests reach the backends).
        candidates |= metrics.seen | set(apex)
        for apex_id, backends in _split_backends(catalog.state):
            candidates |= {(ns, wl, apex_id) for ns, wl, svc in metrics.seen if svc in backends}
    known_nodes = {node["id"] for node in nodes}
    for key in sorted(candidates, key=lambda k: (k[0], k[1], str(k[2]))):
        namespace, name, service_id = key
        source_id, target_id = f"workload:{namespace}/{name}", f"service:{service_id}"
        for node_id, kind, node_ns, node_name in (
            (source_id, "workload", namespace, name),
            (target_id, "service", service_id.namespace, service_id.name),
        ):
            if node_id not in known_nodes:
                known_nodes.add(node_id)
                nodes.append(
                    {
                        "id": node_id,
                        "kind": kind,
                        "namespace": node_ns,
                        "name": node_name,
                        "label": node_name,
                        "data_plane": None,
                        "pods": 0,
                    }
                )
        signals = (metrics.edges.get(key) if metrics else None) or apex.get(key)
        if metrics is not None and signals is None:
            signals = Signals(rps=0.0)
        decided = topology.policy(key)
        if not decided.allowed:
            edge_state = "denied"
        elif signals is not None and signals.rps:
            edge_state = "active"
        else:
            edge_state = "idle"
        edges.append(
            {
                "id": f"{source_id}->{target_id}",
                "source": source_id,
                "target": target_id,
                "kind": "traffic",
                "state": edge_state,
                **(signals or Signals()).to_json(),
                "policy": decided.to_json(),
            }
        )
    return {"window": window, "nodes": nodes, "edges": edges}


def _split_backends(state: MeshState) -> list[tuple[ServiceId, set[ServiceId]]]:
    """Each TrafficSplit's apex service and its backends."""
    return [
        (
            ServiceId(split.namespace, split.service.split(".")[0]),
            {ServiceId(split.namespace, b.service) for b in split.backends},
        )
        for split in state.typed(TrafficSplit)
    ]


def _apex_sums(state: MeshState, metrics: Metrics | None) -> dict[EdgeKey, Signals]:
    """Per source, each split apex's rate: the sum of its backends' (success weighted by
    rate; latency quantiles do not add up, so they are left out)."""
    if metrics is None:
        return {}
    sums: dict[EdgeKey, Signals] = {}
    for apex, backends in _split_backends(state):
        totals: dict[tuple[str, str], list[float]] = {}
        for (namespace, workload, service), signals in metrics.edges.items():
            if service in backends and signals.rps:
                total = totals.setdefault((namespace, workload), [0.0, 0.0, 0.0])
                total[0] += signals.rps
                if signals.success_rate is not None:
                    total[1] += signals.success_rate * signals.rps
                    total[2] += signals.rps
        for (namespace, workload), (rps, good, weighed) in totals.items():
            sums[(namespace, workload, apex)] = Signals(rps, _ratio(good, weighed))
    return sums


# -- splits and services ---------------------------------------------------------------------
def splits(state: MeshState, metrics: Metrics | None) -> list[Json]:
    """Each TrafficSplit's backends: configured weight and share beside the observed share
    of requests (every source's, in the window) and rate; observed values are null
    without Prometheus, and shares are null when no backend had requests."""
    found: list[Json] = []
    for split in state.typed(TrafficSplit):
        weights = sum(b.weight for b in split.backends)
        rates = {
            b.service: (
                sum(
                    s.rps or 0.0
                    for (_ns, _w, service), s in metrics.edges.items()
                    if service == ServiceId(split.namespace, b.service)
                )
                if metrics is not None
                else None
            )
            for b in split.backends
        }
        observed_total = sum(r for r in rates.values() if r is not None)
        found.append(
            {
                "namespace": split.namespace,
                "name": split.name,
                "service": split.service,
                "backends": [
                    {
                        "service": b.service,
                        "weight": b.weight,
                        "configured_share": round(b.weight / weights, 4) if weights else 0.0,
                        "observed_share": (
                            round(rate / observed_total, 4)
                            if rate is not None and observed_total > 0
                            else None
                        ),
                        "rps": _round(rate),
                    }
                    for b in split.backends
                    for rate in [rates[b.service]]
                ],
            }
        )
    return found


def services(catalog: Catalog, metrics: Metrics | None) -> list[Json]:
    """Every mesh service with its golden signals in the window (null without Prometheus;
    a rate of 0 for a service without requests)."""
    found: list[Json] = []
    for service_id in catalog.mesh_services():
        signals = metrics.services.get(service_id) if metrics is not None else None
        if metrics is not None and signals is None:
            signals = Signals(rps=0.0)
        found.append(
            {
                "namespace": service_id.namespace,
                "name": service_id.name,
                **(signals or Signals()).to_json(),
            }
        )
    return found


# -- proxies ---------------------------------------------------------------------------------
def proxies(state: MeshState, statuses: Sequence[Mapping[str, Any]], now: float) -> Json:
    """The controller's connected proxies, each with its pod (the first label of its node
    id is the pod's ``osm-proxy-uuid`` label, or its name), and a summary: connected,
    with a NACK, with a certificate ending within `EXPIRING_SOON_S` of ``now``."""
    pods: dict[str, Pod] = {}
    for each in state.typed(Pod):
        uuid = each.metadata.labels.get(wellknown.PROXY_UUID_LABEL)
        if uuid:
            pods[uuid] = each
    found: list[Json] = []
    nacked = expiring = 0
    for status in statuses:
        node_id = str(status.get("node_id") or "")
        parts = node_id.split(".")
        pod = pods.get(parts[0])
        namespace = pod.namespace if pod else (parts[3] if len(parts) > 3 else None)
        pod_name = pod.name if pod else None
        if pod is None and len(parts) > 3:  # a pod without a UUID presents its name
            named = state.pod(parts[3], parts[0])
            pod_name = named.name if named else None
        nack = status.get("last_nack")
        last_nack = (
            {
                "type": nack.get("type") or nack.get("type_url"),
                "error": nack.get("error") or nack.get("message"),
                "at": nack.get("at"),
            }
            if isinstance(nack, Mapping)
            else None
        )
        nacked += last_nack is not None
        cert_expiry = status.get("cert_expiry")
        ends = _epoch(cert_expiry) if isinstance(cert_expiry, str) else None
        expiring += ends is not None and ends - now < EXPIRING_SOON_S
        data_plane = status.get("data_plane")
        if data_plane is None and pod is not None:
            data_plane = pod.metadata.annotations.get(wellknown.DATA_PLANE_ANNOTATION) or (
                "python"
                if any(
                    c.name == wellknown.PYTHON_SIDECAR_CONTAINER_NAME for c in pod.spec.containers
                )
                else "envoy"
            )
        found.append(
            {
                "namespace": namespace,
                "pod": pod_name,
                "node_id": node_id,
                "identity": status.get("identity"),
                "data_plane": data_plane,
                "connected_since": status.get("connected_since"),
                "acked_versions": dict(status.get("acked_versions") or {}),
                "last_nack": last_nack,
                "cert_expiry": cert_expiry,
                "protocol": status.get("protocol"),
            }
        )
    found.sort(key=lambda p: (p["namespace"] or "", p["pod"] or "", p["node_id"]))
    return {
        "proxies": found,
        "summary": {"connected": len(found), "nacked": nacked, "expiring_soon": expiring},
    }


def _epoch(text: str) -> float | None:
    import datetime

    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


# -- traces ----------------------------------------------------------------------------------
def _span_error(span: Mapping[str, Any]) -> bool:
    tags = span.get("tags") or {}
    if "error" in tags:
        return True
    code = str(tags.get("http.status_code") or "")
    return code.startswith("5")


def _service(span: Mapping[str, Any]) -> str:
    return str((span.get("localEndpoint") or {}).get("serviceName") or "")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def trace_summary(spans: Sequence[Mapping[str, Any]]) -> Json | None:
    """One Zipkin v2 trace (its spans) as the contract's list entry; None when empty."""
    if not spans:
        return None
    ordered = waterfall(spans)
    root = ordered[0]
    start = (
        min(_int(s.get("timestamp")) for s in spans if s.get("timestamp") is not None)
        if any(s.get("timestamp") is not None for s in spans)
        else 0
    )
    end = max(_int(s.get("timestamp")) + _int(s.get("duration")) for s in spans)
    return {
        "trace_id": str(spans[0].get("traceId") or ""),
        "root_service": root["service"],
        "root_name": root["name"],
        "start_us": start,
        "duration_us": max(end - start, 0),
        "span_count": len(spans),
        "services": sorted({_service(s) for s in spans if _service(s)}),
        "error": any(_span_error(s) for s in spans),
    }


def traces(found: Sequence[Sequence[Mapping[str, Any]]], limit: int) -> list[Json]:
    """Zipkin's ``/api/v2/traces`` answer as the contract's list, newest first."""
    summaries = [s for s in (trace_summary(t) for t in found) if s is not None]
    summaries.sort(key=lambda s: -s["start_us"])
    return summaries[:limit]


def waterfall(spans: Sequence[Mapping[str, Any]]) -> list[Json]:
    """A trace's spans in waterfall order: parents before children, siblings by start,
    each with its depth and its start as an offset from the trace's start.

    Envoy's Zipkin spans may share an id between the client and the server side of one
    hop (B3's shared span): the server span is then the client span's child, and a span
    whose parent id names such a pair hangs under its server side. A span whose parent
    is not in the trace is a root."""
    if not spans:
        return []
    items = list(enumerate(spans))
    starts = [_int(s.get("timestamp")) for _, s in items]
    trace_start = min(starts)
    by_id: dict[str, list[int]] = {}
    for index, span in items:
        by_id.setdefault(str(span.get("id") or ""), []).append(index)

    def parent_of(index: int) -> int | None:
        span = spans[index]
        same = [i for i in by_id.get(str(span.get("id") or ""), []) if i != index]
        if span.get("kind") == "SERVER":
            clients = [i for i in same if spans[i].get("kind") == "CLIENT"]
            if clients:
                return clients[0]
        parent_id = span.get("parentId")
        if not parent_id:
            return None
        holders = by_id.get(str(parent_id), [])
        if not holders:
            return None
        servers = [i for i in holders if spans[i].get("kind") == "SERVER"]
        return (servers or holders)[0]

    children: dict[int | None, list[int]] = {}
    for index, _span in items:
        children.setdefault(parent_of(index), []).append(index)
    for members in children.values():
        members.sort(key=lambda i: (starts[i], i))
    ordered: list[Json] = []
    visited: set[int] = set()

    def visit(index: int, depth: int) -> None:
        stack = [(index, depth)]
        while stack:
            current, level = stack.pop()
            if current in visited:
                continue
            visited.add(current)
            span = spans[current]
            ordered.append(
                {
                    "id": str(span.get("id") or ""),
                    "parent_id": span.get("parentId"),
                    "service": _service(span),
                    "name": str(span.get("name") or ""),
                    "kind": span.get("kind"),
                    "start_us": starts[current] - trace_start,
                    "duration_us": _int(span.get("duration")),
                    "depth": level,
                    "tags": dict(span.get("tags") or {}),
                    "error": _span_error(span),
                }
            )
            for child in reversed(children.get(current, [])):
                stack.append((child, level + 1))

    for root in children.get(None, []):
        visit(root, 0)
    for index, _span in items:  # a cycle of parent ids: show the rest flat
        visit(index, 0)
    return ordered


def trace_detail(spans: Sequence[Mapping[str, Any]]) -> Json:
    """One trace as the contract's ``/api/traces/<id>`` body without ``errors``."""
    ordered = waterfall(spans)
    summary = trace_summary(spans)
    return {
        "trace_id": summary["trace_id"] if summary else None,
        "start_us": summary["start_us"] if summary else None,
        "duration_us": summary["duration_us"] if summary else None,
        "spans": ordered,
    }


__all__ = [
    "EdgePolicy",
    "Metrics",
    "Signals",
    "Topology",
    "Workload",
    "cluster_service",
    "edge_policy",
    "graph",
    "metrics_from",
    "proxies",
    "series",
    "services",
    "splits",
    "suggest_target",
    "trace_detail",
    "traces",
    "waterfall",
    "workload_of",
    "workloads",
]
