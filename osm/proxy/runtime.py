"""The proxy's shared run-time state: current config, clusters, route tables, TLS, stats.

The one idea: `Runtime.apply(config)` is the only way configuration changes, and it is
synchronous (no await), so every connection and request sees either the old or the new
consistent set, never a mix. New handshakes get TLS contexts from the current secrets;
established connections keep what they negotiated.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from osm.proxy import model, rate_limit, router, stats, tls, tracing, upstream

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h, at level SOL_IP


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where the client meant to connect before iptables REDIRECT; else the local address."""
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port = struct.unpack_from("!H", raw, 2)[0]
        return socket.inet_ntoa(raw[4:8]), port
    except OSError:
        address = sock.getsockname()
        return str(address[0]), int(address[1])


@dataclass
class Options:
    """Knobs and injected I/O for the runtime; the defaults are what production uses."""

    original_destination: Callable[[socket.socket], tuple[str, int]] = original_destination
    bind_overrides: dict[str, tuple[str, int]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    randrange: Callable[[int], int] = field(default_factory=lambda: random.Random().randrange)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    handshake_timeout: float = 10.0
    inspect_timeout: float = 15.0
    drain_timeout: float = 5.0
    retry_base_interval: float = 0.025
    http_fast_path: bool = True  # serve common requests from callbacks (http_session.HttpSession)


class Runtime:
    """Owned by one event loop; not thread-safe."""

    def __init__(
        self, options: Options, registry: stats.Stats, access_log: stats.AccessLog
    ) -> None:
        self.options = options
        self.stats = registry
        self.access_log = access_log
        self.contexts = tls.ContextCache()
        self.config = model.ProxyConfig({}, {}, {}, {}, {}, {}, {})
        self.clusters: dict[str, upstream.ClusterRuntime] = {}
        self.route_tables: dict[str, router.RouteTable] = {}
        self._inline_tables: dict[int, router.RouteTable] = {}
        self.http_stats: dict[str, stats.HttpStats] = {}
        self.tcp_stats: dict[str, stats.TcpStats] = {}
        self.rbac_stats: dict[str, stats.RbacStats] = {}
        self.buckets: dict[model.LocalRateLimit, rate_limit.TokenBucket] = {}
        self.generation = 0
        self.tracer = tracing.Tracer(registry, self.collector)

    def apply(self, new: model.ProxyConfig) -> None:
        """Switch to `new` (already consistent) in one step."""
        self.config = new
        self.generation += 1
        for name, cluster in new.clusters.items():
            endpoints = new.endpoints_of(cluster)
            target = self._tls_target_factory(cluster)
            existing = self.clusters.get(name)
            if existing is None:
                self.clusters[name] = upstream.ClusterRuntime(
                    cluster,
                    endpoints,
                    self.stats,
                    target,
                    self.options.clock,
                    self.options.randrange,
                )
            else:
                existing.update(cluster, endpoints, target)
        for name in list(self.clusters):
            if name not in new.clusters:
                self.clusters.pop(name).close_idle()
        tables: dict[str, router.RouteTable] = {}
        for name, route_config in new.route_configs.items():
            old = self.route_tables.get(name)
            tables[name] = (
                old
                if old is not None and old.route_config == route_config
                else router.RouteTable(route_config)
            )
        self.route_tables = tables
        self._inline_tables = {}
        self.contexts.retain(new.secrets.values())
        self.buckets = rate_limit.carry_over(self.buckets, new, self.options.clock())

    def collector(self, cluster_name: str) -> tuple[str, int] | None:
        """Where a tracing cluster's reports go now (None: no such cluster, or no host)."""
        cluster = self.clusters.get(cluster_name)
        host = cluster.pick() if cluster is not None else None
        return None if host is None else (host.address, host.port)

    def admits(self, limit: model.LocalRateLimit) -> bool:
        """Whether ``limit``'s bucket has a token for one more request or connection
        (and takes it). A limit of no current configuration admits."""
        bucket = self.buckets.get(limit)
        return bucket is None or bucket.take(self.options.clock())

    def route_table(self, manager: model.HttpConnectionManager) -> router.RouteTable | None:
        if manager.rds_name is not None:
            return self.route_tables.get(manager.rds_name)
        if manager.route_config is None:
            return None
        key = id(manager.route_config)
        table = self._inline_tables.get(key)
        if table is None or table.route_config is not manager.route_config:
            table = router.RouteTable(manager.route_config)
            self._inline_tables[key] = table
        return table

    def server_context(self, downstream: model.DownstreamTls) -> ssl.SSLContext:
        """The context for a new inbound handshake; raises KeyError / TlsConfigError."""
        secrets = self.config.secrets
        validation = secrets[downstream.validation_secret] if downstream.validation_secret else None
        return self.contexts.server(downstream, secrets[downstream.cert_secret], validation)

    def downstream_san_matchers(
        self, downstream: model.DownstreamTls
    ) -> tuple[model.SanMatcher, ...]:
        matchers = downstream.san_matchers
        if downstream.validation_secret:
            secret = self.config.secrets.get(downstream.validation_secret)
            if secret is not None:
                matchers = matchers + secret.san_matchers
        return matchers

    def _tls_target_factory(
        self, cluster: model.Cluster
    ) -> Callable[[], upstream.TlsTarget | None]:
        upstream_tls = cluster.tls
        if upstream_tls is None:
            return lambda: None

        def target() -> upstream.TlsTarget:
            secrets = self.config.secrets  # read at connect time: SDS rotations apply
            validation = secrets[upstream_tls.validation_secret or ""]
            cert = secrets[upstream_tls.cert_secret] if upstream_tls.cert_secret else None
            context = self.contexts.client(upstream_tls, cert, validation)
            return upstream.TlsTarget(
                context, upstream_tls.sni, upstream_tls.san_matchers + validation.san_matchers
            )

        return target

    def http_stats_for(self, prefix: str) -> stats.HttpStats:
        found = self.http_stats.get(prefix)
        if found is None:
            found = self.http_stats[prefix] = stats.HttpStats(self.stats, prefix)
        return found

    def tcp_stats_for(self, prefix: str) -> stats.TcpStats:
        found = self.tcp_stats.get(prefix)
        if found is None:
            found = self.tcp_stats[prefix] = stats.TcpStats(self.stats, prefix)
        return found

    def rbac_stats_for(self, prefix: str) -> stats.RbacStats:
        found = self.rbac_stats.get(prefix)
        if found is None:
            found = self.rbac_stats[prefix] = stats.RbacStats(self.stats, prefix)
        return found
