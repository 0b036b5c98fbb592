"""The observability stack's objects: Kubernetes' own schemas accept every one (strict), Debian's
promtool accepts local mode's prometheus.yml, the scrape configuration is OSM's plus our latency
series and controller job, and the local/Kubernetes switch decides Services and targets."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from osm.base import wellknown
from osm.install import observability

KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")
NAMESPACE = wellknown.CONTROL_PLANE_NAMESPACE
PROMTOOL = shutil.which("promtool")


def render(local: bool) -> list[dict[str, Any]]:
    return observability.render(NAMESPACE, local=local, tracing_image="osm-controller:v1")


def by_name(local: bool) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in render(local)}


@pytest.mark.parametrize(
    ("local", "index", "kube"),
    [
        pytest.param(local, index, kube, id=f"{'local' if local else 'kube'}-{index}-{kube}")
        for local in (True, False)
        for index in range(len(render(local)))
        for kube in KUBERNETES_VERSIONS
    ],
)
def test_every_object_passes_kubernetes_schemas_strictly(
    local: bool, index: int, kube: str
) -> None:
    kubernetes_validate.validate(render(local)[index], kube, strict=True)


def test_the_objects_are_the_contracts_names() -> None:
    assert set(by_name(True)) == {
        f"ConfigMap/{wellknown.PROMETHEUS_CONFIG_NAME}",
        f"Service/{wellknown.PROMETHEUS_SERVICE}",
        f"Deployment/{wellknown.PROMETHEUS_SERVICE}",
        f"Service/{wellknown.TRACING_SERVICE}",
        f"Deployment/{wellknown.TRACING_SERVICE}",
    }
    assert set(by_name(False)) - set(by_name(True)) == {
        f"ServiceAccount/{wellknown.PROMETHEUS_SERVICE}",
        f"ClusterRole/{wellknown.PROMETHEUS_SERVICE}",
        f"ClusterRoleBinding/{wellknown.PROMETHEUS_SERVICE}",
    }
    assert all(o["metadata"].get("namespace", NAMESPACE) == NAMESPACE for o in render(False))


@pytest.mark.parametrize(
    ("local", "cluster_ip"), [(True, "None"), (False, None)], ids=["local", "kubernetes"]
)
def test_services_are_headless_only_locally(local: bool, cluster_ip: str | None) -> None:
    objects = by_name(local)
    for name, port, target in (
        (
            wellknown.PROMETHEUS_SERVICE,
            wellknown.PROMETHEUS_SERVICE_PORT,
            wellknown.PROMETHEUS_PORT,
        ),
        (wellknown.TRACING_SERVICE, wellknown.ZIPKIN_PORT, wellknown.ZIPKIN_PORT),
    ):
        spec = objects[f"Service/{name}"]["spec"]
        assert spec.get("clusterIP") == cluster_ip
        assert [(p["port"], p["targetPort"]) for p in spec["ports"]] == [(port, target)]
        assert spec["selector"] == {"app": name}


def containers(local: bool, name: str) -> dict[str, dict[str, Any]]:
    spec = by_name(local)[f"Deployment/{name}"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def test_prometheus_runs_debians_binary_locally_with_its_discovery_beside_it() -> None:
    found = containers(True, wellknown.PROMETHEUS_SERVICE)
    assert set(found) == {wellknown.PROMETHEUS_SERVICE, observability.DISCOVERY_CONTAINER}
    server = found[wellknown.PROMETHEUS_SERVICE]
    assert server["command"][0] == "/usr/bin/prometheus"
    assert "image" not in server
    assert f"--web.listen-address=:{wellknown.PROMETHEUS_PORT}" in server["command"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert found[observability.DISCOVERY_CONTAINER]["command"][:3] == [
        "python3",
        "-m",
        "osm.runtime.prometheus_sd",
    ]
    kube = containers(False, wellknown.PROMETHEUS_SERVICE)
    assert set(kube) == {wellknown.PROMETHEUS_SERVICE}
    assert kube[wellknown.PROMETHEUS_SERVICE]["image"] == observability.PROMETHEUS_IMAGE


def test_data_lives_on_empty_dirs() -> None:
    for name in (wellknown.PROMETHEUS_SERVICE, wellknown.TRACING_SERVICE):
        spec = by_name(True)[f"Deployment/{name}"]["spec"]["template"]["spec"]
        assert {"name": "data", "emptyDir": {}} in spec["volumes"]
    tracing = containers(True, wellknown.TRACING_SERVICE)[wellknown.TRACING_SERVICE]
    assert tracing["command"][:3] == ["python3", "-m", "osm.tracing"]
    assert tracing["command"][tracing["command"].index("--port") + 1] == str(wellknown.ZIPKIN_PORT)
    assert tracing["command"][tracing["command"].index("--db") + 1].startswith(
        observability.TRACING_DATA_DIR
    )


def prometheus_yml(local: bool) -> dict[str, Any]:
    data = by_name(local)[f"ConfigMap/{wellknown.PROMETHEUS_CONFIG_NAME}"]["data"]
    loaded: dict[str, Any] = yaml.safe_load(data["prometheus.yml"])
    return loaded


def job(local: bool, name: str) -> dict[str, Any]:
    return {j["job_name"]: j for j in prometheus_yml(local)["scrape_configs"]}[name]


@pytest.mark.skipif(PROMTOOL is None, reason="needs Debian's promtool")
@pytest.mark.parametrize("local", [True, False], ids=["local", "kubernetes"])
def test_promtool_accepts_the_configuration(local: bool, tmp_path: Path) -> None:
    """Debian's promtool knows no kubernetes_sd_configs: Kubernetes mode's is checked with
    its discovery swapped for local mode's (the relabelings are what is checked)."""
    config = copy.deepcopy(prometheus_yml(local))
    for scrape in config["scrape_configs"]:
        if scrape.pop("kubernetes_sd_configs", None) is not None:
            scrape["http_sd_configs"] = [{"url": observability.discovery_url()}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kept_series_are_osms_and_the_latency_histogram() -> None:
    (kept,) = job(True, "kubernetes-pods")["metric_relabel_configs"]
    names = kept["regex"].strip("()").split("|")
    assert kept["action"] == "keep"
    assert names[:15] == list(observability.OSM_KEPT_SERIES)
    assert "envoy_cluster_upstream_rq_time_(bucket" in kept["regex"]
    for series in ("envoy_cluster_upstream_rq_time_bucket", "osm_proxy_connect_count"):
        assert re.fullmatch(kept["regex"], series), series


@pytest.mark.parametrize("local", [True, False], ids=["local", "kubernetes"])
def test_pod_job_makes_osms_target_labels(local: bool) -> None:
    relabel = job(local, "kubernetes-pods")["relabel_configs"]
    targets = {r.get("target_label") for r in relabel} | {
        r.get("replacement") for r in relabel if r["action"] == "labelmap"
    }
    assert {
        "source_namespace",
        "source_pod_name",
        "source_service",
        "source_workload_kind",
        "source_workload_name",
        "__metrics_path__",
        "__address__",
    } <= targets
    assert relabel[0] == {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
        "action": "keep",
        "regex": "true",
    }


def test_local_mode_reads_pods_over_http_sd_and_the_controller_at_the_gateway() -> None:
    pods = job(True, "kubernetes-pods")
    assert pods["http_sd_configs"][0]["url"] == observability.discovery_url()
    assert "kubernetes_sd_configs" not in pods
    controller = job(True, "osm-controller")
    assert controller["static_configs"][0]["targets"] == [
        f"osm-controller.{NAMESPACE}.svc.cluster.local:{wellknown.CONTROLLER_HTTP_PORT}"
    ]
    assert controller["metrics_path"] == "/metrics"


def test_kubernetes_mode_scrapes_the_controller_once_through_its_own_job() -> None:
    pods = job(False, "kubernetes-pods")
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    assert {
        "source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_label_app"],
        "action": "drop",
        "regex": f"{NAMESPACE};osm-controller",
    } in pods["relabel_configs"]
    controller = job(False, "osm-controller")
    assert controller["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": [NAMESPACE]}}
    ]
    keeps = [r for r in controller["relabel_configs"] if r["action"] == "keep"]
    assert {
        "source_labels": ["__meta_kubernetes_pod_label_app"],
        "action": "keep",
        "regex": "osm-controller",
    } in keeps
