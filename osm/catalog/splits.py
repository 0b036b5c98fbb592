"""Traffic splits: how the traffic to one port of an apex Service is shared out.

The one idea: every TrafficSplit of an apex combines into one ordered list of routes
per apex port (`split_routes`): a route per match of the splits with ``matches``, in
split-name order, then one default route, which takes the merged splits without
``matches`` or, when none applies, goes to the apex itself.

Rules (split v1alpha2/v1alpha4): the apex's traffic goes to the backends by relative
weight; weight 0 backends are left out; a backend that does not exist or lacks the
apex's port is left out with a warning, and a split left without backends on a port is
ignored on it. Several splits on one apex (OSM honoured only the first) combine so:
splits without ``matches`` are merged by summing weights per backend, in name order,
into the default route; each split with ``matches`` (v1alpha4, HTTP ports only) adds
routes for its HTTPRouteGroups' matches, ahead of the default.
"""

from __future__ import annotations

from collections.abc import Callable

from osm.catalog import policy
from osm.catalog.ids import ServiceId
from osm.catalog.policy import OutboundRoute, RequestMatch, Upstream, WeightedTarget
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn
from osm.model.core import Service, ServicePort
from osm.model.smi import HTTPRouteGroup, TrafficSplit

UpstreamOf = Callable[[Service, ServicePort], Upstream]
"""The upstream of a service port (the catalog's cached `outbound.upstream`)."""


def split_routes(
    state: MeshState,
    apex: Service,
    port: ServicePort,
    splits: list[TrafficSplit],
    upstream: UpstreamOf,
    warn: Warn,
) -> tuple[tuple[OutboundRoute, ...], tuple[Upstream, ...]]:
    """The routes of one apex port under ``splits`` (the apex's, in name order), and the
    upstreams they name, sorted by service."""
    sid = ServiceId(apex.namespace, apex.name)
    upstreams: dict[ServiceId, Upstream] = {}
    matched: list[OutboundRoute] = []
    default: dict[ServiceId, int] = {}
    http = policy.is_http(port.app_protocol)
    for split in splits:
        targets: list[WeightedTarget] = []
        for backend in split.backends:
            if backend.weight == 0:
                continue
            bid = ServiceId(split.namespace, backend.service)
            service = state.service(bid)
            if service is None:
                warn(
                    ("service", sid),
                    split,
                    f'backend Service "{bid}" does not exist; it gets no traffic',
                )
                continue
            backend_port = service.port_named(port.port)
            if backend_port is None:
                warn(
                    ("service", sid),
                    split,
                    f'backend Service "{bid}" has no port {port.port} (a port of the '
                    "apex); it gets no traffic on that port",
                )
                continue
            upstreams[bid] = upstream(service, backend_port)
            targets.append(WeightedTarget(bid, port.port, backend.weight))
        if not targets:
            warn(
                ("service", sid),
                split,
                f"no backend can take traffic on port {port.port}; the split is "
                "ignored on that port",
            )
            continue
        if split.matches and not http:
            warn(
                ("service", sid),
                split,
                f"matches apply to HTTP only; port {port.port} is "
                f"{port.app_protocol}, so the split is ignored on it",
            )
            continue
        if split.matches:
            for group_name in split.matches:
                group = state.route_group(split.namespace, group_name)
                if not isinstance(group, HTTPRouteGroup):
                    warn(
                        ("service", sid),
                        split,
                        f'HTTPRouteGroup "{split.namespace}/{group_name}" does not '
                        "exist; its matches are not split",
                    )
                    continue
                for match in group.matches:
                    matched.append(OutboundRoute(RequestMatch.of(match), tuple(targets)))
        else:
            for target in targets:
                default[target.service] = default.get(target.service, 0) + target.weight
    if default:
        default_targets = tuple(
            WeightedTarget(service, port.port, weight)
            for service, weight in sorted(default.items())
        )
    else:
        default_targets = (WeightedTarget(sid, port.port, 1),)
        upstreams[sid] = upstream(apex, port)
    routes = (*matched, OutboundRoute(None, default_targets))
    return routes, tuple(upstreams[k] for k in sorted(upstreams))
