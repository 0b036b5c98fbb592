"""Small proto pieces every builder uses: addresses, ADS config sources, matchers,
TLS contexts and RBAC principals.

The one idea: one function per recurring shape, so the same intent is always spelled
the same way on the wire (and the Python sidecar has one shape to understand).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from osm.base.identity import Identity
from osm.catalog.policy import RequestMatch, TlsSettings
from osm.xds import names
from osm.xds.resources import pack

_TLS_VERSIONS = {
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSv1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSv1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSv1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSv1_3": common_pb2.TlsParameters.TLSv1_3,
}


CONNECT_TIMEOUT = 1.0
"""Seconds a cluster waits for a connection (OSM's ``clusterConnectTimeout``), unless an
UpstreamTrafficSetting says otherwise."""


def socket_address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(
            address=ip, port_value=port, protocol=address_pb2.SocketAddress.TCP
        )
    )


def single_endpoint(
    cluster_name: str, address: str, port: int
) -> endpoint_pb2.ClusterLoadAssignment:
    """A load assignment of one endpoint, ``address`` (an IP, or a DNS name for a DNS
    cluster) and ``port``: what STATIC and DNS clusters carry inline."""
    endpoint = endpoint_components_pb2.Endpoint(address=socket_address(address, port))
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[endpoint_components_pb2.LbEndpoint(endpoint=endpoint)]
            )
        ],
    )


def ads() -> config_source_pb2.ConfigSource:
    """Fetch over the aggregated (ADS) stream, xDS v3."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


def uint32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def regex(pattern: str) -> regex_pb2.RegexMatcher:
    """A RE2 regex; Envoy requires it to match the whole value."""
    return regex_pb2.RegexMatcher(regex=pattern)


def exact(value: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(exact=value)


def header_regex(name: str, pattern: str) -> route_components_pb2.HeaderMatcher:
    return route_components_pb2.HeaderMatcher(
        name=name, string_match=string_pb2.StringMatcher(safe_regex=regex(pattern))
    )


def methods_regex(methods: Sequence[str]) -> str:
    return "|".join(methods)


def route_match(match: RequestMatch | None) -> route_components_pb2.RouteMatch:
    """A route match for ``match``; None or an empty match is the prefix ``/``."""
    result = route_components_pb2.RouteMatch()
    if match is None or not match.path_regex:
        result.prefix = "/"
    else:
        result.safe_regex.CopyFrom(regex(match.path_regex))
    if match is not None:
        if match.methods:
            result.headers.append(header_regex(":method", methods_regex(match.methods)))
        for name, pattern in match.headers:
            result.headers.append(header_regex(name, pattern))
    return result


def permission(match: RequestMatch) -> rbac_pb2.Permission:
    """An RBAC permission equivalent to ``match`` (``any`` for an empty match)."""
    rules: list[rbac_pb2.Permission] = []
    if match.path_regex:
        rules.append(
            rbac_pb2.Permission(
                url_path=path_pb2.PathMatcher(
                    path=string_pb2.StringMatcher(safe_regex=regex(match.path_regex))
                )
            )
        )
    if match.methods:
        rules.append(
            rbac_pb2.Permission(header=header_regex(":method", methods_regex(match.methods)))
        )
    for name, pattern in match.headers:
        rules.append(rbac_pb2.Permission(header=header_regex(name, pattern)))
    if not rules:
        return rbac_pb2.Permission(any=True)
    if len(rules) == 1:
        return rules[0]
    return rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=rules))


def principals(sources: Iterable[Identity] | None, trust_domain: str) -> list[rbac_pb2.Principal]:
    """Authenticated peers: the sources' SPIFFE ids, or any authenticated peer (None)."""
    if sources is None:
        return [rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated())]
    return [
        rbac_pb2.Principal(
            authenticated=rbac_pb2.Principal.Authenticated(
                principal_name=exact(source.spiffe_id(trust_domain))
            )
        )
        for source in sources
    ]


def sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads())


def tls_params(tls: TlsSettings) -> common_pb2.TlsParameters:
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=_TLS_VERSIONS.get(tls.min_version, 0),
        tls_maximum_protocol_version=_TLS_VERSIONS.get(tls.max_version, 0),
    )


def transport_socket(
    context: tls_pb2.UpstreamTlsContext | tls_pb2.DownstreamTlsContext,
) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=names.TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def san_matchers(
    identities: Iterable[Identity], trust_domain: str
) -> list[common_pb2.SubjectAltNameMatcher]:
    return [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI,
            matcher=exact(identity.spiffe_id(trust_domain)),
        )
        for identity in identities
    ]
