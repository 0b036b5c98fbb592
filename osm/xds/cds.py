"""CDS: the clusters of a proxy, built from its policy.

Upstream clusters ``<ns>/<svc>|<port>`` are EDS (over ADS), ROUND_ROBIN, with mesh
mTLS: SNI ``<svc>.<ns>.svc.cluster.local``, our certificate from SDS
``service-cert``, the peer verified against SDS ``root-cert-for-mtls-outbound:<ns>/<svc>``
and, in the cluster itself, its URI SAN matched against the SPIFFE ids of the
service's identities. They depend only on the upstream, so one Cluster object serves
every proxy. Local clusters ``<ns>/<svc>|<port>|local`` are STATIC to
127.0.0.1:targetPort; then ``passthrough-outbound`` (ORIGINAL_DST, when egress is on)
and ``envoy-metrics-cluster`` (127.0.0.1:15000).

Ports with appProtocol ``grpc`` get HTTP/2 (``typed_extension_protocol_options``), as
OSM does for Envoy; for a Python sidecar the catalog has already made them TCP ports
(`osm.base.identity.DataPlane.tunnels_grpc`), so the builders need not know which data plane
they build for.

An UpstreamTrafficSetting's connection settings (``Upstream.connection``) add circuit
breakers, a connect timeout and requests per connection to a sidecar's upstream cluster
(`osm.xds.traffic.apply_connection`); proxyless gRPC clients' clusters do not take them.

Proxyless gRPC clients get their upstream clusters only, with TLS from certificate
provider instances (`names.GRPC_IDENTITY_PROVIDER`, `names.GRPC_ROOT_PROVIDER`) or,
with ``Settings.grpc_mtls`` off, plaintext.

Same shape as every builder module: `outbound_resources` and `inbound_resources`
take exactly the policy values (and `Settings`) they read, and the context's caches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from osm.base import wellknown
from osm.base.identity import ProxyKind
from osm.base.wellknown import CLUSTER_TYPE
from osm.catalog.policy import (
    InboundPolicy,
    LocalPort,
    OutboundPort,
    TlsSettings,
    Upstream,
    is_http,
)
from osm.xds import common, names, traffic
from osm.xds import tracing as tracing_xds
from osm.xds.context import Context, Settings
from osm.xds.resources import Built, build, pack
from osm.xds.tracing import Tracing

CONNECT_TIMEOUT = common.CONNECT_TIMEOUT
Cluster = cluster_pb2.Cluster


def outbound_resources(
    ports: tuple[OutboundPort, ...],
    egress: bool,
    kind: ProxyKind,
    tls: TlsSettings,
    settings: Settings,
    context: Context,
) -> list[Built]:
    """Upstream clusters (reads the ports' upstreams only) and the passthrough, sorted
    by name."""
    memo = context.memo
    result: dict[str, Built] = {}
    grpc = kind == ProxyKind.GRPC
    trust_domain = settings.trust_domain
    for port in ports:
        for upstream in port.upstreams:
            name = names.cluster(upstream.service, upstream.port)
            if name in result:
                continue
            key = (upstream.service, upstream.port, upstream.protocol, upstream.identities)
            if grpc:
                result[name] = memo.get(
                    ("cds-grpc", key, settings.grpc_mtls, trust_domain),
                    functools.partial(
                        _built, grpc_cluster, upstream, settings.grpc_mtls, trust_domain
                    ),
                )
            else:
                result[name] = memo.get(
                    ("cds-upstream", key, upstream.connection, tls, trust_domain),
                    functools.partial(_built, upstream_cluster, upstream, tls, trust_domain),
                )
    if not grpc and egress:
        result[names.PASSTHROUGH_CLUSTER] = memo.get(
            ("cds-passthrough",), functools.partial(_built, passthrough_cluster)
        )
    return [result[name] for name in sorted(result)]


def inbound_resources(
    kind: ProxyKind, inbound: InboundPolicy, context: Context, tracing: Tracing | None = None
) -> list[Built]:
    """Local clusters, the metrics cluster and, with ``tracing``, the tracing cluster
    (sidecars only), sorted by name."""
    if kind == ProxyKind.GRPC:
        return []
    memo = context.memo
    result: dict[str, Built] = {}
    for port in inbound.ports:
        local = LocalPort(port.service, port.port, port.target_port, port.protocol)
        name = names.local_cluster(local.service, local.port)
        if name not in result:
            result[name] = memo.get(
                ("cds-local", local), functools.partial(_built, local_cluster, local)
            )
    result[names.METRICS_CLUSTER] = memo.get(
        ("cds-metrics",), functools.partial(_built, metrics_cluster)
    )
    if tracing is not None:
        result[names.TRACING_CLUSTER] = memo.get(
            ("cds-tracing", tracing), functools.partial(_built, tracing_xds.cluster, tracing)
        )
    return [result[name] for name in sorted(result)]


def _built(make: Callable[..., Any], *args: object) -> Built:
    cluster = make(*args)
    return build(CLUSTER_TYPE, cluster.name, cluster)


def _http2(cluster: cluster_pb2.Cluster) -> None:
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    cluster.typed_extension_protocol_options[names.HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))


def _eds_cluster(name: str) -> cluster_pb2.Cluster:
    return Cluster(
        name=name,
        type=Cluster.EDS,
        eds_cluster_config=Cluster.EdsClusterConfig(eds_config=common.ads()),
        connect_timeout=common.seconds(CONNECT_TIMEOUT),
        lb_policy=Cluster.ROUND_ROBIN,
    )


def upstream_tls(
    upstream: Upstream, tls: TlsSettings, trust_domain: str
) -> tls_pb2.UpstreamTlsContext:
    return tls_pb2.UpstreamTlsContext(
        sni=upstream.service.fqdn,
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_params=common.tls_params(tls),
            alpn_protocols=[names.ALPN_MESH],
            tls_certificate_sds_secret_configs=[common.sds(names.SERVICE_CERT)],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=common.san_matchers(
                        upstream.identities, trust_domain
                    )
                ),
                validation_context_sds_secret_config=common.sds(
                    names.root_cert_outbound(upstream.service)
                ),
            ),
        ),
    )


def upstream_cluster(
    upstream: Upstream, tls: TlsSettings, trust_domain: str
) -> cluster_pb2.Cluster:
    cluster = _eds_cluster(names.cluster(upstream.service, upstream.port))
    cluster.transport_socket.CopyFrom(
        common.transport_socket(upstream_tls(upstream, tls, trust_domain))
    )
    if upstream.protocol == "grpc":
        _http2(cluster)
    traffic.apply_connection(cluster, upstream.connection, is_http(upstream.protocol))
    return cluster


def grpc_cluster(upstream: Upstream, mtls: bool, trust_domain: str) -> cluster_pb2.Cluster:
    """A cluster for a proxyless gRPC client (which speaks HTTP/2 by itself)."""
    cluster = _eds_cluster(names.cluster(upstream.service, upstream.port))
    if mtls:
        # gRPC reads SAN matchers from the untyped list (gRFC A29).
        san = [common.exact(i.spiffe_id(trust_domain)) for i in upstream.identities]
        tls = tls_pb2.UpstreamTlsContext(
            sni=upstream.service.fqdn,
            common_tls_context=tls_pb2.CommonTlsContext(
                tls_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(
                    instance_name=names.GRPC_IDENTITY_PROVIDER
                ),
                validation_context=common_pb2.CertificateValidationContext(
                    ca_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(
                        instance_name=names.GRPC_ROOT_PROVIDER
                    ),
                    match_subject_alt_names=san,
                ),
            ),
        )
        cluster.transport_socket.CopyFrom(common.transport_socket(tls))
    return cluster


def _static(name: str, ip: str, port: int) -> cluster_pb2.Cluster:
    return Cluster(
        name=name,
        type=Cluster.STATIC,
        connect_timeout=common.seconds(CONNECT_TIMEOUT),
        lb_policy=Cluster.ROUND_ROBIN,
        load_assignment=common.single_endpoint(name, ip, port),
    )


def local_cluster(local: LocalPort) -> cluster_pb2.Cluster:
    """The app behind the sidecar, on loopback at the target port."""
    cluster = _static(
        names.local_cluster(local.service, local.port), wellknown.LOCALHOST, local.target_port
    )
    if local.protocol == "grpc":
        _http2(cluster)
    return cluster


def passthrough_cluster() -> cluster_pb2.Cluster:
    """Egress: connect to wherever the app was connecting (original destination)."""
    return Cluster(
        name=names.PASSTHROUGH_CLUSTER,
        type=Cluster.ORIGINAL_DST,
        connect_timeout=common.seconds(CONNECT_TIMEOUT),
        lb_policy=Cluster.CLUSTER_PROVIDED,
    )


def metrics_cluster() -> cluster_pb2.Cluster:
    return _static(names.METRICS_CLUSTER, wellknown.LOCALHOST, wellknown.PROXY_ADMIN_PORT)
