"""The mesh's observability stack as objects: Prometheus with OSM's scrape configuration, and
the trace store under OSM's Jaeger name.

One idea: the stack is a pure function of the control plane's namespace and one switch,
``local``, so ``osm up`` (local mode, through the API) and ``osm install`` (Kubernetes mode)
create the same Prometheus with the same ``prometheus.yml``. Contracts:

- ``prometheus.yml`` is OSM's chart (``prometheus-configmap.yaml``) where it matters to the
  mesh: the ``kubernetes-pods`` job (role pod, in-cluster configuration; keep pods annotated
  ``prometheus.io/scrape: "true"``; their ``prometheus.io/path`` and ``/port``; the target
  labels ``source_namespace``, ``source_pod_name``, ``source_service`` (pod label ``app``),
  ``source_workload_kind`` and ``source_workload_name``; OSM's kept series) with one series
  family added, `LATENCY_SERIES` (p50/p99 need it), and a job `CONTROLLER_JOB` for the
  controller's ``/metrics``. The node, cadvisor and apiserver jobs of OSM's chart are left
  out: no kubelet serves ``/metrics/cadvisor`` locally, and nothing reads them.
- ``local=True``: Debian's Prometheus has no Kubernetes discovery, so the pod job reads the
  same targets over HTTP SD from a second container of the Prometheus pod
  (`osm.runtime.prometheus_sd`, an in-cluster client of the API). The Services are headless
  (no kube-proxy: callers that no sidecar intercepts reach the pods' own IPs, which the local
  kubelet writes into hosts files) and the controller, which is not a pod there, is a static
  target at the mesh gateway's relay (``osm-controller.osm-system.svc.cluster.local:9091``).
- ``local=False``: ClusterIP Services; the controller is found as a pod (label
  ``app=osm-controller`` and the prometheus.io annotations ``osm install`` writes), and the
  ``kubernetes-pods`` job leaves it to that job, so it is scraped once; Prometheus gets its
  ServiceAccount and a ClusterRole to list and watch pods.
- Prometheus keeps its data on an emptyDir (`PROMETHEUS_RETENTION`); so does the trace store
  (``python3 -m osm.tracing --port 9411 --db ...``). Both Deployments are one replica.
- Names, ports and annotations are `osm.base.wellknown`'s; `render` returns the objects in
  apply order (ConfigMap before the Deployment that mounts it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import yaml

from osm.base import wellknown

Manifest = dict[str, Any]

PROMETHEUS: Final = wellknown.PROMETHEUS_SERVICE
TRACING: Final = wellknown.TRACING_SERVICE
CONFIG_KEY: Final = "prometheus.yml"
CONFIG_DIR: Final = "/etc/prometheus"
DATA_DIR: Final = "/prometheus"
TRACING_DATA_DIR: Final = "/var/lib/osm-tracing"
APP_LABEL: Final = "app"
PROMETHEUS_RETENTION: Final = "6h"
"""How long Prometheus keeps samples: the dashboard looks back an hour at most."""
LOCAL_SCRAPE_INTERVAL: Final = "5s"
SCRAPE_INTERVAL: Final = "10s"
"""OSM's chart's interval; local mode scrapes twice as often (a demo wants a live graph)."""
LOCAL_PROMETHEUS_BINARY: Final = "/usr/bin/prometheus"
"""Debian's ``prometheus`` package: local mode runs commands, not images."""
PROMETHEUS_IMAGE: Final = "prom/prometheus:v2.42.0"
PROMETHEUS_IMAGE_BINARY: Final = "/bin/prometheus"
CONTROLLER_JOB: Final = "osm-controller"
PODS_JOB: Final = "kubernetes-pods"
CONTROLLER_METRICS_PATH: Final = "/metrics"
DISCOVERY_CONTAINER: Final = "discovery"

OSM_KEPT_SERIES: Final = (
    "envoy_server_live",
    "envoy_cluster_health_check_.*",
    "envoy_cluster_upstream_rq_xx",
    "envoy_cluster_upstream_cx_active",
    "envoy_cluster_upstream_cx_tx_bytes_total",
    "envoy_cluster_upstream_cx_rx_bytes_total",
    "envoy_cluster_upstream_rq_total",
    "envoy_cluster_upstream_cx_destroy_remote_with_active_rq",
    "envoy_cluster_upstream_cx_connect_timeout",
    "envoy_cluster_upstream_cx_destroy_local_with_active_rq",
    "envoy_cluster_upstream_rq_pending_failure_eject",
    "envoy_cluster_upstream_rq_pending_overflow",
    "envoy_cluster_upstream_rq_timeout",
    "envoy_cluster_upstream_rq_rx_reset",
    "^osm.*",
)
"""OSM's chart's kept series of the ``kubernetes-pods`` job, in its order."""
LATENCY_SERIES: Final = "envoy_cluster_upstream_rq_time_(bucket|sum|count)"
"""Ours: the upstream request time histogram (OSM's list has no latency)."""
KEPT_SERIES_REGEX: Final = "(" + "|".join((*OSM_KEPT_SERIES, LATENCY_SERIES)) + ")"


def controller_address(namespace: str) -> str:
    """Where pods reach the controller's metrics (local: the relay at the mesh gateway)."""
    host = f"{wellknown.CONTROLLER_SERVICE}.{namespace}.svc.cluster.local"
    return f"{host}:{wellknown.CONTROLLER_HTTP_PORT}"


def service_host(name: str, namespace: str) -> str:
    """A Service's cluster DNS name (``jaeger.osm-system.svc.cluster.local``)."""
    return f"{name}.{namespace}.svc.cluster.local"


# -- prometheus.yml ------------------------------------------------------------------------
def _target_labels() -> list[Manifest]:
    """OSM's relabelings after the address: the ``source_*`` labels of a pod's series."""
    return [
        {
            "source_labels": ["__meta_kubernetes_namespace"],
            "action": "replace",
            "target_label": "source_namespace",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_name"],
            "action": "replace",
            "target_label": "source_pod_name",
        },
        {
            "regex": "(__meta_kubernetes_pod_label_app)",
            "action": "labelmap",
            "replacement": "source_service",
        },
        {
            "regex": "(__meta_kubernetes_pod_label_osm_envoy_uid"
            "|__meta_kubernetes_pod_label_pod_template_hash"
            "|__meta_kubernetes_pod_label_version)",
            "action": "drop",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_controller_kind"],
            "action": "replace",
            "target_label": "source_workload_kind",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_controller_name"],
            "action": "replace",
            "target_label": "source_workload_name",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_controller_kind"],
            "action": "replace",
            "regex": "^ReplicaSet$",
            "target_label": "source_workload_kind",
            "replacement": "Deployment",
        },
        {
            "source_labels": [
                "__meta_kubernetes_pod_controller_kind",
                "__meta_kubernetes_pod_controller_name",
            ],
            "action": "replace",
            "regex": "^ReplicaSet;(.*)-[^-]+$",
            "target_label": "source_workload_name",
        },
    ]


def _annotated_pods() -> list[Manifest]:
    """OSM's: keep pods annotated for scraping, at their annotated path and port."""
    return [
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
            "action": "keep",
            "regex": "true",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
            "action": "replace",
            "target_label": "__metrics_path__",
            "regex": "(.+)",
        },
        {
            "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
            "action": "replace",
            "regex": r"([^:]+)(?::\d+)?;(\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
    ]


def _controller_pod(namespace: str) -> list[Manifest]:
    """Relabelings that keep only the controller's pods (Kubernetes mode)."""
    return [
        {"source_labels": ["__meta_kubernetes_namespace"], "action": "keep", "regex": namespace},
        {
            "source_labels": ["__meta_kubernetes_pod_label_app"],
            "action": "keep",
            "regex": wellknown.CONTROLLER_SERVICE,
        },
    ]


def discovery_url(port: int = wellknown.PROMETHEUS_SD_PORT) -> str:
    """Local mode: the pod discovery beside Prometheus (`osm.runtime.prometheus_sd`)."""
    return f"http://{wellknown.LOCALHOST}:{port}/pods"


def pods_job(namespace: str, *, local: bool, discovery: str | None = None) -> Manifest:
    """The ``kubernetes-pods`` job: Prometheus's own pod discovery in Kubernetes mode (where
    the controller's pods are left to `controller_job`), the same targets and meta labels
    over HTTP SD in local mode, from `discovery_url` or ``discovery``."""
    sd: Manifest
    if local:
        sd = {
            "http_sd_configs": [
                {"url": discovery or discovery_url(), "refresh_interval": LOCAL_SCRAPE_INTERVAL}
            ]
        }
    else:
        sd = {"kubernetes_sd_configs": [{"role": "pod"}]}
    relabel = _annotated_pods()
    if not local:
        relabel.append(
            {
                "source_labels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_label_app"],
                "action": "drop",
                "regex": f"{namespace};{wellknown.CONTROLLER_SERVICE}",
            }
        )
    return {
        "job_name": PODS_JOB,
        **sd,
        "metric_relabel_configs": [
            {"source_labels": ["__name__"], "regex": KEPT_SERIES_REGEX, "action": "keep"}
        ],
        "relabel_configs": relabel + _target_labels(),
    }


def controller_job(namespace: str, *, local: bool) -> Manifest:
    """The controller's ``/metrics``: a static target in local mode, its pods otherwise."""
    if local:
        return {
            "job_name": CONTROLLER_JOB,
            "metrics_path": CONTROLLER_METRICS_PATH,
            "static_configs": [
                {
                    "targets": [controller_address(namespace)],
                    "labels": {
                        "source_namespace": namespace,
                        "source_service": wellknown.CONTROLLER_SERVICE,
                    },
                }
            ],
        }
    return {
        "job_name": CONTROLLER_JOB,
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
        "relabel_configs": _controller_pod(namespace) + _annotated_pods() + _target_labels(),
    }


def prometheus_config(namespace: str, *, local: bool, discovery: str | None = None) -> Manifest:
    """The ``prometheus.yml`` document (``discovery``: see `pods_job`)."""
    interval = LOCAL_SCRAPE_INTERVAL if local else SCRAPE_INTERVAL
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": "1m",
        },
        "scrape_configs": [
            pods_job(namespace, local=local, discovery=discovery),
            controller_job(namespace, local=local),
        ],
    }


def prometheus_yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, width=1000)


# -- objects -------------------------------------------------------------------------------
def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": {APP_LABEL: name, **labels}}


def _service(
    name: str, namespace: str, port: int, target: int, *, local: bool, labels: Mapping[str, str]
) -> Manifest:
    spec: Manifest = {
        "selector": {APP_LABEL: name},
        "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}],
    }
    if local:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, labels),
        "spec": spec,
    }


def _http_probe(path: str, port: int) -> Manifest:
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": 1,
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def _deployment(
    name: str,
    namespace: str,
    containers: list[Manifest],
    volumes: list[Manifest],
    *,
    labels: Mapping[str, str],
    service_account: str | None = None,
) -> Manifest:
    pod_spec: Manifest = {"containers": containers, "volumes": volumes}
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {APP_LABEL: name}},
            "template": {"metadata": {"labels": {APP_LABEL: name, **labels}}, "spec": pod_spec},
        },
    }


def prometheus_configmap(
    namespace: str, *, local: bool, labels: Mapping[str, str] | None = None
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(wellknown.PROMETHEUS_CONFIG_NAME, namespace, labels or {}),
        "data": {CONFIG_KEY: prometheus_yaml(prometheus_config(namespace, local=local))},
    }


def prometheus_command(*, local: bool) -> list[str]:
    return [
        LOCAL_PROMETHEUS_BINARY if local else PROMETHEUS_IMAGE_BINARY,
        f"--config.file={CONFIG_DIR}/{CONFIG_KEY}",
        f"--storage.tsdb.path={DATA_DIR}",
        f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION}",
        f"--web.listen-address=:{wellknown.PROMETHEUS_PORT}",
    ]


def prometheus_deployment(
    namespace: str, *, local: bool, labels: Mapping[str, str] | None = None
) -> Manifest:
    container: Manifest = {
        "name": PROMETHEUS,
        "command": prometheus_command(local=local),
        "ports": [{"name": "http", "containerPort": wellknown.PROMETHEUS_PORT, "protocol": "TCP"}],
        "readinessProbe": _http_probe("/-/ready", wellknown.PROMETHEUS_PORT),
        "livenessProbe": {
            **_http_probe("/-/healthy", wellknown.PROMETHEUS_PORT),
            "periodSeconds": 15,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
    }
    containers = [container]
    if local:
        containers.append(
            {
                "name": DISCOVERY_CONTAINER,
                "command": discovery_command(),
                "resources": {
                    "requests": {"cpu": "10m", "memory": "32Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
            }
        )
    else:
        container["image"] = PROMETHEUS_IMAGE
    volumes = [
        {"name": "config", "configMap": {"name": wellknown.PROMETHEUS_CONFIG_NAME}},
        {"name": "data", "emptyDir": {}},
    ]
    return _deployment(
        PROMETHEUS,
        namespace,
        containers,
        volumes,
        labels=labels or {},
        service_account=None if local else PROMETHEUS,
    )


def prometheus_service(
    namespace: str, *, local: bool, labels: Mapping[str, str] | None = None
) -> Manifest:
    return _service(
        PROMETHEUS,
        namespace,
        wellknown.PROMETHEUS_SERVICE_PORT,
        wellknown.PROMETHEUS_PORT,
        local=local,
        labels=labels or {},
    )


def prometheus_rbac(namespace: str, *, labels: Mapping[str, str] | None = None) -> list[Manifest]:
    """Kubernetes mode: Prometheus's ServiceAccount, and the right to list and watch pods
    (OSM's ``prometheus-rbac.yaml``, narrowed to what the two jobs discover)."""
    meta = _metadata(PROMETHEUS, namespace, labels or {})
    cluster_meta = {key: value for key, value in meta.items() if key != "namespace"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": cluster_meta,
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": cluster_meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": PROMETHEUS,
            },
            "subjects": [{"kind": "ServiceAccount", "name": PROMETHEUS, "namespace": namespace}],
        },
    ]


def discovery_command() -> list[str]:
    return [
        "python3",
        "-m",
        "osm.runtime.prometheus_sd",
        "--port",
        str(wellknown.PROMETHEUS_SD_PORT),
    ]


def tracing_command() -> list[str]:
    return [
        "python3",
        "-m",
        "osm.tracing",
        "--host",
        "0.0.0.0",
        "--port",
        str(wellknown.ZIPKIN_PORT),
        "--db",
        f"{TRACING_DATA_DIR}/spans.db",
        # About 1.1 KB a span on disk: a bound of ~110 MB on the pod's emptyDir.
        "--max-spans",
        "100000",
    ]


def tracing_deployment(
    namespace: str,
    *,
    local: bool,
    image: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Manifest:
    """The trace store; ``image`` (Kubernetes mode) must hold the project (the controller's)."""
    container: Manifest = {
        "name": TRACING,
        "command": tracing_command(),
        "ports": [{"name": "zipkin", "containerPort": wellknown.ZIPKIN_PORT, "protocol": "TCP"}],
        "readinessProbe": _http_probe("/health", wellknown.ZIPKIN_PORT),
        "volumeMounts": [{"name": "data", "mountPath": TRACING_DATA_DIR}],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
    }
    if not local and image:
        container["image"] = image
    return _deployment(
        TRACING, namespace, [container], [{"name": "data", "emptyDir": {}}], labels=labels or {}
    )


def tracing_service(
    namespace: str, *, local: bool, labels: Mapping[str, str] | None = None
) -> Manifest:
    return _service(
        TRACING,
        namespace,
        wellknown.ZIPKIN_PORT,
        wellknown.ZIPKIN_PORT,
        local=local,
        labels=labels or {},
    )


def render(
    namespace: str = wellknown.CONTROL_PLANE_NAMESPACE,
    *,
    local: bool,
    tracing_image: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """Every object of the stack, in apply order."""
    extra = dict(labels or {})
    objects: list[Manifest] = []
    if not local:
        objects += prometheus_rbac(namespace, labels=extra)
    objects += [
        prometheus_configmap(namespace, local=local, labels=extra),
        prometheus_service(namespace, local=local, labels=extra),
        prometheus_deployment(namespace, local=local, labels=extra),
        tracing_service(namespace, local=local, labels=extra),
        tracing_deployment(namespace, local=local, image=tracing_image, labels=extra),
    ]
    return objects
