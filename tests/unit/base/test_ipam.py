"""Address pools: lowest free address, idempotent per owner, persisted through a record."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from osm.base import ipam
from osm.base.ipam import AllocationError, MemoryRecord
from osm.runtime import record

IP = ipaddress.IPv4Address


def test_pod_ips_start_after_the_gateway_and_are_stable_per_owner() -> None:
    pool = ipam.pod_pool(MemoryRecord())
    assert pool.allocate("pod:default/a") == IP("10.233.0.2")
    assert pool.allocate("pod:default/b") == IP("10.233.0.3")
    assert pool.allocate("pod:default/a") == IP("10.233.0.2")
    assert ipam.gateway_address(pool.network) == IP("10.233.0.1")


def test_released_addresses_are_reused_lowest_first() -> None:
    pool = ipam.pod_pool(MemoryRecord())
    for name in "abc":
        pool.allocate(name)
    assert pool.release("b") == IP("10.233.0.3")
    assert pool.release("b") is None
    assert pool.allocate("d") == IP("10.233.0.3")


def test_service_cluster_ips_come_from_their_own_range() -> None:
    pool = ipam.service_pool(MemoryRecord())
    assert pool.allocate("service:default/bookstore") == IP("10.234.0.1")
    assert pool.allocate("service:default/fixed", requested="10.234.7.7") == IP("10.234.7.7")


@pytest.mark.parametrize(
    ("requested", "complaint"),
    [
        ("10.235.0.1", "outside"),
        ("10.234.0.0", "reserved"),
        ("10.234.255.255", "reserved"),
        ("10.234.0.1", "already allocated to service:default/first"),
        ("nonsense", "not an IPv4 address"),
    ],
)
def test_requested_addresses_must_be_free_and_inside(requested: str, complaint: str) -> None:
    pool = ipam.service_pool(MemoryRecord())
    pool.allocate("service:default/first")
    with pytest.raises(AllocationError, match=complaint):
        pool.allocate("service:default/second", requested=requested)


def test_an_owner_cannot_be_moved_to_another_address() -> None:
    pool = ipam.service_pool(MemoryRecord())
    pool.allocate("s", requested="10.234.0.9")
    with pytest.raises(AllocationError, match=r"already has 10\.234\.0\.9"):
        pool.allocate("s", requested="10.234.0.10")


def test_exhaustion_is_an_error() -> None:
    pool = ipam.pod_pool(MemoryRecord(), ipaddress.IPv4Network("10.9.0.0/29"))
    got = [pool.allocate(str(i)) for i in range(5)]
    assert got[0] == IP("10.9.0.2") and got[-1] == IP("10.9.0.6")
    with pytest.raises(AllocationError, match="no free address"):
        pool.allocate("one too many")


def test_allocations_survive_a_restart_through_the_record() -> None:
    saved = MemoryRecord()
    first = ipam.pod_pool(saved)
    first.allocate("a")
    first.allocate("b")
    first.release("a")
    second = ipam.pod_pool(saved)
    assert second.allocations() == {"b": "10.233.0.3"}
    assert second.allocate("c") == IP("10.233.0.2")


def test_a_record_from_another_configuration_is_refused() -> None:
    with pytest.raises(AllocationError, match="outside"):
        ipam.pod_pool(MemoryRecord({"a": "192.168.0.2"}))
    with pytest.raises(AllocationError, match="reserved"):
        ipam.pod_pool(MemoryRecord({"a": "10.233.0.1"}))


def test_journal_backed_allocations_persist_across_journal_reopen(tmp_path: Path) -> None:
    with record.Journal.open(tmp_path) as journal:
        pool = ipam.service_pool(record.JournalAllocations(journal, "services"))
        pool.allocate("service:default/a")
        pool.allocate("service:default/b")
    with record.Journal.open(tmp_path) as journal:
        pool = ipam.service_pool(record.JournalAllocations(journal, "services"))
        assert pool.allocations() == {
            "service:default/a": "10.234.0.1",
            "service:default/b": "10.234.0.2",
        }
        # Allocations are state, not things to tear down.
        assert record.teardown(tmp_path, journal=journal).removed == []
        assert pool.get("service:default/b") == IP("10.234.0.2")
