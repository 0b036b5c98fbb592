"""Counters and gauges with Envoy's stat names, their text and Prometheus forms, access logs.

The one idea: a metric is created once with both of its names (Envoy's dotted name and the
Prometheus name with tags extracted, e.g. `cluster.<name>.upstream_rq_total` and
`envoy_cluster_upstream_rq_total{envoy_cluster_name="<name>"}`) and the hot path holds the
`Metric` object itself: counting is one attribute increment, never a string format.
A `Histogram` (Envoy's `upstream_rq_time`, in milliseconds) is held the same way: recording
is one bisect and two increments; the cumulative `_bucket{le}` series, `_sum` and `_count`
are computed only when `/stats/prometheus` is read.

Prometheus names are Envoy's tag extraction of the dotted name: for a cluster the tag
`envoy_cluster_name` is the stat name up to its first dot (Envoy's regex
``^cluster\\.((.*?)\\.)``) and the rest of it joins the metric name, so a cluster named
``a/b.v1|local`` counts in ``envoy_cluster_v1_local_upstream_rq_total{envoy_cluster_name="a/b"}``
as in Envoy. Histograms are listed once something was recorded (Envoy creates them on first
use); counters and gauges from their creation.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any, Final, Literal, TextIO

_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_]")

RQ_TIME_BOUNDS: Final = (
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
)  # fmt: skip
"""Envoy's default histogram bucket bounds (`stats_config.histogram_bucket_settings` unset),
in the unit of the histogram: milliseconds for `upstream_rq_time`."""


class Metric:
    """A counter (only grows) or gauge (goes both ways); `value` is read and written directly."""

    __slots__ = ("kind", "labels", "name", "prom_name", "value")

    def __init__(
        self,
        name: str,
        kind: Literal["counter", "gauge"],
        prom_name: str,
        labels: tuple[tuple[str, str], ...],
    ):
        self.name = name
        self.kind = kind
        self.prom_name = prom_name
        self.labels = labels
        self.value = 0


class Histogram:
    """Counts per bucket (`counts[i]`: values <= `bounds[i]`, above the previous bound; the
    last is +Inf) and their sum. `record` is the hot path; export sums up the buckets."""

    __slots__ = ("bounds", "counts", "labels", "name", "prom_name", "sum")

    def __init__(
        self,
        name: str,
        prom_name: str,
        labels: tuple[tuple[str, str], ...],
        bounds: tuple[float, ...],
    ):
        self.name = name
        self.prom_name = prom_name
        self.labels = labels
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def record(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def lines(self) -> list[str]:
        """The `_bucket` (cumulative, `le` as Envoy writes it), `_sum` and `_count` lines."""
        tags = "".join(f'{key}="{_escape(value)}",' for key, value in self.labels)
        plain = "{" + tags[:-1] + "}"
        lines: list[str] = []
        total = 0
        for index, bound in enumerate((*self.bounds, None)):
            total += self.counts[index]
            le = "+Inf" if bound is None else _number(bound)
            lines.append(f'{self.prom_name}_bucket{{{tags}le="{le}"}} {total}')
        lines.append(f"{self.prom_name}_sum{plain} {_number(self.sum)}")
        lines.append(f"{self.prom_name}_count{plain} {total}")
        return lines


def _number(value: float) -> str:
    """`1000` for 1000.0 (Envoy's bounds), `0.5` for 0.5, never an exponent."""
    if value == int(value):
        return str(int(value))
    return repr(value)


def _sanitize(name: str) -> str:
    return "envoy_" + _UNSAFE.sub("_", name)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Stats:
    """The registry. Not thread-safe: owned by the proxy's event loop."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._histograms: dict[str, Histogram] = {}

    def _get(
        self,
        name: str,
        kind: Literal["counter", "gauge"],
        prom: str | None,
        labels: Mapping[str, str] | None,
    ) -> Metric:
        metric = self._metrics.get(name)
        if metric is None:
            metric = Metric(
                name, kind, prom or _sanitize(name), tuple(sorted((labels or {}).items()))
            )
            self._metrics[name] = metric
        return metric

    def counter(
        self, name: str, prom: str | None = None, labels: Mapping[str, str] | None = None
    ) -> Metric:
        return self._get(name, "counter", prom, labels)

    def gauge(
        self, name: str, prom: str | None = None, labels: Mapping[str, str] | None = None
    ) -> Metric:
        return self._get(name, "gauge", prom, labels)

    def histogram(
        self,
        name: str,
        prom: str,
        labels: Mapping[str, str] | None = None,
        bounds: tuple[float, ...] = RQ_TIME_BOUNDS,
    ) -> Histogram:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = Histogram(name, prom, tuple(sorted((labels or {}).items())), bounds)
            self._histograms[name] = histogram
        return histogram

    def value(self, name: str) -> int:
        metric = self._metrics.get(name)
        return metric.value if metric else 0

    def text(self) -> str:
        """Envoy's /stats form: `name: value`, sorted by name."""
        return "".join(f"{name}: {self._metrics[name].value}\n" for name in sorted(self._metrics))

    def prometheus(self) -> str:
        groups: dict[str, list[Metric]] = {}
        for metric in self._metrics.values():
            groups.setdefault(metric.prom_name, []).append(metric)
        lines: list[str] = []
        for prom_name in sorted(groups):
            members = groups[prom_name]
            lines.append(f"# TYPE {prom_name} {members[0].kind}")
            for metric in sorted(members, key=lambda item: item.labels):
                if metric.labels:
                    tags = ",".join(f'{key}="{_escape(value)}"' for key, value in metric.labels)
                    lines.append(f"{prom_name}{{{tags}}} {metric.value}")
                else:
                    lines.append(f"{prom_name} {metric.value}")
        histograms: dict[str, list[Histogram]] = {}
        for histogram in self._histograms.values():
            if any(histogram.counts):
                histograms.setdefault(histogram.prom_name, []).append(histogram)
        for prom_name in sorted(histograms):
            lines.append(f"# TYPE {prom_name} histogram")
            for histogram in sorted(histograms[prom_name], key=lambda item: item.labels):
                lines.extend(histogram.lines())
        return "\n".join(lines) + "\n"


def cluster_stat_name(name: str) -> str:
    """A cluster's name as Envoy writes it in stat names: ``:`` becomes ``_``."""
    return name.replace(":", "_")


def cluster_tag(name: str) -> tuple[str, str]:
    """-> (the `envoy_cluster_name` tag, the Prometheus name's prefix) of a cluster's stat
    name: the tag is the name up to its first dot, the rest joins the metric's name."""
    tag, dot, rest = cluster_stat_name(name).partition(".")
    return tag, "envoy_cluster_" + (_UNSAFE.sub("_", rest) + "_" if dot else "")


class ClusterStats:
    """The `cluster.<name>.*` metrics the runtime updates."""

    def __init__(self, stats: Stats, name: str):
        self._stats = stats
        self._name = name = cluster_stat_name(name)
        self._tag, self._prefix = cluster_tag(name)
        prom = self._prefix
        tag = {"envoy_cluster_name": self._tag}

        def counter(stat: str) -> Metric:
            return stats.counter(f"cluster.{name}.{stat}", prom + _UNSAFE.sub("_", stat), tag)

        def gauge(stat: str) -> Metric:
            return stats.gauge(f"cluster.{name}.{stat}", prom + _UNSAFE.sub("_", stat), tag)

        self.upstream_rq_total = counter("upstream_rq_total")
        self.upstream_rq_completed = counter("upstream_rq_completed")
        self.upstream_rq_timeout = counter("upstream_rq_timeout")
        self.upstream_rq_retry = counter("upstream_rq_retry")
        self.upstream_rq_pending_overflow = counter("upstream_rq_pending_overflow")
        self.upstream_rq_pending_total = counter("upstream_rq_pending_total")
        self.upstream_cx_total = counter("upstream_cx_total")
        self.upstream_cx_connect_fail = counter("upstream_cx_connect_fail")
        self.upstream_cx_overflow = counter("upstream_cx_overflow")
        self.upstream_cx_destroy = counter("upstream_cx_destroy")
        self.upstream_cx_active = gauge("upstream_cx_active")
        self.upstream_rq_active = gauge("upstream_rq_active")
        self.upstream_rq_pending_active = gauge("upstream_rq_pending_active")
        self.outlier_detection_ejections_enforced_total = counter(
            "outlier_detection.ejections_enforced_total"
        )
        self.outlier_detection_ejections_active = gauge("outlier_detection.ejections_active")
        self.membership_total = gauge("membership_total")
        # The failure counters OSM's Prometheus keeps (its chart's metric_relabel_configs).
        self.upstream_cx_connect_timeout = counter("upstream_cx_connect_timeout")
        self.upstream_cx_destroy_local_with_active_rq = counter(
            "upstream_cx_destroy_local_with_active_rq"
        )
        self.upstream_cx_destroy_remote_with_active_rq = counter(
            "upstream_cx_destroy_remote_with_active_rq"
        )
        self.upstream_rq_pending_failure_eject = counter("upstream_rq_pending_failure_eject")
        self.upstream_rq_rx_reset = counter("upstream_rq_rx_reset")
        self.upstream_cx_rx_bytes_total = counter("upstream_cx_rx_bytes_total")
        self.upstream_cx_tx_bytes_total = counter("upstream_cx_tx_bytes_total")
        self.upstream_rq_time = stats.histogram(
            f"cluster.{name}.upstream_rq_time", prom + "upstream_rq_time", tag
        )
        self._classes: dict[int, Metric] = {}
        self._codes: dict[int, Metric] = {}

    def response(self, status: int) -> None:
        klass = status // 100
        metric = self._classes.get(klass)
        if metric is None:
            metric = self._stats.counter(
                f"cluster.{self._name}.upstream_rq_{klass}xx",
                self._prefix + "upstream_rq_xx",
                {"envoy_cluster_name": self._tag, "envoy_response_code_class": str(klass)},
            )
            self._classes[klass] = metric
        metric.value += 1
        code = self._codes.get(status)
        if code is None:
            code = self._stats.counter(
                f"cluster.{self._name}.upstream_rq_{status}",
                self._prefix + "upstream_rq",
                {"envoy_cluster_name": self._tag, "envoy_response_code": str(status)},
            )
            self._codes[status] = code
        code.value += 1
        self.upstream_rq_completed.value += 1


class HttpStats:
    """The `http.<stat_prefix>.*` metrics of one HTTP connection manager."""

    def __init__(self, stats: Stats, prefix: str):
        self._stats = stats
        self._prefix = prefix
        tag = {"envoy_http_conn_manager_prefix": prefix}

        def counter(stat: str) -> Metric:
            return stats.counter(
                f"http.{prefix}.{stat}", "envoy_http_" + _UNSAFE.sub("_", stat), tag
            )

        self.downstream_rq_total = counter("downstream_rq_total")
        self.downstream_rq_http1_total = counter("downstream_rq_http1_total")
        self.downstream_cx_total = counter("downstream_cx_total")
        self.downstream_cx_protocol_error = counter("downstream_cx_protocol_error")
        self.downstream_rq_timeout = counter("downstream_rq_timeout")
        self.no_route = counter("no_route")
        self.rbac_allowed = counter("rbac.allowed")
        self.rbac_denied = counter("rbac.denied")
        self.downstream_cx_active = stats.gauge(
            f"http.{prefix}.downstream_cx_active", "envoy_http_downstream_cx_active", tag
        )
        self._classes: dict[int, Metric] = {}

    def response(self, status: int) -> None:
        klass = status // 100
        metric = self._classes.get(klass)
        if metric is None:
            metric = self._stats.counter(
                f"http.{self._prefix}.downstream_rq_{klass}xx",
                "envoy_http_downstream_rq_xx",
                {
                    "envoy_http_conn_manager_prefix": self._prefix,
                    "envoy_response_code_class": str(klass),
                },
            )
            self._classes[klass] = metric
        metric.value += 1


class TcpStats:
    """`tcp.<stat_prefix>.*` of a tcp_proxy."""

    def __init__(self, stats: Stats, prefix: str):
        tag = {"envoy_tcp_prefix": prefix}
        self.downstream_cx_total = stats.counter(
            f"tcp.{prefix}.downstream_cx_total", "envoy_tcp_downstream_cx_total", tag
        )
        self.downstream_cx_rx_bytes_total = stats.counter(
            f"tcp.{prefix}.downstream_cx_rx_bytes_total",
            "envoy_tcp_downstream_cx_rx_bytes_total",
            tag,
        )
        self.downstream_cx_tx_bytes_total = stats.counter(
            f"tcp.{prefix}.downstream_cx_tx_bytes_total",
            "envoy_tcp_downstream_cx_tx_bytes_total",
            tag,
        )
        self.downstream_cx_no_route = stats.counter(
            f"tcp.{prefix}.downstream_cx_no_route", "envoy_tcp_downstream_cx_no_route", tag
        )


class RbacStats:
    """Network RBAC: `<stat_prefix>.rbac.allowed` / `.denied` (Envoy's namespace)."""

    def __init__(self, stats: Stats, prefix: str):
        base = f"{prefix}.rbac" if prefix else "rbac"
        self.allowed = stats.counter(f"{base}.allowed")
        self.denied = stats.counter(f"{base}.denied")


class ListenerStats:
    def __init__(self, stats: Stats, address: str):
        tag = {"envoy_listener_address": address}
        self.downstream_cx_total = stats.counter(
            f"listener.{address}.downstream_cx_total", "envoy_listener_downstream_cx_total", tag
        )
        self.downstream_cx_active = stats.gauge(
            f"listener.{address}.downstream_cx_active", "envoy_listener_downstream_cx_active", tag
        )
        self.no_filter_chain_match = stats.counter(
            f"listener.{address}.no_filter_chain_match",
            "envoy_listener_no_filter_chain_match",
            tag,
        )
        self.ssl_handshake_error = stats.counter(
            f"listener.{address}.ssl.connection_error", "envoy_listener_ssl_connection_error", tag
        )


class AccessLog:
    """One JSON object per line per request (or TCP connection); `None` stream = disabled."""

    def __init__(self, stream: TextIO | None):
        self._stream = stream

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._stream is None:
            return
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._stream.flush()
