"""Valid manifests, kind by kind: what each parses to, with every default spelled out.

Each row is (manifest, the part of the typed object looked at, its expected value). The
expected values are written out in full rather than taken from the dataclasses' defaults,
so this table is the spec of what a left-out field means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from osm.model import config, core, kinds, smi
from osm.model.meta import ObjectMeta
from tests.unit.model import model_examples as ex

Getter = Callable[[Any], object]


def row(manifest: str, get: Getter, expected: object, id: str) -> Any:
    return pytest.param(manifest, get, expected, id=id)


ROWS = [
    # -- Namespace and ServiceAccount --------------------------------------------------
    row(ex.NAMESPACE, lambda r: r.metadata.namespace, "", "a namespace has no namespace"),
    row(ex.NAMESPACE, lambda r: r.sidecar_injection, True, "a namespace can enable injection"),
    row(
        ex.SERVICE_ACCOUNT,
        lambda r: r.metadata,
        ObjectMeta(name="web", namespace="shop"),
        "a service account is just its name and namespace",
    ),
    row(
        ex.SERVICE_ACCOUNT.replace(", namespace: shop", ""),
        lambda r: r.namespace,
        "default",
        "a namespaced object without a namespace is in default",
    ),
    # -- Service -----------------------------------------------------------------------
    row(
        ex.SERVICE_MINIMAL,
        lambda r: r.ports,
        (
            core.ServicePort(
                port=8080, target_port=8080, name="", protocol="TCP", app_protocol="http"
            ),
        ),
        "a service port defaults to TCP, appProtocol http and targetPort = port",
    ),
    row(
        ex.SERVICE_MINIMAL,
        lambda r: (r.type, r.cluster_ip, r.headless, dict(r.selector)),
        ("ClusterIP", "", False, {"app": "web"}),
        "a service defaults to type ClusterIP",
    ),
    row(
        ex.SERVICE_FULL,
        lambda r: r.ports,
        (
            core.ServicePort(80, "http-alt", "http", "TCP", "http"),
            core.ServicePort(9090, 9091, "metrics", "TCP", "tcp"),
            core.ServicePort(53, 53, "dns", "UDP", "tcp"),
        ),
        "a targetPort may be a port name or a number written as a string",
    ),
    row(
        ex.SERVICE_FULL,
        lambda r: (r.type, r.cluster_ip, r.port_named("metrics"), r.port_named(53).name),
        ("NodePort", "10.96.0.10", core.ServicePort(9090, 9091, "metrics", "TCP", "tcp"), "dns"),
        "a service port is found by name or by number",
    ),
    row(
        "apiVersion: v1\nkind: Service\nmetadata: {name: db}\n"
        "spec: {clusterIP: None, selector: {app: db}}",
        lambda r: (r.headless, r.ports),
        (True, ()),
        "a headless service may have no ports",
    ),
    row(
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\n"
        "spec: {type: ExternalName, externalName: example.com}",
        lambda r: r.type,
        "ExternalName",
        "an ExternalName service needs no ports and keeps unmodelled fields",
    ),
    # -- Deployment --------------------------------------------------------------------
    row(
        ex.DEPLOYMENT_MINIMAL,
        lambda r: (r.replicas, r.template.spec.service_account_name),
        (1, "default"),
        "a deployment defaults to 1 replica and the default service account",
    ),
    row(
        ex.DEPLOYMENT_MINIMAL,
        lambda r: (dict(r.selector), dict(r.template.labels)),
        ({"app": "web"}, {"app": "web", "version": "v1"}),
        "template labels may be a superset of the selector",
    ),
    row(
        ex.DEPLOYMENT_MINIMAL,
        lambda r: r.template.spec.containers,
        (core.Container(name="web", image="shop/web:1.0"),),
        "a container needs only a name",
    ),
    row(
        ex.DEPLOYMENT_FULL,
        lambda r: (r.replicas, r.template.spec.service_account_name, dict(r.template.annotations)),
        (3, "web", {"openservicemesh.io/sidecar-injection": "disabled"}),
        "a deployment reads replicas, service account and pod annotations",
    ),
    row(
        ex.DEPLOYMENT_FULL,
        lambda r: r.template.spec.containers[0],
        core.Container(
            name="web",
            command=("python3", "-m", "web"),
            args=("--port", "8080"),
            env=(core.EnvVar("PORT", "8080"), core.EnvVar("EMPTY", "")),
            ports=(core.ContainerPort(8080, "http", "TCP"),),
            readiness_probe=core.Probe(
                kind="httpGet", port="http", path="/ready", period_seconds=2
            ),
        ),
        "an HTTP readiness probe defaults to path / and scheme HTTP",
    ),
    row(
        ex.DEPLOYMENT_FULL,
        lambda r: [c.readiness_probe for c in r.template.spec.containers[1:]],
        [
            core.Probe(kind="tcpSocket", port=9000, path="/", scheme="HTTP"),
            core.Probe(kind="exec", command=("cat", "/tmp/ready"), failure_threshold=5),
        ],
        "tcpSocket and exec probes are read too, with Kubernetes' timing defaults",
    ),
    row(
        ex.DEPLOYMENT_MINIMAL.replace("spec:\n  selector", "spec:\n  replicas: 0\n  selector"),
        lambda r: r.replicas,
        0,
        "a deployment may be scaled to zero",
    ),
    # -- Pod and Endpoints -------------------------------------------------------------
    row(
        ex.POD,
        lambda r: (r.phase, r.pod_ip, r.ready, r.spec.service_account_name),
        ("Running", "10.1.0.7", True, "web"),
        "a pod reads its phase, IP and Ready condition from status",
    ),
    row(
        ex.POD.replace('{type: Ready, status: "True"}', '{type: Ready, status: "False"}'),
        lambda r: r.ready,
        False,
        "a pod whose Ready condition is False is not ready",
    ),
    row(
        ex.ENDPOINTS,
        lambda r: r.subsets,
        (
            core.EndpointSubset(
                addresses=(
                    core.EndpointAddress("10.1.0.7", True, "Pod", "web-1", "shop"),
                    core.EndpointAddress("fd00::8", False),
                ),
                ports=(core.EndpointPort(8080, "http", "TCP", "http"),),
            ),
        ),
        "endpoints keep ready and not-ready addresses apart",
    ),
    # -- TrafficTarget -----------------------------------------------------------------
    row(
        ex.TRAFFIC_TARGET,
        lambda r: r.destination,
        smi.IdentityRef("shop", "web"),
        "a traffic target's destination defaults to the target's own namespace",
    ),
    row(
        ex.TRAFFIC_TARGET,
        lambda r: r.sources,
        (smi.IdentityRef("shoppers", "client"), smi.IdentityRef("shop", "admin")),
        "a source without a namespace is in the traffic target's namespace",
    ),
    row(
        ex.TRAFFIC_TARGET,
        lambda r: r.rules,
        (
            smi.TrafficTargetRule("HTTPRouteGroup", "web-api", ("read-only",)),
            smi.TrafficTargetRule("HTTPRouteGroup", "web-api", ()),
            smi.TrafficTargetRule("TCPRoute", "web-port", ()),
        ),
        "a rule without matches allows every match of its group",
    ),
    # -- HTTPRouteGroup ----------------------------------------------------------------
    row(
        ex.HTTP_ROUTE_GROUP_MAP_HEADERS,
        lambda r: r.matches,
        (
            smi.HTTPMatch("read-only", "/v1/items(/.*)?", ("GET", "HEAD"), ()),
            smi.HTTPMatch("beta", "", (), (("x-beta", "true"), ("user-agent", ".*Firefox.*"))),
        ),
        "headers as a map (the prose's encoding) are lower-cased name/regex pairs",
    ),
    row(
        ex.HTTP_ROUTE_GROUP_LIST_HEADERS,
        lambda r: r.matches,
        (
            smi.HTTPMatch("read-only", "/v1/items(/.*)?", ("GET", "HEAD"), ()),
            smi.HTTPMatch("beta", "", (), (("x-beta", "true"), ("user-agent", ".*Firefox.*"))),
        ),
        "headers as a list of single-key maps (the CRD's encoding) give the same value",
    ),
    row(
        ex.HTTP_ROUTE_GROUP_MAP_HEADERS,
        lambda r: (r.matches[1].any_method, r.matches[0].any_method, r.match("beta").name),
        (True, False, "beta"),
        "a match without methods allows any method",
    ),
    row(
        ex.HTTP_ROUTE_GROUP_MAP_HEADERS.replace("GET, HEAD", '"*"'),
        lambda r: r.matches[0].any_method,
        True,
        "the method * allows any method",
    ),
    # -- TCPRoute ----------------------------------------------------------------------
    row(
        ex.TCP_ROUTE_ALL_PORTS,
        lambda r: (r.match_name, r.ports),
        ("", ()),
        "a tcp route with ports: [] means every port",
    ),
    row(
        ex.TCP_ROUTE_PORTS,
        lambda r: (r.match_name, r.ports),
        ("web", (8080, 9090)),
        "tcp route ports are sorted and de-duplicated",
    ),
    # -- TrafficSplit ------------------------------------------------------------------
    row(
        ex.TRAFFIC_SPLIT_V1ALPHA2,
        lambda r: (r.api_version, r.service, r.backends, r.matches),
        (
            "split.smi-spec.io/v1alpha2",
            "web",
            (smi.SplitBackend("web-v1", 90), smi.SplitBackend("web-v2", 10)),
            (),
        ),
        "a v1alpha2 traffic split has an apex service and weighted backends",
    ),
    row(
        ex.TRAFFIC_SPLIT_V1ALPHA4,
        lambda r: (r.api_version, r.service, r.backends, r.matches),
        (
            "split.smi-spec.io/v1alpha4",
            "web.shop.svc.cluster.local",
            (smi.SplitBackend("web-v1", 0), smi.SplitBackend("web-v2", 1)),
            ("web-api",),
        ),
        "a v1alpha4 traffic split may name route groups, an FQDN apex and zero weights",
    ),
    # -- MeshConfig --------------------------------------------------------------------
    row(
        ex.MESH_CONFIG_EMPTY,
        lambda r: r.sidecar,
        config.SidecarSettings(
            enable_privileged_init_container=False,
            log_level="error",
            max_data_plane_connections=0,
            config_resync_interval=0.0,
            tls_min_protocol_version="TLSv1_2",
            tls_max_protocol_version="TLSv1_3",
            cipher_suites=(),
            ecdh_curves=(),
            local_proxy_mode="Localhost",
        ),
        "an empty mesh config has OSM's sidecar defaults (TLS 1.2 to 1.3, Localhost)",
    ),
    row(
        ex.MESH_CONFIG_EMPTY,
        lambda r: (r.traffic, r.permissive),
        (
            config.TrafficSettings(
                enable_egress=True,
                enable_permissive_traffic_policy_mode=True,
                outbound_port_exclusion_list=(),
                inbound_port_exclusion_list=(),
                outbound_ip_range_exclusion_list=(),
                outbound_ip_range_inclusion_list=(),
                network_interface_exclusion_list=(),
            ),
            True,
        ),
        "an empty mesh config is permissive with egress on",
    ),
    row(
        ex.MESH_CONFIG_EMPTY,
        lambda r: r.observability,
        config.ObservabilitySettings(
            osm_log_level="info",
            enable_debug_server=False,
            tracing=config.TracingSettings(
                enable=False, address="", port=9411, endpoint="/api/v2/spans"
            ),
        ),
        "an empty mesh config logs at info with tracing off (Zipkin's port and path)",
    ),
    row(
        ex.MESH_CONFIG_EMPTY,
        lambda r: (
            r.observability.tracing.sampling_percentage,
            config.tracing_host(r.observability.tracing, "osm-system"),
        ),
        (100.0, "jaeger.osm-system.svc.cluster.local"),
        "by default tracing samples every request, for the jaeger of the control plane's namespace",
    ),
    row(
        ex.MESH_CONFIG_EMPTY,
        lambda r: r.certificate,
        config.CertificateSettings(service_cert_validity_duration=86400.0, cert_key_bit_size=2048),
        "an empty mesh config issues 24h certificates with 2048-bit keys",
    ),
    row(
        ex.MESH_CONFIG_EMPTY,
        lambda r: r.feature_flags,
        config.FeatureFlags(
            enable_wasm_stats=True,
            enable_egress_policy=True,
            enable_snapshot_cache_mode=False,
            enable_async_proxy_service_mapping=False,
            enable_ingress_backend_policy=True,
            enable_envoy_active_health_checks=False,
            enable_retry_policy=False,
            enable_mesh_root_certificate=False,
        ),
        "an empty mesh config has OSM's feature flags",
    ),
    row(
        ex.MESH_CONFIG_EMPTY,
        lambda r: r == config.default_mesh_config(),
        True,
        "an empty mesh config equals the default mesh config",
    ),
    row(
        ex.MESH_CONFIG_FULL,
        lambda r: r.sidecar,
        config.SidecarSettings(
            enable_privileged_init_container=True,
            log_level="debug",
            max_data_plane_connections=100,
            config_resync_interval=90.0,
            tls_min_protocol_version="TLSv1_3",
            tls_max_protocol_version="TLSv1_3",
            cipher_suites=("ECDHE-RSA-AES128-GCM-SHA256",),
            ecdh_curves=("X25519",),
            local_proxy_mode="PodIP",
        ),
        "a full mesh config sets every sidecar field and passes images through",
    ),
    row(
        ex.MESH_CONFIG_FULL,
        lambda r: (r.traffic, r.permissive),
        (
            config.TrafficSettings(
                enable_egress=False,
                enable_permissive_traffic_policy_mode=False,
                outbound_port_exclusion_list=(6379,),
                inbound_port_exclusion_list=(9999,),
                outbound_ip_range_exclusion_list=("10.0.0.0/8", "fd00::/8"),
                outbound_ip_range_inclusion_list=("192.168.0.1/32",),
                network_interface_exclusion_list=("eth1",),
            ),
            False,
        ),
        "CIDRs are normalised: host bits cleared, a bare address becomes a /32",
    ),
    row(
        ex.MESH_CONFIG_FULL,
        lambda r: (r.observability, r.certificate),
        (
            config.ObservabilitySettings(
                "warn",
                True,
                config.TracingSettings(True, "jaeger.tracing", 14268, "/api/traces", 0.5),
            ),
            config.CertificateSettings(5400.0, 4096),
        ),
        "durations such as 1h30m are read in seconds",
    ),
    row(
        ex.MESH_CONFIG_FULL,
        lambda r: r.feature_flags,
        config.FeatureFlags(False, False, True, True, False, True, True, True),
        "a full mesh config flips every feature flag",
    ),
]


@pytest.mark.parametrize(("manifest", "get", "expected"), ROWS)
def test_a_valid_manifest_parses_to(manifest: str, get: Getter, expected: object) -> None:
    assert get(ex.parse_valid(manifest)) == expected


@pytest.mark.parametrize(
    ("manifest", "cls"),
    [
        pytest.param(ex.NAMESPACE, core.Namespace, id="Namespace"),
        pytest.param(ex.SERVICE_ACCOUNT, core.ServiceAccount, id="ServiceAccount"),
        pytest.param(ex.SERVICE_MINIMAL, core.Service, id="Service"),
        pytest.param(ex.DEPLOYMENT_MINIMAL, core.Deployment, id="Deployment"),
        pytest.param(ex.POD, core.Pod, id="Pod"),
        pytest.param(ex.ENDPOINTS, core.Endpoints, id="Endpoints"),
        pytest.param(ex.SECRET, core.Secret, id="Secret"),
        pytest.param(ex.CONFIG_MAP, core.ConfigMap, id="ConfigMap"),
        pytest.param(ex.TRAFFIC_TARGET, smi.TrafficTarget, id="TrafficTarget"),
        pytest.param(ex.HTTP_ROUTE_GROUP_MAP_HEADERS, smi.HTTPRouteGroup, id="HTTPRouteGroup"),
        pytest.param(ex.TCP_ROUTE_PORTS, smi.TCPRoute, id="TCPRoute"),
        pytest.param(ex.TRAFFIC_SPLIT_V1ALPHA2, smi.TrafficSplit, id="TrafficSplit"),
        pytest.param(ex.MESH_CONFIG_EMPTY, config.MeshConfig, id="MeshConfig"),
    ],
)
def test_each_kind_parses_to_its_class(manifest: str, cls: type) -> None:
    resource = ex.parse_valid(manifest)
    assert type(resource) is cls
    assert resource.kind == cls.KIND


def test_every_kind_has_its_class() -> None:
    assert {info.kind for info in kinds.KINDS} == set(kinds.CLASSES)


def test_the_kept_manifest_makes_the_namespace_explicit_and_is_a_copy() -> None:
    resource = ex.parse_valid(ex.SERVICE_ACCOUNT.replace(", namespace: shop", ""))
    written = resource.to_dict()
    assert written["metadata"] == {"name": "web", "namespace": "default"}
    written["metadata"]["name"] = "changed"
    assert resource.to_dict()["metadata"]["name"] == "web"


def test_a_default_namespace_can_be_chosen_by_the_caller() -> None:
    resource, problems = kinds.parse(
        ex.load(ex.SERVICE_ACCOUNT.replace(", namespace: shop", "")), default_namespace="team"
    )
    assert problems == []
    assert resource is not None and resource.namespace == "team"


def test_unknown_fields_of_core_kinds_pass_through() -> None:
    manifest = ex.load(ex.DEPLOYMENT_MINIMAL)
    manifest["spec"]["strategy"] = {"type": "Recreate"}
    manifest["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {}}
    resource, problems = kinds.parse(manifest)
    assert problems == []
    assert resource is not None and resource.to_dict()["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("ts", "TrafficSplit", id="a short name finds its kind"),
        pytest.param("TrafficSplit", "TrafficSplit", id="the kind's own name finds it"),
        pytest.param("httproutegroups", "HTTPRouteGroup", id="the plural finds its kind"),
        pytest.param("tcproutes.specs.smi-spec.io", "TCPRoute", id="the full name finds it"),
        pytest.param("svc", "Service", id="core kinds have short names too"),
    ],
)
def test_kinds_lookup(name: str, expected: str) -> None:
    assert kinds.lookup(name).kind == expected


def test_kinds_lookup_of_an_unknown_name_lists_what_is_valid() -> None:
    with pytest.raises(KeyError, match='did you mean "service"'):
        kinds.lookup("servce")
