"""A container's ``resources``: quantities read exactly, names and values checked as the
API server checks them, no request above its limit.

Valid rows are (resources as written, what the model holds); invalid rows are (resources,
field path below the container, fragment of the message), each with one mistake.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from osm.model import kinds
from osm.model.core import Pod, ResourceFieldRef, Resources
from tests.unit.model import model_examples as ex

C0 = "spec.containers[0]"


def pod(resources: str) -> str:
    return (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\n"
        f"spec: {{containers: [{{name: web, resources: {resources}}}]}}"
    )


VALID = [
    pytest.param("{}", Resources(), id="none"),
    pytest.param(
        "{limits: {memory: 64Mi, cpu: 500m}}",
        Resources({"memory": Fraction(64 * 2**20), "cpu": Fraction(1, 2)}),
        id="limits-in-suffixes",
    ),
    pytest.param(
        "{limits: {cpu: 0.5, memory: 1e3}, requests: {cpu: 100m, memory: 1k}}",
        Resources(
            {"cpu": Fraction(1, 2), "memory": Fraction(1000)},
            {"cpu": Fraction(1, 10), "memory": Fraction(1000)},
        ),
        id="yaml-numbers-and-exponents-request-equal-to-limit",
    ),
    pytest.param(
        "{requests: {memory: 1G}}",
        Resources(requests={"memory": Fraction(10**9)}),
        id="requests-without-limits",
    ),
    pytest.param(
        "{limits: {ephemeral-storage: 1Gi, hugepages-2Mi: 4Mi, example.com/gpu: 1}, "
        "requests: {hugepages-2Mi: 4Mi, example.com/gpu: 1}}",
        Resources(
            {
                "ephemeral-storage": Fraction(2**30),
                "hugepages-2Mi": Fraction(4 * 2**20),
                "example.com/gpu": Fraction(1),
            },
            {"hugepages-2Mi": Fraction(4 * 2**20), "example.com/gpu": Fraction(1)},
        ),
        id="other-resources-kept",
    ),
    pytest.param(
        "{limits: {memory: 64Mi}, claims: [{name: x}]}",
        Resources({"memory": Fraction(64 * 2**20)}),
        id="other-fields-pass-through",
    ),
]


@pytest.mark.parametrize(("resources", "expected"), VALID)
def test_resources_are_read_exactly(resources: str, expected: Resources) -> None:
    resource, problems = ex.parse(pod(resources))
    assert problems == []
    assert isinstance(resource, Pod)
    assert resource.spec.containers[0].resources == expected


@pytest.mark.parametrize(
    ("limits", "memory_bytes", "cpu_millicores"),
    [
        ("{memory: 64Mi, cpu: '1'}", 64 * 2**20, 1000),
        ("{memory: 1.5, cpu: 0.0001}", 2, 1),  # rounded up, as the kubelet rounds
        ("{memory: '0', cpu: '0'}", None, None),  # 0 sets no limit
        ("{}", None, None),
    ],
)
def test_the_limits_the_runtime_enforces_in_units(
    limits: str, memory_bytes: int | None, cpu_millicores: int | None
) -> None:
    resource, _ = ex.parse(pod(f"{{limits: {limits}}}"))
    assert isinstance(resource, Pod)
    resources = resource.spec.containers[0].resources
    assert (resources.memory_limit, resources.cpu_limit) == (memory_bytes, cpu_millicores)


INVALID = [
    pytest.param(
        "{limits: {memory: 64MB}}", "resources.limits.memory", '"64MB" is not a quantity', id="mb"
    ),
    pytest.param(
        "{limits: {memory: 64Mi}, requests: {memory: 65Mi}}",
        "resources.requests.memory",
        "65Mi must be less than or equal to the memory limit of 64Mi",
        id="request-above-limit",
    ),
    pytest.param(
        "{limits: {cpu: 500m}, requests: {cpu: 0.6}}",
        "resources.requests.cpu",
        "0.6 must be less than or equal to the cpu limit of 0.5",
        id="request-above-limit-mixed-notation",
    ),
    pytest.param("{limits: {cpu: -1}}", "resources.limits.cpu", "must be 0 or more", id="negative"),
    pytest.param(
        "{limits: {cpu: true}}", "resources.limits.cpu", "must be a quantity", id="boolean"
    ),
    pytest.param(
        "{limits: {memory: 1e99}}", "resources.limits.memory", "out of range", id="exponent"
    ),
    pytest.param(
        "{limits: {memroy: 1Gi}}",
        "resources.limits.memroy",
        'is not a resource of a container (did you mean "memory"?)',
        id="misspelt-name",
    ),
    pytest.param(
        "{limits: {kubernetes.io/gpu: 1}}",
        "resources.limits.kubernetes.io/gpu",
        "the kubernetes.io domain has no extended resources",
        id="reserved-domain",
    ),
    pytest.param(
        "{limits: {example.com/gpu: 500m}}",
        "resources.limits.example.com/gpu",
        "an extended resource is a whole number",
        id="fractional-extended",
    ),
    pytest.param(
        "{requests: {example.com/gpu: 1}}",
        "resources.limits.example.com/gpu",
        "an extended resource has a limit",
        id="extended-without-limit",
    ),
    pytest.param(
        "{limits: {hugepages-2Mi: 4Mi}, requests: {hugepages-2Mi: 2Mi}}",
        "resources.requests.hugepages-2Mi",
        "must equal the hugepages-2Mi limit of 4Mi",
        id="hugepages-overcommitted",
    ),
    pytest.param(
        "{limits: [memory]}", "resources.limits", "must be an object", id="limits-not-a-map"
    ),
]


@pytest.mark.parametrize(("resources", "path", "fragment"), INVALID)
def test_a_wrong_resource_gives_one_error_at_its_field(
    resources: str, path: str, fragment: str
) -> None:
    resource, problems = ex.parse(pod(resources))
    assert resource is None
    errors = [(p.path, p.message) for p in problems if p.severity == "error"]
    assert len(errors) == 1, errors
    assert errors[0][0] == f"{C0}.{path}"
    assert fragment in errors[0][1], errors[0][1]


def test_resources_of_init_containers_are_read_too() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {
            "initContainers": [{"name": "i", "resources": {"limits": {"memory": "1Mi"}}}],
            "containers": [{"name": "c"}],
        },
    }
    decoded = kinds.decode(manifest)
    assert isinstance(decoded, Pod)
    assert decoded.spec.init_containers[0].resources.memory_limit == 2**20


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("{resource: limits.memory}", ResourceFieldRef("limits.memory")),
        (
            "{resource: requests.cpu, divisor: 1m, containerName: side}",
            ResourceFieldRef("requests.cpu", "side", Fraction(1, 1000)),
        ),
        (
            "{resource: limits.hugepages-2Mi, divisor: 1Mi}",
            ResourceFieldRef("limits.hugepages-2Mi", divisor=Fraction(2**20)),
        ),
    ],
)
def test_a_resource_field_ref_is_read_with_its_divisor(
    ref: str, expected: ResourceFieldRef
) -> None:
    manifest = pod(f"{{}}, env: [{{name: A, valueFrom: {{resourceFieldRef: {ref}}}}}]")
    resource, problems = ex.parse(manifest)
    assert problems == []
    assert isinstance(resource, Pod)
    assert resource.spec.containers[0].env[0].value_from == expected
