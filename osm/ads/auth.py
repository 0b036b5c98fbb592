"""Proxy authentication: the client certificate's identity must match the node id's.

One idea: with mTLS, a proxy proves its workload identity by the SPIFFE URI SAN of its
client certificate (``spiffe://<trust-domain>/ns/<ns>/sa/<sa>``, issued by `osm.ca`); a
stream whose node id names another namespace or service account is refused, so no proxy
can ask for another workload's configuration or secrets. Pure: the server passes in the
peer's auth context as gRPC exposes it (property name -> list of bytes values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509

from osm.base.identity import Identity, InvalidIdentity, NodeId

SPIFFE_SCHEME = "spiffe://"
_SAN = "x509_subject_alternative_name"


@dataclass(frozen=True, slots=True)
class Peer:
    """What the client certificate says: its SPIFFE URI SANs and common name."""

    spiffe_ids: tuple[str, ...]
    common_name: str

    @classmethod
    def from_auth_context(cls, auth_context: Mapping[str, Iterable[bytes]]) -> Peer:
        """Read the verified peer certificate (``x509_pem_cert``) from a gRPC auth context,
        or, without it, the ``x509_subject_alternative_name`` values. The common name comes
        from ``x509_common_name`` (not from the parsed subject: OSM-style CNs are longer
        than X.509's 64-character bound, which `cryptography` warns about)."""
        common_name = b"".join(auth_context.get("x509_common_name", ())).decode(errors="replace")
        pems = list(auth_context.get("x509_pem_cert", ()))
        if pems:
            uris = _uri_sans(pems[0])
        else:
            uris = [v.decode(errors="replace") for v in auth_context.get(_SAN, ())]
        return cls(tuple(u for u in uris if u.startswith(SPIFFE_SCHEME)), common_name)

    def identities(self, trust_domain: str) -> list[Identity]:
        """The workload identities among the SPIFFE IDs in `trust_domain`."""
        found = []
        prefix = f"{SPIFFE_SCHEME}{trust_domain}/"
        for spiffe_id in self.spiffe_ids:
            if not spiffe_id.startswith(prefix):
                continue
            parts = spiffe_id[len(prefix) :].split("/")
            if len(parts) == 4 and parts[0] == "ns" and parts[2] == "sa":
                try:
                    found.append(Identity(parts[1], parts[3]))
                except InvalidIdentity:
                    continue
        return found


def _uri_sans(pem: bytes) -> list[str]:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return []
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


class AuthenticationError(Exception):
    """The proxy's certificate does not entitle it to the node id it sent."""


def authenticate(peer: Peer, node_id: NodeId, trust_domain: str) -> Identity:
    """Return the node's identity if the certificate carries it, else raise
    `AuthenticationError` with a message naming both sides."""
    identities = peer.identities(trust_domain)
    if node_id.identity in identities:
        return node_id.identity
    presented = ", ".join(peer.spiffe_ids) or f"no SPIFFE ID (CN {peer.common_name!r})"
    raise AuthenticationError(
        f"node {node_id} claims identity {node_id.identity} but its certificate presents "
        f"{presented}; expected {node_id.identity.spiffe_id(trust_domain)}"
    )
