"""Who a workload is, and how a proxy names itself: identities, node ids, proxy kinds.

One idea: a workload identity is a (namespace, service account) pair, validated once at
construction, from which every name is derived (SPIFFE ID, OSM's DNS name, the node id a
proxy sends), never assembled by hand. The control plane keys most of its indexes by
identities, so they order and hash by value and cache their hash.

A node id is ``<proxy-id>.<kind>.<service-account>.<namespace>``:

- `proxy-id`: the pod's UID or name; one DNS-1123 label (no dots), unique per proxy.
- `kind`: a `ProxyKind`: ``sidecar`` for a proxy (Envoy or the Python sidecar), ``grpc``
  for a proxyless gRPC client. (OSM's certificate CN is ``<uuid>.sidecar.<sa>.<ns>.<td>``;
  the trust domain is left out because the server checks it from the SPIFFE ID.)
- `service-account` may contain dots, `namespace` may not, so the id parses from both ends.

Example: ``bookbuyer-5c7d9f.sidecar.bookbuyer.bookbuyer``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

TRUST_DOMAIN = "cluster.local"
"""The default SPIFFE trust domain (DESIGN.md, "identity")."""
CLUSTER_DOMAIN = "cluster.local"
"""The DNS suffix of Services: ``<svc>.<ns>.svc.<cluster-domain>``."""

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_DNS_LABEL = re.compile(_LABEL)
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class InvalidIdentity(ValueError):
    """A namespace/service-account pair (or trust domain) that cannot name a workload
    (the caller's fault)."""


class InvalidNodeId(ValueError):
    """A node id that does not follow the format above (the remote peer's fault)."""


class ProxyKind(enum.StrEnum):
    """What reads xDS for a pod: a sidecar proxy, or the app itself (proxyless gRPC)."""

    SIDECAR = "sidecar"
    GRPC = "grpc"


class DataPlane(enum.StrEnum):
    """Which program a sidecar proxy is: real Envoy, or our Python sidecar."""

    ENVOY = "envoy"
    PYTHON = "python"

    @property
    def tunnels_grpc(self) -> bool:
        """True for the data planes that carry gRPC ports as TCP: the Python sidecar
        speaks HTTP/1.1 only, so an application's HTTP/2 passes through as bytes."""
        return self is DataPlane.PYTHON


def _check_subdomain(value: str, what: str) -> None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise InvalidIdentity(
            f"invalid {what} {value!r}: expected a DNS-1123 subdomain "
            "(lowercase letters, digits, '-' and '.', at most 253 characters)"
        )


def validate_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` if it is a DNS-1123 subdomain, else raise `InvalidIdentity`."""
    _check_subdomain(trust_domain, "trust domain")
    return trust_domain


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """A workload identity: the service account `service_account` in `namespace`.

    Construction validates both parts (namespace: DNS-1123 label; service account:
    DNS-1123 subdomain), so every `Identity` yields valid SPIFFE IDs and DNS names.
    """

    namespace: str
    service_account: str
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _DNS_LABEL.fullmatch(self.namespace):
            raise InvalidIdentity(
                f"invalid namespace {self.namespace!r}: expected a DNS-1123 label "
                "(lowercase letters, digits and '-', at most 63 characters)"
            )
        _check_subdomain(self.service_account, "service account")
        object.__setattr__(self, "_hash", hash((self.namespace, self.service_account)))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse ``"<namespace>/<service-account>"``; raise `InvalidIdentity` otherwise."""
        namespace, sep, service_account = text.partition("/")
        if not sep or "/" in service_account:
            raise InvalidIdentity(f"invalid identity {text!r}: expected NAMESPACE/SERVICEACCOUNT")
        return cls(namespace, service_account)

    def spiffe_id(self, trust_domain: str = TRUST_DOMAIN) -> str:
        """The SPIFFE ID, ``spiffe://<trust-domain>/ns/<ns>/sa/<sa>`` (the URI SAN)."""
        return f"spiffe://{trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def dns_name(self, trust_domain: str = TRUST_DOMAIN) -> str:
        """OSM's DNS name for the identity, ``<sa>.<ns>.<trust-domain>`` (DNS SAN and CN)."""
        return f"{self.service_account}.{self.namespace}.{trust_domain}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service_account}"


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """A parsed node id; `str()` gives back the canonical text (the snapshot cache key)."""

    proxy_id: str
    kind: ProxyKind
    identity: Identity

    @classmethod
    def parse(cls, text: str) -> NodeId:
        """Parse ``<proxy-id>.<kind>.<sa>.<ns>``; raise `InvalidNodeId` saying what is wrong."""
        proxy_id, _, rest = text.partition(".")
        kind_text, _, rest = rest.partition(".")
        service_account, _, namespace = rest.rpartition(".")
        expected = "expected <proxy-id>.<sidecar|grpc>.<service-account>.<namespace>"
        if not _DNS_LABEL.fullmatch(proxy_id):
            raise InvalidNodeId(
                f"invalid node id {text!r}: proxy id {proxy_id!r} is not a DNS-1123 label; "
                + expected
            )
        try:
            kind = ProxyKind(kind_text)
        except ValueError:
            raise InvalidNodeId(
                f"invalid node id {text!r}: unknown proxy kind {kind_text!r}; " + expected
            ) from None
        try:
            identity = Identity(namespace, service_account)
        except InvalidIdentity as error:
            raise InvalidNodeId(f"invalid node id {text!r}: {error}; {expected}") from None
        return cls(proxy_id, kind, identity)

    @classmethod
    def of(cls, proxy_id: str, identity: Identity, kind: ProxyKind = ProxyKind.SIDECAR) -> NodeId:
        """Build the node id of a proxy (validated by parsing the result)."""
        return cls.parse(f"{proxy_id}.{kind.value}.{identity.service_account}.{identity.namespace}")

    def __str__(self) -> str:
        sa, ns = self.identity.service_account, self.identity.namespace
        return f"{self.proxy_id}.{self.kind.value}.{sa}.{ns}"
