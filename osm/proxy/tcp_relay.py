"""The TCP relay: a proxied TCP connection (or an upgraded HTTP one) once it is set up.

The one idea: bytes go both ways between two connections from their data callbacks, with
no coroutine at all. Each side's consumer writes what it reads to the other side and pauses
its own reading while the other's writes are paused (back-pressure); EOF on one side is
propagated as a half-close, and the relay finishes when both sides are done, either side is
lost, or it has been idle for the idle timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from osm.proxy import transport


class _RelaySide:
    """Consumer of one side: forwards to the other side's connection."""

    def __init__(self, relay: TcpRelay, source: transport.Connection, sink: transport.Connection):
        self.relay = relay
        self.source = source
        self.sink = sink
        self.bytes = 0
        self.done = False

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        self.relay.last_activity = self.relay.clock()
        self.sink.write(data)
        if self.sink.write_paused:
            self.source.pause_reading()

    def eof_received(self) -> None:
        self.done = True
        self.sink.write_eof()
        self.relay.check_finished()

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.relay.finish()


class TcpRelay:
    """Bytes both ways between two connections, with half-close and an idle timeout."""

    def __init__(
        self,
        downstream: transport.Connection,
        upstream_connection: transport.Connection,
        idle_timeout: float | None,
        clock: Callable[[], float],
    ):
        self.clock = clock
        self.last_activity = clock()
        self.downstream = downstream
        self.upstream = upstream_connection
        self.down_side = _RelaySide(self, downstream, upstream_connection)
        self.up_side = _RelaySide(self, upstream_connection, downstream)
        self.finished = asyncio.get_running_loop().create_future()
        self._idle_timeout = idle_timeout
        self._timer: asyncio.TimerHandle | None = None
        downstream.on_writable = upstream_connection.resume_reading
        upstream_connection.on_writable = downstream.resume_reading

    def start(
        self, initial_down: bytes = b"", initial_up: bytes = b"", down_eof: bool = False
    ) -> None:
        self.downstream.set_consumer(self.down_side)
        self.upstream.set_consumer(self.up_side)
        if initial_down:
            self.down_side.data_received(initial_down)
        if initial_up:
            self.up_side.data_received(initial_up)
        if down_eof or self.downstream.eof:
            self.down_side.eof_received()
        if self.upstream.eof:
            self.up_side.eof_received()
        if self.downstream.closed or self.upstream.closed:
            self.finish()
        if self._idle_timeout:
            self._timer = asyncio.get_running_loop().call_later(
                self._idle_timeout, self._idle_check
            )

    def _idle_check(self) -> None:
        assert self._idle_timeout is not None
        remaining = self.last_activity + self._idle_timeout - self.clock()
        if remaining > 0:
            self._timer = asyncio.get_running_loop().call_later(remaining, self._idle_check)
        else:
            self.finish()

    def check_finished(self) -> None:
        if self.down_side.done and self.up_side.done:
            self.finish()

    def finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.downstream.close()
        self.upstream.close()
        if not self.finished.done():
            self.finished.set_result(None)
