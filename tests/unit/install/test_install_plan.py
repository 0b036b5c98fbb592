"""What install does with each object, given what the cluster holds: create what is absent,
keep what is ours and holds what install writes (servers add defaults), replace what is ours
and differs, adopt a Namespace and keep a MeshConfig, refuse anyone else's."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from osm.cli import install
from osm.install import manifests, values

OBJECTS = {
    f"{o['kind']}/{o['metadata']['name']}": o
    for o in manifests.render(values.Values(), "osm", "osm-system", "1.0.0")
}
SERVICE = OBJECTS["Service/osm-injector"]


def stored(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`obj` as a server stores it: a resourceVersion, defaults, and `changes` on top."""
    result = copy.deepcopy(obj)
    result["metadata"]["resourceVersion"] = "7"
    result.setdefault("spec", {})["sessionAffinity"] = "None"  # a server default
    for path, value in changes.items():
        node = result
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return result


def foreign(obj: dict[str, Any]) -> dict[str, Any]:
    result = stored(obj)
    result["metadata"]["labels"] = {"app": "osm-injector"}
    return result


CASES = [
    # (id, object, what the cluster holds, the action)
    ("absent: created", SERVICE, None, "create"),
    ("ours, only defaults added: kept", SERVICE, stored(SERVICE), "keep"),
    (
        "ours, differs: replaced",
        SERVICE,
        stored(SERVICE, spec__selector={"app": "x"}),
        "replace",
    ),
    ("someone else's: refused", SERVICE, foreign(SERVICE), "refuse"),
    (
        "a Namespace without our labels: labelled",
        OBJECTS["Namespace/osm-system"],
        {"kind": "Namespace", "metadata": {"name": "osm-system", "labels": {"team": "a"}}},
        "label",
    ),
    (
        "a MeshConfig of the user's: kept",
        OBJECTS["MeshConfig/osm-mesh-config"],
        {"kind": "MeshConfig", "metadata": {"name": "osm-mesh-config"}, "spec": {}},
        "keep",
    ),
]


@pytest.mark.parametrize(
    ("obj", "held", "action"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan(obj: dict[str, Any], held: dict[str, Any] | None, action: str) -> None:
    assert install.plan(obj, held, "osm").action == action


def test_a_refusal_says_what_to_do() -> None:
    step = install.plan(SERVICE, foreign(SERVICE), "osm")
    assert step.problem == (
        "service/osm-injector exists and was not created by osm install of mesh osm (by "
        "someone else): delete it, or install under another --mesh-name"
    )


def test_another_meshs_crds_are_shared() -> None:
    name = "CustomResourceDefinition/trafficsplits.split.smi-spec.io"
    (blue,) = [
        o
        for o in manifests.render(values.Values(), "blue", "blue-system", "1.0.0")
        if f"{o['kind']}/{o['metadata']['name']}" == name
    ]
    # Installed by mesh osm; mesh blue's install relabels it rather than refusing it.
    assert install.plan(blue, stored(OBJECTS[name]), "blue").action == "replace"


def test_a_replace_keeps_the_controllers_ca_bundle_and_the_cluster_ip() -> None:
    hook = OBJECTS["MutatingWebhookConfiguration/osm-webhook-osm"]
    held = stored(hook)
    held["webhooks"][0]["clientConfig"]["caBundle"] = "Q0E="
    held["webhooks"][0]["timeoutSeconds"] = 5
    step = install.plan(hook, held, "osm")
    assert step.action == "replace"
    body = step.body()
    assert body["webhooks"][0]["clientConfig"]["caBundle"] == "Q0E="
    assert body["metadata"]["resourceVersion"] == "7"
    service = stored(SERVICE, spec__clusterIP="10.96.0.9", spec__selector={})
    assert install.plan(SERVICE, service, "osm").body()["spec"]["clusterIP"] == "10.96.0.9"


MESH = install.Mesh
CONFLICTS = [
    # (id, meshes found, install of (mesh, namespace, enforce), refused?)
    ("none", [], ("osm", "osm-system", True), False),
    (
        "the same mesh again",
        [MESH("osm", "osm-system", "1", 1, 1)],
        ("osm", "osm-system", True),
        False,
    ),
    ("another, enforced", [MESH("a", "a-ns", "1", 1, 1)], ("osm", "osm-system", True), True),
    ("another, not enforced", [MESH("a", "a-ns", "1", 1, 1)], ("osm", "osm-system", False), False),
    ("same name elsewhere", [MESH("osm", "x", "1", 1, 1)], ("osm", "osm-system", False), True),
    ("same namespace", [MESH("a", "osm-system", "1", 1, 1)], ("osm", "osm-system", False), True),
]


@pytest.mark.parametrize(
    ("found", "wanted", "refused"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS]
)
def test_mesh_conflicts(found: list[Any], wanted: tuple[str, str, bool], refused: bool) -> None:
    mesh, namespace, enforce = wanted
    problems = install.mesh_conflicts(found, mesh, namespace, enforce_single_mesh=enforce)
    assert bool(problems) == refused
    assert all("osm uninstall mesh --mesh-name" in problem for problem in problems)
