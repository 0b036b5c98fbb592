"""What every builder gets besides the policy: the memo, settings and certificates.

The one idea: builders are pure functions of (policy values, context settings); the
context carries the memo that makes a resource needed by many proxies one object,
and the certificate source that SDS needs (plain PEM bytes, never a CA object).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from osm.catalog.ids import TRUST_DOMAIN, Identity
from osm.xds.resources import Memo

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An identity's certificate chain and private key (PEM)."""

    cert_chain: bytes
    private_key: bytes


CredentialSource = Callable[[Identity], Credentials | None]
"""Returns an identity's credentials, or None when none has been issued yet."""


class MissingCredentials(LookupError):
    """A proxy's identity has no certificate yet: its snapshot cannot be built."""


@dataclass(slots=True)
class Context:
    """Settings and caches shared by the builders of one `Generator`.

    ``credentials`` None means reference-only mode (offline tools): secrets are built
    with placeholder PEM text that says so, never served to a real proxy.
    ``trust_bundle`` is the mesh's root certificates (PEM) that peers are verified
    against.
    ``grpc_mtls`` False builds proxyless gRPC clusters without TLS (tests).
    """

    memo: Memo = field(default_factory=Memo)
    parts: dict[Hashable, Message] = field(default_factory=dict)
    bundles: dict[Hashable, Any] = field(default_factory=dict)
    """Per-outbound-policy resource bundles (`osm.xds.snapshot`)."""
    trust_domain: str = TRUST_DOMAIN
    credentials: CredentialSource | None = None
    trust_bundle: bytes = b""
    grpc_mtls: bool = True

    def part(self, key: Hashable, make: Callable[[], M]) -> M:
        """A memoized sub-message (a filter chain, a virtual host). Callers copy it into
        their resource (protobuf copies on append); never modify the returned one."""
        found = self.parts.get(key)
        if found is None:
            made = make()
            self.parts[key] = made
            return made
        return cast(M, found)
