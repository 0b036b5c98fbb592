"""Pods the injector refuses (OSM's ``failurePolicy: Fail``): each error names the object
and the field path a user must fix, and says what would be valid."""

from __future__ import annotations

from typing import Any

import pytest

from osm.base import wellknown
from osm.injector.values import InjectionError
from osm.model.config import default_mesh_config
from tests.unit.injector.injector_support import container, namespace, pod, run

POD = "Pod bookstore/bookstore-v1"
OUT_PORTS = wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION
IN_PORTS = wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION
OUT_RANGES = wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION
IN_RANGES = wellknown.OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION


def _annotation(key: str) -> str:
    return f'metadata.annotations["{key}"]'


CASES: list[Any] = [
    # -- malformed exclusion annotations --------------------------------------------------
    pytest.param(
        pod(annotations={OUT_PORTS: "6379,redis"}),
        namespace(),
        (
            POD,
            _annotation(OUT_PORTS),
            '"redis" is not a port number (1-65535); expected a '
            'comma-separated list such as "8080,8443"',
        ),
        id="outbound port not a number",
    ),
    pytest.param(
        pod(annotations={IN_PORTS: "70000"}),
        namespace(),
        (
            POD,
            _annotation(IN_PORTS),
            '"70000" is not a port number (1-65535); expected a '
            'comma-separated list such as "8080,8443"',
        ),
        id="inbound port out of range",
    ),
    pytest.param(
        pod(annotations={OUT_RANGES: "10.0.0.1"}),
        namespace(),
        (
            POD,
            _annotation(OUT_RANGES),
            '"10.0.0.1" is not an IP range in CIDR notation (e.g. "10.0.0.0/8")',
        ),
        id="exclusion range without a prefix length",
    ),
    pytest.param(
        pod(annotations={IN_RANGES: "fd00::/8"}),
        namespace(),
        (
            POD,
            _annotation(IN_RANGES),
            '"fd00::/8" is an IPv6 range; interception rules are IPv4 (iptables)',
        ),
        id="inclusion range IPv6",
    ),
    # -- unknown sidecar --------------------------------------------------------------------
    pytest.param(
        pod(annotations={wellknown.DATA_PLANE_ANNOTATION: "linkerd"}),
        namespace(),
        (
            POD,
            _annotation(wellknown.DATA_PLANE_ANNOTATION),
            'unknown sidecar "linkerd"; valid values: envoy, python',
        ),
        id="unknown sidecar on the pod",
    ),
    # -- clashes with what the injector adds ----------------------------------------------
    pytest.param(
        pod(containers=[container("bookstore", port=15000)]),
        namespace(),
        (
            POD,
            "spec.containers[0].ports[0].containerPort",
            "port 15000 is the sidecar's admin port; the sidecar uses 15000, 15001, 15003, 15010, "
            "15901, 15902, 15903, 15904, so an app must listen on another",
        ),
        id="app on the admin port",
    ),
    pytest.param(
        pod(containers=[container("bookstore"), container("metrics", port=15010)]),
        namespace(),
        (
            POD,
            "spec.containers[1].ports[0].containerPort",
            "port 15010 is the sidecar's Prometheus port; the sidecar uses 15000, 15001, 15003, "
            "15010, 15901, 15902, 15903, 15904, so an app must listen on another",
        ),
        id="second container on the Prometheus port",
    ),
    pytest.param(
        pod(containers=[container("bookstore"), container("envoy", port=9901)]),
        namespace(),
        (
            POD,
            "spec.containers[1].name",
            '"envoy" is the name of what the injector adds (is '
            "the pod injected already?); rename it",
        ),
        id="a container named envoy",
    ),
    pytest.param(
        pod(
            containers=[
                container("bookstore", livenessProbe={"tcpSocket": {"port": 14001}}),
                container("osm-healthcheck", port=9000),
            ]
        ),
        namespace(),
        (
            POD,
            "spec.containers[1].name",
            '"osm-healthcheck" is the name of what the injector adds (is '
            "the pod injected already?); rename it",
        ),
        id="a container named osm-healthcheck in a pod with a tcpSocket probe",
    ),
    pytest.param(
        pod(initContainers=[{"name": "osm-init", "image": "busybox"}]),
        namespace(),
        (
            POD,
            "spec.initContainers[0].name",
            '"osm-init" is the name of what the injector '
            "adds (is the pod injected already?); rename it",
        ),
        id="an init container named osm-init",
    ),
    pytest.param(
        pod(volumes=[{"name": "envoy-bootstrap-config-volume", "emptyDir": {}}]),
        namespace(),
        (
            POD,
            "spec.volumes[0].name",
            '"envoy-bootstrap-config-volume" is the name of what '
            "the injector adds (is the pod injected already?); rename it",
        ),
        id="the bootstrap volume's name taken",
    ),
    # -- the rest of the pod and its namespace ---------------------------------------------
    pytest.param(
        pod(serviceAccountName="Book_Store"),
        namespace(),
        (
            POD,
            "spec.serviceAccountName",
            "invalid service account 'Book_Store': expected a "
            "DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)",
        ),
        id="a service account that names no identity",
    ),
    pytest.param(
        pod(containers=[]) | {"spec": {}},
        namespace(),
        (POD, "spec.containers", "a pod needs a list of containers"),
        id="no containers",
    ),
    pytest.param(
        pod(containers=["bookstore"]),
        namespace(),
        (POD, "spec.containers[0]", "a container is an object"),
        id="a container that is not an object",
    ),
    pytest.param(
        pod(ns="bookbuyer"),
        namespace(),
        (
            "Pod bookstore/bookstore-v1",
            "metadata.namespace",
            'is "bookbuyer", not the namespace given',
        ),
        id="the pod in another namespace than the one given",
    ),
    pytest.param(
        pod(),
        namespace(annotations={wellknown.METRICS_ANNOTATION: "sometimes"}),
        (
            "Namespace bookstore",
            _annotation(wellknown.METRICS_ANNOTATION),
            '"sometimes" is not a valid value; expected one of enabled, yes, true, disabled, '
            "no, false",
        ),
        id="metrics annotation",
    ),
]


@pytest.mark.parametrize(("the_pod", "the_namespace", "expected"), CASES)
def test_refused_with_the_object_and_the_field(
    the_pod: dict[str, Any], the_namespace: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    with pytest.raises(InjectionError) as caught:
        run(the_pod, the_namespace)
    error = caught.value
    assert (error.object_ref, error.path, error.message) == expected
    assert str(error) == ": ".join(expected)


def test_a_pod_not_injected_is_not_checked_for_clashes() -> None:
    """A pod outside the mesh keeps whatever ports it likes (OSM never sees it)."""
    the_pod = pod(containers=[container("admin", port=15000)])
    assert not run(the_pod, namespace(injection=None)).decision.inject


def test_a_container_named_osm_healthcheck_is_fine_where_none_is_added() -> None:
    the_pod = pod(containers=[container("bookstore"), container("osm-healthcheck", port=9000)])
    names = [c["name"] for c in run(the_pod, namespace()).pod["spec"]["containers"]]
    assert names == ["bookstore", "osm-healthcheck", "envoy"]


def test_a_generated_pod_is_named_by_its_generate_name() -> None:
    the_pod = pod(containers=[container("bookstore", port=15003)])
    the_pod["metadata"] = {"generateName": "bookstore-v1-5d8f-"}
    with pytest.raises(InjectionError) as caught:
        run(the_pod, namespace(), mesh_config=default_mesh_config())
    assert caught.value.object_ref == "Pod bookstore/bookstore-v1-5d8f-"
