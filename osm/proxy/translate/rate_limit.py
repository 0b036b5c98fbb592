"""Local rate limits: Envoy's ``local_ratelimit`` configs (network filter, HTTP filter,
HTTP per-route / per-virtual-host configs) -> `model.LocalRateLimit`.

The one idea: the sidecar enforces a token bucket that is enabled and enforced for
every request (or connection) and answers with a status and added headers; anything
else (descriptors, runtime fractions other than 100%, shared buckets, x-ratelimit
headers, a bucket on the HTTP filter itself) is refused with its field named. The
``scope`` of a limit is the resource and field path it was read at, so each place keeps
its own bucket (`osm.proxy.rate_limit`).
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import (
    local_rate_limit_pb2 as http_local_rate_limit_pb2,
)
from envoy.extensions.filters.network.local_ratelimit.v3 import (
    local_rate_limit_pb2 as network_local_rate_limit_pb2,
)
from envoy.type.v3 import percent_pb2

from osm.base import wellknown
from osm.proxy import model
from osm.proxy.translate.walker import Walker

HTTP_FILTER = "envoy.filters.http.local_ratelimit"
HTTP_TYPE = wellknown.TYPE_PREFIX + http_local_rate_limit_pb2.LocalRateLimit.DESCRIPTOR.full_name
NETWORK_TYPE = (
    wellknown.TYPE_PREFIX + network_local_rate_limit_pb2.LocalRateLimit.DESCRIPTOR.full_name
)
DEFAULT_STATUS = 429  # Envoy's, when ``status`` is not set
_HEADER_ACTIONS = (
    base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
    base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    base_pb2.HeaderValueOption.ADD_IF_ABSENT,
)
"""On a local reply (which has no header of the setting's yet) each of these adds."""


def _bucket(walker: Walker, message: Any, path: str) -> tuple[int, int, float]:
    walker.check(message, path, ("max_tokens", "tokens_per_fill", "fill_interval"))
    if message.max_tokens <= 0:
        raise walker.fail(f"{path}.max_tokens", "must be positive")
    per_fill = message.tokens_per_fill.value if message.HasField("tokens_per_fill") else 1
    interval = walker.duration(message.fill_interval, f"{path}.fill_interval")
    if interval <= 0:
        raise walker.fail(f"{path}.fill_interval", "must be positive")
    return message.max_tokens, per_fill, interval


def _always(walker: Walker, message: Any, path: str) -> bool:
    """A RuntimeFractionalPercent: True for 100%, False for 0%; other shares refused."""
    walker.check(message, path, ("default_value", "runtime_key"))
    value = message.default_value
    walker.check(value, f"{path}.default_value", ("numerator", "denominator"))
    denominators = {
        percent_pb2.FractionalPercent.HUNDRED: 100,
        percent_pb2.FractionalPercent.TEN_THOUSAND: 10_000,
        percent_pb2.FractionalPercent.MILLION: 1_000_000,
    }
    whole = denominators[value.denominator]
    if value.numerator == 0:
        return False
    if value.numerator < whole:
        raise walker.fail(
            f"{path}.default_value", "only 0% or 100% supported by the Python sidecar"
        )
    return True


def network(walker: Walker, config: Any, path: str) -> model.LocalRateLimit:
    """The network filter's config: a bucket of connections."""
    message: network_local_rate_limit_pb2.LocalRateLimit = walker.unpack(
        config, path, {NETWORK_TYPE: network_local_rate_limit_pb2.LocalRateLimit}
    )
    walker.check(message, path, ("stat_prefix", "token_bucket"))
    if not message.HasField("token_bucket"):
        raise walker.fail(f"{path}.token_bucket", "a token bucket is required")
    tokens, per_fill, interval = _bucket(walker, message.token_bucket, f"{path}.token_bucket")
    return model.LocalRateLimit(f"{walker.resource_name} {path}", tokens, per_fill, interval)


def http_filter(walker: Walker, config: Any, path: str) -> None:
    """The HTTP filter in an HCM: only a stat prefix (no bucket of its own: it limits
    where routes and virtual hosts carry configs)."""
    message: http_local_rate_limit_pb2.LocalRateLimit = walker.unpack(
        config, path, {HTTP_TYPE: http_local_rate_limit_pb2.LocalRateLimit}
    )
    walker.check(message, path, ("stat_prefix",))


def per_route(walker: Walker, config: Any, path: str) -> model.LocalRateLimit | None:
    """A route's or virtual host's config; None when it is not enabled or not enforced
    (Envoy then lets every request through)."""
    message: http_local_rate_limit_pb2.LocalRateLimit = walker.unpack(
        config, path, {HTTP_TYPE: http_local_rate_limit_pb2.LocalRateLimit}
    )
    walker.check(
        message,
        path,
        (
            "stat_prefix",
            "status",
            "token_bucket",
            "filter_enabled",
            "filter_enforced",
            "response_headers_to_add",
        ),
    )
    enabled = message.HasField("filter_enabled") and _always(
        walker, message.filter_enabled, f"{path}.filter_enabled"
    )
    enforced = message.HasField("filter_enforced") and _always(
        walker, message.filter_enforced, f"{path}.filter_enforced"
    )
    if not (enabled and enforced):
        return None
    if not message.HasField("token_bucket"):
        raise walker.fail(f"{path}.token_bucket", "a token bucket is required")
    tokens, per_fill, interval = _bucket(walker, message.token_bucket, f"{path}.token_bucket")
    status = DEFAULT_STATUS
    if message.HasField("status"):
        walker.check(message.status, f"{path}.status", ("code",))
        status = int(message.status.code) or DEFAULT_STATUS
    headers: list[tuple[str, str]] = []
    for index, option in enumerate(message.response_headers_to_add):
        where = f"{path}.response_headers_to_add[{index}]"
        walker.check(option, where, ("header", "append_action", "append"))
        if option.append_action not in _HEADER_ACTIONS:
            raise walker.fail(f"{where}.append_action", "not supported")
        walker.check(option.header, f"{where}.header", ("key", "value"))
        headers.append((option.header.key.lower(), option.header.value))
    return model.LocalRateLimit(
        f"{walker.resource_name} {path}", tokens, per_fill, interval, status, tuple(headers)
    )
