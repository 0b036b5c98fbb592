"""Small domain values the catalog passes around instead of strings.

A `ServiceId` names a Service, a `ProxyId` a pod (a workload identity is
`osm.base.identity.Identity`). They order and hash by value, so they key indexes and sort output
deterministically; each caches its hash (they key most dicts of the control plane).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osm.base.identity import CLUSTER_DOMAIN


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
