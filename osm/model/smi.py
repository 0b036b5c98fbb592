"""The SMI kinds: TrafficTarget, HTTPRouteGroup, TCPRoute and TrafficSplit.

Versions read: access.smi-spec.io/v1alpha3, specs.smi-spec.io/v1alpha4,
split.smi-spec.io/v1alpha2 and v1alpha4. The objects are strict (unknown fields are
errors), as a structural CRD schema would make them. Semantics that the CRD cannot
express but the spec states (unique match names, at least one non-zero weight) are
checked here too; references between objects are checked by `references`, because
objects arrive in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from osm.model import regex
from osm.model.fields import Fields, check_dns_label, check_dns_subdomain, described
from osm.model.meta import Resource

HTTP_METHODS = ("*", "GET", "HEAD", "PUT", "POST", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
RULE_KINDS = ("HTTPRouteGroup", "TCPRoute")
IDENTITY_KINDS = ("ServiceAccount",)
UDP_UNSUPPORTED = "UDPRoute is not supported: the mesh, like OSM, proxies TCP only"


def _valid_rule_kinds() -> str:
    return "; valid values: " + ", ".join(f'"{kind}"' for kind in RULE_KINDS)


# -- TrafficTarget -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IdentityRef:
    """A workload identity: a service account in a namespace."""

    namespace: str
    name: str
    kind: str = "ServiceAccount"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class TrafficTargetRule:
    """Names an HTTPRouteGroup or TCPRoute; ``matches`` empty means all of its matches."""

    kind: str
    name: str
    matches: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TrafficTarget(Resource):
    KIND = "TrafficTarget"
    destination: IdentityRef = IdentityRef("", "")
    sources: tuple[IdentityRef, ...] = ()
    rules: tuple[TrafficTargetRule, ...] = ()


def _identity(fields: Fields, default_namespace: str) -> IdentityRef:
    kind = fields.string("kind", required=True, choices=IDENTITY_KINDS)
    name = fields.string("name", required=True, check=check_dns_subdomain)
    namespace = fields.string("namespace", check=check_dns_label) or default_namespace
    fields.finish()
    return IdentityRef(namespace, name, kind or "ServiceAccount")


def parse_traffic_target(doc: Fields, base: Resource) -> TrafficTarget:
    spec = doc.object("spec", required=True)
    own_namespace = base.metadata.namespace
    destination_fields = spec.object("destination", required=True)
    if destination_fields.has("port"):
        destination_fields.raw("port")
        destination_fields.error(
            "port",
            "was removed in access.smi-spec.io/v1alpha3; restrict ports with a TCPRoute "
            "rule (spec.matches.ports) instead",
        )
    destination = _identity(destination_fields, own_namespace)
    if destination_fields.present and destination.namespace != own_namespace:
        destination_fields.error(
            "namespace",
            f'"{destination.namespace}" must equal the TrafficTarget\'s own namespace '
            f'"{own_namespace}": a TrafficTarget governs access to its own namespace',
        )
    sources = tuple(
        _identity(source, own_namespace)
        for source in spec.objects("sources", required=True, non_empty=True)
    )
    rules: list[TrafficTargetRule] = []
    for rule in spec.objects("rules", required=True, non_empty=True):
        if rule.raw("kind") == "UDPRoute":
            rule.error("kind", UDP_UNSUPPORTED + _valid_rule_kinds())
            rule.raw("name")
            rule.raw("matches")
            rule.finish()
            continue
        kind = rule.string("kind", required=True, choices=RULE_KINDS)
        name = rule.string("name", required=True, check=check_dns_subdomain)
        matches = rule.str_list("matches")
        if kind == "TCPRoute" and matches:
            rule.error(
                "matches", "applies to HTTPRouteGroup rules only; a TCPRoute has no named matches"
            )
        rule.finish()
        rules.append(TrafficTargetRule(kind, name, matches))
    spec.finish()
    return TrafficTarget(
        base.api_version,
        base.metadata,
        base.manifest,
        destination=destination,
        sources=sources,
        rules=tuple(rules),
    )


# -- HTTPRouteGroup ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HTTPMatch:
    """One named match. Conditions are ANDed; absent ones match anything.

    ``path_regex`` is anchored at the start and the end (``""`` = any path);
    ``methods`` empty or containing ``*`` = any method; ``headers`` are
    (lower-cased name, regex) pairs, all of which must match. Every regex is one Envoy
    accepts (`osm.model.regex.check`): RE2 syntax, matched against the whole value.
    """

    name: str
    path_regex: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def any_method(self) -> bool:
        return not self.methods or "*" in self.methods


@dataclass(frozen=True, slots=True)
class HTTPRouteGroup(Resource):
    KIND = "HTTPRouteGroup"
    matches: tuple[HTTPMatch, ...] = ()

    def match(self, name: str) -> HTTPMatch | None:
        return next((m for m in self.matches if m.name == name), None)


def _path_regex(value: str) -> str | None:
    """An empty ``pathRegex`` means any path (no regex reaches Envoy); others as Envoy."""
    return regex.check(value) if value else None


def _headers(match: Fields) -> tuple[tuple[str, str], ...]:
    """Reads both encodings: the prose's map and the CRD's list of single-key maps."""
    raw = match.raw("headers")
    pairs: list[tuple[str, object, str]] = []
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        pairs = [(str(k), v, f"headers.{k}") for k, v in raw.items()]
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping) or len(item) != 1:
                match.error(
                    f"headers[{index}]",
                    "each item must be an object with exactly one "
                    'header name, e.g. {"x-beta": "true"}',
                )
                continue
            ((key, value),) = item.items()
            pairs.append((str(key), value, f"headers[{index}].{key}"))
    else:
        match.error(
            "headers",
            f"must be a map of header name to regex, or a list of such "
            f"single-key maps, not {described(raw)}",
        )
        return ()
    result: list[tuple[str, str]] = []
    for name, value, key in pairs:
        if not isinstance(value, str):
            match.error(key, f"must be a string (a regex), not {described(value)}")
        elif complaint := regex.check(value):
            match.error(key, complaint)
        else:
            result.append((name.lower(), value))
    return tuple(result)


def parse_http_route_group(doc: Fields, base: Resource) -> HTTPRouteGroup:
    if doc.has("matches") and not doc.has("spec"):
        # The SMI conformance suite's spec/03-install.yaml writes it this way (v1alpha1-3).
        doc.error("matches", "belongs under spec in specs.smi-spec.io/v1alpha4 (spec.matches)")
        doc.raw("matches")
        return HTTPRouteGroup(base.api_version, base.metadata, base.manifest)
    spec = doc.object("spec", required=True)
    matches: list[HTTPMatch] = []
    names: set[str] = set()
    for match in spec.objects("matches", required=True, non_empty=True):
        name = match.string("name", required=True)
        if name in names:
            match.error("name", f'duplicate match name "{name}"; names must be unique')
        names.add(name)
        path_regex = match.string("pathRegex", check=_path_regex)
        methods = match.str_list("methods", choices=HTTP_METHODS)
        headers = _headers(match)
        match.finish()
        matches.append(HTTPMatch(name, path_regex, methods, headers))
    spec.finish()
    return HTTPRouteGroup(base.api_version, base.metadata, base.manifest, matches=tuple(matches))


# -- TCPRoute ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TCPRoute(Resource):
    """``ports`` empty means every port of the destination's services."""

    KIND = "TCPRoute"
    match_name: str = ""
    ports: tuple[int, ...] = ()


def parse_tcp_route(doc: Fields, base: Resource) -> TCPRoute:
    spec = doc.object("spec", required=True)
    if isinstance(spec.raw("matches"), list):
        spec.error(
            "matches", "must be an object {name, ports} in specs.smi-spec.io/v1alpha4, not a list"
        )
        spec.finish()
        return TCPRoute(base.api_version, base.metadata, base.manifest)
    matches = spec.object("matches", required=True)
    if matches.present and not matches.has("ports"):
        matches.error("ports", "required field is missing; use ports: [] for every port")
    name = matches.string("name")
    ports = matches.int_list("ports", minimum=1, maximum=65535)
    matches.finish()
    spec.finish()
    return TCPRoute(
        base.api_version,
        base.metadata,
        base.manifest,
        match_name=name,
        ports=tuple(sorted(set(ports))),
    )


# -- TrafficSplit ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SplitBackend:
    service: str
    weight: int


@dataclass(frozen=True, slots=True)
class TrafficSplit(Resource):
    """``matches`` (v1alpha4) names HTTPRouteGroups; empty = every request is split."""

    KIND = "TrafficSplit"
    service: str = ""
    backends: tuple[SplitBackend, ...] = ()
    matches: tuple[str, ...] = ()


def parse_traffic_split(doc: Fields, base: Resource) -> TrafficSplit:
    spec = doc.object("spec", required=True)
    apex = spec.string("service", required=True)
    if apex and "." not in apex and (complaint := check_dns_label(apex)):
        spec.error("service", complaint)
    backends: list[SplitBackend] = []
    seen: set[str] = set()
    problems_before = len(spec.problems)
    for backend in spec.objects("backends", required=True, non_empty=True):
        service = backend.string("service", required=True, check=check_dns_label)
        weight = backend.integer("weight", required=True, minimum=0, maximum=2**31 - 1)
        if service in seen:
            backend.error("service", f'duplicate backend "{service}"; list each service once')
        seen.add(service)
        backend.finish()
        backends.append(SplitBackend(service, weight))
    clean = len(spec.problems) == problems_before
    if backends and clean and all(b.weight == 0 for b in backends):
        spec.error("backends", "at least one backend needs a weight above 0")
    group_names: list[str] = []
    if base.api_version.endswith("/v1alpha4"):
        for match in spec.objects("matches"):
            match.string("kind", required=True, choices=("HTTPRouteGroup",))
            group_names.append(match.string("name", required=True, check=check_dns_subdomain))
            match.finish()
    elif spec.has("matches"):
        spec.error("matches", "needs split.smi-spec.io/v1alpha4; v1alpha2 has no matches")
        spec.raw("matches")
    spec.finish()
    return TrafficSplit(
        base.api_version,
        base.metadata,
        base.manifest,
        service=apex,
        backends=tuple(backends),
        matches=tuple(group_names),
    )
