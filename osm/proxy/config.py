"""Envoy v3 protos -> the sidecar's frozen configuration model (`osm.proxy.model`).

The one idea: every message is read through an explicit allow-list of its fields
(`ListFields()` returns exactly the non-default ones), so a field or filter that the sidecar
does not implement makes the translation fail with a `ConfigError` naming the resource, the
field path and what is supported. The xDS client turns that error into a NACK; config is
never silently ignored.

`translate_*` turn one resource into its model; `assemble` checks that a whole set
(listeners, routes, clusters, load assignments, secrets) is consistent and returns the
immutable `ProxyConfig` the runtime switches to in one step.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2

from osm.base import wellknown
from osm.proxy import model

# ---------------------------------------------------------------------------------------------
# Type URLs (the resources' own are `osm.base.wellknown`'s)

_PREFIX = wellknown.TYPE_PREFIX
_HCM_TYPE = _PREFIX + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_TCP_PROXY_TYPE = _PREFIX + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name
_NETWORK_RBAC_TYPE = _PREFIX + network_rbac_pb2.RBAC.DESCRIPTOR.full_name
_HTTP_RBAC_TYPE = _PREFIX + http_rbac_pb2.RBAC.DESCRIPTOR.full_name
_HTTP_RBAC_PER_ROUTE_TYPE = _PREFIX + http_rbac_pb2.RBACPerRoute.DESCRIPTOR.full_name
_ROUTER_TYPE = _PREFIX + router_pb2.Router.DESCRIPTOR.full_name
_DOWNSTREAM_TLS_TYPE = _PREFIX + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_UPSTREAM_TLS_TYPE = _PREFIX + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name
_HTTP_PROTOCOL_OPTIONS_TYPE = (
    _PREFIX + http_protocol_options_pb2.HttpProtocolOptions.DESCRIPTOR.full_name
)

_LISTENER_FILTERS = {
    "envoy.filters.listener.original_dst": "original_dst",
    "envoy.filters.listener.tls_inspector": "tls_inspector",
    "envoy.filters.listener.http_inspector": "http_inspector",
}
_LISTENER_FILTER_TYPES = {
    _PREFIX + "envoy.extensions.filters.listener.original_dst.v3.OriginalDst": "original_dst",
    _PREFIX + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector": "tls_inspector",
    _PREFIX + "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector": (
        "http_inspector"
    ),
}

DEFAULT_ROUTE_TIMEOUT = 15.0  # Envoy's default when a route sets no timeout
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_REQUEST_HEADERS_KB = 60


class ConfigError(Exception):
    """A resource the sidecar cannot apply; the message is what the NACK carries."""

    def __init__(self, type_name: str, resource_name: str, field_path: str, message: str):
        self.type_name = type_name
        self.resource_name = resource_name
        self.field_path = field_path
        self.message = message
        super().__init__(f"{type_name} {resource_name!r}: {field_path}: {message}")


class MissingReference(ConfigError):
    """A resource names another that is not (yet) present: wait for it, or NACK at the end."""


# ---------------------------------------------------------------------------------------------
# The allow-list walker


_M = TypeVar("_M")


class _Walker:
    """Translation context for one resource: where we are, and how to refuse."""

    def __init__(self, type_name: str, resource_name: str):
        self.type_name = type_name
        self.resource_name = resource_name

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(self.type_name, self.resource_name, path, message)

    def check(self, message: Any, path: str, allowed: Iterable[str]) -> None:
        allowed_set = set(allowed)
        for descriptor, _ in message.ListFields():
            if descriptor.name not in allowed_set:
                where = f"{path}.{descriptor.name}" if path else descriptor.name
                supported = ", ".join(sorted(allowed_set)) or "none"
                raise self.fail(
                    where,
                    f"field not supported by the Python sidecar "
                    f"(supported in {message.DESCRIPTOR.name}: {supported})",
                )

    def unpack(self, any_message: any_pb2.Any, path: str, expected: Mapping[str, type[_M]]) -> _M:
        cls = expected.get(any_message.type_url)
        if cls is None:
            raise self.fail(
                path,
                f"type {any_message.type_url or '(empty)'} not supported "
                f"(supported: {', '.join(sorted(expected))})",
            )
        message = cls()
        if not any_message.Unpack(message):
            raise self.fail(path, f"cannot unpack {any_message.type_url}")
        return message

    def regex(self, pattern: str, path: str) -> re.Pattern[str]:
        try:
            return re.compile(pattern)
        except re.error as error:
            raise self.fail(path, f"invalid regex {pattern!r}: {error}") from None

    def duration(self, message: Any, path: str) -> float:
        self.check(message, path, ("seconds", "nanos"))
        value = float(message.seconds) + float(message.nanos) / 1e9
        if value < 0:
            raise self.fail(path, "must not be negative")
        return value

    def config_source(self, message: Any, path: str) -> None:
        self.check(message, path, ("ads", "resource_api_version", "initial_fetch_timeout"))


def _string_match(walker: _Walker, message: Any, path: str) -> model.StringMatch:
    walker.check(
        message, path, ("exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
    )
    which = message.WhichOneof("match_pattern")
    ignore_case = bool(message.ignore_case)
    if which == "safe_regex":
        if ignore_case:
            raise walker.fail(f"{path}.ignore_case", "not supported with safe_regex")
        return model.StringMatch(
            "regex", "", False, _regex_matcher(walker, message.safe_regex, path)
        )
    if which is None:
        raise walker.fail(path, "a match pattern is required (exact, prefix, suffix, ...)")
    kind: Literal["exact", "prefix", "suffix", "contains"] = which
    return model.StringMatch(kind, getattr(message, which), ignore_case)


def _regex_matcher(walker: _Walker, message: Any, path: str) -> re.Pattern[str]:
    walker.check(message, f"{path}.safe_regex", ("regex", "google_re2"))
    if message.HasField("google_re2"):
        walker.check(message.google_re2, f"{path}.safe_regex.google_re2", ())
    return walker.regex(message.regex, f"{path}.safe_regex.regex")


def _data_source(walker: _Walker, message: Any, path: str) -> bytes:
    walker.check(message, path, ("inline_bytes", "inline_string", "filename"))
    which = message.WhichOneof("specifier")
    if which == "inline_bytes":
        return bytes(message.inline_bytes)
    if which == "inline_string":
        return str(message.inline_string).encode()
    if which == "filename":
        try:
            return Path(message.filename).read_bytes()
        except OSError as error:
            raise walker.fail(f"{path}.filename", f"cannot read: {error}") from None
    raise walker.fail(path, "empty data source")


def _san_matchers(walker: _Walker, context: Any, path: str) -> tuple[model.SanMatcher, ...]:
    matchers: list[model.SanMatcher] = []
    for index, matcher in enumerate(context.match_subject_alt_names):
        where = f"{path}.match_subject_alt_names[{index}]"
        matchers.append(model.SanMatcher("any", _string_match(walker, matcher, where)))
    for index, typed in enumerate(context.match_typed_subject_alt_names):
        where = f"{path}.match_typed_subject_alt_names[{index}]"
        walker.check(typed, where, ("san_type", "matcher"))
        san_type = common_pb2.SubjectAltNameMatcher.SanType.Name(typed.san_type)
        if san_type not in ("URI", "DNS"):
            raise walker.fail(f"{where}.san_type", f"{san_type} not supported (URI, DNS)")
        matchers.append(
            model.SanMatcher(san_type, _string_match(walker, typed.matcher, f"{where}.matcher"))
        )
    return tuple(matchers)


# ---------------------------------------------------------------------------------------------
# RBAC


def _principal(walker: _Walker, message: Any, path: str) -> model.Principal:
    walker.check(message, path, ("any", "authenticated", "or_ids", "and_ids", "not_id"))
    which = message.WhichOneof("identifier")
    if which == "any":
        return model.AnyId()
    if which == "authenticated":
        where = f"{path}.authenticated"
        walker.check(message.authenticated, where, ("principal_name",))
        if message.authenticated.HasField("principal_name"):
            name = message.authenticated.principal_name
            return model.Authenticated(_string_match(walker, name, f"{where}.principal_name"))
        return model.Authenticated(None)
    if which in ("or_ids", "and_ids"):
        ids = tuple(
            _principal(walker, item, f"{path}.{which}.ids[{index}]")
            for index, item in enumerate(getattr(message, which).ids)
        )
        return model.OrIds(ids) if which == "or_ids" else model.AndIds(ids)
    if which == "not_id":
        return model.NotId(_principal(walker, message.not_id, f"{path}.not_id"))
    raise walker.fail(path, "a principal is required (any, authenticated, or_ids, ...)")


def _permission(walker: _Walker, message: Any, path: str) -> model.Permission:
    walker.check(
        message,
        path,
        ("any", "destination_port", "or_rules", "and_rules", "not_rule", "url_path", "header"),
    )
    which = message.WhichOneof("rule")
    if which == "any":
        return model.AnyPermission()
    if which == "url_path":
        where = f"{path}.url_path"
        walker.check(message.url_path, where, ("path",))
        return model.UrlPath(_string_match(walker, message.url_path.path, f"{where}.path"))
    if which == "header":
        return model.HeaderPermission(_header_match(walker, message.header, f"{path}.header"))
    if which == "destination_port":
        return model.DestinationPort(int(message.destination_port))
    if which in ("or_rules", "and_rules"):
        rules = tuple(
            _permission(walker, item, f"{path}.{which}.rules[{index}]")
            for index, item in enumerate(getattr(message, which).rules)
        )
        return model.OrRules(rules) if which == "or_rules" else model.AndRules(rules)
    if which == "not_rule":
        return model.NotRule(_permission(walker, message.not_rule, f"{path}.not_rule"))
    raise walker.fail(path, "a permission is required (any, destination_port, or_rules, ...)")


def _rbac_rules(walker: _Walker, message: rbac_pb2.RBAC, path: str) -> model.RbacRules:
    walker.check(message, path, ("action", "policies"))
    action = rbac_pb2.RBAC.Action.Name(message.action)
    if action not in ("ALLOW", "DENY"):
        raise walker.fail(f"{path}.action", f"{action} not supported (ALLOW, DENY)")
    policies: list[tuple[str, model.Policy]] = []
    for name in sorted(message.policies):
        policy = message.policies[name]
        where = f"{path}.policies[{name!r}]"
        walker.check(policy, where, ("permissions", "principals"))
        permissions = tuple(
            _permission(walker, item, f"{where}.permissions[{index}]")
            for index, item in enumerate(policy.permissions)
        )
        principals = tuple(
            _principal(walker, item, f"{where}.principals[{index}]")
            for index, item in enumerate(policy.principals)
        )
        policies.append((name, model.Policy(permissions, principals)))
    return model.RbacRules("ALLOW" if action == "ALLOW" else "DENY", tuple(policies))


# ---------------------------------------------------------------------------------------------
# Routes


_RETRY_ON = frozenset(
    {"5xx", "gateway-error", "connect-failure", "reset", "retriable-status-codes"}
)


def _retry_policy(walker: _Walker, message: Any, path: str) -> model.RetryPolicy:
    walker.check(
        message, path, ("retry_on", "num_retries", "per_try_timeout", "retriable_status_codes")
    )
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
        tokens, num_retries, per_try, frozenset(message.retriable_status_codes)
    )


def _weighted_targets(
    walker: _Walker, clusters: Any, path: str
) -> tuple[model.WeightedTarget, ...]:
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


def _route_action(walker: _Walker, message: Any, path: str) -> model.RouteAction:
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
        targets = _weighted_targets(walker, message.weighted_clusters.clusters, f"{where}.clusters")
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


def _header_match(walker: _Walker, message: Any, path: str) -> model.HeaderMatch:
    walker.check(
        message,
        path,
        (
            "name",
            "exact_match",
            "safe_regex_match",
            "present_match",
            "string_match",
            "invert_match",
        ),
    )
    name = message.name.lower()
    invert = bool(message.invert_match)
    which = message.WhichOneof("header_match_specifier")
    if which == "exact_match":
        return model.HeaderMatch(
            name, "match", model.StringMatch("exact", message.exact_match), invert=invert
        )
    if which == "safe_regex_match":
        pattern = _regex_matcher(walker, message.safe_regex_match, f"{path}.safe_regex_match")
        return model.HeaderMatch(
            name, "match", model.StringMatch("regex", "", False, pattern), invert=invert
        )
    if which == "string_match":
        matcher = _string_match(walker, message.string_match, f"{path}.string_match")
        return model.HeaderMatch(name, "match", matcher, invert=invert)
    if which == "present_match":
        return model.HeaderMatch(name, "present", None, bool(message.present_match), invert)
    # Envoy: no specifier means "the header is present".
    return model.HeaderMatch(name, "present", None, True, invert)


def _route_match(walker: _Walker, message: Any, path: str) -> model.RouteMatch:
    walker.check(message, path, ("prefix", "path", "safe_regex", "case_sensitive", "headers"))
    case_sensitive = message.case_sensitive.value if message.HasField("case_sensitive") else True
    headers = tuple(
        _header_match(walker, item, f"{path}.headers[{index}]")
        for index, item in enumerate(message.headers)
    )
    which = message.WhichOneof("path_specifier")
    if which == "safe_regex":
        pattern = _regex_matcher(walker, message.safe_regex, path)
        if not case_sensitive:
            pattern = re.compile(pattern.pattern, re.IGNORECASE)
        return model.RouteMatch("regex", "", pattern, case_sensitive, headers)
    if which in ("prefix", "path"):
        kind: Literal["prefix", "path"] = which
        return model.RouteMatch(kind, getattr(message, which), None, case_sensitive, headers)
    raise walker.fail(path, "a path specifier is required (prefix, path, safe_regex)")


def _per_route_rbac(walker: _Walker, configs: Any, path: str) -> model.RbacRules | None:
    rules: model.RbacRules | None = None
    for name in sorted(configs):
        where = f"{path}[{name!r}]"
        if name != "envoy.filters.http.rbac":
            raise walker.fail(where, "per-filter config supported only for envoy.filters.http.rbac")
        per_route: http_rbac_pb2.RBACPerRoute = walker.unpack(
            configs[name], where, {_HTTP_RBAC_PER_ROUTE_TYPE: http_rbac_pb2.RBACPerRoute}
        )
        walker.check(per_route, where, ("rbac",))
        if per_route.HasField("rbac"):
            walker.check(per_route.rbac, f"{where}.rbac", ("rules",))
            if per_route.rbac.HasField("rules"):
                rules = _rbac_rules(walker, per_route.rbac.rules, f"{where}.rbac.rules")
            else:  # an empty RBAC per route disables the filter for that route
                rules = model.RbacRules("DENY", ())
        else:
            rules = model.RbacRules("DENY", ())
    return rules


def _route_configuration(walker: _Walker, message: Any, path: str) -> model.RouteConfig:
    walker.check(message, path, ("name", "virtual_hosts", "validate_clusters"))
    virtual_hosts: list[model.VirtualHost] = []
    prefix = f"{path}." if path else ""
    for vh_index, vhost in enumerate(message.virtual_hosts):
        vh_path = f"{prefix}virtual_hosts[{vh_index}]"
        walker.check(vhost, vh_path, ("name", "domains", "routes"))
        domains = tuple(domain.lower() for domain in vhost.domains)
        if not domains:
            raise walker.fail(f"{vh_path}.domains", "at least one domain is required")
        routes: list[model.Route] = []
        for index, route in enumerate(vhost.routes):
            where = f"{vh_path}.routes[{index}]"
            walker.check(route, where, ("name", "match", "route", "typed_per_filter_config"))
            if not route.HasField("route"):
                raise walker.fail(where, "only route actions are supported (route)")
            routes.append(
                model.Route(
                    route.name,
                    _route_match(walker, route.match, f"{where}.match"),
                    _route_action(walker, route.route, f"{where}.route"),
                    _per_route_rbac(
                        walker, route.typed_per_filter_config, f"{where}.typed_per_filter_config"
                    ),
                )
            )
        virtual_hosts.append(model.VirtualHost(vhost.name, domains, tuple(routes)))
    return model.RouteConfig(message.name, tuple(virtual_hosts))


def translate_route_configuration(message: route_pb2.RouteConfiguration) -> model.RouteConfig:
    """RouteConfiguration -> RouteConfig; raises ConfigError."""
    walker = _Walker("RouteConfiguration", message.name)
    return _route_configuration(walker, message, "")


# ---------------------------------------------------------------------------------------------
# Listeners


def _common_tls(walker: _Walker, message: Any, path: str) -> tuple[str | None, str | None, Any]:
    """-> (certificate secret, validation secret, default validation context or None)."""
    walker.check(
        message,
        path,
        (
            "tls_certificate_sds_secret_configs",
            "validation_context_sds_secret_config",
            "combined_validation_context",
            "alpn_protocols",
            "tls_params",
        ),
    )
    if message.HasField("tls_params"):
        walker.check(
            message.tls_params,
            f"{path}.tls_params",
            ("tls_minimum_protocol_version", "tls_maximum_protocol_version"),
        )
    cert: str | None = None
    configs = message.tls_certificate_sds_secret_configs
    if len(configs) > 1:
        raise walker.fail(f"{path}.tls_certificate_sds_secret_configs", "at most one is supported")
    for index, sds in enumerate(configs):
        where = f"{path}.tls_certificate_sds_secret_configs[{index}]"
        walker.check(sds, where, ("name", "sds_config"))
        walker.config_source(sds.sds_config, f"{where}.sds_config")
        cert = sds.name
    validation: str | None = None
    default_context: Any = None
    which = message.WhichOneof("validation_context_type")
    if which == "validation_context_sds_secret_config":
        sds = message.validation_context_sds_secret_config
        where = f"{path}.validation_context_sds_secret_config"
        walker.check(sds, where, ("name", "sds_config"))
        walker.config_source(sds.sds_config, f"{where}.sds_config")
        validation = sds.name
    elif which == "combined_validation_context":
        combined = message.combined_validation_context
        where = f"{path}.combined_validation_context"
        walker.check(
            combined, where, ("default_validation_context", "validation_context_sds_secret_config")
        )
        default_context = combined.default_validation_context
        walker.check(
            default_context,
            f"{where}.default_validation_context",
            ("match_subject_alt_names", "match_typed_subject_alt_names"),
        )
        sds = combined.validation_context_sds_secret_config
        walker.check(sds, f"{where}.validation_context_sds_secret_config", ("name", "sds_config"))
        walker.config_source(sds.sds_config, f"{where}.validation_context_sds_secret_config")
        validation = sds.name or None
    return cert, validation, default_context


def _downstream_tls(walker: _Walker, socket: Any, path: str) -> model.DownstreamTls:
    walker.check(socket, path, ("name", "typed_config"))
    context: tls_pb2.DownstreamTlsContext = walker.unpack(
        socket.typed_config,
        f"{path}.typed_config",
        {_DOWNSTREAM_TLS_TYPE: tls_pb2.DownstreamTlsContext},
    )
    where = f"{path}.typed_config"
    walker.check(context, where, ("common_tls_context", "require_client_certificate"))
    cert, validation, default_context = _common_tls(
        walker, context.common_tls_context, f"{where}.common_tls_context"
    )
    if cert is None:
        raise walker.fail(
            f"{where}.common_tls_context.tls_certificate_sds_secret_configs",
            "a server certificate is required",
        )
    require = context.require_client_certificate.value
    if require and validation is None:
        raise walker.fail(where, "require_client_certificate needs a validation context")
    san = (
        _san_matchers(
            walker, default_context, f"{where}.common_tls_context.default_validation_context"
        )
        if default_context is not None
        else ()
    )
    alpn = tuple(context.common_tls_context.alpn_protocols)
    low, high = _tls_versions(walker, context.common_tls_context, f"{where}.common_tls_context")
    return model.DownstreamTls(cert, validation, require, alpn, san, low, high)


def _upstream_tls(walker: _Walker, socket: Any, path: str) -> model.UpstreamTls:
    walker.check(socket, path, ("name", "typed_config"))
    where = f"{path}.typed_config"
    context: tls_pb2.UpstreamTlsContext = walker.unpack(
        socket.typed_config, where, {_UPSTREAM_TLS_TYPE: tls_pb2.UpstreamTlsContext}
    )
    walker.check(context, where, ("common_tls_context", "sni"))
    cert, validation, default_context = _common_tls(
        walker, context.common_tls_context, f"{where}.common_tls_context"
    )
    if validation is None:
        raise walker.fail(
            f"{where}.common_tls_context",
            "a validation context is required (the sidecar never trusts an unverified upstream)",
        )
    san = (
        _san_matchers(
            walker, default_context, f"{where}.common_tls_context.default_validation_context"
        )
        if default_context is not None
        else ()
    )
    low, high = _tls_versions(walker, context.common_tls_context, f"{where}.common_tls_context")
    alpn = tuple(context.common_tls_context.alpn_protocols)
    return model.UpstreamTls(context.sni, cert, validation, alpn, san, low, high)


_TLS_VERSIONS = {0: "", 1: "TLSv1_0", 2: "TLSv1_1", 3: "TLSv1_2", 4: "TLSv1_3"}


def _tls_versions(walker: _Walker, common: Any, path: str) -> tuple[str, str]:
    """(minimum, maximum) protocol versions; "" = the ssl module's default."""
    params = common.tls_params
    low = _TLS_VERSIONS.get(params.tls_minimum_protocol_version)
    high = _TLS_VERSIONS.get(params.tls_maximum_protocol_version)
    if low is None or high is None:
        raise walker.fail(f"{path}.tls_params", "unknown TLS protocol version")
    if low in ("TLSv1_0", "TLSv1_1"):
        raise walker.fail(
            f"{path}.tls_params.tls_minimum_protocol_version", "TLS 1.2 or later is required"
        )
    return low, high


def _filter_chain_match(walker: _Walker, message: Any, path: str) -> model.FilterChainMatch:
    walker.check(
        message,
        path,
        (
            "destination_port",
            "prefix_ranges",
            "server_names",
            "transport_protocol",
            "application_protocols",
        ),
    )
    ranges: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for index, cidr in enumerate(message.prefix_ranges):
        where = f"{path}.prefix_ranges[{index}]"
        walker.check(cidr, where, ("address_prefix", "prefix_len"))
        length = cidr.prefix_len.value if cidr.HasField("prefix_len") else None
        try:
            address = ipaddress.ip_address(cidr.address_prefix)
            bits = length if length is not None else address.max_prefixlen
            ranges.append(ipaddress.ip_network(f"{address}/{bits}", strict=False))
        except ValueError as error:
            raise walker.fail(where, f"invalid CIDR: {error}") from None
    transport = message.transport_protocol
    if transport not in ("", "tls", "raw_buffer"):
        raise walker.fail(
            f"{path}.transport_protocol", f"{transport!r} not supported (tls, raw_buffer)"
        )
    return model.FilterChainMatch(
        destination_port=(
            message.destination_port.value if message.HasField("destination_port") else None
        ),
        prefix_ranges=tuple(ranges),
        server_names=tuple(name.lower() for name in message.server_names),
        transport_protocol=transport,
        application_protocols=tuple(message.application_protocols),
    )


def _tcp_proxy(walker: _Walker, message: tcp_proxy_pb2.TcpProxy, path: str) -> model.TcpProxy:
    walker.check(message, path, ("stat_prefix", "cluster", "weighted_clusters", "idle_timeout"))
    which = message.WhichOneof("cluster_specifier")
    if which == "cluster":
        targets: tuple[model.WeightedTarget, ...] = (model.WeightedTarget(message.cluster, 1),)
    elif which == "weighted_clusters":
        where = f"{path}.weighted_clusters"
        walker.check(message.weighted_clusters, where, ("clusters",))
        targets = _weighted_targets(walker, message.weighted_clusters.clusters, f"{where}.clusters")
    else:
        raise walker.fail(path, "a cluster specifier is required (cluster, weighted_clusters)")
    idle = (
        walker.duration(message.idle_timeout, f"{path}.idle_timeout") or None
        if message.HasField("idle_timeout")
        else 3600.0
    )
    return model.TcpProxy(message.stat_prefix, targets, idle)


def _http_connection_manager(
    walker: _Walker, message: hcm_pb2.HttpConnectionManager, path: str
) -> model.HttpConnectionManager:
    walker.check(
        message,
        path,
        (
            "codec_type",
            "stat_prefix",
            "rds",
            "route_config",
            "http_filters",
            "use_remote_address",
            "generate_request_id",
            "upgrade_configs",
            "max_request_headers_kb",
        ),
    )
    codec = hcm_pb2.HttpConnectionManager.CodecType.Name(message.codec_type)
    if codec not in ("AUTO", "HTTP1"):
        raise walker.fail(f"{path}.codec_type", f"{codec} not supported (AUTO, HTTP1)")
    rds_name: str | None = None
    route_config: model.RouteConfig | None = None
    which = message.WhichOneof("route_specifier")
    if which == "rds":
        walker.check(message.rds, f"{path}.rds", ("config_source", "route_config_name"))
        walker.config_source(message.rds.config_source, f"{path}.rds.config_source")
        rds_name = message.rds.route_config_name
    elif which == "route_config":
        route_config = _route_configuration(walker, message.route_config, f"{path}.route_config")
    else:
        raise walker.fail(path, "a route specifier is required (rds, route_config)")
    rbac: model.HttpRbacFilter | None = None
    filters = list(message.http_filters)
    if not filters or filters[-1].name != "envoy.filters.http.router":
        raise walker.fail(f"{path}.http_filters", "must end with envoy.filters.http.router")
    for index, http_filter in enumerate(filters):
        where = f"{path}.http_filters[{index}]"
        walker.check(http_filter, where, ("name", "typed_config"))
        if http_filter.name == "envoy.filters.http.router":
            if index != len(filters) - 1:
                raise walker.fail(where, "the router must be the last HTTP filter")
            if http_filter.HasField("typed_config"):
                router = walker.unpack(
                    http_filter.typed_config,
                    f"{where}.typed_config",
                    {_ROUTER_TYPE: router_pb2.Router},
                )
                walker.check(router, f"{where}.typed_config", ())
        elif http_filter.name == "envoy.filters.http.rbac":
            config: http_rbac_pb2.RBAC = walker.unpack(
                http_filter.typed_config,
                f"{where}.typed_config",
                {_HTTP_RBAC_TYPE: http_rbac_pb2.RBAC},
            )
            walker.check(config, f"{where}.typed_config", ("rules",))
            rules = (
                _rbac_rules(walker, config.rules, f"{where}.typed_config.rules")
                if config.HasField("rules")
                else None
            )
            rbac = model.HttpRbacFilter(rules)
        else:
            raise walker.fail(
                f"{where}.name",
                f"HTTP filter {http_filter.name!r} not supported "
                "(envoy.filters.http.rbac, envoy.filters.http.router)",
            )
    websocket = False
    for index, upgrade in enumerate(message.upgrade_configs):
        where = f"{path}.upgrade_configs[{index}]"
        walker.check(upgrade, where, ("upgrade_type", "enabled"))
        if upgrade.upgrade_type.lower() != "websocket":
            raise walker.fail(
                f"{where}.upgrade_type", f"{upgrade.upgrade_type!r} not supported (websocket)"
            )
        websocket = upgrade.enabled.value if upgrade.HasField("enabled") else True
    headers_kb = (
        message.max_request_headers_kb.value
        if message.HasField("max_request_headers_kb")
        else DEFAULT_MAX_REQUEST_HEADERS_KB
    )
    return model.HttpConnectionManager(
        stat_prefix=message.stat_prefix,
        rds_name=rds_name,
        route_config=route_config,
        rbac=rbac,
        use_remote_address=(
            message.use_remote_address.value if message.HasField("use_remote_address") else False
        ),
        generate_request_id=(
            message.generate_request_id.value if message.HasField("generate_request_id") else True
        ),
        websocket=websocket,
        max_request_headers_bytes=headers_kb * 1024,
    )


def _filter_chain(walker: _Walker, message: Any, path: str) -> model.FilterChain:
    walker.check(message, path, ("name", "filter_chain_match", "filters", "transport_socket"))
    match = _filter_chain_match(walker, message.filter_chain_match, f"{path}.filter_chain_match")
    tls: model.DownstreamTls | None = None
    if message.HasField("transport_socket"):
        socket = message.transport_socket
        if socket.name not in ("envoy.transport_sockets.tls", "tls"):
            raise walker.fail(
                f"{path}.transport_socket.name",
                f"{socket.name!r} not supported (envoy.transport_sockets.tls)",
            )
        tls = _downstream_tls(walker, socket, f"{path}.transport_socket")
    network_rbac: model.NetworkRbac | None = None
    terminal: model.TcpProxy | model.HttpConnectionManager | None = None
    filters = list(message.filters)
    for index, network_filter in enumerate(filters):
        where = f"{path}.filters[{index}]"
        walker.check(network_filter, where, ("name", "typed_config"))
        if terminal is not None:
            raise walker.fail(where, "no filter may follow the terminal filter")
        type_url = network_filter.typed_config.type_url
        if type_url == _NETWORK_RBAC_TYPE:
            config: network_rbac_pb2.RBAC = walker.unpack(
                network_filter.typed_config,
                f"{where}.typed_config",
                {_NETWORK_RBAC_TYPE: network_rbac_pb2.RBAC},
            )
            walker.check(config, f"{where}.typed_config", ("rules", "stat_prefix"))
            rules = (
                _rbac_rules(walker, config.rules, f"{where}.typed_config.rules")
                if config.HasField("rules")
                else model.RbacRules("DENY", ())
            )
            network_rbac = model.NetworkRbac(config.stat_prefix, rules)
        elif type_url == _TCP_PROXY_TYPE:
            proxy: tcp_proxy_pb2.TcpProxy = walker.unpack(
                network_filter.typed_config,
                f"{where}.typed_config",
                {_TCP_PROXY_TYPE: tcp_proxy_pb2.TcpProxy},
            )
            terminal = _tcp_proxy(walker, proxy, f"{where}.typed_config")
        elif type_url == _HCM_TYPE:
            manager: hcm_pb2.HttpConnectionManager = walker.unpack(
                network_filter.typed_config,
                f"{where}.typed_config",
                {_HCM_TYPE: hcm_pb2.HttpConnectionManager},
            )
            terminal = _http_connection_manager(walker, manager, f"{where}.typed_config")
        else:
            raise walker.fail(
                f"{where}.typed_config",
                f"network filter {network_filter.name!r} ({type_url}) not supported "
                "(envoy.filters.network.rbac, tcp_proxy, http_connection_manager)",
            )
    if terminal is None:
        raise walker.fail(f"{path}.filters", "a terminal filter (tcp_proxy or HCM) is required")
    return model.FilterChain(message.name, match, tls, network_rbac, terminal)


def translate_listener(message: listener_pb2.Listener) -> model.Listener:
    """Listener -> Listener model; raises ConfigError."""
    walker = _Walker("Listener", message.name)
    walker.check(
        message,
        "",
        (
            "name",
            "address",
            "filter_chains",
            "default_filter_chain",
            "listener_filters",
            "traffic_direction",
            "use_original_dst",
            "stat_prefix",
        ),
    )
    walker.check(message.address, "address", ("socket_address",))
    socket_address = message.address.socket_address
    walker.check(socket_address, "address.socket_address", ("address", "port_value", "protocol"))
    seen: set[str] = set()
    for index, listener_filter in enumerate(message.listener_filters):
        where = f"listener_filters[{index}]"
        walker.check(listener_filter, where, ("name", "typed_config"))
        kind = _LISTENER_FILTERS.get(listener_filter.name)
        if listener_filter.HasField("typed_config"):
            kind = _LISTENER_FILTER_TYPES.get(listener_filter.typed_config.type_url)
        if kind is None:
            raise walker.fail(
                where,
                f"listener filter {listener_filter.name!r} not supported "
                f"({', '.join(sorted(_LISTENER_FILTERS))})",
            )
        seen.add(kind)
    chains = tuple(
        _filter_chain(walker, chain, f"filter_chains[{index}]")
        for index, chain in enumerate(message.filter_chains)
    )
    default_chain = (
        _filter_chain(walker, message.default_filter_chain, "default_filter_chain")
        if message.HasField("default_filter_chain")
        else None
    )
    use_original_dst = "original_dst" in seen or (
        message.HasField("use_original_dst") and message.use_original_dst.value
    )
    return model.Listener(
        name=message.name,
        host=socket_address.address or "0.0.0.0",
        port=socket_address.port_value,
        use_original_dst=use_original_dst,
        inspect_tls="tls_inspector" in seen,
        filter_chains=chains,
        default_filter_chain=default_chain,
    )


# ---------------------------------------------------------------------------------------------
# Clusters, endpoints, secrets


def _endpoints(
    walker: _Walker, message: endpoint_pb2.ClusterLoadAssignment, path: str
) -> tuple[model.Endpoint, ...]:
    walker.check(message, path, ("cluster_name", "endpoints"))
    prefix = f"{path}." if path else ""
    endpoints: list[model.Endpoint] = []
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
            endpoints.append(
                model.Endpoint(socket_address.address, socket_address.port_value, weight)
            )
    return tuple(endpoints)


def translate_load_assignment(message: endpoint_pb2.ClusterLoadAssignment) -> model.LoadAssignment:
    """ClusterLoadAssignment -> LoadAssignment; raises ConfigError."""
    walker = _Walker("ClusterLoadAssignment", message.cluster_name)
    return model.LoadAssignment(message.cluster_name, _endpoints(walker, message, ""))


_CLUSTER_KINDS = ("EDS", "STATIC", "STRICT_DNS", "LOGICAL_DNS", "ORIGINAL_DST")


def translate_cluster(message: cluster_pb2.Cluster) -> model.Cluster:
    """Cluster -> Cluster model; raises ConfigError."""
    walker = _Walker("Cluster", message.name)
    walker.check(
        message,
        "",
        (
            "name",
            "alt_stat_name",
            "type",
            "eds_cluster_config",
            "connect_timeout",
            "lb_policy",
            "load_assignment",
            "circuit_breakers",
            "outlier_detection",
            "transport_socket",
            "typed_extension_protocol_options",
            "max_requests_per_connection",
            "dns_lookup_family",
        ),
    )
    kind = cluster_pb2.Cluster.DiscoveryType.Name(message.type)
    if kind not in _CLUSTER_KINDS:
        raise walker.fail("type", f"{kind} not supported ({', '.join(_CLUSTER_KINDS)})")
    lb = cluster_pb2.Cluster.LbPolicy.Name(message.lb_policy)
    if kind == "ORIGINAL_DST":
        if lb != "CLUSTER_PROVIDED":
            raise walker.fail("lb_policy", "ORIGINAL_DST clusters need CLUSTER_PROVIDED")
    elif lb not in ("ROUND_ROBIN", "LEAST_REQUEST"):
        raise walker.fail("lb_policy", f"{lb} not supported (ROUND_ROBIN, LEAST_REQUEST)")
    eds_name = ""
    if message.HasField("eds_cluster_config"):
        walker.check(
            message.eds_cluster_config, "eds_cluster_config", ("eds_config", "service_name")
        )
        walker.config_source(message.eds_cluster_config.eds_config, "eds_cluster_config.eds_config")
        eds_name = message.eds_cluster_config.service_name
    endpoints: tuple[model.Endpoint, ...] = ()
    if message.HasField("load_assignment"):
        if kind == "EDS":
            raise walker.fail("load_assignment", "EDS clusters take endpoints from EDS")
        endpoints = _endpoints(walker, message.load_assignment, "load_assignment")
    elif kind in ("STATIC", "STRICT_DNS", "LOGICAL_DNS"):
        raise walker.fail("load_assignment", f"{kind} clusters need a load_assignment")
    breakers = model.CircuitBreakers()
    if message.HasField("circuit_breakers"):
        walker.check(message.circuit_breakers, "circuit_breakers", ("thresholds",))
        for index, threshold in enumerate(message.circuit_breakers.thresholds):
            where = f"circuit_breakers.thresholds[{index}]"
            walker.check(
                threshold,
                where,
                (
                    "priority",
                    "max_connections",
                    "max_pending_requests",
                    "max_requests",
                    "max_retries",
                ),
            )
            if threshold.priority != 0:
                continue  # HIGH priority routes are not emitted; its thresholds never apply.

            def limit(name: str, default: int, threshold: Any = threshold) -> int:
                return int(getattr(threshold, name).value) if threshold.HasField(name) else default

            breakers = model.CircuitBreakers(
                limit("max_connections", 1024),
                limit("max_pending_requests", 1024),
                limit("max_requests", 1024),
                limit("max_retries", 3),
            )
    outlier: model.OutlierDetection | None = None
    if message.HasField("outlier_detection"):
        od = message.outlier_detection
        walker.check(
            od,
            "outlier_detection",
            (
                "consecutive_5xx",
                "interval",
                "base_ejection_time",
                "max_ejection_percent",
                "enforcing_consecutive_5xx",
            ),
        )
        if od.HasField("enforcing_consecutive_5xx") and od.enforcing_consecutive_5xx.value not in (
            0,
            100,
        ):
            raise walker.fail(
                "outlier_detection.enforcing_consecutive_5xx", "only 0 or 100 supported"
            )
        enforcing = (
            od.enforcing_consecutive_5xx.value if od.HasField("enforcing_consecutive_5xx") else 100
        )
        outlier = model.OutlierDetection(
            consecutive_5xx=(od.consecutive_5xx.value if od.HasField("consecutive_5xx") else 5)
            if enforcing
            else 0,
            interval=walker.duration(od.interval, "outlier_detection.interval")
            if od.HasField("interval")
            else 10.0,
            base_ejection_time=walker.duration(
                od.base_ejection_time, "outlier_detection.base_ejection_time"
            )
            if od.HasField("base_ejection_time")
            else 30.0,
            max_ejection_percent=(
                od.max_ejection_percent.value if od.HasField("max_ejection_percent") else 10
            ),
        )
    tls: model.UpstreamTls | None = None
    if message.HasField("transport_socket"):
        socket = message.transport_socket
        if socket.name not in ("envoy.transport_sockets.tls", "tls"):
            raise walker.fail(
                "transport_socket.name",
                f"{socket.name!r} not supported (envoy.transport_sockets.tls)",
            )
        tls = _upstream_tls(walker, socket, "transport_socket")
    for key in message.typed_extension_protocol_options:
        where = f"typed_extension_protocol_options[{key!r}]"
        if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions":
            raise walker.fail(where, "only HttpProtocolOptions (HTTP/1.1) is supported")
        options: http_protocol_options_pb2.HttpProtocolOptions = walker.unpack(
            message.typed_extension_protocol_options[key],
            where,
            {_HTTP_PROTOCOL_OPTIONS_TYPE: http_protocol_options_pb2.HttpProtocolOptions},
        )
        walker.check(options, where, ("explicit_http_config",))
        explicit = options.explicit_http_config
        walker.check(explicit, f"{where}.explicit_http_config", ("http_protocol_options",))
        walker.check(
            explicit.http_protocol_options,
            f"{where}.explicit_http_config.http_protocol_options",
            (),
        )
        if explicit.WhichOneof("protocol_config") != "http_protocol_options":
            raise walker.fail(
                f"{where}.explicit_http_config", "only HTTP/1.1 upstreams are supported"
            )
    connect_timeout = (
        walker.duration(message.connect_timeout, "connect_timeout")
        if message.HasField("connect_timeout")
        else DEFAULT_CONNECT_TIMEOUT
    )
    return model.Cluster(
        name=message.name,
        stat_name=message.alt_stat_name or message.name,
        kind=kind,
        eds_service_name=eds_name,
        lb_policy=lb,
        connect_timeout=connect_timeout,
        circuit_breakers=breakers,
        outlier_detection=outlier,
        tls=tls,
        endpoints=endpoints,
        max_requests_per_connection=(
            message.max_requests_per_connection.value
            if message.HasField("max_requests_per_connection")
            else None
        ),
    )


def translate_secret(message: secret_pb2.Secret) -> model.Secret:
    """Secret -> Secret model (tls_certificate or validation_context); raises ConfigError."""
    walker = _Walker("Secret", message.name)
    walker.check(message, "", ("name", "tls_certificate", "validation_context"))
    which = message.WhichOneof("type")
    if which == "tls_certificate":
        cert = message.tls_certificate
        walker.check(cert, "tls_certificate", ("certificate_chain", "private_key"))
        if not cert.HasField("certificate_chain") or not cert.HasField("private_key"):
            raise walker.fail("tls_certificate", "certificate_chain and private_key are required")
        return model.Secret(
            message.name,
            certificate_chain=_data_source(
                walker, cert.certificate_chain, "tls_certificate.certificate_chain"
            ),
            private_key=_data_source(walker, cert.private_key, "tls_certificate.private_key"),
        )
    if which == "validation_context":
        context = message.validation_context
        walker.check(
            context,
            "validation_context",
            ("trusted_ca", "match_subject_alt_names", "match_typed_subject_alt_names"),
        )
        if not context.HasField("trusted_ca"):
            raise walker.fail("validation_context.trusted_ca", "a trusted CA is required")
        return model.Secret(
            message.name,
            trusted_ca=_data_source(walker, context.trusted_ca, "validation_context.trusted_ca"),
            san_matchers=_san_matchers(walker, context, "validation_context"),
        )
    raise walker.fail("", "a secret type is required (tls_certificate, validation_context)")


# ---------------------------------------------------------------------------------------------
# Consistency


_TRANSLATORS: dict[str, tuple[type[Any], Callable[[Any], Any], Callable[[Any], str]]] = {
    wellknown.LISTENER_TYPE: (listener_pb2.Listener, translate_listener, lambda m: m.name),
    wellknown.ROUTE_TYPE: (
        route_pb2.RouteConfiguration,
        translate_route_configuration,
        lambda m: m.name,
    ),
    wellknown.CLUSTER_TYPE: (cluster_pb2.Cluster, translate_cluster, lambda m: m.name),
    wellknown.ENDPOINT_TYPE: (
        endpoint_pb2.ClusterLoadAssignment,
        translate_load_assignment,
        lambda m: m.cluster_name,
    ),
    wellknown.SECRET_TYPE: (secret_pb2.Secret, translate_secret, lambda m: m.name),
}


def resource_name(type_url: str, message: Any) -> str:
    """The name Envoy keys a resource by (cluster_name for load assignments)."""
    return _TRANSLATORS[type_url][2](message)


def translate(type_url: str, message: Any) -> Any:
    """Translate one resource of `type_url`; raises ConfigError (also for an unknown type)."""
    entry = _TRANSLATORS.get(type_url)
    if entry is None:
        raise ConfigError(
            type_url, "", "", f"resource type not supported ({', '.join(wellknown.PUSH_ORDER)})"
        )
    if not isinstance(message, entry[0]):
        raise ConfigError(type_url, "", "", f"expected {entry[0].DESCRIPTOR.full_name}")
    return entry[1](message)


def unpack_resource(type_url: str, resource: any_pb2.Any) -> Any:
    """An `Any` from a DiscoveryResponse -> the typed proto; raises ConfigError."""
    entry = _TRANSLATORS.get(type_url)
    if entry is None or resource.type_url != type_url:
        raise ConfigError(type_url, "", "", f"unexpected resource type {resource.type_url}")
    message = entry[0]()
    try:
        resource.Unpack(message)
    except Exception as error:  # DecodeError
        raise ConfigError(type_url, "", "", f"cannot decode: {error}") from None
    return message


def _chains(listener: model.Listener) -> Iterable[model.FilterChain]:
    yield from listener.filter_chains
    if listener.default_filter_chain is not None:
        yield listener.default_filter_chain


def assemble(
    raw: Mapping[str, Mapping[str, Any]],
    versions: Mapping[str, str] | None = None,
    translated: Mapping[str, Mapping[str, Any]] | None = None,
) -> model.ProxyConfig:
    """Translate (or reuse `translated`) and cross-check a full set; -> ProxyConfig.

    `raw[type_url][name]` are the protos. Raises ConfigError for an invalid resource and
    MissingReference when one names a route config, cluster, load assignment or secret
    that the set does not contain.
    """
    models: dict[str, dict[str, Any]] = {}
    for type_url in wellknown.PUSH_ORDER:
        cached = (translated or {}).get(type_url, {})
        models[type_url] = {
            name: cached[name] if name in cached else translate(type_url, message)
            for name, message in raw.get(type_url, {}).items()
        }
    config = model.ProxyConfig(
        listeners=models[wellknown.LISTENER_TYPE],
        route_configs=models[wellknown.ROUTE_TYPE],
        clusters=models[wellknown.CLUSTER_TYPE],
        load_assignments=models[wellknown.ENDPOINT_TYPE],
        secrets=models[wellknown.SECRET_TYPE],
        raw={type_url: dict(raw.get(type_url, {})) for type_url in wellknown.PUSH_ORDER},
        versions=dict(versions or {}),
    )
    check_consistency(config)
    return config


def check_consistency(config: model.ProxyConfig) -> None:
    """Every name a resource refers to exists; raises MissingReference otherwise."""

    def need(
        kind: str, name: str, holder: str, holder_name: str, what: str, pool: Mapping[str, Any]
    ) -> None:
        if name not in pool:
            raise MissingReference(holder, holder_name, what, f"{kind} {name!r} does not exist")

    def route_clusters(route_config: model.RouteConfig, holder: str, holder_name: str) -> None:
        for vhost in route_config.virtual_hosts:
            for route in vhost.routes:
                for target in route.action.targets:
                    need(
                        "cluster",
                        target.cluster,
                        holder,
                        holder_name,
                        f"virtual_hosts[{vhost.name!r}].routes[{route.name!r}]",
                        config.clusters,
                    )

    for listener in config.listeners.values():
        for chain in _chains(listener):
            where = f"filter_chains[{chain.name!r}]"
            if chain.tls is not None:
                need(
                    "secret",
                    chain.tls.cert_secret,
                    "Listener",
                    listener.name,
                    where,
                    config.secrets,
                )
                if chain.tls.validation_secret:
                    need(
                        "secret",
                        chain.tls.validation_secret,
                        "Listener",
                        listener.name,
                        where,
                        config.secrets,
                    )
            terminal = chain.terminal
            if isinstance(terminal, model.TcpProxy):
                for target in terminal.targets:
                    need(
                        "cluster", target.cluster, "Listener", listener.name, where, config.clusters
                    )
            elif terminal.rds_name is not None:
                need(
                    "route configuration",
                    terminal.rds_name,
                    "Listener",
                    listener.name,
                    where,
                    config.route_configs,
                )
            elif terminal.route_config is not None:
                route_clusters(terminal.route_config, "Listener", listener.name)
    for route_config in config.route_configs.values():
        route_clusters(route_config, "RouteConfiguration", route_config.name)
    for cluster in config.clusters.values():
        if cluster.kind == "EDS":
            need(
                "load assignment",
                cluster.eds_service_name or cluster.name,
                "Cluster",
                cluster.name,
                "eds_cluster_config",
                config.load_assignments,
            )
        if cluster.tls is not None:
            for secret in (cluster.tls.cert_secret, cluster.tls.validation_secret):
                if secret:
                    need(
                        "secret",
                        secret,
                        "Cluster",
                        cluster.name,
                        "transport_socket",
                        config.secrets,
                    )
