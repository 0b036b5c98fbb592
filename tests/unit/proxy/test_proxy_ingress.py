"""The Python sidecar runs IngressBackend chains: source ranges, plaintext beside mTLS.

Read from the golden ingress mesh (``tests/golden/xds/ingress-permissive``): ``b/server``
serves 8080 and 8443 to the mesh; the ingress controller (10.1.0.5) and 192.168.0.0/16
reach 8080 in plaintext, and 10.1.0.5 reaches 8443 over TLS naming the mesh's own server
name, which the mesh chain of 8443 tells apart by ALPN ``osm``.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from google.protobuf import json_format

from osm.proxy import filter_chain, model, translate
from osm.proxy.translate import lds

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "xds" / "ingress-permissive"
FQDN = "server.b.svc.cluster.local"
POD = "10.244.2.1"


def inbound_json() -> dict[str, Any]:
    document = json.loads((GOLDEN / "b_server-0.json").read_text())
    listeners = document["resources"]["Listener"]
    found: dict[str, Any] = next(item for item in listeners if item["name"] == "inbound-listener")
    return found


def inbound_listener() -> model.Listener:
    return lds.translate(json_format.ParseDict(inbound_json(), listener_pb2.Listener()))


def test_source_prefix_ranges_are_read() -> None:
    chains = {chain.name: chain for chain in inbound_listener().filter_chains}
    http = chains["ingress_b/server_8080_http"]
    assert http.match.source_prefix_ranges == (
        ipaddress.ip_network("10.1.0.5/32"),
        ipaddress.ip_network("192.168.0.0/16"),
    )
    assert http.match.transport_protocol == "raw_buffer" and http.tls is None
    https = chains["ingress_b/server_8443_https"]
    assert https.tls is not None and https.tls.require_client_certificate
    assert https.match.server_names == (FQDN,)


SELECTED = [
    # (port, source, server name, transport, ALPN) -> chain (None: refused)
    (8080, "10.1.0.5", "", "raw_buffer", (), "ingress_b/server_8080_http"),
    (8080, "192.168.3.4", "", "raw_buffer", (), "ingress_b/server_8080_http"),
    (8080, "10.9.9.9", "", "raw_buffer", (), None),
    (8080, "10.1.0.5", FQDN, "tls", ("osm",), "inbound_b/server_8080_http"),
    (8080, "10.9.9.9", FQDN, "tls", ("osm",), "inbound_b/server_8080_http"),
    (8443, "10.1.0.5", FQDN, "tls", ("osm",), "inbound_b/server_8443_http"),
    (8443, "10.1.0.5", FQDN, "tls", ("h2", "http/1.1"), "ingress_b/server_8443_https"),
    (8443, "10.9.9.9", FQDN, "tls", (), None),
    (8443, "10.1.0.5", "other.example.com", "tls", (), None),
    (8443, "10.1.0.5", "", "raw_buffer", (), None),
]


@pytest.mark.parametrize(("port", "source", "sni", "transport", "alpn", "expected"), SELECTED)
def test_ingress_and_mesh_chains_are_told_apart_as_envoy_does(
    port: int, source: str, sni: str, transport: str, alpn: tuple[str, ...], expected: str | None
) -> None:
    chain = filter_chain.select_filter_chain(
        inbound_listener(), POD, port, sni, transport, alpn, source
    )
    assert (chain.name if chain else None) == expected


def test_the_longest_source_prefix_wins() -> None:
    terminal = model.TcpProxy("t", (model.WeightedTarget("t", 1),), None)

    def chain(name: str, *cidrs: str) -> model.FilterChain:
        ranges = tuple(ipaddress.ip_network(c) for c in cidrs)
        return model.FilterChain(
            name, model.FilterChainMatch(80, source_prefix_ranges=ranges), None, None, terminal
        )

    listener = model.Listener(
        "l",
        "0.0.0.0",
        1,
        True,
        False,
        (chain("wide", "10.0.0.0/8"), chain("narrow", "10.1.0.0/16"), chain("any")),
        None,
    )
    for source, expected in [("10.1.2.3", "narrow"), ("10.2.0.1", "wide"), ("11.0.0.1", "any")]:
        found = filter_chain.select_filter_chain(listener, "1.1.1.1", 80, source_ip=source)
        assert found is not None and found.name == expected


def test_tls_without_client_certificate_validation_is_read() -> None:
    document = inbound_json()
    chain = next(c for c in document["filterChains"] if c["name"].endswith("8443_https"))
    config = chain["transportSocket"]["typedConfig"]
    config["requireClientCertificate"] = False
    del config["commonTlsContext"]["validationContextSdsSecretConfig"]
    listener = lds.translate(json_format.ParseDict(document, listener_pb2.Listener()))
    (tls,) = [c.tls for c in listener.filter_chains if c.name.endswith("8443_https")]
    assert tls is not None and not tls.require_client_certificate
    assert tls.validation_secret is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("sourcePorts", [1234]), ("sourceType", "EXTERNAL"), ("directSourcePrefixRanges", [{}])],
)
def test_other_source_criteria_are_a_nack_naming_the_field(field: str, value: Any) -> None:
    document = inbound_json()
    chain = next(c for c in document["filterChains"] if c["name"].endswith("8080_http"))
    chain["filterChainMatch"][field] = value
    message = json_format.ParseDict(document, listener_pb2.Listener())
    with pytest.raises(translate.ConfigError, match=r"filter_chain_match\.\w*source"):
        lds.translate(message)
