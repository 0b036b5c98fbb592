"""Listeners: accept, pick a filter chain, terminate TLS, apply network RBAC, then proxy.

The one idea: each accepted connection runs one short setup coroutine (original
destination, ClientHello sniffing, filter-chain match, TLS handshake, network RBAC) and
is then handed to its terminal filter: a `tcp_relay.TcpRelay` (bytes both ways, half-close
propagated, no coroutine at all) or an `http_session.HttpSession` (one coroutine per
connection that parses requests sans-IO, routes them and forwards them over pooled upstream
connections, serving the common exchange from the data callbacks without waking it). A
listener update changes what *new* connections get; existing HTTP connections finish their
current request and close (drain), TCP relays run to their end.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any, cast

from osm.proxy import (
    filter_chain,
    http_session,
    model,
    rbac,
    router,
    stats,
    tcp_relay,
    tls,
    transport,
    upstream,
)
from osm.proxy.runtime import Runtime

log = logging.getLogger(__name__)


class _Accepted(transport.Connection):
    def __init__(self, listener: ListenerRuntime):
        super().__init__()
        self._listener = listener

    def connection_made(self, transport_: asyncio.BaseTransport) -> None:
        super().connection_made(transport_)
        self._listener.accepted(self)


class ListenerRuntime:
    """One bound listener. `update` swaps the config new connections get."""

    def __init__(self, runtime: Runtime, listener: model.Listener):
        self.runtime = runtime
        self.listener = listener
        self.generation = 0
        self.draining = False
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._connections: set[transport.Connection] = set()
        self.address = ("", 0)
        self.stats: stats.ListenerStats | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Accepted(self), host, port, reuse_address=True, backlog=1024
        )
        # uvloop's `sockets` is a list, typeshed says tuple: compiled (mypyc) code checks.
        sockname = next(iter(cast(Any, self.server).sockets)).getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        self.stats = stats.ListenerStats(
            self.runtime.stats, f"{self.listener.host}_{self.listener.port}"
        )

    def update(self, listener: model.Listener) -> None:
        if listener != self.listener:
            self.listener = listener
            self.generation += 1

    def track(self, future: asyncio.Future[Any]) -> None:
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    def accepted(self, connection: transport.Connection) -> None:
        if self.draining:
            connection.abort()
            return
        self._connections.add(connection)
        task = asyncio.get_running_loop().create_task(self._serve(connection))
        self.track(task)

    async def drain(self, timeout: float) -> None:
        """Stop accepting; let connections finish for `timeout`, then close them."""
        self.draining = True
        if self.server is not None:
            self.server.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for connection in list(self._connections):
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)

    async def _serve(self, connection: transport.Connection) -> None:
        try:
            await self._setup_and_run(connection)
        except Exception:
            log.exception("listener %s: connection failed", self.listener.name)
            connection.abort()
        finally:
            self._connections.discard(connection)

    async def _setup_and_run(self, connection: transport.Connection) -> None:
        runtime = self.runtime
        options = runtime.options
        listener = self.listener
        listener_stats = self.stats
        assert listener_stats is not None
        listener_stats.downstream_cx_total.value += 1
        listener_stats.downstream_cx_active.value += 1
        try:
            sock = connection.extra("socket")
            if listener.use_original_dst and sock is not None:
                destination = options.original_destination(sock)
            else:
                sockname = connection.extra("sockname")
                destination = (str(sockname[0]), int(sockname[1]))
            server_name, transport_protocol = "", "raw_buffer"
            alpn: tuple[str, ...] = ()
            sniff_tls = filter_chain.needs_inspection(listener, destination[1])
            sniff_http = filter_chain.needs_http_inspection(listener, destination[1])
            while sniff_tls or sniff_http:
                data = bytes(connection._buffer.data)
                if sniff_tls:
                    hello = tls.parse_client_hello(data)
                    if isinstance(hello, tls.ClientHello):
                        server_name, transport_protocol, alpn = hello.server_name, "tls", hello.alpn
                        break
                    sniff_tls = hello != tls.NOT_TLS
                if not sniff_tls and sniff_http:
                    protocol = filter_chain.http_protocol(data)
                    if protocol is not None:
                        alpn = (protocol,) if protocol else ()
                        break
                if not (sniff_tls or sniff_http):
                    break
                if not await connection.read_some(options.inspect_timeout):
                    break
            remote = connection.extra("peername")
            chain = filter_chain.select_filter_chain(
                listener,
                destination[0],
                destination[1],
                server_name,
                transport_protocol,
                alpn,
                str(remote[0]) if remote else "",
            )
            if chain is None:
                listener_stats.no_filter_chain_match.value += 1
                connection.abort()
                return
            if chain.rate_limit is not None and not runtime.admits(chain.rate_limit):
                connection.abort()  # Envoy's local_ratelimit closes it at once (NoFlush)
                return
            peer = rbac.ANONYMOUS
            if chain.tls is not None:
                try:
                    context = runtime.server_context(chain.tls)
                except (KeyError, tls.TlsConfigError) as error:
                    log.warning("listener %s: no TLS context: %s", listener.name, error)
                    connection.abort()
                    return
                initial, _ = connection.take_buffered()
                try:
                    await connection.start_tls(
                        context,
                        server_side=True,
                        initial=initial,
                        timeout=options.handshake_timeout,
                    )
                except transport.HandshakeError:
                    listener_stats.ssl_handshake_error.value += 1
                    connection.abort()
                    return
                certificate = connection.tls_peer_certificate
                if not tls.sans_match(runtime.downstream_san_matchers(chain.tls), certificate):
                    listener_stats.ssl_handshake_error.value += 1
                    connection.abort()
                    return
                peer = rbac.Peer(tls.principal_names(certificate))
            if chain.network_rbac is not None:
                rbac_stats = runtime.rbac_stats_for(chain.network_rbac.stat_prefix)
                if not rbac.evaluate(chain.network_rbac.rules, peer, destination[1]):
                    rbac_stats.denied.value += 1
                    connection.abort()  # Envoy closes the connection
                    return
                rbac_stats.allowed.value += 1
            terminal = chain.terminal
            if isinstance(terminal, model.TcpProxy):
                await self._run_tcp(connection, terminal, destination)
            else:
                session = http_session.HttpSession(
                    runtime, self, terminal, connection, peer, destination
                )
                initial, eof = connection.take_buffered()
                connection.set_consumer(session)
                if initial:
                    session.data_received(initial)
                if eof or connection.eof:
                    session.eof_received()
                if connection.closed:
                    session.connection_lost(None)
                await session.run()
        finally:
            listener_stats.downstream_cx_active.value -= 1

    async def _run_tcp(
        self, connection: transport.Connection, proxy: model.TcpProxy, destination: tuple[str, int]
    ) -> None:
        runtime = self.runtime
        tcp_stats = runtime.tcp_stats_for(proxy.stat_prefix)
        tcp_stats.downstream_cx_total.value += 1
        total = sum(target.weight for target in proxy.targets)
        cluster_name = router.choose(proxy.targets, total, runtime.options.randrange)
        cluster = runtime.clusters.get(cluster_name)
        host = cluster.pick(destination) if cluster is not None else None
        if cluster is None or host is None:
            tcp_stats.downstream_cx_no_route.value += 1
            connection.abort()
            return
        if cluster.cx_active >= cluster.cluster.circuit_breakers.max_connections:
            cluster.stats.upstream_cx_overflow.value += 1
            connection.abort()
            return
        cluster._opened(host)
        try:
            try:
                upstream_connection = await cluster.connect(host)
            except upstream.ConnectFailure:
                cluster.record(host, True)
                connection.abort()
                return
            cluster.record(host, False)
            relay = tcp_relay.TcpRelay(
                connection, upstream_connection, proxy.idle_timeout, runtime.options.clock
            )
            initial, eof = connection.take_buffered()
            # What a server-first protocol (gRPC's SETTINGS, SMTP, MySQL) sent while the
            # connection was being set up waits in the upstream's buffer.
            up_initial, _ = upstream_connection.take_buffered()
            relay.start(initial, up_initial, eof)
            await relay.finished
            tcp_stats.downstream_cx_rx_bytes_total.value += relay.down_side.bytes
            tcp_stats.downstream_cx_tx_bytes_total.value += relay.up_side.bytes
            if runtime.access_log.enabled:
                runtime.access_log.write(
                    {
                        "start_time": datetime.datetime.now(datetime.UTC).isoformat(),
                        "protocol": "TCP",
                        "bytes_received": relay.down_side.bytes,
                        "bytes_sent": relay.up_side.bytes,
                        "upstream_host": host.label,
                        "upstream_cluster": cluster.cluster.name,
                    }
                )
        finally:
            cluster._closed(host)
