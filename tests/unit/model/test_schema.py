"""The CRD schemas of the mesh's own kinds (`osm.model.schema`) agree with the model.

The model is the authority; a schema says less (no regex engine, no cross-field rules) but
must never contradict it:
- every example manifest of the repository that the model accepts validates;
- every invalid manifest of the model's own table (`test_manifest_invalid.ROWS`) is refused,
  unless it is listed below as a check beyond what a schema can state, with the reason;
- a wrong type anywhere in a valid example, which the model refuses, is refused too.
Unknown fields are refused only with ``fieldValidation=Strict`` (as the API server does:
otherwise it prunes them), so those checks validate against a strict copy of the schema.
And the schemas are structural, as a CRD's must be.
"""

from __future__ import annotations

import ast
import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from osm.model import config, kinds, schema
from tests.unit.model import model_examples as ex
from tests.unit.model import test_manifest_invalid as invalid

REPOSITORY = Path(__file__).resolve().parents[3]
OURS = {kind for kind, _ in schema.SCHEMAS}


def validator(kind: str, api_version: str, *, strict: bool = False) -> jsonschema.Validator:
    """Draft 4 is OpenAPI 3.0's vocabulary (1.0 is not an integer there, as for the model)."""
    document = schema.schema(kind, api_version)
    return jsonschema.Draft4Validator(_strict(document) if strict else document)


def _strict(node: Any) -> Any:
    """The schema as ``fieldValidation=Strict`` applies it: no field beyond those listed."""
    if isinstance(node, dict):
        copied = {key: _strict(value) for key, value in node.items()}
        if "properties" in copied:
            copied["additionalProperties"] = False
        return copied
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def _without_nulls(node: Any) -> Any:
    """The API server prunes null fields of custom resources before validating them."""
    if isinstance(node, dict):
        return {key: _without_nulls(value) for key, value in node.items() if value is not None}
    if isinstance(node, list):
        return [_without_nulls(item) for item in node]
    return node


# -- the examples of the repository ------------------------------------------------------------
def _documents(text: str) -> Iterator[Any]:
    try:
        yield from yaml.safe_load_all(text)
    except yaml.YAMLError:
        return


def _in_python(path: Path) -> Iterator[tuple[str, Any]]:
    """Manifests written in Python: YAML strings and literal dicts."""
    text = path.read_text()
    if not any(kind in text for kind in OURS):
        return
    for node in ast.walk(ast.parse(text)):
        where = f"{path.relative_to(REPOSITORY)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(f"kind: {kind}" in node.value for kind in OURS):
                yield from ((where, document) for document in _documents(node.value))
        elif isinstance(node, ast.Dict) and any(
            isinstance(value, ast.Constant) and value.value in OURS for value in node.values
        ):
            try:
                yield where, ast.literal_eval(node)
            except ValueError:
                continue


@functools.cache
def examples() -> list[tuple[str, dict[str, Any]]]:
    """Every manifest of one of our kinds written in the tests, the demo and osm itself."""
    found: list[tuple[str, Any]] = [
        (f"model_examples {name}", yaml.safe_load(text)) for name, text in ex.VALID.items()
    ]
    found.append(("config.default_manifest()", config.default_manifest()))
    for path in sorted([*REPOSITORY.glob("tests/**/*.yaml"), *REPOSITORY.glob("demo/**/*.yaml")]):
        found += [(str(path.relative_to(REPOSITORY)), d) for d in _documents(path.read_text())]
    for path in sorted([*REPOSITORY.glob("tests/**/*.py"), *REPOSITORY.glob("osm/**/*.py")]):
        found += list(_in_python(path))
    return [
        (where, document)
        for where, document in found
        if isinstance(document, dict)
        and document.get("kind") in OURS
        and (document["kind"], document.get("apiVersion")) in schema.SCHEMAS
    ]


def accepted_examples() -> list[Any]:
    return [
        pytest.param(document, id=where)
        for where, document in examples()
        if kinds.parse(document)[0] is not None
    ]


def test_every_kind_and_version_is_found_in_the_examples() -> None:
    found = {(d["kind"], d["apiVersion"]) for _, d in examples() if kinds.parse(d)[0]}
    assert found == set(schema.SCHEMAS)


@pytest.mark.parametrize("document", accepted_examples())
def test_an_example_the_model_accepts_validates(document: dict[str, Any]) -> None:
    check = validator(document["kind"], document["apiVersion"], strict=True)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in check.iter_errors(_without_nulls(document))
    ]
    assert errors == []


# -- the model's table of invalid manifests -----------------------------------------------------
BEYOND_A_SCHEMA = {
    "a traffic target's destination is in its own namespace": "compares two fields",
    "a TCPRoute rule has no named matches": "depends on the rule's kind",
    "match names are unique": "uniqueness by a key of list items",
    "backends are listed once": "uniqueness by a key of list items",
    "a traffic split whose weights are all zero sends nothing": "a sum over list items",
    "a bad path regex is reported with RE2's reason": "needs a regex engine",
    "a regex with a huge repeat is an error, not a crash": "needs a regex engine",
    "a bad header regex in the map form": "needs a regex engine",
    "a bad header regex in the list form points at its item": "needs a regex engine",
    "headers are a map or a list": "two shapes; a structural schema has one type per node",
    "a header list item has exactly one key": "headers have no structural type (see above)",
    "a header value is a string": "headers have no structural type (see above)",
    "a validity is at least a minute": "a bound on a duration string",
    "the minimum TLS version is not above the maximum": "compares two fields",
    "a bad prefix length": "a CIDR needs an address parser",
    "a host name is not a CIDR": "a CIDR needs an address parser",
}


def invalid_rows() -> list[Any]:
    rows = []
    for row in invalid.ROWS:
        manifest, path, _fragment = row.values
        document = yaml.safe_load(manifest)
        if not isinstance(document, dict):
            continue
        if (document.get("kind"), document.get("apiVersion")) in schema.SCHEMAS:
            rows.append(pytest.param(document, path, row.id in BEYOND_A_SCHEMA, id=row.id))
    return rows


@pytest.mark.parametrize(("document", "path", "beyond"), invalid_rows())
def test_an_invalid_manifest_of_the_model_is_refused_unless_beyond_a_schema(
    document: dict[str, Any], path: str, beyond: bool
) -> None:
    check = validator(document["kind"], document["apiVersion"], strict=True)
    assert check.is_valid(document) is beyond


def test_every_check_beyond_a_schema_is_a_row_of_the_model_table() -> None:
    ids = {row.id for row in invalid.ROWS}
    assert set(BEYOND_A_SCHEMA) <= ids


def test_unknown_fields_are_refused_only_when_strict() -> None:
    document = yaml.safe_load(ex.TRAFFIC_SPLIT_V1ALPHA2)
    document["spec"]["backends"][0]["wieght"] = 1
    assert validator("TrafficSplit", "split.smi-spec.io/v1alpha2").is_valid(document)
    assert not validator("TrafficSplit", "split.smi-spec.io/v1alpha2", strict=True).is_valid(
        document
    )


# -- wrong types anywhere ------------------------------------------------------------------------
WRONG_TYPES: dict[type, tuple[Any, ...]] = {
    str: (7, {"a": "b"}),
    int: ("7", True, 1.5),
    float: ("7", True),
    bool: ("true", 1),
    list: ("x", {"a": 1}),
    dict: ("x", ["x"]),
}
UNTYPED = "headers"
"""HTTPRouteGroup match headers: two shapes, so no structural type (the model checks them)."""


def _leaves(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield (*at, key), value
        if isinstance(value, dict | list):
            yield from _leaves(value, (*at, key))


def _replaced(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    target: Any = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copied


def mistyped() -> list[Any]:
    cases = []
    for name, text in ex.VALID.items():
        document = yaml.safe_load(text)
        if document["kind"] not in OURS:
            continue
        for path, value in _leaves(document):
            if path[0] in ("apiVersion", "kind", "metadata") or UNTYPED in path:
                continue
            for wrong in WRONG_TYPES[type(value)]:
                field = ".".join(map(str, path))
                cases.append(pytest.param(_replaced(document, path, wrong), id=f"{name} {field}"))
    return cases


@pytest.mark.parametrize("document", mistyped())
def test_a_wrong_type_the_model_refuses_is_refused(document: dict[str, Any]) -> None:
    if kinds.parse(document)[0] is not None:
        return  # the model accepts it too (an opaque field such as sidecar.resources)
    assert not validator(document["kind"], document["apiVersion"]).is_valid(document)


def test_wrong_types_are_mostly_refused_by_the_model_too() -> None:
    refused = [p for p in mistyped() if kinds.parse(p.values[0])[0] is None]
    assert len(refused) > 0.9 * len(mistyped())


# -- the shape of a CRD schema -------------------------------------------------------------------
def test_every_custom_kind_has_a_schema_at_every_version() -> None:
    wanted = {(i.kind, v) for i in kinds.KINDS if i.strict for v in i.versions}
    assert set(schema.SCHEMAS) == wanted


def test_a_kind_without_a_schema_is_a_key_error_that_lists_those_with_one() -> None:
    with pytest.raises(KeyError, match=r"TrafficSplit split\.smi-spec\.io/v1alpha4"):
        schema.schema("Pod", "v1")


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """What makes a schema not structural (Kubernetes' rules for CRDs), plus our own rule that
    every field says what it is for."""
    problems = []
    free = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
        "x-kubernetes-int-or-string"
    )
    if "type" not in node and not free:
        problems.append(f"{path or '<root>'}: no type")
    if "description" not in node:
        problems.append(f"{path or '<root>'}: no description")
    if "$ref" in node:
        problems.append(f"{path}: $ref")
    for junctor in ("allOf", "anyOf", "oneOf", "not"):
        if junctor in node:
            problems.append(f"{path}: {junctor} (not needed here, and restricted in CRDs)")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties beside additionalProperties")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{path}: an array without items")
    for name in node.get("required", ()):
        if name not in node.get("properties", {}):
            problems.append(f"{path}: required {name} is not a property")
    for name, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{path}.{name}")
    if "items" in node:
        problems += structural_problems(node["items"], f"{path}[]")
    return problems


@pytest.mark.parametrize(("kind", "api_version"), schema.SCHEMAS)
def test_a_schema_is_structural_and_described(kind: str, api_version: str) -> None:
    document = schema.schema(kind, api_version)
    assert structural_problems(document) == []
    assert document["properties"]["metadata"] == {
        "type": "object",
        "description": "Standard object's metadata.",
    }
    jsonschema.Draft4Validator.check_schema(document)


TT = ("TrafficTarget", "access.smi-spec.io/v1alpha3")
HRG = ("HTTPRouteGroup", "specs.smi-spec.io/v1alpha4")
TS4 = ("TrafficSplit", "split.smi-spec.io/v1alpha4")
MC = ("MeshConfig", "config.openservicemesh.io/v1alpha2")
TLS = ["TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"]


@pytest.mark.parametrize(
    ("kind", "path", "enum"),
    [
        (TT, "spec.rules[].kind", ["HTTPRouteGroup", "TCPRoute"]),
        (TT, "spec.sources[].kind", ["ServiceAccount"]),
        (HRG, "spec.matches[].methods[]", ["*", "GET", "HEAD", "PUT", "POST", "DELETE",
                                           "CONNECT", "OPTIONS", "TRACE", "PATCH"]),
        (TS4, "spec.matches[].kind", ["HTTPRouteGroup"]),
        (MC, "spec.sidecar.localProxyMode", ["Localhost", "PodIP"]),
        (MC, "spec.sidecar.tlsMinProtocolVersion", TLS),
        (MC, "spec.sidecar.tlsMaxProtocolVersion", TLS),
    ],
)  # fmt: skip
def test_enums_are_the_models(kind: tuple[str, str], path: str, enum: list[str]) -> None:
    node = schema.schema(*kind)
    for part in path.split("."):
        node = node["properties"][part.replace("[]", "")]
        for _ in range(part.count("[]")):
            node = node["items"]
    assert node["enum"] == enum


def test_descriptions_state_the_models_defaults() -> None:
    spec = schema.schema("MeshConfig", config.API_VERSION)["properties"]["spec"]["properties"]
    traffic = spec["traffic"]["properties"]
    assert traffic["enablePermissiveTrafficPolicyMode"]["description"].endswith("Default: true.")
    validity = spec["certificate"]["properties"]["serviceCertValidityDuration"]
    assert validity["description"].endswith('Default: "24h".')
