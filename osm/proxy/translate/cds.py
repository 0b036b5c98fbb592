"""CDS: a Cluster -> `model.Cluster`: discovery type, load balancing, circuit breakers,
outlier detection, upstream TLS and HTTP/1.1 protocol options.

The one idea: a cluster is accepted only as far as the sidecar can honour it: outlier
detection enforced fully or not at all, TLS that verifies the upstream, HTTP/1.1 upstreams.
What can never apply (thresholds of the HIGH priority, which no route uses) is read and
left out of the model.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from osm.base import wellknown
from osm.proxy import model
from osm.proxy.translate import common, eds
from osm.proxy.translate.walker import Walker

_PREFIX = wellknown.TYPE_PREFIX
_UPSTREAM_TLS_TYPE = _PREFIX + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name
_HTTP_PROTOCOL_OPTIONS_TYPE = (
    _PREFIX + http_protocol_options_pb2.HttpProtocolOptions.DESCRIPTOR.full_name
)

DEFAULT_CONNECT_TIMEOUT = 5.0


def _upstream_tls(walker: Walker, socket: Any, path: str) -> model.UpstreamTls:
    walker.check(socket, path, ("name", "typed_config"))
    where = f"{path}.typed_config"
    context: tls_pb2.UpstreamTlsContext = walker.unpack(
        socket.typed_config, where, {_UPSTREAM_TLS_TYPE: tls_pb2.UpstreamTlsContext}
    )
    walker.check(context, where, ("common_tls_context", "sni"))
    cert, validation, default_context = common.tls_context(
        walker, context.common_tls_context, f"{where}.common_tls_context"
    )
    if validation is None:
        raise walker.fail(
            f"{where}.common_tls_context",
            "a validation context is required (the sidecar never trusts an unverified upstream)",
        )
    san = (
        common.san_matchers(
            walker, default_context, f"{where}.common_tls_context.default_validation_context"
        )
        if default_context is not None
        else ()
    )
    low, high = common.tls_versions(
        walker, context.common_tls_context, f"{where}.common_tls_context"
    )
    alpn = tuple(context.common_tls_context.alpn_protocols)
    return model.UpstreamTls(context.sni, cert, validation, alpn, san, low, high)


_CLUSTER_KINDS = ("EDS", "STATIC", "STRICT_DNS", "LOGICAL_DNS", "ORIGINAL_DST")


def translate(message: cluster_pb2.Cluster) -> model.Cluster:
    """Cluster -> Cluster model; raises ConfigError."""
    walker = Walker("Cluster", message.name)
    walker.check(
        message,
        "",
        (
            "name",
            "alt_stat_name",
            "type",
            "eds_cluster_config",
            "connect_timeout",
            "lb_policy",
            "load_assignment",
            "circuit_breakers",
            "outlier_detection",
            "transport_socket",
            "typed_extension_protocol_options",
            "max_requests_per_connection",
            "dns_lookup_family",
        ),
    )
    kind = cluster_pb2.Cluster.DiscoveryType.Name(message.type)
    if kind not in _CLUSTER_KINDS:
        raise walker.fail("type", f"{kind} not supported ({', '.join(_CLUSTER_KINDS)})")
    lb = cluster_pb2.Cluster.LbPolicy.Name(message.lb_policy)
    if kind == "ORIGINAL_DST":
        if lb != "CLUSTER_PROVIDED":
            raise walker.fail("lb_policy", "ORIGINAL_DST clusters need CLUSTER_PROVIDED")
    elif lb not in ("ROUND_ROBIN", "LEAST_REQUEST"):
        raise walker.fail("lb_policy", f"{lb} not supported (ROUND_ROBIN, LEAST_REQUEST)")
    eds_name = ""
    if message.HasField("eds_cluster_config"):
        walker.check(
            message.eds_cluster_config, "eds_cluster_config", ("eds_config", "service_name")
        )
        walker.config_source(message.eds_cluster_config.eds_config, "eds_cluster_config.eds_config")
        eds_name = message.eds_cluster_config.service_name
    endpoints: tuple[model.Endpoint, ...] = ()
    if message.HasField("load_assignment"):
        if kind == "EDS":
            raise walker.fail("load_assignment", "EDS clusters take endpoints from EDS")
        endpoints = eds.endpoints(walker, message.load_assignment, "load_assignment")
    elif kind in ("STATIC", "STRICT_DNS", "LOGICAL_DNS"):
        raise walker.fail("load_assignment", f"{kind} clusters need a load_assignment")
    breakers = model.CircuitBreakers()
    if message.HasField("circuit_breakers"):
        walker.check(message.circuit_breakers, "circuit_breakers", ("thresholds",))
        for index, threshold in enumerate(message.circuit_breakers.thresholds):
            where = f"circuit_breakers.thresholds[{index}]"
            walker.check(
                threshold,
                where,
                (
                    "priority",
                    "max_connections",
                    "max_pending_requests",
                    "max_requests",
                    "max_retries",
                    "track_remaining",  # remaining-capacity gauges only
                ),
            )
            if threshold.priority != 0:
                continue  # HIGH priority routes are not emitted; its thresholds never apply.

            def limit(name: str, default: int, threshold: Any = threshold) -> int:
                return int(getattr(threshold, name).value) if threshold.HasField(name) else default

            breakers = model.CircuitBreakers(
                limit("max_connections", 1024),
                limit("max_pending_requests", 1024),
                limit("max_requests", 1024),
                limit("max_retries", 3),
            )
    outlier: model.OutlierDetection | None = None
    if message.HasField("outlier_detection"):
        od = message.outlier_detection
        walker.check(
            od,
            "outlier_detection",
            (
                "consecutive_5xx",
                "interval",
                "base_ejection_time",
                "max_ejection_percent",
                "enforcing_consecutive_5xx",
            ),
        )
        if od.HasField("enforcing_consecutive_5xx") and od.enforcing_consecutive_5xx.value not in (
            0,
            100,
        ):
            raise walker.fail(
                "outlier_detection.enforcing_consecutive_5xx", "only 0 or 100 supported"
            )
        enforcing = (
            od.enforcing_consecutive_5xx.value if od.HasField("enforcing_consecutive_5xx") else 100
        )
        outlier = model.OutlierDetection(
            consecutive_5xx=(od.consecutive_5xx.value if od.HasField("consecutive_5xx") else 5)
            if enforcing
            else 0,
            interval=walker.duration(od.interval, "outlier_detection.interval")
            if od.HasField("interval")
            else 10.0,
            base_ejection_time=walker.duration(
                od.base_ejection_time, "outlier_detection.base_ejection_time"
            )
            if od.HasField("base_ejection_time")
            else 30.0,
            max_ejection_percent=(
                od.max_ejection_percent.value if od.HasField("max_ejection_percent") else 10
            ),
        )
    tls: model.UpstreamTls | None = None
    if message.HasField("transport_socket"):
        socket = message.transport_socket
        if socket.name not in ("envoy.transport_sockets.tls", "tls"):
            raise walker.fail(
                "transport_socket.name",
                f"{socket.name!r} not supported (envoy.transport_sockets.tls)",
            )
        tls = _upstream_tls(walker, socket, "transport_socket")
    per_connection: int | None = None
    for key in message.typed_extension_protocol_options:
        where = f"typed_extension_protocol_options[{key!r}]"
        if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions":
            raise walker.fail(where, "only HttpProtocolOptions (HTTP/1.1) is supported")
        options: http_protocol_options_pb2.HttpProtocolOptions = walker.unpack(
            message.typed_extension_protocol_options[key],
            where,
            {_HTTP_PROTOCOL_OPTIONS_TYPE: http_protocol_options_pb2.HttpProtocolOptions},
        )
        walker.check(options, where, ("explicit_http_config", "common_http_protocol_options"))
        if options.HasField("common_http_protocol_options"):
            common_options = options.common_http_protocol_options
            walker.check(
                common_options,
                f"{where}.common_http_protocol_options",
                ("max_requests_per_connection",),
            )
            if common_options.HasField("max_requests_per_connection"):
                per_connection = common_options.max_requests_per_connection.value
        explicit = options.explicit_http_config
        walker.check(explicit, f"{where}.explicit_http_config", ("http_protocol_options",))
        walker.check(
            explicit.http_protocol_options,
            f"{where}.explicit_http_config.http_protocol_options",
            (),
        )
        if explicit.WhichOneof("protocol_config") != "http_protocol_options":
            raise walker.fail(
                f"{where}.explicit_http_config", "only HTTP/1.1 upstreams are supported"
            )
    if message.HasField("max_requests_per_connection"):
        per_connection = message.max_requests_per_connection.value
    connect_timeout = (
        walker.duration(message.connect_timeout, "connect_timeout")
        if message.HasField("connect_timeout")
        else DEFAULT_CONNECT_TIMEOUT
    )
    return model.Cluster(
        name=message.name,
        stat_name=message.alt_stat_name or message.name,
        kind=kind,
        eds_service_name=eds_name,
        lb_policy=lb,
        connect_timeout=connect_timeout,
        circuit_breakers=breakers,
        outlier_detection=outlier,
        tls=tls,
        endpoints=endpoints,
        max_requests_per_connection=per_connection,
    )
