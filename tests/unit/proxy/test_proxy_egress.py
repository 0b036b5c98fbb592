"""The Python sidecar and Egress configuration: the HTTP inspector, inspectors running only
on the ports whose chains need them, egress filter chains chosen as Envoy chooses them,
and what it refuses, named."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.type.v3 import range_pb2

from osm.base import wellknown
from osm.catalog.policy import EgressCluster, EgressMatch, EgressPolicy
from osm.proxy import filter_chain, model, translate
from osm.proxy.translate import cds, lds
from osm.xds import common, egress

HTTP_PROTOCOL = [
    ("an HTTP/1.1 request line", b"GET /get HTTP/1.1\r\nHost: a\r\n\r\n", "http/1.1"),
    ("an HTTP/1.0 request line", b"POST / HTTP/1.0\r\n", "http/1.0"),
    ("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n...", "h2c"),
    ("part of the preface: wait", b"PRI * HTT", None),
    ("part of a request line: wait", b"GET /lo", None),
    ("nothing yet: wait", b"", None),
    ("a TLS record is not HTTP", b"\x16\x03\x01\x02\x00", ""),
    ("a version Envoy's parser does not know", b"GET / HTTP/3.0\r\n", ""),
    ("a line that is no request", b"hello world\r\n", ""),
    ("a request line without a target", b"GET  HTTP/1.1\r\n", ""),
]


@pytest.mark.parametrize(
    ("spec", "data", "expected"), HTTP_PROTOCOL, ids=[c[0] for c in HTTP_PROTOCOL]
)
def test_http_inspector(spec: str, data: bytes, expected: str | None) -> None:
    assert filter_chain.http_protocol(data) == expected


def outbound(server_first: list[int]) -> model.Listener:
    """An outbound listener with egress chains as `osm.xds.egress` builds them."""
    listener = listener_pb2.Listener(
        name="outbound-listener",
        address=common.socket_address("0.0.0.0", wellknown.PROXY_OUTBOUND_PORT),
    )
    matches = [
        EgressMatch(80, "http"),
        EgressMatch(443, "https", (), ("a.example",), "443"),
        EgressMatch(25, "tcp-server-first", ("10.0.0.0/8",), (), "25"),
        EgressMatch(5432, "tcp", ("10.0.0.0/8",), (), "5432"),
    ]
    listener.listener_filters.add(name="envoy.filters.listener.original_dst")
    egress.add_to_listener(listener, EgressPolicy(tuple(matches)), server_first)
    return lds.translate(listener)


INSPECTION = [
    ("http egress port: the HTTP inspector reads the request line", 80, (False, True)),
    ("https egress port: the TLS inspector reads the SNI", 443, (True, False)),
    ("tcp egress port: not inspected (bytes without a newline do not wait)", 5432,
     (False, False)),
    ("server-first egress port: not inspected", 25, (False, False)),
    ("a mesh port: not inspected", 8080, (False, False)),
    ("a server-first mesh port: not inspected", 3306, (False, False)),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "port", "expected"), INSPECTION, ids=[c[0] for c in INSPECTION])
def test_inspectors_run_only_where_a_chain_needs_them(
    spec: str, port: int, expected: tuple[bool, bool]
) -> None:
    listener = outbound([3306])
    assert listener.inspect_tls and listener.inspect_http
    assert (
        filter_chain.needs_inspection(listener, port),
        filter_chain.needs_http_inspection(listener, port),
    ) == expected


def test_translated_inspectors_are_off_on_every_other_port() -> None:
    listener = outbound([3306])
    assert listener.tls_inspector_off == model.PortRanges(((1, 443), (444, 65536)))
    assert listener.http_inspector_off == model.PortRanges(((1, 80), (81, 65536)))


PORT_RANGES = [
    ("empty", [], 80, False),
    ("inside", [(10, 20)], 10, True),
    ("the end is out", [(10, 20)], 20, False),
    ("before every range", [(10, 20)], 9, False),
    ("between ranges", [(1, 80), (81, 65536)], 80, False),
    ("after a gap", [(1, 80), (81, 65536)], 81, True),
    ("overlapping ranges merge", [(81, 100), (1, 80), (50, 90)], 80, True),
    ("an empty range holds nothing", [(5, 5)], 5, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "ranges", "port", "expected"), PORT_RANGES, ids=[c[0] for c in PORT_RANGES]
)
def test_port_ranges(spec: str, ranges: list[tuple[int, int]], port: int, expected: bool) -> None:
    assert (port in model.PortRanges.of(ranges)) is expected


CHOICES = [
    ("plaintext HTTP to port 80", ("203.0.113.9", 80, "", "raw_buffer", ("http/1.1",)),
     "egress-http.80"),
    ("h2c to port 80", ("203.0.113.9", 80, "", "raw_buffer", ("h2c",)), "egress-http.80"),
    ("not HTTP to port 80: no chain (denied)", ("203.0.113.9", 80, "", "raw_buffer", ()), None),
    ("TLS with an allowed SNI", ("203.0.113.9", 443, "a.example", "tls", ()),
     "egress-https.443"),
    ("TLS with another SNI: denied", ("203.0.113.9", 443, "b.example", "tls", ()), None),
    ("server-first in range", ("10.1.2.3", 25, "", "raw_buffer", ()),
     "egress-tcp-server-first.25"),
    ("server-first out of range: denied", ("11.1.2.3", 25, "", "raw_buffer", ()), None),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "given", "expected"), CHOICES, ids=[c[0] for c in CHOICES])
def test_egress_chain_choice(
    spec: str, given: tuple[str, int, str, str, tuple[str, ...]], expected: str | None
) -> None:
    chosen = filter_chain.select_filter_chain(outbound([]), *given)
    assert (chosen.name if chosen else None) == expected


@pytest.mark.parametrize(
    "given", [EgressCluster("a.example:80", "a.example", 80), EgressCluster("443", "", 443)]
)
def test_egress_clusters_translate(given: EgressCluster) -> None:
    cluster = cds.translate(egress.cluster(given))
    assert cluster.kind == ("STRICT_DNS" if given.host else "ORIGINAL_DST")
    assert cluster.endpoints == ((model.Endpoint("a.example", 80),) if given.host else ())


def test_other_disabling_rules_are_refused_by_name() -> None:
    listener = listener_pb2.Listener(
        name="l", address=common.socket_address("0.0.0.0", wellknown.PROXY_OUTBOUND_PORT)
    )
    inspector = listener.listener_filters.add(name="envoy.filters.listener.tls_inspector")
    inspector.filter_disabled.CopyFrom(
        listener_components_pb2.ListenerFilterChainMatchPredicate(any_match=True)
    )
    with pytest.raises(translate.ConfigError) as caught:
        lds.translate(listener)
    assert caught.value.field_path == "listener_filters[0].filter_disabled.any_match"
    predicate = listener_components_pb2.ListenerFilterChainMatchPredicate
    inspector.filter_disabled.CopyFrom(
        predicate(
            or_match=predicate.MatchSet(
                rules=[
                    predicate(destination_port_range=range_pb2.Int32Range(start=1, end=65536)),
                    predicate(not_match=predicate(any_match=True)),
                ]
            )
        )
    )
    with pytest.raises(translate.ConfigError) as caught:
        lds.translate(listener)
    path = "listener_filters[0].filter_disabled.or_match.rules[1].not_match"
    assert caught.value.field_path == path


def test_every_port_but_a_few_is_one_rule_a_range_each() -> None:
    listener = listener_pb2.Listener(
        name="l", address=common.socket_address("0.0.0.0", wellknown.PROXY_OUTBOUND_PORT)
    )
    inspector = listener.listener_filters.add(name="envoy.filters.listener.http_inspector")
    inspector.filter_disabled.CopyFrom(egress.only_on([80]))
    translated = lds.translate(listener)
    assert translated.http_inspector_off == model.PortRanges(((1, 80), (81, 65536)))
    assert 80 not in translated.http_inspector_off and 65535 in translated.http_inspector_off
