"""Egress: what the Egress objects naming a client let it reach outside the mesh.

The one idea: a client's Egress objects (`MeshState.egresses_from` its identity) are read
into one `EgressPolicy` (OSM's EgressTrafficPolicy, ``GetEgressTrafficPolicy``): traffic
matches for the outbound listener, HTTP virtual hosts per port, and the clusters they
name. Only when MeshConfig ``traffic.enableEgress`` is off (the catalog does not ask
otherwise), as in OSM. Per port protocol:

* http: match ``egress-http.<port>`` (the port only); one virtual host per host with
  the routes of the Egress's HTTPRouteGroup matches (every request without one), each
  to cluster ``<host>:<port>`` (DNS-resolved);
* https: match ``egress-https.<port>`` by SNI (the hosts) and the ``ipAddresses``, to
  cluster ``<port>`` (original destination);
* tcp, tcp-server-first: match ``egress-<protocol>.<port>`` by the ``ipAddresses``, to
  cluster ``<port>``.

As OSM does: an Egress naming a missing UpstreamTrafficSetting is ignored (a warning);
one naming a missing HTTPRouteGroup keeps its other groups' matches, and when it names
no group that exists its hosts have no route (every request is answered 404).

Merging Egress objects (OSM deduplicates equal values only; where it would emit two
virtual hosts with the same domains, which Envoy refuses, or two filter chains of one
name, which names no longer tell apart, we merge):

* the matches of one (port, protocol) admit exactly the union of what each Egress
  admits (an address in its ranges with a name among its hosts; no ranges: every
  address, no hosts: every name). One match when that is one (address ranges, server
  names) pair; else one per set of names (`_chains`), parts ``.1``, ``.2``... of
  ``egress-<protocol>.<port>``, chosen as Envoy chooses: most specific range first;
* of two matches Envoy could not tell apart (tcp and tcp-server-first with the same
  ranges, or https without server names and tcp with the same ranges) one is kept,
  the other warned and left out: a tcp-server-first one (its port keeps the inspectors
  off, which a client-first protocol does not mind), else the first in (port,
  protocol) order;
* hosts of one (port, host) are one virtual host: its routes are the union, in order;
* a cluster named twice with different connection settings (two
  UpstreamTrafficSettings) keeps the first Egress's (by namespace and name), warned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from osm.base.identity import Identity
from osm.catalog import routegroups
from osm.catalog.policy import (
    EgressCluster,
    EgressHost,
    EgressMatch,
    EgressPolicy,
    EgressRoute,
    RequestMatch,
)
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn, WarningKey
from osm.model.meta import ObjectRef
from osm.model.policy import MATCH_KINDS, ConnectionSettings, Egress, UpstreamTrafficSetting

HTTP = "http"
HTTPS = "https"
SERVER_FIRST = "tcp-server-first"
TCP_KINDS = frozenset({"tcp", SERVER_FIRST})
EVERY_REQUEST = RequestMatch()


def egress_policy(state: MeshState, identity: Identity, warn: Warn) -> EgressPolicy | None:
    """The `EgressPolicy` of a client running as ``identity`` (None: no Egress names it,
    or none that applies).

    Problems (a missing HTTPRouteGroup or UpstreamTrafficSetting, merges that widen or
    drop a match) are warnings under ``("identity", identity)``; the rest of the
    policy still applies.
    """
    key: WarningKey = ("identity", identity)
    merged = _Merged()
    for egress in state.egresses_from(identity):
        found, connection = _connection(state, egress, key, warn)
        if not found:
            continue
        requests: tuple[RequestMatch, ...] | None = None
        for spec in egress.ports:
            port, protocol = spec.number, spec.protocol
            if protocol == HTTP:
                if requests is None:
                    requests = _request_matches(state, egress, key, warn)
                merged.add_match(EgressMatch(port, HTTP), egress.ref)
                for host in egress.hosts:
                    if host.startswith("*."):
                        warn(
                            key,
                            egress,
                            f"http port {port}: host {host} is a wildcard, which DNS cannot "
                            "resolve (as in OSM, its cluster has no endpoint); list the hosts, "
                            "or use https, matched by SNI",
                        )
                    cluster = EgressCluster(f"{host}:{port}", host, port, connection)
                    merged.add_cluster(cluster, egress.ref, key, warn)
                    routes = tuple(EgressRoute(match, cluster.name) for match in requests)
                    merged.add_host(host, port, routes, egress.ref)
            elif protocol == HTTPS or protocol in TCP_KINDS:
                cluster = EgressCluster(str(port), "", port, connection)
                merged.add_cluster(cluster, egress.ref, key, warn)
                server_names = tuple(sorted(set(egress.hosts))) if protocol == HTTPS else ()
                match = EgressMatch(
                    port,
                    protocol,
                    ip_ranges=tuple(sorted(set(egress.ip_addresses))),
                    server_names=server_names,
                    cluster=cluster.name,
                )
                merged.add_match(match, egress.ref)
    return merged.policy(key, warn)


def _connection(
    state: MeshState, egress: Egress, key: WarningKey, warn: Warn
) -> tuple[bool, ConnectionSettings | None]:
    """The connection settings of the UpstreamTrafficSetting ``egress`` names (None:
    it names none); False when it names one that does not exist."""
    for match in egress.matches:
        if _names(match.api_group, match.kind, UpstreamTrafficSetting.KIND):
            setting = state.upstream_setting(egress.namespace, match.name)
            if setting is None:
                warn(
                    key,
                    egress,
                    f'UpstreamTrafficSetting "{egress.namespace}/{match.name}" in matches '
                    "does not exist; the Egress is ignored",
                )
                return False, None
            return True, setting.connection_settings
    return True, None


def _request_matches(
    state: MeshState, egress: Egress, key: WarningKey, warn: Warn
) -> tuple[RequestMatch, ...]:
    """The request matches of ``egress``'s HTTPRouteGroups, in order, without repeats;
    every request when it names no HTTPRouteGroup."""
    found, named = routegroups.request_matches(
        state, egress, key, warn, "its routes match no request"
    )
    return found if named else (EVERY_REQUEST,)


def _names(api_group: str, kind: str, wanted: str) -> bool:
    return kind == wanted and MATCH_KINDS.get(api_group) == wanted


@dataclass(slots=True)
class _Host:
    routes: list[EgressRoute] = field(default_factory=list)
    origins: list[ObjectRef] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Allowed:
    """What one Egress allows on a (port, protocol): address ranges and server names
    (empty: every one)."""

    ranges: tuple[str, ...]
    names: tuple[str, ...]
    origin: ObjectRef


@dataclass(slots=True)
class _Merged:
    """The Egress objects' contributions, merged as the module docstring says."""

    allowed: dict[tuple[int, str], list[_Allowed]] = field(default_factory=dict)
    clusters_of: dict[tuple[int, str], str] = field(default_factory=dict)
    hosts: dict[tuple[int, str], _Host] = field(default_factory=dict)
    clusters: dict[str, tuple[EgressCluster, ObjectRef]] = field(default_factory=dict)

    def add_match(self, match: EgressMatch, origin: ObjectRef) -> None:
        key = (match.port, match.protocol)
        self.allowed.setdefault(key, []).append(
            _Allowed(match.ip_ranges, match.server_names, origin)
        )
        self.clusters_of[key] = match.cluster

    def add_host(
        self, host: str, port: int, routes: tuple[EgressRoute, ...], origin: ObjectRef
    ) -> None:
        entry = self.hosts.setdefault((port, host), _Host())
        entry.routes.extend(route for route in routes if route not in entry.routes)
        if origin not in entry.origins:
            entry.origins.append(origin)

    def add_cluster(
        self, cluster: EgressCluster, origin: ObjectRef, key: WarningKey, warn: Warn
    ) -> None:
        found = self.clusters.get(cluster.name)
        if found is None:
            self.clusters[cluster.name] = (cluster, origin)
        elif found[0].connection != cluster.connection:
            warn(
                key,
                origin,
                f"cluster {cluster.name}: this Egress and {found[1]} set different "
                f"connection settings (UpstreamTrafficSetting); those of {found[1]} apply",
            )

    def policy(self, key: WarningKey, warn: Warn) -> EgressPolicy | None:
        if not self.allowed:
            return None
        kept: list[EgressMatch] = []
        criteria: dict[tuple[object, ...], EgressMatch] = {}
        # A server-first match wins a tie: the inspectors stay off on its port, which a
        # client-first protocol does not mind and a server-first one needs.
        for port, protocol in sorted(self.allowed, key=lambda k: (k[0], k[1] != SERVER_FIRST, k)):
            cluster = self.clusters_of[(port, protocol)]
            for match in _chains(port, protocol, cluster, self.allowed[(port, protocol)]):
                same = criteria.get(_criteria(match))
                if same is not None:
                    for origin in match.origins:
                        warn(
                            key,
                            origin,
                            f"{match.name} matches the same connections as {same.name} "
                            f"(port, addresses, server names); {same.name} applies",
                        )
                    continue
                criteria[_criteria(match)] = match
                kept.append(match)
        kept.sort(key=lambda m: (m.port, m.protocol, m.part))
        clusters = {name for match in kept for name in _clusters_of(match, self.hosts)}
        return EgressPolicy(
            matches=tuple(kept),
            http_hosts=tuple(
                EgressHost(host, port, tuple(entry.routes), tuple(entry.origins))
                for (port, host), entry in sorted(self.hosts.items())
            ),
            clusters=tuple(
                self.clusters[name][0] for name in sorted(self.clusters) if name in clusters
            ),
        )


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _chains(port: int, protocol: str, cluster: str, allowed: list[_Allowed]) -> list[EgressMatch]:
    """The matches that admit exactly the union of ``allowed`` on one (port, protocol),
    as Envoy picks a chain: by the most specific address range first, then by server
    name, never going back.

    Each address range (and "any address", when an Egress lists none) gets the names
    of every Egress whose ranges contain it (every name when one of them lists none);
    ranges with equal names share a chain. Since the ranges containing an address are
    nested, the most specific one holding it carries the names of every Egress that
    admits the address. A range whose names are those of "any address" adds nothing.
    """
    if protocol == HTTP:
        return [EgressMatch(port, HTTP, origins=_origins(allowed))]
    every_address = [a for a in allowed if not a.ranges]
    groups: dict[tuple[str, ...], list[str]] = {}
    sources: dict[tuple[str, ...], list[_Allowed]] = {}
    any_names = _names_of(every_address) if every_address else None
    for cidr in sorted({r for a in allowed for r in a.ranges}):
        network = ipaddress.ip_network(cidr)
        covering = [a for a in allowed if _covers(a.ranges, network)]
        names = _names_of(covering)
        if names == any_names:
            continue
        groups.setdefault(names, []).append(cidr)
        contributors = sources.setdefault(names, [])
        contributors += [a for a in covering if a not in contributors]
    result: list[EgressMatch] = []
    if every_address:
        result.append(
            EgressMatch(port, protocol, (), any_names or (), cluster, _origins(every_address))
        )
    for names, cidrs in sorted(groups.items(), key=lambda item: item[1]):
        result.append(
            EgressMatch(
                port, protocol, tuple(cidrs), names or (), cluster, _origins(sources[names])
            )
        )
    return [
        EgressMatch(m.port, m.protocol, m.ip_ranges, m.server_names, m.cluster, m.origins, part)
        for part, m in enumerate(result)
    ]


def _covers(ranges: tuple[str, ...], network: Network) -> bool:
    """Whether ``ranges`` (empty: every address) hold all of ``network``."""
    if not ranges:
        return True
    for cidr in ranges:
        outer = ipaddress.ip_network(cidr)
        if outer.version == network.version and network.subnet_of(outer):  # type: ignore[arg-type]
            return True
    return False


def _names_of(allowed: list[_Allowed]) -> tuple[str, ...]:
    """The union of the server names allowed (empty: every name, which absorbs)."""
    if any(not a.names for a in allowed):
        return ()
    return tuple(sorted({name for a in allowed for name in a.names}))


def _origins(allowed: list[_Allowed]) -> tuple[ObjectRef, ...]:
    result: list[ObjectRef] = []
    for item in allowed:
        if item.origin not in result:
            result.append(item.origin)
    return tuple(result)


def _criteria(match: EgressMatch) -> tuple[object, ...]:
    """What Envoy matches a connection on for ``match`` (HTTP: its application
    protocols, which no other match has)."""
    if match.protocol == HTTP:
        return (match.port, HTTP)
    return (match.port, match.ip_ranges, match.server_names)


def _clusters_of(match: EgressMatch, hosts: Iterable[tuple[int, str]]) -> list[str]:
    if match.protocol != HTTP:
        return [match.cluster]
    return [f"{host}:{port}" for port, host in hosts if port == match.port]
