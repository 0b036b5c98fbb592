"""Explanations: whether one pod may call another, port by port, and which object decides.

The one idea: an explanation is read off the very answers that configure the proxies,
never a second reading of the policies. The source's `Catalog.outbound` says which
service ports its sidecar has a route to; the destination's `Catalog.inbound` says who
its sidecar admits on each port (``l4_sources``) and which requests (``rules``); and
`Catalog.grants_of` gives the TrafficTarget rule behind each of those sources, so the
verdict is the proxies' and the explanation names the objects that made it. Egress and
IngressBackend explanations read `OutboundPolicy.egress_policy` and
`InboundPolicy.ingress` (`egress_decision`, `ingress_decision`) through the provenance
those values carry (``origins``).

What decides, in the order a connection meets it: the source is a proxy of the mesh
(its namespace is monitored, its pod injected), else only an IngressBackend admits it;
the destination is, else only mesh-wide egress or an Egress lets the source out; the
source's sidecar has a route to the service port (in SMI mode: a TrafficTarget names
its service account as a source); the destination's sidecar admits its identity on the
port (permissive mode, a TrafficTarget rule: HTTPRouteGroup matches on HTTP ports,
TCPRoutes on any port) and, on HTTP ports, its requests route by route. A gRPC port
on the Python sidecar is TCP: only grants of every request count there.

Everything here is pure and returns plain values (`Explanation`, rendered by the CLI).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from osm.base import wellknown
from osm.base.identity import Identity, ProxyKind
from osm.catalog import inbound, policy
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import (
    EgressPolicy,
    InboundPolicy,
    InboundPort,
    IngressPort,
    OutboundPolicy,
    OutboundPort,
    Proxy,
    RateLimits,
    RequestMatch,
)
from osm.model.config import MeshConfig
from osm.model.core import Pod
from osm.model.meta import ObjectRef
from osm.model.policy import ConnectionSettings, RetryPolicy

ALL_REQUESTS = "any request"
SIDECAR_CONTAINERS = frozenset(
    {wellknown.ENVOY_CONTAINER_NAME, wellknown.PYTHON_SIDECAR_CONTAINER_NAME}
)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether something is allowed, and the objects (as text) that decide it."""

    allowed: bool
    decided_by: tuple[str, ...]
    objects: tuple[ObjectRef, ...] = field(default=(), compare=False)
    """The deciding objects that allow it (OSM's summary line names TrafficTargets)."""


@dataclass(frozen=True, slots=True)
class RouteAnswer:
    """One route of an HTTP port (the requests of one inbound rule)."""

    match: str
    allowed: bool
    decided_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PortAnswer:
    """One port of one service the destination serves."""

    service: ServiceId
    port: int
    target_port: int
    protocol: str
    allowed: bool
    decided_by: tuple[str, ...]
    routes: tuple[RouteAnswer, ...] = ()
    notes: tuple[str, ...] = ()
    """What else applies: the source's Retry, the service's connection and rate limits,
    IngressBackends, how the source reaches the port."""
    objects: tuple[ObjectRef, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Whether ``source`` may call ``destination``, per port of the destination."""

    source: ProxyId
    destination: ProxyId
    source_identity: Identity
    destination_identity: Identity
    source_sidecar: str
    """``envoy``, ``python`` or ``none`` (the pod is not a proxy of the mesh)."""
    destination_sidecar: str
    permissive: bool
    mesh_config: str
    ports: tuple[PortAnswer, ...]
    membership: tuple[str, ...] = ()
    """Why a pod is not a proxy of the mesh (empty when both are)."""
    warnings: tuple[str, ...] = ()
    """The catalog's warnings about the objects involved."""
    port: int | None = None
    """The port asked about (None: every port)."""

    @property
    def allowed(self) -> bool:
        """True when the source may call the destination on some port."""
        return any(port.allowed for port in self.ports)

    @property
    def allowing(self) -> tuple[ObjectRef, ...]:
        """The objects that allow some port, sorted, once each."""
        found = {ref for port in self.ports if port.allowed for ref in port.objects}
        return tuple(sorted(found, key=lambda r: (r.kind, r.namespace, r.name)))

    def to_dict(self) -> dict[str, Any]:
        """A plain value for JSON and YAML output."""
        return {
            "source": {
                "pod": str(self.source),
                "serviceAccount": str(self.source_identity),
                "sidecar": self.source_sidecar,
            },
            "destination": {
                "pod": str(self.destination),
                "serviceAccount": str(self.destination_identity),
                "sidecar": self.destination_sidecar,
            },
            "mode": "permissive" if self.permissive else "smi",
            "meshConfig": self.mesh_config,
            "allowed": self.allowed,
            "membership": list(self.membership),
            "ports": [
                {
                    "service": str(port.service),
                    "port": port.port,
                    "targetPort": port.target_port,
                    "protocol": port.protocol,
                    "allowed": port.allowed,
                    "decidedBy": list(port.decided_by),
                    "routes": [
                        {
                            "match": route.match,
                            "allowed": route.allowed,
                            "decidedBy": list(route.decided_by),
                        }
                        for route in port.routes
                    ],
                    "notes": list(port.notes),
                }
                for port in self.ports
            ],
            "warnings": list(self.warnings),
        }


# -- the pods ------------------------------------------------------------------------------
def explain(
    catalog: Catalog, source: ProxyId, destination: ProxyId, port: int | None = None
) -> Explanation:
    """Whether pod ``source`` may call pod ``destination`` on each port of each service
    the destination serves (only service or target port ``port`` when given).

    Raises `LookupError` naming the pod that is not in the catalog's state.
    """
    state = catalog.state
    pods: list[Pod] = []
    for pod_id in (source, destination):
        pod = state.pod(pod_id.namespace, pod_id.name)
        if pod is None:
            raise LookupError(f"pod {pod_id} does not exist")
        pods.append(pod)
    src_pod, dst_pod = pods
    src, dst = catalog.proxy_for(src_pod), catalog.proxy_for(dst_pod)
    why_not = [
        f"{role} pod {pod_id}: {reason}"
        for role, pod_id, reason in (
            ("source", source, _outside(catalog, src_pod)),
            ("destination", destination, _outside(catalog, dst_pod)),
        )
        if reason
    ]
    src_in = not _outside(catalog, src_pod)
    dst_in = not _outside(catalog, dst_pod)
    wanted = [
        local
        for local in dst.local_ports
        if port is None or port in (local.port, local.target_port)
    ]
    answers: list[PortAnswer] = []
    if src_in and dst_in and dst.kind == ProxyKind.SIDECAR:
        answers = _between_proxies(catalog, src, dst, {(p.service, p.port) for p in wanted})
    elif src_in and not dst_in:
        outbound = catalog.outbound(src.identity, src.sidecar)
        for local in wanted:
            if any(p.service == local.service and p.port == local.port for p in outbound.ports):
                decision = Decision(
                    False,
                    (
                        f"{src.identity}'s sidecar sends mutual TLS to Service "
                        f'"{local.service}", but pod {destination} has no sidecar to '
                        "accept it",
                    ),
                )
            else:
                decision = egress_decision(
                    outbound, dst_pod.pod_ip, local.target_port, local.service.fqdn
                )
            answers.append(
                _port_answer(local.service, local.port, local.target_port, local.protocol, decision)
            )
    elif dst_in and not src_in:
        admitted = catalog.inbound(dst).ingress if dst.kind == ProxyKind.SIDECAR else ()
        for local in wanted:
            decision = ingress_decision(admitted, local.service, local.target_port, src_pod.pod_ip)
            if not decision.allowed:
                decision = Decision(
                    False,
                    (
                        f"pod {source} has no sidecar and {destination}'s sidecar admits "
                        "only mutual TLS from mesh identities on this port; "
                        + decision.decided_by[0],
                    ),
                )
            answers.append(
                _port_answer(local.service, local.port, local.target_port, local.protocol, decision)
            )
    else:
        reason = (
            "neither pod has a sidecar: the mesh does not see this traffic"
            if not (src_in or dst_in)
            else f"pod {destination} is a proxyless gRPC client: it serves nothing through the mesh"
        )
        decision = Decision(not (src_in or dst_in), (reason,))
        answers = [
            _port_answer(local.service, local.port, local.target_port, local.protocol, decision)
            for local in wanted
        ]
    return Explanation(
        source,
        destination,
        src.identity,
        dst.identity,
        src.sidecar.value if src_in else "none",
        dst.sidecar.value if dst_in else "none",
        catalog.permissive,
        _mesh_config(catalog),
        tuple(answers),
        tuple(why_not),
        tuple(_warnings(catalog, src, dst)),
        port,
    )


def _port_answer(
    service: ServiceId, port: int, target_port: int, protocol: str, decision: Decision
) -> PortAnswer:
    return PortAnswer(
        service,
        port,
        target_port,
        protocol,
        decision.allowed,
        decision.decided_by,
        objects=decision.objects,
    )


def _outside(catalog: Catalog, pod: Pod) -> str:
    """Why ``pod`` is not a proxy of the mesh; empty when it is."""
    if not catalog.pod_in_mesh(pod):
        if not catalog.in_mesh_namespace(pod.namespace):
            return (
                f'namespace "{pod.namespace}" is not in the mesh (osm namespace add '
                f"{pod.namespace})"
            )
        return "its annotation disables sidecar injection"
    injected = pod.metadata.labels.get(wellknown.PROXY_UUID_LABEL) or any(
        c.name in SIDECAR_CONTAINERS for c in pod.spec.containers
    )
    if not injected:
        return (
            "it was not injected (no sidecar: created before its namespace joined the "
            "mesh? restart it)"
        )
    return ""


def _mesh_config(catalog: Catalog) -> str:
    config = catalog.config
    stored = catalog.state.get(MeshConfig.KIND, config.namespace, config.name)
    return str(config.ref) if stored is not None else "OSM's defaults (no MeshConfig stored)"


def _between_proxies(
    catalog: Catalog, src: Proxy, dst: Proxy, wanted: set[tuple[ServiceId, int]]
) -> list[PortAnswer]:
    outbound = catalog.outbound(src.identity, src.sidecar)
    served = catalog.inbound(dst)
    http_grants, tcp_grants = catalog.grants_of(dst.identity)
    reach = {(p.service, p.port): p for p in outbound.ports}
    tunnelled = {
        (local.service, local.port)
        for local in dst.local_ports
        if dst.sidecar.tunnels_grpc and local.protocol == policy.GRPC_PROTOCOL
    }
    mode = f"permissive mode ({_mesh_config(catalog)}: enablePermissiveTrafficPolicyMode)"
    answers = []
    for port in served.ports:
        key = (port.service, port.port)
        if key not in wanted:
            continue
        direct = reach.get(key)
        via = [
            p
            for p in outbound.ports
            if p.service != port.service
            and any(u.service == port.service and u.port == port.port for u in p.upstreams)
        ]
        notes = _notes(catalog, src, port, direct, via, served)
        if direct is None and not via:
            reason = (
                _not_a_source(catalog, src.identity, dst.identity)
                if not catalog.permissive
                else f'{src.identity}\'s sidecar has no route to Service "{port.service}"'
            )
            answers.append(
                PortAnswer(
                    port.service,
                    port.port,
                    port.target_port,
                    port.protocol,
                    False,
                    (f"no route at the source: {reason}",),
                    notes=notes,
                )
            )
            continue
        if port.l4_sources is None:
            routes: tuple[RouteAnswer, ...] = ()
            if port.rules:
                routes = (RouteAnswer(ALL_REQUESTS, True, (mode,)),)
            answers.append(
                PortAnswer(
                    port.service,
                    port.port,
                    port.target_port,
                    port.protocol,
                    True,
                    (mode,),
                    routes,
                    notes,
                )
            )
            continue
        decision, routes = _admitted(
            catalog, src.identity, dst.identity, port, key in tunnelled, http_grants, tcp_grants
        )
        answers.append(
            PortAnswer(
                port.service,
                port.port,
                port.target_port,
                port.protocol,
                decision.allowed,
                decision.decided_by,
                routes,
                notes,
                decision.objects,
            )
        )
    return answers


def _admitted(
    catalog: Catalog,
    source: Identity,
    destination: Identity,
    port: InboundPort,
    tunnelled: bool,
    http_grants: Sequence[inbound.HttpGrant],
    tcp_grants: Sequence[inbound.TcpGrant],
) -> tuple[Decision, tuple[RouteAnswer, ...]]:
    """SMI mode: whether the destination's sidecar admits ``source`` on ``port`` (its
    ``l4_sources`` and ``rules``), with the grants that say so."""
    own_tcp = [
        g
        for g in tcp_grants
        if source in g.sources and inbound.covers(g, port.port, port.target_port)
    ]
    own_http = [g for g in http_grants if source in g.sources]
    assert port.l4_sources is not None
    admitted = source in port.l4_sources
    if tunnelled:
        deciders = [g for g in own_tcp] + [g for g in own_http if g.match.matches_every_request]
        if admitted:
            return _granted(deciders), ()
        narrow = [g for g in own_http if not g.match.matches_every_request]
        if narrow:
            return Decision(
                False,
                tuple(
                    f"{_grant_text(g)} does not allow every request, and port {port.port} is "
                    "gRPC on the destination's Python sidecar, which proxies gRPC as TCP "
                    "and cannot check requests"
                    for g in narrow
                ),
            ), ()
        return Decision(False, (_not_a_source(catalog, source, destination),)), ()
    if not policy.is_http(port.protocol):
        if admitted:
            return _granted(own_tcp), ()
        if own_http:
            return Decision(
                False,
                (
                    f"{_grant_text(own_http[0])} does not apply to a TCP port, and no "
                    f"TCPRoute covering port {port.port} names {source} as a source",
                ),
            ), ()
        return Decision(False, (_not_a_source(catalog, source, destination),)), ()
    routes: list[RouteAnswer] = []
    objects: list[ObjectRef] = []
    by_match: dict[RequestMatch, list[policy.InboundRule]] = {}
    for rule in port.rules:
        by_match.setdefault(rule.match, []).append(rule)
    for match, rules in by_match.items():
        allowed = any(r.sources is None or source in r.sources for r in rules)
        if allowed:
            grants: list[Any] = [g for g in own_http if g.match == match]
            if match.matches_all:
                grants += own_tcp
            decision = _granted(grants)
            objects += decision.objects
            routes.append(RouteAnswer(describe_match(match), True, decision.decided_by))
        else:
            others = [_grant_text(g) for g in http_grants if g.match == match]
            if match.matches_all:
                others += [
                    _grant_text(g)
                    for g in tcp_grants
                    if inbound.covers(g, port.port, port.target_port)
                ]
            routes.append(
                RouteAnswer(
                    describe_match(match),
                    False,
                    (f"{source} is not a source of " + "; ".join(others),),
                )
            )
    if not routes:
        return Decision(False, (_not_a_source(catalog, source, destination),)), ()
    if any(route.allowed for route in routes):
        allowed_by = sorted({text for r in routes if r.allowed for text in r.decided_by})
        return Decision(True, tuple(allowed_by), tuple(objects)), tuple(routes)
    return Decision(False, (_not_a_source(catalog, source, destination, routes=True),)), tuple(
        routes
    )


def _granted(grants: Iterable[inbound.HttpGrant | inbound.TcpGrant]) -> Decision:
    found = list(grants)
    return Decision(
        True,
        tuple(dict.fromkeys(_grant_text(g) for g in found)),
        tuple(dict.fromkeys(g.target for g in found if g.target is not None)),
    )


def _grant_text(grant: inbound.HttpGrant | inbound.TcpGrant) -> str:
    text = f"{grant.target} {grant.rule}"
    if isinstance(grant, inbound.HttpGrant) and grant.match_name:
        text += f' match "{grant.match_name}"'
    return text


def _not_a_source(
    catalog: Catalog, source: Identity, destination: Identity, *, routes: bool = False
) -> str:
    """Why no grant admits ``source``: no TrafficTarget to ``destination`` names it, or
    those that do grant nothing here (a missing route: see the warnings)."""
    targets = catalog.state.targets_to(destination)
    naming = [t for t in targets if any(Identity(s.namespace, s.name) == source for s in t.sources)]
    if naming:
        names = ", ".join(f"{t.namespace}/{t.name}" for t in naming)
        return (
            f"TrafficTarget {names} names {source} as a source, but no rule of it allows "
            "anything on this port (see the warnings)"
        )
    where = (
        "TrafficTargets to it: " + ", ".join(f"{t.namespace}/{t.name}" for t in targets)
        if targets
        else "no TrafficTarget has it as destination"
    )
    what = "for any route of this port" if routes else "as a source"
    return f"no TrafficTarget names {source}'s service account {what} to {destination} ({where})"


def describe_match(match: RequestMatch) -> str:
    """A request match as a reader would say it: ``GET,POST /books.* x-a=1``."""
    if match.matches_all:
        return ALL_REQUESTS
    parts = [",".join(match.methods) or "*", match.path_regex or "*"]
    parts += [f"{name}={value}" for name, value in match.headers]
    return " ".join(parts)


# -- what else applies to a port -------------------------------------------------------------
def _notes(
    catalog: Catalog,
    src: Proxy,
    port: InboundPort,
    direct: OutboundPort | None,
    via: Sequence[OutboundPort],
    served: InboundPolicy,
) -> tuple[str, ...]:
    notes = [
        f'reached through Service "{p.service}" port {p.port} (a TrafficSplit backend)' for p in via
    ]
    if direct is not None and direct.protocol != port.protocol:
        notes.append(
            f"the source's {src.sidecar.value} sidecar sends this port as {direct.protocol}"
        )
    reached = [p for p in ([direct] if direct else []) + list(via)]
    for p in reached:
        if p.retry is not None:
            notes.append(retry_text(p.retry, p.retry_ref))
    connection = next(
        (u.connection for p in reached for u in p.upstreams if u.service == port.service), None
    )
    if connection is not None:
        notes.append(connection_text(connection, _setting_refs(catalog, port.service)))
    if port.rate_limits is not None:
        notes.append(rate_limit_text(port.rate_limits))
    admitted = [
        i for i in served.ingress if i.service == port.service and i.target_port == port.target_port
    ]
    notes += ingress_lines(admitted)
    return tuple(notes)


def _setting_refs(catalog: Catalog, service: ServiceId) -> tuple[ObjectRef, ...]:
    """The UpstreamTrafficSettings whose host is the service's FQDN (the first wins)."""
    found = catalog.state.upstream_settings_for(service.namespace, service.fqdn)
    return tuple(setting.ref for setting in found)


def retry_text(retry: RetryPolicy, origin: ObjectRef | None) -> str:
    by = f" ({origin})" if origin else ""
    return (
        f"retries{by}: up to {retry.num_retries} on {retry.retry_on}, "
        f"{retry.per_try_timeout:g}s per try, back-off {retry.retry_backoff_base_interval:g}s"
    )


def connection_text(connection: ConnectionSettings, origins: Sequence[ObjectRef]) -> str:
    limits: list[str] = []
    if connection.tcp is not None:
        if connection.tcp.max_connections is not None:
            limits.append(f"max {connection.tcp.max_connections} connections")
        if connection.tcp.connect_timeout is not None:
            limits.append(f"connect timeout {connection.tcp.connect_timeout:g}s")
    if connection.http is not None:
        for label, value in (
            ("requests", connection.http.max_requests),
            ("requests per connection", connection.http.max_requests_per_connection),
            ("pending requests", connection.http.max_pending_requests),
            ("retries", connection.http.max_retries),
        ):
            if value is not None:
                limits.append(f"max {value} {label}")
    by = ""
    if origins:
        by = f" ({origins[0]}" + (
            f"; it wins over {', '.join(str(o) for o in origins[1:])})" if origins[1:] else ")"
        )
    return f"connection limits{by}: " + (", ".join(limits) or "none set")


def rate_limit_text(limits: RateLimits) -> str:
    parts: list[str] = []
    if limits.tcp is not None:
        parts.append(
            f"{limits.tcp.connections} connections per {limits.tcp.unit} (burst {limits.tcp.burst})"
        )
    if limits.http is not None:
        parts.append(
            f"{limits.http.requests} requests per {limits.http.unit} (burst "
            f"{limits.http.burst}, then {limits.http.response_status_code})"
        )
    for route in limits.routes:
        parts.append(f"{route.path_regex}: {route.limit.requests} requests per {route.limit.unit}")
    by = f" ({limits.origin})" if limits.origin else ""
    return f"rate limits{by}: " + (", ".join(parts) or "none set")


# -- outside the mesh: Egress and IngressBackend ---------------------------------------------
def _in_ranges(ip: str, ranges: Iterable[str]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for text in ranges:
        try:
            if address in ipaddress.ip_network(text, strict=False):
                return True
        except ValueError:
            continue
    return False


def _refs(origins: Iterable[ObjectRef]) -> str:
    return ", ".join(str(o) for o in origins) or "an Egress"


def egress_decision(outbound: OutboundPolicy, ip: str, port: int, host: str = "") -> Decision:
    """Whether a client with ``outbound`` reaches ``ip:port`` (HTTP requests to ``host``)
    outside the mesh: mesh-wide egress (MeshConfig ``traffic.enableEgress``), else the
    Egress objects behind its `EgressPolicy` (TCP and HTTPS/TLS by port and IP range;
    HTTP by port and Host)."""
    if outbound.egress:
        return Decision(True, ("mesh-wide egress (MeshConfig spec.traffic.enableEgress)",))
    found = outbound.egress_policy or EgressPolicy()
    decided: list[str] = []
    objects: list[ObjectRef] = []
    for match in found.matches:
        if match.port != port:
            continue
        if match.protocol == "http":
            for vhost in found.hosts_on(port):
                if host and host in vhost.domains:
                    decided.append(
                        f"{_refs(vhost.origins)}: http {vhost.host}:{port} (chain {match.name})"
                    )
                    objects += vhost.origins
        elif not match.ip_ranges or _in_ranges(ip, match.ip_ranges):
            sni = f" for SNI {', '.join(match.server_names)}" if match.server_names else ""
            ranges = ", ".join(match.ip_ranges) or "any address"
            decided.append(
                f"{_refs(match.origins)}: {match.protocol} port {port} to {ranges}{sni} "
                f"(chain {match.name})"
            )
            objects += match.origins
    if decided:
        return Decision(True, tuple(decided), tuple(dict.fromkeys(objects)))
    return Decision(
        False,
        (
            "egress is denied: MeshConfig spec.traffic.enableEgress is off and no Egress "
            f"names the source's service account for {host or ip}:{port}",
        ),
    )


def egress_lines(egress: EgressPolicy | None) -> list[str]:
    """What a client may reach outside the mesh, one line per egress match or HTTP host,
    each with the Egress objects that ask for it."""
    if egress is None:
        return []
    lines: list[str] = []
    for match in egress.matches:
        if match.protocol == "http":
            for vhost in egress.hosts_on(match.port):
                lines.append(
                    f"{match.name}: http {', '.join(vhost.domains)} "
                    f"({len(vhost.routes)} route(s)) by {_refs(vhost.origins)}"
                )
            continue
        ranges = ", ".join(match.ip_ranges) or "any address"
        sni = f", SNI {', '.join(match.server_names)}" if match.server_names else ""
        lines.append(
            f"{match.name}: {match.protocol} to {ranges}{sni} -> cluster {match.cluster} "
            f"by {_refs(match.origins)}"
        )
    return lines


def ingress_decision(
    ports: Iterable[IngressPort], service: ServiceId, target_port: int, source_ip: str
) -> Decision:
    """Whether a client outside the mesh at ``source_ip`` is admitted to a backend port by
    an IngressBackend (`InboundPolicy.ingress`): its source ranges (empty: any address)
    must hold the client's address; https also needs a client certificate the rules
    accept."""
    decided: list[str] = []
    objects: list[ObjectRef] = []
    for port in ports:
        if port.service != service or port.target_port != target_port:
            continue
        if port.source_ip_ranges and not _in_ranges(source_ip, port.source_ip_ranges):
            continue
        decided.append(_ingress_text(port))
        objects += port.origins
    if decided:
        return Decision(True, tuple(decided), tuple(dict.fromkeys(objects)))
    return Decision(
        False,
        (f"no IngressBackend admits {source_ip or 'it'} to port {target_port}",),
    )


def _ingress_text(port: IngressPort) -> str:
    by = ", ".join(str(o) for o in port.origins) or "an IngressBackend"
    ranges = ", ".join(port.source_ip_ranges) or "any address"
    text = f"{by}: {port.protocol} on port {port.target_port} from {ranges}"
    if port.protocol == "https":
        principals = sorted({p for r in port.rules for p in (r.principals or ())})
        cert = (
            "any client certificate"
            if port.skip_client_cert_validation
            else "a client certificate from the mesh root"
        )
        text += f", {cert}"
        if principals:
            text += f" naming {', '.join(principals)}"
    routes = [describe_match(r.match) for r in port.rules if not r.match.matches_all]
    if routes:
        text += f", requests {'; '.join(routes)}"
    return text + f" (chain {port.name})"


def ingress_lines(ports: Iterable[IngressPort]) -> list[str]:
    """What IngressBackends admit from outside the mesh, one line per backend port."""
    return [f"ingress: {_ingress_text(port)}" for port in ports]


# -- warnings ---------------------------------------------------------------------------------
def _warnings(catalog: Catalog, src: Proxy, dst: Proxy) -> list[str]:
    """The catalog's warnings about the objects an explanation involves: the pods, the
    destination's services, the TrafficTargets to the destination and from the source,
    the source's Egresses and Retries, the services' IngressBackends and
    UpstreamTrafficSettings."""
    state = catalog.state
    refs: set[ObjectRef] = {
        ObjectRef(Pod.KIND, src.id.namespace, src.id.name),
        ObjectRef(Pod.KIND, dst.id.namespace, dst.id.name),
    }
    refs.update(t.ref for t in state.targets_to(dst.identity))
    refs.update(t.ref for t in state.targets_from(src.identity))
    refs.update(e.ref for e in state.egresses_from(src.identity))
    refs.update(r.ref for r in state.retries_from(src.identity))
    for service_id in dst.services:
        service = state.service(service_id)
        if service is not None:
            refs.add(service.ref)
        refs.update(b.ref for b in state.ingress_backends_for(service_id))
        refs.update(_setting_refs(catalog, service_id))
    return [str(w) for w in catalog.warnings if w.ref in refs]


__all__ = [
    "Decision",
    "Explanation",
    "PortAnswer",
    "RouteAnswer",
    "describe_match",
    "egress_decision",
    "egress_lines",
    "explain",
    "ingress_decision",
    "ingress_lines",
]
