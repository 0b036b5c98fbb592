"""``osm namespace`` labels and annotates Namespaces exactly as OSM's CLI does: each row is
a Namespace as it was, a command, and the Namespace's labels and annotations afterwards,
with OSM's message and exit status."""

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
INJECTION = wellknown.SIDECAR_INJECTION_ANNOTATION
IGNORE = wellknown.IGNORE_LABEL
OTHER_LABEL = {"team": "books"}
"""A label of the user's: no command touches it."""


def osm(api: RunningApi, *args: str) -> Result:
    return CliRunner().invoke(main.cli, ["--kubeconfig", str(api.kubeconfig), *args], obj={})


def namespace(
    api: RunningApi, name: str, labels: dict[str, str], annotations: dict[str, str]
) -> None:
    with Api.connect(api.kubeconfig) as client:
        client.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
            }
        )


def metadata(api: RunningApi, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with Api.connect(api.kubeconfig) as client:
        meta = client.get("Namespace", None, name)["metadata"]
    labels = dict(meta.get("labels") or {})
    assert labels.pop(wellknown.NAMESPACE_NAME_LABEL) == name  # kube-apiserver's, always there
    return labels, meta.get("annotations") or {}


CASES = [
    # (id, labels before, annotations before, command, labels after, annotations after,
    #  output, exit status)
    (
        "add",
        OTHER_LABEL,
        {},
        ["add", "shop"],
        {**OTHER_LABEL, MESH: "osm"},
        {INJECTION: "enabled"},
        "Namespace [shop] successfully added to mesh [osm]",
        0,
    ),
    (
        "add, explicitly enabled",
        {},
        {},
        ["add", "shop", "--enable-sidecar-injection"],
        {MESH: "osm"},
        {INJECTION: "enabled"},
        "Namespace [shop] successfully added to mesh [osm]",
        0,
    ),
    (
        "add without injection",
        {},
        {},
        ["add", "shop", "--disable-sidecar-injection"],
        {MESH: "osm"},
        {INJECTION: "disabled"},
        "Namespace [shop] successfully added to mesh [osm]",
        0,
    ),
    (
        "add to another mesh",
        {},
        {},
        ["add", "shop", "--mesh-name", "blue"],
        {MESH: "blue"},
        {INJECTION: "enabled"},
        "Namespace [shop] successfully added to mesh [blue]",
        0,
    ),
    (
        "add again",
        {MESH: "osm"},
        {INJECTION: "enabled"},
        ["add", "shop"],
        {MESH: "osm"},
        {INJECTION: "enabled"},
        "Namespace [shop] has already been added to mesh [osm]",
        0,
    ),
    (
        "add again switching injection off",
        {MESH: "osm"},
        {INJECTION: "enabled"},
        ["add", "shop", "--disable-sidecar-injection"],
        {MESH: "osm"},
        {INJECTION: "disabled"},
        "Namespace [shop] successfully added to mesh [osm]",
        0,
    ),
    (
        "add moves a namespace from another mesh",
        {MESH: "blue"},
        {},
        ["add", "shop"],
        {MESH: "osm"},
        {INJECTION: "enabled"},
        "Namespace [shop] successfully added to mesh [osm]",
        0,
    ),
    (
        "add an ignored namespace",
        {IGNORE: "true"},
        {},
        ["add", "shop"],
        {IGNORE: "true"},
        {},
        "error: Cannot add ignored namespace",
        1,
    ),
    (
        "remove",
        {**OTHER_LABEL, MESH: "osm"},
        {INJECTION: "enabled", "note": "kept"},
        ["remove", "shop"],
        OTHER_LABEL,
        {"note": "kept"},
        "Namespace [shop] successfully removed from mesh [osm]",
        0,
    ),
    (
        "remove from the named mesh",
        {MESH: "blue"},
        {INJECTION: "disabled"},
        ["remove", "shop", "--mesh-name", "blue"],
        {},
        {},
        "Namespace [shop] successfully removed from mesh [blue]",
        0,
    ),
    (
        "remove from the wrong mesh",
        {MESH: "blue"},
        {INJECTION: "enabled"},
        ["remove", "shop"],
        {MESH: "blue"},
        {INJECTION: "enabled"},
        "error: Namespace belongs to mesh [blue], not mesh [osm]. Please specify the correct mesh",
        1,
    ),
    (
        "remove a namespace in no mesh",
        {},
        {INJECTION: "enabled"},
        ["remove", "shop"],
        {},
        {INJECTION: "enabled"},
        "Namespace [shop] already does not belong to any mesh",
        0,
    ),
    (
        "ignore",
        {MESH: "osm"},
        {INJECTION: "enabled"},
        ["ignore", "shop"],
        {MESH: "osm", IGNORE: "true"},
        {INJECTION: "enabled"},
        "Successfully configured namespace [shop] to be ignored",
        0,
    ),
]


@pytest.mark.parametrize(
    ("labels", "annotations", "command", "labels_after", "annotations_after", "said", "status"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_namespace_commands_label_and_annotate_as_osm_does(
    api: RunningApi,
    labels: dict[str, str],
    annotations: dict[str, str],
    command: list[str],
    labels_after: dict[str, str],
    annotations_after: dict[str, str],
    said: str,
    status: int,
) -> None:
    namespace(api, "shop", labels, annotations)
    result = osm(api, "namespace", *command)
    assert (result.output.strip(), result.exit_code) == (said, status)
    assert metadata(api, "shop") == (labels_after, annotations_after)


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (
            ["add", "nope"],
            'error: Could not add namespace [nope] to mesh [osm]: namespaces "nope" not found',
        ),
        (["remove", "nope"], 'error: Could not get namespace [nope]: namespaces "nope" not found'),
        (
            ["ignore", "nope"],
            'error: Failed to retrieve namespace [nope]: namespaces "nope" not found',
        ),
    ],
    ids=["add", "remove", "ignore"],
)
def test_a_missing_namespace_is_an_error(api: RunningApi, command: list[str], said: str) -> None:
    result = osm(api, "namespace", *command)
    assert (result.output.strip(), result.exit_code) == (said, 1)


def test_the_control_plane_namespace_is_never_added(api: RunningApi) -> None:
    before = metadata(api, wellknown.CONTROL_PLANE_NAMESPACE)
    result = osm(api, "namespace", "add", wellknown.CONTROL_PLANE_NAMESPACE)
    assert result.exit_code == 0
    assert result.output.strip() == (
        f"Namespace [{wellknown.CONTROL_PLANE_NAMESPACE}] already has "
        f"[{wellknown.CONTROLLER_SERVICE}] installed and cannot be added to mesh [osm]"
    )
    assert metadata(api, wellknown.CONTROL_PLANE_NAMESPACE) == before


def test_add_takes_several_namespaces_and_stops_at_the_first_error(api: RunningApi) -> None:
    namespace(api, "a", {}, {})
    namespace(api, "c", {}, {})
    result = osm(api, "namespace", "add", "a", "b", "c")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Namespace [a] successfully added to mesh [osm]",
        'error: Could not add namespace [b] to mesh [osm]: namespaces "b" not found',
    ]
    assert metadata(api, "c") == ({}, {}), "OSM stops at the first error"


@pytest.mark.parametrize(
    ("mesh_name", "expected"),
    [
        (
            [],
            [
                "NAMESPACE   MESH   SIDECAR-INJECTION",
                "blue-ns     blue   enabled",
                "ignored     osm    disabled (ignored)",
                "plain       osm    -",
                "shop        osm    disabled",
            ],
        ),
        (
            ["--mesh-name", "blue"],
            ["NAMESPACE   MESH   SIDECAR-INJECTION", "blue-ns     blue   enabled"],
        ),
        (["--mesh-name", "green"], ["No namespaces in mesh [green]"]),
    ],
    ids=["every mesh", "one mesh", "an empty mesh"],
)
def test_list_shows_each_namespace_its_mesh_and_injection(
    api: RunningApi, mesh_name: list[str], expected: list[str]
) -> None:
    namespace(api, "shop", {MESH: "osm"}, {INJECTION: "disabled"})
    namespace(api, "plain", {MESH: "osm"}, {})
    namespace(api, "ignored", {MESH: "osm", IGNORE: "true"}, {INJECTION: "enabled"})
    namespace(api, "blue-ns", {MESH: "blue"}, {INJECTION: "enabled"})
    namespace(api, "outside", {}, {INJECTION: "enabled"})
    result = osm(api, "namespace", "list", *mesh_name)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == expected


def test_list_without_any_mesh(api: RunningApi) -> None:
    result = osm(api, "namespace", "list")
    assert (result.output.strip(), result.exit_code) == ("No namespaces in any mesh", 0)
