"""Upstream clusters at run time: hosts, load balancing, connection pools, limits, ejection.

The one idea: a `ClusterRuntime` owns everything that outlives one request for one
cluster: its hosts (kept across EDS updates by address, so pools survive), the pool of
idle HTTP/1.1 connections per host, Envoy's circuit-breaker counters (connections,
pending requests, requests, retries) and consecutive-5xx outlier ejection. Time and
randomness are injected, so the policies are tested with a fake clock.

A changed Cluster resource is, as in Envoy, a new cluster: its thresholds govern every
request from then on, and the connections opened under the old one drain. The runtime's
`generation` counts those changes; the idle pool is closed when it changes, and a
connection of an older generation is closed when released instead of pooled, so no new
request reuses it. The counters stay one set per cluster, so connections and requests
still in flight on the old cluster count against the new limits until they end (Envoy
counts them against the old cluster's: a transient difference, never above the limit).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from osm.proxy import http1, inbox, model, stats, tls, transport


class UpstreamError(Exception):
    """The request could not be forwarded; `reason` is Envoy's reset reason."""

    def __init__(self, reason: str, flag: str):
        super().__init__(reason)
        self.reason = reason
        self.flag = flag  # Envoy's response flag: UF (connect failure), UO (overflow), ...


class Overflow(UpstreamError):
    def __init__(self) -> None:
        super().__init__("overflow", "UO")


class ConnectFailure(UpstreamError):
    def __init__(self, detail: str, timed_out: bool = False) -> None:
        super().__init__("connection failure", "UF")
        self.detail = detail
        self.timed_out = timed_out


class UpstreamReset(UpstreamError):
    def __init__(self, detail: str = "connection termination") -> None:
        super().__init__(detail, "UC")


@dataclass(frozen=True, slots=True)
class TlsTarget:
    """How to open TLS to a cluster's hosts: context, SNI, and the SANs to require."""

    context: ssl.SSLContext
    sni: str
    san_matchers: tuple[model.SanMatcher, ...]


async def open_connection(
    host: str,
    port: int,
    timeout: float,
    tls_target: TlsTarget | None,
    counters: tuple[stats.Metric, stats.Metric] | None = None,
) -> transport.Connection:
    """Connect (and handshake); raises ConnectFailure. `counters` (received, sent) count
    the connection's bytes on the wire, the handshake's too."""
    loop = asyncio.get_running_loop()
    try:
        _, connection = await asyncio.wait_for(
            loop.create_connection(transport.Connection, host, port), timeout or None
        )
    except TimeoutError:
        raise ConnectFailure(f"{host}:{port}: timeout", timed_out=True) from None
    except OSError as error:
        raise ConnectFailure(f"{host}:{port}: {error}") from None
    if counters is not None:
        connection.rx_bytes, connection.tx_bytes = counters
    if tls_target is not None:
        try:
            await connection.start_tls(
                tls_target.context,
                server_side=False,
                server_hostname=tls_target.sni or None,
                timeout=timeout or 10.0,
            )
        except transport.HandshakeError as error:
            connection.abort()
            raise ConnectFailure(f"{host}:{port}: TLS: {error}") from None
        if not tls.sans_match(tls_target.san_matchers, connection.tls_peer_certificate):
            connection.abort()
            raise ConnectFailure(f"{host}:{port}: TLS: peer SAN does not match")
    return connection


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class UpstreamHttp:
    """An HTTP/1.1 client connection to one host: sends requests, yields response events.

    A coroutine awaits `next_event`; a callback user (the session's fast path) sets
    `notify` instead, is called whenever events, an error or the end arrive, and reads
    `pending_events` / `take_events` without awaiting. Event-loop only.

    While pooled (idle), it stays the connection's consumer and `pool` names the cluster
    holding it: anything arriving then (bytes, EOF, loss) makes it unusable and it leaves
    the pool, with no per-request watcher object.
    """

    __slots__ = (
        "_inbox",
        "_loop",
        "_waiter",
        "connection",
        "discarded",
        "ended",
        "error",
        "generation",
        "got_bytes",
        "host",
        "notify",
        "parser",
        "pool",
        "requests",
    )

    _HIGH_WATER: Final = 512 * 1024

    def __init__(self, connection: transport.Connection, host: Host, generation: int = 0):
        self.connection = connection
        self.host = host
        self.generation = generation  # the cluster's generation it was opened under
        self.parser = http1.ResponseParser()
        self._loop = asyncio.get_running_loop()
        self.notify: Callable[[], None] | None = None
        self._inbox = inbox.EventInbox(connection, self._HIGH_WATER)
        self._waiter: asyncio.Future[None] | None = None
        self.error: Exception | None = None
        self.ended = False
        self.requests = 0
        self.got_bytes = False
        self.discarded = False
        self.pool: ClusterRuntime | None = None  # the cluster holding it idle
        connection.set_consumer(self)

    def _drop_idle(self) -> None:
        """Something arrived while pooled: leave the pool and close."""
        pool = self.pool
        assert pool is not None
        self.pool = None
        self.ended = True
        idle = self.host.idle
        if self in idle:
            idle.remove(self)
        pool._discard(self)

    # consumer callbacks
    def data_received(self, data: bytes) -> None:
        if self.pool is not None:
            self._drop_idle()
            return
        if self.parser.upgraded:
            self.parser.trailing += data
            return
        self.got_bytes = True
        try:
            events = self.parser.feed(data)
        except http1.ProtocolError as error:
            self.error = error
            self.connection.abort()
            self._wake()
            return
        if events:
            self._inbox.push(events)
            self._wake()

    def eof_received(self) -> None:
        if self.pool is not None:
            self._drop_idle()
            return
        try:
            self._inbox.push(self.parser.feed_eof())
        except http1.ProtocolError as error:
            self.error = error
        self.ended = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pool is not None:
            self._drop_idle()
            return
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        notify = self.notify
        if notify is not None:
            notify()
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def waiting(self) -> bool:
        """Nothing has arrived yet: no event, no error, not ended."""
        return not self._inbox.events and self.error is None and not self.ended

    @property
    def pending_events(self) -> collections.deque[http1.Event]:
        """The events parsed and not yet taken (owned by this object: read, do not keep)."""
        return self._inbox.events

    def take_events(self) -> None:
        """Drop every pending event (a callback user has consumed them)."""
        self._inbox.clear()

    async def next_event(self, timeout: float | None = None) -> http1.Event:
        """The next response event; raises UpstreamReset / ProtocolError when it ends early,
        TimeoutError when none arrives within `timeout` seconds (one timer, and only when
        it has to wait: cheaper than `asyncio.wait_for`'s task)."""
        events = self._inbox.events
        if not events:
            loop = self._loop
            expires = loop.time() + timeout if timeout is not None else None
            while not events:
                if self.error is not None:
                    raise self.error
                if self.ended:
                    raise UpstreamReset()
                waiter = self._waiter = loop.create_future()
                timer = loop.call_at(expires, _expire, waiter) if expires is not None else None
                try:
                    await waiter
                finally:
                    self._waiter = None
                    if timer is not None:
                        timer.cancel()
        return self._inbox.pop()

    @property
    def reusable(self) -> bool:
        return not (
            self.ended
            or self.error is not None
            or self._inbox.events
            or self.connection.closed
            or self.parser.upgraded
        )


class Host:
    """One upstream endpoint with its idle connections and outlier state."""

    __slots__ = (
        "active_requests",
        "address",
        "consecutive_5xx",
        "current_weight",
        "cx_active",
        "ejected_until",
        "ejections",
        "idle",
        "key",
        "port",
        "weight",
    )

    def __init__(self, address: str, port: int, weight: int = 1):
        self.address = address
        self.port = port
        self.key = (address, port)
        self.weight = max(1, weight)
        self.current_weight = 0
        self.active_requests = 0
        self.cx_active = 0
        self.idle: list[UpstreamHttp] = []
        self.consecutive_5xx = 0
        self.ejected_until = 0.0
        self.ejections = 0

    @property
    def label(self) -> str:
        return f"{self.address}:{self.port}"


class ClusterRuntime:
    """Run-time state of one cluster. Event-loop only; `update` swaps config and hosts."""

    def __init__(
        self,
        cluster: model.Cluster,
        endpoints: tuple[model.Endpoint, ...],
        registry: stats.Stats,
        tls_target: Callable[[], TlsTarget | None],
        clock: Callable[[], float],
        randrange: Callable[[int], int],
    ):
        self.stats = stats.ClusterStats(registry, cluster.stat_name)
        self._clock = clock
        self._randrange = randrange
        self._tls_target = tls_target
        self.hosts: list[Host] = []
        self._by_address: dict[tuple[str, int], Host] = {}
        self._rr = 0
        self.cx_active = 0
        self.rq_active = 0
        self.pending = 0
        self.retries_active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.generation = 0  # bumped by each changed Cluster: see the module docstring
        self.cluster = cluster
        self.update(cluster, endpoints, tls_target)

    def update(
        self,
        cluster: model.Cluster,
        endpoints: tuple[model.Endpoint, ...],
        tls_target: Callable[[], TlsTarget | None],
    ) -> None:
        """New config and endpoints; hosts with the same address keep their pools unless
        the Cluster itself changed: then its connections drain (module docstring) and the
        requests waiting for a connection re-check the new limits."""
        if cluster != self.cluster:
            self.generation += 1
            self.close_idle()
            self._wake_all()
        self.cluster = cluster
        self._tls_target = tls_target
        hosts: list[Host] = []
        by_address: dict[tuple[str, int], Host] = {}
        for endpoint in endpoints:
            key = (endpoint.host, endpoint.port)
            if key in by_address:
                continue
            host = self._by_address.get(key) or Host(endpoint.host, endpoint.port)
            host.weight = max(1, endpoint.weight)
            hosts.append(host)
            by_address[key] = host
        if cluster.kind == "ORIGINAL_DST":
            by_address = self._by_address  # hosts are created from destinations on demand
            hosts = self.hosts
        for key, host in self._by_address.items():
            if key not in by_address:
                self._close_idle(host)
        self.hosts = hosts
        self._by_address = by_address
        self.stats.membership_total.value = len(hosts)

    def close_idle(self) -> None:
        """Close every pooled connection now (and stop counting it)."""
        for host in self.hosts:
            self._close_idle(host)

    def _close_idle(self, host: Host) -> None:
        idle = host.idle
        host.idle = []
        for upstream in idle:
            upstream.pool = None
            self._discard(upstream)

    # -- load balancing --------------------------------------------------------------------
    def _healthy(self) -> list[Host]:
        now = self._clock()
        healthy = []
        ejected = 0
        for host in self.hosts:
            if host.ejected_until > now:
                ejected += 1
            else:
                healthy.append(host)
        self.stats.outlier_detection_ejections_active.value = ejected
        # Envoy's panic mode: with too few healthy hosts, balance over all of them.
        if len(healthy) * 2 < len(self.hosts):
            return self.hosts
        return healthy

    def pick(self, original_destination: tuple[str, int] | None = None) -> Host | None:
        """Choose a host; None when the cluster has none (Envoy's "no healthy upstream")."""
        if self.cluster.kind == "ORIGINAL_DST":
            if original_destination is None:
                return None
            host = self._by_address.get(original_destination)
            if host is None:
                host = Host(*original_destination)
                self._by_address[original_destination] = host
                self.hosts.append(host)
            return host
        hosts = self.hosts
        if len(hosts) == 1:  # `_healthy` in short: a lone host is never excluded (panic)
            host = hosts[0]
            ejected = 1 if host.ejected_until and host.ejected_until > self._clock() else 0
            self.stats.outlier_detection_ejections_active.value = ejected
            return host
        hosts = self._healthy()
        if not hosts:
            return None
        if len(hosts) == 1:
            return hosts[0]
        if self.cluster.lb_policy == "LEAST_REQUEST":
            first = hosts[self._randrange(len(hosts))]
            second = hosts[self._randrange(len(hosts))]
            return first if first.active_requests <= second.active_requests else second
        if all(host.weight == 1 for host in hosts):
            self._rr = (self._rr + 1) % len(hosts)
            return hosts[self._rr]
        # smooth weighted round robin
        total = 0
        best = hosts[0]
        for host in hosts:
            host.current_weight += host.weight
            total += host.weight
            if host.current_weight > best.current_weight:
                best = host
        best.current_weight -= total
        return best

    # -- outlier detection -------------------------------------------------------------------
    def record(self, host: Host, failed: bool) -> None:
        """Record a response (failed = 5xx or local failure) for consecutive-5xx ejection."""
        detection = self.cluster.outlier_detection
        if detection is None or not detection.consecutive_5xx:
            return
        if not failed:
            host.consecutive_5xx = 0
            return
        host.consecutive_5xx += 1
        if host.consecutive_5xx < detection.consecutive_5xx:
            return
        host.consecutive_5xx = 0
        now = self._clock()
        ejected = sum(1 for item in self.hosts if item.ejected_until > now)
        if ejected and ejected * 100 >= detection.max_ejection_percent * len(self.hosts):
            return
        host.ejections += 1
        host.ejected_until = now + detection.base_ejection_time * host.ejections
        self.stats.outlier_detection_ejections_enforced_total.value += 1

    # -- circuit breakers and pools ------------------------------------------------------
    def start_request(self) -> None:
        """Count a request against max_requests; raises Overflow."""
        if self.rq_active >= self.cluster.circuit_breakers.max_requests:
            self.stats.upstream_rq_pending_overflow.value += 1
            raise Overflow()
        self.rq_active += 1
        self.stats.upstream_rq_active.value = self.rq_active
        self.stats.upstream_rq_total.value += 1

    def end_request(self) -> None:
        self.rq_active -= 1
        self.stats.upstream_rq_active.value = self.rq_active

    def try_retry(self) -> bool:
        if self.retries_active >= self.cluster.circuit_breakers.max_retries:
            return False
        self.retries_active += 1
        self.stats.upstream_rq_retry.value += 1
        return True

    def end_retry(self) -> None:
        self.retries_active -= 1

    async def connect(self, host: Host) -> transport.Connection:
        """A new connection to `host`, counted against max_connections by the caller."""
        try:
            try:
                target = self._tls_target()
            except (KeyError, tls.TlsConfigError) as error:
                raise ConnectFailure(f"no upstream TLS context: {error}") from None
            connection = await open_connection(
                host.address,
                host.port,
                self.cluster.connect_timeout,
                target,
                (self.stats.upstream_cx_rx_bytes_total, self.stats.upstream_cx_tx_bytes_total),
            )
        except ConnectFailure as failure:
            self.stats.upstream_cx_connect_fail.value += 1
            if failure.timed_out:
                self.stats.upstream_cx_connect_timeout.value += 1
            raise
        return connection

    def _opened(self, host: Host) -> None:
        self.cx_active += 1
        host.cx_active += 1
        self.stats.upstream_cx_total.value += 1
        self.stats.upstream_cx_active.value = self.cx_active

    def _closed(self, host: Host) -> None:
        self.cx_active -= 1
        host.cx_active -= 1
        self.stats.upstream_cx_active.value = self.cx_active
        self.stats.upstream_cx_destroy.value += 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        waiters = self._waiters
        self._waiters = collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def take_idle(self, host: Host) -> UpstreamHttp | None:
        """A reusable idle connection to `host` (the most recent), or None."""
        while host.idle:
            upstream = host.idle.pop()
            upstream.pool = None
            if upstream.reusable:
                return upstream
            self._discard(upstream)
        return None

    async def acquire_http(self, host: Host) -> UpstreamHttp:
        """An idle or new HTTP connection to `host`; waits as a pending request when the
        cluster is at max_connections. Raises Overflow or ConnectFailure."""
        while True:
            idle = self.take_idle(host)
            if idle is not None:
                return idle
            if self.cx_active < self.cluster.circuit_breakers.max_connections:
                generation = self.generation  # an update while connecting drains it too
                self._opened(host)
                try:
                    connection = await self.connect(host)
                except BaseException as error:
                    self._closed(host)
                    if isinstance(error, ConnectFailure):
                        self.stats.upstream_rq_pending_failure_eject.value += 1
                    raise
                return UpstreamHttp(connection, host, generation)
            self.stats.upstream_cx_overflow.value += 1
            if self.pending >= self.cluster.circuit_breakers.max_pending_requests:
                self.stats.upstream_rq_pending_overflow.value += 1
                raise Overflow()
            self.pending += 1
            self.stats.upstream_rq_pending_total.value += 1
            self.stats.upstream_rq_pending_active.value = self.pending
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self.pending -= 1
                self.stats.upstream_rq_pending_active.value = self.pending

    def release_http(self, upstream: UpstreamHttp, reusable: bool) -> None:
        """Give a connection back after a response: pooled when reusable and opened under
        the current Cluster, else closed."""
        limit = self.cluster.max_requests_per_connection
        host = upstream.host
        if (
            reusable
            and upstream.generation == self.generation
            and upstream.reusable
            and (limit is None or upstream.requests < limit)
            and self._by_address.get(host.key) is host
        ):
            host.idle.append(upstream)
            upstream.pool = self
            self._wake_one()
            return
        self._discard(upstream)

    def _discard(self, upstream: UpstreamHttp) -> None:
        if not upstream.discarded:
            upstream.discarded = True
            upstream.connection.close()
            self._closed(upstream.host)

    def adopt_tunnel(self, upstream: UpstreamHttp) -> Callable[[], None]:
        """An upgraded connection leaves the pool; call the result when the tunnel ends."""
        return lambda: self._discard(upstream)
