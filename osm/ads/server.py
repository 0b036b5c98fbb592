"""The ADS gRPC server: grpc.aio around the stream machines, the cache and proxy auth.

One idea: this module is only the edge. Each gRPC stream gets a sans-IO machine
(`sotw.SotwStream` or `delta.DeltaStream`) and one cache `SnapshotWatch`; a reader task feeds
requests in and a loop writes whatever the machine says is due, whenever a request arrives
or the node's snapshot changes. The first request admits the proxy: its node id must parse
(`node.NodeId`) and, with TLS, match the client certificate's SPIFFE ID (`auth`), or the
stream ends with INVALID_ARGUMENT / PERMISSION_DENIED. A proxy is only ever served the
snapshot stored under its own node id.

Everything runs on the asyncio loop that runs the server; the cache, the callbacks and
`status()` are used from that loop only (see `cache`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from prometheus_client import CollectorRegistry

from osm.ads import auth, delta, resources, sotw
from osm.ads.cache import SnapshotCache, SnapshotWatch
from osm.ads.metrics import AdsMetrics
from osm.ads.protocol import Ack, Event, Nack, ProtocolError
from osm.ads.resources import AdsSnapshot
from osm.base import wellknown
from osm.base.identity import TRUST_DOMAIN, InvalidNodeId, NodeId

log = logging.getLogger(__name__)

"""OSM's xDS port."""

MAX_PENDING_STREAMS = 65536
LARGE_RESPONSE_BYTES = 4 * 2**20
"""gRPC clients refuse a larger message unless told otherwise (grpcio's default, and our
sidecar's `xds.max_receive_message_length`): the server warns, once per stream and type,
when it sends one."""
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    # gRPC core queues new streams that the (busy) event loop has not picked up yet, and
    # by default fails every stream beyond 3,000 queued ones with INTERNAL. Thousands of
    # proxies (re)connecting at once, say after a controller restart, exceed that.
    ("grpc.server.max_pending_requests", MAX_PENDING_STREAMS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_STREAMS),
]


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM bytes of the server's certificate chain and key, and the roots that client
    certificates must chain to (the mesh trust bundle)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    trust_bundle_pem: bytes


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where and how the server listens. `tls=None` is insecure mode (plaintext, node ids
    trusted as sent): for local development and grpcio's xDS client in tests only."""

    host: str = "127.0.0.1"
    port: int = wellknown.XDS_PORT
    tls: TlsConfig | None = None
    trust_domain: str = TRUST_DOMAIN


@dataclass(frozen=True, slots=True)
class ConnectedProxy:
    """A connected stream, as the callbacks see it. `node` is the first request's node."""

    node_id: NodeId
    node: base_pb2.Node
    stream_id: int
    protocol: str
    peer: str
    authenticated: bool
    connected_since: datetime


class ProxyCallbacks:
    """Hooks for the controller; override what you need (the defaults do nothing).

    All run synchronously on the server's loop and must not block. `on_connect` runs once a
    stream is admitted and before anything is sent: a controller that has no snapshot for
    `str(proxy.node_id)` yet builds one (now, or in a task it starts) and sets it in the
    cache; the stream waits for it. Exceptions are logged and otherwise ignored.
    """

    def on_connect(self, proxy: ConnectedProxy) -> None:
        """A stream was admitted."""

    def on_disconnect(self, proxy: ConnectedProxy) -> None:
        """The stream ended, for whatever reason."""

    def on_ack(self, proxy: ConnectedProxy, ack: Ack) -> None:
        """The proxy applied a response."""

    def on_nack(self, proxy: ConnectedProxy, nack: Nack) -> None:
        """The proxy rejected a response and keeps its previous configuration."""


@dataclass(frozen=True, slots=True)
class NackRecord:
    """The last rejection a proxy sent: what, when, and its message."""

    type: str
    version: str
    resource_names: tuple[str, ...]
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """One connected stream, as ``osm proxy status`` shows it. Plain data; types are the
    short names (``CDS``...)."""

    node_id: str
    identity: str
    kind: str
    protocol: str
    peer: str
    authenticated: bool
    connected_since: datetime
    acked_versions: Mapping[str, str]
    last_nack: NackRecord | None
    requests: int
    responses: int
    user_agent: str = ""
    """The node's ``user_agent_name`` (``envoy``, the Python sidecar's, a gRPC client's)."""


class _Machine(Protocol):
    @property
    def node(self) -> base_pb2.Node | None: ...

    @property
    def type_urls(self) -> frozenset[str]: ...

    def acked_versions(self) -> dict[str, str]: ...

    def receive(self, request: Any) -> list[Event]: ...

    def respond(self, snapshot: AdsSnapshot | None) -> list[Any]: ...


@dataclass(slots=True)
class _Connection:
    proxy: ConnectedProxy
    machine: _Machine
    requests: int = 0
    responses: int = 0
    last_nack: NackRecord | None = None
    sent_at: dict[str, tuple[str, float]] = field(default_factory=dict)
    warned_large: set[str] = field(default_factory=set)  # types warned about, once each


class AdsServerError(Exception):
    """The server cannot start (say, its port is taken); said for the user."""


class AdsServer:
    """The xDS server of the controller. Create, `await start()`, `await stop()`.

    `cache` is shared with the controller, which sets each proxy's snapshot under the node
    id text (``str(NodeId)``). Metrics are registered in `registry`, once per server.
    """

    def __init__(
        self,
        cache: SnapshotCache,
        registry: CollectorRegistry,
        config: ServerConfig | None = None,
        callbacks: ProxyCallbacks | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.config = config or ServerConfig()
        self.callbacks = callbacks or ProxyCallbacks()
        self.metrics = AdsMetrics.create(registry)
        self.servicer = _Servicer(self)
        self.port = self.config.port
        self._clock = clock
        self._monotonic = monotonic
        self._stream_ids = itertools.count(1)
        self._connections: dict[int, _Connection] = {}
        self._seen: set[str] = set()
        self._server: grpc.aio.Server | None = None
        self._tls = self.config.tls
        self._tls_changed = False

    async def start(self) -> None:
        """Listen on `config.host:config.port` (port 0: any; read `self.port` after)."""
        server = grpc.aio.server(options=SERVER_OPTIONS)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.servicer, server)
        address = f"{self.config.host}:{self.config.port}"
        try:
            if self._tls is None:
                log.warning("xDS server on %s is INSECURE: no TLS, node ids trusted", address)
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self._credentials(self._tls))
        except RuntimeError as error:
            raise AdsServerError(f"cannot listen on {address}: {error}") from error
        if port == 0:
            raise AdsServerError(f"cannot listen on {address}")
        await server.start()
        self._server = server
        self.port = port
        log.info("xDS server listening on %s:%d", self.config.host, port)

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting streams and end the open ones after `grace` seconds."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def update_tls(self, tls: TlsConfig) -> None:
        """Serve with new certificates (rotation); applies to handshakes from now on.
        Only for a server started with TLS."""
        if self._tls is None:
            raise AdsServerError("the xDS server was started without TLS")
        self._tls = tls
        self._tls_changed = True

    def status(self) -> list[ProxyStatus]:
        """One entry per open stream, sorted by node id; new objects owned by the caller."""
        entries = []
        for connection in self._connections.values():
            proxy = connection.proxy
            acked = {
                wellknown.short_name(t): v
                for t, v in sorted(
                    connection.machine.acked_versions().items(),
                    key=lambda item: resources.order_key(item[0]),
                )
            }
            entries.append(
                ProxyStatus(
                    node_id=str(proxy.node_id),
                    identity=str(proxy.node_id.identity),
                    kind=proxy.node_id.kind.value,
                    protocol=proxy.protocol,
                    peer=proxy.peer,
                    authenticated=proxy.authenticated,
                    connected_since=proxy.connected_since,
                    acked_versions=MappingProxyType(acked),
                    last_nack=connection.last_nack,
                    requests=connection.requests,
                    responses=connection.responses,
                    user_agent=proxy.node.user_agent_name,
                )
            )
        return sorted(entries, key=lambda s: (s.node_id, s.connected_since))

    def _credentials(self, tls: TlsConfig) -> grpc.ServerCredentials:
        def configuration(config: TlsConfig) -> Any:
            return grpc.ssl_server_certificate_configuration(
                [(config.key_pem, config.cert_pem)], root_certificates=config.trust_bundle_pem
            )

        def fetch() -> Any:
            # Called by gRPC (from one of its threads) before each handshake.
            if not self._tls_changed or self._tls is None:
                return None
            self._tls_changed = False
            return configuration(self._tls)

        return grpc.dynamic_ssl_server_credentials(
            configuration(tls), fetch, require_client_authentication=True
        )

    async def serve_stream(
        self,
        protocol: str,
        machine: _Machine,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Run one ADS stream to its end (used by the servicer)."""
        inbox: collections.deque[Any] = collections.deque()
        wake = asyncio.Event()
        ended: list[BaseException | None] = []

        async def read() -> None:
            try:
                async for request in requests:
                    inbox.append(request)
                    wake.set()
                ended.append(None)
            except Exception as error:
                ended.append(error)
            finally:
                wake.set()

        reader = asyncio.create_task(read())
        connection: _Connection | None = None
        watch: SnapshotWatch | None = None
        try:
            while True:
                await wake.wait()
                wake.clear()
                while inbox:
                    request = inbox.popleft()
                    events = machine.receive(request)
                    if connection is None:
                        connection = await self._admit(protocol, machine, context)
                        watch = self.cache.watch(str(connection.proxy.node_id), wake.set)
                        self._connect(connection)
                    assert watch is not None
                    watch.set_types(machine.type_urls)
                    self._observe(connection, request.type_url, events)
                if ended:
                    return
                if connection is not None:
                    await self._respond(connection, context)
        except ProtocolError as error:
            log.warning("xDS protocol error from %s: %s", context.peer(), error)
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        finally:
            reader.cancel()
            if watch is not None:
                watch.cancel()
            if connection is not None:
                self._disconnect(connection)

    async def _admit(
        self, protocol: str, machine: _Machine, context: grpc.aio.ServicerContext[Any, Any]
    ) -> _Connection:
        node = machine.node
        assert node is not None
        try:
            node_id = NodeId.parse(node.id)
        except InvalidNodeId as error:
            log.warning("xDS stream from %s refused: %s", context.peer(), error)
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        if self._tls is not None:
            peer = auth.Peer.from_auth_context(context.auth_context())
            try:
                auth.authenticate(peer, node_id, self.config.trust_domain)
            except auth.AuthenticationError as error:
                self.metrics.auth_refused.inc()
                log.warning("xDS stream from %s refused: %s", context.peer(), error)
                await _abort(context, grpc.StatusCode.PERMISSION_DENIED, str(error))
        proxy = ConnectedProxy(
            node_id=node_id,
            node=node,
            stream_id=next(self._stream_ids),
            protocol=protocol,
            peer=context.peer(),
            authenticated=self._tls is not None,
            connected_since=self._clock(),
        )
        return _Connection(proxy, machine)

    def _connect(self, connection: _Connection) -> None:
        proxy = connection.proxy
        key = str(proxy.node_id)
        self._connections[proxy.stream_id] = connection
        self.metrics.connected.inc()
        if key in self._seen:
            self.metrics.reconnects.inc()
        self._seen.add(key)
        log.info("proxy %s connected (%s, %s)", key, proxy.protocol, proxy.peer)
        self._call(self.callbacks.on_connect, proxy)

    def _disconnect(self, connection: _Connection) -> None:
        proxy = connection.proxy
        self._connections.pop(proxy.stream_id, None)
        self.metrics.connected.dec()
        log.info("proxy %s disconnected", proxy.node_id)
        self._call(self.callbacks.on_disconnect, proxy)

    def _observe(self, connection: _Connection, type_url: str, events: list[Event]) -> None:
        short = _label(type_url)
        connection.requests += 1
        self.metrics.requests.labels(short).inc()
        proxy = connection.proxy
        for event in events:
            if isinstance(event, Ack | Nack):
                sent = connection.sent_at.pop(event.type_url, None)
                if sent is not None and sent[0] == event.nonce:
                    success = "true" if isinstance(event, Ack) else "false"
                    elapsed = self._monotonic() - sent[1]
                    self.metrics.update_time.labels(short, success).observe(elapsed)
            if isinstance(event, Ack):
                self._call(self.callbacks.on_ack, proxy, event)
            elif isinstance(event, Nack):
                self.metrics.nacks.labels(short).inc()
                connection.last_nack = NackRecord(
                    short, event.version, event.resource_names, event.message, self._clock()
                )
                log.warning("proxy %s: %s", proxy.node_id, event.describe())
                self._call(self.callbacks.on_nack, proxy, event)
            else:
                log.debug("proxy %s: stale nonce %r for %s", proxy.node_id, event.nonce, short)

    async def _respond(
        self, connection: _Connection, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        snapshot = self.cache.get(str(connection.proxy.node_id))
        for response in connection.machine.respond(snapshot):
            short = _label(response.type_url)
            size = _resources_size(response)
            if size > LARGE_RESPONSE_BYTES and short not in connection.warned_large:
                connection.warned_large.add(short)
                log.warning(
                    "proxy %s: a %s response of %.1f MiB is over the %d MiB that gRPC clients "
                    "accept by default; one that keeps that limit (grpcio, or our sidecar "
                    "without xds.max_receive_message_length in its bootstrap) refuses it and "
                    "reconnects",
                    connection.proxy.node_id,
                    short,
                    size / 2**20,
                    LARGE_RESPONSE_BYTES // 2**20,
                )
            try:
                await context.write(response)
            except Exception:
                self.metrics.send_errors.labels(short).inc()
                raise
            connection.responses += 1
            connection.sent_at[response.type_url] = (response.nonce, self._monotonic())
            self.metrics.sent.labels(short).inc()

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("xDS server callback %s failed", getattr(callback, "__name__", "?"))


def _resources_size(
    response: discovery_pb2.DiscoveryResponse | discovery_pb2.DeltaDiscoveryResponse,
) -> int:
    """The bytes of the packed resources a response carries: its size but for a few bytes
    of framing, without serialising it twice."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return sum(len(item.resource.value) for item in response.resources)
    return sum(len(item.value) for item in response.resources)


def _label(type_url: str) -> str:
    """The metric label of a type: its short name, or "other" (clients choose type URLs,
    and labels must stay few)."""
    return wellknown.SHORT_NAMES.get(type_url, "other")


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str
) -> NoReturn:
    """End the stream with `code`; `context.abort` raises, this says so to the type checker."""
    await context.abort(code, message)
    raise AssertionError("grpc.aio context.abort returned")


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """The generated servicer's two methods, each handing its stream to `AdsServer`."""

    def __init__(self, server: AdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        await self._server.serve_stream("sotw", sotw.SotwStream(), requests, context)

    async def DeltaAggregatedResources(
        self,
        requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        await self._server.serve_stream("delta", delta.DeltaStream(), requests, context)
