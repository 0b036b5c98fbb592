"""What OSM's webhook makes of a pod: golden files for a few representative pods, checked
by peers that are not ours: the RFC 6902 patch applied by the ``jsonpatch`` package must
give the mutated pod, every Pod and Secret must pass the Kubernetes API's schema, and the
Python sidecar's bootstrap must load with `osm.proxy.bootstrap`.

Run with ``UPDATE_GOLDEN=1`` to rewrite tests/golden/injector after an intended change,
then read the diff. The Secrets' data is shown decoded there.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from osm.base import wellknown
from osm.base.identity import DataPlane
from osm.injector import patch, secret
from osm.injector.decision import Reason
from osm.interception import rules
from osm.model.config import (
    MeshConfig,
    ObservabilitySettings,
    SidecarSettings,
    TrafficSettings,
    default_mesh_config,
)
from osm.proxy import bootstrap as proxy_bootstrap
from osm.proxy import health
from tests.unit import golden
from tests.unit.injector.injector_support import (
    GOLDEN,
    PROXY_UUID,
    XDS,
    apply_patch,
    container,
    dump,
    namespace,
    pod,
    run,
    secret_files,
    validate_kubernetes,
)

TUNED = replace(
    default_mesh_config(),
    sidecar=SidecarSettings(
        enable_privileged_init_container=True, log_level="debug", local_proxy_mode="PodIP"
    ),
    traffic=TrafficSettings(
        outbound_port_exclusion_list=(8080, 6379),
        outbound_ip_range_exclusion_list=("169.254.169.254/32",),
    ),
)
"""A MeshConfig with the injection settings changed: privileged init, debug logging,
PodIP mode, port and IP exclusions."""


def _bookstore() -> dict[str, Any]:
    """The bookstore with every kind of probe and its own exclusions, in a namespace with
    metrics enabled: Envoy."""
    return {
        "pod": pod(
            annotations={wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION: "6379, 3306"},
            labels={"app": "bookstore", "version": "v1"},
            containers=[
                container(
                    "bookstore",
                    livenessProbe={"httpGet": {"path": "/liveness", "port": "web"}},
                    readinessProbe={"tcpSocket": {"port": 14001}, "periodSeconds": 5},
                    startupProbe={
                        "httpGet": {"path": "/startup", "port": 14001, "scheme": "HTTPS"}
                    },
                )
            ],
        ),
        "namespace": namespace(annotations={wellknown.METRICS_ANNOTATION: "enabled"}),
    }


def _bookbuyer() -> dict[str, Any]:
    """A client in a namespace that asks for the Python sidecar, with an httpGet and a
    tcpSocket probe; the tuned MeshConfig."""
    return {
        "pod": pod(
            "bookbuyer-7c9f",
            ns="bookbuyer",
            labels={"app": "bookbuyer"},
            containers=[
                container(
                    "bookbuyer",
                    readinessProbe={"httpGet": {"port": 14001}},
                    livenessProbe={"tcpSocket": {"port": "web"}, "timeoutSeconds": 2},
                )
            ],
        ),
        "namespace": namespace(
            "bookbuyer", annotations={wellknown.DATA_PLANE_ANNOTATION: DataPlane.PYTHON.value}
        ),
        "mesh_config": TUNED,
    }


def _generated() -> dict[str, Any]:
    """A pod as a Deployment's ReplicaSet sends it (generateName, no labels or
    annotations, two containers, the default service account), enabled by its own
    annotation; the controller reached by IP."""
    the_pod = pod(
        ns="bookwarehouse",
        containers=[
            container("bookwarehouse", port=14001),
            {"name": "log-shipper", "image": "busybox", "command": ["tail", "-F", "/var/log"]},
        ],
    )
    the_pod["metadata"] = {
        "generateName": "bookwarehouse-6f8c4-",
        "namespace": "bookwarehouse",
        "annotations": {wellknown.SIDECAR_INJECTION_ANNOTATION: "enabled"},
    }
    del the_pod["spec"]["serviceAccountName"]
    return {
        "pod": the_pod,
        "namespace": namespace("bookwarehouse", injection=None),
        "xds": replace(XDS, host="10.96.0.10"),
    }


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "envoy-bookstore": _bookstore,
    "python-bookbuyer": _bookbuyer,
    "envoy-generated-name": _generated,
}


def _inject(case: str) -> tuple[dict[str, Any], patch.Injection]:
    inputs = CASES[case]()
    the_pod = inputs.pop("pod")
    return the_pod, run(the_pod, inputs.pop("namespace"), **inputs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    _, result = _inject(case)
    assert result.secret is not None
    directory = GOLDEN / case
    golden.compare(directory / "pod.yaml", dump(result.pod))
    golden.compare(directory / "patch.json", json.dumps(result.patch, indent=1) + "\n")
    shown = dict(result.secret)
    shown["data"] = {key: value.decode() for key, value in secret_files(result.secret).items()}
    golden.compare(
        directory / "secret.yaml", "# data shown decoded (base64 in the Secret)\n" + dump(shown)
    )
    assert sorted(path.name for path in directory.iterdir()) == [
        "patch.json",
        "pod.yaml",
        "secret.yaml",
    ]


def test_every_golden_directory_is_a_case() -> None:
    assert sorted(path.name for path in GOLDEN.iterdir()) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_patch_applied_to_the_original_pod_is_the_mutated_pod(case: str) -> None:
    original, result = _inject(case)
    assert result.patch and apply_patch(original, result.patch) == result.pod


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_pod_and_the_secret_pass_the_kubernetes_schema(case: str) -> None:
    original, result = _inject(case)
    assert result.secret is not None
    validate_kubernetes(original)
    validate_kubernetes(result.pod)
    validate_kubernetes(result.secret)


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_the_pod_and_its_secret_agree_on(case: str) -> None:
    _, result = _inject(case)
    assert result.secret is not None and result.node is not None
    plane = result.decision.data_plane
    assert plane is not None
    name = secret.secret_name(PROXY_UUID)
    assert result.secret["metadata"]["name"] == name == f"envoy-bootstrap-config-{PROXY_UUID}"
    assert result.secret["metadata"]["namespace"] == result.node.identity.namespace
    spec = result.pod["spec"]
    assert result.pod["metadata"]["labels"][wellknown.PROXY_UUID_LABEL] == str(PROXY_UUID)
    assert spec["volumes"][-1] == {
        "name": "envoy-bootstrap-config-volume",
        "secret": {"secretName": name},
    }
    sidecar = spec["containers"][-1]
    assert sidecar["name"] == ("envoy" if plane is DataPlane.ENVOY else "osm-sidecar")
    assert sidecar["securityContext"] == {"runAsUser": wellknown.PROXY_UID}
    assert sidecar["volumeMounts"] == [
        {"name": "envoy-bootstrap-config-volume", "mountPath": "/etc/envoy", "readOnly": True}
    ]
    bootstrap_file = secret.bootstrap_path(plane)
    assert bootstrap_file in sidecar["args"]
    assert bootstrap_file.rpartition("/")[2] in secret_files(result.secret)
    assert spec["initContainers"][-1]["name"] == "osm-init"
    assert str(result.node) == f"{PROXY_UUID}.sidecar.{result.node.identity.service_account}." + (
        result.node.identity.namespace
    )


def test_the_python_bootstrap_loads_with_the_sidecars_own_reader(tmp_path: Path) -> None:
    _, result = _inject("python-bookbuyer")
    assert result.secret is not None and result.node is not None
    for key, value in secret_files(result.secret).items():
        (tmp_path / key).write_bytes(value)
    loaded = proxy_bootstrap.load(tmp_path / "bootstrap.json")
    assert loaded.node == result.node
    assert loaded.node_cluster == "bookbuyer.bookbuyer"  # as Envoy's --service-cluster
    assert loaded.xds.target == XDS.address
    assert loaded.xds.tls is not None and loaded.xds.tls.server_name == XDS.server_name
    assert loaded.xds.tls.cert.read_bytes() == secret_files(result.secret)["sds_cert.pem"]
    # The httpGet probe is forwarded by the sidecar; the tcpSocket one by osm-healthcheck.
    assert loaded.health_probes == (
        proxy_bootstrap.HealthProbe("readiness", "HTTP", 14001, "/", 1.0),
    )
    sidecar = result.pod["spec"]["containers"][-1]
    assert sidecar["command"] + sidecar["args"] == [
        "python", "-m", "osm.proxy", "--bootstrap", "/etc/envoy/bootstrap.json",
        "--log-level", "debug",
    ]  # fmt: skip
    assert result.pod["metadata"]["annotations"][wellknown.DATA_PLANE_ANNOTATION] == "python"


def test_envoys_command_is_osms() -> None:
    _, result = _inject("envoy-bookstore")
    envoy = result.pod["spec"]["containers"][-1]
    assert envoy["command"] + envoy["args"] == [
        "envoy", "--log-level", "error", "--config-path", "/etc/envoy/bootstrap.yaml",
        "--service-cluster", "bookstore.bookstore",
    ]  # fmt: skip
    assert [(p["name"], p["containerPort"]) for p in envoy["ports"]] == [
        ("proxy-admin", 15000),
        ("proxy-inbound", 15003),
        ("proxy-metrics", 15010),
        ("liveness-port", 15901),
        ("readiness-port", 15902),
        ("startup-port", 15903),
    ]
    assert wellknown.DATA_PLANE_ANNOTATION not in result.pod["metadata"]["annotations"]


TCP_PROBE = {"tcpSocket": {"port": 14001}}
HTTP_PROBE = {"httpGet": {"path": "/healthz", "port": 14001}}


@pytest.mark.parametrize("plane", list(DataPlane))
@pytest.mark.parametrize(
    ("probes", "added"),
    [
        ({}, False),
        ({"livenessProbe": HTTP_PROBE, "startupProbe": {"exec": {"command": ["true"]}}}, False),
        ({"readinessProbe": TCP_PROBE}, True),
        ({"livenessProbe": HTTP_PROBE, "startupProbe": TCP_PROBE}, True),
    ],
    ids=["no probes", "httpGet and exec", "tcpSocket", "httpGet and tcpSocket"],
)
def test_osm_healthcheck_is_added_for_tcp_socket_probes_on_either_data_plane(
    plane: DataPlane, probes: dict[str, Any], added: bool
) -> None:
    the_pod = pod(
        annotations={wellknown.DATA_PLANE_ANNOTATION: plane.value},
        containers=[container("bookstore", **probes)],
    )
    containers = run(the_pod).pod["spec"]["containers"]
    names = [item["name"] for item in containers]
    sidecar = "envoy" if plane is DataPlane.ENVOY else "osm-sidecar"
    assert names == ["bookstore", *(["osm-healthcheck"] if added else []), sidecar]
    if added:
        healthcheck = containers[1]
        assert healthcheck["command"] + healthcheck["args"] == [
            "python", "-m", "osm.proxy.healthcheck", "--verbosity", "info",
        ]  # fmt: skip
        assert healthcheck["image"] == patch.PYTHON_SIDECAR_IMAGE
        assert healthcheck["ports"] == [{"containerPort": wellknown.HEALTHCHECK_PORT}]
        assert healthcheck["securityContext"] == {"runAsUser": wellknown.PROXY_UID}


@pytest.mark.parametrize(
    ("level", "verbosity"),
    [("trace", "debug"), ("info", "info"), ("warn", "warning"), ("panic", "error")],
)
def test_osm_healthcheck_logs_at_the_meshconfigs_osm_log_level(level: str, verbosity: str) -> None:
    config = replace(
        default_mesh_config(), observability=ObservabilitySettings(osm_log_level=level)
    )
    the_pod = pod(containers=[container("bookstore", livenessProbe=TCP_PROBE)])
    healthcheck = run(the_pod, mesh_config=config).pod["spec"]["containers"][1]
    assert healthcheck["args"] == ["--verbosity", verbosity]


@pytest.mark.parametrize(
    ("mesh_config", "annotations", "dports"),
    [
        (default_mesh_config(), {}, None),
        (default_mesh_config(), {wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION: "6379"}, "6379"),
        (TUNED, {}, "8080,6379"),
        (TUNED, {wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION: "6379,9000"}, "8080,6379,9000"),
    ],
)
def test_the_init_container_applies_the_pods_rules_with_exclusions_merged_as_osm_does(
    mesh_config: MeshConfig, annotations: dict[str, str], dports: str | None
) -> None:
    result = run(pod(annotations=annotations), mesh_config=mesh_config)
    init = result.pod["spec"]["initContainers"][-1]
    expected = rules.init_container_script(rules.config_for_pod(annotations, mesh_config))
    assert init["command"] + init["args"] == ["/bin/sh", "-c", expected]
    assert expected.startswith("iptables-restore --noflush <<EOF\n")
    rule = f"-A OSM_PROXY_OUTBOUND -p tcp --match multiport --dports {dports} -j RETURN\n"
    assert (rule in expected) is (dports is not None)
    privileged = mesh_config.sidecar.enable_privileged_init_container
    assert init["securityContext"]["privileged"] is privileged
    assert init["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"]}


@pytest.mark.parametrize(
    ("level", "envoy", "python"),
    [
        ("trace", "trace", "debug"),
        ("debug", "debug", "debug"),
        ("info", "info", "info"),
        ("warn", "warn", "warning"),
        ("error", "error", "error"),
        ("critical", "critical", "error"),
        ("off", "off", "error"),
        ("fatal", "critical", "error"),
        ("panic", "critical", "error"),
        ("disabled", "off", "error"),
    ],
)
def test_the_meshconfig_log_level_is_one_each_sidecar_knows(
    level: str, envoy: str, python: str
) -> None:
    config = replace(default_mesh_config(), sidecar=SidecarSettings(log_level=level))
    for plane, expected in ((DataPlane.ENVOY, envoy), (DataPlane.PYTHON, python)):
        the_pod = pod(annotations={wellknown.DATA_PLANE_ANNOTATION: plane.value})
        args = run(the_pod, mesh_config=config).pod["spec"]["containers"][-1]["args"]
        assert args[args.index("--log-level") + 1] == expected


@pytest.mark.parametrize(
    ("value", "annotated"), [("enabled", True), ("TRUE", True), ("disabled", False), (None, False)]
)
def test_prometheus_annotations_only_in_namespaces_with_metrics_enabled(
    value: str | None, annotated: bool
) -> None:
    annotations = {wellknown.METRICS_ANNOTATION: value} if value else None
    result = run(pod(), namespace(annotations=annotations))
    expected = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "15010",
        "prometheus.io/path": "/stats/prometheus",
    }
    got = result.pod["metadata"].get("annotations", {})
    assert (got == expected) is annotated
    assert (got == {}) is not annotated


@pytest.mark.parametrize(
    "the_namespace",
    [namespace(injection=None), namespace("kube-system"), namespace(monitored=None)],
    ids=["not annotated", "kube-system", "not monitored"],
)
def test_a_pod_not_injected_comes_back_unchanged(the_namespace: dict[str, Any]) -> None:
    the_pod = pod(ns=the_namespace["metadata"]["name"])
    result = run(the_pod, the_namespace)
    assert not result.decision.inject and result.decision.reason is not Reason.POD_ENABLED
    assert result.pod == the_pod and result.pod is not the_pod
    assert (result.secret, result.patch, result.node) == (None, [], None)


def test_both_bootstraps_forward_the_same_probes_to_the_same_targets(tmp_path: Path) -> None:
    """What Envoy's probe listeners do (`envoy_bootstrap`) and what the Python sidecar is
    told to do (`osm.proxy.bootstrap.HealthProbe`), for the bookstore's every kind of probe."""
    inputs = _bookstore()
    envoy = run(inputs["pod"], inputs["namespace"])
    python_pod = copy.deepcopy(inputs["pod"])
    python_pod["metadata"]["annotations"][wellknown.DATA_PLANE_ANNOTATION] = "python"
    python = run(python_pod, inputs["namespace"])
    assert envoy.secret is not None and python.secret is not None
    document = yaml.safe_load(secret_files(envoy.secret)["bootstrap.yaml"])
    clusters = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        for c in document["static_resources"]["clusters"]
    }
    from_envoy = set()
    for listener in document["static_resources"]["listeners"]:
        kind = listener["name"].removesuffix("_listener")
        config = listener["filter_chains"][0]["filters"][0]["typed_config"]
        port = listener["address"]["socket_address"]["port_value"]
        if "route_config" in config:
            (route,) = config["route_config"]["virtual_hosts"][0]["routes"]
            upstream = clusters[route["route"]["cluster"]]["socket_address"]["port_value"]
            timeout = float(route["route"]["timeout"].removesuffix("s"))
            rewrite = (route["match"]["prefix"], route["route"]["prefix_rewrite"])
            from_envoy.add((kind, port, "HTTP", upstream, rewrite, timeout))
        else:
            upstream = clusters[config["cluster"]]["socket_address"]["port_value"]
            from_envoy.add((kind, port, "HTTPS", upstream, None, None))
    for key, value in secret_files(python.secret).items():
        (tmp_path / key).write_bytes(value)
    loaded = proxy_bootstrap.load(tmp_path / "bootstrap.json")
    from_python = {
        (
            probe.kind,
            health.probe_port(probe.kind),
            probe.scheme,
            probe.port,
            (health.probe_path(probe.kind), probe.path) if probe.scheme == "HTTP" else None,
            probe.timeout_seconds if probe.scheme == "HTTP" else None,
        )
        for probe in loaded.health_probes
    }
    assert (
        from_python
        == from_envoy
        == {
            ("liveness", 15901, "HTTP", 14001, ("/osm-liveness-probe", "/liveness"), 1.0),
            ("startup", 15903, "HTTPS", 14001, None, None),
        }
    )
