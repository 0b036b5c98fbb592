"""OSM's policy kinds (`osm.model.policy`): what each accepts, what it refuses and where.

Each invalid row is one valid example with one mistake; the parser reports exactly that
mistake at its field path. A manifest with several mistakes gets them all at once.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from envoy.type.v3 import http_status_pb2

from osm.model import kinds, manifest, policy, references
from tests.unit.model import model_examples as ex


def _with(text: str, path: str, value: Any) -> dict[str, Any]:
    """The example with ``path`` (dots; ``[i]`` for list items) set to ``value``, or
    removed when ``value`` is ``...``."""
    document = copy.deepcopy(yaml.safe_load(text))
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    target: Any = document
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    key_or_index: Any = int(last) if last.isdigit() else last
    if value is ...:
        del target[key_or_index]
    else:
        target[key_or_index] = value
    return document


def bad(text: str, path: str, value: Any, where: str, fragment: str, id: str) -> Any:
    return pytest.param(_with(text, path, value), where, fragment, id=id)


ROWS = [
    # Egress
    bad(ex.EGRESS, "spec.ports[0].protocol", "udp", "spec.ports[0].protocol",
        '"udp" is not valid', "an egress port's protocol is http, https, tcp or tcp-server-first"),
    bad(ex.EGRESS, "spec.ports", ..., "spec.ports", "required", "an egress names its ports"),
    bad(ex.EGRESS, "spec.ipAddresses[0]", "10.0.0.1", "spec.ipAddresses[0]", "not a CIDR",
        "an egress address range has a prefix length"),
    bad(ex.EGRESS, "spec.ipAddresses[0]", "10.0.0.0/33", "spec.ipAddresses[0]", "not a CIDR",
        "an egress address range is a CIDR"),
    bad(ex.EGRESS, "spec.hosts[0]", "http://httpbin.org", "spec.hosts[0]", "not a host name",
        "an egress host is a host name, not a URL"),
    bad(ex.EGRESS, "spec.sources[0].kind", "Service", "spec.sources[0].kind", "ServiceAccount",
        "an egress source is a service account"),
    bad(ex.EGRESS, "spec.sources[0].namespace", ..., "spec.sources[0].namespace", "required",
        "an egress source names its namespace"),
    bad(ex.EGRESS, "spec.matches[0].apiGroup", "specs.smi-spec.io", "spec.matches[0].apiGroup",
        "specs.smi-spec.io/v1alpha4", "a match's apiGroup carries its version, as OSM's"),
    bad(ex.EGRESS, "spec.matches[0].kind", "TCPRoute", "spec.matches[0].kind",
        'expected "HTTPRouteGroup"', "a match's kind is the one of its group"),
    bad(ex.EGRESS, "spec.matches[0]",
        {"apiGroup": policy.API_VERSION, "kind": "UpstreamTrafficSetting", "name": "other"},
        "spec.matches[1]", "at most one UpstreamTrafficSetting",
        "an egress names at most one UpstreamTrafficSetting"),
    bad(ex.EGRESS, "spec.portz", [], "spec.portz", "unknown field", "egress is strict"),
    # IngressBackend
    bad(ex.INGRESS_BACKEND, "spec.backends[0].port.protocol", "tcp",
        "spec.backends[0].port.protocol", '"tcp" is not valid',
        "an ingress backend's protocol is http or https, as OSM's webhook admits"),
    bad(ex.INGRESS_BACKEND, "spec.backends[1].port.number", 8080, "spec.backends[1].name",
        "duplicate backend", "an ingress backend is listed once per port"),
    bad(ex.INGRESS_BACKEND, "spec.backends[0].tls.skipClientCertValidation", ...,
        "spec.backends[0].tls.skipClientCertValidation", "required",
        "a backend's tls says whether client certificates are checked"),
    bad(ex.INGRESS_BACKEND, "spec.sources[0].namespace", ..., "spec.sources[0].namespace",
        "required", "a Service source names its namespace"),
    bad(ex.INGRESS_BACKEND, "spec.sources[2].name", "10.0.0.300/8", "spec.sources[2].name",
        "not a CIDR", "an IPRange source is a CIDR"),
    bad(ex.INGRESS_BACKEND, "spec.sources[1].namespace", "ingress", "spec.sources[1].namespace",
        "Service sources only", "only a Service source has a namespace"),
    bad(ex.INGRESS_BACKEND, "spec.sources[0].kind", "ServiceAccount", "spec.sources[0].kind",
        "AuthenticatedPrincipal", "an ingress source is a Service, principal or IP range"),
    # Retry
    bad(ex.RETRY, "spec.destinations[0].kind", "ServiceAccount", "spec.destinations[0].kind",
        '"Service"', "a retry destination is a service, as OSM's"),
    bad(ex.RETRY, "spec.retryPolicy.perTryTimeout", "3 seconds",
        "spec.retryPolicy.perTryTimeout", "not a duration", "a per-try timeout is a duration"),
    bad(ex.RETRY, "spec.retryPolicy.retryBackoffBaseInterval", "0s",
        "spec.retryPolicy.retryBackoffBaseInterval", "minimum of 1ms",
        "a back-off interval is at least a millisecond, as Envoy requires"),
    bad(ex.RETRY, "spec.retryPolicy.retryOn", "5xx,flaky", "spec.retryPolicy.retryOn",
        "'flaky'", "a retry condition is one Envoy knows"),
    bad(ex.RETRY, "spec.retryPolicy.numRetries", -1, "spec.retryPolicy.numRetries",
        "out of range", "retries are not negative"),
    bad(ex.RETRY, "spec.retryPolicy.numRetries", ..., "spec.retryPolicy.numRetries",
        "required", "a retry policy states its retries, as OSM's CRD requires"),
    bad(ex.RETRY, "spec.source.namespace", ..., "spec.source.namespace", "required",
        "a retry source names its namespace"),
    # UpstreamTrafficSetting
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.host", "web", "spec.host", "not an FQDN",
        "an upstream host is an FQDN, as OSM's webhook requires"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.rateLimit.global", {"http": {}},
        "spec.rateLimit.global", "out of scope", "global rate limiting is out of scope"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.httpRoutes[0].rateLimit.global", {},
        "spec.httpRoutes[0].rateLimit.global", "out of scope",
        "per-route global rate limiting is out of scope"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.httpRoutes[0].path", "/api/(?=v1)",
        "spec.httpRoutes[0].path", "RE2", "a route path Envoy's RE2 refuses is refused"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.httpRoutes[0].path", "/api/(abc){20}",
        "spec.httpRoutes[0].path", "too complex", "a route path too big for Envoy is refused"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.httpRoutes[1].path", "/api/.*",
        "spec.httpRoutes[1].path", "duplicate route", "a route path is listed once"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.rateLimit.local.http.responseStatusCode", 418,
        "spec.rateLimit.local.http.responseStatusCode", "Envoy's status codes",
        "a rate limited status is one of Envoy's"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.rateLimit.local.http.responseStatusCode", 200,
        "spec.rateLimit.local.http.responseStatusCode", "out of range",
        "a rate limited status is an error status"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.rateLimit.local.tcp.unit", "day",
        "spec.rateLimit.local.tcp.unit", '"day" is not valid',
        "a rate's unit is second, minute or hour"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.rateLimit.local.http.requests", 0,
        "spec.rateLimit.local.http.requests", "out of range", "a rate allows at least one request"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.connectionSettings.tcp.connectTimeout", "5",
        "spec.connectionSettings.tcp.connectTimeout", "not a duration",
        "a connect timeout is a duration"),
    bad(ex.UPSTREAM_TRAFFIC_SETTING, "spec.connectionSettings.http.maxRequests", -1,
        "spec.connectionSettings.http.maxRequests", "out of range", "limits are not negative"),
]  # fmt: skip


@pytest.mark.parametrize(("document", "where", "fragment"), ROWS)
def test_an_invalid_policy_gives_one_error_at_its_field(
    document: dict[str, Any], where: str, fragment: str
) -> None:
    resource, problems = kinds.parse(document)
    errors = [p for p in problems if p.severity == "error"]
    assert resource is None
    assert [(p.path, fragment in p.message) for p in errors] == [(where, True)], "\n".join(
        f"{p.path}: {p.message}" for p in errors
    )


def test_every_error_of_a_policy_is_reported_at_once() -> None:
    document = _with(ex.UPSTREAM_TRAFFIC_SETTING, "spec.host", "web")
    document["spec"]["httpRoutes"][0]["path"] = "a++"
    document["spec"]["rateLimit"]["global"] = {}
    document["spec"]["connectionSettings"]["tcp"]["maxConections"] = 1
    _, problems = kinds.parse(document)
    assert sorted(p.path for p in problems) == [
        "spec.connectionSettings.tcp.maxConections",
        "spec.host",
        "spec.httpRoutes[0].path",
        "spec.rateLimit.global",
    ]


def test_protocols_are_read_in_any_case_and_kept_lower_case() -> None:
    egress = ex.parse_valid(ex.EGRESS)
    assert isinstance(egress, policy.Egress)
    assert [(p.number, p.protocol) for p in egress.ports] == [(80, "http"), (443, "https")]


def test_defaults_are_osms() -> None:
    setting = ex.parse_valid(ex.UPSTREAM_TRAFFIC_SETTING)
    assert isinstance(setting, policy.UpstreamTrafficSetting)
    route = setting.http_routes[0].rate_limit
    assert route is not None
    assert (route.burst, route.response_status_code, route.response_headers_to_add) == (0, 429, ())
    minimal = ex.parse_valid(ex.UPSTREAM_TRAFFIC_SETTING_MINIMAL)
    assert isinstance(minimal, policy.UpstreamTrafficSetting)
    assert (minimal.connection_settings, minimal.rate_limit, minimal.http_routes) == (
        None,
        None,
        (),
    )


def test_retry_durations_are_seconds() -> None:
    retry = ex.parse_valid(ex.RETRY)
    assert isinstance(retry, policy.Retry)
    assert retry.retry_policy == policy.RetryPolicy("5xx,retriable-4xx", 3.0, 3, 0.25)
    assert [str(d) for d in retry.destinations] == ["shop/api"]


def test_an_https_backend_that_checks_clients_without_a_principal_is_a_warning() -> None:
    document = _with(ex.INGRESS_BACKEND, "spec.sources[1]", ...)
    resource, problems = kinds.parse(document)
    assert resource is not None
    assert [(p.severity, p.path) for p in problems] == [
        ("warning", "spec.backends[0].tls.skipClientCertValidation")
    ]


def test_the_status_codes_are_envoys() -> None:
    envoys = {c for c in http_status_pb2.StatusCode.values() if 400 <= c <= 599}
    assert envoys == policy.ENVOY_STATUS_CODES


# -- references and conflicts, over a set of objects ----------------------------------------
def _load(*texts: str) -> manifest.LoadResult:
    return manifest.load_text("---\n".join(texts), source="policies.yaml")


def test_dangling_references_of_policies_are_warnings_naming_the_field() -> None:
    result = _load(ex.EGRESS, ex.INGRESS_BACKEND, ex.RETRY, ex.UPSTREAM_TRAFFIC_SETTING)
    assert result.errors == []
    warned = {
        (p.kind, p.path, p.message.split(" is not defined")[0])
        for p in references.check(result.resources)
        if p.path != "metadata.namespace"
    }
    assert warned == {
        ("Egress", "spec.sources[0]", 'ServiceAccount "shop/web"'),
        ("Egress", "spec.matches[0].name", 'HTTPRouteGroup "shop/web-api"'),
        ("Egress", "spec.matches[1].name", 'UpstreamTrafficSetting "shop/httpbin"'),
        ("IngressBackend", "spec.backends[0].name", 'Service "shop/web"'),
        ("IngressBackend", "spec.backends[1].name", 'Service "shop/web"'),
        ("IngressBackend", "spec.sources[0]", 'Service "ingress/ingress-nginx"'),
        ("Retry", "spec.source", 'ServiceAccount "shop/web"'),
        ("Retry", "spec.destinations[0]", 'Service "shop/api"'),
        ("UpstreamTrafficSetting", "spec.host", 'Service "shop/web"'),
    }
    assert all(p.severity == "warning" for p in references.check(result.resources))


def test_satisfied_references_give_no_warning() -> None:
    service_api = ex.SERVICE_MINIMAL.replace("name: web,", "name: api,")
    result = _load(ex.SERVICE_ACCOUNT, ex.SERVICE_MINIMAL, service_api, ex.RETRY)
    assert [p for p in references.check(result.resources) if p.kind == "Retry"] == []


def test_two_upstream_traffic_settings_for_one_host_are_an_error_naming_both() -> None:
    other = ex.UPSTREAM_TRAFFIC_SETTING_MINIMAL.replace("name: httpbin", "name: httpbin-2")
    result = _load(ex.UPSTREAM_TRAFFIC_SETTING_MINIMAL, other)
    assert [(p.severity, p.name, p.path, p.document) for p in result.errors] == [
        ("error", "httpbin-2", "spec.host", 1)
    ]
    message = result.errors[0].message
    assert "shop/httpbin-2" in message and "shop/httpbin:" in message
    assert [r.name for r in result.resources] == ["httpbin"]
