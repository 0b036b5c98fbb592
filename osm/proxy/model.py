"""The sidecar's configuration model: the frozen values that every request reads.

The one idea: nothing on the request path reads a proto. The translators
(`osm.proxy.translate`) turn each Envoy resource into these immutable dataclasses once, when
it arrives; `osm.proxy.assembly` gathers a consistent set into one `ProxyConfig`, which the
runtime swaps in a single step. Being hot, this module is compiled by mypyc (``setup.py``);
it holds the values and the few methods the data plane calls on them, nothing cold.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class StringMatch:
    """Envoy's StringMatcher; `regex` is a full match (RE2 semantics, Python syntax)."""

    kind: Literal["exact", "prefix", "suffix", "contains", "regex"]
    value: str
    ignore_case: bool = False
    regex: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        if self.kind == "regex":
            assert self.regex is not None
            return self.regex.fullmatch(text) is not None
        value = self.value
        if self.ignore_case:
            text, value = text.lower(), value.lower()
        if self.kind == "exact":
            return text == value
        if self.kind == "prefix":
            return text.startswith(value)
        if self.kind == "suffix":
            return text.endswith(value)
        return value in text


@dataclass(frozen=True, slots=True)
class SanMatcher:
    """Match one subject alternative name; `san_type` "any" is the untyped (deprecated) form."""

    san_type: Literal["any", "URI", "DNS"]
    matcher: StringMatch


# RBAC principals and permissions: small trees evaluated by `rbac`.
@dataclass(frozen=True, slots=True)
class AnyId:
    pass


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Authenticated peer; `name` None means any authenticated peer."""

    name: StringMatch | None


@dataclass(frozen=True, slots=True)
class OrIds:
    ids: tuple[Principal, ...]


@dataclass(frozen=True, slots=True)
class AndIds:
    ids: tuple[Principal, ...]


@dataclass(frozen=True, slots=True)
class NotId:
    id: Principal


Principal = AnyId | Authenticated | OrIds | AndIds | NotId


@dataclass(frozen=True, slots=True)
class AnyPermission:
    pass


@dataclass(frozen=True, slots=True)
class DestinationPort:
    port: int


@dataclass(frozen=True, slots=True)
class OrRules:
    rules: tuple[Permission, ...]


@dataclass(frozen=True, slots=True)
class AndRules:
    rules: tuple[Permission, ...]


@dataclass(frozen=True, slots=True)
class NotRule:
    rule: Permission


@dataclass(frozen=True, slots=True)
class UrlPath:
    """The request path without the query string (HTTP RBAC only; never matches on L4)."""

    matcher: StringMatch


@dataclass(frozen=True, slots=True)
class HeaderPermission:
    """A request header (HTTP RBAC only; never matches on L4)."""

    header: HeaderMatch


Permission = (
    AnyPermission | DestinationPort | OrRules | AndRules | NotRule | UrlPath | HeaderPermission
)


@dataclass(frozen=True, slots=True)
class Policy:
    """Matches when any permission and any principal match."""

    permissions: tuple[Permission, ...]
    principals: tuple[Principal, ...]


@dataclass(frozen=True, slots=True)
class RbacRules:
    """ALLOW: allowed iff some policy matches. DENY: denied iff some policy matches."""

    action: Literal["ALLOW", "DENY"]
    policies: tuple[tuple[str, Policy], ...]


@dataclass(frozen=True, slots=True)
class WeightedTarget:
    cluster: str
    weight: int


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """Envoy HeaderMatcher: `name` is lower case; `kind` "present" ignores `matcher`."""

    name: str
    kind: Literal["match", "present"]
    matcher: StringMatch | None
    present: bool = True
    invert: bool = False


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path_kind: Literal["prefix", "path", "regex"]
    value: str
    regex: re.Pattern[str] | None
    case_sensitive: bool
    headers: tuple[HeaderMatch, ...]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_on: frozenset[str]
    num_retries: int
    per_try_timeout: float | None
    retriable_status_codes: frozenset[int]
    base_interval: float | None = None  # retry_back_off; None = the runtime's default


@dataclass(frozen=True, slots=True)
class LocalRateLimit:
    """A local rate limit's token bucket (Envoy's local_ratelimit filters): it starts
    full with `max_tokens` and gets `tokens_per_fill` back every `fill_interval` seconds;
    a request (HTTP) or connection (TCP) over it is refused, an HTTP one answered with
    `status` and `response_headers`. `scope` names where it is configured (resource and
    field path), so equal limits in two places keep two buckets
    (`osm.proxy.rate_limit`)."""

    scope: str
    max_tokens: int
    tokens_per_fill: int
    fill_interval: float
    status: int = 429
    response_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RouteAction:
    """Forward to one cluster or a weighted split; `timeout` None means no timeout."""

    targets: tuple[WeightedTarget, ...]
    total_weight: int
    timeout: float | None
    retry: RetryPolicy | None
    prefix_rewrite: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: RouteMatch
    action: RouteAction
    rbac: RbacRules | None  # RBACPerRoute; None = the filter-level rules apply
    rate_limit: LocalRateLimit | None = None  # the route's own, else its virtual host's


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@dataclass(frozen=True, slots=True)
class HttpRbacFilter:
    """The HTTP RBAC filter: `rules` None lets everything through unless a route says more."""

    rules: RbacRules | None


@dataclass(frozen=True, slots=True)
class Tracing:
    """An HCM's Zipkin tracer (`osm.proxy.tracing`): spans are reported as Zipkin v2 JSON
    to ``collector_endpoint`` of ``collector_cluster``; ``sampling`` is the percentage of
    requests without a sampling decision that are sampled; ``server`` is the listener's
    direction (inbound: SERVER spans sharing the caller's span id, as Envoy's
    ``shared_span_context``; else CLIENT spans, children of the caller's)."""

    collector_cluster: str
    collector_endpoint: str
    sampling: float
    server: bool


@dataclass(frozen=True, slots=True)
class HttpConnectionManager:
    stat_prefix: str
    rds_name: str | None
    route_config: RouteConfig | None
    rbac: HttpRbacFilter | None
    use_remote_address: bool
    generate_request_id: bool
    websocket: bool
    max_request_headers_bytes: int
    local_rate_limit: bool = False  # the HTTP local rate limit filter (after RBAC) is on
    tracing: Tracing | None = None


@dataclass(frozen=True, slots=True)
class TcpProxy:
    stat_prefix: str
    targets: tuple[WeightedTarget, ...]
    idle_timeout: float | None


@dataclass(frozen=True, slots=True)
class NetworkRbac:
    stat_prefix: str
    rules: RbacRules


@dataclass(frozen=True, slots=True)
class DownstreamTls:
    cert_secret: str
    validation_secret: str | None
    require_client_certificate: bool
    alpn: tuple[str, ...]
    san_matchers: tuple[SanMatcher, ...]
    min_version: str = ""  # "TLSv1_2", "TLSv1_3"; "" = the default
    max_version: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    sni: str
    cert_secret: str | None
    validation_secret: str | None
    alpn: tuple[str, ...]
    san_matchers: tuple[SanMatcher, ...]
    min_version: str = ""
    max_version: str = ""


@dataclass(frozen=True, slots=True)
class FilterChainMatch:
    destination_port: int | None = None
    prefix_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    server_names: tuple[str, ...] = ()
    transport_protocol: str = ""
    application_protocols: tuple[str, ...] = ()
    source_prefix_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """The connection's source address must be in one (none: any source)."""


@dataclass(frozen=True, slots=True)
class FilterChain:
    name: str
    match: FilterChainMatch
    tls: DownstreamTls | None
    network_rbac: NetworkRbac | None
    terminal: TcpProxy | HttpConnectionManager
    rate_limit: LocalRateLimit | None = None  # new connections (network local_ratelimit)


@dataclass(frozen=True, slots=True)
class PortRanges:
    """A set of ports as sorted, disjoint, non-adjacent half-open ranges ``[start, end)``
    (`of` merges any); ``port in ranges``. Envoy's ``destination_port_range``s can name
    every port but a few, which a set of ports would hold one by one."""

    ranges: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def of(ranges: Iterable[tuple[int, int]]) -> PortRanges:
        merged: list[tuple[int, int]] = []
        for start, end in sorted(r for r in ranges if r[0] < r[1]):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return PortRanges(tuple(merged))

    def __contains__(self, port: object) -> bool:
        if not isinstance(port, int):
            return False
        index = bisect.bisect_right(self.ranges, (port, 1 << 62)) - 1
        return index >= 0 and self.ranges[index][0] <= port < self.ranges[index][1]


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int
    use_original_dst: bool
    inspect_tls: bool
    filter_chains: tuple[FilterChain, ...]
    default_filter_chain: FilterChain | None
    inspect_http: bool = False
    """The HTTP inspector: a plaintext connection's first request line gives its
    application protocol (``http/1.0``, ``http/1.1``; ``h2c`` for the HTTP/2 preface)."""
    tls_inspector_off: PortRanges = PortRanges()
    http_inspector_off: PortRanges = PortRanges()
    """Destination ports an inspector is disabled on (``filter_disabled``): every port
    but those where a chain needs it, and ports of server-first protocols, where the
    client sends nothing first."""


@dataclass(frozen=True, slots=True)
class CircuitBreakers:
    """Envoy's defaults: 1024 connections, pending and requests; 3 concurrent retries."""

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx: int = 5
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    stat_name: str
    kind: Literal["EDS", "STATIC", "STRICT_DNS", "LOGICAL_DNS", "ORIGINAL_DST"]
    eds_service_name: str
    lb_policy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "CLUSTER_PROVIDED"]
    connect_timeout: float
    circuit_breakers: CircuitBreakers
    outlier_detection: OutlierDetection | None
    tls: UpstreamTls | None
    endpoints: tuple[Endpoint, ...]  # STATIC / DNS clusters; EDS ones come from assignments
    max_requests_per_connection: int | None


@dataclass(frozen=True, slots=True)
class LoadAssignment:
    cluster_name: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class Secret:
    """PEM bytes: a certificate chain with its key, and/or a trusted CA with SAN matchers."""

    name: str
    certificate_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    trusted_ca: bytes | None = None
    san_matchers: tuple[SanMatcher, ...] = ()


@dataclass(frozen=True)
class ProxyConfig:
    """A consistent set of translated resources, plus the raw protos for /config_dump.

    Immutable: the runtime swaps the whole object. `versions[type_url]` is the xDS version
    the set was received at (empty for hand-built sets).
    """

    listeners: Mapping[str, Listener]
    route_configs: Mapping[str, RouteConfig]
    clusters: Mapping[str, Cluster]
    load_assignments: Mapping[str, LoadAssignment]
    secrets: Mapping[str, Secret]
    raw: Mapping[str, Mapping[str, Any]]
    versions: Mapping[str, str]

    def endpoints_of(self, cluster: Cluster) -> tuple[Endpoint, ...]:
        if cluster.kind == "EDS":
            assignment = self.load_assignments.get(cluster.eds_service_name or cluster.name)
            return assignment.endpoints if assignment else ()
        return cluster.endpoints
