"""Request routing as Envoy does it: virtual host by authority, first matching route, cluster.

The one idea: a `RouteTable` is compiled once per RouteConfig (exact domains in a dict,
then suffix wildcards longest first, prefix wildcards longest first, then `*`), so the
per-request work is a dict lookup and a short list walk. Weighted choices take an injected
`randrange` so tests are deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from osm.proxy import model


class Request(Protocol):
    """What routing reads from a request (an `http1.RequestHead` fits)."""

    method: str
    target: str
    headers: list[tuple[str, str]]


class RouteTable:
    """Compiled virtual hosts of one RouteConfig; immutable after construction."""

    def __init__(self, route_config: model.RouteConfig):
        self.route_config = route_config
        self._exact: dict[str, model.VirtualHost] = {}
        suffixes: list[tuple[str, model.VirtualHost]] = []
        prefixes: list[tuple[str, model.VirtualHost]] = []
        self._default: model.VirtualHost | None = None
        for vhost in route_config.virtual_hosts:
            for domain in vhost.domains:
                if domain == "*":
                    self._default = self._default or vhost
                elif domain.startswith("*"):
                    suffixes.append((domain[1:], vhost))
                elif domain.endswith("*"):
                    prefixes.append((domain[:-1], vhost))
                else:
                    self._exact.setdefault(domain, vhost)
        # Longest wildcard wins; stable sort keeps declaration order among equals.
        self._suffixes = sorted(suffixes, key=lambda item: -len(item[0]))
        self._prefixes = sorted(prefixes, key=lambda item: -len(item[0]))

    def virtual_host(self, authority: str) -> model.VirtualHost | None:
        host = authority.lower()
        found = self._exact.get(host)
        if found is not None:
            return found
        for suffix, vhost in self._suffixes:
            if len(host) > len(suffix) and host.endswith(suffix):
                return vhost
        for prefix, vhost in self._prefixes:
            if len(host) > len(prefix) and host.startswith(prefix):
                return vhost
        return self._default

    def route(self, request: Request, authority: str) -> model.Route | None:
        vhost = self.virtual_host(authority)
        if vhost is None:
            return None
        for route in vhost.routes:
            if route_matches(route.match, request, authority):
                return route
        return None


def _header_value(request: Request, name: str, authority: str) -> str | None:
    if name.startswith(":"):
        if name == ":method":
            return request.method
        if name == ":path":
            return request.target
        if name == ":authority":
            return authority
        if name == ":scheme":
            return "http"
        return None
    values = [value for key, value in request.headers if key == name]
    if not values:
        return None
    return ",".join(values)


def header_matches(matcher: model.HeaderMatch, request: Request, authority: str) -> bool:
    value = _header_value(request, matcher.name, authority)
    if value is None:  # Envoy: a missing header only satisfies "present: false" (or inverted)
        if matcher.kind == "present":
            return matcher.present != (not matcher.invert)
        return False
    if matcher.kind == "present":
        result = matcher.present
    else:
        assert matcher.matcher is not None
        result = matcher.matcher.matches(value)
    return result != matcher.invert


def route_matches(match: model.RouteMatch, request: Request, authority: str) -> bool:
    target = request.target
    if match.path_kind == "prefix":
        if match.case_sensitive:
            if not target.startswith(match.value):
                return False
        elif not target.lower().startswith(match.value.lower()):
            return False
    else:
        path = target.split("?", 1)[0]
        if match.path_kind == "path":
            if match.case_sensitive:
                if path != match.value:
                    return False
            elif path.lower() != match.value.lower():
                return False
        else:
            assert match.regex is not None
            if match.regex.fullmatch(path) is None:
                return False
    headers = match.headers
    if not headers:
        return True  # the common case, without a generator
    return all(header_matches(item, request, authority) for item in headers)


def choose(
    targets: Sequence[model.WeightedTarget],
    total_weight: int,
    randrange: Callable[[int], int],
) -> str:
    """Pick a cluster with probability weight/total, as Envoy's weighted_clusters does."""
    if len(targets) == 1:
        return targets[0].cluster
    point = randrange(total_weight)
    for target in targets:
        if point < target.weight:
            return target.cluster
        point -= target.weight
    return targets[-1].cluster


def default_randrange() -> Callable[[int], int]:
    return random.Random().randrange
