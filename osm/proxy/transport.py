"""One TCP connection, optionally TLS, as an asyncio.Protocol feeding a pluggable consumer.

The one idea: TLS is done here with `ssl.SSLObject` over memory BIOs rather than by
asyncio, so that (1) bytes read before TLS starts (the sniffed ClientHello) are fed to
the handshake, (2) a half-close crosses TLS as close_notify in both directions, and (3) the
same `Connection` type serves plain and TLS, downstream and upstream. Consumers (an HTTP
session, a TCP relay) receive plaintext through three callbacks and write through
`write`/`write_eof`; back-pressure is `pause_reading`/`resume_reading` and `await drain()`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from osm.proxy import stats

# One TLS record's plaintext at most (2^14 bytes): `SSLObject.read` allocates this much per
# call, and above glibc's mmap threshold (128 KiB) each read costs an mmap/munmap pair and
# page faults (256 KiB reads measured ~15 us slower than 16 KiB ones).
_READ_SIZE: Final = 16 * 1024


class Consumer(Protocol):
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


class _Buffer:
    """The consumer until a real one is installed: keeps what arrives."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost = False
        self.waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._wake()

    def eof_received(self) -> None:
        self.eof = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()


class HandshakeError(Exception):
    pass


class Connection(asyncio.Protocol):
    """A connection; `consumer` gets plaintext. Not thread-safe (event loop only)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = _Buffer()
        self.consumer: Consumer = self._buffer
        self._ssl: ssl.SSLObject | None = None
        # What `_ssl`'s read/write/pending delegate to (CPython's `_ssl._SSLSocket`, the
        # same methods, exceptions and results): calling it directly skips a Python frame
        # per call, three per request (~3,000 instructions, bench/instructions.py).
        self._tls: Any = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self._handshaking = False
        self._handshake: asyncio.Future[None] | None = None
        self._pending_plain: list[bytes] = []
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.eof = False  # the peer finished sending
        self.eof_sent = False
        self._read_paused = False
        self.tls_peer_certificate: dict[str, Any] | None = None
        self.on_writable: Callable[[], None] | None = None  # called when writes resume
        # Bytes on the wire (TLS records, not plaintext), counted when set (upstreams).
        self.rx_bytes: stats.Metric | None = None
        self.tx_bytes: stats.Metric | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        received = self.rx_bytes
        if received is not None:
            received.value += len(data)
        if self._ssl is None:
            self.consumer.data_received(data)
            return
        assert self._incoming is not None
        self._incoming.write(data)
        self._pump_tls()

    def eof_received(self) -> bool:
        if self._ssl is not None and self._handshaking:
            self._fail_handshake(HandshakeError("connection closed during the TLS handshake"))
            return False
        self._peer_eof()
        return True  # keep the write side open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._handshaking:
            self._fail_handshake(HandshakeError(f"connection lost during handshake: {exc}"))
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        self.consumer.connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.on_writable is not None:
            self.on_writable()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- consumer side ----------------------------------------------------------------------
    def take_buffered(self) -> tuple[bytes, bool]:
        """What arrived before a consumer was installed, and whether EOF came too."""
        data = bytes(self._buffer.data)
        self._buffer.data.clear()
        return data, self._buffer.eof

    async def read_some(self, timeout: float) -> bool:
        """Wait (up to `timeout`) for more bytes into the initial buffer; False on EOF/timeout."""
        buffer = self._buffer
        if buffer.eof or buffer.lost:
            return False
        loop = asyncio.get_running_loop()
        buffer.waiter = loop.create_future()
        try:
            await asyncio.wait_for(buffer.waiter, timeout)
        except TimeoutError:
            return False
        finally:
            buffer.waiter = None
        return not (buffer.lost)

    def set_consumer(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self._ssl is None:
            sent = self.tx_bytes
            if sent is not None:
                sent.value += len(data)
            self.transport.write(data)
            return
        if self._handshaking:
            self._pending_plain.append(data)
            return
        try:
            self._tls.write(data)
        except ssl.SSLError:
            self.abort()
            return
        self._flush_tls()

    def write_eof(self) -> None:
        """Half-close: FIN for plain TCP, close_notify for TLS; reading continues."""
        if self.eof_sent or self.closed or self.transport is None:
            return
        self.eof_sent = True
        if self._ssl is not None:
            try:
                self._ssl.unwrap()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                self.abort()
                return
            self._flush_tls()
            if self.eof:
                self.close()
        elif self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.close()

    async def drain(self) -> None:
        if not self._write_paused or self.closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def extra(self, name: str) -> Any:
        return self.transport.get_extra_info(name) if self.transport is not None else None

    # -- TLS ------------------------------------------------------------------------------
    @property
    def is_tls(self) -> bool:
        return self._ssl is not None

    @property
    def alpn(self) -> str | None:
        return self._ssl.selected_alpn_protocol() if self._ssl is not None else None

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        initial: bytes = b"",
        timeout: float = 10.0,
    ) -> None:
        """Run the handshake (feeding `initial` bytes read before); raises HandshakeError."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        try:
            self._ssl = context.wrap_bio(
                self._incoming,
                self._outgoing,
                server_side=server_side,
                server_hostname=server_hostname or None,
            )
        except (ssl.SSLError, ValueError) as error:
            raise HandshakeError(str(error)) from None
        self._tls = getattr(self._ssl, "_sslobj", self._ssl)
        self._handshaking = True
        self._handshake = asyncio.get_running_loop().create_future()
        if initial:
            self._incoming.write(initial)
        self._pump_tls()
        try:
            await asyncio.wait_for(asyncio.shield(self._handshake), timeout)
        except TimeoutError:
            self.abort()
            raise HandshakeError("TLS handshake timed out") from None

    def _fail_handshake(self, error: Exception) -> None:
        self._handshaking = False
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(error)
            self._handshake.exception()  # retrieved: no "never retrieved" warning

    def _flush_tls(self) -> None:
        assert self._outgoing is not None and self.transport is not None
        if self._outgoing.pending:
            if not self.transport.is_closing():
                data = self._outgoing.read()
                sent = self.tx_bytes
                if sent is not None:
                    sent.value += len(data)
                self.transport.write(data)
            else:
                self._outgoing.read()

    def _pump_tls(self) -> None:
        sslobj = self._ssl
        assert sslobj is not None
        if self._handshaking:
            try:
                sslobj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush_tls()
                return
            except (ssl.SSLError, OSError) as error:
                self._flush_tls()
                self._fail_handshake(HandshakeError(str(error)))
                self.abort()
                return
            self._handshaking = False
            self.tls_peer_certificate = sslobj.getpeercert()
            self._flush_tls()
            if self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(None)
            pending, self._pending_plain = self._pending_plain, []
            for data in pending:
                self.write(data)
        chunks: list[bytes] = []
        eof = False
        incoming = self._incoming
        assert incoming is not None
        tls = self._tls
        while True:
            if chunks and not incoming.pending and not tls.pending():
                break  # all read: save the SSLWantReadError another read() would raise
            try:
                chunk: bytes = tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            except ssl.SSLError:
                self._flush_tls()
                self.abort()
                return
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
        if self._outgoing is not None and self._outgoing.pending:
            self._flush_tls()  # session tickets, key updates, alerts
        if chunks:
            self.consumer.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if eof:
            self._peer_eof()

    def _peer_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        self.consumer.eof_received()
        if self.eof_sent and self._ssl is not None:
            self.close()
