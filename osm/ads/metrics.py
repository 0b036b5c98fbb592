"""Prometheus metrics of the ADS server, registered in a registry the caller passes in, and
the controller's text exposition of a registry under OSM's exact names.

One idea: names are OSM's (`pkg/metricsstore`) where OSM has one, so OSM's dashboards and
alerts carry over; labels stay low-cardinality (the xDS type, never a proxy id: OSM's
``proxy_uuid`` and ``identity`` labels would make one series per proxy and type).

OSM's Go client writes a counter under the name it was given: ``osm_proxy_reconnect_count``
is scraped as ``osm_proxy_reconnect_count``. prometheus_client appends ``_total`` to every
counter (and adds ``_created``). `exposition` renders a registry as prometheus_client does
but writes a counter whose name ends in ``_count`` or ``_rejected`` (OSM's names without
``_total``) under exactly that name; a counter registered as
``osm_admission_webhook_response`` is still ``osm_admission_webhook_response_total`` as in
OSM. No ``_created`` series are written (OSM's client has none). In-process readers
(``registry.get_sample_value``) keep prometheus_client's names.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

EXACT_COUNTER_SUFFIXES = ("_count", "_rejected")
"""OSM's counters named without ``_total``: exposed under exactly their name."""


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


def exposition(registry: Collector) -> bytes:
    """The Prometheus text (0.0.4) of `registry`, with OSM's counter names (module doc)
    and none of prometheus_client's ``_created`` series (OSM's client writes none)."""
    exact: set[bytes] = set()
    created: set[bytes] = set()
    for family in registry.collect():
        if family.type in ("counter", "histogram", "summary"):
            created.add(family.name.encode() + b"_created")
        if family.type == "counter" and family.name.endswith(EXACT_COUNTER_SUFFIXES):
            exact.add(family.name.encode() + b"_total")
    lines: list[bytes] = []
    for line in generate_latest(registry).split(b"\n"):
        name = _sample_name(line)
        if name in created:
            continue
        if name in exact:
            cut = line.index(name) + len(name) - len(b"_total")
            line = line[:cut] + line[cut + len(b"_total") :]
        lines.append(line)
    return b"\n".join(lines)


def _sample_name(line: bytes) -> bytes:
    """The metric name a sample, HELP or TYPE line is about (b"" for anything else)."""
    if line.startswith((b"# HELP ", b"# TYPE ")):
        return line[7:].split(b" ", 1)[0]
    if not line or line.startswith(b"#"):
        return b""
    end = len(line)
    for stop in (b"{", b" "):
        found = line.find(stop)
        if 0 <= found < end:
            end = found
    return line[:end]
