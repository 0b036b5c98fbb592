"""The Grafana dashboards ``osm install`` ships (`osm.install.grafana`): each is a valid
Grafana dashboard, each query is valid PromQL (Debian's ``promtool``, once the template
variables have sample values), and each query names only series the mesh exposes: the
sidecars' Envoy stats (`osm.proxy.stats`, the same in both data planes:
tests/integration/test_metrics_parity.py), the controller's OSM metrics, and the target
labels the mesh's Prometheus adds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from osm.ads.metrics import AdsMetrics, exposition
from osm.base import wellknown
from osm.controller.mesh import PushMetrics
from osm.controller.metrics import ControllerMetrics
from osm.install import grafana
from osm.proxy import server, stats
from osm.webhook.server import Metrics as WebhookMetrics

DASHBOARDS = grafana.dashboards()
EXPECTED = {  # OSM's dashboards this set stands for
    "osm-control-plane.json",
    "osm-service-to-service.json",
    "osm-workload-to-service.json",
    "osm-data-plane-performance.json",
    "osm-mesh-envoy-details.json",
}
SAMPLE_VALUES = {  # template variable -> a value a user would pick
    "__rate_interval": "1m",
    "source_namespace": "bookbuyer",
    "source_workload": "bookbuyer",
    "destination_namespace": "bookstore",
    "destination_service": "bookstore",
    "namespace": "bookstore",
    "pod": "bookstore-v1-5f7d9c-abcde",
}
TARGET_LABELS = {  # what the kubernetes-pods job adds (OSM's chart), and Prometheus itself
    "source_namespace", "source_pod_name", "source_service", "source_workload_kind",
    "source_workload_name", "job", "instance",
}  # fmt: skip
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
METRIC = re.compile(r"\b(?:envoy|osm)_[a-zA-Z0-9_]+\b")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every target of every panel."""
    return [
        (name, panel["title"], target["expr"])
        for name, board in DASHBOARDS.items()
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def substituted(expr: str) -> str:
    for variable, value in sorted(SAMPLE_VALUES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace("${" + variable + "}", value).replace("$" + variable, value)
    return expr


def exposed() -> tuple[set[str], set[str]]:
    """(sample names, label keys) the mesh's processes write."""
    registry = CollectorRegistry()
    AdsMetrics.create(registry)
    PushMetrics(registry)
    ControllerMetrics(registry)
    WebhookMetrics(registry)
    sidecar = server.Sidecar()
    cluster = stats.ClusterStats(sidecar.stats, "bookstore/bookstore|14001")
    cluster.response(200)
    cluster.upstream_rq_time.record(3.0)
    texts = [exposition(registry).decode(), sidecar.stats.prometheus()]
    names: set[str] = set()
    labels: set[str] = set()
    for collector in list(registry._collector_to_names):  # a labelled metric before its first use
        labels.update(getattr(collector, "_labelnames", ()))
    for line in "\n".join(texts).splitlines():
        if line.startswith("# TYPE "):
            family, kind = line.split()[2:4]
            names.add(family)
            if kind == "histogram":
                names.update(family + suffix for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
            labels.update(MATCHER.findall(line.split("{", 1)[1]) if "{" in line else [])
    return names, labels


def test_the_configmap_holds_every_dashboard() -> None:
    configmap = grafana.dashboards_configmap("osm-system")
    assert configmap["metadata"]["name"] == wellknown.GRAFANA_DASHBOARDS_CONFIG_NAME
    assert configmap["metadata"]["namespace"] == "osm-system"
    assert set(configmap["data"]) == EXPECTED
    for text in configmap["data"].values():
        board = json.loads(text)
        assert board["uid"] and board["title"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_dashboard_is_a_grafana_dashboard(name: str) -> None:
    board = DASHBOARDS[name]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 30
    assert board["uid"] == name.removesuffix(".json")
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]
            used = set(re.findall(r"\$\{?([a-zA-Z_]+)", target["expr"]))
            assert used <= variables | {"__rate_interval"}, (panel["title"], used - variables)


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian: apt-get install prometheus)")
    rules = [
        {"record": f"dashboard:query_{index}:check", "expr": substituted(expr)}
        for index, (_, _, expr) in enumerate(queries())
    ]
    assert all("$" not in rule["expr"] for rule in rules)
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_every_query_names_series_and_labels_the_mesh_exposes() -> None:
    names, labels = exposed()
    unknown: list[tuple[str, str, str]] = []
    for board, title, expr in queries():
        code = STRING.sub('""', expr)
        used_labels = set(MATCHER.findall(code))
        for group in GROUPING.findall(code):
            used_labels.update(label.strip() for label in group.split(",") if label.strip())
        used_labels -= {"le"} | TARGET_LABELS
        bare = MATCHER.sub("", GROUPING.sub("", code))  # label names out: metric names stay
        missing = [n for n in METRIC.findall(bare) if n not in names]
        missing += [f"label {label}" for label in sorted(used_labels - labels)]
        unknown.extend((board, title, item) for item in missing)
    assert not unknown


def test_the_dashboards_cover_the_kept_series() -> None:
    """Every series the dashboards' users asked for in OSM's (and ours: latency) is used."""
    used = " ".join(expr for _, _, expr in queries())
    for name in (
        "envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_rq_xx",
        "envoy_cluster_upstream_rq_time_bucket", "envoy_cluster_upstream_cx_active",
        "envoy_cluster_upstream_cx_tx_bytes_total", "envoy_cluster_upstream_cx_rx_bytes_total",
        "envoy_server_live", "osm_proxy_connect_count", "osm_proxy_config_update_time_bucket",
        "osm_cert_issued_count",
    ):  # fmt: skip
        assert name in used, name
