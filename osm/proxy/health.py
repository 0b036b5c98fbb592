"""The sidecar's probe ports: the kubelet's rewritten probes, forwarded to the app.

One idea: the injector points an app's httpGet probes at the sidecar (`osm.injector.probes`)
and writes the original targets into the bootstrap (`bootstrap.HealthProbe`); this module
serves them as Envoy's static probe listeners do (`osm.injector.envoy_bootstrap`), so a
probe gets the same answer from either data plane. It is no part of the per-request data
path and needs nothing from xDS; `main.Sidecar` binds its ports with the admin interface
and has them listen once the first configuration is applied, as Envoy's listeners start
(a probe is refused until then, or until Envoy's initial-fetch timeouts would have passed).

For each kind present, a listener on 0.0.0.0 at the kind's port (`wellknown`), named as
Envoy's (``liveness_listener``...; the bootstrap's ``listeners`` overrides bind it
elsewhere):

- **HTTP**: a request whose target starts with ``/osm-<kind>-probe`` goes to
  127.0.0.1:<port> with that prefix replaced by the original path (Envoy's
  ``prefix_rewrite``), its method, headers (hop-by-hop ones dropped) and body (at most
  `MAX_BODY` bytes) kept, ``x-forwarded-proto`` and ``x-envoy-original-path`` added; the
  app's status, headers and body come back. Envoy's statuses otherwise, measured on Envoy
  1.40: 404 for another target, 426 for HTTP/1.0, 400 for a malformed request, 503 when
  the app refuses the connection or closes it before answering, 502 for an answer that is
  not HTTP, 504 when no answer has come within the probe's timeout (a response whose head
  was sent is cut off instead, as Envoy resets it).
- **HTTPS**: a TCP pass-through to 127.0.0.1:<port> (the kubelet's TLS is the app's);
  when the app is down the connection is accepted and closed.

Where it differs from Envoy: one request per connection (each answer says
``connection: close``, as the kubelet's probes ask anyway), and no ``server``, ``date``
or ``x-envoy-*`` response headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Final

from osm.base import wellknown
from osm.proxy import bootstrap, http1

log = logging.getLogger(__name__)

ANY_ADDRESS: Final = "0.0.0.0"
UPSTREAM_HOST: Final = wellknown.LOCALHOST
"""Where the app's original probe target is: the pod's loopback."""
HEADER_TIMEOUT: Final = 10.0
"""Seconds a client has to send a whole request."""
CONNECT_TIMEOUT: Final = 5.0
"""Seconds to connect to the app for a pass-through (Envoy's default cluster
``connect_timeout``); an HTTP probe's own timeout bounds its connect too."""
IDLE_TIMEOUT: Final = 3600.0
"""Seconds a pass-through may carry nothing before it is closed (Envoy's ``tcp_proxy``
default ``idle_timeout``)."""
MAX_BODY: Final = 64 * 1024
"""The largest request body forwarded (a probe has none); larger ones are answered 413."""

_KINDS: Final[Mapping[str, tuple[int, str]]] = {
    "liveness": (wellknown.LIVENESS_PROBE_PORT, wellknown.LIVENESS_PROBE_PATH),
    "readiness": (wellknown.READINESS_PROBE_PORT, wellknown.READINESS_PROBE_PATH),
    "startup": (wellknown.STARTUP_PROBE_PORT, wellknown.STARTUP_PROBE_PATH),
}


def listener_name(kind: str) -> str:
    """``liveness_listener`` and so on: the name of Envoy's listener for the kind."""
    return f"{kind}_listener"


def probe_port(kind: str) -> int:
    """The port the kubelet probes for `kind`."""
    return _KINDS[kind][0]


def probe_path(kind: str) -> str:
    """The path prefix the kubelet probes for `kind` (HTTP probes)."""
    return _KINDS[kind][1]


def rewrite_target(target: str, prefix: str, path: str) -> str | None:
    """`target` with `prefix` replaced by `path` (Envoy's route ``prefix`` match and
    ``prefix_rewrite``: plain string prefixes, query included); None when it does not
    start with `prefix`."""
    if not target.startswith(prefix):
        return None
    return path + target[len(prefix) :]


def _reset_text(reason: str) -> str:
    return f"upstream connect error or disconnect/reset before headers. reset reason: {reason}"


class _Reply(Exception):
    """A local reply instead of the app's: the status and a short reason."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


class HealthServer:
    """The probe listeners of one sidecar: `bind()`, later `await serve()` (or both at
    once: `await start()`), then `await close()`.

    Between `bind` and `serve` each port is taken but not listening, so a probe is refused
    as Envoy refuses it before its workers start. `bind_overrides` maps a listener's name to
    where it binds instead (tests); `upstream_host` is where the app is (the pod's
    loopback). Event-loop only.
    """

    def __init__(
        self,
        probes: Sequence[bootstrap.HealthProbe],
        bind_overrides: Mapping[str, tuple[str, int]] | None = None,
        *,
        upstream_host: str = UPSTREAM_HOST,
    ) -> None:
        self.probes = tuple(probes)
        self.bind_overrides = dict(bind_overrides or {})
        self.upstream_host = upstream_host
        self.addresses: dict[str, tuple[str, int]] = {}
        """Where each listener is bound, by name (once bound)."""
        self._sockets: list[tuple[bootstrap.HealthProbe, socket.socket]] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def serving(self) -> bool:
        return bool(self._servers)

    def bind_address(self, probe: bootstrap.HealthProbe) -> tuple[str, int]:
        name = listener_name(probe.kind)
        return self.bind_overrides.get(name, (ANY_ADDRESS, probe_port(probe.kind)))

    def bind(self) -> None:
        """Take every probe's port; raises OSError (having released what it took) when one
        cannot be bound, the message naming the probe and the address."""
        for probe in self.probes:
            host, port = self.bind_address(probe)
            try:
                sock = _bound_socket(host, port)
            except OSError as error:
                self._release()
                raise OSError(
                    error.errno,
                    f"cannot serve the {probe.kind} probe on {host}:{port}: "
                    f"{error.strerror or error}",
                ) from None
            self._sockets.append((probe, sock))
            sockname = sock.getsockname()
            self.addresses[listener_name(probe.kind)] = (str(sockname[0]), int(sockname[1]))

    async def serve(self) -> None:
        """Listen on the bound ports (again: nothing)."""
        sockets, self._sockets = self._sockets, []
        for probe, sock in sockets:
            self._servers.append(await asyncio.start_server(self._handler(probe), sock=sock))
            log.info(
                "%s probe on %s:%d -> %s %s:%d%s",
                probe.kind,
                *self.addresses[listener_name(probe.kind)],
                probe.scheme,
                self.upstream_host,
                probe.port,
                probe.path if probe.scheme == "HTTP" else "",
            )

    async def start(self) -> None:
        """`bind`, then `serve`."""
        self.bind()
        await self.serve()

    async def close(self) -> None:
        """Stop listening, release the ports, end the probes in progress."""
        self._release()
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def _release(self) -> None:
        sockets, self._sockets = self._sockets, []
        for _, sock in sockets:
            sock.close()

    def _handler(
        self, probe: bootstrap.HealthProbe
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]:
        serve = self._forward_http if probe.scheme == "HTTP" else self._pass_through

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await serve(probe, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                if task is not None:
                    self._tasks.discard(task)

        return handle

    # -- HTTP ------------------------------------------------------------------------------
    async def _forward_http(
        self,
        probe: bootstrap.HealthProbe,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                request = await _read_request(reader)
        except TimeoutError:
            return
        except http1.ProtocolError as error:
            writer.write(http1.local_reply(error.status, error.message, False))
            await writer.drain()
            return
        if request is None:
            return
        head, body = request
        try:
            target = self._target(probe, head)
            await self._exchange(probe, head, target, body, writer)
        except _Reply as reply:
            log.debug("%s probe %s: %d %s", probe.kind, head.target, reply.status, reply.body)
            writer.write(http1.local_reply(reply.status, reply.body, False))
            await writer.drain()

    @staticmethod
    def _target(probe: bootstrap.HealthProbe, head: http1.RequestHead) -> str:
        if head.version != "1.1":
            raise _Reply(426, "Upgrade Required")
        target = rewrite_target(head.target, probe_path(probe.kind), probe.path)
        if target is None:
            raise _Reply(404, "")
        return target

    async def _exchange(
        self,
        probe: bootstrap.HealthProbe,
        head: http1.RequestHead,
        target: str,
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Send the request to the app and its answer back, all within the probe's
        timeout; raises `_Reply` while nothing of the answer has been sent."""
        answered = False
        upstream: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(probe.timeout_seconds):
                try:
                    app_reader, upstream = await asyncio.open_connection(
                        self.upstream_host, probe.port
                    )
                except OSError:
                    raise _Reply(503, _reset_text("remote connection failure")) from None
                upstream.write(_request_bytes(head, target, body))
                parser = http1.ResponseParser()
                parser.expect(head.method)
                while True:
                    data = await app_reader.read(65536)
                    try:
                        events = parser.feed(data) if data else parser.feed_eof()
                    except http1.ProtocolError:
                        if answered:
                            return
                        reason = "protocol error" if data else "connection termination"
                        status = 502 if data else 503
                        raise _Reply(status, _reset_text(reason)) from None
                    for event in events:
                        if isinstance(event, http1.ResponseHead):
                            writer.write(_response_head(event))
                            answered = True
                        elif isinstance(event, http1.Data):
                            writer.write(event.data)
                        elif isinstance(event, http1.EndOfMessage):
                            await writer.drain()
                            return
                    if not data:
                        if answered:
                            return
                        raise _Reply(503, _reset_text("connection termination"))
                    await writer.drain()
        except TimeoutError:
            if not answered:
                raise _Reply(504, "upstream request timeout") from None
        except OSError:
            if not answered:
                raise _Reply(503, _reset_text("connection termination")) from None
        finally:
            if upstream is not None:
                upstream.close()

    # -- HTTPS: TCP pass-through -----------------------------------------------------------
    async def _pass_through(
        self,
        probe: bootstrap.HealthProbe,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                app_reader, app_writer = await asyncio.open_connection(
                    self.upstream_host, probe.port
                )
        except (OSError, TimeoutError):
            log.debug(
                "%s probe: cannot connect to %s:%d", probe.kind, self.upstream_host, probe.port
            )
            return
        try:
            await asyncio.gather(_pump(reader, app_writer), _pump(app_reader, writer))
        finally:
            app_writer.close()


def _bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port`, not listening yet."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _read_request(reader: asyncio.StreamReader) -> tuple[http1.RequestHead, bytes] | None:
    """One whole request, its head and body; None when the client closed first. Raises
    `http1.ProtocolError` for a malformed one, or a body over `MAX_BODY` bytes (413)."""
    parser = http1.RequestParser()
    head: http1.RequestHead | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        data = await reader.read(65536)
        if not data:
            return None
        for event in parser.feed(data):
            if isinstance(event, http1.RequestHead):
                head = event
            elif isinstance(event, http1.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise http1.ProtocolError(413, "Payload Too Large", "downstream")
                chunks.append(event.data)
            elif isinstance(event, http1.EndOfMessage) and head is not None:
                return head, b"".join(chunks)


def _request_bytes(head: http1.RequestHead, target: str, body: bytes) -> bytes:
    headers = [
        (name, value)
        for name, value in http1.strip_hop_by_hop(head.headers)
        if name not in ("content-length", "x-forwarded-proto", "x-envoy-original-path")
    ]
    if body or head.framing != "none":
        headers.append(("content-length", str(len(body))))
    headers.append(("x-forwarded-proto", "http"))
    headers.append(("x-envoy-original-path", head.target))
    headers.append(("connection", "close"))
    return http1.request_head(head.method, target, headers) + body


def _response_head(head: http1.ResponseHead) -> bytes:
    """The app's head as the client gets it: hop-by-hop headers dropped, the body
    delimited by its length or else by the connection's close."""
    headers = [
        (name, value)
        for name, value in http1.strip_hop_by_hop(head.headers)
        if head.framing == "length" or name != "content-length"
    ]
    headers.append(("connection", "close"))
    return http1.response_head(head.status, headers, head.reason)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until the source ends (then half-close the sink) or is idle `IDLE_TIMEOUT`."""
    try:
        while True:
            async with asyncio.timeout(IDLE_TIMEOUT):
                data = await source.read(65536)
            if not data:
                break
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (OSError, TimeoutError):
        sink.close()
