"""The Grafana dashboards ``osm install`` ships (Kubernetes mode): OSM's dashboards'
equivalents, as one ConfigMap a Grafana dashboard provider (or sidecar) loads.

The one idea: the dashboards are JSON files of this package (``dashboards/*.json``, each a
whole Grafana dashboard with a ``datasource`` variable for the Prometheus to read), and
this module only packs them. Their queries name the series the mesh exposes: the sidecars'
Envoy stats (`osm.proxy.stats`, either data plane) with the labels the mesh's Prometheus adds
(``source_namespace``, ``source_workload_name``, ...), and the controller's OSM metrics;
tests/unit/install/test_grafana.py checks each query with promtool and against those names.
Pure: reading the package's own files is its only input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from osm.base import wellknown

DASHBOARDS_PACKAGE = "osm.install"
DASHBOARDS_DIRECTORY = "dashboards"


def dashboards() -> dict[str, dict[str, Any]]:
    """{file name: dashboard} of every shipped dashboard, by file name."""
    directory = resources.files(DASHBOARDS_PACKAGE).joinpath(DASHBOARDS_DIRECTORY)
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(directory.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".json"):
            found[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
    return found


def dashboards_configmap(namespace: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ConfigMap ``osm-grafana-dashboards`` in `namespace`: one key per dashboard file,
    its value the dashboard's JSON text. Labelled ``grafana_dashboard: "1"``, which Grafana's
    dashboard sidecar (its Helm chart's) looks for, beside `labels`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": wellknown.GRAFANA_DASHBOARDS_CONFIG_NAME,
            "namespace": namespace,
            "labels": {
                wellknown.APP_NAME_LABEL: wellknown.APP_NAME,
                **(labels or {}),
                "grafana_dashboard": "1",
            },
        },
        "data": {
            name: json.dumps(board, indent=2, sort_keys=True) + "\n"
            for name, board in dashboards().items()
        },
    }
