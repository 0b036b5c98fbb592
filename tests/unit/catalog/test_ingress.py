"""IngressBackend -> IngressPort, as OSM's GetIngressTrafficPolicy reads it.

The mesh: Service ``b/server`` (port 80 -> 8080, pods 10.0.1.1-2) and, outside the mesh,
the ingress controller ``ingress/nginx`` (pods 10.1.0.5 ready, 10.1.0.6 not ready).
"""

from __future__ import annotations

from typing import Any

import pytest

from osm.catalog import ingress
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import IngressPort, IngressRule, RateLimits, RequestMatch
from osm.model.meta import ObjectRef, Resource
from osm.model.policy import HTTPLocalRateLimit
from tests.unit.catalog import meshes as m

SERVER = ServiceId("b", "server")
NGINX = {"kind": "Service", "name": "nginx", "namespace": "ingress"}
PRINCIPAL = {"kind": "AuthenticatedPrincipal", "name": "nginx.ingress.cluster.local"}
CORP = {"kind": "IPRange", "name": "192.168.0.0/16"}
ANY = (IngressRule(RequestMatch()),)


def base() -> list[m.Doc]:
    return [
        m.mesh_config(permissive=False),
        m.namespace("b"),
        m.namespace("ingress", mesh=False),
        m.service("b", "server", cluster_ip="10.96.0.10"),
        m.pod("b", "server-0", {"app": "server"}, "server", "10.0.1.1"),
        m.pod("b", "server-1", {"app": "server"}, "server", "10.0.1.2"),
        m.service("ingress", "nginx", ports=((80, 80, "http"),)),
        m.pod("ingress", "nginx-0", {"app": "nginx"}, "nginx", "10.1.0.5"),
        m.pod("ingress", "nginx-1", {"app": "nginx"}, "nginx", "10.1.0.6", ready=False),
    ]


def http(number: int = 8080, name: str = "server") -> m.Doc:
    return {"name": name, "port": {"number": number, "protocol": "http"}}


def https(skip: bool | None = False, sni: tuple[str, ...] = ()) -> m.Doc:
    backend: m.Doc = {"name": "server", "port": {"number": 8080, "protocol": "https"}}
    if skip is not None:
        backend["tls"] = {"skipClientCertValidation": skip, "sniHosts": list(sni)}
    return backend


def ib(
    backends: list[m.Doc], sources: list[m.Doc], matches: tuple[str, ...] = (), name: str = "ib"
) -> m.Doc:
    return m.ingress_backend("b", name, backends, sources, matches)


def ports_of(
    *extra: m.Doc, rate_limits: RateLimits | None = None
) -> tuple[tuple[IngressPort, ...], list[str]]:
    """The ingress ports of ``b/server`` and the warnings (``extra`` replaces a base
    document of the same kind and name)."""
    warnings: list[str] = []

    def warn(key: Any, resource: Resource | ObjectRef | None, message: str) -> None:
        assert key == ("service", SERVER)
        ref = resource.ref if isinstance(resource, Resource) else resource
        warnings.append(f"{ref.name if ref else ''}: {message}")

    replaced = {(d["kind"], d["metadata"]["name"]) for d in extra}
    kept = [d for d in base() if (d["kind"], d["metadata"]["name"]) not in replaced]
    state = m.state(*kept, *extra)
    return ingress.ingress_ports(state, SERVER, rate_limits, warn), warnings


def port(protocol: str = "http", ranges: tuple[str, ...] = (), **fields: Any) -> IngressPort:
    fields.setdefault("rules", ANY)
    return IngressPort(SERVER, 8080, protocol, ranges, port=80, **fields)


ROUTES = m.route_group(
    "b",
    "api",
    [
        {"name": "books", "pathRegex": "/books/.*", "methods": ["GET"]},
        {"name": "health", "pathRegex": "/health"},
    ],
)
BOOKS = RequestMatch("/books/.*", ("GET",))
HEALTH = RequestMatch("/health")

CASES = [
    pytest.param(
        [ib([http()], [CORP])],
        (port(ranges=("192.168.0.0/16",)),),
        id="http from an IPRange: its CIDR, every request from any client",
    ),
    pytest.param(
        [ib([http()], [NGINX])],
        (port(ranges=("10.1.0.5/32",)),),
        id="a Service source is its ready pods' addresses (no Endpoints object)",
    ),
    pytest.param(
        [
            ib([http()], [NGINX, CORP]),
            m.endpoints("ingress", "nginx", ["10.1.0.7"], ["10.1.0.8"], port=80),
        ],
        (port(ranges=("10.1.0.7/32", "192.168.0.0/16")),),
        id="a Service source with an Endpoints object: its ready addresses",
    ),
    pytest.param(
        [ib([https(False, ("server.example.com",))], [NGINX, PRINCIPAL])],
        (
            port(
                "https",
                ("10.1.0.5/32",),
                rules=(IngressRule(RequestMatch(), ("nginx.ingress.cluster.local",)),),
                server_names=("server.example.com",),
            ),
        ),
        id="https validating client certificates: the AuthenticatedPrincipals and SNI hosts",
    ),
    pytest.param(
        [ib([https(False, ("Web.Example.com", "web.example.com"))], [CORP])],
        (port("https", ("192.168.0.0/16",), server_names=("web.example.com",)),),
        id="SNI hosts lower-cased and listed once (Envoy refuses a name twice in a chain)",
    ),
    pytest.param(
        [ib([https(True)], [CORP, PRINCIPAL])],
        (port("https", ("192.168.0.0/16",), skip_client_cert_validation=True),),
        id="https without client certificate validation: any client (OSM's wildcard)",
    ),
    pytest.param(
        [ib([https(None)], [CORP])],
        (port("https", ("192.168.0.0/16",)),),
        id="https without tls: client certificates validated, any validated client",
    ),
    pytest.param(
        [ib([http()], [CORP], ("api",)), ROUTES],
        (port(ranges=("192.168.0.0/16",), rules=(IngressRule(BOOKS), IngressRule(HEALTH))),),
        id="an HTTPRouteGroup in matches: only its requests",
    ),
    pytest.param(
        [ib([http(), http(9090, "other")], [CORP])],
        (port(ranges=("192.168.0.0/16",)),),
        id="backends naming another service are that service's",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), CASES)
def test_ingress_ports(extra: list[m.Doc], expected: tuple[IngressPort, ...]) -> None:
    ports, warnings = ports_of(*extra)
    assert ports == expected
    assert warnings == []


WARNED = [
    pytest.param(
        [ib([http(80)], [CORP])],
        (),
        ['ib: backend "server" port 80: no TCP port of Service "b/server" has targetPort 80'],
        id="a backend port is the targetPort: the service port number admits nothing",
    ),
    pytest.param(
        [ib([http()], [CORP], name="a"), ib([http()], [NGINX], name="z")],
        (port(ranges=("192.168.0.0/16",)),),
        ['z: backend "server" port 8080 is also named by IngressBackend "b/a", which applies'],
        id="two IngressBackends for one port: the first by name, a warning naming both",
    ),
    pytest.param(
        [ib([http()], [{"kind": "Service", "name": "gone", "namespace": "ingress"}, CORP])],
        (),
        ['ib: spec.sources[0]: Service "ingress/gone" does not exist; the IngressBackend admits'],
        id="a missing Service source admits nothing (not any address)",
    ),
    pytest.param(
        [ib([http()], [NGINX]), m.endpoints("ingress", "nginx", [], ["10.1.0.8"], port=80)],
        (),
        ['ib: spec.sources[0]: Service "ingress/nginx" has no ready endpoint'],
        id="a Service source without ready endpoints admits nothing",
    ),
    pytest.param(
        [ib([http()], [CORP], ("gone",))],
        (),
        ['ib: spec.matches[0]: HTTPRouteGroup "b/gone" does not exist'],
        id="every HTTPRouteGroup named missing: nothing admitted",
    ),
    pytest.param(
        [ib([http()], [CORP], ("gone", "api")), ROUTES],
        (port(ranges=("192.168.0.0/16",), rules=(IngressRule(BOOKS), IngressRule(HEALTH))),),
        ['ib: spec.matches[0]: HTTPRouteGroup "b/gone" does not exist'],
        id="a missing HTTPRouteGroup beside one that exists: the existing one's matches",
    ),
    pytest.param(
        [ib([http()], [PRINCIPAL])],
        (port(),),
        ['ib: backend "server" port 8080 is http with no IPRange or Service source'],
        id="http with no address source: any address, warned as insecure (OSM's warning)",
    ),
]


@pytest.mark.parametrize(("extra", "expected", "warned"), WARNED)
def test_problems_are_warnings(
    extra: list[m.Doc], expected: tuple[IngressPort, ...], warned: list[str]
) -> None:
    ports, warnings = ports_of(*extra)
    assert ports == expected
    assert len(warnings) == len(warned)
    for warning, fragment in zip(warnings, warned, strict=True):
        assert fragment in warning


def test_named_target_port_is_resolved_against_the_pods() -> None:
    named = m.service("b", "server", ports=((80, "web", "http"),))
    pod = m.pod("b", "server-0", {"app": "server"}, "server", "10.0.1.1")
    pod["spec"]["containers"][0]["ports"] = [{"name": "web", "containerPort": 8080}]
    ports, warnings = ports_of(named, pod, ib([http()], [CORP]))
    assert [(p.target_port, p.port) for p in ports] == [(8080, 80)]
    assert warnings == []


def test_the_service_rate_limits_go_with_each_port_and_the_origin_is_the_object() -> None:
    limits = RateLimits(http=HTTPLocalRateLimit(10, "second"))
    ports, _ = ports_of(ib([http()], [CORP]), rate_limits=limits)
    assert ports[0].rate_limits == limits
    assert ports[0].origins == (ObjectRef("IngressBackend", "b", "ib"),)
    assert ports[0].name == "ingress_b/server_8080_http"


def test_a_proxy_policy_carries_the_ingress_of_its_services() -> None:
    catalog = Catalog(m.state(*base(), ib([http()], [CORP])))
    proxy = catalog.proxy(ProxyId("b", "server-0"))
    assert proxy is not None
    assert catalog.policy(proxy).inbound.ingress == (port(ranges=("192.168.0.0/16",)),)
    nginx = catalog.proxy(ProxyId("b", "server-1"))
    assert nginx is not None and catalog.policy(nginx).inbound.ingress


def test_a_missing_backend_service_is_a_warning() -> None:
    warnings: list[str] = []
    state = m.state(*base(), m.ingress_backend("b", "ib", [http(name="gone")], [CORP]))
    gone = ServiceId("b", "gone")
    assert ingress.ingress_ports(state, gone, None, lambda k, r, msg: warnings.append(msg)) == ()
    assert warnings == ['backend Service "b/gone" does not exist; nothing is admitted']
