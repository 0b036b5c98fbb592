"""The downward API's ``resourceFieldRef`` as the kubelet answers it: a container's limit
or request in units of the divisor, rounded up; an unset limit is the node's capacity,
an unset request the limit, else 0.

Rows are (the env entry's resourceFieldRef, the container's resources, the value).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from osm.model import core, kinds
from osm.runtime import podspec

NODE = {"cpu": Fraction(4), "memory": Fraction(8 * 2**30), "ephemeral-storage": Fraction(10**11)}


def pod(ref: dict[str, Any], resources: dict[str, Any], sidecar: bool = False) -> core.Pod:
    containers = [
        {
            "name": "web",
            "command": ["run"],
            "resources": resources,
            "env": [{"name": "VALUE", "valueFrom": {"resourceFieldRef": ref}}],
        }
    ]
    if sidecar:
        containers.append(
            {"name": "side", "command": ["run"], "resources": {"limits": {"memory": "1Gi"}}}
        )
    decoded = kinds.decode(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": containers},
        }
    )
    assert isinstance(decoded, core.Pod)
    return decoded


def value(the_pod: core.Pod) -> str:
    (plan,) = [
        p
        for p in podspec.container_plans(
            the_pod,
            pod_ip="10.0.0.2",
            host_ip="10.0.0.1",
            node_name="node",
            secrets={},
            config_maps={},
            base_env={},
            node_capacity=NODE,
        )
        if p.name == "web"
    ]
    return plan.env["VALUE"]


ROWS = [
    ({"resource": "limits.memory"}, {"limits": {"memory": "64Mi"}}, str(64 * 2**20)),
    ({"resource": "limits.memory", "divisor": "1Mi"}, {"limits": {"memory": "64Mi"}}, "64"),
    ({"resource": "limits.memory", "divisor": "1Mi"}, {"limits": {"memory": "1.5"}}, "1"),
    ({"resource": "limits.cpu"}, {"limits": {"cpu": "500m"}}, "1"),  # rounded up
    ({"resource": "limits.cpu", "divisor": "1m"}, {"limits": {"cpu": "500m"}}, "500"),
    ({"resource": "limits.cpu"}, {}, "4"),  # the node's
    ({"resource": "limits.memory", "divisor": "1Gi"}, {}, "8"),
    ({"resource": "requests.memory", "divisor": "1Mi"}, {"limits": {"memory": "64Mi"}}, "64"),
    (
        {"resource": "requests.cpu", "divisor": "1m"},
        {"limits": {"cpu": "1"}, "requests": {"cpu": "250m"}},
        "250",
    ),
    ({"resource": "requests.cpu"}, {}, "0"),
    ({"resource": "limits.ephemeral-storage", "divisor": "1G"}, {}, "100"),
]


@pytest.mark.parametrize(("ref", "resources", "expected"), ROWS)
def test_a_resource_field_ref_reads_the_containers_resources(
    ref: dict[str, Any], resources: dict[str, Any], expected: str
) -> None:
    assert value(pod(ref, resources)) == expected


def test_another_containers_resources_by_name() -> None:
    ref = {"resource": "limits.memory", "divisor": "1Mi", "containerName": "side"}
    assert value(pod(ref, {}, sidecar=True)) == "1024"


def test_a_container_name_the_pod_lacks_cannot_run() -> None:
    ref = {"resource": "limits.memory", "containerName": "nobody"}
    with pytest.raises(podspec.CannotRun, match='the pod has no container "nobody"') as raised:
        value(pod(ref, {}))
    assert raised.value.path == "spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName"
