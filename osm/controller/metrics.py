"""The controller's own metrics under OSM's names (``pkg/metricsstore``), beside the ADS
server's (`osm.ads.metrics`), all in the controller's one registry and exposed on
``/metrics`` by `osm.ads.metrics.exposition`, which writes OSM's ``..._count`` counters
without prometheus_client's ``_total``.

Metrics OSM has and this controller has no counterpart for are left out rather than
exposed at zero: ``osm_proxy_max_connections_rejected`` (the xDS server has no connection
limit), ``osm_error_err_code_count`` (no error codes), ``osm_reconciliation_total`` (no
reconciler of its own resources), ``osm_conversion_webhook_resource_total``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import osm
from osm.ca.issuer import IssuedCertificate
from osm.model.config import FeatureFlags

CERT_ISSUED_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 90)  # OSM's, in seconds
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def set_feature_flags(gauge: Gauge, flags: FeatureFlags) -> None:
    """``osm_feature_flag_enabled{feature_flag}``: 1 or 0 for each of MeshConfig's flags,
    labelled with its name in ``spec.featureFlags``."""
    for name, enabled in flags.by_name().items():
        gauge.labels(name).set(1 if enabled else 0)


class ControllerMetrics:
    """Certificates, HTTP and the version; register once per registry. (The push loop's
    metrics, events, broadcasts and feature flags among them, are `mesh.PushMetrics`.)"""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cert_issued = Counter(
            "osm_cert_issued_count",
            "Certificates issued to proxies by the certificate manager",
            registry=registry,
        )
        self.cert_issued_time = Histogram(
            "osm_cert_issued_time",
            "Seconds spent issuing a proxy's certificate",
            registry=registry,
            buckets=CERT_ISSUED_BUCKETS,
        )
        self.http_responses = Counter(
            "osm_http_response_total",
            "HTTP responses of the controller's HTTP server (metrics, health, debug)",
            ["code", "method", "path"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "osm_http_response_duration",
            "Seconds to answer an HTTP request of the controller's HTTP server",
            ["code", "method", "path"],
            registry=registry,
            buckets=HTTP_BUCKETS,
        )
        self.version = Gauge(
            "osm_version_info",
            "The controller's version (always 1)",
            ["version"],
            registry=registry,
        )
        self.version.labels(osm.__version__).set(1)

    def issued(self, certificate: IssuedCertificate, seconds: float) -> None:
        """`osm.ca.manager.CertificateManager.on_issued`."""
        self.cert_issued.inc()
        self.cert_issued_time.observe(seconds)

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """An aiohttp middleware counting every response by code, method and route (the
        route's pattern, not the raw path: unknown paths count as ``unmatched``)."""

        @web.middleware
        async def count(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            started = time.perf_counter()
            code = 500
            try:
                response = await handler(request)
                code = response.status
                return response
            except web.HTTPException as error:
                code = error.status
                raise
            finally:
                resource = request.match_info.route.resource
                path = resource.canonical if resource is not None else "unmatched"
                labels = (str(code), request.method, path)
                self.http_responses.labels(*labels).inc()
                self.http_duration.labels(*labels).observe(time.perf_counter() - started)

        return count
