"""SDS: the secrets a sidecar's listeners and clusters name, from plain PEM values.

``service-cert`` holds the proxy's own certificate chain and key (per identity);
``root-cert-for-mtls-inbound`` and ``root-cert-for-mtls-outbound:<ns>/<svc>`` hold
the mesh's trust bundle (`Context.trust_bundle`; SAN matching is in the clusters, not
here). Certificates come from `Context.credentials` (a function of the identity),
never from a CA object.

Without a credential source (offline tools) the secrets hold placeholder text that
says so (`PLACEHOLDER`): the references stay complete and checkable, and nobody can
mistake them for keys. Proxyless gRPC clients get no secrets (they use certificate
provider instances).

Same shape as every builder module: `resources(policy, context)`.
"""

from __future__ import annotations

import functools

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from osm.base.identity import ProxyKind
from osm.base.wellknown import SECRET_TYPE
from osm.catalog.policy import ProxyPolicy
from osm.xds import names
from osm.xds.context import Context, Credentials, MissingCredentials
from osm.xds.resources import Built, build

PLACEHOLDER = b"PLACEHOLDER: offline dump, no certificate issued\n"
PLACEHOLDER_CREDENTIALS = Credentials(PLACEHOLDER, PLACEHOLDER)


def resources(policy: ProxyPolicy, context: Context) -> list[Built]:
    """The secrets every proxy with this policy needs.

    Raises MissingCredentials when the credential source has none for the identity.
    """
    return outbound_resources(policy, context) + inbound_resources(policy, context)


def _trust_bundle(context: Context) -> bytes:
    """The mesh's trust bundle (the same for every identity)."""
    if context.credentials is None:
        return PLACEHOLDER
    return context.trust_bundle


def outbound_resources(policy: ProxyPolicy, context: Context) -> list[Built]:
    """``root-cert-for-mtls-outbound:<ns>/<svc>`` per upstream service (reads
    ``policy.outbound`` and ``kind`` only), sorted by name."""
    if policy.kind == ProxyKind.GRPC:
        return []
    bundle = _trust_bundle(context)
    result: dict[str, Built] = {}
    for port in policy.outbound.ports:
        for upstream in port.upstreams:
            name = names.root_cert_outbound(upstream.service)
            if name not in result:
                result[name] = context.memo.get(
                    ("sds-root", name, bundle), functools.partial(_built_root, name, bundle)
                )
    return [result[name] for name in sorted(result)]


def inbound_resources(policy: ProxyPolicy, context: Context) -> list[Built]:
    """``service-cert`` (the identity's) and ``root-cert-for-mtls-inbound``."""
    if policy.kind == ProxyKind.GRPC:
        return []
    if context.credentials is None:
        credentials = PLACEHOLDER_CREDENTIALS
    else:
        found = context.credentials(policy.identity)
        if found is None:
            raise MissingCredentials(f"no certificate issued yet for identity {policy.identity}")
        credentials = found
    bundle = _trust_bundle(context)
    memo = context.memo
    return [
        memo.get(
            ("sds-root", names.ROOT_CERT_INBOUND, bundle),
            functools.partial(_built_root, names.ROOT_CERT_INBOUND, bundle),
        ),
        memo.get(
            ("sds-cert", credentials.cert_chain, credentials.private_key),
            functools.partial(_built_cert, credentials),
        ),
    ]


def service_cert(credentials: Credentials) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=names.SERVICE_CERT,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=credentials.cert_chain),
            private_key=base_pb2.DataSource(inline_bytes=credentials.private_key),
        ),
    )


def root_cert(name: str, trust_bundle: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=trust_bundle)
        ),
    )


def _built_cert(credentials: Credentials) -> Built:
    return build(SECRET_TYPE, names.SERVICE_CERT, service_cert(credentials))


def _built_root(name: str, trust_bundle: bytes) -> Built:
    return build(SECRET_TYPE, name, root_cert(name, trust_bundle))
