"""The Python sidecar's flavour of xDS: gRPC ports as TCP, accepted by the sidecar.

A pod marked ``osm-py.io/sidecar: python`` runs our Python sidecar, which speaks
HTTP/1.1 only and NACKs any config it does not implement. So for it the control plane
builds gRPC ports as TCP (tcp_proxy, no HTTP/2 cluster options, network RBAC narrowed
to the sources allowed every request), while Envoy pods keep the HTTP/2 flavour.
"""

from __future__ import annotations

from typing import Any

import pytest

from osm.base.wellknown import CLUSTER_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE
from osm.catalog.ids import ProxyId
from osm.proxy import assembly, model, translate
from osm.xds import names
from osm.xds.generator import build_snapshots
from osm.xds.snapshot import Snapshot
from tests.unit.catalog import meshes as m
from tests.unit.xds import xds_support


def assemble(snapshot: Snapshot) -> model.ProxyConfig:
    """What the sidecar does with a full set of resources (raises ConfigError: a NACK)."""
    raw: dict[str, dict[str, Any]] = {
        url: {name: built.message for name, built in snapshot.of_type(url).items()}
        for url in PUSH_ORDER
    }
    return assembly.assemble(raw)


@pytest.mark.parametrize("permissive", [True, False], ids=["permissive", "smi"])
def test_the_python_sidecar_accepts_every_snapshot_of_a_mesh_with_a_grpc_service(
    permissive: bool,
) -> None:
    built = build_snapshots(xds_support.grpc_mesh(permissive=permissive, sidecar="python"))
    assert not built.errors
    assert len(built.snapshots) == 4
    for snapshot in built.snapshots.values():
        assemble(snapshot)  # no ConfigError


def test_envoys_flavour_of_the_same_mesh_is_what_the_python_sidecar_refuses() -> None:
    """Why the controller must know which pods run the Python sidecar: Envoy's HTTP/2
    gRPC clusters are a NACK of the whole CDS for it (the mesh would get no config)."""
    built = build_snapshots(xds_support.grpc_mesh(permissive=True, sidecar=None))
    for snapshot in built.snapshots.values():
        with pytest.raises(translate.ConfigError, match="http2_protocol_options"):
            assemble(snapshot)


@pytest.mark.parametrize("permissive", [True, False], ids=["permissive", "smi"])
def test_python_sidecars_get_no_http2_and_no_http_chain_on_the_grpc_port(permissive: bool) -> None:
    built = build_snapshots(xds_support.grpc_mesh(permissive=permissive, sidecar="python"))
    for snapshot in built.snapshots.values():
        for cluster in snapshot.of_type(CLUSTER_TYPE).values():
            assert not cluster.message.typed_extension_protocol_options, cluster.name
        for listener in snapshot.of_type(LISTENER_TYPE).values():
            for chain in listener.message.filter_chains:
                if chain.filter_chain_match.destination_port.value == 9090:
                    assert chain.filters[-1].name == names.TCP_PROXY, chain.name
        assert "rds-outbound.9090" not in snapshot.of_type(ROUTE_TYPE)
        assert "rds-inbound.9090" not in snapshot.of_type(ROUTE_TYPE)


def test_a_mixed_mesh_gives_each_proxy_its_own_flavour() -> None:
    """Envoy and Python pods side by side (as when a local pod is not injected by the
    runtime): classes differ by sidecar, resources are built per flavour."""
    state = xds_support.grpc_mesh(permissive=True, sidecar="python")
    envoy_server = m.pod("b", "server-1", {"app": "server"}, "server", "10.244.2.2")
    state, _ = state.with_changes(upserts=m.parse(envoy_server))
    built = build_snapshots(state)
    python = built.snapshots[ProxyId("b", "server-0")]
    envoy = built.snapshots[ProxyId("b", "server-1")]
    assemble(python)
    local = "b/server|9090|local"
    assert not python.of_type(CLUSTER_TYPE)[local].message.typed_extension_protocol_options
    assert envoy.of_type(CLUSTER_TYPE)[local].message.typed_extension_protocol_options


def test_the_python_sidecar_accepts_ingress_chains_limited_by_an_upstream_traffic_setting() -> None:
    """The backend's local rate limits on its ingress chains (TCP filter, HTTP filter after
    RBAC, the virtual host's and per-path limits) are what the sidecar implements."""
    built = build_snapshots(
        xds_support.ingress_mesh(permissive=False, sidecar="python", limited=True)
    )
    assert not built.errors
    server = built.snapshots[ProxyId("b", "server-0")]
    config = assemble(server)
    ingress_chains = [
        chain
        for listener in config.listeners.values()
        for chain in listener.filter_chains
        if chain.name.startswith("ingress_")
    ]
    assert ingress_chains and all(chain.rate_limit is not None for chain in ingress_chains)
