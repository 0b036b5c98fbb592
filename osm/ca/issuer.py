"""The issuer interface and the values that cross it: requests, issued leaves, trust bundles.

One idea: an `Issuer` signs `LeafRequest`s and publishes a `TrustBundle`; the request says what
a certificate is for (a workload, the xDS server, a proxy's bootstrap), so the built-in CA,
and later Vault or cert-manager, only have to sign names they are given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509

from osm.base.identity import TRUST_DOMAIN, Identity, validate_trust_domain
from osm.ca.errors import CAError

DEFAULT_LEAF_VALIDITY = timedelta(hours=24)
"""Workload leaves live 24h by default (OSM's `serviceCertValidityDuration`)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class LeafRequest:
    """What a leaf certificate must say. Use the constructors below rather than the fields.

    Every leaf gets EKU serverAuth+clientAuth whatever the request, because mesh peers are
    both servers and clients of each other.
    """

    common_name: str
    validity: timedelta
    dns_names: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ip_addresses: tuple[IPAddress, ...] = ()
    identity: Identity | None = None

    def __post_init__(self) -> None:
        if self.validity <= timedelta(0):
            raise CAError(f"certificate validity must be positive, got {self.validity}")
        for name in (self.common_name, *self.dns_names, *self.uris):
            if not name or not name.isascii() or not name.isprintable():
                raise CAError(f"invalid certificate name {name!r}: expected printable ASCII")

    @classmethod
    def workload(
        cls,
        identity: Identity,
        validity: timedelta = DEFAULT_LEAF_VALIDITY,
        trust_domain: str = TRUST_DOMAIN,
    ) -> LeafRequest:
        """A workload leaf: URI SAN = SPIFFE ID, DNS SAN = CN = ``<sa>.<ns>.<trust-domain>``."""
        validate_trust_domain(trust_domain)
        dns_name = identity.dns_name(trust_domain)
        return cls(
            common_name=dns_name,
            validity=validity,
            dns_names=(dns_name,),
            uris=(identity.spiffe_id(trust_domain),),
            identity=identity,
        )

    @classmethod
    def xds_server(
        cls,
        dns_names: tuple[str, ...],
        ip_addresses: tuple[IPAddress, ...] = (),
        validity: timedelta = timedelta(days=365),
    ) -> LeafRequest:
        """The xDS server's serving leaf, e.g. ``("osm-controller.osm-system.svc", "localhost")``
        and ``(IPv4Address("127.0.0.1"),)``; CN is the first DNS name."""
        if not dns_names:
            raise CAError("an xDS server certificate needs at least one DNS name")
        return cls(dns_names[0], validity, dns_names=dns_names, ip_addresses=ip_addresses)

    @classmethod
    def bootstrap(
        cls,
        identity: Identity,
        proxy_uuid: uuid.UUID,
        validity: timedelta = timedelta(days=365),
        trust_domain: str = TRUST_DOMAIN,
    ) -> LeafRequest:
        """A proxy's bootstrap client leaf: OSM's CN
        ``<proxy-uuid>.sidecar.<sa>.<ns>.<trust-domain>`` plus the identity's SPIFFE URI SAN,
        by which the xDS server authenticates the proxy.

        Like OSM's, this CN is usually longer than X.520's 64-character bound: OpenSSL and
        Envoy accept it, cryptography warns when `.subject` is read. Authenticate proxies by
        the URI SAN, never by the CN."""
        validate_trust_domain(trust_domain)
        common_name = f"{proxy_uuid}.sidecar.{identity.dns_name(trust_domain)}"
        return cls(
            common_name=common_name,
            validity=validity,
            uris=(identity.spiffe_id(trust_domain),),
            identity=identity,
        )


@dataclass(frozen=True)
class IssuedCertificate:
    """A signed leaf with its private key and the trust bundle current when it was issued.

    PEM values are bytes. `root_fingerprint` is the SHA-256 hex fingerprint of the root that
    signed it. The key is left out of `repr` so it does not end up in logs.
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    trust_bundle_pem: bytes
    serial: int
    not_before: datetime
    not_after: datetime
    identity: Identity | None
    root_fingerprint: str

    def certificate(self) -> x509.Certificate:
        """The leaf parsed by `cryptography` (parsed on each call; not cached)."""
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class TrustBundle:
    """The PEM of every trusted root, and an opaque version that changes when the set does.

    Compare versions only for equality.
    """

    pem: bytes
    fingerprints: tuple[str, ...]

    @property
    def version(self) -> str:
        return hashlib.sha256(self.pem).hexdigest()[:16]


class Issuer(Protocol):
    """Signs leaves. Implementations are not thread-safe: call them from one thread or task.

    Time is always passed in (`now`, timezone-aware UTC) so that callers with a fake clock
    control every validity period.
    """

    def issue(self, request: LeafRequest, now: datetime) -> IssuedCertificate:
        """Sign a fresh key pair for `request`, valid from shortly before `now`."""
        ...

    def trust_bundle(self) -> TrustBundle:
        """The roots peers must trust now; the returned value is immutable."""
        ...

    def signing_root_fingerprint(self) -> str:
        """Fingerprint of the root that `issue` signs with now."""
        ...

    def refresh(self, now: datetime) -> bool:
        """Pick up external changes and apply due root transitions; True if the bundle or
        the signing root changed."""
        ...
