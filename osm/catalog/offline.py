"""Stand-ins for what a running mesh would create, for offline tools only.

Plain manifests have Deployments but no Pods, and Services without ClusterIPs; a
running control plane learns both from Kubernetes or the local runtime. For
`osm xds dump` and the golden tests, `synthesize` makes them up, deterministically:

* Pods: ``<deployment>-<index>`` for each replica, labels and annotations from the
  template, Ready, with an IP in 10.244.0.0/16 derived from a hash of
  ``<namespace>/<pod>`` (probing upwards on a collision);
* ClusterIPs: for Services that have none (and are not headless), an IP in
  10.96.0.0/16 derived the same way.

Nothing here is used by the control plane itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from osm.model.core import Deployment, Pod, Service
from osm.model.meta import ObjectMeta, Resource

POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")
SERVICE_NETWORK = ipaddress.ip_network("10.96.0.0/16")


class _Allocator:
    """Hands out addresses of a /16 from a stable hash of a name, never twice."""

    def __init__(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        self.base = int(network.network_address)
        self.size = network.num_addresses
        self.used: set[int] = set()

    def take(self, ip: str) -> None:
        with contextlib.suppress(ValueError):
            self.used.add(int(ipaddress.ip_address(ip)) - self.base)

    def allocate(self, name: str) -> str:
        digest = hashlib.sha256(name.encode()).digest()
        offset = int.from_bytes(digest[:4], "big") % (self.size - 2) + 1
        while offset in self.used or offset % 256 in (0, 255):
            offset = offset % (self.size - 2) + 1
        self.used.add(offset)
        return str(ipaddress.ip_address(self.base + offset))


def pod_names(deployment: Deployment) -> list[str]:
    """The names `synthesize` gives a Deployment's pods, in order."""
    return [f"{deployment.name}-{index}" for index in range(deployment.replicas)]


def synthesize(
    resources: Iterable[Resource], pod_annotations: Mapping[str, str] | None = None
) -> list[Resource]:
    """``resources`` plus made-up Pods and ClusterIPs (see the module docstring).

    Deployments that already have a Pod with a synthesized name keep it; Services with
    a ClusterIP (or ``None``) keep it. The result is sorted as the input was, with the
    new Pods appended in (namespace, name) order. ``pod_annotations`` are added to the
    made-up Pods' (an injector's marks, such as the local runtime's sidecar).
    """
    items: Sequence[Resource] = list(resources)
    pod_ips = _Allocator(POD_NETWORK)
    service_ips = _Allocator(SERVICE_NETWORK)
    existing_pods: set[tuple[str, str]] = set()
    for resource in items:
        if isinstance(resource, Pod):
            existing_pods.add((resource.namespace, resource.name))
            if resource.pod_ip:
                pod_ips.take(resource.pod_ip)
        elif isinstance(resource, Service) and resource.cluster_ip:
            service_ips.take(resource.cluster_ip)
    result: list[Resource] = []
    pods: list[Pod] = []
    for resource in items:
        if isinstance(resource, Service) and not resource.cluster_ip:
            ip = service_ips.allocate(f"{resource.namespace}/{resource.name}")
            manifest = dict(resource.manifest)
            manifest["spec"] = {**dict(manifest.get("spec") or {}), "clusterIP": ip}
            resource = dataclasses.replace(resource, cluster_ip=ip, manifest=manifest)
        result.append(resource)
        if isinstance(resource, Deployment):
            for name in pod_names(resource):
                if (resource.namespace, name) not in existing_pods:
                    pods.append(_pod(resource, name, pod_ips, pod_annotations or {}))
    pods.sort(key=lambda p: (p.namespace, p.name))
    return result + list(pods)


def _pod(deployment: Deployment, name: str, ips: _Allocator, extra: Mapping[str, str]) -> Pod:
    template = deployment.template
    ip = ips.allocate(f"{deployment.namespace}/{name}")
    annotations = {**template.annotations, **extra}
    metadata = ObjectMeta(
        name,
        deployment.namespace,
        labels=template.labels,
        annotations=annotations,
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": deployment.namespace,
            "labels": dict(template.labels),
            "annotations": annotations,
        },
        "spec": {"serviceAccountName": template.spec.service_account_name},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    return Pod("v1", metadata, manifest, spec=template.spec, pod_ip=ip, phase="Running", ready=True)
