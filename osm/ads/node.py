"""Node ids: how a proxy names itself to the xDS server, and whose configuration it gets.

One idea: the node id carries the proxy's workload identity, so the server can check it
against the client certificate and the cache can key snapshots by it. The format is

    <proxy-id>.<kind>.<service-account>.<namespace>

- `proxy-id`: the pod's UID or name; one DNS-1123 label (no dots), unique per proxy.
- `kind`: ``sidecar`` for a proxy (Envoy or the Python sidecar), ``grpc`` for a proxyless
  gRPC client. (OSM's certificate CN is ``<uuid>.sidecar.<sa>.<ns>.<trust-domain>``; the
  trust domain is left out here because it is checked from the certificate's SPIFFE ID.)
- `service-account` may contain dots, `namespace` may not, so the id parses from both ends.

Example: ``bookbuyer-5c7d9f.sidecar.bookbuyer.bookbuyer``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from osm.ca.errors import InvalidIdentity
from osm.ca.identity import Identity

_PROXY_ID = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


class ProxyKind(enum.Enum):
    SIDECAR = "sidecar"
    GRPC = "grpc"


class InvalidNodeId(ValueError):
    """A node id that does not follow the format above (the remote peer's fault)."""


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
        if not _PROXY_ID.fullmatch(proxy_id):
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
