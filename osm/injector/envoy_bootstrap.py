"""The Envoy bootstrap OSM's injector writes into each pod's bootstrap Secret.

One idea: the bootstrap is built as Envoy's own `Bootstrap` proto (``xds-protos``), never
as a hand-written dict, so a misspelt field fails here rather than in Envoy, and it is
serialized to YAML (protobuf JSON names, as OSM's ``utils.ProtoToYAML``) only at the end.
What it holds (``pkg/envoy/bootstrap/config.go``, v1.2):

- the node: id ``<proxy-uuid>.sidecar.<sa>.<ns>``, cluster = the service account;
- ADS (GRPC, xDS v3, node on the first message only) for CDS and LDS;
- one static cluster, ``osm-controller``: HTTP/2 to the ADS server over mTLS, with the
  bootstrap certificate, its key and the CA bundle inline, SNI and a SAN match on the
  controller's serving name, TLS versions and ciphers from the MeshConfig;
- admin on 127.0.0.1:15000, access log to stdout;
- for each forwarded health probe, a listener on its probe port and a cluster to the
  app's original port (``envoy_config_health_probes.go``): HTTP probes are routed with
  their path rewritten back to the original, HTTPS probes are passed through as TCP.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping

import yaml
from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
    protocol_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, json_format
from google.protobuf.message import Message

from osm.base import wellknown
from osm.base.identity import NodeId
from osm.injector.probes import HealthProbes, OriginalProbe
from osm.injector.values import BootstrapCertificate, XdsServer
from osm.model.config import SidecarSettings

ANY_ADDRESS = "0.0.0.0"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
STDOUT_ACCESS_LOG = "envoy.access_loggers.stream"
HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
ROUTER = "envoy.filters.http.router"

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter when PyYAML has it (the same YAML, ten times faster: the bootstrap is
most of an injection's time), else PyYAML's own."""

_TLS_VERSIONS: Mapping[str, int] = {
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSv1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSv1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSv1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSv1_3": common_pb2.TlsParameters.TLSv1_3,
}


def build(
    *,
    node: NodeId,
    xds: XdsServer,
    certificate: BootstrapCertificate,
    sidecar: SidecarSettings,
    probes: HealthProbes,
) -> bootstrap_pb2.Bootstrap:
    """The bootstrap of the proxy `node`, which reaches `xds` with `certificate`."""
    bootstrap = bootstrap_pb2.Bootstrap(
        node=base_pb2.Node(id=str(node), cluster=node.identity.service_account),
        admin=bootstrap_pb2.Admin(
            address=_address(wellknown.LOCALHOST, wellknown.PROXY_ADMIN_PORT),
            access_log=[_stdout_access_log()],
        ),
        dynamic_resources=bootstrap_pb2.Bootstrap.DynamicResources(
            ads_config=config_source_pb2.ApiConfigSource(
                api_type=config_source_pb2.ApiConfigSource.GRPC,
                transport_api_version=config_source_pb2.V3,
                grpc_services=[
                    grpc_service_pb2.GrpcService(
                        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                            cluster_name=wellknown.XDS_CLUSTER_NAME
                        )
                    )
                ],
                set_node_on_first_message_only=True,
            ),
            cds_config=_ads(),
            lds_config=_ads(),
        ),
    )
    bootstrap.static_resources.clusters.append(_xds_cluster(xds, certificate, sidecar))
    for probe in probes.forwarded():
        bootstrap.static_resources.listeners.append(_probe_listener(probe))
        bootstrap.static_resources.clusters.append(_probe_cluster(probe))
    return bootstrap


def to_yaml(message: Message) -> str:
    """A proto as YAML with proto field names, keys sorted (OSM's ``ProtoToYAML``)."""
    document = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
    return yaml.dump(document, Dumper=_DUMPER, sort_keys=True, default_flow_style=False)


# -- the controller -------------------------------------------------------------------------
def _xds_cluster(
    xds: XdsServer, certificate: BootstrapCertificate, sidecar: SidecarSettings
) -> cluster_pb2.Cluster:
    tls = tls_pb2.UpstreamTlsContext(
        sni=xds.server_name,
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=["h2"],
            tls_params=_tls_params(sidecar),
            tls_certificates=[
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_bytes=certificate.cert_pem),
                    private_key=base_pb2.DataSource(inline_bytes=certificate.key_pem),
                )
            ],
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=certificate.ca_pem),
                match_typed_subject_alt_names=[
                    common_pb2.SubjectAltNameMatcher(
                        san_type=common_pb2.SubjectAltNameMatcher.DNS,
                        matcher=string_pb2.StringMatcher(exact=xds.server_name),
                    )
                ],
            ),
        ),
    )
    http2 = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    cluster = _static_cluster(wellknown.XDS_CLUSTER_NAME, xds.host, xds.port)
    if not _is_ip(xds.host):
        cluster.type = cluster_pb2.Cluster.LOGICAL_DNS
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(_pack(http2))
    cluster.transport_socket.CopyFrom(
        base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=_pack(tls))
    )
    return cluster


def _tls_params(sidecar: SidecarSettings) -> common_pb2.TlsParameters:
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=_TLS_VERSIONS[sidecar.tls_min_protocol_version],
        tls_maximum_protocol_version=_TLS_VERSIONS[sidecar.tls_max_protocol_version],
        cipher_suites=list(sidecar.cipher_suites),
        ecdh_curves=list(sidecar.ecdh_curves),
    )


# -- health probes ---------------------------------------------------------------------------
def probe_listener_name(probe: OriginalProbe) -> str:
    return f"{probe.kind.short}_listener"


def probe_cluster_name(probe: OriginalProbe) -> str:
    return f"{probe.kind.short}_cluster"


def _probe_cluster(probe: OriginalProbe) -> cluster_pb2.Cluster:
    return _static_cluster(probe_cluster_name(probe), wellknown.LOCALHOST, probe.port)


def _probe_listener(probe: OriginalProbe) -> listener_pb2.Listener:
    cluster = probe_cluster_name(probe)
    config: Message
    if probe.https:
        # One HTTPS probe per kind: passed through, it cannot be told apart by path.
        name = TCP_PROXY
        config = tcp_proxy_pb2.TcpProxy(stat_prefix="health_probes", cluster=cluster)
    else:
        name = HTTP_CONNECTION_MANAGER
        timeout = duration_pb2.Duration(seconds=max(probe.timeout_seconds, 1))
        route = route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix=probe.kind.path),
            route=route_components_pb2.RouteAction(
                cluster=cluster, prefix_rewrite=probe.path, timeout=timeout
            ),
        )
        config = hcm_pb2.HttpConnectionManager(
            stat_prefix="health_probes_http",
            codec_type=hcm_pb2.HttpConnectionManager.AUTO,
            route_config=route_pb2.RouteConfiguration(
                name="local_route",
                virtual_hosts=[
                    route_components_pb2.VirtualHost(
                        name="local_service", domains=["*"], routes=[route]
                    )
                ],
            ),
            http_filters=[hcm_pb2.HttpFilter(name=ROUTER, typed_config=_pack(router_pb2.Router()))],
        )
    return listener_pb2.Listener(
        name=probe_listener_name(probe),
        address=_address(ANY_ADDRESS, probe.kind.port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[listener_components_pb2.Filter(name=name, typed_config=_pack(config))]
            )
        ],
    )


# -- small pieces ----------------------------------------------------------------------------
def _static_cluster(name: str, host: str, port: int) -> cluster_pb2.Cluster:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=_address(host, port))
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )


def _address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _stdout_access_log() -> accesslog_pb2.AccessLog:
    return accesslog_pb2.AccessLog(
        name=STDOUT_ACCESS_LOG, typed_config=_pack(stream_pb2.StdoutAccessLog())
    )


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
