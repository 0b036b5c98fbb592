"""The sidecar's ADS transport: grpclib streams as `xds_client.Stream`s, grpcio nowhere.

The one idea: the sidecar needs exactly two bidirectional-streaming calls, and grpcio's C
core costs every pod 10-15 MB of RSS for them; grpclib (pure Python, on the ``h2``
library) makes them for a fraction of that. The calls are made by path with
``Channel.request`` and the envoy protos as codec types, so no generated stubs are needed
(``ads_pb2_grpc`` imports grpcio). `GrpclibConnector` opens each stream on a fresh
connection and `GrpclibStream` translates everything grpclib, ``h2``, ``ssl`` and the
socket can raise into `xds_client.StreamError`, with gRPC's status code names, at this
boundary.

mTLS as grpcio did it: the bootstrap's certificate, key and roots, read anew for every
connection (a renewed bootstrap certificate is picked up on reconnect), and the server's
certificate checked against ``tls.server_name`` (SNI and hostname verification) when set,
else against the host connected to. ``tls`` None is plaintext (an insecure controller).

A receive limit as grpcio had (4 MiB by default; the bootstrap's
``xds.max_receive_message_length``). grpclib has none (no option in 0.4.x;
vmagamedov/grpclib#195 asks for one), so the channel's codec checks each response's length
before decoding it and fails the call RESOURCE_EXHAUSTED, in grpc core's words. Like grpc
core's check, it runs once the message has arrived whole.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Final

from envoy.service.discovery.v3 import discovery_pb2
from grpclib import client, const, exceptions
from grpclib import config as grpclib_config
from grpclib.encoding import proto

from osm.base import address
from osm.proxy import bootstrap, xds_client

log = logging.getLogger(__name__)

SERVICE: Final = "/envoy.service.discovery.v3.AggregatedDiscoveryService"
METHODS: Final[dict[xds_client.ProtocolName, tuple[str, type[Any], type[Any]]]] = {
    "delta": (
        f"{SERVICE}/DeltaAggregatedResources",
        discovery_pb2.DeltaDiscoveryRequest,
        discovery_pb2.DeltaDiscoveryResponse,
    ),
    "sotw": (
        f"{SERVICE}/StreamAggregatedResources",
        discovery_pb2.DiscoveryRequest,
        discovery_pb2.DiscoveryResponse,
    ),
}
"""The ADS method of each protocol: its path, request type and response type."""

CONNECT_TIMEOUT = 20.0
"""Seconds for TCP connect and TLS handshake (gRPC's minimum connect timeout)."""


class _LimitedCodec(proto.ProtoCodec):
    """grpclib's protobuf codec, refusing a received message longer than `limit` bytes
    (raised as the call's status: `GrpclibStream` reports it as the stream's end)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self.limit:
            raise exceptions.GRPCError(
                const.Status.RESOURCE_EXHAUSTED,
                f"Received message larger than max ({len(data)} vs. {self.limit}); "
                "xds.max_receive_message_length in the bootstrap raises the limit",
            )
        return super().decode(data, message_type)


class _Abandoned(exceptions.StreamTerminatedError):
    """Handed to the call's ``__aexit__`` when this side leaves the stream: grpclib then
    sends RST_STREAM, releases the stream and raises the status the server sent, if any."""


class _Channel(client.Channel):
    """grpclib's channel whose `close` also aborts the connection: asyncio's TLS close
    waits up to 30 s for the server's close_notify, which gRPC servers do not send, so the
    socket would outlive the stream (grpcio closes the socket at once, too)."""

    def close(self) -> None:
        protocol = self._protocol
        connection = getattr(protocol, "connection", None)  # set once connected
        transport = getattr(connection, "_transport", None)  # grpclib drops it on close
        super().close()
        if transport is not None:
            transport.abort()


class GrpclibStream:
    """One ADS call as an `xds_client.Stream`. `write` and `read` may run in two tasks
    (the client's loop writes, its reader task reads); `close` ends the call at once."""

    def __init__(self, channel: client.Channel, call: client.Stream[Any, Any], peer: str) -> None:
        self._channel = channel
        self._call = call
        self._peer = peer
        self._entered = False
        self._left = False
        self._outcome: xds_client.StreamError | None = None
        """How the call ended, once known (later failures of the other task say the same)."""

    async def start(self) -> None:
        """Connect (TCP, TLS) and send the request headers; raises `StreamError`."""
        await self._call.__aenter__()
        self._entered = True
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._call.send_request()
        except TimeoutError:
            raise self._end(
                xds_client.StreamError(
                    "UNAVAILABLE", f"no connection to {self._peer} in {CONNECT_TIMEOUT:g}s"
                )
            ) from None
        except Exception as error:
            raise await self._failure(error) from None

    async def write(self, request: xds_client.Request) -> None:
        try:
            await self._call.send_message(request)
        except Exception as error:
            raise await self._failure(error) from None

    async def read(self) -> xds_client.Response | None:
        try:
            response = await self._call.recv_message()
        except Exception as error:
            raise await self._failure(error) from None
        if response is not None:
            return response
        # The server ended the stream: its trailers say whether that was an error.
        status = await self._leave()
        if status is not None:
            raise self._end(status)
        return None

    async def close(self) -> None:
        self._end(xds_client.StreamError("CANCELLED", "closed by the sidecar"))
        await self._leave()
        self._channel.close()

    def _end(self, outcome: xds_client.StreamError) -> xds_client.StreamError:
        if self._outcome is None:
            self._outcome = outcome
        return self._outcome

    async def _failure(self, error: Exception) -> xds_client.StreamError:
        """The `StreamError` for `error`: the status the server sent if it sent one (a
        failed write is often the first sign of a stream the server has ended), else
        `error` translated; the first outcome of the call sticks."""
        if self._outcome is not None:
            return self._outcome
        status = await self._leave()
        if status is None and isinstance(error, exceptions.GRPCError):
            status = _status(error)
        return self._end(status or _translate(error, self._peer))

    async def _leave(self) -> xds_client.StreamError | None:
        """Exit the call (once): RST_STREAM if it is still open, release it; -> the error
        status the server sent (None: none, or OK)."""
        if not self._entered or self._left:
            return None
        self._left = True
        abandoned = _Abandoned("the sidecar left the stream")
        try:
            await self._call.__aexit__(type(abandoned), abandoned, None)
        except exceptions.GRPCError as error:
            return _status(error)
        except Exception as error:  # the connection is going away anyway
            log.debug("leaving the ADS stream: %r", error)
        return None


class GrpclibConnector:
    """Opens each ADS stream on a fresh connection to ``host:port``. `tls` None: plaintext.
    A response longer than `max_receive_message_length` bytes ends its stream
    RESOURCE_EXHAUSTED."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: bootstrap.TlsFiles | None,
        max_receive_message_length: int = bootstrap.DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.max_receive_message_length = max_receive_message_length

    @classmethod
    def of(cls, server: bootstrap.XdsServer) -> GrpclibConnector:
        return cls(server.host, server.port, server.tls, server.max_receive_message_length)

    @property
    def target(self) -> str:
        return address.join_host_port(self.host, self.port)

    def _ssl_context(self, tls: bootstrap.TlsFiles) -> ssl.SSLContext:
        """The client side of mTLS from the bootstrap files, read now."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["h2"])
        try:
            context.load_verify_locations(cadata=tls.ca.read_text(encoding="ascii"))
            context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ValueError) as error:
            detail = getattr(error, "strerror", None) or error
            raise xds_client.StreamError(
                "UNAUTHENTICATED",
                f"cannot read the bootstrap TLS files ({tls.cert}, {tls.key}, {tls.ca}): {detail}",
            ) from None
        return context

    async def open(self, protocol: xds_client.ProtocolName) -> GrpclibStream:
        path, request_type, response_type = METHODS[protocol]
        tls = self.tls
        peer = self.target
        codec = _LimitedCodec(self.max_receive_message_length)
        details = proto.ProtoStatusDetailsCodec()  # grpclib's default, unless given a codec
        if tls is None:
            channel = _Channel(self.host, self.port, codec=codec, status_details_codec=details)
        else:
            if tls.server_name:
                peer += f" (server name {tls.server_name})"
            channel = _Channel(
                self.host,
                self.port,
                ssl=self._ssl_context(tls),
                config=grpclib_config.Configuration(ssl_target_name_override=tls.server_name),
                codec=codec,
                status_details_codec=details,
            )
        call = channel.request(path, const.Cardinality.STREAM_STREAM, request_type, response_type)
        stream = GrpclibStream(channel, call, peer)
        try:
            await stream.start()
        except BaseException:
            await stream.close()
            raise
        return stream


def _status(error: exceptions.GRPCError) -> xds_client.StreamError:
    return xds_client.StreamError(error.status.name, error.message or "")


def _translate(error: Exception, peer: str) -> xds_client.StreamError:
    """A failure without a gRPC status, in gRPC's terms: the connection's failures are
    UNAVAILABLE (the client reconnects), anything else is a protocol error (INTERNAL)."""
    if isinstance(error, ssl.SSLError):
        return xds_client.StreamError("UNAVAILABLE", f"TLS with {peer} failed: {error}")
    if isinstance(error, exceptions.StreamTerminatedError):
        return xds_client.StreamError("UNAVAILABLE", f"the stream to {peer} ended: {error}")
    if isinstance(error, OSError):
        reason = error.strerror or str(error) or type(error).__name__
        return xds_client.StreamError("UNAVAILABLE", f"cannot reach {peer}: {reason}")
    return xds_client.StreamError("INTERNAL", f"{peer}: {type(error).__name__}: {error}")
