"""``osm metrics enable|disable`` as OSM's: each row is a Namespace as it was and a command;
after it, the Namespace's metrics annotation, the Prometheus annotations of its pods in the
mesh (pods without the proxy label are left alone), OSM's message and the exit status."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result

from osm.base import wellknown
from osm.cli import main
from osm.cli.client import Api
from tests.unit.cli.local_api import RunningApi

main.register(main.cli)

MESH = wellknown.MONITORED_BY_LABEL
METRICS = wellknown.METRICS_ANNOTATION
SCRAPE = {
    wellknown.PROMETHEUS_SCRAPE_ANNOTATION: "true",
    wellknown.PROMETHEUS_PORT_ANNOTATION: str(wellknown.PROXY_PROMETHEUS_PORT),
    wellknown.PROMETHEUS_PATH_ANNOTATION: wellknown.PROMETHEUS_SCRAPE_PATH,
}
OWN = {"team": "books"}
"""An annotation of the user's: no command touches it."""


def osm(api: RunningApi, *args: str) -> Result:
    return CliRunner().invoke(main.cli, ["--kubeconfig", str(api.kubeconfig), *args], obj={})


def create(api: RunningApi, *objects: dict[str, Any]) -> None:
    with Api.connect(api.kubeconfig) as client:
        for obj in objects:
            client.create(obj)


def namespace(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
    }


def pod(namespace_name: str, name: str, *, meshed: bool, annotations: dict[str, str]) -> Any:
    labels = {wellknown.PROXY_UUID_LABEL: f"uuid-{name}"} if meshed else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace_name,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "app", "command": ["sleep", "1"]}]},
    }


def annotations(api: RunningApi, kind: str, namespace_name: str | None, name: str) -> Any:
    with Api.connect(api.kubeconfig) as client:
        return client.get(kind, namespace_name, name)["metadata"].get("annotations") or {}


CASES = [
    # (id, namespace labels, namespace annotations, pods' annotations before, command,
    #  namespace annotations after, meshed pod's after, output, exit status)
    (
        "enable",
        {MESH: "osm"},
        OWN,
        OWN,
        ["enable", "--namespace", "shop"],
        {**OWN, METRICS: "enabled"},
        {**OWN, **SCRAPE},
        "Metrics successfully enabled in namespace [shop]",
        0,
    ),
    (
        "enable again",
        {MESH: "osm"},
        {METRICS: "enabled"},
        SCRAPE,
        ["enable", "--namespace", "shop"],
        {METRICS: "enabled"},
        SCRAPE,
        "Metrics successfully enabled in namespace [shop]",
        0,
    ),
    (
        "disable",
        {MESH: "osm"},
        {**OWN, METRICS: "enabled"},
        {**OWN, **SCRAPE},
        ["disable", "--namespace", "shop"],
        OWN,
        OWN,
        "Metrics successfully disabled in namespace [shop]",
        0,
    ),
    (
        "not in a mesh",
        {},
        {},
        {},
        ["enable", "--namespace", "shop"],
        {},
        {},
        f'Namespace [shop] does not belong to a mesh, missing annotation "{MESH}"',
        1,
    ),
    (
        "in a mesh that is not there",
        {MESH: "blue"},
        {},
        {},
        ["enable", "--namespace", "shop"],
        {},
        {},
        f'Invalid mesh name "blue" used with label "{MESH}" on namespace "shop", '
        "must be one of [osm]",
        1,
    ),
    (
        "empty mesh name",
        {MESH: ""},
        {},
        {},
        ["disable", "--namespace", "shop"],
        {},
        {},
        f'Label "{MESH}" on namespace "shop" cannot be empty',
        1,
    ),
]


@pytest.mark.parametrize(
    ("labels", "before", "pods_before", "command", "after", "pod_after", "said", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_metrics_commands_annotate_as_osm_does(
    api: RunningApi,
    labels: dict[str, str],
    before: dict[str, str],
    pods_before: dict[str, str],
    command: list[str],
    after: dict[str, str],
    pod_after: dict[str, str],
    said: str,
    code: int,
) -> None:
    create(
        api,
        namespace("shop", labels, before),
        pod("shop", "meshed", meshed=True, annotations=pods_before),
        pod("shop", "outside", meshed=False, annotations=OWN),
    )
    result = osm(api, "metrics", *command)
    assert (result.exit_code, said) == (code, result.output.strip().removeprefix("error: "))
    assert annotations(api, "Namespace", None, "shop") == after
    assert annotations(api, "Pod", "shop", "meshed") == pod_after
    assert annotations(api, "Pod", "shop", "outside") == OWN


def test_namespaces_may_be_repeated_or_comma_separated(api: RunningApi) -> None:
    create(api, *(namespace(n, {MESH: "osm"}, {}) for n in ("a", "b", "c")))
    result = osm(api, "metrics", "enable", "--namespace", "a, b", "--namespace", "c")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"Metrics successfully enabled in namespace [{n}]" for n in ("a", "b", "c")
    ]
    assert all(annotations(api, "Namespace", None, n) == {METRICS: "enabled"} for n in "abc")


def test_a_missing_namespace_stops_the_command(api: RunningApi) -> None:
    create(api, namespace("b", {MESH: "osm"}, {}))
    result = osm(api, "metrics", "enable", "--namespace", "missing,b")
    assert result.exit_code == 1
    assert result.output.startswith("error: Failed to retrieve namespace [missing]: ")
    assert annotations(api, "Namespace", None, "b") == {}, "OSM stops at the first error"
