"""A two-sidecar mesh on loopback for the proxy's integration tests.

client -> outbound sidecar (plain HTTP, original destination injected) -> mTLS ->
inbound sidecar (TLS with client cert, HTTP RBAC) -> local app (aiohttp). Certificates
are made with `cryptography`; resources are Envoy protos built by hand, shaped like
those `osm.xds` emits.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from osm.base import wellknown

TD = "cluster.local"
BUYER = f"spiffe://{TD}/ns/bookbuyer/sa/bookbuyer"
STORE = f"spiffe://{TD}/ns/bookstore/sa/bookstore"
SNI = "bookstore.bookstore.svc.cluster.local"
SERVICE_IP = "10.0.0.5"
CLUSTER = "bookstore/bookstore|80"
CLUSTER_V2 = "bookstore/bookstore-v2|80"


# -- certificates ---------------------------------------------------------------------------
@dataclass
class Pki:
    ca_pem: bytes
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @classmethod
    def create(cls) -> Pki:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "osm-ca")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert.public_bytes(serialization.Encoding.PEM), key, cert)

    def leaf(self, spiffe: str, dns: str) -> tuple[bytes, bytes, int]:
        """-> (certificate PEM, key PEM, serial)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(spiffe), x509.DNSName(dns)]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem, serial


# -- proto pieces ------------------------------------------------------------------------------
def pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads())


def address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
    )


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


def cert_secret(name: str, chain: bytes, key: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=chain),
            private_key=base_pb2.DataSource(inline_bytes=key),
        ),
    )


def root_secret(name: str, ca: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=ca)
        ),
    )


def hcm(
    stat_prefix: str, rds: str, rbac: bool = False, websocket: bool = False
) -> hcm_pb2.HttpConnectionManager:
    filters = []
    if rbac:
        filters.append(
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.rbac", typed_config=pack(http_rbac_pb2.RBAC())
            )
        )
    filters.append(
        hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))
    )
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(config_source=ads(), route_config_name=rds),
        http_filters=filters,
    )
    if websocket:
        manager.upgrade_configs.add(upgrade_type="websocket")
    return manager


def http_listener(
    name: str, port: int, manager: hcm_pb2.HttpConnectionManager, ip: str = "127.0.0.1"
) -> listener_pb2.Listener:
    """A plain listener on ``ip:port`` (0: any) with one chain: the HTTP connection manager."""
    return listener_pb2.Listener(
        name=name,
        address=address(ip, port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=pack(manager),
                    )
                ]
            )
        ],
    )


def static_cluster(name: str, ip: str, port: int) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(1),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        load_assignment=load_assignment(name, [(ip, port)]),
    )


def load_assignment(
    name: str, endpoints: list[tuple[str, int]]
) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    locality = assignment.endpoints.add(load_balancing_weight=wrappers_pb2.UInt32Value(value=1))
    for ip, port in endpoints:
        locality.lb_endpoints.add(
            endpoint=endpoint_components_pb2.Endpoint(address=address(ip, port))
        )
    return assignment


def upstream_cluster(name: str, sni: str, identities: list[str]) -> cluster_pb2.Cluster:
    tls = tls_pb2.UpstreamTlsContext(
        sni=sni,
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=["osm"],
            tls_certificate_sds_secret_configs=[sds("service-cert:bookbuyer/bookbuyer")],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        common_pb2.SubjectAltNameMatcher(
                            san_type=common_pb2.SubjectAltNameMatcher.URI,
                            matcher=string_pb2.StringMatcher(exact=identity),
                        )
                        for identity in identities
                    ]
                ),
                validation_context_sds_secret_config=sds(
                    "root-cert-for-mtls-outbound:bookstore/bookstore"
                ),
            ),
        ),
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads()),
        connect_timeout=seconds(1),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        transport_socket=base_pb2.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=pack(tls)
        ),
    )


def rbac_per_route(principals: list[str]) -> any_pb2.Any:
    rules = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    rules.policies["rule-0"].CopyFrom(
        rbac_pb2.Policy(
            permissions=[rbac_pb2.Permission(any=True)],
            principals=[
                rbac_pb2.Principal(
                    authenticated=rbac_pb2.Principal.Authenticated(
                        principal_name=string_pb2.StringMatcher(exact=principal)
                    )
                )
                for principal in principals
            ],
        )
    )
    return pack(http_rbac_pb2.RBACPerRoute(rbac=http_rbac_pb2.RBAC(rules=rules)))


def inbound_resources(
    app_port: int, cert: tuple[bytes, bytes], ca: bytes, allowed: list[str], websocket: bool = True
) -> dict[str, dict[str, object]]:
    local = "bookstore/bookstore|80|local"
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=local, timeout=seconds(0)),
    )
    route.typed_per_filter_config["envoy.filters.http.rbac"].CopyFrom(rbac_per_route(allowed))
    routes = route_pb2.RouteConfiguration(
        name=f"rds-inbound.{app_port}",
        virtual_hosts=[
            route_components_pb2.VirtualHost(name="inbound", domains=["*"], routes=[route])
        ],
    )
    downstream = tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[sds("service-cert:bookstore/bookstore")],
            validation_context_sds_secret_config=sds("root-cert-for-mtls-inbound"),
        ),
    )
    chain = listener_components_pb2.FilterChain(
        name=f"inbound_bookstore/bookstore_{app_port}_http",
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=app_port),
            transport_protocol="tls",
            server_names=[SNI],
        ),
        transport_socket=base_pb2.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=pack(downstream)
        ),
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager",
                typed_config=pack(
                    hcm("inbound_bookstore", routes.name, rbac=True, websocket=websocket)
                ),
            )
        ],
    )
    listener = listener_pb2.Listener(
        name="inbound-listener",
        address=address("0.0.0.0", 15003),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=pack(tls_inspector_pb2.TlsInspector()),
            ),
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.original_dst",
                typed_config=pack(original_dst_pb2.OriginalDst()),
            ),
        ],
        filter_chains=[chain],
    )
    return {
        wellknown.LISTENER_TYPE: {listener.name: listener},
        wellknown.ROUTE_TYPE: {routes.name: routes},
        wellknown.CLUSTER_TYPE: {local: static_cluster(local, "127.0.0.1", app_port)},
        wellknown.SECRET_TYPE: {
            "service-cert:bookstore/bookstore": cert_secret(
                "service-cert:bookstore/bookstore", *cert
            ),
            "root-cert-for-mtls-inbound": root_secret("root-cert-for-mtls-inbound", ca),
        },
    }


def outbound_resources(
    inbound_port: int,
    cert: tuple[bytes, bytes],
    ca: bytes,
    weights: tuple[int, int] | None = None,
    retry: route_components_pb2.RetryPolicy | None = None,
    identities: list[str] | None = None,
    tcp: bool = False,
) -> dict[str, dict[str, object]]:
    action = route_components_pb2.RouteAction(timeout=seconds(5))
    clusters = {CLUSTER: upstream_cluster(CLUSTER, SNI, identities or [STORE])}
    if weights is None:
        action.weighted_clusters.clusters.add(
            name=CLUSTER, weight=wrappers_pb2.UInt32Value(value=100)
        )
    else:
        clusters[CLUSTER_V2] = upstream_cluster(CLUSTER_V2, SNI, identities or [STORE])
        action.weighted_clusters.clusters.add(
            name=CLUSTER, weight=wrappers_pb2.UInt32Value(value=weights[0])
        )
        action.weighted_clusters.clusters.add(
            name=CLUSTER_V2, weight=wrappers_pb2.UInt32Value(value=weights[1])
        )
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(
            safe_regex=regex_pb2.RegexMatcher(regex=".*"),
        ),
        route=action,
    )
    routes = route_pb2.RouteConfiguration(
        name="rds-outbound.80",
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="outbound_virtual-host|bookstore.bookstore",
                domains=["bookstore.bookstore", "bookstore.bookstore:80", SNI, f"{SNI}:80"],
                routes=[route],
            )
        ],
    )
    if tcp:
        terminal = listener_components_pb2.Filter(
            name="envoy.filters.network.tcp_proxy",
            typed_config=pack(tcp_proxy_pb2.TcpProxy(stat_prefix="outbound_tcp", cluster=CLUSTER)),
        )
    else:
        terminal = listener_components_pb2.Filter(
            name="envoy.filters.network.http_connection_manager",
            typed_config=pack(hcm("outbound_bookstore", routes.name, websocket=True)),
        )
    chain = listener_components_pb2.FilterChain(
        name="outbound_bookstore/bookstore_80_http",
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=80),
            prefix_ranges=[
                address_pb2.CidrRange(
                    address_prefix=SERVICE_IP, prefix_len=wrappers_pb2.UInt32Value(value=32)
                )
            ],
        ),
        filters=[terminal],
    )
    listener = listener_pb2.Listener(
        name="outbound-listener",
        address=address("0.0.0.0", 15001),
        traffic_direction=base_pb2.OUTBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.original_dst",
                typed_config=pack(original_dst_pb2.OriginalDst()),
            )
        ],
        filter_chains=[chain],
    )
    assignments = {name: load_assignment(name, [("127.0.0.1", inbound_port)]) for name in clusters}
    return {
        wellknown.LISTENER_TYPE: {listener.name: listener},
        wellknown.ROUTE_TYPE: {} if tcp else {routes.name: routes},
        wellknown.CLUSTER_TYPE: dict(clusters),
        wellknown.ENDPOINT_TYPE: assignments,
        wellknown.SECRET_TYPE: {
            "service-cert:bookbuyer/bookbuyer": cert_secret(
                "service-cert:bookbuyer/bookbuyer", *cert
            ),
            "root-cert-for-mtls-outbound:bookstore/bookstore": root_secret(
                "root-cert-for-mtls-outbound:bookstore/bookstore", ca
            ),
        },
    }
