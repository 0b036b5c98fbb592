"""Tracing: OSM's Zipkin tracer in every sidecar HTTP connection manager, and the cluster
it reports to.

The one idea: one frozen `Tracing` value, derived from the MeshConfig
(`from_mesh_config`; None when tracing is off), is all the builders read. It is part of
`osm.xds.context.Settings`, so every memo key that holds the settings or this value
changes with it and a MeshConfig tracing change rebuilds exactly the listeners and the
cluster that carry it. As OSM's `lds.GetTracingConfig` and `cds.getTracingCluster`:

* `hcm_tracing`: ``envoy.tracers.zipkin`` (ZipkinConfig: collector cluster
  ``envoy-tracing-cluster``, the MeshConfig's endpoint, HTTP_JSON, 64-bit trace ids),
  verbose; ours: ``random_sampling`` from ``samplingPercentage`` (left out at 100,
  Envoy's default, as OSM writes it).
* `cluster`: ``envoy-tracing-cluster``, LOGICAL_DNS to the MeshConfig's address and
  port (by default ``jaeger.<osm namespace>.svc.cluster.local:9411``), round robin.

Whether a span is a server or a client span is not written here: Envoy takes it from
the listener's ``traffic_direction`` (inbound: SERVER, outbound: CLIENT).
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.trace.v3 import http_tracer_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2

from osm.model.config import MeshConfig, tracing_host
from osm.xds import common, names
from osm.xds.resources import pack

FULL_SAMPLING = 100.0
"""Envoy's default ``random_sampling``: a builder leaves the field out at this value."""


@dataclass(frozen=True, slots=True)
class Tracing:
    """Where and how much the sidecars trace (a hashable value, part of memo keys)."""

    host: str
    port: int
    endpoint: str
    sampling_percentage: float = FULL_SAMPLING


def from_mesh_config(mesh_config: MeshConfig) -> Tracing | None:
    """The MeshConfig's tracing, or None when it is off; the collector's host defaults to
    the ``jaeger`` Service of the MeshConfig's (the control plane's) namespace."""
    settings = mesh_config.observability.tracing
    if not settings.enable:
        return None
    return Tracing(
        tracing_host(settings, mesh_config.namespace),
        settings.port,
        settings.endpoint,
        settings.sampling_percentage,
    )


def hcm_tracing(tracing: Tracing) -> hcm_pb2.HttpConnectionManager.Tracing:
    """The ``tracing`` of a sidecar's HTTP connection manager."""
    zipkin = zipkin_pb2.ZipkinConfig(
        collector_cluster=names.TRACING_CLUSTER,
        collector_endpoint=tracing.endpoint,
        collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
    )
    result = hcm_pb2.HttpConnectionManager.Tracing(
        verbose=True,
        provider=http_tracer_pb2.Tracing.Http(name=names.ZIPKIN_TRACER, typed_config=pack(zipkin)),
    )
    if tracing.sampling_percentage != FULL_SAMPLING:
        result.random_sampling.CopyFrom(percent_pb2.Percent(value=tracing.sampling_percentage))
    return result


def add_to(hcm: hcm_pb2.HttpConnectionManager, tracing: Tracing | None) -> None:
    """Sets ``hcm``'s tracing when tracing is on (None: leaves it as it is)."""
    if tracing is not None:
        hcm.tracing.CopyFrom(hcm_tracing(tracing))


def cluster(tracing: Tracing) -> cluster_pb2.Cluster:
    """``envoy-tracing-cluster``: the collector, resolved by DNS (LOGICAL_DNS)."""
    return cluster_pb2.Cluster(
        name=names.TRACING_CLUSTER,
        alt_stat_name=names.TRACING_CLUSTER,
        type=cluster_pb2.Cluster.LOGICAL_DNS,
        connect_timeout=common.seconds(common.CONNECT_TIMEOUT),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        load_assignment=common.single_endpoint(names.TRACING_CLUSTER, tracing.host, tracing.port),
    )
