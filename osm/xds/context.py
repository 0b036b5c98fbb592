"""What every builder gets besides the policy values it reads: settings and caches.

The one idea: builders are pure functions of values. `Settings` holds the mesh-wide
values some of them read (a frozen, hashable value, passed as an argument like the
policy's), and the `Context` holds only caches: the memo that makes a resource needed
by many proxies one object, memoized parts, and the layers of `osm.xds.layers`, so
what a builder reads shows in its signature. Certificates come from a
`CredentialSource` (plain PEM bytes per identity, never a CA object).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from osm.base.identity import TRUST_DOMAIN, Identity
from osm.xds.resources import Memo
from osm.xds.tracing import Tracing

M = TypeVar("M", bound=Message)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An identity's certificate chain and private key (PEM)."""

    cert_chain: bytes
    private_key: bytes


CredentialSource = Callable[[Identity], Credentials | None]
"""Returns an identity's credentials, or None when none has been issued yet."""


class MissingCredentials(LookupError):
    """A proxy's identity has no certificate yet: its snapshot cannot be built."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The mesh-wide values builders read besides the policy.

    ``trust_bundle`` is the mesh's root certificates (PEM) that peers are verified
    against. ``grpc_mtls`` False builds proxyless gRPC clusters without TLS (tests).
    ``placeholders`` True (no credential source: offline tools) builds secrets with
    placeholder PEM text that says so, never served to a real proxy. ``tracing`` is the
    MeshConfig's (`osm.xds.tracing`; None: off): every sidecar HCM carries it.
    """

    trust_domain: str = TRUST_DOMAIN
    grpc_mtls: bool = True
    trust_bundle: bytes = b""
    placeholders: bool = False
    tracing: Tracing | None = None


@dataclass(slots=True)
class Context:
    """The caches shared by the builders of one `Generator` (no settings: those are
    arguments, see `Settings`).

    ``parts`` (sub-messages and other derived values, `cached`) is generational:
    `new_generation` keeps what was used since the previous call and drops the rest,
    so a cache the next incremental build needs survives a prune.
    """

    memo: Memo = field(default_factory=Memo)
    parts: dict[Hashable, Any] = field(default_factory=dict)
    previous_parts: dict[Hashable, Any] = field(default_factory=dict)
    layers: dict[Hashable, Any] = field(default_factory=dict)
    """Resource layers by the builder and arguments they were built from
    (`osm.xds.layers.memoized`)."""

    def part(self, key: Hashable, make: Callable[[], M]) -> M:
        """A memoized sub-message (a filter chain, a virtual host). Callers copy it into
        their resource (protobuf copies on append); never modify the returned one."""
        return self.cached(key, make)

    def cached(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()``, memoized on ``key`` (a hashable value that determines it; the
        value must not be None). Never modify the returned value."""
        found = self.parts.get(key)
        if found is None:
            found = self.previous_parts.get(key)
            if found is None:
                found = make()
            self.parts[key] = found
        return cast(T, found)

    def new_generation(self) -> None:
        """Starts a new generation of `cached` values (see the class docstring)."""
        self.previous_parts = self.parts
        self.parts = {}
