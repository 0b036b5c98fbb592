"""RDS: a RouteConfiguration -> `model.RouteConfig`: virtual hosts, route matches, weighted
clusters, timeouts, retries (with their backoff), per-route RBAC and local rate limits
(a virtual host's limit is carried on each of its routes that has none of its own).

The one idea: Envoy's defaults are written into the model here (a 15 s route timeout, one
retry), so the router never needs to know them. `lds` reuses `route_configuration` for an
inline ``route_config`` and `weighted_targets` for tcp_proxy.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2

from osm.base import wellknown
from osm.proxy import model
from osm.proxy.translate import common, rate_limit, rbac
from osm.proxy.translate.walker import Walker

_HTTP_RBAC_PER_ROUTE_TYPE = wellknown.TYPE_PREFIX + http_rbac_pb2.RBACPerRoute.DESCRIPTOR.full_name

DEFAULT_ROUTE_TIMEOUT = 15.0  # Envoy's default when a route sets no timeout

_RETRY_ON = frozenset(
    {"5xx", "gateway-error", "connect-failure", "reset", "retriable-status-codes"}
)


def _retry_policy(walker: Walker, message: Any, path: str) -> model.RetryPolicy:
    walker.check(
        message,
        path,
        ("retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "retry_back_off"),
    )
    base_interval: float | None = None
    if message.HasField("retry_back_off"):
        where = f"{path}.retry_back_off"
        walker.check(message.retry_back_off, where, ("base_interval",))
        base_interval = walker.duration(
            message.retry_back_off.base_interval, f"{where}.base_interval"
        )
        if base_interval <= 0:
            raise walker.fail(f"{where}.base_interval", "must be positive")
    tokens = frozenset(token.strip() for token in message.retry_on.split(",") if token.strip())
    unknown = tokens - _RETRY_ON
    if unknown:
        raise walker.fail(
            f"{path}.retry_on",
            f"{', '.join(sorted(unknown))} not supported ({', '.join(sorted(_RETRY_ON))})",
        )
    num_retries = message.num_retries.value if message.HasField("num_retries") else 1
    per_try = (
        walker.duration(message.per_try_timeout, f"{path}.per_try_timeout") or None
        if message.HasField("per_try_timeout")
        else None
    )
    return model.RetryPolicy(
        tokens, num_retries, per_try, frozenset(message.retriable_status_codes), base_interval
    )


def weighted_targets(walker: Walker, clusters: Any, path: str) -> tuple[model.WeightedTarget, ...]:
    targets: list[model.WeightedTarget] = []
    for index, item in enumerate(clusters):
        where = f"{path}[{index}]"
        walker.check(item, where, ("name", "weight"))
        if not item.name:
            raise walker.fail(f"{where}.name", "a cluster name is required")
        weight = item.weight.value if hasattr(item.weight, "value") else int(item.weight)
        targets.append(model.WeightedTarget(item.name, weight))
    if not targets:
        raise walker.fail(path, "at least one cluster is required")
    if sum(target.weight for target in targets) <= 0:
        raise walker.fail(path, "the sum of the weights must be positive")
    return tuple(targets)


def _route_action(walker: Walker, message: Any, path: str) -> model.RouteAction:
    walker.check(
        message,
        path,
        ("cluster", "weighted_clusters", "timeout", "retry_policy", "prefix_rewrite"),
    )
    which = message.WhichOneof("cluster_specifier")
    if which == "cluster":
        targets: tuple[model.WeightedTarget, ...] = (model.WeightedTarget(message.cluster, 1),)
    elif which == "weighted_clusters":
        where = f"{path}.weighted_clusters"
        walker.check(message.weighted_clusters, where, ("clusters", "total_weight"))
        targets = weighted_targets(walker, message.weighted_clusters.clusters, f"{where}.clusters")
    else:
        raise walker.fail(path, "a cluster specifier is required (cluster, weighted_clusters)")
    timeout: float | None = DEFAULT_ROUTE_TIMEOUT
    if message.HasField("timeout"):
        timeout = walker.duration(message.timeout, f"{path}.timeout") or None
    retry = (
        _retry_policy(walker, message.retry_policy, f"{path}.retry_policy")
        if message.HasField("retry_policy")
        else None
    )
    total = sum(target.weight for target in targets)
    rewrite = message.prefix_rewrite if message.prefix_rewrite else None
    return model.RouteAction(targets, total, timeout, retry, rewrite)


def _route_match(walker: Walker, message: Any, path: str) -> model.RouteMatch:
    walker.check(message, path, ("prefix", "path", "safe_regex", "case_sensitive", "headers"))
    case_sensitive = message.case_sensitive.value if message.HasField("case_sensitive") else True
    headers = tuple(
        common.header_match(walker, item, f"{path}.headers[{index}]")
        for index, item in enumerate(message.headers)
    )
    which = message.WhichOneof("path_specifier")
    if which == "safe_regex":
        pattern = common.regex_matcher(walker, message.safe_regex, path)
        if not case_sensitive:
            pattern = re.compile(pattern.pattern, re.IGNORECASE)
        return model.RouteMatch("regex", "", pattern, case_sensitive, headers)
    if which in ("prefix", "path"):
        kind: Literal["prefix", "path"] = which
        return model.RouteMatch(kind, getattr(message, which), None, case_sensitive, headers)
    raise walker.fail(path, "a path specifier is required (prefix, path, safe_regex)")


def _per_filter(
    walker: Walker, configs: Any, path: str, limit: model.LocalRateLimit | None
) -> tuple[model.RbacRules | None, model.LocalRateLimit | None]:
    """A route's ``typed_per_filter_config``: its RBAC rules, and its local rate limit
    (``limit``, its virtual host's, unless it has its own)."""
    rules: model.RbacRules | None = None
    for name in sorted(configs):
        where = f"{path}[{name!r}]"
        if name == rate_limit.HTTP_FILTER:
            limit = rate_limit.per_route(walker, configs[name], where)
            continue
        if name != "envoy.filters.http.rbac":
            raise walker.fail(
                where,
                "per-filter config supported only for envoy.filters.http.rbac and "
                f"{rate_limit.HTTP_FILTER}",
            )
        per_route: http_rbac_pb2.RBACPerRoute = walker.unpack(
            configs[name], where, {_HTTP_RBAC_PER_ROUTE_TYPE: http_rbac_pb2.RBACPerRoute}
        )
        walker.check(per_route, where, ("rbac",))
        if per_route.HasField("rbac"):
            walker.check(per_route.rbac, f"{where}.rbac", ("rules",))
            if per_route.rbac.HasField("rules"):
                rules = rbac.rules(walker, per_route.rbac.rules, f"{where}.rbac.rules")
            else:  # an empty RBAC per route disables the filter for that route
                rules = model.RbacRules("DENY", ())
        else:
            rules = model.RbacRules("DENY", ())
    return rules, limit


def _host_limit(walker: Walker, configs: Any, path: str) -> model.LocalRateLimit | None:
    """A virtual host's ``typed_per_filter_config``: its local rate limit only."""
    limit: model.LocalRateLimit | None = None
    for name in sorted(configs):
        where = f"{path}[{name!r}]"
        if name != rate_limit.HTTP_FILTER:
            raise walker.fail(
                where, f"per-filter config supported only for {rate_limit.HTTP_FILTER}"
            )
        limit = rate_limit.per_route(walker, configs[name], where)
    return limit


def route_configuration(walker: Walker, message: Any, path: str) -> model.RouteConfig:
    walker.check(message, path, ("name", "virtual_hosts", "validate_clusters"))
    virtual_hosts: list[model.VirtualHost] = []
    prefix = f"{path}." if path else ""
    for vh_index, vhost in enumerate(message.virtual_hosts):
        vh_path = f"{prefix}virtual_hosts[{vh_index}]"
        walker.check(vhost, vh_path, ("name", "domains", "routes", "typed_per_filter_config"))
        host_limit = _host_limit(
            walker, vhost.typed_per_filter_config, f"{vh_path}.typed_per_filter_config"
        )
        domains = tuple(domain.lower() for domain in vhost.domains)
        if not domains:
            raise walker.fail(f"{vh_path}.domains", "at least one domain is required")
        routes: list[model.Route] = []
        for index, route in enumerate(vhost.routes):
            where = f"{vh_path}.routes[{index}]"
            walker.check(route, where, ("name", "match", "route", "typed_per_filter_config"))
            if not route.HasField("route"):
                raise walker.fail(where, "only route actions are supported (route)")
            rules, limit = _per_filter(
                walker,
                route.typed_per_filter_config,
                f"{where}.typed_per_filter_config",
                host_limit,
            )
            routes.append(
                model.Route(
                    route.name,
                    _route_match(walker, route.match, f"{where}.match"),
                    _route_action(walker, route.route, f"{where}.route"),
                    rules,
                    limit,
                )
            )
        virtual_hosts.append(model.VirtualHost(vhost.name, domains, tuple(routes)))
    return model.RouteConfig(message.name, tuple(virtual_hosts))


def translate(message: route_pb2.RouteConfiguration) -> model.RouteConfig:
    """RouteConfiguration -> RouteConfig; raises ConfigError."""
    walker = Walker("RouteConfiguration", message.name)
    return route_configuration(walker, message, "")
