"""Names and hosts files of the mesh network (no namespaces needed)."""

from __future__ import annotations

import ipaddress

from osm.runtime import network
from osm.runtime.network import HostEntry, MeshNetworkConfig


def test_service_hostnames() -> None:
    assert network.service_hostnames("bookstore", "books") == (
        "bookstore",
        "bookstore.books",
        "bookstore.books.svc",
        "bookstore.books.svc.cluster.local",
    )
    assert network.service_hostnames("b", "ns", short=False, cluster_domain="mesh.test") == (
        "b.ns",
        "b.ns.svc",
        "b.ns.svc.mesh.test",
    )


def test_hosts_file_starts_with_localhost() -> None:
    text = network.hosts_file([HostEntry("10.234.0.1", ("a", "a.ns")), HostEntry("10.0.0.1", ())])
    assert text == (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.234.0.1\ta a.ns\n"
    )


def test_veth_names_fit_ifnamsiz_and_differ_per_pod() -> None:
    names = {network.veth_name(f"osm-default-pod-{i}") for i in range(1000)}
    assert len(names) == 1000
    assert all(len(name) <= 15 for name in names)


def test_default_mesh_network() -> None:
    config = MeshNetworkConfig()
    assert (config.netns, config.bridge) == ("osm-mesh", "osmbr0")
    assert config.gateway == ipaddress.IPv4Address("10.233.0.1")
