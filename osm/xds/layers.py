"""Layers: the shared, memoized building blocks of every proxy's resource set.

The one idea: a layer is built from one *slice* of a policy, and is shared by every
policy with the same slice:

* the *upstream* layer (outbound listener, clusters, load assignments, outbound
  root certificates) reads only the route-free view of the outbound ports, the proxy
  kind and TLS settings, so in permissive mode every proxy of the mesh shares one;
* the *routes* layer (``rds-outbound.<port>``; a gRPC client's listeners) reads only
  the namespace and the ports' route view, so it is one per namespace (permissive) or
  per identity (SMI), and a TrafficSplit change rebuilds it and nothing else;
* the *inbound* layer (inbound listener, local clusters, the proxy's own secrets) is
  one per class of proxies (same `Proxy.class_key`).

Layers are kept in `Context.layers` between builds; `resource_set` stacks them into a
checked `osm.xds.snapshot.ResourceSet`, and `prune` forgets what no set uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from osm.catalog.policy import GRPC, OutboundPolicy, OutboundPort, ProxyPolicy, is_http
from osm.xds import cds, eds, lds, rds, sds
from osm.xds.context import Context
from osm.xds.resources import Built
from osm.xds.snapshot import (
    Layer,
    OutboundLayers,
    ResourceSet,
    combine,
    join_outbound,
    make_layer,
)

_UPSTREAM_BUILDERS: tuple[Callable[[ProxyPolicy, Context], list[Built]], ...] = (
    cds.outbound_resources,
    eds.outbound_resources,
    sds.outbound_resources,
)
_INBOUND_BUILDERS: tuple[Callable[[ProxyPolicy, Context], list[Built]], ...] = (
    lds.inbound_resources,
    rds.inbound_resources,
    cds.inbound_resources,
    eds.inbound_resources,
    sds.inbound_resources,
)


def _layer(
    policy: ProxyPolicy,
    context: Context,
    builders: Iterable[Callable[[ProxyPolicy, Context], list[Built]]],
    what: str,
) -> Layer:
    return make_layer((built for builder in builders for built in builder(policy, context)), what)


def _views(
    context: Context,
    tag: str,
    ports: tuple[OutboundPort, ...],
    view: Callable[[OutboundPort], OutboundPort],
) -> tuple[OutboundPort, ...]:
    """``view`` of every port, memoized on the tuple itself: in permissive mode every
    namespace's policy holds the same ports tuple."""
    entry = context.cached((tag, id(ports)), lambda: (ports, tuple(view(port) for port in ports)))
    if entry[0] is not ports:  # pragma: no cover - the entry keeps ``ports`` alive
        raise AssertionError("stale port views")
    return entry[1]


def _upstream_view(port: OutboundPort, context: Context) -> OutboundPort:
    """What the upstream layer reads of a port: everything but an HTTP port's routes
    (clusters come from ``upstreams``; HTTP routing is RDS, in the routes layer)."""
    if not is_http(port.protocol) or not port.routes:
        return port
    return context.cached(("upstream-view", port), lambda: _replace_routes(port))


def _replace_routes(port: OutboundPort) -> OutboundPort:
    return OutboundPort(
        port.service, port.port, port.protocol, port.cluster_ip, port.match_ips, (), port.upstreams
    )


def outbound_layers(policy: ProxyPolicy, context: Context, what: str) -> OutboundLayers:
    """The outbound layers of ``policy``, shared by every policy with the same views."""
    key = ("outbound", policy.outbound, policy.kind, policy.tls)
    found = context.layers.get(key)
    if isinstance(found, OutboundLayers):
        return found
    outbound = policy.outbound
    upstream_ports = _views(
        context, "upstream-views", outbound.ports, lambda p: _upstream_view(p, context)
    )
    route_ports = _views(
        context, "route-views", outbound.ports, lambda p: rds.route_view(p, context)
    )
    upstreams = _cached_layer(
        context,
        ("upstreams", OutboundPolicy("", upstream_ports, outbound.egress), policy.kind, policy.tls),
        policy,
        _UPSTREAM_BUILDERS
        if policy.kind == GRPC
        else (lds.outbound_resources, *_UPSTREAM_BUILDERS),
        what,
    )
    routes = _cached_layer(
        context,
        ("routes", OutboundPolicy(outbound.namespace, route_ports, False), policy.kind, policy.tls),
        policy,
        (rds.outbound_resources, lds.outbound_resources)
        if policy.kind == GRPC
        else (rds.outbound_resources,),
        what,
    )
    pair_key = ("pair", upstreams, routes)
    pair = context.layers.get(pair_key)
    if not isinstance(pair, OutboundLayers):
        pair = join_outbound(upstreams, routes, what)
        context.layers[pair_key] = pair
    context.layers[key] = pair
    return pair


def _cached_layer(
    context: Context,
    key: tuple[object, ...],
    policy: ProxyPolicy,
    builders: Iterable[Callable[[ProxyPolicy, Context], list[Built]]],
    what: str,
) -> Layer:
    """The layer built from the policy slice ``key[1]`` (built from a policy that holds
    only that slice, so the builders cannot read anything else)."""
    found = context.layers.get(key)
    if isinstance(found, Layer):
        return found
    outbound = key[1]
    assert isinstance(outbound, OutboundPolicy)
    sliced = ProxyPolicy(policy.identity, policy.kind, policy.inbound, outbound, policy.tls)
    layer = _layer(sliced, context, builders, what)
    context.layers[key] = layer
    return layer


def resource_set(
    policy: ProxyPolicy, context: Context, what: str = "", old: ResourceSet | None = None
) -> ResourceSet:
    """Builds, checks and versions the resources of one policy.

    The outbound layers are built once per distinct view of the outbound policy and
    shared (see the module docstring); only the inbound layer is per policy. With
    ``old`` (the set this one replaces), an inbound layer of the same content is
    ``old``'s, and types whose layers did not change keep ``old``'s objects. Raises
    InconsistentSnapshot or MissingCredentials.
    """
    what = what or str(policy.identity)
    outbound = outbound_layers(policy, context, what)
    inbound = _layer(policy, context, _INBOUND_BUILDERS, what)
    if old is not None and len(old.layers) == 3:
        kept = old.layers[2]
        if kept.versions == inbound.versions and kept.unresolved == inbound.unresolved:
            inbound = kept
    return combine(policy, outbound, inbound, what, old)


def outbound_set(
    policy: ProxyPolicy, outbound: OutboundPolicy, old: ResourceSet, context: Context, what: str
) -> ResourceSet:
    """``old`` with a new outbound policy: its inbound layer is kept as it is."""
    new_policy = ProxyPolicy(policy.identity, policy.kind, policy.inbound, outbound, policy.tls)
    layers = outbound_layers(new_policy, context, what)
    return combine(new_policy, layers, old.layers[2], what, old)


def prune(context: Context, sets: Iterable[ResourceSet]) -> None:
    """Drops the memoized resources, layers and parts that no set of ``sets`` uses."""
    layers: dict[int, Layer] = {}
    for resources in sets:
        for layer in resources.layers:
            layers[id(layer)] = layer
    live: set[int] = {id(lds._NONE)}
    for layer in layers.values():
        for typed in layer.by_type.values():
            live.update(id(b) for b in typed.values())
    context.memo.retain(live)
    context.layers = {
        key: value
        for key, value in context.layers.items()
        if all(id(layer) in layers for layer in _layers_of(value))
    }
    context.new_generation()


def _layers_of(value: object) -> tuple[Layer, ...]:
    if isinstance(value, OutboundLayers):
        return (value.upstreams, value.routes)
    assert isinstance(value, Layer)
    return (value,)


__all__ = ["outbound_layers", "outbound_set", "prune", "resource_set"]
