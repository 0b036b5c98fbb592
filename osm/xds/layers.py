"""Layers: the shared, memoized building blocks of every proxy's resource set.

The one idea: a layer's builder takes exactly the frozen values it reads (a slice of
the policy, `Settings`) after the context, which holds only caches, and `memoized`
keys the layer on those arguments: the cache key follows from the signature, so a
builder cannot read what its key leaves out. The slices:

* the *upstream* layer (outbound listener, clusters, load assignments, outbound
  root certificates; a client's egress chains, routes and clusters) reads only the
  route-free view of the outbound ports, egress, the client's `EgressPolicy`, the
  proxy kind, TLS and settings, so in permissive mode every proxy of the mesh without
  an Egress shares one;
* the *routes* layer (``rds-outbound.<port>``; a gRPC client's listeners) reads only
  the namespace, the ports' route view and the kind, so it is one per namespace
  (permissive) or per identity (SMI), and a TrafficSplit change rebuilds it and
  nothing else;
* the *inbound* layer (inbound listener, local clusters, the proxy's own secrets) is
  one per class of proxies (same `Proxy.class_key`) and not memoized: it reads the
  credential source, which is not a value.

Layers are kept in `Context.layers` between builds; `resource_set` stacks them into a
checked `osm.xds.snapshot.ResourceSet`, and `prune` forgets what no set uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import TypeVar, TypeVarTuple, cast

from osm.base.identity import Identity, ProxyKind
from osm.catalog.policy import (
    EgressPolicy,
    InboundPolicy,
    OutboundPolicy,
    OutboundPort,
    ProxyPolicy,
    TlsSettings,
    is_http,
)
from osm.xds import cds, eds, ingress, lds, rds, sds
from osm.xds import egress as egress_xds
from osm.xds.context import Context, CredentialSource, Settings
from osm.xds.resources import Built
from osm.xds.snapshot import (
    InconsistentSnapshot,
    Layer,
    OutboundLayers,
    ResourceSet,
    combine,
    join_outbound,
    make_layer,
)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def memoized(build: Callable[[Context, *Ts], T]) -> Callable[[Context, *Ts], T]:
    """``build``, memoized in ``Context.layers`` on its arguments after the context
    (which must all be hashable values): the key is the call itself. Results must not
    be None."""

    def cached(context: Context, *args: *Ts) -> T:
        key = (build, *args)
        found = context.layers.get(key)
        if found is None:
            found = context.layers[key] = build(context, *args)
        return cast(T, found)

    functools.update_wrapper(cached, build)
    return cached


@dataclass(frozen=True, slots=True)
class PortViews:
    """What a layer reads of the outbound ports: a view of each (`_upstream_view`,
    `osm.xds.rds.route_view`). Hash cached, as `OutboundPolicy`'s is: it keys layers,
    and a permissive policy holds every service of the mesh."""

    ports: tuple[OutboundPort, ...]
    _hash: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self.ports))

    def __hash__(self) -> int:
        return self._hash


@memoized
def upstream_layer(
    context: Context,
    settings: Settings,
    views: PortViews,
    egress: bool,
    egress_policy: EgressPolicy | None,
    kind: ProxyKind,
    tls: TlsSettings,
) -> Layer:
    """A sidecar's outbound listener, the clusters, their load assignments and the
    outbound root certificates, from the ports' upstream views (`_upstream_view`), and
    what the client's Egress objects add (`osm.xds.egress`: chains, ``rds-egress``
    route configurations, clusters; not for proxyless gRPC clients)."""
    ports = views.ports
    if kind == ProxyKind.GRPC:
        listeners: list[Built] = []
        egress_resources: list[Built] = []
    else:
        listeners = lds.outbound_resources(ports, egress, egress_policy, context, settings.tracing)
        egress_resources = egress_xds.resources(egress_policy, context)
    return make_layer(
        chain(
            listeners,
            cds.outbound_resources(ports, egress, kind, tls, settings, context),
            eds.outbound_resources(ports, context),
            sds.outbound_resources(ports, kind, settings, context),
            egress_resources,
        )
    )


@memoized
def routes_layer(context: Context, namespace: str, views: PortViews, kind: ProxyKind) -> Layer:
    """``rds-outbound.<port>``, and a proxyless gRPC client's listeners, from the
    ports' route views (`osm.xds.rds.route_view`)."""
    ports = views.ports
    routes = rds.outbound_resources(namespace, ports, context)
    if kind != ProxyKind.GRPC:
        return make_layer(routes)
    return make_layer(chain(routes, lds.grpc_listeners(namespace, ports, context)))


@memoized
def outbound_layers(
    context: Context,
    settings: Settings,
    outbound: OutboundPolicy,
    kind: ProxyKind,
    tls: TlsSettings,
) -> OutboundLayers:
    """The two outbound layers of a policy, each shared by every policy with the same
    view of its ports, checked against each other."""
    upstream_views = _views(
        context, "upstream-views", outbound.ports, lambda p: _upstream_view(p, context)
    )
    route_views = _views(
        context, "route-views", outbound.ports, lambda p: rds.route_view(p, context)
    )
    return join_outbound(
        upstream_layer(
            context,
            settings,
            upstream_views,
            outbound.egress,
            outbound.egress_policy,
            kind,
            tls,
        ),
        routes_layer(context, outbound.namespace, route_views, kind),
    )


def inbound_layer(
    context: Context,
    settings: Settings,
    credentials: CredentialSource | None,
    identity: Identity,
    kind: ProxyKind,
    inbound: InboundPolicy,
    tls: TlsSettings,
) -> Layer:
    """The inbound and prometheus listeners, inbound and ingress routes, local clusters
    and the proxy's own secrets. Raises MissingCredentials."""
    return make_layer(
        chain(
            lds.inbound_resources(kind, inbound, tls, settings, context),
            rds.inbound_resources(inbound, settings, context),
            ingress.route_resources(inbound, context),
            cds.inbound_resources(kind, inbound, context, settings.tracing),
            sds.inbound_resources(kind, identity, credentials, settings, context),
        )
    )


def _views(
    context: Context,
    tag: str,
    ports: tuple[OutboundPort, ...],
    view: Callable[[OutboundPort], OutboundPort],
) -> PortViews:
    """``view`` of every port, memoized on the tuple itself: in permissive mode every
    namespace's policy holds the same ports tuple."""
    entry = context.cached(
        (tag, id(ports)), lambda: (ports, PortViews(tuple(view(port) for port in ports)))
    )
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


def resource_set(
    policy: ProxyPolicy,
    settings: Settings,
    credentials: CredentialSource | None,
    context: Context,
    what: str = "",
    old: ResourceSet | None = None,
) -> ResourceSet:
    """Builds, checks and versions the resources of one policy.

    The outbound layers are built once per distinct view of the outbound policy and
    shared (see the module docstring); only the inbound layer is per policy. With
    ``old`` (the set this one replaces), an inbound layer of the same content is
    ``old``'s, and types whose layers did not change keep ``old``'s objects. Raises
    InconsistentSnapshot (naming ``what``, by default the identity) or
    MissingCredentials.
    """
    what = what or str(policy.identity)
    try:
        outbound = outbound_layers(context, settings, policy.outbound, policy.kind, policy.tls)
        inbound = inbound_layer(
            context,
            settings,
            credentials,
            policy.identity,
            policy.kind,
            policy.inbound,
            policy.tls,
        )
    except InconsistentSnapshot as error:
        raise InconsistentSnapshot(what, error.problems) from None
    if old is not None and len(old.layers) == 3:
        kept = old.layers[2]
        if kept.versions == inbound.versions and kept.unresolved == inbound.unresolved:
            inbound = kept
    return combine(policy, outbound, inbound, what, old)


def outbound_set(
    policy: ProxyPolicy,
    outbound: OutboundPolicy,
    old: ResourceSet,
    settings: Settings,
    context: Context,
    what: str,
) -> ResourceSet:
    """``old`` with a new outbound policy: its inbound layer is kept as it is."""
    new_policy = ProxyPolicy(policy.identity, policy.kind, policy.inbound, outbound, policy.tls)
    try:
        layers = outbound_layers(context, settings, outbound, policy.kind, policy.tls)
    except InconsistentSnapshot as error:
        raise InconsistentSnapshot(what, error.problems) from None
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


__all__ = [
    "PortViews",
    "inbound_layer",
    "memoized",
    "outbound_layers",
    "outbound_set",
    "prune",
    "resource_set",
    "routes_layer",
    "upstream_layer",
]
