"""OSM's well-known values: ports, the proxy's UID, annotation and label names, xDS types.

One idea: a value that two processes must agree on (the port a sidecar listens on and the
iptables rule that sends traffic there, the annotation the runtime writes and the catalog
reads) is a constant here, and nowhere else. OSM's names come from its
``pkg/constants``; ours carry the ``osm-py.io/`` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# ---------------------------------------------------------------------------------------------
# Ports and users (OSM's pkg/constants; DESIGN.md "ports (OSM's)")

PROXY_UID: Final = 1500
LOCAL_MODE_ANNOTATION: Final = "osm-py.io/local-mode"
"""On local mode's ``osm-system`` (``osm up``): its control plane is built into the API
server's process, so ``osm install`` refuses to install another there."""
INJECTOR_SERVICE: Final = "osm-injector"
VALIDATOR_SERVICE: Final = "osm-validator"
"""The Services of the webhooks (Kubernetes mode): the injector's pods on
`INJECTOR_WEBHOOK_PORT`, the controller's on `VALIDATING_WEBHOOK_PORT`."""
INJECTOR_WEBHOOK_PATH: Final = "/mutate-pod-creation"
VALIDATING_WEBHOOK_PATH: Final = "/validate"
MUTATING_CONFIGURATION_PREFIX: Final = "osm-webhook-"
VALIDATING_CONFIGURATION_PREFIX: Final = "osm-validator-mesh-"
"""OSM's webhook configurations are these prefixes and the mesh's name."""
CA_BUNDLE_SECRET_NAME: Final = "osm-ca-bundle"
"""OSM's Secret holding the mesh root in Kubernetes mode (``ca.crt``, ``private.key``)."""
CONTROL_PLANE_UID: Final = 65532
"""The controller's and the injector's user and group (distroless' ``nonroot``, as OSM's
images run): their images' USER and their pods' runAsUser."""
"""The UID sidecars run as; the interception rules let its traffic through unproxied."""
PROXY_ADMIN_PORT: Final = 15000
PROXY_OUTBOUND_PORT: Final = 15001
PROXY_INBOUND_PORT: Final = 15003
PROXY_PROMETHEUS_PORT: Final = 15010
LIVENESS_PROBE_PORT: Final = 15901
READINESS_PROBE_PORT: Final = 15902
STARTUP_PROBE_PORT: Final = 15903
HEALTHCHECK_PORT: Final = 15904
XDS_PORT: Final = 15128
"""The controller's ADS server."""
API_PORT: Final = 6443
"""The Kubernetes API server in local mode (HTTPS, client certificates): kube-apiserver's
secure port."""
API_SERVICE_PORT: Final = 443
"""The port of the API's ``kubernetes`` Service, which in-cluster clients dial
(``KUBERNETES_SERVICE_PORT``); local mode's runtime relays it to `API_PORT`."""
CONTROLLER_HTTP_PORT: Final = 9091
"""The controller's metrics, health and debug endpoints (OSM's osm-controller :9091)."""
INJECTOR_WEBHOOK_PORT: Final = 9090
PROMETHEUS_PORT: Final = 9090
"""The Prometheus container's listening port (``--web.listen-address``)."""
PROMETHEUS_SERVICE_PORT: Final = 7070
"""The port of the ``osm-prometheus`` Service (OSM's chart), to `PROMETHEUS_PORT`."""
PROMETHEUS_SD_PORT: Final = 9095
"""Local mode: the pod discovery beside Prometheus (`osm.runtime.prometheus_sd`), on the
Prometheus pod's loopback; Debian's Prometheus has no Kubernetes discovery of its own."""
ZIPKIN_PORT: Final = 9411
"""The trace store's (and Jaeger's or Zipkin's) Zipkin API port: MeshConfig
``observability.tracing.port``'s default."""
DASHBOARD_PORT: Final = 3000
"""``osm dashboard``'s local port (OSM's, where it port-forwards Grafana)."""
VALIDATING_WEBHOOK_PORT: Final = 9093

LOCALHOST: Final = "127.0.0.1"

# ---------------------------------------------------------------------------------------------
# The control plane's names (OSM's chart defaults)

CONTROL_PLANE_NAMESPACE: Final = "osm-system"
"""Where the control plane runs and its MeshConfig lives (``osm install --osm-namespace``)."""
MESH_CONFIG_NAME: Final = "osm-mesh-config"
"""The one MeshConfig the mesh reads."""
CONTROLLER_SERVICE: Final = "osm-controller"
XDS_SERVER_NAME: Final = f"{CONTROLLER_SERVICE}.{CONTROL_PLANE_NAMESPACE}.svc"
"""The name proxies check the ADS server's certificate for (SNI and SAN)."""
XDS_SERVER_NAMES: Final = (XDS_SERVER_NAME, CONTROLLER_SERVICE, "localhost")
"""The DNS names of the ADS server's serving certificate."""
PROMETHEUS_SERVICE: Final = "osm-prometheus"
PROMETHEUS_CONFIG_NAME: Final = "osm-prometheus-server-conf"
"""OSM's chart: the Prometheus Deployment and Service, and the ConfigMap of its
``prometheus.yml``."""
TRACING_SERVICE: Final = "jaeger"
"""The Service of the mesh's trace collector in the control plane's namespace: OSM's
``deployJaeger`` Service, whose FQDN is the default ``observability.tracing.address``;
local mode's trace store (`osm.tracing`) is served under this name."""
ZIPKIN_SPANS_PATH: Final = "/api/v2/spans"
"""Where Zipkin v2 spans are POSTed (``observability.tracing.endpoint``'s default)."""
GRAFANA_DASHBOARDS_CONFIG_NAME: Final = "osm-grafana-dashboards"
"""The ConfigMap of the mesh's Grafana dashboards (``osm install``)."""

# ---------------------------------------------------------------------------------------------
# Namespace and pod annotations and labels

SIDECAR_INJECTION_ANNOTATION: Final = "openservicemesh.io/sidecar-injection"
"""``enabled``/``disabled`` on a Namespace or Pod: OSM's switch for injection."""
MONITORED_BY_LABEL: Final = "openservicemesh.io/monitored-by"
"""Namespace label naming the mesh that watches it."""
OUTBOUND_PORT_EXCLUSION_ANNOTATION: Final = "openservicemesh.io/outbound-port-exclusion-list"
INBOUND_PORT_EXCLUSION_ANNOTATION: Final = "openservicemesh.io/inbound-port-exclusion-list"
OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION: Final = (
    "openservicemesh.io/outbound-ip-range-exclusion-list"
)
OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION: Final = (
    "openservicemesh.io/outbound-ip-range-inclusion-list"
)

PROXY_KIND_ANNOTATION: Final = "osm-py.io/proxy-kind"
"""Pod annotation naming the proxy kind (`osm.base.identity.ProxyKind`): ``sidecar``
(default) or ``grpc`` (a proxyless gRPC client that reads xDS itself). Ours, not OSM's."""
DATA_PLANE_ANNOTATION: Final = "osm-py.io/sidecar"
"""Pod annotation naming the data plane of a sidecar proxy (`osm.base.identity.DataPlane`):
``envoy`` (default, what Kubernetes injection runs) or ``python`` (our Python sidecar).
Written by whoever injects the sidecar (the local runtime marks every pod it runs with
``python``), as OSM's webhook marks what it injected. A user may set it on a Namespace or
a Pod (the pod's wins) to ask `osm.injector` for the Python sidecar. Ours, not OSM's."""

METRICS_ANNOTATION: Final = "openservicemesh.io/metrics"
"""``enabled``/``disabled`` on a Namespace: injected pods get the Prometheus annotations."""
IGNORE_LABEL: Final = "openservicemesh.io/ignore"
"""Namespace label (any value): OSM's webhook never sees the namespace's pods."""
CONTROL_PLANE_LABEL: Final = "control-plane"
"""Namespace label (any value) that OSM's webhook namespaceSelector excludes."""
KUBE_SYSTEM_NAMESPACES: Final = ("kube-system", "kube-public")
"""Namespaces whose pods are never injected."""
PROXY_UUID_LABEL: Final = "osm-proxy-uuid"
"""Pod label: the injected proxy's UUID, the first part of its node id and certificate CN."""
PROMETHEUS_SCRAPE_ANNOTATION: Final = "prometheus.io/scrape"
PROMETHEUS_PORT_ANNOTATION: Final = "prometheus.io/port"
PROMETHEUS_PATH_ANNOTATION: Final = "prometheus.io/path"
PROMETHEUS_SCRAPE_PATH: Final = "/stats/prometheus"

# ---------------------------------------------------------------------------------------------
# What OSM's injector adds to a pod (pkg/injector, pkg/constants)

INIT_CONTAINER_NAME: Final = "osm-init"
ENVOY_CONTAINER_NAME: Final = "envoy"
PYTHON_SIDECAR_CONTAINER_NAME: Final = "osm-sidecar"
"""The container of the Python sidecar (ours, not OSM's)."""
HEALTHCHECK_CONTAINER_NAME: Final = "osm-healthcheck"
"""The container that answers rewritten tcpSocket probes on `HEALTHCHECK_PORT`."""
BOOTSTRAP_SECRET_PREFIX: Final = "envoy-bootstrap-config-"
"""The bootstrap Secret is ``envoy-bootstrap-config-<proxy-uuid>`` (for both data planes)."""
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
"""The label kube-apiserver puts on every Namespace, its value the Namespace's name."""
APP_NAME_LABEL: Final = "app.kubernetes.io/name"
APP_INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
APP_NAME: Final = "openservicemesh.io"
"""OSM labels what its control plane creates (such as bootstrap Secrets) with
``app.kubernetes.io/name=openservicemesh.io`` and ``app.kubernetes.io/instance=<mesh>``."""
BOOTSTRAP_VOLUME_NAME: Final = "envoy-bootstrap-config-volume"
BOOTSTRAP_MOUNT_PATH: Final = "/etc/envoy"
XDS_CLUSTER_NAME: Final = CONTROLLER_SERVICE
"""The Envoy bootstrap's static cluster that reaches the controller's ADS server."""
PROXY_ADMIN_PORT_NAME: Final = "proxy-admin"
PROXY_INBOUND_PORT_NAME: Final = "proxy-inbound"
PROXY_PROMETHEUS_PORT_NAME: Final = "proxy-metrics"
LIVENESS_PROBE_PORT_NAME: Final = "liveness-port"
READINESS_PROBE_PORT_NAME: Final = "readiness-port"
STARTUP_PROBE_PORT_NAME: Final = "startup-port"
LIVENESS_PROBE_PATH: Final = "/osm-liveness-probe"
READINESS_PROBE_PATH: Final = "/osm-readiness-probe"
STARTUP_PROBE_PATH: Final = "/osm-startup-probe"
HEALTHCHECK_PATH: Final = "/osm-healthcheck"
"""Where rewritten tcpSocket probes go, on `HEALTHCHECK_PORT`."""
ORIGINAL_TCP_PORT_HEADER: Final = "Original-Tcp-Port"
"""The header of a rewritten tcpSocket probe that names the port it checked."""

LOCAL_ANNOTATION_PREFIX: Final = "local.openservicemesh.io/"
"""Annotations the local runtime writes on the Pods it runs."""
NETNS_ANNOTATION: Final = LOCAL_ANNOTATION_PREFIX + "netns"
"""The network namespace a local pod runs in (read by `osm exec` and `osm proxy get`)."""

# ---------------------------------------------------------------------------------------------
# xDS resource types

TYPE_PREFIX: Final = "type.googleapis.com/"
LISTENER_TYPE: Final = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE_TYPE: Final = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE: Final = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE: Final = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET_TYPE: Final = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"


def message_name(type_url: str) -> str:
    """``"Cluster"`` for the cluster type URL: the message's name without its package."""
    return type_url.rpartition(".")[2]


PUSH_ORDER: Final[tuple[str, ...]] = (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
)
"""Every type a snapshot holds, in the order a server pushes them when several change at
once (the xDS "eventual consistency" rule: CDS before EDS, CDS/EDS before LDS, LDS before
RDS; secrets last, since Envoy warms clusters and listeners until their secrets arrive)."""

SHORT_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        CLUSTER_TYPE: "CDS",
        ENDPOINT_TYPE: "EDS",
        LISTENER_TYPE: "LDS",
        ROUTE_TYPE: "RDS",
        SECRET_TYPE: "SDS",
    }
)
"""Each type's short name, as Envoy's logs and stats say it."""

TYPES_BY_SHORT_NAME: Final[Mapping[str, str]] = MappingProxyType(
    {short.lower(): type_url for type_url, short in SHORT_NAMES.items()}
)
"""``"cds"`` -> the cluster type URL, and so on (what the CLI accepts)."""

TYPES_BY_MESSAGE: Final[Mapping[str, str]] = MappingProxyType(
    {message_name(type_url): type_url for type_url in PUSH_ORDER}
)
"""``"Cluster"`` -> the cluster type URL, and so on (a message's short name)."""


def short_name(type_url: str) -> str:
    """``"CDS"`` for the cluster type URL and so on; unknown type URLs are returned as is."""
    return SHORT_NAMES.get(type_url, type_url)
