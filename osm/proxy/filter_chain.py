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
    if not any(
        chain.match.source_prefix_ranges if source else chain.match.prefix_ranges
        for chain in candidates
    ):
        return candidates  # no chain names a range (mesh chains and sources): nothing to parse
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


def needs_inspection(listener: model.Listener, destination_port: int = 0) -> bool:
    """Whether a connection's first bytes must be sniffed for a TLS ClientHello before a
    chain can be chosen: the listener asks for it (not disabled on the connection's
    destination port) and some chain matches on what it holds."""
    if not listener.inspect_tls or destination_port in listener.tls_inspector_off:
        return False
    return any(
        chain.match.server_names
        or chain.match.transport_protocol
        or chain.match.application_protocols
        for chain in _chains(listener)
    )


def needs_http_inspection(listener: model.Listener, destination_port: int) -> bool:
    """Whether a plaintext connection's first request line must be read to choose a chain:
    the listener has the HTTP inspector (not disabled on the port) and a chain matches on
    application protocols."""
    if not listener.inspect_http or destination_port in listener.http_inspector_off:
        return False
    return any(chain.match.application_protocols for chain in _chains(listener))


def _chains(listener: model.Listener) -> list[model.FilterChain]:
    chains = list(listener.filter_chains)
    if listener.default_filter_chain is not None:
        chains.append(listener.default_filter_chain)
    return chains


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_REQUEST_LINE = 8192
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def http_protocol(data: bytes) -> str | None:
    """What Envoy's HTTP inspector reports for a plaintext connection that began with
    ``data``: ``h2c`` (the HTTP/2 preface), ``http/1.0`` or ``http/1.1`` (a request line),
    ``""`` (not HTTP), or None (too few bytes yet to tell)."""
    if data[: len(H2_PREFACE)] == H2_PREFACE[: len(data)]:
        return "h2c" if len(data) >= len(H2_PREFACE) else None
    end = data.find(b"\r\n")
    line = data if end < 0 else data[:end]
    method, space, _ = line.partition(b" ")
    if not all(byte in _TOKEN for byte in method) or (space and not method):
        return ""
    if end < 0:
        return None if len(data) < MAX_REQUEST_LINE else ""
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[1]:
        return ""
    return {b"HTTP/1.0": "http/1.0", b"HTTP/1.1": "http/1.1"}.get(parts[2], "")
