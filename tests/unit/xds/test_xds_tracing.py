"""Tracing in the xDS: MeshConfig ``observability.tracing`` puts OSM's Zipkin tracer in
every sidecar HTTP connection manager and the tracing cluster in every sidecar's CDS, and
a change of it rebuilds them (incrementally as in a full build)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from osm.base.wellknown import CLUSTER_TYPE, LISTENER_TYPE, PUSH_ORDER
from osm.catalog.state import MeshState
from osm.xds import names
from osm.xds.generator import Generator, build_snapshots
from osm.xds.snapshot import Snapshots
from tests.unit.xds import xds_support

MESHES: dict[str, Callable[[], MeshState]] = {
    "bookstore permissive": lambda: xds_support.bookstore(permissive=True, egress=True),
    "ingress smi (ingress chains)": lambda: xds_support.ingress_mesh(permissive=False),
    "egress smi (egress chains)": xds_support.egress_mesh,
}


def hcms(snapshots: Snapshots) -> Iterator[tuple[str, hcm_pb2.HttpConnectionManager]]:
    """Every HCM of every proxy's listeners but the Prometheus one, by its place."""
    for proxy, snapshot in snapshots.snapshots.items():
        for built in snapshot.of_type(LISTENER_TYPE).values():
            listener = built.message
            assert isinstance(listener, listener_pb2.Listener)
            if listener.name == names.PROMETHEUS_LISTENER:
                continue
            for chain in [*listener.filter_chains, listener.default_filter_chain]:
                for network_filter in chain.filters:
                    if network_filter.name == names.HTTP_CONNECTION_MANAGER:
                        hcm = hcm_pb2.HttpConnectionManager()
                        network_filter.typed_config.Unpack(hcm)
                        yield f"{proxy} {listener.name} {chain.name}", hcm


@pytest.mark.parametrize("mesh", sorted(MESHES))
def test_every_sidecar_hcm_traces_when_tracing_is_on(mesh: str) -> None:
    state = MESHES[mesh]()
    off = build_snapshots(state)
    on = build_snapshots(xds_support.traced(state, sampling=2.5)[0])
    assert [where for where, hcm in hcms(off) if hcm.HasField("tracing")] == []
    traced = dict(hcms(on))
    assert traced and len(traced) == len(dict(hcms(off)))
    for where, hcm in traced.items():
        assert hcm.tracing.verbose, where
        assert hcm.tracing.provider.name == "envoy.tracers.zipkin", where
        assert hcm.tracing.random_sampling.value == 2.5, where
        zipkin = zipkin_pb2.ZipkinConfig()
        hcm.tracing.provider.typed_config.Unpack(zipkin)
        assert (
            zipkin.collector_cluster,
            zipkin.collector_endpoint,
            zipkin.collector_endpoint_version,
            zipkin.trace_id_128bit,
        ) == ("envoy-tracing-cluster", "/api/v2/spans", zipkin_pb2.ZipkinConfig.HTTP_JSON, False)
    for snapshots, present in ((off, False), (on, True)):
        for proxy, snapshot in snapshots.snapshots.items():
            assert (names.TRACING_CLUSTER in snapshot.of_type(CLUSTER_TYPE)) == present, proxy


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("", "jaeger.osm-system.svc.cluster.local"),
        ("zipkin.tracing.svc.cluster.local", "zipkin.tracing.svc.cluster.local"),
    ],
    ids=["OSM's default: jaeger in the control plane's namespace", "an address given"],
)
def test_the_tracing_cluster_resolves_the_collector_by_dns(address: str, host: str) -> None:
    state = xds_support.traced(xds_support.ingress_mesh(permissive=True), address=address)[0]
    for snapshot in build_snapshots(state).snapshots.values():
        cluster = snapshot.of_type(CLUSTER_TYPE)[names.TRACING_CLUSTER].message
        assert isinstance(cluster, cluster_pb2.Cluster)
        assert cluster.type == cluster_pb2.Cluster.LOGICAL_DNS
        assert cluster.alt_stat_name == names.TRACING_CLUSTER
        endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint
        assert (
            endpoint.address.socket_address.address,
            endpoint.address.socket_address.port_value,
        ) == (host, 9411)


def test_full_sampling_leaves_random_sampling_out_as_osm() -> None:
    state = xds_support.traced(xds_support.ingress_mesh(permissive=True), sampling=100.0)[0]
    assert [
        w for w, hcm in hcms(build_snapshots(state)) if hcm.tracing.HasField("random_sampling")
    ] == []


def test_a_tracing_change_rebuilds_incrementally_as_a_full_build() -> None:
    """Off -> on -> another sampling -> off: each incremental build equals a fresh full
    build of the same state, and every proxy is reported changed."""
    generator = Generator()
    state = xds_support.ingress_mesh(permissive=False)
    generator.build(state)
    for sampling, on in ((1.0, True), (50.0, True), (50.0, False)):
        if on:
            state, changed = xds_support.traced(state, sampling=sampling)
        else:
            state, changed = state.with_changes(
                upserts=[xds_support.ingress_mesh(permissive=False).mesh_config]
            )
        built = generator.build(state, changed)
        fresh = build_snapshots(state)
        assert built.changed == frozenset(fresh.snapshots)
        for proxy, snapshot in fresh.snapshots.items():
            for url in PUSH_ORDER:
                assert built.snapshots[proxy].version(url) == snapshot.version(url), (proxy, url)
        assert all(hcm.HasField("tracing") == on for _, hcm in hcms(built))
