"""The OpenAPI v3 documents (`osm.apiserver.openapi`): what kubectl 1.32 reads in them.

kubectl leaves validation to the server when the PATCH operation of a kind (any of them:
it takes the first it meets) declares ``fieldValidation``; it explains a kind from the
schema tagged with its group/version/kind; it computes strategic merge patches from the
document only where a PATCH lists that type. `tests/integration/test_apiserver_kubectl.py`
runs the real kubectl against these documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from osm.apiserver import openapi, resources
from osm.model import schema

GROUP_VERSIONS = [
    "api/v1",
    "apis/apps/v1",
    "apis/apiextensions.k8s.io/v1",
    "apis/rbac.authorization.k8s.io/v1",
    "apis/admissionregistration.k8s.io/v1",
    "apis/access.smi-spec.io/v1alpha3",
    "apis/specs.smi-spec.io/v1alpha4",
    "apis/split.smi-spec.io/v1alpha4",
    "apis/split.smi-spec.io/v1alpha2",
    "apis/policy.openservicemesh.io/v1alpha1",
    "apis/config.openservicemesh.io/v1alpha2",
]


def document_of(resource: resources.Resource) -> dict[str, Any]:
    document = openapi.v3_document(openapi.group_version_path(resource.group, resource.version))
    assert document is not None
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in ("get", "put", "post", "delete", "patch"):
            if method in item:
                yield path, method, item[method]


def gvk(resource: resources.Resource) -> dict[str, str]:
    return {"group": resource.group, "version": resource.version, "kind": resource.kind}


def by_resource() -> list[Any]:
    return [pytest.param(r, id=f"{r.kind} {r.api_version}") for r in resources.RESOURCES]


# -- the root ---------------------------------------------------------------------------------
def test_the_root_lists_every_served_group_version() -> None:
    assert sorted(openapi.v3_root()["paths"]) == sorted(GROUP_VERSIONS)


@pytest.mark.parametrize("path", GROUP_VERSIONS)
def test_the_root_points_at_each_document_with_its_hash(path: str) -> None:
    document = openapi.v3_document(path)
    assert document is not None
    digest = openapi.document_hash(document)
    assert re.fullmatch(r"[0-9A-F]{128}", digest)
    assert openapi.v3_root()["paths"][path] == {
        "serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"
    }


def test_the_hash_changes_exactly_when_the_document_does() -> None:
    document = openapi.v3_document("apis/split.smi-spec.io/v1alpha4")
    assert document is not None
    assert openapi.document_hash(document) == openapi.document_hash(
        openapi.v3_document("apis/split.smi-spec.io/v1alpha4") or {}
    )
    document["info"]["version"] = "other"
    assert openapi.document_hash(document) != openapi.document_hash(
        openapi.v3_document("apis/split.smi-spec.io/v1alpha4") or {}
    )


@pytest.mark.parametrize(
    ("path", "served"),
    [
        ("api/v1", True),
        ("/openapi/v3/apis/apps/v1", True),
        ("/apis/apps/v1/", True),
        ("apis/apps", False),
        ("apis/apps/v2", False),
        ("apis/split.smi-spec.io/v1alpha3", False),
        ("api", False),
        ("", False),
    ],
)
def test_a_path_not_served_has_no_document(path: str, served: bool) -> None:
    assert (openapi.v3_document(path) is not None) is served


def test_a_document_is_the_callers_to_change() -> None:
    document = openapi.v3_document("api/v1")
    assert document is not None
    document["paths"].clear()
    assert openapi.v3_document("api/v1") != document


# -- what kubectl needs of every kind -----------------------------------------------------------
@pytest.mark.parametrize("resource", by_resource())
def test_every_patch_of_a_kind_declares_field_validation(resource: resources.Resource) -> None:
    patches = [
        op
        for _, method, op in operations(document_of(resource))
        if method == "patch" and op["x-kubernetes-group-version-kind"] == gvk(resource)
    ]
    assert len(patches) == 1 + len([s for s in resource.subresources if s != "log"]), (
        "the object and each writable subresource"
    )
    for op in patches:
        names = [(p["name"], p["in"]) for p in op["parameters"]]
        assert ("fieldValidation", "query") in names


@pytest.mark.parametrize("resource", by_resource())
def test_creates_and_updates_declare_field_validation_too(resource: resources.Resource) -> None:
    for path, method, op in operations(document_of(resource)):
        if method in ("post", "put") and op["x-kubernetes-group-version-kind"] == gvk(resource):
            assert "fieldValidation" in [p["name"] for p in op["parameters"]], (path, method)


@pytest.mark.parametrize("resource", by_resource())
def test_the_paths_are_where_the_resource_is_served(resource: resources.Resource) -> None:
    collection = resource.path("{namespace}" if resource.namespaced else "")
    expected = {
        collection: {"get", "post", "delete"},
        f"{collection}/{{name}}": {"get", "put", "patch", "delete"},
    }
    if resource.namespaced:
        expected[resource.path()] = {"get"}
    for sub in resource.subresources:
        expected[f"{collection}/{{name}}/{sub}"] = (
            {"get"} if sub == "log" else {"get", "put", "patch"}
        )
    found = {
        path: {m for m in ("get", "put", "post", "delete", "patch") if m in item}
        for path, item in document_of(resource)["paths"].items()
        if any(
            op.get("x-kubernetes-group-version-kind") == gvk(resource)
            for op in item.values()
            if isinstance(op, dict)
        )
    }
    assert found == expected


@pytest.mark.parametrize("resource", by_resource())
def test_no_patch_offers_a_strategic_merge_patch(resource: resources.Resource) -> None:
    """Built-in kinds: kubectl would compute it from schemas we do not serve (and warn);
    custom kinds: the server answers 415 to it, as kube-apiserver does."""
    for _, method, op in operations(document_of(resource)):
        if method == "patch":
            assert set(op["requestBody"]["content"]) == {
                "application/json-patch+json",
                "application/merge-patch+json",
            }


@pytest.mark.parametrize("path", GROUP_VERSIONS)
def test_every_path_parameter_is_declared(path: str) -> None:
    document = openapi.v3_document(path)
    assert document is not None
    for template, item in document["paths"].items():
        wanted = set(re.findall(r"{(\w+)}", template))
        for method in ("get", "put", "post", "delete", "patch"):
            if method in item:
                declared = {
                    p["name"]
                    for p in [*item.get("parameters", ()), *item[method]["parameters"]]
                    if p["in"] == "path"
                }
                assert declared == wanted, (template, method)


def test_operation_ids_are_unique_across_the_api() -> None:
    ids = [
        op["operationId"]
        for path in GROUP_VERSIONS
        for _, _, op in operations(openapi.v3_document(path) or {"paths": {}})
    ]
    assert len(ids) == len(set(ids))
    assert "patchSplitSmiSpecIoV1alpha4NamespacedTrafficSplit" in ids
    assert "listCoreV1PodForAllNamespaces" in ids


# -- schemas ------------------------------------------------------------------------------------
def tagged(document: dict[str, Any], resource: resources.Resource) -> list[dict[str, Any]]:
    return [
        body
        for body in document["components"]["schemas"].values()
        if gvk(resource) in body.get("x-kubernetes-group-version-kind", ())
    ]


@pytest.mark.parametrize("resource", [r for r in resources.RESOURCES if not r.builtin])
def test_a_custom_kind_is_explained_by_its_crd_schema(resource: resources.Resource) -> None:
    (body,) = tagged(document_of(resource), resource)
    crd = schema.schema(resource.kind, resource.api_version)
    assert body["properties"]["spec"] == crd["properties"]["spec"]
    assert body["description"] == crd["description"]
    assert body["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]


@pytest.mark.parametrize("resource", [r for r in resources.RESOURCES if r.builtin])
def test_a_built_in_kind_has_no_schema(resource: resources.Resource) -> None:
    """Serve Kubernetes' full schema or none: kubectl uses its compiled-in types then."""
    assert tagged(document_of(resource), resource) == []


def test_a_schema_is_named_as_kube_apiserver_names_a_crds() -> None:
    document = openapi.v3_document("apis/config.openservicemesh.io/v1alpha2")
    assert document is not None
    assert sorted(document["components"]["schemas"]) == [
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.openservicemesh.config.v1alpha2.MeshConfig",
        "io.openservicemesh.config.v1alpha2.MeshConfigList",
    ]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("path", GROUP_VERSIONS)
def test_every_reference_resolves_in_its_document(path: str) -> None:
    document = openapi.v3_document(path)
    assert document is not None
    names = set(document["components"]["schemas"])
    refs = set(_refs(document))
    assert {ref.removeprefix("#/components/schemas/") for ref in refs} <= names
    assert all(ref.startswith("#/components/schemas/") for ref in refs)


def test_a_list_operation_answers_with_the_list_kind() -> None:
    document = openapi.v3_document("apis/split.smi-spec.io/v1alpha2")
    assert document is not None
    listing = document["paths"]["/apis/split.smi-spec.io/v1alpha2/trafficsplits"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/io.smi-spec.split.v1alpha2.TrafficSplitList"
    }
    assert listing["x-kubernetes-action"] == "list"
