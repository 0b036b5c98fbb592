"""ClusterIPs are allocated by the API, as kube-apiserver does.

A Service written without ``spec.clusterIP`` gets the lowest free address of the service
range (10.234.0.0/16) and keeps the one it has on later writes that omit it, so a
re-apply is "unchanged". The allocation lives in the stored Services themselves (derived
from them on each write), so it survives restarts without a record of its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from osm.base import ipam
from osm.model.errors import Problem
from osm.store import api as store_api

NO_CLUSTER_IP = ("None",)  # headless


async def assign(
    store: store_api.Store,
    objects: Sequence[dict[str, Any]],
    network: ipaddress.IPv4Network = ipam.DEFAULT_SERVICE_SUBNET,
) -> list[Problem]:
    """Fills in ``spec.clusterIP`` of the Services in ``objects`` (in place): the stored
    one if the Service has one, else the lowest free address of ``network``. A given
    clusterIP must be free and may not change once set (Kubernetes: immutable).
    ExternalName and headless Services get none. Returns problems; changes nothing then."""
    stored_items, _ = await store.list("Service")
    stored = {store_api.ObjectKey.of(item): _cluster_ip(item) for item in stored_items}
    owners = {ip: key for key, ip in stored.items() if ip and ip not in NO_CLUSTER_IP}
    pool = ipam.service_pool(
        ipam.MemoryRecord({f"{key}": ip for ip, key in owners.items() if _in_network(ip, network)}),
        network,
    )
    problems: list[Problem] = []
    needing: list[tuple[store_api.ObjectKey, dict[str, Any]]] = []
    for obj in objects:
        if obj.get("kind") != "Service":
            continue
        key = store_api.ObjectKey.of(obj)
        spec = obj.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            continue
        given = str(spec.get("clusterIP") or "")
        previous = stored.get(key, "")
        if given and previous and given != previous:
            problems.append(
                Problem(
                    f'field is immutable: the Service has clusterIP "{previous}"; delete and '
                    "re-create it to change the address, or omit spec.clusterIP",
                    "spec.clusterIP",
                    kind=key.kind,
                    namespace=key.namespace,
                    name=key.name,
                )
            )
            continue
        if given in NO_CLUSTER_IP:
            continue
        if given:
            owner = owners.get(given)
            if owner is not None and owner != key:
                problems.append(
                    Problem(
                        f'clusterIP "{given}" is already allocated to {owner}; omit '
                        "spec.clusterIP to get a free address",
                        "spec.clusterIP",
                        kind=key.kind,
                        namespace=key.namespace,
                        name=key.name,
                    )
                )
                continue  # said once: the pool would refuse the same address again
            owners[given] = key
            if _in_network(given, network) and pool.get(str(key)) is None:
                try:
                    pool.allocate(str(key), given)
                except ipam.AllocationError as error:
                    problems.append(
                        Problem(
                            str(error),
                            "spec.clusterIP",
                            kind=key.kind,
                            namespace=key.namespace,
                            name=key.name,
                        )
                    )
            continue
        if previous:
            spec["clusterIP"] = previous
        else:
            needing.append((key, spec))
    for key, spec in needing:  # after the given ones, so that none is handed out twice
        address = str(pool.allocate(str(key)))
        spec["clusterIP"] = address
        owners[address] = key
    return problems


def _cluster_ip(item: Mapping[str, Any]) -> str:
    spec = item.get("spec")
    return str(spec.get("clusterIP") or "") if isinstance(spec, Mapping) else ""


def _in_network(text: str, network: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False
