"""RFC 6902 diffs: the operations for typical pod changes, and for any two JSON documents
a patch that the ``jsonpatch`` package applies to the first to give the second."""

from __future__ import annotations

from typing import Any

import jsonpatch as reference
import pytest
from hypothesis import given
from hypothesis import strategies as st

from osm.injector.jsonpatch import diff, pointer


@pytest.mark.parametrize(
    ("original", "mutated", "operations"),
    [
        pytest.param({"a": 1}, {"a": 1}, [], id="equal"),
        pytest.param(
            {"metadata": {}},
            {"metadata": {"labels": {"osm-proxy-uuid": "x"}}},
            [{"op": "add", "path": "/metadata/labels", "value": {"osm-proxy-uuid": "x"}}],
            id="a new map",
        ),
        pytest.param(
            {"annotations": {"a": "1"}},
            {"annotations": {"a": "1", "prometheus.io/port": "15010"}},
            [{"op": "add", "path": "/annotations/prometheus.io~1port", "value": "15010"}],
            id="a key with a slash",
        ),
        pytest.param(
            {"containers": [{"name": "app", "port": 80}]},
            {"containers": [{"name": "app", "port": 81}, {"name": "envoy"}]},
            [
                {"op": "replace", "path": "/containers/0/port", "value": 81},
                {"op": "add", "path": "/containers/1", "value": {"name": "envoy"}},
            ],
            id="a list that changed and grew",
        ),
        pytest.param(
            {"probe": {"tcpSocket": {"port": 80}}},
            {"probe": {"httpGet": {"port": 15904}}},
            [
                {"op": "remove", "path": "/probe/tcpSocket"},
                {"op": "add", "path": "/probe/httpGet", "value": {"port": 15904}},
            ],
            id="a key removed and one added",
        ),
        pytest.param(
            {"ports": [1, 2, 3]},
            {"ports": [3]},
            [{"op": "replace", "path": "/ports", "value": [3]}],
            id="a shorter list is replaced",
        ),
        pytest.param(
            {"privileged": 1},
            {"privileged": True},
            [{"op": "replace", "path": "/privileged", "value": True}],
            id="1 is not true in JSON",
        ),
    ],
)
def test_diff(original: Any, mutated: Any, operations: list[dict[str, Any]]) -> None:
    assert diff(original, mutated) == operations
    assert reference.apply_patch(original, operations) == mutated


def test_pointer_escapes_as_rfc_6901_says() -> None:
    assert pointer("metadata", "annotations", "a/b~c", 0) == "/metadata/annotations/a~1b~0c/0"


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab/~", max_size=3),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text("ab/~", max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json, _json)
def test_the_patch_turns_any_document_into_any_other(original: Any, mutated: Any) -> None:
    assert reference.apply_patch(original, diff(original, mutated)) == mutated
