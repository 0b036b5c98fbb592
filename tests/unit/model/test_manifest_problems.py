"""How problems read: a file with three mistakes in three objects prints three errors, each
with the file, the document, the object and the field path."""

from __future__ import annotations

import pathlib

import pytest

from osm.model import manifest
from osm.model.errors import Problem, ValidationFailed, errors_only

THREE_MISTAKES = """\
# One valid object and three objects with one mistake each.
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{port: 80, protocol: tcp}]
---
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: web-canary, namespace: shop}
spec:
  service: web
  backends: [{service: web-v1, weight: 0}, {service: web-v2, weight: 0}]
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: web-api, namespace: shop}
spec:
  matches: [{name: read, pathregex: /items}]
"""


def test_a_file_with_three_mistakes_in_three_objects_prints_three_errors(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(THREE_MISTAKES)

    result = manifest.load_paths([path])

    assert [loaded.resource.name for loaded in result.objects] == ["shop"]
    assert [(p.source, p.document, p.kind, p.namespace, p.name, p.path) for p in result.errors] == [
        (str(path), 1, "Service", "shop", "web", "spec.ports[0].protocol"),
        (str(path), 2, "TrafficSplit", "shop", "web-canary", "spec.backends"),
        (str(path), 3, "HTTPRouteGroup", "shop", "web-api", "spec.matches[0].pathregex"),
    ]
    assert [str(p) for p in result.errors] == [
        f"{path} (document 2): Service shop/web: spec.ports[0].protocol: "
        '"tcp" is not valid (did you mean "TCP"?); valid values: "TCP", "UDP", "SCTP"',
        f"{path} (document 3): TrafficSplit shop/web-canary: spec.backends: "
        "at least one backend needs a weight above 0",
        f"{path} (document 4): HTTPRouteGroup shop/web-api: spec.matches[0].pathregex: "
        'unknown field (did you mean "pathRegex"?); valid fields here: headers, methods, '
        "name, pathRegex",
    ]


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        pytest.param(
            Problem("is wrong", "spec.x", "a.yaml", 0, "Service", "shop", "web"),
            "a.yaml (document 1): Service shop/web: spec.x: is wrong",
            id="a full problem names file, document, object and field",
        ),
        pytest.param(
            Problem("is wrong", "metadata.namespace", "a.yaml", 2, "Namespace", "", "shop"),
            "a.yaml (document 3): Namespace shop: metadata.namespace: is wrong",
            id="a cluster-scoped object is named without a namespace",
        ),
        pytest.param(
            Problem("no such file or directory", source="missing.yaml"),
            "missing.yaml: no such file or directory",
            id="a problem with a file only names the file",
        ),
        pytest.param(
            Problem("must be an object", document=0),
            "<input> (document 1): must be an object",
            id="a problem without a source is from the input",
        ),
        pytest.param(
            Problem("is odd:  really", "spec", "a.yaml", kind="TCPRoute"),
            "a.yaml: TCPRoute: spec: is odd:  really",
            id="the message is printed as it is",
        ),
        pytest.param(
            Problem(
                "is missing",
                "spec.rules[0].name",
                "a.yaml",
                0,
                "TrafficTarget",
                "s",
                "t",
                severity="warning",
            ),
            "a.yaml (document 1): warning: TrafficTarget s/t: spec.rules[0].name: is missing",
            id="a warning says it is one",
        ),
    ],
)
def test_a_problem_reads_as_one_line(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_located_fills_only_what_is_missing() -> None:
    problem = Problem("bad", "spec", kind="Service").located(
        source="a.yaml", document=3, kind="Pod", namespace="shop", name="web"
    )
    assert problem == Problem("bad", "spec", "a.yaml", 3, "Service", "shop", "web")
    assert problem.located(document=9).document == 3


def test_validation_failed_lists_errors_and_keeps_warnings() -> None:
    error = Problem("bad", "spec", "a.yaml")
    warning = Problem("odd", "spec", "a.yaml", severity="warning")
    failure = ValidationFailed([error, warning])
    assert failure.errors == (error,)
    assert failure.problems == (error, warning)
    assert str(failure) == "1 error(s):\na.yaml: spec: bad"
    assert errors_only([error, warning]) == [error]
