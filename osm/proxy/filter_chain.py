"""Filter-chain matching: which of a listener's filter chains an accepted connection gets.

The one idea: Envoy's match is a pure function of the listener and what is known about the
connection before any byte is proxied (its original destination, its source address, and
from a sniffed TLS ClientHello the server name, transport protocol and ALPN). Criteria are
applied in a fixed order, each keeping only the most specific chains left, with no
backtracking; the default chain answers when none is left. No I/O here: the listener
runtime gathers the inputs.
"""

from __future__ import annotations

import ipaddress

from osm.proxy import model


def select_filter_chain(
    listener: model.Listener,
    destination_ip: str,
    destination_port: int,
    server_name: str = "",
    transport_protocol: str = "raw_buffer",
    application_protocols: tuple[str, ...] = (),
    source_ip: str = "",
) -> model.FilterChain | None:
    """Envoy's filter-chain match: at each criterion keep the most specific matches, in
    order destination port, destination IP, server name, transport protocol, ALPN,
    source IP; no backtracking; the default chain when nothing is left."""
    candidates = list(listener.filter_chains)

    exact = [c for c in candidates if c.match.destination_port == destination_port]
    candidates = exact or [c for c in candidates if c.match.destination_port is None]

    if candidates:
        candidates = _most_specific(candidates, destination_ip, False)

    if candidates:
        named = [c for c in candidates if c.match.server_names]
        if server_name and named:
            exact = [c for c in named if server_name in c.match.server_names]
            if not exact:
                best_suffix = ""
                for chain in named:
                    for name in chain.match.server_names:
                        if (
                            name.startswith("*.")
                            and server_name.endswith(name[1:])
                            and len(name) > len(best_suffix)
                        ):
                            best_suffix = name
                exact = [c for c in named if best_suffix and best_suffix in c.match.server_names]
            candidates = exact or [c for c in candidates if not c.match.server_names]
        else:
            candidates = [c for c in candidates if not c.match.server_names]

    if candidates:
        exact = [c for c in candidates if c.match.transport_protocol == transport_protocol]
        candidates = exact or [c for c in candidates if not c.match.transport_protocol]

    if candidates:
        exact = [
            c for c in candidates if set(c.match.application_protocols) & set(application_protocols)
        ]
        candidates = exact or [c for c in candidates if not c.match.application_protocols]

    if candidates:
        candidates = _most_specific(candidates, source_ip, True)

    if candidates:
        return candidates[0]
    return listener.default_filter_chain


def _most_specific(
    candidates: list[model.FilterChain], ip: str, source: bool
) -> list[model.FilterChain]:
    """The chains whose destination (or ``source``) ranges hold ``ip`` with the longest
    prefix; chains without such ranges when none does."""
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(ip)
    except ValueError:
        address = None
    best = -1
    scored: list[tuple[int, model.FilterChain]] = []
    for chain in candidates:
        ranges = chain.match.source_prefix_ranges if source else chain.match.prefix_ranges
        if not ranges:
            scored.append((-1, chain))
            continue
        lengths = [
            network.prefixlen
            for network in ranges
            if address is not None and address.version == network.version and address in network
        ]
        if lengths:
            score = max(lengths)
            best = max(best, score)
            scored.append((score, chain))
    return [chain for score, chain in scored if score == best]


def needs_inspection(listener: model.Listener) -> bool:
    """Whether a connection's first bytes must be sniffed for a TLS ClientHello before a
    chain can be chosen: the listener asks for it and some chain matches on what it holds."""
    chains = list(listener.filter_chains)
    if listener.default_filter_chain is not None:
        chains.append(listener.default_filter_chain)
    return listener.inspect_tls and any(
        chain.match.server_names
        or chain.match.transport_protocol
        or chain.match.application_protocols
        for chain in chains
    )
