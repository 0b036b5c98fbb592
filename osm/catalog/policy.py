"""The catalog's answers: what one proxy may do, as plain frozen values.

The one idea: these values are the whole input of the xDS builders, and they compare
and hash by value, so a builder memoized on them builds a resource once however many
proxies need it. No Envoy types here; nothing here knows how a policy is enforced.

Conventions: tuples are sorted (or in a documented order) so equal policies are equal
values; ``None`` for a set of sources means "any authenticated mesh identity"
(permissive mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osm.base.identity import DataPlane, Identity, ProxyKind
from osm.catalog.ids import ProxyId, ServiceId
from osm.model.meta import ObjectRef
from osm.model.policy import (
    ConnectionSettings,
    HTTPLocalRateLimit,
    RetryPolicy,
    TCPLocalRateLimit,
)
from osm.model.smi import HTTPMatch

HTTP_PROTOCOLS = frozenset({"http", "grpc"})
TCP_PROTOCOLS = frozenset({"tcp", "tcp-server-first"})
GRPC_PROTOCOL = "grpc"
TCP_PROTOCOL = "tcp"

CATCH_ALL_PATHS = frozenset({"", ".*"})
"""Path regexes (anchors ``^``/``$`` stripped) known to match every request path. Not
``/.*``: the path of ``OPTIONS *`` is ``*``, which it does not match, neither in Envoy
(whose RBAC and routes match a regex against the whole path) nor in our sidecar."""


def is_http(protocol: str) -> bool:
    """True for the appProtocols proxied at L7 (HTTP routes, HTTP RBAC)."""
    return protocol in HTTP_PROTOCOLS


@dataclass(frozen=True, slots=True)
class CatalogWarning:
    """Something in the resources the catalog had to ignore (the object's fault)."""

    message: str
    ref: ObjectRef | None = None

    def __str__(self) -> str:
        return f"{self.ref}: {self.message}" if self.ref else self.message


@dataclass(frozen=True, slots=True)
class LocalPort:
    """A service port the proxy's pod serves, with its target port resolved."""

    service: ServiceId
    port: int
    target_port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy is a pod of the mesh (Ready or not: a sidecar connects before that).

    ``services`` are the Services whose selector matches the pod's labels;
    ``local_ports`` their ports with numeric target ports (named ports resolved against
    the pod's containers). ``sidecar`` is the data plane of a ``sidecar`` kind proxy
    (`osm.base.wellknown.DATA_PLANE_ANNOTATION`); always Envoy for proxyless gRPC clients.
    """

    id: ProxyId
    identity: Identity
    ip: str
    services: tuple[ServiceId, ...]
    local_ports: tuple[LocalPort, ...]
    kind: ProxyKind = ProxyKind.SIDECAR
    sidecar: DataPlane = DataPlane.ENVOY
    uuid: str = ""
    """The injector's ``osm-proxy-uuid`` label; empty for a pod that was not injected (its
    node id then names the pod)."""

    @property
    def node_name(self) -> str:
        """The first part of the node id this proxy presents: its UUID, else its pod name."""
        return self.uuid or self.id.name

    @property
    def class_key(self) -> tuple[object, ...]:
        """Proxies with equal keys get identical configuration (the pod IP is not in it)."""
        return (self.kind, self.identity, self.services, self.local_ports, self.sidecar)


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class RequestMatch:
    """Conditions on an HTTP request, ANDed; an empty match matches every request.

    ``path_regex`` must match the whole path (without the query); ``methods`` empty
    means any method; ``headers`` are (lower-case name, regex matching the whole value).
    """

    path_regex: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def matches_all(self) -> bool:
        return not (self.path_regex or self.methods or self.headers)

    @property
    def matches_every_request(self) -> bool:
        """True when the match is known to admit every request: any method, no header
        condition, and a path regex of `CATCH_ALL_PATHS` (``^``/``$`` anchors aside).
        Conservative: a regex that happens to match everything but is spelled otherwise
        counts as a restriction."""
        if self.methods or self.headers:
            return False
        path = self.path_regex.removeprefix("^")
        if path.endswith("$") and not path.endswith("\\$"):
            path = path[:-1]
        return path in CATCH_ALL_PATHS

    @classmethod
    def of(cls, match: HTTPMatch) -> RequestMatch:
        methods = () if match.any_method else tuple(sorted(set(match.methods)))
        path = "" if match.path_regex in ("", ".*") else match.path_regex
        return cls(path, methods, tuple(sorted(set(match.headers))))


@dataclass(frozen=True, slots=True)
class Upstream:
    """One service port as a destination: a cluster and its load assignment."""

    service: ServiceId
    port: int
    protocol: str
    identities: tuple[Identity, ...]
    """Identities of the pods behind the service: the peer certificates accepted."""
    endpoints: tuple[Endpoint, ...]
    """Ready endpoints, sorted."""
    connection: ConnectionSettings | None = None
    """Circuit breaking of the UpstreamTrafficSetting whose ``host`` is the service's FQDN
    (in the service's namespace): the clients' cluster limits."""


@dataclass(frozen=True, slots=True)
class WeightedTarget:
    """Send a share (``weight``, relative, > 0) of the traffic to a service port."""

    service: ServiceId
    port: int
    weight: int


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    """Requests matching ``match`` (None: every request) go to ``targets``."""

    match: RequestMatch | None
    targets: tuple[WeightedTarget, ...]


@dataclass(frozen=True, slots=True)
class OutboundPort:
    """How a client reaches one port of one service.

    ``routes`` are tried in order and the last one matches everything (TCP ports have
    only that one). ``match_ips`` are the destination addresses a connection to this
    port is recognised by (the ClusterIP, or the endpoints of a headless service).
    ``upstreams`` are every cluster the routes name, sorted by service. Hash cached:
    these values key the builders' memo for every client.
    """

    service: ServiceId
    port: int
    protocol: str
    cluster_ip: str
    match_ips: tuple[str, ...]
    routes: tuple[OutboundRoute, ...]
    upstreams: tuple[Upstream, ...]
    retry: RetryPolicy | None = None
    """HTTP ports only: the retry policy of every route, from the Retry whose source is
    the client and whose destinations name this service (MeshConfig
    ``featureFlags.enableRetryPolicy``); per client, so a port with one is the client's
    own copy of the shared port."""
    retry_ref: ObjectRef | None = field(default=None, compare=False)
    """The Retry that set ``retry`` (for explanations; not part of the value)."""
    _hash: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        value = (self.service, self.port, self.protocol, self.cluster_ip, self.match_ips)
        object.__setattr__(self, "_hash", hash((value, self.routes, self.upstreams, self.retry)))

    def __hash__(self) -> int:
        return self._hash


# -- Egress (policy.openservicemesh.io Egress) --------------------------------------------
@dataclass(frozen=True, slots=True)
class EgressCluster:
    """A cluster for destinations outside the mesh.

    ``name`` is OSM's: ``<host>:<port>`` for an HTTP host (``host`` set: DNS-resolved),
    ``<port>`` for HTTPS/TLS and TCP (``host`` empty: the connection's original
    destination). ``connection`` is the circuit breaking of the UpstreamTrafficSetting an
    Egress names in its ``matches``.
    """

    name: str
    host: str
    port: int
    connection: ConnectionSettings | None = None


@dataclass(frozen=True, slots=True)
class EgressMatch:
    """How the outbound listener recognises egress traffic (OSM's TrafficMatch), one
    filter chain each, named ``egress-<protocol>.<port>`` (`name`).

    HTTP (``protocol`` http): by destination port and HTTP application protocols; routed
    by Host through ``rds-egress.<port>`` (`EgressPolicy.http_hosts`). HTTPS/TLS: by port,
    SNI ``server_names`` and ``ip_ranges``; TCP (tcp, tcp-server-first): by port and
    ``ip_ranges``; both proxied to ``cluster``. ``origins`` are the Egress objects that
    asked for the match.
    """

    port: int
    protocol: str
    ip_ranges: tuple[str, ...] = ()
    server_names: tuple[str, ...] = ()
    cluster: str = ""
    origins: tuple[ObjectRef, ...] = field(default=(), compare=False)
    part: int = 0
    """Which chain of its (port, protocol) this is, when Egresses allowing different
    names at different addresses need more than one (`osm.catalog.egress`); a part
    after the first is named ``egress-<protocol>.<port>.<part>``."""

    @property
    def name(self) -> str:
        base = f"egress-{self.protocol}.{self.port}"
        return f"{base}.{self.part}" if self.part else base


@dataclass(frozen=True, slots=True)
class EgressRoute:
    """Requests matching ``match`` (an HTTPRouteGroup match of the Egress, or every
    request) go to cluster ``cluster``."""

    match: RequestMatch
    cluster: str


@dataclass(frozen=True, slots=True)
class EgressHost:
    """One virtual host of ``rds-egress.<port>``: Host values ``host`` and
    ``host:port``, and its routes in order."""

    host: str
    port: int
    routes: tuple[EgressRoute, ...]
    origins: tuple[ObjectRef, ...] = field(default=(), compare=False)

    @property
    def domains(self) -> tuple[str, str]:
        return (self.host, f"{self.host}:{self.port}")


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What the Egress objects naming a client's service account let it reach outside
    the mesh (only when MeshConfig ``traffic.enableEgress`` is off: mesh-wide
    passthrough makes them moot, as in OSM). Tuples sorted: matches by (port, protocol,
    part), hosts by (port, host), clusters by name."""

    matches: tuple[EgressMatch, ...] = ()
    http_hosts: tuple[EgressHost, ...] = ()
    clusters: tuple[EgressCluster, ...] = ()

    def hosts_on(self, port: int) -> tuple[EgressHost, ...]:
        return tuple(host for host in self.http_hosts if host.port == port)


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Everything a proxy may call: service ports sorted by (service, port).

    ``namespace`` is the client's (same-namespace short host names depend on it).
    ``egress`` is mesh-wide passthrough (MeshConfig ``traffic.enableEgress``);
    ``egress_policy`` what Egress objects allow this client (None: no Egress names it).
    Hash cached: a permissive policy holds every service of the mesh.
    """

    namespace: str
    ports: tuple[OutboundPort, ...]
    egress: bool
    egress_policy: EgressPolicy | None = None
    _hash: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        value = (self.namespace, self.ports, self.egress, self.egress_policy)
        object.__setattr__(self, "_hash", hash(value))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class InboundRule:
    """Requests matching ``match`` are allowed from ``sources`` (None: any identity)."""

    match: RequestMatch
    sources: tuple[Identity, ...] | None


@dataclass(frozen=True, slots=True)
class RouteRateLimit:
    """A local rate limit for the requests whose path matches ``path_regex`` (whole
    path), from an UpstreamTrafficSetting's ``httpRoutes``."""

    path_regex: str
    limit: HTTPLocalRateLimit


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Local rate limits a served port enforces, from the UpstreamTrafficSetting whose
    host is the service's FQDN: ``tcp`` on connections, ``http`` on requests (a virtual
    host limit), ``routes`` per path (each its own bucket, before the host's)."""

    tcp: TCPLocalRateLimit | None = None
    http: HTTPLocalRateLimit | None = None
    routes: tuple[RouteRateLimit, ...] = ()
    origin: ObjectRef | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class InboundPort:
    """Who may connect to one port of one service this proxy serves.

    ``l4_sources`` None means no connection-level check (permissive mode); an empty
    tuple denies every connection. ``rules`` (HTTP ports only) allow requests; a request
    is allowed when any rule allows it. ``rate_limits`` are the service's local limits.
    """

    service: ServiceId
    port: int
    target_port: int
    protocol: str
    l4_sources: tuple[Identity, ...] | None
    rules: tuple[InboundRule, ...]
    rate_limits: RateLimits | None = None


# -- IngressBackend (policy.openservicemesh.io IngressBackend) ------------------------------
@dataclass(frozen=True, slots=True)
class IngressRule:
    """Requests matching ``match`` are allowed from ``principals`` (the DNS names of
    AuthenticatedPrincipal sources, matched against the client certificate's SANs;
    None: any client the chain admits)."""

    match: RequestMatch
    principals: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class IngressPort:
    """Traffic from outside the mesh admitted to one backend port (OSM's
    IngressTrafficMatch plus its HTTP policy), one filter chain each, named
    ``ingress_<ns>/<svc>_<port>_<protocol>`` (`name`).

    ``target_port`` is the backend's port as the IngressBackend names it (the port the
    application listens on). ``protocol`` is http (plaintext) or https (TLS ended by the
    sidecar: ``server_names`` are the accepted SNIs, the client certificate is checked
    against the mesh root unless ``skip_client_cert_validation``). ``source_ip_ranges``
    are CIDRs the connection must come from (IPRange sources and the endpoints of
    Service sources; empty: any source). ``rules`` say which requests and, for https,
    which ``AuthenticatedPrincipal`` names (``principals`` None: any) are allowed.
    ``rate_limits`` are the service's local limits. ``port`` is the service port whose
    target port ``target_port`` is (the local cluster the routes lead to).
    ``origins``: the IngressBackends.
    """

    service: ServiceId
    target_port: int
    protocol: str
    source_ip_ranges: tuple[str, ...]
    rules: tuple[IngressRule, ...]
    server_names: tuple[str, ...] = ()
    skip_client_cert_validation: bool = False
    rate_limits: RateLimits | None = None
    port: int = 0
    origins: tuple[ObjectRef, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return f"ingress_{self.service}_{self.target_port}_{self.protocol}"


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    """The ports a proxy serves to the mesh (``ports``) and to ingress (``ingress``,
    sorted by (service, target port))."""

    identity: Identity
    ports: tuple[InboundPort, ...]
    ingress: tuple[IngressPort, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsSettings:
    min_version: str = "TLSv1_2"
    max_version: str = "TLSv1_3"


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """The whole traffic policy of a class of proxies (see `Proxy.class_key`)."""

    identity: Identity
    kind: ProxyKind
    inbound: InboundPolicy
    outbound: OutboundPolicy
    tls: TlsSettings
