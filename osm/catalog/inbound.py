"""Inbound policy: who may call the service ports a proxy serves, and which requests.

The one idea: in SMI mode the TrafficTargets to an identity are read once into grants
(`grants`: HTTP request matches and TCPRoute port sets, each with its sources), and
each port of a proxy running as that identity admits what the grants covering it allow
(`inbound_policy`); in permissive mode every port admits every mesh identity.

Rules (SMI access v1alpha3, specs v1alpha4): an HTTP port admits the sources of
HTTPRouteGroup rules (requests matching the named matches; a rule without ``matches``
means all of the group's; conditions of one match are ANDed, matches ORed) and of
TCPRoute rules covering the port; a TCP port admits only TCPRoute sources. A TCPRoute
with no ports covers every port; a TCPRoute port covers a service port when it equals
the port or its target port. A TCPRoute source on an HTTP port may send any request.

The Python sidecar (`DataPlane.tunnels_grpc`) proxies a gRPC port as TCP, with policy
never more permissive than the HTTP policy it replaces: SMI mode admits the TCPRoute
sources covering the port and the sources of HTTPRouteGroup matches that admit every
request (`RequestMatch.matches_every_request`); the sources of narrower matches are
denied, with a warning naming the TrafficTarget rule.
"""

from __future__ import annotations

from typing import NamedTuple

from osm.base.identity import Identity
from osm.catalog import policy
from osm.catalog.policy import (
    InboundPolicy,
    InboundPort,
    InboundRule,
    LocalPort,
    Proxy,
    RequestMatch,
)
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn
from osm.model.meta import ObjectRef
from osm.model.smi import HTTPRouteGroup, TCPRoute


class HttpGrant(NamedTuple):
    """Requests matching ``match`` are allowed from ``sources`` by a TrafficTarget's rule:
    ``target`` and ``rule`` (``spec.rules[i]: HTTPRouteGroup "name"``) say which, and
    ``match_name`` which match of the group (explanations only)."""

    match: RequestMatch
    sources: tuple[Identity, ...]
    target: ObjectRef
    rule: str
    match_name: str = ""


class TcpGrant(NamedTuple):
    """Connections to ``ports`` (none: every port) are allowed from ``sources`` by a
    TrafficTarget's TCPRoute rule (``target``, ``rule``: for explanations only)."""

    ports: tuple[int, ...]
    sources: tuple[Identity, ...]
    target: ObjectRef | None = None
    rule: str = ""


Grants = tuple[tuple[HttpGrant, ...], tuple[TcpGrant, ...]]
NO_GRANTS: Grants = ((), ())
"""The grants permissive mode uses (it reads no TrafficTarget)."""


def grants(state: MeshState, identity: Identity, warn: Warn) -> Grants:
    """What the TrafficTargets to ``identity`` allow; rules naming a missing route allow
    nothing, with a warning."""
    http: list[HttpGrant] = []
    tcp: list[TcpGrant] = []
    key = ("identity", identity)
    for target in state.targets_to(identity):
        sources = tuple(sorted({Identity(s.namespace, s.name) for s in target.sources}))
        for index, rule in enumerate(target.rules):
            where = f"spec.rules[{index}]"
            if rule.kind == HTTPRouteGroup.KIND:
                group = state.route_group(target.namespace, rule.name)
                if not isinstance(group, HTTPRouteGroup):
                    warn(
                        key,
                        target,
                        f'{where}: HTTPRouteGroup "{target.namespace}/{rule.name}" does '
                        "not exist; the rule allows nothing",
                    )
                    continue
                matches = list(group.matches)
                if rule.matches:
                    matches = []
                    for name in rule.matches:
                        match = group.match(name)
                        if match is None:
                            warn(
                                key,
                                target,
                                f'{where}: HTTPRouteGroup "{rule.name}" has no match '
                                f'"{name}"; it allows nothing',
                            )
                        else:
                            matches.append(match)
                rule_text = f'{where}: HTTPRouteGroup "{rule.name}"'
                http.extend(
                    HttpGrant(RequestMatch.of(m), sources, target.ref, rule_text, m.name)
                    for m in matches
                )
            else:
                route = state.tcp_route(target.namespace, rule.name)
                if not isinstance(route, TCPRoute):
                    warn(
                        key,
                        target,
                        f'{where}: TCPRoute "{target.namespace}/{rule.name}" does not '
                        "exist; the rule allows nothing",
                    )
                    continue
                tcp.append(
                    TcpGrant(route.ports, sources, target.ref, f'{where}: TCPRoute "{rule.name}"')
                )
    return (tuple(http), tuple(tcp))


def covers(grant: TcpGrant, port: int, target_port: int) -> bool:
    """Whether a TCPRoute grant covers a served port: it names no port, or the service
    port, or its target port."""
    return not grant.ports or port in grant.ports or target_port in grant.ports


def inbound_policy(proxy: Proxy, permissive: bool, grants: Grants, warn: Warn) -> InboundPolicy:
    """Who may call the service ports ``proxy`` serves, and which requests; ``grants``
    are those of its identity (`NO_GRANTS` in permissive mode)."""
    ports: list[InboundPort] = []
    http_grants, tcp_grants = grants
    tunnels = proxy.sidecar.tunnels_grpc
    for local in proxy.local_ports:
        tunnelled = tunnels and local.protocol == policy.GRPC_PROTOCOL
        protocol = policy.TCP_PROTOCOL if tunnelled else local.protocol
        http = policy.is_http(protocol)
        if permissive:
            rules = (InboundRule(RequestMatch(), None),) if http else ()
            ports.append(
                InboundPort(local.service, local.port, local.target_port, protocol, None, rules)
            )
            continue
        tcp_sources: set[Identity] = set()
        for tcp_grant in tcp_grants:
            if covers(tcp_grant, local.port, local.target_port):
                tcp_sources.update(tcp_grant.sources)
        if tunnelled:
            allowed = _tunnelled_sources(proxy.identity, local, http_grants, tcp_sources, warn)
            ports.append(
                InboundPort(local.service, local.port, local.target_port, protocol, allowed, ())
            )
            continue
        if not http:
            ports.append(
                InboundPort(
                    local.service,
                    local.port,
                    local.target_port,
                    protocol,
                    tuple(sorted(tcp_sources)),
                    (),
                )
            )
            continue
        by_match: dict[RequestMatch, set[Identity]] = {}
        for grant in http_grants:
            by_match.setdefault(grant.match, set()).update(grant.sources)
        rules_list = [InboundRule(m, tuple(sorted(s))) for m, s in by_match.items()]
        if tcp_sources:
            rules_list.append(InboundRule(RequestMatch(), tuple(sorted(tcp_sources))))
        l4 = set(tcp_sources)
        for grant in http_grants:
            l4.update(grant.sources)
        ports.append(
            InboundPort(
                local.service,
                local.port,
                local.target_port,
                protocol,
                tuple(sorted(l4)),
                tuple(rules_list),
            )
        )
    return InboundPolicy(proxy.identity, tuple(ports))


def _tunnelled_sources(
    identity: Identity,
    local: LocalPort,
    http_grants: tuple[HttpGrant, ...],
    tcp_sources: set[Identity],
    warn: Warn,
) -> tuple[Identity, ...]:
    """SMI: who may connect to a gRPC port proxied as TCP. A connection carries any
    request, so only sources allowed every request on it are: TCPRoute sources, and
    sources of HTTP matches that admit every request. The sources of narrower
    matches are denied, with a warning per TrafficTarget rule (keyed by identity:
    the answer is the same for every proxy of the identity that tunnels gRPC)."""
    allowed = set(tcp_sources)
    for grant in http_grants:
        if grant.match.matches_every_request:
            allowed.update(grant.sources)
    denied: dict[tuple[ObjectRef, str], set[Identity]] = {}
    for grant in http_grants:
        if not grant.match.matches_every_request:
            key = (grant.target, grant.rule)
            denied.setdefault(key, set()).update(set(grant.sources) - allowed)
    for (target, where), refused in sorted(
        denied.items(), key=lambda item: (str(item[0][0]), item[0][1])
    ):
        if not refused:
            continue
        names = ", ".join(str(s) for s in sorted(refused))
        warn(
            ("identity", identity),
            target,
            f"{where} does not allow every request, and port {local.port} of "
            f'Service "{local.service}" is gRPC on the Python sidecar, which proxies '
            "gRPC as TCP and cannot check requests: the rule allows nothing on that "
            f"port, {names} denied (a TCPRoute, or a match of any method with "
            'pathRegex ".*" or none, allows every request)',
        )
    return tuple(sorted(allowed))
