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

A client's Retry for a service (``OutboundPort.retry``) is the retry policy of every
route of the service's virtual host (`osm.xds.traffic.retry_policy`). A served
service's HTTP local rate limits (``InboundPort.rate_limits``) are per-filter configs
of the inbound virtual host and of one route per ``httpRoutes`` path
(`inbound_route_configuration`).

Outbound configurations can hold a virtual host per service of the mesh, and in
permissive mode one exists per namespace, so they are assembled, not rebuilt: each
virtual host is memoized with its references and its encoded bytes on the port's
*route view* (`route_view`: no addresses or upstreams, so endpoint changes do not
touch routes), the configuration's bytes are the concatenation of its hosts'
(`_outbound`), and a change re-encodes only the hosts whose port changed.

Same shape as every builder module: `outbound_resources` and `inbound_resources`
take exactly the policy values (and `Settings`) they read, and the context's caches.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from google.protobuf import wrappers_pb2

from osm.base.wellknown import ROUTE_TYPE
from osm.catalog.policy import (
    InboundPolicy,
    InboundPort,
    InboundRule,
    OutboundPort,
    OutboundRoute,
    RateLimits,
    is_http,
)
from osm.model.policy import RetryPolicy
from osm.xds import common, names, traffic
from osm.xds.context import Context, Settings
from osm.xds.resources import Built, Reference, build, from_serialized, pack, references


def outbound_resources(
    namespace: str, ports: tuple[OutboundPort, ...], context: Context
) -> list[Built]:
    """``rds-outbound.<port>`` (reads the client's ``namespace`` and each HTTP port's
    service, port, ClusterIP and routes)."""
    result: list[Built] = []
    by_port = _by_number(ports, context)
    for number, ports in by_port:
        result.append(
            context.memo.get(
                ("rds-outbound", number, namespace, ports),
                functools.partial(_outbound, number, namespace, ports, context),
            )
        )
    return result


def _by_number(
    ports: tuple[OutboundPort, ...], context: Context
) -> tuple[tuple[int, tuple[OutboundPort, ...]], ...]:
    """The route views of the HTTP ports, grouped by port number (sorted), memoized on
    the ports tuple itself (permissive namespaces share one)."""
    entry = context.cached(("rds-by-number", id(ports)), lambda: (ports, _group(ports, context)))
    if entry[0] is not ports:  # pragma: no cover - the entry keeps ``ports`` alive
        raise AssertionError("stale grouping")
    return entry[1]


def _group(
    ports: tuple[OutboundPort, ...], context: Context
) -> tuple[tuple[int, tuple[OutboundPort, ...]], ...]:
    by_port: dict[int, list[OutboundPort]] = {}
    for port in ports:
        if is_http(port.protocol):
            by_port.setdefault(port.port, []).append(route_view(port, context))
    return tuple((number, tuple(by_port[number])) for number in sorted(by_port))


def route_view(port: OutboundPort, context: Context) -> OutboundPort:
    """``port`` with only what a route configuration reads (no addresses to match, no
    upstreams), so that endpoint changes do not rebuild routes. A port that is already
    such a view is returned as it is; otherwise the view is memoized per port value."""
    if not port.match_ips and not port.upstreams:
        return port
    return context.cached(
        ("route-view", port), lambda: dataclasses.replace(port, match_ips=(), upstreams=())
    )


def inbound_resources(inbound: InboundPolicy, settings: Settings, context: Context) -> list[Built]:
    """``rds-inbound.<targetPort>``."""
    result: list[Built] = []
    by_target: dict[int, list[InboundPort]] = {}
    for port in inbound.ports:
        if is_http(port.protocol):
            by_target.setdefault(port.target_port, []).append(port)
    trust_domain = settings.trust_domain
    for target in sorted(by_target):
        inbound_ports = tuple(by_target[target])
        result.append(
            context.memo.get(
                ("rds-inbound", target, inbound_ports, trust_domain),
                functools.partial(_inbound, target, inbound_ports, trust_domain),
            )
        )
    return result


# -- outbound ----------------------------------------------------------------------------
UINT32_MAX = 2**32 - 1


def fitted_weights(weights: tuple[int, ...]) -> tuple[int, ...]:
    """Relative weights scaled down, when needed, so that their sum fits the uint32 that
    Envoy and gRPC require (merged TrafficSplits can sum past it); no positive weight
    becomes 0."""
    total = sum(weights)
    if total <= UINT32_MAX:
        return weights
    budget = UINT32_MAX - len(weights)
    return tuple(max(1, weight * budget // total) if weight else 0 for weight in weights)


def outbound_route(
    route: OutboundRoute, retry: RetryPolicy | None = None
) -> route_components_pb2.Route:
    action = route_components_pb2.RouteAction(timeout=common.seconds(0))
    if retry is not None:
        action.retry_policy.CopyFrom(traffic.retry_policy(retry))
    weights = fitted_weights(tuple(target.weight for target in route.targets))
    for target, weight in zip(route.targets, weights, strict=True):
        action.weighted_clusters.clusters.add(
            name=names.cluster(target.service, target.port),
            weight=wrappers_pb2.UInt32Value(value=weight),
        )
    return route_components_pb2.Route(match=common.route_match(route.match), route=action)


def virtual_host(port: OutboundPort, same_namespace: bool) -> route_components_pb2.VirtualHost:
    return route_components_pb2.VirtualHost(
        name=names.outbound_virtual_host(port.service),
        domains=names.hostnames(port.service, port.port, same_namespace, port.cluster_ip),
        routes=[outbound_route(route, port.retry) for route in port.routes],
    )


def outbound_route_configuration(
    number: int, namespace: str, ports: Sequence[OutboundPort], context: Context
) -> route_pb2.RouteConfiguration:
    config = _empty_outbound(number)
    for port in ports:
        config.virtual_hosts.append(_host(port, namespace, context)[0])
    return config


def _empty_outbound(number: int) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=names.outbound_route_config(number),
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )


_Host = tuple[route_components_pb2.VirtualHost, frozenset[Reference], bytes]


def _host(port: OutboundPort, namespace: str, context: Context) -> _Host:
    same = port.service.namespace == namespace
    view = route_view(port, context)
    return context.cached(("vhost", view, same), functools.partial(_virtual_host, view, same))


def _virtual_host(port: OutboundPort, same_namespace: bool) -> _Host:
    """A virtual host, what it names, and its encoding as a RouteConfiguration's
    ``virtual_hosts`` field (tag, length and deterministic serialization)."""
    host = virtual_host(port, same_namespace)
    encoded = route_pb2.RouteConfiguration(virtual_hosts=[host]).SerializeToString(
        deterministic=True
    )
    return host, frozenset(references(host)), encoded


def _outbound(
    number: int, namespace: str, ports: Sequence[OutboundPort], context: Context
) -> Built:
    """``rds-outbound.<number>``, assembled from its virtual hosts' memoized encodings.

    A deterministic serialization writes fields in field-number order (``name`` = 1,
    ``virtual_hosts`` = 2, ``validate_clusters`` = 7) and a repeated message field as
    one encoded entry per element, so the concatenation below is byte for byte what
    serializing the whole message gives (a test checks it); the message is parsed
    from those bytes only when someone reads it. References are the union of the
    hosts' (each found once, by `references`).

    The hosts of the previous configuration with this number and namespace are kept
    (a mutable cell in the context's generational cache): when the ports have the
    same length, only the hosts of ports that are not the very same objects are looked
    up again, so one split change costs O(ports) identity checks, not O(ports) lookups.
    """
    frame = context.cached(("rds-outbound-frame", number), lambda: _frame(number))
    last: list[Any] = context.cached(("rds-outbound-last", number, namespace), lambda: [(), []])
    last_ports, last_hosts = last
    if len(last_ports) == len(ports):
        hosts = list(last_hosts)
        for index, (before, port) in enumerate(zip(last_ports, ports, strict=True)):
            if before is not port:
                hosts[index] = _host(port, namespace, context)
    else:
        hosts = [_host(port, namespace, context) for port in ports]
    last[:] = [tuple(ports), hosts]
    serialized = b"".join((frame[0], *(h[2] for h in hosts), frame[1]))
    found: frozenset[Reference] = frozenset().union(*(h[1] for h in hosts))
    name = names.outbound_route_config(number)
    return from_serialized(ROUTE_TYPE, name, route_pb2.RouteConfiguration, serialized, found)


def _frame(number: int) -> tuple[bytes, bytes]:
    """The encoded ``name`` field, and the rest (``validate_clusters``), of an outbound
    configuration without virtual hosts."""
    empty = _empty_outbound(number).SerializeToString(deterministic=True)
    name_only = route_pb2.RouteConfiguration(name=names.outbound_route_config(number))
    head = name_only.SerializeToString(deterministic=True)
    assert empty.startswith(head)
    return head, empty[len(head) :]


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
    (all of them reach the same local port).

    With local rate limits (`rate_limits`): the virtual host carries the HTTP limit,
    and each ``httpRoutes`` path gets a route of its own, before the others, with its
    limit and the same RBAC policy set as every route (so it allows exactly what the
    others would)."""
    rules: list[InboundRule] = []
    for port in ports:
        for rule in port.rules:
            if rule not in rules:
                rules.append(rule)
    host = traffic.local_virtual_host(
        names.inbound_virtual_host(target),
        names.local_cluster(ports[0].service, ports[0].port),
        (rule.match for rule in rules),
        pack(rbac_per_route(rules, trust_domain)),
        rate_limits(ports),
    )
    return route_pb2.RouteConfiguration(
        name=names.inbound_route_config(target),
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        virtual_hosts=[host],
    )


def rate_limits(ports: Sequence[InboundPort]) -> RateLimits | None:
    """The HTTP limits of the route configuration the ``ports`` (one target port) share:
    the first port's that has any (two services of one pod on one target port share one
    configuration; the chain of a service without limits has no rate limit filter, so
    the limits apply to the services that have them)."""
    for port in ports:
        limits = port.rate_limits
        if limits is not None and (limits.http is not None or limits.routes):
            return limits
    return None


def _inbound(target: int, ports: Sequence[InboundPort], trust_domain: str) -> Built:
    config = inbound_route_configuration(target, ports, trust_domain)
    return build(ROUTE_TYPE, config.name, config)
