"""Prometheus metrics of the ADS server, registered in a registry the caller passes in.

One idea: names are OSM's (`pkg/metricsstore`) where OSM has one, so OSM's dashboards and
alerts carry over; labels stay low-cardinality (the xDS type, never a proxy id). Counters
are exposed by prometheus_client with a ``_total`` suffix, e.g.
``osm_proxy_nack_count_total``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True, slots=True)
class AdsMetrics:
    connected: Gauge
    reconnects: Counter
    sent: Counter
    send_errors: Counter
    requests: Counter
    update_time: Histogram
    nacks: Counter
    auth_refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AdsMetrics:
        """Register the metrics in `registry`; call once per registry."""
        return cls(
            connected=Gauge(
                "osm_proxy_connect_count",
                "Proxies connected to the xDS server now (one per stream)",
                registry=registry,
            ),
            reconnects=Counter(
                "osm_proxy_reconnect_count",
                "Streams opened by a node id that had connected before",
                registry=registry,
            ),
            sent=Counter(
                "osm_proxy_response_send_success_count",
                "xDS responses sent to proxies, by type",
                ["type"],
                registry=registry,
            ),
            send_errors=Counter(
                "osm_proxy_response_send_error_count",
                "xDS responses that could not be sent, by type",
                ["type"],
                registry=registry,
            ),
            requests=Counter(
                "osm_proxy_xds_request_count",
                "xDS requests received from proxies, by type",
                ["type"],
                registry=registry,
            ),
            update_time=Histogram(
                "osm_proxy_config_update_time",
                "Seconds from sending an xDS response to the proxy's ACK or NACK",
                ["resource_type", "success"],
                registry=registry,
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            ),
            nacks=Counter(
                "osm_proxy_nack_count",
                "xDS responses rejected by proxies (NACK), by type",
                ["type"],
                registry=registry,
            ),
            auth_refused=Counter(
                "osm_proxy_auth_refused_count",
                "Streams refused because the client certificate did not match the node id",
                registry=registry,
            ),
        )
