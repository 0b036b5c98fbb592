"""EDS: a ClusterLoadAssignment -> `model.LoadAssignment`.

The one idea: only the endpoints Envoy would route to are kept (health UNKNOWN or
HEALTHY), in order, with their weights; priorities other than 0 are refused. `cds` reads a
STATIC or DNS cluster's inline ``load_assignment`` with the same `endpoints`.
"""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2

from osm.proxy import model
from osm.proxy.translate.walker import Walker


def endpoints(
    walker: Walker, message: endpoint_pb2.ClusterLoadAssignment, path: str
) -> tuple[model.Endpoint, ...]:
    walker.check(message, path, ("cluster_name", "endpoints"))
    prefix = f"{path}." if path else ""
    kept: list[model.Endpoint] = []
    for l_index, locality in enumerate(message.endpoints):
        l_path = f"{prefix}endpoints[{l_index}]"
        walker.check(
            locality, l_path, ("locality", "lb_endpoints", "load_balancing_weight", "priority")
        )
        if locality.priority:
            raise walker.fail(f"{l_path}.priority", "only priority 0 is supported")
        for index, lb_endpoint in enumerate(locality.lb_endpoints):
            where = f"{l_path}.lb_endpoints[{index}]"
            walker.check(lb_endpoint, where, ("endpoint", "health_status", "load_balancing_weight"))
            health = lb_endpoint.health_status
            if health not in (0, 1):  # UNKNOWN, HEALTHY
                continue  # Envoy routes only to healthy (or unknown) hosts.
            walker.check(lb_endpoint.endpoint, f"{where}.endpoint", ("address",))
            address = lb_endpoint.endpoint.address
            walker.check(address, f"{where}.endpoint.address", ("socket_address",))
            socket_address = address.socket_address
            walker.check(
                socket_address,
                f"{where}.endpoint.address.socket_address",
                ("address", "port_value", "protocol"),
            )
            if not socket_address.address:
                raise walker.fail(f"{where}.endpoint.address", "an address is required")
            weight = (
                lb_endpoint.load_balancing_weight.value
                if lb_endpoint.HasField("load_balancing_weight")
                else 1
            )
            kept.append(model.Endpoint(socket_address.address, socket_address.port_value, weight))
    return tuple(kept)


def translate(message: endpoint_pb2.ClusterLoadAssignment) -> model.LoadAssignment:
    """ClusterLoadAssignment -> LoadAssignment; raises ConfigError."""
    walker = Walker("ClusterLoadAssignment", message.cluster_name)
    return model.LoadAssignment(message.cluster_name, endpoints(walker, message, ""))
