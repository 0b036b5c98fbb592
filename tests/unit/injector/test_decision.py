"""OSM's injection rules, one row each: which pods get a sidecar, which do not, and why.

Each row is a (pod, namespace) pair as a user would write them and the `Reason` OSM's
webhook would act on; the data plane is Envoy unless ``osm-py.io/sidecar`` asks for the
Python sidecar, the pod's annotation winning over its namespace's.
"""

from __future__ import annotations

from typing import Any

import pytest

from osm.base import wellknown
from osm.base.identity import DataPlane
from osm.injector.decision import Reason, decide
from osm.injector.values import InjectionError
from tests.unit.injector.injector_support import CONTROL_PLANE, SCOPE, namespace, pod

INJECT = wellknown.SIDECAR_INJECTION_ANNOTATION
SIDECAR = wellknown.DATA_PLANE_ANNOTATION

CASES: list[tuple[str, dict[str, Any], dict[str, Any], Reason]] = [
    # -- namespaces never injected ----------------------------------------------------
    (
        "the control plane's namespace, even annotated",
        pod(ns=CONTROL_PLANE, annotations={INJECT: "enabled"}),
        namespace(CONTROL_PLANE),
        Reason.CONTROL_PLANE_NAMESPACE,
    ),
    (
        "kube-system",
        pod(ns="kube-system", annotations={INJECT: "enabled"}),
        namespace("kube-system"),
        Reason.SYSTEM_NAMESPACE,
    ),
    (
        "kube-public",
        pod(ns="kube-public"),
        namespace("kube-public"),
        Reason.SYSTEM_NAMESPACE,
    ),
    # -- namespaces the webhook does not select ---------------------------------------
    (
        "a namespace not monitored, pod annotated",
        pod(annotations={INJECT: "enabled"}),
        namespace(monitored=None),
        Reason.NOT_MONITORED,
    ),
    (
        "a namespace monitored by another mesh",
        pod(),
        namespace(monitored="other-mesh"),
        Reason.NOT_MONITORED,
    ),
    (
        "a namespace labelled openservicemesh.io/ignore",
        pod(annotations={INJECT: "enabled"}),
        namespace(labels={wellknown.IGNORE_LABEL: "true"}),
        Reason.IGNORED,
    ),
    (
        "a namespace labelled control-plane",
        pod(),
        namespace(labels={wellknown.CONTROL_PLANE_LABEL: ""}),
        Reason.IGNORED,
    ),
    # -- pods never injected --------------------------------------------------------------
    (
        "a hostNetwork pod, even annotated",
        pod(annotations={INJECT: "enabled"}, hostNetwork=True),
        namespace(),
        Reason.HOST_NETWORK,
    ),
    # -- the annotations: the pod's overrides the namespace's ---------------------------
    ("namespace enabled, pod silent", pod(), namespace(), Reason.NAMESPACE_ENABLED),
    (
        "namespace yes (any case)",
        pod(),
        namespace(injection="Yes"),
        Reason.NAMESPACE_ENABLED,
    ),
    (
        "namespace enabled, pod disabled",
        pod(annotations={INJECT: "disabled"}),
        namespace(),
        Reason.POD_DISABLED,
    ),
    (
        "namespace enabled, pod false",
        pod(annotations={INJECT: "false"}),
        namespace(),
        Reason.POD_DISABLED,
    ),
    (
        "namespace disabled, pod enabled",
        pod(annotations={INJECT: "enabled"}),
        namespace(injection="disabled"),
        Reason.POD_ENABLED,
    ),
    (
        "namespace silent, pod true",
        pod(annotations={INJECT: "true"}),
        namespace(injection=None),
        Reason.POD_ENABLED,
    ),
    (
        "namespace no, pod silent",
        pod(),
        namespace(injection="no"),
        Reason.NAMESPACE_DISABLED,
    ),
    ("nobody says", pod(), namespace(injection=None), Reason.NOT_ANNOTATED),
    (
        "an empty annotation counts as none",
        pod(annotations={INJECT: ""}),
        namespace(),
        Reason.NAMESPACE_ENABLED,
    ),
]


@pytest.mark.parametrize(
    ("the_pod", "the_namespace", "reason"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_osm_injection_rules(
    the_pod: dict[str, Any], the_namespace: dict[str, Any], reason: Reason
) -> None:
    decided = decide(the_pod, the_namespace, SCOPE)
    assert decided.reason is reason
    assert decided.inject is (reason in (Reason.POD_ENABLED, Reason.NAMESPACE_ENABLED))
    assert (decided.data_plane is not None) is decided.inject
    assert decided.message and decided.message in str(decided)


@pytest.mark.parametrize(
    ("pod_says", "namespace_says", "plane"),
    [
        (None, None, DataPlane.ENVOY),
        ("envoy", None, DataPlane.ENVOY),
        ("python", None, DataPlane.PYTHON),
        (None, "python", DataPlane.PYTHON),
        (None, "envoy", DataPlane.ENVOY),
        ("envoy", "python", DataPlane.ENVOY),
        ("python", "envoy", DataPlane.PYTHON),
    ],
)
def test_the_data_plane_is_envoy_unless_the_pod_or_else_its_namespace_says_python(
    pod_says: str | None, namespace_says: str | None, plane: DataPlane
) -> None:
    the_pod = pod(annotations={SIDECAR: pod_says} if pod_says else None)
    the_namespace = namespace(annotations={SIDECAR: namespace_says} if namespace_says else None)
    decided = decide(the_pod, the_namespace, SCOPE)
    assert decided.inject and decided.data_plane is plane
    assert str(decided).startswith(f"inject {plane.value}: ")


def test_a_pod_not_injected_has_no_data_plane_whatever_it_asks() -> None:
    decided = decide(pod(annotations={SIDECAR: "python"}), namespace(injection=None), SCOPE)
    assert not decided.inject and decided.data_plane is None
    assert str(decided) == (
        "do not inject: neither the pod nor namespace bookstore has the annotation "
        "openservicemesh.io/sidecar-injection"
    )


@pytest.mark.parametrize(
    ("the_pod", "the_namespace", "expected"),
    [
        (
            pod(annotations={SIDECAR: "nginx"}),
            namespace(),
            'Pod bookstore/bookstore-v1: metadata.annotations["osm-py.io/sidecar"]: '
            'unknown sidecar "nginx"; valid values: envoy, python',
        ),
        (
            pod(),
            namespace(annotations={SIDECAR: "Python"}),
            'Namespace bookstore: metadata.annotations["osm-py.io/sidecar"]: '
            'unknown sidecar "Python"; valid values: envoy, python',
        ),
        (
            pod(annotations={INJECT: "maybe"}),
            namespace(),
            'Pod bookstore/bookstore-v1: metadata.annotations["openservicemesh.io/sidecar-'
            'injection"]: "maybe" is not a valid value; expected one of enabled, yes, true, '
            "disabled, no, false",
        ),
        (
            pod(),
            namespace(injection="on"),
            'Namespace bookstore: metadata.annotations["openservicemesh.io/sidecar-injection"]: '
            '"on" is not a valid value; expected one of enabled, yes, true, disabled, no, false',
        ),
    ],
    ids=["pod sidecar", "namespace sidecar", "pod injection", "namespace injection"],
)
def test_bad_annotations_name_the_object_and_the_field(
    the_pod: dict[str, Any], the_namespace: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InjectionError) as caught:
        decide(the_pod, the_namespace, SCOPE)
    assert str(caught.value) == expected
    assert caught.value.path.startswith("metadata.annotations[")
