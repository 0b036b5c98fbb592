"""Small domain values the catalog passes around instead of strings.

A `ServiceId` names a Service, an `Identity` a workload identity (a service account),
a `ProxyId` a pod. They order and hash by value, so they key indexes and sort output
deterministically; each caches its hash (they key most dicts of the control plane).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRUST_DOMAIN = "cluster.local"
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True, order=True)
class ServiceId:
    namespace: str
    name: str
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.name)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def fqdn(self) -> str:
        """``<name>.<namespace>.svc.cluster.local``: the TLS server name of the service."""
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass(frozen=True, slots=True, order=True)
class Identity:
    """A workload identity: a service account in a namespace."""

    namespace: str
    service_account: str
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.service_account)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service_account}"

    def spiffe_id(self, trust_domain: str = TRUST_DOMAIN) -> str:
        """The URI SAN its certificates carry (DESIGN.md, "identity")."""
        return f"spiffe://{trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True, slots=True, order=True)
class ProxyId:
    """A proxy is a pod: its namespace and name."""

    namespace: str
    name: str
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.name)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ProxyId:
        """Reads ``NS/NAME``; raises ValueError otherwise."""
        namespace, slash, name = text.partition("/")
        if not slash or not namespace or not name:
            raise ValueError(f'"{text}" is not NAMESPACE/NAME')
        return cls(namespace, name)
