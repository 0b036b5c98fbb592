"""Routing, RBAC, filter-chain matching, ClientHello sniffing: decision tables."""

from __future__ import annotations

import collections
import ipaddress
import random
import re
import ssl

import pytest

from osm.proxy import filter_chain, http1, model, rbac, router, tls


def vhost(name: str, *domains: str) -> model.VirtualHost:
    match = model.RouteMatch("prefix", "/", None, True, ())
    action = model.RouteAction((model.WeightedTarget(name, 1),), 1, None, None)
    return model.VirtualHost(name, domains, (model.Route(name, match, action, None),))


TABLE = router.RouteTable(
    model.RouteConfig(
        "r",
        (
            vhost("exact", "bookstore.bookstore", "bookstore.bookstore:80"),
            vhost("suffix-short", "*.com"),
            vhost("suffix-long", "*.example.com"),
            vhost("prefix", "foo.*"),
            vhost("default", "*"),
        ),
    )
)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("bookstore.bookstore", "exact"),
        ("BookStore.BookStore:80", "exact"),
        ("bookstore.bookstore:8080", "default"),  # ports are part of the domain, as in Envoy
        ("api.example.com", "suffix-long"),
        ("example.com", "suffix-short"),
        (".example.com", "suffix-short"),  # a wildcard never matches the empty string
        ("foo.bar", "prefix"),
        ("foo.example.com", "suffix-long"),  # suffix wildcards before prefix ones
        ("other", "default"),
        ("", "default"),
    ],
)
def test_virtual_host_selection(authority: str, expected: str) -> None:
    found = TABLE.virtual_host(authority)
    assert found is not None and found.name == expected


def request(method: str = "GET", target: str = "/", **headers: str) -> http1.RequestHead:
    return http1.RequestHead(
        method,
        target,
        "1.1",
        [(k.replace("_", "-"), v) for k, v in headers.items()],
        True,
        None,
        False,
        "none",
        None,
    )


def header(
    name: str, kind: str = "match", matcher: model.StringMatch | None = None, **kw: bool
) -> model.HeaderMatch:
    return model.HeaderMatch(name, kind, matcher, **kw)  # type: ignore[arg-type]


REGEX = model.StringMatch("regex", "", False, re.compile("GET|HEAD"))


@pytest.mark.parametrize(
    ("match", "req", "expected"),
    [
        (model.RouteMatch("prefix", "/books", None, True, ()), request(target="/books?x"), True),
        (model.RouteMatch("prefix", "/books", None, True, ()), request(target="/Books"), False),
        (model.RouteMatch("prefix", "/books", None, False, ()), request(target="/BOOKS/1"), True),
        (model.RouteMatch("path", "/a", None, True, ()), request(target="/a?q=1"), True),
        (model.RouteMatch("path", "/a", None, True, ()), request(target="/a/b"), False),
        (
            model.RouteMatch("regex", "", re.compile("/b.*"), True, ()),
            request(target="/buy?x"),
            True,
        ),
        (model.RouteMatch("regex", "", re.compile("/b"), True, ()), request(target="/buy"), False),
        (
            model.RouteMatch("prefix", "/", None, True, (header(":method", "match", REGEX),)),
            request("HEAD"),
            True,
        ),
        (
            model.RouteMatch("prefix", "/", None, True, (header(":method", "match", REGEX),)),
            request("POST"),
            False,
        ),
        (
            model.RouteMatch("prefix", "/", None, True, (header("x-a", "present"),)),
            request(x_a="1"),
            True,
        ),
        (
            model.RouteMatch("prefix", "/", None, True, (header("x-a", "present"),)),
            request(),
            False,
        ),
        (
            model.RouteMatch("prefix", "/", None, True, (header("x-a", "present", present=False),)),
            request(),
            True,
        ),
        (
            model.RouteMatch(
                "prefix",
                "/",
                None,
                True,
                (header("x-a", "match", model.StringMatch("exact", "1"), invert=True),),
            ),
            request(x_a="2"),
            True,
        ),
        (
            model.RouteMatch(
                "prefix",
                "/",
                None,
                True,
                (header("x-a", "match", model.StringMatch("exact", "1"), invert=True),),
            ),
            request(),
            False,
        ),
    ],
)
def test_route_matching(match: model.RouteMatch, req: http1.RequestHead, expected: bool) -> None:
    assert router.route_matches(match, req, "a") is expected


def test_weighted_choice_is_deterministic_and_proportional() -> None:
    targets = (model.WeightedTarget("a", 80), model.WeightedTarget("b", 20))
    assert router.choose(targets, 100, lambda n: 79) == "a"
    assert router.choose(targets, 100, lambda n: 80) == "b"
    rng = random.Random(7)
    counts = collections.Counter(router.choose(targets, 100, rng.randrange) for _ in range(10_000))
    assert abs(counts["a"] - 8000) < 4 * (10_000 * 0.8 * 0.2) ** 0.5


BUYER = "spiffe://cluster.local/ns/bookbuyer/sa/bookbuyer"


def allow(
    *principals: model.Principal,
    permissions: tuple[model.Permission, ...] = (model.AnyPermission(),),
) -> model.RbacRules:
    return model.RbacRules("ALLOW", (("p", model.Policy(permissions, principals)),))


@pytest.mark.parametrize(
    ("rules", "peer", "port", "allowed"),
    [
        (
            allow(model.Authenticated(model.StringMatch("exact", BUYER))),
            rbac.Peer((BUYER,)),
            80,
            True,
        ),
        (
            allow(model.Authenticated(model.StringMatch("exact", BUYER))),
            rbac.Peer(("spiffe://x",)),
            80,
            False,
        ),
        (
            allow(
                model.Authenticated(
                    model.StringMatch("regex", "", regex=re.compile(".*/sa/book.*"))
                )
            ),
            rbac.Peer((BUYER,)),
            80,
            True,
        ),
        (allow(model.Authenticated(None)), rbac.Peer((BUYER,)), 80, True),
        (allow(model.Authenticated(None)), rbac.ANONYMOUS, 80, False),
        (allow(model.AnyId()), rbac.ANONYMOUS, 80, True),
        (
            allow(model.AnyId(), permissions=(model.DestinationPort(8080),)),
            rbac.ANONYMOUS,
            80,
            False,
        ),
        (
            allow(model.AnyId(), permissions=(model.OrRules((model.DestinationPort(80),)),)),
            rbac.ANONYMOUS,
            80,
            True,
        ),
        (allow(model.NotId(model.AnyId())), rbac.ANONYMOUS, 80, False),
        (model.RbacRules("ALLOW", ()), rbac.Peer((BUYER,)), 80, False),
        (model.RbacRules("DENY", ()), rbac.ANONYMOUS, 80, True),
        (
            model.RbacRules(
                "DENY", (("d", model.Policy((model.AnyPermission(),), (model.AnyId(),))),)
            ),
            rbac.Peer((BUYER,)),
            80,
            False,
        ),
    ],
)
def test_rbac(rules: model.RbacRules, peer: rbac.Peer, port: int, allowed: bool) -> None:
    assert rbac.evaluate(rules, peer, port) is allowed


def test_http_permissions_need_a_request() -> None:
    path = model.UrlPath(model.StringMatch("regex", "", regex=re.compile("/books/.*")))
    method = model.HeaderPermission(header(":method", "match", REGEX))
    rules = allow(model.AnyId(), permissions=(model.AndRules((path, method)),))
    peer = rbac.Peer((BUYER,))
    assert rbac.evaluate(rules, peer, 80, request("GET", "/books/1?x"), "a")
    assert not rbac.evaluate(rules, peer, 80, request("POST", "/books/1"), "a")
    assert not rbac.evaluate(rules, peer, 80)  # on L4 an HTTP permission never matches


def test_route_rbac_overrides_the_filter() -> None:
    match = model.RouteMatch("prefix", "/", None, True, ())
    action = model.RouteAction((model.WeightedTarget("c", 1),), 1, None, None)
    per_route = model.RbacRules("DENY", ())
    route = model.Route("r", match, action, per_route)
    plain = model.Route("r", match, action, None)
    filter_rules = model.HttpRbacFilter(model.RbacRules("ALLOW", ()))
    assert rbac.http_rules(filter_rules, route) is per_route
    assert rbac.http_rules(filter_rules, plain) is filter_rules.rules
    assert rbac.http_rules(None, route) is None


def chain(name: str, **match: object) -> model.FilterChain:
    terminal = model.TcpProxy(name, (model.WeightedTarget(name, 1),), None)
    return model.FilterChain(name, model.FilterChainMatch(**match), None, None, terminal)  # type: ignore[arg-type]


LISTENER = model.Listener(
    "l",
    "0.0.0.0",
    15001,
    True,
    True,
    (
        chain("port-80", destination_port=80),
        chain(
            "port-80-ip", destination_port=80, prefix_ranges=(ipaddress.ip_network("10.0.0.0/24"),)
        ),
        chain(
            "port-80-host",
            destination_port=80,
            prefix_ranges=(ipaddress.ip_network("10.0.0.5/32"),),
        ),
        chain("sni", destination_port=443, transport_protocol="tls", server_names=("a.example",)),
        chain(
            "sni-wild", destination_port=443, transport_protocol="tls", server_names=("*.example",)
        ),
        chain("tls-any", destination_port=443, transport_protocol="tls"),
        chain("raw-443", destination_port=443),
        chain("any-port"),
    ),
    chain("default"),
)


@pytest.mark.parametrize(
    ("ip", "port", "sni", "transport", "expected"),
    [
        ("10.0.0.5", 80, "", "raw_buffer", "port-80-host"),
        ("10.0.0.6", 80, "", "raw_buffer", "port-80-ip"),
        ("10.1.0.6", 80, "", "raw_buffer", "port-80"),
        ("10.1.0.6", 81, "", "raw_buffer", "any-port"),
        ("10.1.0.6", 443, "a.example", "tls", "sni"),
        ("10.1.0.6", 443, "b.example", "tls", "sni-wild"),
        ("10.1.0.6", 443, "other", "tls", "tls-any"),
        ("10.1.0.6", 443, "", "raw_buffer", "raw-443"),
    ],
)
def test_filter_chain_match(ip: str, port: int, sni: str, transport: str, expected: str) -> None:
    found = filter_chain.select_filter_chain(LISTENER, ip, port, sni, transport)
    assert found is not None and found.name == expected


def test_default_filter_chain_when_nothing_matches() -> None:
    strict = model.Listener(
        "l", "0.0.0.0", 1, False, False, (chain("only", destination_port=80),), None
    )
    assert filter_chain.select_filter_chain(strict, "1.2.3.4", 81) is None
    with_default = model.Listener("l", "0.0.0.0", 1, False, False, (), chain("default"))
    found = filter_chain.select_filter_chain(with_default, "1.2.3.4", 81)
    assert found is not None and found.name == "default"


def test_client_hello_sniffing() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["osm", "h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(
        incoming, outgoing, server_hostname="Bookstore.Bookstore.svc.cluster.local"
    )
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello_bytes = outgoing.read()
    hello = tls.parse_client_hello(hello_bytes)
    assert hello == tls.ClientHello("bookstore.bookstore.svc.cluster.local", ("osm", "h2"))
    assert tls.parse_client_hello(hello_bytes[:20]) == tls.NEED_MORE
    assert tls.parse_client_hello(b"GET / HTTP/1.1\r\n") == tls.NOT_TLS


def test_principal_names_and_san_matching() -> None:
    certificate = {
        "subject": ((("commonName", "x"),),),
        "subjectAltName": (("URI", BUYER), ("DNS", "bookbuyer.bookbuyer.cluster.local")),
    }
    assert tls.principal_names(certificate) == (BUYER, "bookbuyer.bookbuyer.cluster.local")
    assert tls.principal_names({"subject": ((("commonName", "x"),),)}) == ("x",)
    uri = model.SanMatcher("URI", model.StringMatch("exact", BUYER))
    dns_only = model.SanMatcher("DNS", model.StringMatch("exact", BUYER))
    untyped = model.SanMatcher("any", model.StringMatch("suffix", ".cluster.local"))
    assert tls.sans_match((uri,), certificate)
    assert not tls.sans_match((dns_only,), certificate)
    assert tls.sans_match((untyped,), certificate)
    assert tls.sans_match((), None)
