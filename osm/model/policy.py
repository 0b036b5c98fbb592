"""OSM's policy kinds: Egress, IngressBackend, Retry and UpstreamTrafficSetting.

Version read: policy.openservicemesh.io/v1alpha1, with OSM's field names, enums and
defaults (its Go types and CRDs, ``pkg/apis/policy/v1alpha1``). The objects are strict
(unknown fields are errors), as our SMI kinds are. Besides what OSM's CRDs state, the
parsers check what OSM's validating webhook refuses (``pkg/validator``): an Egress
match's ``apiGroup``/``kind`` pair and at most one UpstreamTrafficSetting match, an
IngressBackend's protocol (http or https), its duplicate backends and its source kinds, an
UpstreamTrafficSetting's host (an FQDN) and its rate limit status codes (those Envoy's
``StatusCode`` names). Protocols are compared case-insensitively, as OSM does, and kept
lower-case. What OSM leaves to run time and Envoy would refuse, the parsers refuse here:
route path regexes are checked with `osm.model.regex`. Global rate limiting (an external
rate limit service) is out of scope and refused with that reason.

References between objects (service accounts, services, route groups) and conflicts
between objects (two UpstreamTrafficSettings for one host) are not parse errors; see
`osm.model.references` and `upstream_conflicts`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from osm.model import regex
from osm.model.errors import Problem
from osm.model.fields import (
    Fields,
    check_dns_label,
    check_dns_subdomain,
    described,
    parse_duration,
)
from osm.model.meta import Resource
from osm.model.smi import IdentityRef

API_VERSION = "policy.openservicemesh.io/v1alpha1"
SMI_SPECS_VERSION = "specs.smi-spec.io/v1alpha4"
EGRESS_PROTOCOLS = ("http", "https", "tcp", "tcp-server-first")
"""What OSM's egress builder reads (lower-cased); it ignores a port of any other protocol."""
INGRESS_PROTOCOLS = ("http", "https")
"""What OSM's webhook admits for an IngressBackend's port (lower-cased)."""
INGRESS_SOURCE_KINDS = ("Service", "AuthenticatedPrincipal", "IPRange")
SOURCE_KINDS = ("ServiceAccount",)
RETRY_DESTINATION_KINDS = ("Service",)
RATE_LIMIT_UNITS = ("second", "minute", "hour")
MATCH_KINDS: dict[str, str] = {
    SMI_SPECS_VERSION: "HTTPRouteGroup",
    API_VERSION: "UpstreamTrafficSetting",
}
"""A policy's ``matches[].apiGroup`` (OSM writes the group with its version) and the one
kind it may name there."""
DEFAULT_RATE_LIMIT_STATUS = 429
ENVOY_STATUS_CODES = frozenset(
    {
        *range(400, 418),
        *(421, 422, 423, 424, 426, 428, 429, 431),
        *range(500, 509),
        *(510, 511),
    }
)
"""The 4xx and 5xx codes of Envoy's ``envoy.type.v3.StatusCode`` (a rate limited response
may carry only these; a unit test holds the set to Envoy's proto)."""
ENVOY_RETRY_ON = (
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
)
"""The conditions Envoy's router knows for ``retry_on`` (HTTP and gRPC)."""
GLOBAL_RATE_LIMIT_OUT_OF_SCOPE = (
    "global rate limiting (an external rate limit service) is out of scope for this mesh; "
    "use rateLimit.local, which each proxy enforces by itself"
)
MIN_BACKOFF = 0.001


# -- shared pieces ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """A ``matches`` item: an object in the policy's namespace, named by group and kind."""

    api_group: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A port and the protocol served on it, lower-case."""

    number: int
    protocol: str


def _lowered(choices: Sequence[str]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value.lower() in choices:
            return None
        valid = ", ".join(f'"{c}"' for c in choices)
        return f'"{value}" is not valid; valid values (any case): {valid}'

    return check


def _port(fields: Fields, protocols: Sequence[str]) -> PortSpec:
    number = fields.integer("number", required=True, minimum=1, maximum=65535)
    protocol = fields.string("protocol", required=True, check=_lowered(protocols))
    fields.finish()
    return PortSpec(number, protocol.lower())


def _service_account(fields: Fields) -> IdentityRef:
    """A ServiceAccount reference; OSM's CRDs require its namespace."""
    kind = fields.string("kind", required=True, choices=SOURCE_KINDS)
    name = fields.string("name", required=True, check=check_dns_subdomain)
    namespace = fields.string("namespace", required=True, check=check_dns_label)
    fields.finish()
    return IdentityRef(namespace, name, kind or "ServiceAccount")


def _matches(spec: Fields) -> tuple[PolicyMatch, ...]:
    result: list[PolicyMatch] = []
    for match in spec.objects("matches"):
        group = match.string("apiGroup", required=True, choices=tuple(MATCH_KINDS))
        kind = match.string("kind", required=True)
        name = match.string("name", required=True, check=check_dns_subdomain)
        if group and kind and kind != MATCH_KINDS[group]:
            match.error(
                "kind",
                f'"{kind}" is not valid for apiGroup "{group}"; expected "{MATCH_KINDS[group]}"',
            )
        match.finish()
        result.append(PolicyMatch(group, kind, name))
    return tuple(result)


def _cidr(value: str) -> str | None:
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            pass
        else:
            return None
    return f'"{value}" is not a CIDR; expected an address and a prefix length, e.g. "10.0.0.0/8"'


def _strings(fields: Fields, key: str, check: Callable[[str], str | None]) -> tuple[str, ...]:
    """A list of strings, each passing ``check`` (which may normalise nothing)."""
    result: list[str] = []
    for path, item in fields.items(key):
        complaint = (
            check(item) if isinstance(item, str) else f"must be a string, not {described(item)}"
        )
        if complaint:
            fields.problems.append(Problem(complaint, path))
        else:
            result.append(item)
    return tuple(result)


def _host(value: str) -> str | None:
    """A host name as Envoy's virtual host domains take it: a DNS name, ``*.`` allowed."""
    name = value[2:] if value.startswith("*.") else value
    if check_dns_subdomain(name.lower()):
        return f'"{value}" is not a host name; expected e.g. "httpbin.org" or "*.example.com"'
    return None


# -- Egress ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Egress(Resource):
    """Lets pods of ``sources`` reach ``hosts`` (HTTP by Host, HTTPS by SNI) or
    ``ip_addresses`` (CIDRs, normalised) on ``ports``; ``matches`` narrows HTTP traffic to
    HTTPRouteGroups and names at most one UpstreamTrafficSetting to apply."""

    KIND = "Egress"
    sources: tuple[IdentityRef, ...] = ()
    hosts: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    matches: tuple[PolicyMatch, ...] = ()


def parse_egress(doc: Fields, base: Resource) -> Egress:
    spec = doc.object("spec", required=True)
    sources = tuple(_service_account(s) for s in spec.objects("sources", required=True))
    hosts = _strings(spec, "hosts", _host)
    addresses = _strings(spec, "ipAddresses", _cidr)
    ports = tuple(
        _port(p, EGRESS_PROTOCOLS) for p in spec.objects("ports", required=True, non_empty=True)
    )
    matches = _matches(spec)
    settings = [i for i, m in enumerate(matches) if m.kind == "UpstreamTrafficSetting"]
    if len(settings) > 1:
        spec.error(
            f"matches[{settings[1]}]",
            "an Egress may name at most one UpstreamTrafficSetting (OSM refuses more)",
        )
    spec.finish()
    return Egress(
        base.api_version,
        base.metadata,
        base.manifest,
        sources=sources,
        hosts=hosts,
        ip_addresses=tuple(str(ipaddress.ip_network(a, strict=False)) for a in addresses),
        ports=ports,
        matches=matches,
    )


# -- IngressBackend --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BackendTLS:
    """TLS towards a backend: whether the client's certificate goes unchecked, and the SNI
    names the backend answers (empty = any)."""

    skip_client_cert_validation: bool
    sni_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IngressBackendTarget:
    """A service of the policy's namespace, on one port; ``tls`` None = plain HTTP."""

    name: str
    port: PortSpec
    tls: BackendTLS | None = None


@dataclass(frozen=True, slots=True)
class IngressSource:
    """Who may send: a Service (``namespace/name``; its endpoints' addresses), an
    AuthenticatedPrincipal (a client certificate's SAN in ``name``) or an IPRange (a CIDR
    in ``name``, normalised). ``namespace`` is a Service's only."""

    kind: str
    name: str
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class IngressBackend(Resource):
    """Admits traffic from ``sources`` (an ingress controller) to ``backends``."""

    KIND = "IngressBackend"
    backends: tuple[IngressBackendTarget, ...] = ()
    sources: tuple[IngressSource, ...] = ()
    matches: tuple[PolicyMatch, ...] = ()


def _backend_tls(fields: Fields) -> BackendTLS | None:
    tls = fields.object("tls")
    if not tls.present:
        tls.finish()
        return None
    if not tls.has("skipClientCertValidation"):
        tls.error("skipClientCertValidation", "required field is missing (expected true or false)")
    skip = tls.boolean("skipClientCertValidation")
    sni_hosts = _strings(tls, "sniHosts", _host)
    tls.finish()
    return BackendTLS(skip, sni_hosts)


def _ingress_source(fields: Fields) -> IngressSource:
    kind = fields.string("kind", required=True, choices=INGRESS_SOURCE_KINDS)
    if kind == "Service":
        name = fields.string("name", required=True, check=check_dns_label)
        namespace = fields.string("namespace", required=True, check=check_dns_label)
    elif kind == "IPRange":
        name = fields.string("name", required=True, check=_cidr)
        name = str(ipaddress.ip_network(name, strict=False)) if name else name
        namespace = _no_namespace(fields, kind)
    else:
        name = fields.string("name", required=True)
        namespace = _no_namespace(fields, kind)
    fields.finish()
    return IngressSource(kind, name, namespace)


def _no_namespace(fields: Fields, kind: str) -> str:
    if fields.string("namespace") and kind:
        fields.error("namespace", f"applies to Service sources only, not to {kind}")
    return ""


def parse_ingress_backend(doc: Fields, base: Resource) -> IngressBackend:
    spec = doc.object("spec", required=True)
    backends: list[IngressBackendTarget] = []
    seen: set[tuple[str, int]] = set()
    for backend in spec.objects("backends", required=True, non_empty=True):
        name = backend.string("name", required=True, check=check_dns_label)
        port = _port(backend.object("port", required=True), INGRESS_PROTOCOLS)
        tls = _backend_tls(backend)
        if name and port.number and (name, port.number) in seen:
            backend.error(
                "name", f'duplicate backend "{name}" on port {port.number}; list each once'
            )
        seen.add((name, port.number))
        backend.finish()
        backends.append(IngressBackendTarget(name, port, tls))
    sources = tuple(
        _ingress_source(s) for s in spec.objects("sources", required=True, non_empty=True)
    )
    matches = _matches(spec)
    principals = any(s.kind == "AuthenticatedPrincipal" for s in sources)
    for index, backend_value in enumerate(backends):
        validated = (
            backend_value.tls is not None and not backend_value.tls.skip_client_cert_validation
        )
        if backend_value.port.protocol == "https" and validated and not principals:
            spec.warn(
                f"backends[{index}].tls.skipClientCertValidation",
                "an https backend that validates client certificates should name the "
                "client in an AuthenticatedPrincipal source, as OSM's webhook means to require",
            )
    spec.finish()
    return IngressBackend(
        base.api_version,
        base.metadata,
        base.manifest,
        backends=tuple(backends),
        sources=sources,
        matches=matches,
    )


# -- Retry -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Envoy's route retry policy: ``retry_on`` as written (comma-separated conditions),
    durations in seconds (``per_try_timeout`` 0 = none but the route's)."""

    retry_on: str
    per_try_timeout: float
    num_retries: int
    retry_backoff_base_interval: float


@dataclass(frozen=True, slots=True)
class Retry(Resource):
    """Retries of requests from ``source``'s pods to the ``destinations`` services (OSM
    reads it only with MeshConfig's ``featureFlags.enableRetryPolicy``)."""

    KIND = "Retry"
    source: IdentityRef = field(default_factory=lambda: IdentityRef("", ""))
    destinations: tuple[ServiceRef, ...] = ()
    retry_policy: RetryPolicy = RetryPolicy("", 0.0, 0, 0.0)


def _required_duration(fields: Fields, key: str, minimum: float = 0.0) -> float:
    text = fields.string(key, required=True)
    if not text:
        return 0.0
    seconds = parse_duration(text)
    if seconds is None:
        fields.error(key, f'"{text}" is not a duration; expected e.g. "3s", "500ms", "1m30s"')
        return 0.0
    if seconds < minimum:
        fields.error(key, f'"{text}" is below the minimum of {minimum * 1000:g}ms Envoy takes')
        return 0.0
    return seconds


def _retry_on(value: str) -> str | None:
    unknown = [c for c in (p.strip() for p in value.split(",")) if c not in ENVOY_RETRY_ON]
    if unknown:
        return (
            f"unknown retry condition(s) {', '.join(repr(c) for c in unknown)}; Envoy knows: "
            + ", ".join(ENVOY_RETRY_ON)
        )
    return None


def parse_retry(doc: Fields, base: Resource) -> Retry:
    spec = doc.object("spec", required=True)
    source = _service_account(spec.object("source", required=True))
    destinations: list[ServiceRef] = []
    for destination in spec.objects("destinations", required=True, non_empty=True):
        destination.string("kind", required=True, choices=RETRY_DESTINATION_KINDS)
        name = destination.string("name", required=True, check=check_dns_label)
        namespace = destination.string("namespace", required=True, check=check_dns_label)
        destination.finish()
        destinations.append(ServiceRef(namespace, name))
    policy = spec.object("retryPolicy", required=True)
    retry_on = policy.string("retryOn", required=True, check=_retry_on)
    per_try_timeout = _required_duration(policy, "perTryTimeout")
    num_retries = policy.integer("numRetries", required=True, minimum=0, maximum=2**32 - 1)
    backoff = _required_duration(policy, "retryBackoffBaseInterval", MIN_BACKOFF)
    policy.finish()
    spec.finish()
    return Retry(
        base.api_version,
        base.metadata,
        base.manifest,
        source=source,
        destinations=tuple(destinations),
        retry_policy=RetryPolicy(retry_on, per_try_timeout, num_retries, backoff),
    )


# -- UpstreamTrafficSetting ------------------------------------------------------------------
UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class TCPConnectionSettings:
    """None = Envoy's default (OSM: 2^32-1 connections, a 5s connect timeout)."""

    max_connections: int | None = None
    connect_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class HTTPConnectionSettings:
    """None = Envoy's default (OSM: 2^32-1, per connection unlimited)."""

    max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_pending_requests: int | None = None
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    tcp: TCPConnectionSettings | None = None
    http: HTTPConnectionSettings | None = None


@dataclass(frozen=True, slots=True)
class TCPLocalRateLimit:
    """A token bucket of ``connections`` per ``unit`` plus ``burst``."""

    connections: int
    unit: str
    burst: int = 0


@dataclass(frozen=True, slots=True)
class HTTPLocalRateLimit:
    """A token bucket of ``requests`` per ``unit`` plus ``burst``; a limited request is
    answered ``response_status_code`` (429 when not given) with the headers added."""

    requests: int
    unit: str
    burst: int = 0
    response_status_code: int = DEFAULT_RATE_LIMIT_STATUS
    response_headers_to_add: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LocalRateLimit:
    tcp: TCPLocalRateLimit | None = None
    http: HTTPLocalRateLimit | None = None


@dataclass(frozen=True, slots=True)
class HTTPRouteSetting:
    """Settings of the requests whose path matches ``path`` (an RE2 regex, whole path)."""

    path: str
    rate_limit: HTTPLocalRateLimit | None = None


@dataclass(frozen=True, slots=True)
class UpstreamTrafficSetting(Resource):
    """Circuit breaking and local rate limits of the traffic to ``host`` (an FQDN)."""

    KIND = "UpstreamTrafficSetting"
    host: str = ""
    connection_settings: ConnectionSettings | None = None
    rate_limit: LocalRateLimit | None = None
    http_routes: tuple[HTTPRouteSetting, ...] = ()


def _optional_int(fields: Fields, key: str) -> int | None:
    return fields.integer(key, minimum=0, maximum=UINT32_MAX) if fields.has(key) else None


def _connection_settings(spec: Fields) -> ConnectionSettings | None:
    settings = spec.object("connectionSettings")
    if not settings.present:
        settings.finish()
        return None
    tcp_fields = settings.object("tcp")
    tcp = None
    if tcp_fields.present:
        timeout = None
        if tcp_fields.has("connectTimeout"):
            timeout = _required_duration(tcp_fields, "connectTimeout")
        tcp = TCPConnectionSettings(_optional_int(tcp_fields, "maxConnections"), timeout)
    tcp_fields.finish()
    http_fields = settings.object("http")
    http = None
    if http_fields.present:
        http = HTTPConnectionSettings(
            _optional_int(http_fields, "maxRequests"),
            _optional_int(http_fields, "maxRequestsPerConnection"),
            _optional_int(http_fields, "maxPendingRequests"),
            _optional_int(http_fields, "maxRetries"),
        )
    http_fields.finish()
    settings.finish()
    return ConnectionSettings(tcp, http)


def _http_local(fields: Fields) -> HTTPLocalRateLimit:
    requests = fields.integer("requests", required=True, minimum=1, maximum=UINT32_MAX)
    unit = fields.string("unit", required=True, choices=RATE_LIMIT_UNITS)
    burst = fields.integer("burst", minimum=0, maximum=UINT32_MAX)
    code = fields.integer(
        "responseStatusCode", default=DEFAULT_RATE_LIMIT_STATUS, minimum=400, maximum=599
    )
    if code not in ENVOY_STATUS_CODES:
        fields.error(
            "responseStatusCode",
            f"{code} is not one of Envoy's status codes (envoy.type.v3.StatusCode); valid: "
            + ", ".join(str(c) for c in sorted(ENVOY_STATUS_CODES)),
        )
        code = DEFAULT_RATE_LIMIT_STATUS
    headers: list[tuple[str, str]] = []
    for header in fields.objects("responseHeadersToAdd"):
        name = header.string("name", required=True)
        value = header.string("value", required=True)
        header.finish()
        if name and value:
            headers.append((name, value))
    fields.finish()
    return HTTPLocalRateLimit(requests, unit, burst, code, tuple(headers))


def _refuse_global(fields: Fields) -> None:
    if fields.has("global"):
        fields.raw("global")
        fields.error("global", GLOBAL_RATE_LIMIT_OUT_OF_SCOPE)


def _rate_limit(spec: Fields) -> LocalRateLimit | None:
    limit = spec.object("rateLimit")
    _refuse_global(limit)
    local = limit.object("local")
    result = None
    if local.present:
        tcp = None
        tcp_fields = local.object("tcp")
        if tcp_fields.present:
            tcp = TCPLocalRateLimit(
                tcp_fields.integer("connections", required=True, minimum=1, maximum=UINT32_MAX),
                tcp_fields.string("unit", required=True, choices=RATE_LIMIT_UNITS),
                tcp_fields.integer("burst", minimum=0, maximum=UINT32_MAX),
            )
        tcp_fields.finish()
        http_fields = local.object("http")
        http = _http_local(http_fields) if http_fields.present else None
        result = LocalRateLimit(tcp, http)
    local.finish()
    limit.finish()
    return result


def _http_routes(spec: Fields) -> tuple[HTTPRouteSetting, ...]:
    routes: list[HTTPRouteSetting] = []
    paths: set[str] = set()
    for route in spec.objects("httpRoutes"):
        path = route.string("path", required=True, check=regex.check)
        if path and path in paths:
            route.error("path", f'duplicate route "{path}"; list each path once')
        paths.add(path)
        limit = route.object("rateLimit")
        _refuse_global(limit)
        local = limit.object("local")
        rate = _http_local(local) if local.present else None
        local.finish()
        limit.finish()
        route.finish()
        routes.append(HTTPRouteSetting(path, rate))
    return tuple(routes)


def _fqdn(value: str) -> str | None:
    if "." not in value:
        return (
            f'"{value}" is not an FQDN; name the upstream as OSM requires, e.g. '
            f'"{value}.<namespace>.svc.cluster.local"'
        )
    return check_dns_subdomain(value)


def parse_upstream_traffic_setting(doc: Fields, base: Resource) -> UpstreamTrafficSetting:
    spec = doc.object("spec", required=True)
    host = spec.string("host", required=True, check=_fqdn)
    connection_settings = _connection_settings(spec)
    rate_limit = _rate_limit(spec)
    http_routes = _http_routes(spec)
    spec.finish()
    return UpstreamTrafficSetting(
        base.api_version,
        base.metadata,
        base.manifest,
        host=host,
        connection_settings=connection_settings,
        rate_limit=rate_limit,
        http_routes=http_routes,
    )


# -- conflicts between objects ---------------------------------------------------------------
def upstream_conflicts(resources: Sequence[Resource]) -> list[Problem]:
    """An error for each UpstreamTrafficSetting whose host an earlier one already has,
    naming both (OSM's webhook refuses the second; a proxy could apply only one)."""
    first: dict[str, UpstreamTrafficSetting] = {}
    problems: list[Problem] = []
    for resource in resources:
        if not isinstance(resource, UpstreamTrafficSetting) or not resource.host:
            continue
        earlier = first.setdefault(resource.host, resource)
        if earlier is not resource:
            problems.append(
                Problem(
                    f"UpstreamTrafficSetting {resource.namespace}/{resource.name} conflicts "
                    f"with UpstreamTrafficSetting {earlier.namespace}/{earlier.name}: both "
                    f'set host "{resource.host}"; keep one per host',
                    "spec.host",
                    kind=resource.kind,
                    namespace=resource.namespace,
                    name=resource.name,
                )
            )
    return problems
