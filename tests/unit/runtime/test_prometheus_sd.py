"""Pods as Prometheus's own ``role: pod`` discovery makes targets of them (its
``discovery/kubernetes/pod.go``): one target per container port, an anonymous one per
container without ports, none without an IP; the pod's labels, annotations, controller and
readiness as ``__meta_kubernetes_*`` labels, names sanitized."""

from __future__ import annotations

from typing import Any

import pytest

from osm.kube import informer
from osm.runtime import prometheus_sd

P = "__meta_kubernetes_pod_"


def pod(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "bookstore-1",
            "namespace": "bookstore",
            "uid": "u-1",
            "labels": {"app": "bookstore", "app.kubernetes.io/name": "x"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [
                {"kind": "Node", "name": "not-the-controller"},
                {"kind": "Deployment", "name": "bookstore", "controller": True},
            ],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "app",
                    "image": "bookstore:v1",
                    "ports": [
                        {"name": "http", "containerPort": 14001},
                        {"containerPort": 53, "protocol": "UDP"},
                    ],
                },
                {"name": "envoy"},
            ],
            "initContainers": [{"name": "osm-init"}],
        },
        "status": status,
    }


RUNNING = {
    "podIP": "10.233.0.5",
    "hostIP": "10.233.0.1",
    "phase": "Running",
    "conditions": [{"type": "Ready", "status": "True"}],
}

TARGETS = [
    ("10.233.0.5:14001", "app", "false", {"name": "http", "number": "14001", "protocol": "TCP"}),
    ("10.233.0.5:53", "app", "false", {"name": "", "number": "53", "protocol": "UDP"}),
    ("10.233.0.5", "envoy", "false", None),
    ("10.233.0.5", "osm-init", "true", None),
]


def test_one_target_per_port_and_per_portless_container_init_last() -> None:
    groups = prometheus_sd.target_groups([pod(**RUNNING)])
    assert len(groups) == len(TARGETS)
    for group, (address, container, init, port) in zip(groups, TARGETS, strict=True):
        labels = group["labels"]
        assert group["targets"] == [address]
        assert labels[P + "container_name"] == container
        assert labels[P + "container_init"] == init
        if port is None:
            assert P + "container_port_number" not in labels
        else:
            for key, value in port.items():
                assert labels[f"{P}container_port_{key}"] == value


def test_every_target_carries_the_pods_labels() -> None:
    labels = prometheus_sd.target_groups([pod(**RUNNING)])[0]["labels"]
    assert {k: v for k, v in labels.items() if "container" not in k} == {
        "__meta_kubernetes_namespace": "bookstore",
        P + "name": "bookstore-1",
        P + "ip": "10.233.0.5",
        P + "ready": "true",
        P + "phase": "Running",
        P + "node_name": "node-1",
        P + "host_ip": "10.233.0.1",
        P + "uid": "u-1",
        P + "controller_kind": "Deployment",
        P + "controller_name": "bookstore",
        P + "label_app": "bookstore",
        P + "labelpresent_app": "true",
        P + "label_app_kubernetes_io_name": "x",
        P + "labelpresent_app_kubernetes_io_name": "true",
        P + "annotation_prometheus_io_scrape": "true",
        P + "annotationpresent_prometheus_io_scrape": "true",
    }


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ([{"type": "Ready", "status": "True"}], "true"),
        ([{"type": "Ready", "status": "False"}], "false"),
        ([{"type": "PodScheduled", "status": "True"}], "unknown"),
        ([], "unknown"),
    ],
)
def test_ready_is_the_ready_conditions_status(conditions: list[Any], ready: str) -> None:
    groups = prometheus_sd.target_groups([pod(podIP="10.0.0.1", conditions=conditions)])
    assert groups[0]["labels"][P + "ready"] == ready


def test_a_pod_without_an_ip_has_no_target() -> None:
    assert prometheus_sd.target_groups([pod(phase="Pending")]) == []


def test_an_ipv6_address_is_bracketed_with_its_port() -> None:
    groups = prometheus_sd.target_groups([pod(podIP="fd00::5")])
    assert [g["targets"][0] for g in groups][:2] == ["[fd00::5]:14001", "[fd00::5]:53"]


def test_discovery_follows_sync_and_changes() -> None:
    discovery = prometheus_sd.PodDiscovery(client=None)  # type: ignore[arg-type]
    first, second = pod(**RUNNING), pod(**RUNNING)
    second["metadata"] = {**second["metadata"], "name": "bookstore-2"}
    discovery.apply(informer.Sync((first,), {"Pod": "1"}))
    assert discovery.synced.is_set()
    discovery.apply(informer.Change("ADDED", second))
    assert sorted(discovery.pods) == [("bookstore", "bookstore-1"), ("bookstore", "bookstore-2")]
    discovery.apply(informer.Change("DELETED", first))
    assert sorted(discovery.pods) == [("bookstore", "bookstore-2")]
    discovery.apply(informer.Sync((), {"Pod": "2"}))
    assert discovery.pods == {}
