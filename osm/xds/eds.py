"""EDS: the load assignments of a proxy's upstream clusters, built from its policy.

One ClusterLoadAssignment per EDS cluster (``<ns>/<svc>|<port>``), with the ready
endpoints in a single locality that has a ``load_balancing_weight`` (proxyless gRPC
ignores localities without one). A service without ready endpoints gets an
assignment with no endpoints, so the cluster exists and fails fast. One object per
(cluster, endpoints) serves every proxy.

Same shape as every builder module: `outbound_resources` takes exactly the policy
values it reads, and the context's caches (there are no inbound load assignments).
"""

from __future__ import annotations

import functools

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from osm.base.wellknown import ENDPOINT_TYPE
from osm.catalog.policy import Endpoint, OutboundPort
from osm.xds import common, names
from osm.xds.context import Context
from osm.xds.resources import Built, build


def outbound_resources(ports: tuple[OutboundPort, ...], context: Context) -> list[Built]:
    """One per upstream cluster (reads the ports' upstreams only), sorted by name."""
    result: dict[str, Built] = {}
    for port in ports:
        for upstream in port.upstreams:
            name = names.cluster(upstream.service, upstream.port)
            if name not in result:
                result[name] = context.memo.get(
                    ("eds", name, upstream.endpoints),
                    functools.partial(_built, name, upstream.endpoints),
                )
    return [result[name] for name in sorted(result)]


def load_assignment(
    cluster: str, endpoints: tuple[Endpoint, ...]
) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster)
    if endpoints:
        # gRPC requires `locality` to be present (even empty) and weighted.
        locality = assignment.endpoints.add(
            locality=base_pb2.Locality(), load_balancing_weight=common.uint32(1)
        )
        for endpoint in endpoints:
            locality.lb_endpoints.append(
                endpoint_components_pb2.LbEndpoint(
                    endpoint=endpoint_components_pb2.Endpoint(
                        address=common.socket_address(endpoint.ip, endpoint.port)
                    ),
                    health_status=health_check_pb2.HEALTHY,
                )
            )
    return assignment


def _built(cluster: str, endpoints: tuple[Endpoint, ...]) -> Built:
    return build(ENDPOINT_TYPE, cluster, load_assignment(cluster, endpoints))
