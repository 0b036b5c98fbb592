"""Config translation: what our control plane emits round-trips; anything else is refused
with an error naming the resource, the field path and what is supported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format, wrappers_pb2

from osm.base import wellknown
from osm.proxy import assembly, model, translate
from osm.proxy.translate import eds, rds, sds
from tests.integration import proxymesh

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "xds"
KINDS = {
    "Cluster": (wellknown.CLUSTER_TYPE, cluster_pb2.Cluster),
    "ClusterLoadAssignment": (wellknown.ENDPOINT_TYPE, endpoint_pb2.ClusterLoadAssignment),
    "Listener": (wellknown.LISTENER_TYPE, listener_pb2.Listener),
    "RouteConfiguration": (wellknown.ROUTE_TYPE, route_pb2.RouteConfiguration),
    "Secret": (wellknown.SECRET_TYPE, secret_pb2.Secret),
}


@pytest.mark.parametrize(
    "path", sorted(GOLDEN.glob("*/*.json")), ids=lambda path: f"{path.parent.name}/{path.stem}"
)
def test_control_plane_output_translates(path: Path) -> None:
    document = json.loads(path.read_text())
    raw: dict[str, dict[str, object]] = {}
    for kind, items in document["resources"].items():
        type_url, cls = KINDS[kind]
        for item in items:
            message = json_format.ParseDict(item, cls())
            raw.setdefault(type_url, {})[assembly.resource_name(type_url, message)] = message
    proxy_config = assembly.assemble(raw)
    assert proxy_config.listeners and proxy_config.clusters


def _mesh_resources() -> dict[str, dict[str, object]]:
    pki = proxymesh.Pki.create()
    cert, key, _ = pki.leaf(proxymesh.BUYER, "bookbuyer.bookbuyer.cluster.local")
    return proxymesh.outbound_resources(15003, (cert, key), pki.ca_pem)


def test_translated_model() -> None:
    resources = _mesh_resources()
    proxy_config = assembly.assemble(resources)
    listener = proxy_config.listeners["outbound-listener"]
    assert listener.use_original_dst and not listener.inspect_tls
    chain = listener.filter_chains[0]
    assert chain.match.destination_port == 80
    assert [str(net) for net in chain.match.prefix_ranges] == ["10.0.0.5/32"]
    manager = chain.terminal
    assert isinstance(manager, model.HttpConnectionManager)
    assert manager.rds_name == "rds-outbound.80" and manager.websocket
    cluster = proxy_config.clusters[proxymesh.CLUSTER]
    assert cluster.kind == "EDS" and cluster.lb_policy == "ROUND_ROBIN"
    assert cluster.connect_timeout == 1.0
    assert cluster.tls is not None and cluster.tls.sni == proxymesh.SNI
    assert cluster.tls.san_matchers[0].san_type == "URI"
    assert proxy_config.endpoints_of(cluster) == (model.Endpoint("127.0.0.1", 15003),)
    route = proxy_config.route_configs["rds-outbound.80"].virtual_hosts[0].routes[0]
    assert route.action.timeout == 5.0 and route.match.path_kind == "regex"


def _error(resources: dict[str, dict[str, object]]) -> translate.ConfigError:
    with pytest.raises(translate.ConfigError) as caught:
        assembly.assemble(resources)
    return caught.value


def test_unsupported_cluster_field_is_named() -> None:
    resources = _mesh_resources()
    cluster = resources[wellknown.CLUSTER_TYPE][proxymesh.CLUSTER]
    assert isinstance(cluster, cluster_pb2.Cluster)
    cluster.health_checks.add(timeout=proxymesh.seconds(1))
    error = _error(resources)
    assert error.type_name == "Cluster" and error.resource_name == proxymesh.CLUSTER
    assert error.field_path == "health_checks"
    assert "supported in Cluster" in str(error) and "outlier_detection" in str(error)


def test_unsupported_nested_hcm_field_has_a_full_path() -> None:
    resources = _mesh_resources()
    listener = resources[wellknown.LISTENER_TYPE]["outbound-listener"]
    assert isinstance(listener, listener_pb2.Listener)
    manager = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    manager.normalize_path.value = True
    listener.filter_chains[0].filters[0].typed_config.Pack(manager)
    error = _error(resources)
    assert error.field_path == "filter_chains[0].filters[0].typed_config.normalize_path"


def test_unknown_http_filter_and_enum_values() -> None:
    resources = _mesh_resources()
    cluster = resources[wellknown.CLUSTER_TYPE][proxymesh.CLUSTER]
    assert isinstance(cluster, cluster_pb2.Cluster)
    cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
    error = _error(resources)
    assert error.field_path == "lb_policy" and "RING_HASH not supported" in error.message


def test_unknown_retry_condition() -> None:
    resources = _mesh_resources()
    routes = resources[wellknown.ROUTE_TYPE]["rds-outbound.80"]
    assert isinstance(routes, route_pb2.RouteConfiguration)
    routes.virtual_hosts[0].routes[0].route.retry_policy.retry_on = "5xx,refused-stream"
    error = _error(resources)
    assert error.type_name == "RouteConfiguration"
    assert error.field_path == "virtual_hosts[0].routes[0].route.retry_policy.retry_on"
    assert "refused-stream" in error.message


def test_route_to_a_missing_cluster_is_a_missing_reference() -> None:
    resources = _mesh_resources()
    del resources[wellknown.ENDPOINT_TYPE][proxymesh.CLUSTER]
    with pytest.raises(translate.MissingReference, match="load assignment"):
        assembly.assemble(resources)
    resources = _mesh_resources()
    routes = resources[wellknown.ROUTE_TYPE]["rds-outbound.80"]
    assert isinstance(routes, route_pb2.RouteConfiguration)
    routes.virtual_hosts[0].routes[0].route.weighted_clusters.clusters[0].name = "nope|80"
    with pytest.raises(translate.MissingReference, match=re.escape("cluster 'nope|80'")):
        assembly.assemble(resources)


def test_missing_secret_and_rds() -> None:
    resources = _mesh_resources()
    del resources[wellknown.SECRET_TYPE]["service-cert:bookbuyer/bookbuyer"]
    with pytest.raises(translate.MissingReference, match="secret"):
        assembly.assemble(resources)
    resources = _mesh_resources()
    resources[wellknown.ROUTE_TYPE] = {}
    with pytest.raises(translate.MissingReference, match="route configuration"):
        assembly.assemble(resources)


def test_route_details() -> None:
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(
            path="/exact",
            case_sensitive=wrappers_pb2.BoolValue(value=False),
            headers=[
                route_components_pb2.HeaderMatcher(name=":method", exact_match="GET"),
                route_components_pb2.HeaderMatcher(name="X-Present", present_match=True),
            ],
        ),
        route=route_components_pb2.RouteAction(
            cluster="c",
            prefix_rewrite="/new",
            retry_policy=route_components_pb2.RetryPolicy(
                retry_on="connect-failure,reset", per_try_timeout=proxymesh.seconds(0.5)
            ),
        ),
    )
    message = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[
            route_components_pb2.VirtualHost(name="v", domains=["A.example", "*"], routes=[route])
        ],
    )
    translated = rds.translate(message)
    vhost = translated.virtual_hosts[0]
    assert vhost.domains == ("a.example", "*")
    action = vhost.routes[0].action
    assert action.timeout == rds.DEFAULT_ROUTE_TIMEOUT  # Envoy's 15 s when unset
    assert action.retry is not None and action.retry.num_retries == 1
    assert action.retry.retry_on == {"connect-failure", "reset"}
    assert action.retry.per_try_timeout == 0.5 and action.prefix_rewrite == "/new"
    headers = vhost.routes[0].match.headers
    assert headers[0].name == ":method" and headers[1].name == "x-present"


def test_invalid_regex_and_unknown_types() -> None:
    message = route_pb2.RouteConfiguration(name="r")
    vhost = message.virtual_hosts.add(name="v", domains=["*"])
    route = vhost.routes.add(route=route_components_pb2.RouteAction(cluster="c"))
    route.match.safe_regex.regex = "("
    with pytest.raises(translate.ConfigError, match="invalid regex"):
        rds.translate(message)
    with pytest.raises(translate.ConfigError, match="resource type not supported"):
        assembly.translate("type.googleapis.com/envoy.config.core.v3.Node", message)


def test_endpoints_skip_unhealthy_hosts() -> None:
    assignment = proxymesh.load_assignment("c", [("10.0.0.1", 80), ("10.0.0.2", 80)])
    assignment.endpoints[0].lb_endpoints[1].health_status = health_check_pb2.UNHEALTHY
    translated = eds.translate(assignment)
    assert translated.endpoints == (model.Endpoint("10.0.0.1", 80),)


def test_secret_needs_a_kind() -> None:
    with pytest.raises(translate.ConfigError, match="a secret type is required"):
        sds.translate(secret_pb2.Secret(name="empty"))
