"""SDS: the secrets a sidecar's listeners and clusters name, from plain PEM values.

``service-cert`` holds the proxy's own certificate chain and key (per identity);
``root-cert-for-mtls-inbound`` and ``root-cert-for-mtls-outbound:<ns>/<svc>`` hold
the mesh's trust bundle (`Settings.trust_bundle`; SAN matching is in the clusters, not
here). Certificates come from a `CredentialSource` (a function of the identity),
never from a CA object.

Without a credential source (offline tools: `Settings.placeholders`) the secrets hold
placeholder text that says so (`PLACEHOLDER`): the references stay complete and
checkable, and nobody can mistake them for keys. Proxyless gRPC clients get no
secrets (they use certificate provider instances).

Same shape as every builder module: `outbound_resources` and `inbound_resources`
take exactly the policy values (and `Settings`) they read, and the context's caches;
`inbound_resources` also takes the credential source.
"""

from __future__ import annotations

import functools

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from osm.base.identity import Identity, ProxyKind
from osm.base.wellknown import SECRET_TYPE
from osm.catalog.policy import OutboundPort
from osm.xds import names
from osm.xds.context import (
    Context,
    Credentials,
    CredentialSource,
    MissingCredentials,
    Settings,
)
from osm.xds.resources import Built, build

PLACEHOLDER = b"PLACEHOLDER: offline dump, no certificate issued\n"
PLACEHOLDER_CREDENTIALS = Credentials(PLACEHOLDER, PLACEHOLDER)


def _trust_bundle(settings: Settings) -> bytes:
    """The mesh's trust bundle (the same for every identity)."""
    if settings.placeholders:
        return PLACEHOLDER
    return settings.trust_bundle


def outbound_resources(
    ports: tuple[OutboundPort, ...], kind: ProxyKind, settings: Settings, context: Context
) -> list[Built]:
    """``root-cert-for-mtls-outbound:<ns>/<svc>`` per upstream service (reads the
    ports' upstreams only), sorted by name."""
    if kind == ProxyKind.GRPC:
        return []
    bundle = _trust_bundle(settings)
    result: dict[str, Built] = {}
    for port in ports:
        for upstream in port.upstreams:
            name = names.root_cert_outbound(upstream.service)
            if name not in result:
                result[name] = context.memo.get(
                    ("sds-root", name, bundle), functools.partial(_built_root, name, bundle)
                )
    return [result[name] for name in sorted(result)]


def inbound_resources(
    kind: ProxyKind,
    identity: Identity,
    source: CredentialSource | None,
    settings: Settings,
    context: Context,
) -> list[Built]:
    """``service-cert`` (the identity's, from ``source``) and
    ``root-cert-for-mtls-inbound``.

    Raises MissingCredentials when the source has none for the identity.
    """
    if kind == ProxyKind.GRPC:
        return []
    if settings.placeholders:
        credentials = PLACEHOLDER_CREDENTIALS
    else:
        found = None if source is None else source(identity)
        if found is None:
            raise MissingCredentials(f"no certificate issued yet for identity {identity}")
        credentials = found
    bundle = _trust_bundle(settings)
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
