"""RDS: route configurations, built from a proxy's policy.

Outbound, ``rds-outbound.<port>`` holds one virtual host per HTTP service port with
that number, with OSM's host names (`names.hostnames`) and the routes of the
catalog (split matches first, then the default), each to weighted clusters; route
timeouts are disabled (0s), as OSM does.

Inbound, ``rds-inbound.<targetPort>`` holds one virtual host (``*``: the filter
chain already chose the service by TLS server name) with one route per allowed
request match to the local cluster. Authorization is per route (RBACPerRoute), and
every route carries the *same* policy set — one policy per rule, its permission
being the rule's match — so a request is allowed when any rule allows it, whichever
route Envoy picked (route order cannot wrongly deny overlapping matches). Permissive
mode is one route allowing any authenticated peer.

Same shape as every builder module: `resources(policy, context)`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from google.protobuf import wrappers_pb2

from osm.catalog.policy import (
    InboundPort,
    InboundRule,
    OutboundPort,
    OutboundRoute,
    ProxyPolicy,
    is_http,
)
from osm.xds import common, names
from osm.xds.context import Context
from osm.xds.resources import ROUTE, Built, build, pack


def resources(policy: ProxyPolicy, context: Context) -> list[Built]:
    """The route configurations every proxy with this policy needs."""
    return outbound_resources(policy, context) + inbound_resources(policy, context)


def outbound_resources(policy: ProxyPolicy, context: Context) -> list[Built]:
    """``rds-outbound.<port>`` (reads ``policy.outbound`` only)."""
    result: list[Built] = []
    by_port: dict[int, list[OutboundPort]] = {}
    for port in policy.outbound.ports:
        if is_http(port.protocol):
            by_port.setdefault(port.port, []).append(port)
    namespace = policy.outbound.namespace
    for number in sorted(by_port):
        ports = tuple(by_port[number])
        view = tuple((p.service, p.port, p.cluster_ip, p.routes) for p in ports)
        result.append(
            context.memo.get(
                ("rds-outbound", number, namespace, view),
                functools.partial(_outbound, number, namespace, ports, context),
            )
        )
    return result


def inbound_resources(policy: ProxyPolicy, context: Context) -> list[Built]:
    """``rds-inbound.<targetPort>``."""
    result: list[Built] = []
    by_target: dict[int, list[InboundPort]] = {}
    for inbound in policy.inbound.ports:
        if is_http(inbound.protocol):
            by_target.setdefault(inbound.target_port, []).append(inbound)
    for target in sorted(by_target):
        inbound_ports = tuple(by_target[target])
        result.append(
            context.memo.get(
                ("rds-inbound", target, inbound_ports, context.trust_domain),
                functools.partial(_inbound, target, inbound_ports, context.trust_domain),
            )
        )
    return result


# -- outbound ----------------------------------------------------------------------------
def outbound_route(route: OutboundRoute) -> route_components_pb2.Route:
    action = route_components_pb2.RouteAction(timeout=common.seconds(0))
    for target in route.targets:
        action.weighted_clusters.clusters.add(
            name=names.cluster(target.service, target.port),
            weight=wrappers_pb2.UInt32Value(value=target.weight),
        )
    return route_components_pb2.Route(match=common.route_match(route.match), route=action)


def virtual_host(port: OutboundPort, same_namespace: bool) -> route_components_pb2.VirtualHost:
    return route_components_pb2.VirtualHost(
        name=names.outbound_virtual_host(port.service),
        domains=names.hostnames(port.service, port.port, same_namespace, port.cluster_ip),
        routes=[outbound_route(route) for route in port.routes],
    )


def outbound_route_configuration(
    number: int, namespace: str, ports: Sequence[OutboundPort], context: Context
) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(
        name=names.outbound_route_config(number),
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
    for port in ports:
        same = port.service.namespace == namespace
        key = ("vhost", port.service, port.port, port.cluster_ip, port.routes, same)
        config.virtual_hosts.append(context.part(key, functools.partial(virtual_host, port, same)))
    return config


def _outbound(
    number: int, namespace: str, ports: Sequence[OutboundPort], context: Context
) -> Built:
    config = outbound_route_configuration(number, namespace, ports, context)
    return build(ROUTE, config.name, config)


# -- inbound -----------------------------------------------------------------------------
def rbac_per_route(rules: Sequence[InboundRule], trust_domain: str) -> http_rbac_pb2.RBACPerRoute:
    """Allows a request when any rule's match and sources allow it."""
    config = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    for index, rule in enumerate(rules):
        if rule.sources is not None and not rule.sources:
            continue
        config.policies[f"rule-{index}"].CopyFrom(
            rbac_pb2.Policy(
                permissions=[common.permission(rule.match)],
                principals=common.principals(rule.sources, trust_domain),
            )
        )
    return http_rbac_pb2.RBACPerRoute(rbac=http_rbac_pb2.RBAC(rules=config))


def inbound_route_configuration(
    target: int, ports: Sequence[InboundPort], trust_domain: str
) -> route_pb2.RouteConfiguration:
    """Routes to the local cluster of the first service port served on ``target``
    (all of them reach the same local port)."""
    rules: list[InboundRule] = []
    for port in ports:
        for rule in port.rules:
            if rule not in rules:
                rules.append(rule)
    local = names.local_cluster(ports[0].service, ports[0].port)
    per_route = pack(rbac_per_route(rules, trust_domain))
    routes = []
    seen = set()
    for rule in rules:
        if rule.match in seen:
            continue
        seen.add(rule.match)
        route = route_components_pb2.Route(
            match=common.route_match(rule.match),
            route=route_components_pb2.RouteAction(cluster=local, timeout=common.seconds(0)),
        )
        route.typed_per_filter_config[names.HTTP_RBAC].CopyFrom(per_route)
        routes.append(route)
    return route_pb2.RouteConfiguration(
        name=names.inbound_route_config(target),
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=names.inbound_virtual_host(target), domains=["*"], routes=routes
            )
        ],
    )


def _inbound(target: int, ports: Sequence[InboundPort], trust_domain: str) -> Built:
    config = inbound_route_configuration(target, ports, trust_domain)
    return build(ROUTE, config.name, config)
