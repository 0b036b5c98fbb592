"""A pod's hosts file written from two threads at once (no root: /etc/netns is a tmp dir).

The runtime's worker thread writes it while creating the pod (`MeshNetwork.add_pod`) and
the event loop when Services change; unserialized, one could create the directory while
the other, finding it there, removed it as a failed creation of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from osm.runtime import network, record
from osm.runtime.network import HostEntry, MeshNetwork, MeshNetworkConfig


@pytest.fixture
def mesh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MeshNetwork]:
    monkeypatch.setattr(record, "ETC_NETNS", tmp_path / "etc-netns")
    (tmp_path / "state").mkdir()
    with record.Journal.open(tmp_path / "state") as journal:
        journal.created(record.NETNS, "pod-a")  # as add_pod records it before `ip netns add`
        yield MeshNetwork(MeshNetworkConfig(netns="test-mesh"), journal)


def test_concurrent_writes_of_one_pods_hosts_file_are_serialized(
    mesh: MeshNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside = threading.Event()
    proceed = threading.Event()
    writes: list[str] = []
    real = network._write_in_place

    def slow_write(path: Path, text: str) -> None:
        writes.append(path.name)
        if len(writes) == 1:
            inside.set()
            assert proceed.wait(5)
        real(path, text)

    monkeypatch.setattr(network, "_write_in_place", slow_write)
    first = threading.Thread(
        target=mesh.write_hosts, args=("pod-a", [HostEntry("10.234.0.1", ("web",))])
    )
    first.start()
    assert inside.wait(5)
    second = threading.Thread(
        target=mesh.write_hosts, args=("pod-a", [HostEntry("10.234.0.2", ("db",))])
    )
    second.start()
    second.join(0.2)
    assert writes == ["resolv.conf"]  # the second waits for the first to finish creating
    proceed.set()
    first.join(5)
    second.join(5)
    directory = record.ETC_NETNS / "pod-a"
    assert writes == ["resolv.conf", "hosts", "hosts"]
    assert "10.234.0.2\tdb" in (directory / "hosts").read_text()
    assert (directory / "resolv.conf").exists()
    assert mesh.journal.get(record.HOSTS, "pod-a") is not None


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param("10.0.0.1 a\n", "10.0.0.1 a\n10.0.0.2 b\n", id="longer"),
        pytest.param("10.0.0.1 a\n10.0.0.2 b\n", "10.0.0.3 c\n", id="shorter"),
        pytest.param("10.0.0.1 a\n", "10.0.0.1 a\n", id="unchanged"),
    ],
)
def test_a_hosts_file_is_rewritten_in_place_never_emptied(
    tmp_path: Path, before: str, after: str
) -> None:
    """Same inode (a pod's bind mount pins it); an unchanged file is not written at all."""
    path = tmp_path / "hosts"
    path.write_text(before)
    inode, written = path.stat().st_ino, path.stat().st_mtime_ns
    time.sleep(0.01)
    network._write_in_place(path, after)
    assert path.read_text() == after
    assert path.stat().st_ino == inode
    assert (path.stat().st_mtime_ns == written) == (before == after)
