"""Where a request from one pod to a service failed, read off the proxies' own counters.

The one idea: ``osm verify connectivity`` sends one request and reads both sidecars'
admin ``/stats`` before and after it (and the source's ``/config_dump``); this module
turns those readings into a verdict without any I/O (`diagnose`), so it is tested on
recorded stats. Both data planes name their counters as Envoy does (`osm.proxy.stats`
follows Envoy's names), and the names of clusters, filter chains and stat prefixes are
the builders' (`osm.xds.names`).

The checks, in the order a request meets them:

1. no route: the source's configuration has no cluster or outbound filter chain for the
   service port, or its outbound listener found no filter chain
   (``listener.<outbound>.no_filter_chain_match``), or its HTTP route table no route
   (``http.<outbound prefix>.no_route``);
2. no endpoints: ``cluster.<c>.upstream_cx_none_healthy`` grew, or the cluster has no
   members (``membership_total`` 0), or the answer is Envoy's ``no healthy upstream``;
3. TLS: the source's ``cluster.<c>.ssl.*`` errors or the destination's listener
   ``ssl.connection_error`` / ``ssl.fail_verify_*`` grew;
4. RBAC denied: a destination ``...rbac.denied`` counter of the port's inbound chain grew
   (HTTP: ``http.<inbound prefix>.rbac.denied``; TCP: ``<inbound prefix>_rbac.rbac.denied``),
   or the answer is ``403 RBAC: access denied``;
5. connect failure: ``cluster.<c>.upstream_cx_connect_fail`` grew;
6. success: an HTTP answer from the application (any status not explained above), or a
   TCP connection the proxies carried.

The Python sidecar has no ``upstream_cx_none_healthy`` nor client-side ``ssl.*``
counters: there an empty cluster shows as ``membership_total`` 0 and a failed TLS
handshake to the destination as a connect failure (the destination's listener counter
still tells TLS apart when its stats are read).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from osm.base import wellknown
from osm.catalog.ids import ServiceId
from osm.catalog.policy import is_http
from osm.xds import names

Stats = Mapping[str, int]


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    NO_ROUTE = "no-route"
    NO_ENDPOINTS = "no-endpoints"
    TLS = "tls-failure"
    RBAC_DENIED = "rbac-denied"
    CONNECT_FAILURE = "connect-failure"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Target:
    """The service port a request is sent to (``target_port``: the port the destination's
    inbound chain is named by)."""

    service: ServiceId
    port: int
    target_port: int
    protocol: str

    @property
    def cluster(self) -> str:
        return names.cluster(self.service, self.port)

    @property
    def outbound_chain(self) -> str:
        return names.outbound_filter_chain(self.service, self.port, self.protocol)

    @property
    def outbound_prefix(self) -> str:
        return names.stat_prefix(f"outbound_{self.service}_{self.port}")

    @property
    def inbound_prefix(self) -> str:
        return names.stat_prefix(f"inbound_{self.service}_{self.target_port}")


@dataclass(frozen=True, slots=True)
class Probe:
    """What the request got: an HTTP status and the start of the body, or for TCP whether
    the connection was carried; ``error`` says what went wrong on the wire."""

    status: int | None = None
    body: str = ""
    connected: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True)
class Reading:
    """One sidecar's stats before and after the request (None: unavailable)."""

    before: Stats | None = None
    after: Stats | None = None

    def grew(self, names_: Iterable[str]) -> dict[str, int]:
        """The counters among ``names_`` that grew, and by how much."""
        if self.before is None or self.after is None:
            return {}
        found = {}
        for name in names_:
            change = self.after.get(name, 0) - self.before.get(name, 0)
            if change > 0:
                found[name] = change
        return found

    def grew_where(self, accept: Any) -> dict[str, int]:
        """The counters whose name ``accept`` accepts that grew."""
        if self.after is None:
            return {}
        return self.grew(name for name in self.after if accept(name))


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    message: str
    evidence: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS


def parse_stats(text: str) -> dict[str, int]:
    """Envoy's ``/stats`` text (``name: value`` per line); histograms and other
    non-integer values are left out."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            found[name.strip()] = int(value)
    return found


def _field(message: Any, name: str) -> Any:
    """A field of a config dump's JSON by its proto name: Envoy prints proto field names
    (``dynamic_active_clusters``), protobuf's default JSON (the Python sidecar's) camel
    case (``dynamicActiveClusters``)."""
    if not isinstance(message, Mapping):
        return None
    if name in message:
        return message[name]
    head, *rest = name.split("_")
    return message.get(head + "".join(part.title() for part in rest))


def configured(config_dump: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The cluster names and the outbound listener's filter chain names of a
    ``/config_dump`` (both data planes serve Envoy's ConfigDump)."""
    clusters: set[str] = set()
    chains: set[str] = set()
    for config in _field(config_dump, "configs") or ():
        for key in ("dynamic_active_clusters", "static_clusters"):
            for entry in _field(config, key) or ():
                name = _field(_field(entry, "cluster"), "name")
                if name:
                    clusters.add(str(name))
        for entry in _field(config, "dynamic_listeners") or ():
            listener = _field(_field(entry, "active_state"), "listener")
            if _field(listener, "name") != names.OUTBOUND_LISTENER:
                continue
            for chain in _field(listener, "filter_chains") or ():
                name = _field(chain, "name")
                if name:
                    chains.add(str(name))
    return clusters, chains


def parse_config_dump(text: str) -> Mapping[str, Any] | None:
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, Mapping) else None


def _evidence(side: str, grown: Mapping[str, int]) -> list[str]:
    return [f"{side} {name} +{change}" for name, change in sorted(grown.items())]


def diagnose(
    target: Target,
    probe: Probe,
    source: Reading,
    destination: Reading,
    source_config: Mapping[str, Any] | None = None,
) -> Verdict:
    """Where the request to ``target`` failed, or that it succeeded (module docstring)."""
    cluster = f"cluster.{target.cluster}"
    outbound_listener = f"_{wellknown.PROXY_OUTBOUND_PORT}"
    inbound_listener = f"_{wellknown.PROXY_INBOUND_PORT}"
    http = is_http(target.protocol)
    local_reply = probe.body.lower() if probe.status in (403, 503) else ""

    # 1. no route
    if source_config is not None:
        clusters, chains = configured(source_config)
        missing = []
        if target.cluster not in clusters:
            missing.append(f"cluster {target.cluster}")
        if chains and target.outbound_chain not in chains:
            missing.append(f"outbound filter chain {target.outbound_chain}")
        if missing:
            return Verdict(
                Outcome.NO_ROUTE,
                "no route: the source's sidecar has no " + " and no ".join(missing),
            )
    no_route = source.grew_where(
        lambda n: (
            n.startswith("listener.")
            and outbound_listener in n
            and n.endswith(".no_filter_chain_match")
        )
    )
    no_route |= source.grew(
        [
            f"http.{target.outbound_prefix}.no_route",
            f"tcp.{target.outbound_prefix}.downstream_cx_no_route",
        ]
    )
    if no_route:
        return Verdict(
            Outcome.NO_ROUTE,
            "no route: the source's sidecar matched no filter chain or route for the request",
            tuple(_evidence("source", no_route)),
        )

    # 2. no endpoints
    none_healthy = source.grew([f"{cluster}.upstream_cx_none_healthy"])
    members = (source.after or {}).get(f"{cluster}.membership_total")
    if none_healthy or members == 0 or "no healthy upstream" in local_reply:
        evidence = _evidence("source", none_healthy)
        if members == 0:
            evidence.append(f"source {cluster}.membership_total = 0")
        return Verdict(
            Outcome.NO_ENDPOINTS,
            f"no endpoints: cluster {target.cluster} has no ready endpoint",
            tuple(evidence),
        )

    # 3. TLS
    tls_source = source.grew_where(
        lambda n: (
            n.startswith(f"{cluster}.ssl.")
            and (n.endswith("connection_error") or ".fail_verify" in n)
        )
    )
    tls_destination = destination.grew_where(
        lambda n: (
            n.startswith("listener.")
            and inbound_listener in n
            and (n.endswith("ssl.connection_error") or ".ssl.fail_verify" in n)
        )
    )
    if tls_source or tls_destination or "tls error" in local_reply:
        return Verdict(
            Outcome.TLS,
            "TLS handshake failed between the source's and the destination's sidecars "
            "(certificates, trust root or SNI)",
            tuple(_evidence("source", tls_source) + _evidence("destination", tls_destination)),
        )

    # 4. RBAC
    rbac = destination.grew_where(
        lambda n: target.inbound_prefix in n and n.endswith("rbac.denied")
    )
    if rbac or "rbac: access denied" in local_reply:
        connections = any(n.endswith("_rbac.rbac.denied") for n in rbac)
        where = "its requests" if http and not connections else "its connections"
        return Verdict(
            Outcome.RBAC_DENIED,
            f"RBAC denied: the destination's sidecar refused {where} (the source's identity "
            "or the request is not allowed on this port)",
            tuple(_evidence("destination", rbac)),
        )

    # 5. connect failure
    connect_fail = source.grew([f"{cluster}.upstream_cx_connect_fail"])
    if connect_fail:
        return Verdict(
            Outcome.CONNECT_FAILURE,
            "connect failure: the source's sidecar could not connect to an endpoint (its "
            "sidecar down, or nothing listening)",
            tuple(_evidence("source", connect_fail)),
        )

    # 6. success
    carried = source.grew([f"{cluster}.upstream_rq_total", f"{cluster}.upstream_cx_total"])
    if probe.status is not None and not (probe.status >= 500 and not carried):
        return Verdict(
            Outcome.SUCCESS,
            f"reached the service: HTTP {probe.status} from the application",
            tuple(_evidence("source", carried)),
        )
    if not http and probe.connected and not probe.error:
        return Verdict(
            Outcome.SUCCESS,
            "reached the service: the connection was carried",
            tuple(_evidence("source", carried)),
        )
    status = f"HTTP {probe.status}" if probe.status is not None else ""
    what = probe.error or status or "no answer"
    return Verdict(
        Outcome.UNKNOWN,
        f"the request failed ({what}) and neither sidecar's counters say where",
        tuple(_evidence("source", carried)),
    )
