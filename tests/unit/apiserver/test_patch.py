"""Patches as the API server applies them: RFC 7386's and RFC 6902's own examples, the
strategic merge patches that `kubectl apply` sends, the merge-key table against the
Kubernetes OpenAPI schemas, and properties that hold for any input."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osm.apiserver import patch, resources

# -- dispatch on the media type --------------------------------------------------------------
OBJECT = {"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 1}}


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        pytest.param(
            "application/merge-patch+json",
            {"metadata": {"labels": {"app": None}}},
            {"metadata": {"name": "web", "labels": {}}, "spec": {"replicas": 1}},
            id="merge patch",
        ),
        pytest.param(
            "application/merge-patch+json; charset=utf-8",
            {"spec": {"replicas": 2}},
            {"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 2}},
            id="parameters are ignored",
        ),
        pytest.param(
            "Application/JSON-Patch+JSON",
            [{"op": "replace", "path": "/spec/replicas", "value": 3}],
            {"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 3}},
            id="media types are case-insensitive",
        ),
        pytest.param(
            "application/strategic-merge-patch+json",
            {"metadata": {"finalizers": ["x"]}},
            {
                "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["x"]},
                "spec": {"replicas": 1},
            },
            id="strategic merge patch of a built-in kind",
        ),
    ],
)
def test_apply_patch_dispatches_on_the_media_type(
    content_type: str, body: object, expected: dict[str, Any]
) -> None:
    assert patch.apply_patch(content_type, OBJECT, body, kind="Deployment", builtin=True) == (
        expected
    )


@pytest.mark.parametrize(
    ("content_type", "builtin", "says"),
    [
        pytest.param(patch.STRATEGIC, False, "custom resource", id="strategic on a custom kind"),
        pytest.param(patch.APPLY, True, "server-side apply", id="server-side apply"),
        pytest.param("application/json", True, patch.MERGE, id="an unknown type lists the known"),
    ],
)
def test_apply_patch_refuses_what_it_does_not_support(
    content_type: str, builtin: bool, says: str
) -> None:
    with pytest.raises(patch.UnsupportedPatch, match=re.escape(says)):
        patch.apply_patch(content_type, OBJECT, {}, kind="TrafficSplit", builtin=builtin)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(patch.MERGE, ["a"], id="merge patch: an array"),
        pytest.param(patch.STRATEGIC, "x", id="strategic: a string"),
        pytest.param(patch.JSON_PATCH, {"op": "add"}, id="JSON patch: an object"),
    ],
)
def test_a_body_of_the_wrong_shape_is_a_patch_error(content_type: str, body: object) -> None:
    with pytest.raises(patch.PatchError) as raised:
        patch.apply_patch(content_type, OBJECT, body, kind="Pod", builtin=True)
    assert not isinstance(raised.value, patch.UnsupportedPatch)


# -- RFC 7386, appendix A --------------------------------------------------------------------
RFC7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "body", "result"), RFC7386_EXAMPLES)
def test_merge_patch_follows_rfc7386(original: Any, body: Any, result: Any) -> None:
    # The rows whose document or patch is not an object are checked one level down, where
    # RFC 7386 applies to any value; a patch of a whole object must itself be an object.
    if body is None:
        return  # a null patch of a member deletes it (the rows above show it)
    wrapped = patch.merge_patch({"x": original, "kept": 1}, {"x": body})
    assert wrapped == {"x": result, "kept": 1}
    if isinstance(original, dict) and isinstance(body, dict):
        assert patch.merge_patch(original, body) == result
    elif not isinstance(body, dict):
        with pytest.raises(patch.PatchError, match="must be a JSON object"):
            patch.merge_patch({"a": 1}, body)


# -- RFC 6902, appendix A --------------------------------------------------------------------
RFC6902_EXAMPLES = [
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
        id="A.1 adding an object member",
    ),
    pytest.param(
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
        id="A.2 adding an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
        id="A.3 removing an object member",
    ),
    pytest.param(
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
        id="A.4 removing an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
        id="A.5 replacing a value",
    ),
    pytest.param(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        id="A.6 moving a value",
    ),
    pytest.param(
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
        id="A.7 moving an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
        id="A.8 testing a value: success",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
        id="A.10 adding a nested member object",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
        id="A.11 ignoring unrecognized elements",
    ),
    pytest.param(
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
        id="A.14 ~ escape ordering",
    ),
    pytest.param(
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
        id="A.16 adding an array value",
    ),
    pytest.param(
        {"foo": {"bar": 1}},
        [{"op": "copy", "from": "/foo", "path": "/baz"}],
        {"foo": {"bar": 1}, "baz": {"bar": 1}},
        id="4.5 copy",
    ),
]


@pytest.mark.parametrize(("original", "operations", "result"), RFC6902_EXAMPLES)
def test_json_patch_follows_rfc6902(
    original: dict[str, Any], operations: list[Any], result: dict[str, Any]
) -> None:
    assert patch.json_patch(original, operations) == result


@pytest.mark.parametrize(
    ("original", "operations", "field"),
    [
        pytest.param(
            {"baz": "qux"},
            [{"op": "test", "path": "/baz", "value": "bar"}],
            "baz",
            id="A.9 testing a value: error",
        ),
        pytest.param(
            {"foo": "bar"},
            [{"op": "add", "path": "/baz/bat", "value": "qux"}],
            "baz.bat",
            id="A.12 adding to a nonexistent target",
        ),
        pytest.param(
            {"/": 9, "~1": 10},
            [{"op": "test", "path": "/~01", "value": "10"}],
            "~1",
            id="A.15 comparing strings and numbers",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "app"}]}},
            [
                {"op": "add", "path": "/spec/replicas", "value": 1},
                {"op": "remove", "path": "/spec/containers/0/image"},
            ],
            "spec.containers[0].image",
            id="the failing operation's path, kubectl-style",
        ),
        pytest.param(
            {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}},
            [{"op": "test", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "x"}],
            "metadata.labels[app.kubernetes.io/name]",
            id="a label's key, as Kubernetes writes it in a field path",
        ),
        pytest.param(
            {"a": 1}, [{"op": "frobnicate", "path": "/a"}], "a", id="an unknown operation"
        ),
        pytest.param({"a": 1}, [{"op": "add", "value": 1}], "", id="no path"),
        pytest.param({"a": 1}, ["add"], "", id="an operation that is not an object"),
        pytest.param(
            {"a": 1},
            [{"op": "replace", "path": "", "value": [1]}],
            "",
            id="a result that is not an object",
        ),
    ],
)
def test_a_json_patch_that_does_not_apply_is_a_patch_error(
    original: dict[str, Any], operations: list[Any], field: str
) -> None:
    with pytest.raises(patch.PatchError) as raised:
        patch.json_patch(original, operations)
    assert raised.value.field == field


def test_a_json_patch_applies_all_or_nothing() -> None:
    original = {"a": 1}
    with pytest.raises(patch.PatchError):
        patch.json_patch(
            original,
            [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 2}],
        )
    assert original == {"a": 1}


# -- strategic merge patch: what kubectl apply sends -----------------------------------------
def pod(*containers: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", **metadata},
        "spec": {"containers": list(containers)},
    }


def deployment(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": list(containers)},
            },
            **spec,
        },
    }


def service(*ports: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": list(ports)},
    }


APP = {"name": "app", "image": "web:1", "env": [{"name": "A", "value": "1"}]}
SIDECAR = {"name": "sidecar", "image": "envoy:1"}

# (kind, object, patch, result): each patch is what kubectl's three-way diff sends for an
# edit of the manifest, or a `kubectl patch` that users write.
STRATEGIC_CASES = [
    pytest.param(
        deployment(APP),
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "app"}],
                        "containers": [
                            {
                                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                                "env": [{"name": "B", "value": "2"}],
                                "name": "app",
                            }
                        ],
                    }
                }
            }
        },
        deployment(
            {
                "name": "app",
                "image": "web:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ),
        id="apply: add an env var, after the others",
    ),
    pytest.param(
        pod(APP, SIDECAR),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"image": "envoy:2", "name": "sidecar"}],
            }
        },
        pod(APP, {"name": "sidecar", "image": "envoy:2"}),
        id="apply: change a container's image, found by name",
    ),
    pytest.param(
        pod(APP, SIDECAR),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{"$patch": "delete", "name": "sidecar"}],
            }
        },
        pod(APP),
        id="apply: remove a container",
    ),
    pytest.param(
        pod(APP, SIDECAR),
        {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}},
        pod(SIDECAR, APP),
        id="apply: $setElementOrder reorders a list the patch leaves alone",
    ),
    pytest.param(
        pod(APP),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "init"}, {"name": "app"}],
                "containers": [{"name": "init", "image": "busybox"}],
            }
        },
        pod({"name": "init", "image": "busybox"}, APP),
        id="apply: a new container where $setElementOrder puts it",
    ),
    pytest.param(
        pod(SIDECAR, APP),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [
                    {"name": "web", "image": "web:2"},
                    {"$patch": "delete", "name": "app"},
                ],
            }
        },
        pod(SIDECAR, {"name": "web", "image": "web:2"}),
        id="apply: a renamed container takes the place of the old, after one the server added",
    ),
    pytest.param(
        pod(APP),
        {"spec": {"containers": [{"name": "init", "image": "busybox"}]}},
        pod({"name": "init", "image": "busybox"}, APP),
        id="patch: without $setElementOrder a new element goes first, as in Kubernetes",
    ),
    pytest.param(
        service({"name": "http", "port": 80, "targetPort": 8080}, {"name": "tls", "port": 443}),
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 8443}],
                "ports": [
                    {"port": 80, "targetPort": 8081},
                    {"name": "tls", "port": 8443},
                    {"$patch": "delete", "port": 443},
                ],
            }
        },
        service({"name": "http", "port": 80, "targetPort": 8081}, {"name": "tls", "port": 8443}),
        id="apply: Service ports merge by port",
    ),
    pytest.param(
        deployment(APP, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}),
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}
            }
        },
        deployment(APP, strategy={"type": "Recreate"}),
        id="apply: $retainKeys clears the rolling update of a Recreate strategy",
    ),
    pytest.param(
        {**pod(APP), "spec": {"containers": [APP], "volumes": [{"name": "v", "secret": {}}]}},
        {
            "spec": {
                "$setElementOrder/volumes": [{"name": "v"}],
                "volumes": [
                    {"$retainKeys": ["configMap", "name"], "configMap": {"name": "c"}, "name": "v"}
                ],
            }
        },
        {
            **pod(APP),
            "spec": {"containers": [APP], "volumes": [{"name": "v", "configMap": {"name": "c"}}]},
        },
        id="apply: $retainKeys in a volume swaps its source",
    ),
    pytest.param(
        pod(APP, finalizers=["example.com/a", "example.com/b"]),
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/b"]}},
        pod(APP, finalizers=["example.com/a"]),
        id="apply: $deleteFromPrimitiveList removes a finalizer",
    ),
    pytest.param(
        pod(APP, finalizers=["example.com/a", "example.com/b"]),
        {
            "metadata": {
                "$setElementOrder/finalizers": ["example.com/a", "example.com/c"],
                "$deleteFromPrimitiveList/finalizers": ["example.com/b"],
                "finalizers": ["example.com/c"],
            }
        },
        pod(APP, finalizers=["example.com/a", "example.com/c"]),
        id="apply: replace one finalizer by another",
    ),
    pytest.param(
        pod(APP, finalizers=["example.com/a"]),
        {"metadata": {"finalizers": ["example.com/b", "example.com/a"]}},
        pod(APP, finalizers=["example.com/b", "example.com/a"]),
        id="patch: finalizers merge as a set",
    ),
    pytest.param(
        pod(APP, labels={"app": "web", "tier": "front"}),
        {"metadata": {"labels": {"tier": None}}},
        pod(APP, labels={"app": "web"}),
        id="apply: null deletes a label",
    ),
    pytest.param(
        deployment(
            {
                "name": "app",
                "image": "web:1",
                "args": ["--port", "80"],
                "ports": [{"containerPort": 80, "name": "http"}],
                "volumeMounts": [{"name": "a", "mountPath": "/a"}],
            },
            SIDECAR,
        ),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "args": ["--port", "81"],
                                "ports": [{"containerPort": 81, "name": "http2"}],
                                "volumeMounts": [{"name": "b", "mountPath": "/a"}],
                            }
                        ]
                    }
                }
            }
        },
        deployment(
            {
                "name": "app",
                "image": "web:1",
                "args": ["--port", "81"],
                "ports": [
                    {"containerPort": 81, "name": "http2"},
                    {"containerPort": 80, "name": "http"},
                ],
                "volumeMounts": [{"name": "b", "mountPath": "/a"}],
            },
            SIDECAR,
        ),
        id="Deployment: template containers merge by name, ports by containerPort, "
        "mounts by mountPath, args replace",
    ),
    pytest.param(
        pod(APP, SIDECAR),
        {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}},
        pod({"name": "only", "image": "x"}),
        id="$patch: replace in a list",
    ),
    pytest.param(
        pod(APP, labels={"app": "web", "tier": "front"}),
        {"metadata": {"labels": {"$patch": "replace", "team": "shop"}}},
        pod(APP, labels={"team": "shop"}),
        id="$patch: replace in a map",
    ),
    pytest.param(
        pod(APP, labels={"app": "web"}),
        {"metadata": {"labels": {"$patch": "delete"}, "annotations": {"$patch": "delete"}}},
        pod(APP, labels={}),
        id="$patch: delete in a map empties it, and adds nothing where there was none",
    ),
    pytest.param(
        pod(
            {**APP, "envFrom": [{"configMapRef": {"name": "a"}}], "command": ["a", "b"]},
        ),
        {"spec": {"containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "s"}}]}]}},
        pod({**APP, "envFrom": [{"secretRef": {"name": "s"}}], "command": ["a", "b"]}),
        id="envFrom has no merge key: replaced",
    ),
    pytest.param(
        pod(
            APP,
            ownerReferences=[
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1"}
            ],
        ),
        {
            "metadata": {
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2"}
                ]
            }
        },
        pod(
            APP,
            ownerReferences=[
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1"},
            ],
        ),
        id="ownerReferences merge by uid",
    ),
    pytest.param(
        {
            **pod(APP),
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "app", "ready": False}, {"name": "x"}],
            },
        },
        {
            "status": {
                "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": [{"name": "app", "ready": True}],
                "phase": "Running",
            }
        },
        {
            **pod(APP),
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": [{"name": "app", "ready": True}],
            },
        },
        id="status: conditions merge by type, containerStatuses replace",
    ),
    pytest.param(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}],
        },
        {"subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]},
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 80}]}],
        },
        id="Endpoints subsets replace",
    ),
]


@pytest.mark.parametrize(("original", "body", "result"), STRATEGIC_CASES)
def test_strategic_merge_patch(
    original: dict[str, Any], body: dict[str, Any], result: dict[str, Any]
) -> None:
    assert patch.strategic_merge_patch(original, body, original["kind"]) == result


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        pytest.param(
            {"metadata": {"$frobnicate": 1}},
            "metadata.$frobnicate",
            "unknown directive",
            id="an unknown directive",
        ),
        pytest.param(
            {"metadata": {"labels": {"$patch": "frobnicate"}}},
            "metadata.labels.$patch",
            "unknown \\$patch directive",
            id="an unknown $patch in a map",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "app", "$patch": "frobnicate"}]}},
            "spec.containers[0].$patch",
            "unknown \\$patch directive",
            id="an unknown $patch in a list",
        ),
        pytest.param(
            {"spec": {"containers": [{"image": "x"}]}},
            "spec.containers[0]",
            "merge key 'name'",
            id="a list element without its merge key",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": None, "image": "x"}]}},
            "spec.containers[0]",
            "merge key 'name'",
            id="a list element whose merge key is null",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": "app"}, {"$patch": "delete"}]}},
            "spec.containers[1]",
            "merge key 'name'",
            id="a deletion without the merge key",
        ),
        pytest.param(
            {"spec": {"containers": ["app"]}},
            "spec.containers[0]",
            "must be a JSON object",
            id="a keyed list's element that is not an object",
        ),
        pytest.param(
            {"metadata": {"finalizers": [{"a": 1}]}},
            "metadata.finalizers[0]",
            "primitive",
            id="an object in a list of primitives",
        ),
        pytest.param(
            {"metadata": {"$retainKeys": "name"}},
            "metadata.$retainKeys",
            "list of field names",
            id="$retainKeys that is not a list",
        ),
        pytest.param(
            {"metadata": {"$retainKeys": ["name"], "labels": {"a": "b"}}},
            "metadata.$retainKeys",
            "'labels'",
            id="$retainKeys without a field the patch sets",
        ),
        pytest.param(
            {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}],
                    "containers": [{"name": "other", "image": "x"}],
                }
            },
            "spec.$setElementOrder/containers",
            "'other'",
            id="$setElementOrder without an element of the patch",
        ),
        pytest.param(
            {"spec": {"$setElementOrder/containers": ["app"]}},
            "spec.$setElementOrder/containers",
            "'name'",
            id="$setElementOrder of a keyed list without the keys",
        ),
        pytest.param(
            {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
            "metadata.$deleteFromPrimitiveList/finalizers",
            "list of primitive",
            id="$deleteFromPrimitiveList that is not a list",
        ),
    ],
)
def test_a_strategic_merge_patch_that_does_not_apply_names_the_field(
    body: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(patch.PatchError, match=says) as raised:
        patch.strategic_merge_patch(pod(APP, finalizers=["a"]), body, "Pod")
    assert raised.value.field == field


def test_strategic_merge_patch_needs_the_kind_s_merge_keys() -> None:
    with pytest.raises(patch.UnsupportedPatch, match="TrafficSplit"):
        patch.strategic_merge_patch({}, {}, "TrafficSplit")


# -- the merge keys, against the Kubernetes OpenAPI schemas ----------------------------------
SCHEMA_NAMES = {
    "Namespace": "io.k8s.api.core.v1.Namespace",
    "ServiceAccount": "io.k8s.api.core.v1.ServiceAccount",
    "Service": "io.k8s.api.core.v1.Service",
    "Endpoints": "io.k8s.api.core.v1.Endpoints",
    "Pod": "io.k8s.api.core.v1.Pod",
    "Deployment": "io.k8s.api.apps.v1.Deployment",
    "Secret": "io.k8s.api.core.v1.Secret",
    "ConfigMap": "io.k8s.api.core.v1.ConfigMap",
}


def _schema_definitions() -> dict[str, Any]:
    """The newest schemas that kubernetes-validate ships (`$defs` of `_definitions.json`)."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    newest = max(
        root.glob("v*-local"), key=lambda p: tuple(int(n) for n in p.name[1:-6].split("."))
    )
    document = json.loads((newest / "_definitions.json").read_text())
    definitions: dict[str, Any] = document["$defs"]
    return definitions


def _merge_lists(
    definitions: dict[str, Any], name: str, path: str, seen: frozenset[str]
) -> Iterator[tuple[str, str]]:
    """(path, merge key or SET) of every list with patch strategy merge under `name`; a
    map's values are `*` in the path (which the table cannot name)."""
    if name in seen:
        return
    for field, schema in definitions[name].get("properties", {}).items():
        here = f"{path}.{field}" if path else field
        types = schema.get("type")
        types = types if isinstance(types, list) else [types]
        if "merge" in schema.get("x-kubernetes-patch-strategy", "").split(","):
            assert "array" in types, f"{here}: a merge strategy on a non-list"
            yield here, schema.get("x-kubernetes-patch-merge-key", patch.SET)
        if "array" in types:
            here, schema = f"{here}[]", schema["items"]
        elif isinstance(schema.get("additionalProperties"), dict):
            here, schema = f"{here}.*", schema["additionalProperties"]
        reference = schema.get("$ref") or next(
            (s["$ref"] for s in schema.get("allOf", ()) if "$ref" in s), None
        )
        if reference:
            yield from _merge_lists(definitions, reference.split("/")[-1], here, seen | {name})


def test_the_merge_keys_are_the_kubernetes_api_s() -> None:
    definitions = _schema_definitions()
    for kind, name in SCHEMA_NAMES.items():
        expected = dict(_merge_lists(definitions, name, "", frozenset()))
        assert not [path for path in expected if ".*" in path], kind
        assert dict(patch.MERGE_KEYS[kind]) == expected, kind


def test_every_builtin_kind_served_has_merge_keys_and_no_custom_kind_has() -> None:
    for resource in resources.RESOURCES:
        assert (resource.kind in patch.MERGE_KEYS) == resource.builtin, resource.kind


# -- properties -----------------------------------------------------------------------------
KEYS = st.sampled_from(["a", "b", "c", "name", "spec"])
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["x", "y", ""])
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=4)
NO_LISTS = st.recursive(SCALARS, lambda inner: st.dictionaries(KEYS, inner, max_size=4))
OBJECTS_WITHOUT_LISTS = st.dictionaries(KEYS, NO_LISTS, max_size=4)
MAPS_ONLY = st.recursive(
    SCALARS.filter(lambda v: v is not None), lambda inner: st.dictionaries(KEYS, inner, max_size=3)
)
PATCHES_OF_MAPS = st.dictionaries(KEYS, MAPS_ONLY, max_size=4)

CONTAINER_NAMES = st.sampled_from(["app", "sidecar", "init"])
ENV = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["A", "B", "C"])}, optional={"value": st.sampled_from("12")}
    ),
    max_size=3,
    unique_by=lambda e: e["name"],
)
CONTAINER = st.fixed_dictionaries(
    {"name": CONTAINER_NAMES},
    optional={"image": st.sampled_from(["a:1", "a:2"]), "env": ENV, "args": st.lists(KEYS)},
)
PODS = st.builds(
    lambda containers, finalizers: pod(*containers, finalizers=finalizers),
    st.lists(CONTAINER, min_size=1, max_size=3, unique_by=lambda c: c["name"]),
    st.lists(st.sampled_from(["f1", "f2", "f3"]), min_size=1, unique=True),
)
DELETION = st.builds(lambda name: {"name": name, "$patch": "delete"}, CONTAINER_NAMES)


@st.composite
def ordered_containers(draw: st.DrawFn) -> dict[str, Any]:
    """A containers patch as `kubectl apply` shapes it: `$setElementOrder/containers` names
    the manifest's containers in order, the patch changes some of them (in that order) and
    deletes others."""
    order = draw(st.permutations(["app", "sidecar", "init"]))[: draw(st.integers(0, 3))]
    changed = [name for name in order if draw(st.booleans())]
    deleted = [n for n in ["app", "sidecar", "init"] if n not in order and draw(st.booleans())]
    elements = [{**draw(CONTAINER), "name": name} for name in changed]
    elements += [{"name": name, "$patch": "delete"} for name in deleted]
    body: dict[str, Any] = {"$setElementOrder/containers": [{"name": n} for n in order]}
    return {**body, "containers": elements} if elements else body


@st.composite
def ordered_finalizers(draw: st.DrawFn) -> dict[str, Any]:
    """Finalizers as `kubectl apply` patches them: the manifest's order, the additions, and
    the removals in a parallel list."""
    order = draw(st.permutations(["f1", "f2", "f3", "f4"]))[: draw(st.integers(0, 4))]
    added = [name for name in order if draw(st.booleans())]
    removed = [n for n in ["f1", "f2", "f3", "f4"] if n not in order and draw(st.booleans())]
    body: dict[str, Any] = {"$setElementOrder/finalizers": order, "finalizers": added}
    return {**body, "$deleteFromPrimitiveList/finalizers": removed} if removed else body


POD_PATCHES = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "finalizers": st.lists(st.sampled_from(["f1", "f2", "f4"]), unique=True),
                "$deleteFromPrimitiveList/finalizers": st.lists(st.sampled_from(["f3", "f5"])),
                "labels": st.dictionaries(KEYS, st.none() | st.just("v")),
            },
        )
        | ordered_finalizers(),
        "spec": st.fixed_dictionaries(
            {}, optional={"containers": st.lists(CONTAINER | DELETION, max_size=3)}
        )
        | ordered_containers(),
    },
)


def recursive_update(target: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(target)
    for key, value in update.items():
        if isinstance(value, dict):
            below = result.get(key)
            result[key] = recursive_update(below if isinstance(below, dict) else {}, value)
        else:
            result[key] = value
    return result


def containers_in(value: object) -> set[int]:
    """The ids of every dict and list reachable from `value`."""
    if isinstance(value, dict):
        return {id(value)}.union(*(containers_in(v) for v in value.values()))
    if isinstance(value, list):
        return {id(value)}.union(*(containers_in(v) for v in value))
    return set()


@given(OBJECTS)
def test_an_empty_merge_patch_changes_nothing(document: dict[str, Any]) -> None:
    assert patch.merge_patch(document, {}) == document


@given(OBJECTS, PATCHES_OF_MAPS)
def test_a_merge_patch_of_maps_is_a_recursive_update(
    document: dict[str, Any], body: dict[str, Any]
) -> None:
    assert patch.merge_patch(document, body) == recursive_update(document, body)


@given(OBJECTS_WITHOUT_LISTS, OBJECTS_WITHOUT_LISTS)
def test_strategic_merge_without_lists_is_a_merge_patch(
    document: dict[str, Any], body: dict[str, Any]
) -> None:
    assert patch.strategic_merge_patch(document, body, "ConfigMap") == patch.merge_patch(
        document, body
    )


@given(PODS, POD_PATCHES)
def test_strategic_merge_keeps_one_container_per_name(
    document: dict[str, Any], body: dict[str, Any]
) -> None:
    result = patch.strategic_merge_patch(document, body, "Pod")
    names = [c["name"] for c in result["spec"]["containers"]]
    deleted = {e["name"] for e in body.get("spec", {}).get("containers", []) if "$patch" in e}
    added = {e["name"] for e in body.get("spec", {}).get("containers", []) if "$patch" not in e}
    assert len(names) == len(set(names))
    assert set(names) == ({c["name"] for c in document["spec"]["containers"]} - deleted) | added


@given(OBJECTS, JSON, st.sampled_from(["merge", "strategic", "json"]))
def test_inputs_are_never_mutated_nor_shared_with_the_result(
    document: dict[str, Any], value: Any, which: str
) -> None:
    body: Any = {"a": value, "spec": {"containers": value}}
    if which == "json":
        body = [{"op": "add", "path": "/a", "value": value}]
    before = copy.deepcopy((document, body))
    try:
        if which == "merge":
            result = patch.merge_patch(document, body)
        elif which == "strategic":
            result = patch.strategic_merge_patch(document, body, "Pod")
        else:
            result = patch.json_patch(document, body)
    except patch.PatchError:
        result = {}
    assert (document, body) == before
    assert not containers_in(result) & (containers_in(document) | containers_in(body))


@given(PODS, POD_PATCHES)
def test_strategic_merge_of_pods_never_mutates_its_inputs(
    document: dict[str, Any], body: dict[str, Any]
) -> None:
    before = copy.deepcopy((document, body))
    result = patch.strategic_merge_patch(document, body, "Pod")
    assert (document, body) == before
    assert not containers_in(result) & (containers_in(document) | containers_in(body))


# -- an independent peer: kubectl's own strategic merge ---------------------------------------
# `kubectl patch --local` applies a strategic merge patch with apimachinery's code and the
# Go API types' merge keys, offline. Where kubectl is not installed these tests skip.
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def kubectl_strategic(document: dict[str, Any], body: dict[str, Any], home: Path) -> Any:
    assert KUBECTL is not None
    body_json = json.dumps(body)
    completed = subprocess.run(
        [KUBECTL, "patch", "--local", "--type=strategic", "-f", "-", "-o", "json", "-p", body_json],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBECONFIG": str(home / "none")},
    )
    return json.loads(completed.stdout)


@needs_kubectl
@pytest.mark.parametrize(("original", "body", "result"), STRATEGIC_CASES)
def test_kubectl_computes_the_same_strategic_merge(
    original: dict[str, Any], body: dict[str, Any], result: dict[str, Any], tmp_path: Path
) -> None:
    assert kubectl_strategic(original, body, tmp_path) == result


@needs_kubectl
@settings(max_examples=40, deadline=None)
@given(PODS, POD_PATCHES)
def test_kubectl_agrees_on_any_pod_patch(document: dict[str, Any], body: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as home:
        expected = kubectl_strategic(document, body, Path(home))
    assert patch.strategic_merge_patch(document, body, "Pod") == expected
