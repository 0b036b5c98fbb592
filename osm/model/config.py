"""OSM's MeshConfig (config.openservicemesh.io/v1alpha2) with OSM's defaults.

Every field is optional; what is left out takes the value OSM's Helm chart would
install, so an empty MeshConfig (or none at all) describes OSM's default mesh:
permissive traffic mode, egress on, 24h service certificates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from osm.base import wellknown
from osm.model.fields import Fields, described
from osm.model.meta import ObjectMeta, Resource

# The one MeshConfig the control plane reads, as OSM names it.
TLS_VERSIONS = ("TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3")
LOCAL_PROXY_MODES = ("Localhost", "PodIP")
LOG_LEVELS = (
    "trace",
    "debug",
    "info",
    "warn",
    "warning",
    "error",
    "critical",
    "off",
    "fatal",
    "panic",
    "disabled",
)


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    enable_privileged_init_container: bool = False
    log_level: str = "error"
    max_data_plane_connections: int = 0
    config_resync_interval: float = 0.0
    tls_min_protocol_version: str = "TLSv1_2"
    tls_max_protocol_version: str = "TLSv1_3"
    cipher_suites: tuple[str, ...] = ()
    ecdh_curves: tuple[str, ...] = ()
    local_proxy_mode: str = "Localhost"


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    enable_egress: bool = True
    enable_permissive_traffic_policy_mode: bool = True
    outbound_port_exclusion_list: tuple[int, ...] = ()
    inbound_port_exclusion_list: tuple[int, ...] = ()
    outbound_ip_range_exclusion_list: tuple[str, ...] = ()
    outbound_ip_range_inclusion_list: tuple[str, ...] = ()
    network_interface_exclusion_list: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Zipkin tracing of every sidecar (OSM's ``spec.observability.tracing``). An empty
    ``address`` means OSM's default collector, `tracing_host`. ``sampling_percentage``
    is ours: the share of requests that start a sampled trace (Envoy's HCM
    ``random_sampling``)."""

    enable: bool = False
    address: str = ""
    port: int = wellknown.ZIPKIN_PORT
    endpoint: str = wellknown.ZIPKIN_SPANS_PATH
    sampling_percentage: float = 100.0


def tracing_host(tracing: TracingSettings, osm_namespace: str) -> str:
    """The collector's host: the ``address`` given, else OSM's default, the ``jaeger``
    Service of the control plane's namespace (where local mode runs the trace store)."""
    return tracing.address or f"{wellknown.TRACING_SERVICE}.{osm_namespace}.svc.cluster.local"


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    osm_log_level: str = "info"
    enable_debug_server: bool = False
    tracing: TracingSettings = field(default_factory=TracingSettings)


@dataclass(frozen=True, slots=True)
class CertificateSettings:
    service_cert_validity_duration: float = 24 * 3600.0
    cert_key_bit_size: int = 2048


@dataclass(frozen=True, slots=True)
class FeatureFlags:
    enable_wasm_stats: bool = True
    enable_egress_policy: bool = True
    enable_snapshot_cache_mode: bool = False
    enable_async_proxy_service_mapping: bool = False
    enable_ingress_backend_policy: bool = True
    enable_envoy_active_health_checks: bool = False
    enable_retry_policy: bool = False
    enable_mesh_root_certificate: bool = False

    def by_name(self) -> dict[str, bool]:
        """Each flag under its name in MeshConfig's ``spec.featureFlags``."""
        return {
            "enableWASMStats": self.enable_wasm_stats,
            "enableEgressPolicy": self.enable_egress_policy,
            "enableSnapshotCacheMode": self.enable_snapshot_cache_mode,
            "enableAsyncProxyServiceMapping": self.enable_async_proxy_service_mapping,
            "enableIngressBackendPolicy": self.enable_ingress_backend_policy,
            "enableEnvoyActiveHealthChecks": self.enable_envoy_active_health_checks,
            "enableRetryPolicy": self.enable_retry_policy,
            "enableMeshRootCertificate": self.enable_mesh_root_certificate,
        }


@dataclass(frozen=True, slots=True)
class MeshConfig(Resource):
    KIND = "MeshConfig"
    sidecar: SidecarSettings = field(default_factory=SidecarSettings)
    traffic: TrafficSettings = field(default_factory=TrafficSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    certificate: CertificateSettings = field(default_factory=CertificateSettings)
    feature_flags: FeatureFlags = field(default_factory=FeatureFlags)

    @property
    def permissive(self) -> bool:
        return self.traffic.enable_permissive_traffic_policy_mode


def parse_mesh_config(doc: Fields, base: Resource) -> MeshConfig:
    spec = doc.object("spec")
    s = spec.object("sidecar")
    defaults = SidecarSettings()
    sidecar = SidecarSettings(
        enable_privileged_init_container=s.boolean("enablePrivilegedInitContainer"),
        log_level=s.string("logLevel", default=defaults.log_level, choices=LOG_LEVELS),
        max_data_plane_connections=s.integer("maxDataPlaneConnections", minimum=0),
        config_resync_interval=s.duration("configResyncInterval", default=0.0),
        tls_min_protocol_version=s.string(
            "tlsMinProtocolVersion", default=defaults.tls_min_protocol_version, choices=TLS_VERSIONS
        ),
        tls_max_protocol_version=s.string(
            "tlsMaxProtocolVersion", default=defaults.tls_max_protocol_version, choices=TLS_VERSIONS
        ),
        cipher_suites=s.str_list("cipherSuites"),
        ecdh_curves=s.str_list("ecdhCurves"),
        local_proxy_mode=s.string("localProxyMode", default="Localhost", choices=LOCAL_PROXY_MODES),
    )
    order = {v: i for i, v in enumerate(TLS_VERSIONS)}
    if (
        sidecar.tls_min_protocol_version != "TLS_AUTO"
        and sidecar.tls_max_protocol_version != "TLS_AUTO"
        and order[sidecar.tls_min_protocol_version] > order[sidecar.tls_max_protocol_version]
    ):
        s.error("tlsMinProtocolVersion", "must not be above tlsMaxProtocolVersion")
    # Image and resource settings only matter in Kubernetes mode; accept them as they are.
    s.finish(ignored=("envoyImage", "envoyWindowsImage", "initContainerImage", "resources"))

    t = spec.object("traffic")
    traffic = TrafficSettings(
        enable_egress=t.boolean("enableEgress", default=True),
        enable_permissive_traffic_policy_mode=t.boolean(
            "enablePermissiveTrafficPolicyMode", default=True
        ),
        outbound_port_exclusion_list=t.int_list(
            "outboundPortExclusionList", minimum=1, maximum=65535
        ),
        inbound_port_exclusion_list=t.int_list(
            "inboundPortExclusionList", minimum=1, maximum=65535
        ),
        outbound_ip_range_exclusion_list=t.cidr_list("outboundIPRangeExclusionList"),
        outbound_ip_range_inclusion_list=t.cidr_list("outboundIPRangeInclusionList"),
        network_interface_exclusion_list=t.str_list("networkInterfaceExclusionList"),
    )
    t.finish(ignored=("inboundExternalAuthorization",))

    o = spec.object("observability")
    tr = o.object("tracing")
    tracing = TracingSettings(
        enable=tr.boolean("enable"),
        address=tr.string("address"),
        port=tr.integer("port", default=wellknown.ZIPKIN_PORT, minimum=1, maximum=65535),
        endpoint=tr.string("endpoint", default=wellknown.ZIPKIN_SPANS_PATH)
        or wellknown.ZIPKIN_SPANS_PATH,
        sampling_percentage=_percentage(tr, "samplingPercentage", 100.0),
    )
    if tracing.endpoint and not tracing.endpoint.startswith("/"):
        tr.error("endpoint", f'"{tracing.endpoint}" must be a path starting with "/"')
    tr.finish()
    observability = ObservabilitySettings(
        osm_log_level=o.string("osmLogLevel", default="info", choices=LOG_LEVELS),
        enable_debug_server=o.boolean("enableDebugServer"),
        tracing=tracing,
    )
    o.finish()

    c = spec.object("certificate")
    validity = c.duration("serviceCertValidityDuration", default=24 * 3600.0)
    if c.has("serviceCertValidityDuration") and validity < 60:
        c.error(
            "serviceCertValidityDuration",
            "must be at least 1m; certificates are renewed at half of their lifetime",
        )
    certificate = CertificateSettings(
        service_cert_validity_duration=validity,
        cert_key_bit_size=c.integer("certKeyBitSize", default=2048, minimum=2048, maximum=4096),
    )
    c.finish(ignored=("ingressGateway",))

    f = spec.object("featureFlags")
    flags = FeatureFlags(
        enable_wasm_stats=f.boolean("enableWASMStats", default=True),
        enable_egress_policy=f.boolean("enableEgressPolicy", default=True),
        enable_snapshot_cache_mode=f.boolean("enableSnapshotCacheMode"),
        enable_async_proxy_service_mapping=f.boolean("enableAsyncProxyServiceMapping"),
        enable_ingress_backend_policy=f.boolean("enableIngressBackendPolicy", default=True),
        enable_envoy_active_health_checks=f.boolean("enableEnvoyActiveHealthChecks"),
        enable_retry_policy=f.boolean("enableRetryPolicy"),
        enable_mesh_root_certificate=f.boolean("enableMeshRootCertificate"),
    )
    f.finish()
    spec.finish()
    return MeshConfig(
        base.api_version,
        base.metadata,
        base.manifest,
        sidecar=sidecar,
        traffic=traffic,
        observability=observability,
        certificate=certificate,
        feature_flags=flags,
    )


def _percentage(fields: Fields, key: str, default: float) -> float:
    """A number from 0 to 100 (an integer or a decimal)."""
    value = fields.raw(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        fields.error(key, f"must be a number from 0 to 100, not {described(value)}")
        return default
    if not 0 <= value <= 100:
        fields.error(key, f"{value} is out of range; expected a number from 0 to 100")
        return default
    return float(value)


API_VERSION = "config.openservicemesh.io/v1alpha2"


def default_mesh_config(namespace: str = wellknown.CONTROL_PLANE_NAMESPACE) -> MeshConfig:
    """The MeshConfig in force when none has been applied: OSM's defaults."""
    return MeshConfig(API_VERSION, ObjectMeta(wellknown.MESH_CONFIG_NAME, namespace))


def default_manifest(namespace: str = wellknown.CONTROL_PLANE_NAMESPACE) -> dict[str, Any]:
    """The MeshConfig ``osm install`` creates (OSM's ``preset-mesh-config``), every field
    written out with the defaults above, so a user reading it sees what is in force.
    It parses to `default_mesh_config` (a unit test checks it). Images and resources are
    left out: the injector chooses those."""
    sidecar = SidecarSettings()
    traffic = TrafficSettings()
    observability = ObservabilitySettings()
    certificate = CertificateSettings()
    flags = FeatureFlags()
    return {
        "apiVersion": API_VERSION,
        "kind": MeshConfig.KIND,
        "metadata": {"name": wellknown.MESH_CONFIG_NAME, "namespace": namespace},
        "spec": {
            "sidecar": {
                "enablePrivilegedInitContainer": sidecar.enable_privileged_init_container,
                "logLevel": sidecar.log_level,
                "maxDataPlaneConnections": sidecar.max_data_plane_connections,
                "configResyncInterval": go_duration(sidecar.config_resync_interval),
                "tlsMinProtocolVersion": sidecar.tls_min_protocol_version,
                "tlsMaxProtocolVersion": sidecar.tls_max_protocol_version,
                "cipherSuites": list(sidecar.cipher_suites),
                "ecdhCurves": list(sidecar.ecdh_curves),
                "localProxyMode": sidecar.local_proxy_mode,
            },
            "traffic": {
                "enableEgress": traffic.enable_egress,
                "enablePermissiveTrafficPolicyMode": (
                    traffic.enable_permissive_traffic_policy_mode
                ),
                "outboundPortExclusionList": list(traffic.outbound_port_exclusion_list),
                "inboundPortExclusionList": list(traffic.inbound_port_exclusion_list),
                "outboundIPRangeExclusionList": list(traffic.outbound_ip_range_exclusion_list),
                "outboundIPRangeInclusionList": list(traffic.outbound_ip_range_inclusion_list),
                "networkInterfaceExclusionList": list(traffic.network_interface_exclusion_list),
            },
            "observability": {
                "osmLogLevel": observability.osm_log_level,
                "enableDebugServer": observability.enable_debug_server,
                "tracing": {
                    "enable": observability.tracing.enable,
                    "port": observability.tracing.port,
                    "endpoint": observability.tracing.endpoint,
                    "samplingPercentage": observability.tracing.sampling_percentage,
                },
            },
            "certificate": {
                "serviceCertValidityDuration": go_duration(
                    certificate.service_cert_validity_duration
                ),
                "certKeyBitSize": certificate.cert_key_bit_size,
            },
            "featureFlags": flags.by_name(),
        },
    }


def go_duration(seconds: float) -> str:
    """Whole seconds as a Go duration string, in the short form OSM's chart writes:
    ``24h``, ``1h30m``, ``1m30s``, ``0s``."""
    rest = round(seconds)
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
