"""Helpers shared by the xDS tests: the bookstore demo as a state, and JSON views."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from osm.base import wellknown
from osm.base.wellknown import PUSH_ORDER
from osm.catalog import offline
from osm.catalog.state import Changed, MeshState
from osm.model import manifest
from osm.model.config import (
    MeshConfig,
    ObservabilitySettings,
    TracingSettings,
    TrafficSettings,
)
from osm.model.meta import Resource
from osm.xds.snapshot import Snapshot
from tests.unit.catalog import meshes as m

ROOT = Path(__file__).resolve().parents[3]
BOOKSTORE = ROOT / "demo" / "bookstore" / "manifests"


def bookstore(*, permissive: bool, egress: bool = False) -> MeshState:
    """The demo's manifests with synthesized pods, in the mode asked for (tracing off)."""
    loaded = manifest.load_paths([BOOKSTORE])
    assert not loaded.errors, loaded.errors
    resources: list[Resource] = []
    for resource in offline.synthesize(loaded.resources):
        if isinstance(resource, MeshConfig):
            traffic = TrafficSettings(
                enable_egress=egress, enable_permissive_traffic_policy_mode=permissive
            )
            # Tracing off: the demo traces, and tracing-smi is the golden that shows it.
            resource = dataclasses.replace(
                resource, traffic=traffic, observability=ObservabilitySettings()
            )
        resources.append(resource)
    return MeshState.from_resources(resources)


def as_json(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot as protobuf JSON, by short type name (versions left out)."""
    return {
        "proxy": str(snapshot.proxy.id),
        "identity": str(snapshot.proxy.identity),
        "services": [str(s) for s in snapshot.proxy.services],
        "resources": {
            url.rpartition(".")[2]: [
                json_format.MessageToDict(b.message)
                for _, b in sorted(snapshot.of_type(url).items())
            ]
            for url in PUSH_ORDER
        },
    }


def grpc_mesh(*, permissive: bool, sidecar: str | None) -> MeshState:
    """A small mesh with a gRPC service: clients in ``a``, the server in ``b``.

    Service ``b/server`` has an HTTP port (80 -> 8080) and a gRPC port (9090). In SMI
    mode three clients reach it: ``client`` by an HTTPRouteGroup rule of any method on
    every path ``/.*`` (every gRPC call, though not every request: ``OPTIONS *`` has the
    path ``*``), ``auditor`` by one that matches one gRPC method only, ``batch`` by a
    TCPRoute on 9090. ``sidecar`` is the pods' ``osm-py.io/sidecar`` annotation (None:
    none, i.e. Envoy).
    """
    annotations = {"osm-py.io/sidecar": sidecar} if sidecar else {}

    def pod(ns: str, name: str, account: str, ip: str) -> dict[str, Any]:
        return m.pod(ns, f"{name}-0", {"app": name}, account, ip, annotations=annotations)

    docs = [
        m.mesh_config(permissive=permissive),
        m.namespace("a"),
        m.namespace("b"),
        pod("a", "client", "client", "10.244.1.1"),
        pod("a", "auditor", "auditor", "10.244.1.2"),
        pod("a", "batch", "batch", "10.244.1.3"),
        pod("b", "server", "server", "10.244.2.1"),
        m.service(
            "b",
            "server",
            ports=((80, 8080, "http"), (9090, 9090, "grpc")),
            cluster_ip="10.96.0.10",
        ),
    ]
    if not permissive:
        docs += [
            m.route_group(
                "b", "all-paths", [{"name": "all", "pathRegex": "/.*", "methods": ["*"]}]
            ),
            m.route_group(
                "b",
                "get-book",
                [{"name": "get", "pathRegex": "/bookstore.Books/Get", "methods": ["POST"]}],
            ),
            m.tcp_route("b", "grpc-port", [9090]),
            m.traffic_target(
                "b", "client", "server", [("a", "client")], [("HTTPRouteGroup", "all-paths", [])]
            ),
            m.traffic_target(
                "b", "auditor", "server", [("a", "auditor")], [("HTTPRouteGroup", "get-book", [])]
            ),
            m.traffic_target(
                "b", "batch", "server", [("a", "batch")], [("TCPRoute", "grpc-port", [])]
            ),
        ]
    return m.state(*docs)


INGRESS_PRINCIPAL = "nginx.ingress.cluster.local"


def ingress_mesh(
    *, permissive: bool, sidecar: str | None = None, limited: bool = False
) -> MeshState:
    """A small mesh admitting an ingress controller from outside it.

    ``b/server`` serves port 80 -> 8080 and 443 -> 8443 (both HTTP to the mesh) and
    ``a/client`` calls it. The controller ``ingress/nginx`` (pod 10.1.0.5, not in the
    mesh) reaches 8080 in plaintext, with the corporate range 192.168.0.0/16, for the
    requests of HTTPRouteGroup ``b/ingress-routes`` (IngressBackend ``server-http``), and
    8443 over TLS naming ``server.b.svc.cluster.local`` (the mesh chain's server name
    too), its certificate validated and naming it (``server-https``). In SMI mode a
    TrafficTarget lets ``client`` call ``server``. ``sidecar`` is the pods'
    ``osm-py.io/sidecar`` annotation (None: Envoy).
    """
    annotations = {"osm-py.io/sidecar": sidecar} if sidecar else {}
    docs = [
        m.mesh_config(permissive=permissive),
        m.namespace("a"),
        m.namespace("b"),
        m.namespace("ingress", mesh=False),
        m.pod("a", "client-0", {"app": "client"}, "client", "10.244.1.1", annotations=annotations),
        m.pod("b", "server-0", {"app": "server"}, "server", "10.244.2.1", annotations=annotations),
        m.service(
            "b", "server", ports=((80, 8080, "http"), (443, 8443, "http")), cluster_ip="10.96.0.10"
        ),
        m.pod("ingress", "nginx-0", {"app": "nginx"}, "nginx", "10.1.0.5"),
        m.service("ingress", "nginx", ports=((80, 80, "http"),), cluster_ip="10.96.0.20"),
        m.route_group(
            "b",
            "ingress-routes",
            [
                {"name": "books", "pathRegex": "/books/.*", "methods": ["GET"]},
                {"name": "health", "pathRegex": "/health"},
            ],
        ),
        m.ingress_backend(
            "b",
            "server-http",
            [{"name": "server", "port": {"number": 8080, "protocol": "http"}}],
            [
                {"kind": "Service", "name": "nginx", "namespace": "ingress"},
                {"kind": "IPRange", "name": "192.168.0.0/16"},
            ],
            matches=("ingress-routes",),
        ),
        m.ingress_backend(
            "b",
            "server-https",
            [
                {
                    "name": "server",
                    "port": {"number": 8443, "protocol": "https"},
                    "tls": {
                        "skipClientCertValidation": False,
                        "sniHosts": ["server.b.svc.cluster.local"],
                    },
                }
            ],
            [
                {"kind": "Service", "name": "nginx", "namespace": "ingress"},
                {"kind": "AuthenticatedPrincipal", "name": INGRESS_PRINCIPAL},
            ],
        ),
    ]
    if not permissive:
        docs += [
            m.route_group("b", "all", [{"name": "all", "pathRegex": ".*", "methods": ["*"]}]),
            m.traffic_target(
                "b", "client", "server", [("a", "client")], [("HTTPRouteGroup", "all", [])]
            ),
        ]
    if limited:
        from tests.unit.catalog import traffic_docs as t

        docs.append(
            t.upstream_setting("b", "server", "server.b.svc.cluster.local", **TRAFFIC_SETTING_SPEC)
        )
    return m.state(*docs)


TRAFFIC_SETTING_SPEC: dict[str, Any] = {
    "connectionSettings": {
        "tcp": {"maxConnections": 50, "connectTimeout": "2s"},
        "http": {"maxRequests": 20, "maxPendingRequests": 5, "maxRequestsPerConnection": 10},
    },
    "rateLimit": {
        "local": {
            "tcp": {"connections": 100, "unit": "minute", "burst": 10},
            "http": {
                "requests": 10,
                "unit": "second",
                "burst": 5,
                "responseStatusCode": 503,
                "responseHeadersToAdd": [{"name": "x-limited", "value": "host"}],
            },
        }
    },
    "httpRoutes": [
        {"path": "/buy", "rateLimit": {"local": {"requests": 1, "unit": "minute"}}},
    ],
}


def traffic_mesh(*, retries: bool = True, setting: dict[str, Any] | None = None) -> MeshState:
    """A small SMI mesh with a Retry and an UpstreamTrafficSetting (Python sidecars).

    ``a/client`` calls ``b/server`` (HTTP 80 -> 8080 by an HTTPRouteGroup of GET
    ``/books.*`` and POST ``/buy``; TCP 5432 by a TCPRoute). The Retry ``a/retry-server``
    (client -> server) applies with MeshConfig ``enableRetryPolicy`` = ``retries``; the
    UpstreamTrafficSetting ``b/server`` (``setting``, by default `TRAFFIC_SETTING_SPEC`)
    limits the clients' clusters and rate limits the server's inbound chains.
    """
    from tests.unit.catalog import traffic_docs as t

    annotations = {"osm-py.io/sidecar": "python"}
    config = m.mesh_config(permissive=False)
    config["spec"]["featureFlags"] = {"enableRetryPolicy": retries}
    docs = [
        config,
        m.namespace("a"),
        m.namespace("b"),
        m.pod("a", "client-0", {"app": "client"}, "client", "10.244.1.1", annotations=annotations),
        m.pod("b", "server-0", {"app": "server"}, "server", "10.244.2.1", annotations=annotations),
        m.service(
            "b", "server", ports=((80, 8080, "http"), (5432, 5432, "tcp")), cluster_ip="10.96.0.10"
        ),
        m.route_group(
            "b",
            "books",
            [
                {"name": "read", "pathRegex": "/books.*", "methods": ["GET"]},
                {"name": "buy", "pathRegex": "/buy", "methods": ["POST"]},
            ],
        ),
        m.tcp_route("b", "db", [5432]),
        m.traffic_target(
            "b",
            "client",
            "server",
            [("a", "client")],
            [("HTTPRouteGroup", "books", []), ("TCPRoute", "db", [])],
        ),
        t.retry("a", "retry-server", "client", [("b", "server")]),
        t.upstream_setting(
            "b",
            "server",
            "server.b.svc.cluster.local",
            **(TRAFFIC_SETTING_SPEC if setting is None else setting),
        ),
    ]
    return m.state(*docs)


POLICY_API = "policy.openservicemesh.io/v1alpha1"


def egress_mesh() -> MeshState:
    """A small SMI mesh with Egress objects (mesh-wide egress off), for OSM's egress.

    ``web`` (ns ``shop``) may call mesh service ``api`` (HTTP) and ``db`` (MySQL:
    ``tcp-server-first``), and by Egress ``httpbin``: HTTP ``httpbin.org`` on 80 (the
    requests of HTTPRouteGroup ``httpbin-get`` only) and 8080 (every request), HTTPS
    ``httpbin.org`` on 443 by SNI, with UpstreamTrafficSetting ``httpbin-limits``; by
    Egress ``smtp``: SMTP (server first) on 25 and Postgres on 5432 to 10.20.0.0/16.
    ``worker`` has no Egress: its outbound listener has no egress chain and no
    inspector.
    """

    def egress(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": POLICY_API,
            "kind": "Egress",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "sources": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}],
                **spec,
            },
        }

    docs = [
        m.mesh_config(permissive=False, egress=False),
        m.namespace("shop"),
        m.pod("shop", "web-0", {"app": "web"}, "web", "10.244.1.1"),
        m.pod("shop", "worker-0", {"app": "worker"}, "worker", "10.244.1.2"),
        m.pod("shop", "api-0", {"app": "api"}, "api", "10.244.1.3"),
        m.pod("shop", "db-0", {"app": "db"}, "db", "10.244.1.4"),
        m.service("shop", "api", cluster_ip="10.96.0.20"),
        m.service("shop", "db", ports=((3306, 3306, "tcp-server-first"),), cluster_ip="10.96.0.21"),
        m.route_group("shop", "api-all", [{"name": "all", "pathRegex": ".*"}]),
        m.tcp_route("shop", "mysql", [3306]),
        m.traffic_target(
            "shop",
            "web-api",
            "api",
            [("shop", "web"), ("shop", "worker")],
            [("HTTPRouteGroup", "api-all", [])],
        ),
        m.traffic_target("shop", "web-db", "db", [("shop", "web")], [("TCPRoute", "mysql", [])]),
        m.route_group(
            "shop", "httpbin-get", [{"name": "get", "pathRegex": "/get", "methods": ["GET"]}]
        ),
        {
            "apiVersion": POLICY_API,
            "kind": "UpstreamTrafficSetting",
            "metadata": {"name": "httpbin-limits", "namespace": "shop"},
            "spec": {
                "host": "httpbin-limits.shop.svc.cluster.local",
                "connectionSettings": {
                    "tcp": {"maxConnections": 10, "connectTimeout": "2s"},
                    "http": {"maxRequests": 20, "maxPendingRequests": 5},
                },
            },
        },
        egress(
            "httpbin",
            {
                "hosts": ["httpbin.org"],
                "ports": [
                    {"number": 80, "protocol": "http"},
                    {"number": 443, "protocol": "https"},
                ],
                "matches": [
                    {
                        "apiGroup": "specs.smi-spec.io/v1alpha4",
                        "kind": "HTTPRouteGroup",
                        "name": "httpbin-get",
                    },
                    {
                        "apiGroup": POLICY_API,
                        "kind": "UpstreamTrafficSetting",
                        "name": "httpbin-limits",
                    },
                ],
            },
        ),
        egress(
            "httpbin-alt",
            {"hosts": ["httpbin.org"], "ports": [{"number": 8080, "protocol": "http"}]},
        ),
        egress(
            "smtp",
            {
                "ipAddresses": ["10.20.0.0/16"],
                "ports": [
                    {"number": 25, "protocol": "tcp-server-first"},
                    {"number": 5432, "protocol": "tcp"},
                ],
            },
        ),
    ]
    return m.state(*docs)


def traced(
    state: MeshState, *, sampling: float = 100.0, address: str = ""
) -> tuple[MeshState, Changed]:
    """``state`` with MeshConfig tracing on (OSM's default collector unless ``address``),
    and the change that took it there."""
    old = state.mesh_config
    tracing = TracingSettings(
        enable=True,
        address=address,
        port=wellknown.ZIPKIN_PORT,
        endpoint=wellknown.ZIPKIN_SPANS_PATH,
        sampling_percentage=sampling,
    )
    new = dataclasses.replace(
        old, observability=dataclasses.replace(old.observability, tracing=tracing)
    )
    return state.with_changes(upserts=[new])


def tracing_mesh() -> MeshState:
    """The SMI ingress mesh (`ingress_mesh`: inbound, outbound and ingress HCMs) with
    tracing on to OSM's default collector, sampling 1% of requests."""
    return traced(ingress_mesh(permissive=False), sampling=1.0)[0]
