"""Builders of small meshes for tests: manifests as dicts, parsed by the real model.

Every function returns one manifest (a dict) as a user would write it; `state()` parses
them with `osm.model.manifest.load_objects` (so tests exercise the real parser) and
builds a MeshState. Pods carry status (IP, Ready) as Kubernetes would report it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from osm.catalog.state import MeshState
from osm.model import manifest
from osm.model.meta import Resource

Doc = dict[str, Any]
Port = tuple[int, int | str, str]  # (port, targetPort, appProtocol)


def namespace(name: str, mesh: bool = True) -> Doc:
    annotations = {"openservicemesh.io/sidecar-injection": "enabled"} if mesh else {}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "annotations": annotations},
    }


def service(
    ns: str,
    name: str,
    selector: dict[str, str] | None = None,
    ports: Sequence[Port] = ((80, 8080, "http"),),
    cluster_ip: str = "",
) -> Doc:
    spec: Doc = {
        "selector": selector if selector is not None else {"app": name},
        "ports": [
            {"name": f"p{port}", "port": port, "targetPort": target, "appProtocol": protocol}
            for port, target, protocol in ports
        ],
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def pod(
    ns: str,
    name: str,
    labels: dict[str, str],
    account: str,
    ip: str,
    *,
    ready: bool = True,
    container_ports: Sequence[tuple[str, int]] = (),
    annotations: dict[str, str] | None = None,
) -> Doc:
    container: Doc = {"name": "app", "image": "app"}
    if container_ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in container_ports]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": annotations or {},
        },
        "spec": {"serviceAccountName": account, "containers": [container]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def endpoints(
    ns: str,
    name: str,
    ready: Iterable[str],
    not_ready: Iterable[str] = (),
    port: int = 8080,
    port_name: str = "p80",
) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": [
            {
                "addresses": [{"ip": ip} for ip in ready],
                "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                "ports": [{"name": port_name, "port": port}],
            }
        ],
    }


def traffic_target(
    ns: str,
    name: str,
    destination: str,
    sources: Sequence[tuple[str, str]],
    rules: Sequence[tuple[str, str, Sequence[str]]],
) -> Doc:
    """``sources`` are (namespace, account); ``rules`` (kind, name, matches)."""
    return {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "destination": {"kind": "ServiceAccount", "name": destination, "namespace": ns},
            "sources": [{"kind": "ServiceAccount", "name": a, "namespace": n} for n, a in sources],
            "rules": [
                {"kind": kind, "name": rule, **({"matches": list(matches)} if matches else {})}
                for kind, rule, matches in rules
            ],
        },
    }


def route_group(ns: str, name: str, matches: Sequence[Doc]) -> Doc:
    return {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"matches": list(matches)},
    }


def tcp_route(ns: str, name: str, ports: Sequence[int]) -> Doc:
    return {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "TCPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"matches": {"ports": list(ports)}},
    }


def traffic_split(
    ns: str,
    name: str,
    apex: str,
    backends: Sequence[tuple[str, int]],
    matches: Sequence[str] = (),
) -> Doc:
    spec: Doc = {"service": apex, "backends": [{"service": s, "weight": w} for s, w in backends]}
    version = "v1alpha2"
    if matches:
        version = "v1alpha4"
        spec["matches"] = [{"kind": "HTTPRouteGroup", "name": m} for m in matches]
    return {
        "apiVersion": f"split.smi-spec.io/{version}",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def mesh_config(permissive: bool = True, egress: bool = False) -> Doc:
    return {
        "apiVersion": "config.openservicemesh.io/v1alpha2",
        "kind": "MeshConfig",
        "metadata": {"name": "osm-mesh-config", "namespace": "osm-system"},
        "spec": {
            "traffic": {
                "enablePermissiveTrafficPolicyMode": permissive,
                "enableEgress": egress,
            }
        },
    }


def parse(*docs: Doc) -> list[Resource]:
    loaded = manifest.load_objects(list(docs))
    assert not loaded.errors, [str(p) for p in loaded.errors]
    return loaded.resources


def state(*docs: Doc) -> MeshState:
    return MeshState.from_resources(parse(*docs))


def two_tier(permissive: bool = True) -> list[Doc]:
    """client (ns a, sa client) -> server (ns b, sa server, port 80 -> 8080)."""
    return [
        mesh_config(permissive),
        namespace("a"),
        namespace("b"),
        pod("a", "client-0", {"app": "client"}, "client", "10.0.0.1"),
        service("b", "server", cluster_ip="10.96.0.10"),
        pod("b", "server-0", {"app": "server"}, "server", "10.0.1.1"),
        pod("b", "server-1", {"app": "server"}, "server", "10.0.1.2"),
    ]


def ingress_backend(
    ns: str,
    name: str,
    backends: Sequence[Doc],
    sources: Sequence[Doc],
    matches: Sequence[str] = (),
) -> Doc:
    """An IngressBackend; ``backends`` and ``sources`` as written in its spec, ``matches``
    the names of HTTPRouteGroups in ``ns``."""
    spec: Doc = {"backends": list(backends), "sources": list(sources)}
    if matches:
        spec["matches"] = [
            {"apiGroup": "specs.smi-spec.io/v1alpha4", "kind": "HTTPRouteGroup", "name": match}
            for match in matches
        ]
    return {
        "apiVersion": "policy.openservicemesh.io/v1alpha1",
        "kind": "IngressBackend",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }
