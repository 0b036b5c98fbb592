"""Address allocation for local mode: pod IPs on the mesh bridge, Service ClusterIPs.

The one idea: a `Pool` is a pure in-memory map from an owner key (``"pod:ns/name"``,
``"service:ns/name"``) to an address of one IPv4 network; every change is handed to an
injected `AllocationRecord`, so allocations survive a restart of the runtime (the
runtime passes a file-backed record from `osm.runtime.record`, tests a `MemoryRecord`).

Pod IPs come from the mesh subnet (default 10.233.0.0/16; ``.1`` is the bridge's
gateway). ClusterIPs come from a separate virtual range (default 10.234.0.0/16) that is
never assigned to an interface and never routed: only the iptables rules inside pods
ever see those addresses, and send them to the sidecar.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_POD_SUBNET = ipaddress.IPv4Network("10.233.0.0/16")
DEFAULT_SERVICE_SUBNET = ipaddress.IPv4Network("10.234.0.0/16")


class AllocationError(RuntimeError):
    """The pool is exhausted, or a requested address is taken or outside the pool."""


class AllocationRecord(Protocol):
    """Where a pool keeps its allocations. ``save`` gets the complete current map and
    must have stored it durably when it returns; ``load`` returns what was last saved."""

    def load(self) -> Mapping[str, str]: ...

    def save(self, allocations: Mapping[str, str]) -> None: ...


@dataclass
class MemoryRecord:
    """An `AllocationRecord` that keeps allocations in memory (tests, dry runs)."""

    allocations: dict[str, str] = field(default_factory=dict)

    def load(self) -> Mapping[str, str]:
        return dict(self.allocations)

    def save(self, allocations: Mapping[str, str]) -> None:
        self.allocations = dict(allocations)


class Pool:
    """Allocates addresses of ``network`` to owner keys; not thread-safe.

    Addresses in ``reserved`` (and the network and broadcast addresses) are never
    handed out. Allocation is idempotent per key and takes the lowest free address.
    Allocations loaded from the record that fall outside the network, collide or are
    reserved raise `AllocationError` (the record belongs to a different configuration).
    """

    def __init__(
        self,
        network: ipaddress.IPv4Network,
        record: AllocationRecord,
        *,
        reserved: tuple[ipaddress.IPv4Address, ...] = (),
    ) -> None:
        self.network = network
        self._record = record
        self._reserved = {network.network_address, network.broadcast_address, *reserved}
        self._by_key: dict[str, ipaddress.IPv4Address] = {}
        self._by_address: dict[ipaddress.IPv4Address, str] = {}
        for key, text in record.load().items():
            address = ipaddress.IPv4Address(text)
            self._check_free(address, key)
            self._by_key[key] = address
            self._by_address[address] = key

    def allocate(self, key: str, requested: str = "") -> ipaddress.IPv4Address:
        """The address of ``key``: the one it already has, else ``requested`` if given
        (must be free and inside the pool), else the lowest free address."""
        existing = self._by_key.get(key)
        if existing is not None:
            if requested and ipaddress.IPv4Address(requested) != existing:
                raise AllocationError(f"{key} already has {existing}, not {requested}")
            return existing
        if requested:
            try:
                address = ipaddress.IPv4Address(requested)
            except ValueError:
                raise AllocationError(f'"{requested}" is not an IPv4 address') from None
            self._check_free(address, key)
        else:
            address = self._lowest_free()
        self._by_key[key] = address
        self._by_address[address] = key
        self._record.save(self.allocations())
        return address

    def release(self, key: str) -> ipaddress.IPv4Address | None:
        """Frees ``key``'s address; returns it, or None if ``key`` had none."""
        address = self._by_key.pop(key, None)
        if address is None:
            return None
        del self._by_address[address]
        self._record.save(self.allocations())
        return address

    def get(self, key: str) -> ipaddress.IPv4Address | None:
        return self._by_key.get(key)

    def allocations(self) -> dict[str, str]:
        """A new dict, key -> address text; the caller owns it."""
        return {key: str(address) for key, address in sorted(self._by_key.items())}

    def _check_free(self, address: ipaddress.IPv4Address, key: str) -> None:
        if address not in self.network:
            raise AllocationError(f"{address} (for {key}) is outside {self.network}")
        if address in self._reserved:
            raise AllocationError(f"{address} (for {key}) is reserved in {self.network}")
        owner = self._by_address.get(address)
        if owner is not None and owner != key:
            raise AllocationError(f"{address} (for {key}) is already allocated to {owner}")

    def _lowest_free(self) -> ipaddress.IPv4Address:
        first = int(self.network.network_address)
        for value in range(first, first + self.network.num_addresses):
            address = ipaddress.IPv4Address(value)
            if address not in self._reserved and address not in self._by_address:
                return address
        raise AllocationError(f"no free address left in {self.network}")


def pod_pool(record: AllocationRecord, network: ipaddress.IPv4Network = DEFAULT_POD_SUBNET) -> Pool:
    """Pod IPs: the mesh subnet without its first host address (the bridge gateway)."""
    return Pool(network, record, reserved=(gateway_address(network),))


def service_pool(
    record: AllocationRecord, network: ipaddress.IPv4Network = DEFAULT_SERVICE_SUBNET
) -> Pool:
    """Service ClusterIPs: a virtual range that no interface carries."""
    return Pool(network, record)


def gateway_address(network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The bridge's address in the mesh subnet: its first host address (``.1``)."""
    return network.network_address + 1
