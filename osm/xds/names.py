"""Every name the mesh gives an xDS resource, port or filter, in one place.

The one idea: a proxy finds resources by name (a listener names its route
configuration, a route its clusters, a cluster its secrets), so names are made only
here and both sides of every reference call the same function.

Deviations from DESIGN.md / OSM, on purpose:

* cluster names carry the *service* port (DESIGN.md), not the target port (OSM);
* ingress route configurations are one per target port, ``rds-ingress.<targetPort>``
  (OSM has one ``rds-ingress`` whose virtual hosts are all ``*``: with two backend
  ports on a proxy, one port's routes would serve the other's);
* the proxy's own certificate is the SDS secret ``service-cert`` (no identity in the
  name): each proxy has exactly one identity, and an identity-free name lets every
  proxy share the same upstream Cluster resources (which reference that secret)
  instead of one copy per client identity. The secret's *content* differs per identity.
"""

from __future__ import annotations

from osm.base import wellknown
from osm.base.identity import Identity
from osm.catalog.ids import ServiceId

# Listeners (their ports are OSM's, `osm.base.wellknown`).
OUTBOUND_LISTENER = "outbound-listener"
INBOUND_LISTENER = "inbound-listener"
PROMETHEUS_LISTENER = "inbound-prometheus-listener"
ANY_ADDRESS = "0.0.0.0"

# Clusters.
PASSTHROUGH_CLUSTER = "passthrough-outbound"
METRICS_CLUSTER = "envoy-metrics-cluster"
TRACING_CLUSTER = "envoy-tracing-cluster"
ZIPKIN_TRACER = "envoy.tracers.zipkin"
EGRESS_FILTER_CHAIN = "outbound-egress-filter-chain"
PROMETHEUS_PATH = wellknown.PROMETHEUS_SCRAPE_PATH

# Secrets.
SERVICE_CERT = "service-cert"
ROOT_CERT_INBOUND = "root-cert-for-mtls-inbound"

# TLS.
ALPN_MESH = "osm"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"

# Filters (Envoy's well-known names).
ORIGINAL_DST = "envoy.filters.listener.original_dst"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
NETWORK_RBAC = "envoy.filters.network.rbac"
HTTP_RBAC = "envoy.filters.http.rbac"
ROUTER = "envoy.filters.http.router"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
NETWORK_LOCAL_RATE_LIMIT = "envoy.filters.network.local_ratelimit"
HTTP_LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
HTTP_LOCAL_RATE_LIMIT_STATS = "http_local_rate_limiter"
"""OSM's stat prefix of every virtual host's and route's HTTP local rate limit."""

# Certificate provider instance names for proxyless gRPC (keys of the bootstrap's
# ``certificate_providers``).
GRPC_IDENTITY_PROVIDER = "osm-identity"
GRPC_ROOT_PROVIDER = "osm-root"


def cluster(service: ServiceId, port: int) -> str:
    """``<ns>/<svc>|<port>``: the upstream cluster of a service port."""
    return f"{service.namespace}/{service.name}|{port}"


def local_cluster(service: ServiceId, port: int) -> str:
    """``<ns>/<svc>|<port>|local``: the app behind this proxy, for a service port."""
    return f"{cluster(service, port)}|local"


def outbound_route_config(port: int) -> str:
    return f"rds-outbound.{port}"


def inbound_route_config(target_port: int) -> str:
    return f"rds-inbound.{target_port}"


def ingress_route_config(target_port: int) -> str:
    return f"rds-ingress.{target_port}"


def ingress_virtual_host(target_port: int) -> str:
    return f"ingress_virtual-host|{target_port}"


def egress_route_config(port: int) -> str:
    """``rds-egress.<port>``: the HTTP hosts an Egress lets a client reach on ``port``."""
    return f"rds-egress.{port}"


def egress_virtual_host(host: str) -> str:
    return f"egress_virtual-host|{host}"


def egress_stat_prefix(protocol: str, port: int) -> str:
    """The stats prefix of an egress filter chain's terminal filter."""
    return stat_prefix(f"egress_{protocol}_{port}")


def root_cert_outbound(service: ServiceId) -> str:
    return f"root-cert-for-mtls-outbound:{service.namespace}/{service.name}"


def outbound_filter_chain(service: ServiceId, port: int, protocol: str) -> str:
    return f"outbound_{service.namespace}/{service.name}_{port}_{protocol}"


def inbound_filter_chain(service: ServiceId, target_port: int, protocol: str) -> str:
    return f"inbound_{service.namespace}/{service.name}_{target_port}_{protocol}"


def inbound_rate_limit_stats(service: ServiceId, target_port: int, protocol: str) -> str:
    """Stat prefix of a served port's limits: its filter chain's name (OSM's), made
    readable (`stat_prefix`)."""
    return stat_prefix(inbound_filter_chain(service, target_port, protocol))


def outbound_virtual_host(service: ServiceId) -> str:
    return f"outbound_virtual-host|{service.fqdn}"


def inbound_virtual_host(target_port: int) -> str:
    return f"inbound_virtual-host|{target_port}"


def hostnames(service: ServiceId, port: int, same_namespace: bool, cluster_ip: str) -> list[str]:
    """The Host values a client may use for a service port (OSM's set).

    ``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster``, ``svc.ns.svc.cluster.local``,
    each with and without ``:port``; ``svc`` and ``svc:port`` only for clients in the
    same namespace; ``<ClusterIP>:<port>`` when there is a ClusterIP.
    """
    name, namespace = service.name, service.namespace
    bases = [f"{name}.{namespace}", f"{name}.{namespace}.svc"]
    bases += [f"{name}.{namespace}.svc.cluster", service.fqdn]
    if same_namespace:
        bases.insert(0, name)
    result: list[str] = []
    for base in bases:
        result += [base, f"{base}:{port}"]
    if cluster_ip:
        result.append(f"{cluster_ip}:{port}")
    return result


def grpc_listeners(
    service: ServiceId, port: int, same_namespace: bool, only_port: bool
) -> list[str]:
    """Listener names a proxyless gRPC client asks for (``xds:///NAME`` asks for NAME).

    ``svc.ns.svc.cluster.local:port`` and ``svc.ns:port``, plus ``svc:port`` for a
    client in the same namespace; when the service has a single port, the same names
    without ``:port`` too. Every name is also a domain of the route configuration
    (`hostnames`), because gRPC matches virtual hosts against the target name.
    """
    bases = [service.fqdn, f"{service.name}.{service.namespace}"]
    if same_namespace:
        bases.append(service.name)
    names = [f"{base}:{port}" for base in bases]
    if only_port:
        names += bases
    return names


def stat_prefix(text: str) -> str:
    """A stats prefix: Envoy turns ``.`` into scopes, so keep names readable."""
    return text.replace("/", "_").replace("|", "_").replace(".", "_")


def identity_label(identity: Identity) -> str:
    return f"{identity.namespace}/{identity.service_account}"
