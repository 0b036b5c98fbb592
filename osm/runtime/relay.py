"""A TCP relay from a port inside the mesh namespace to a loopback port of the controller.

The one idea: pods reach the controller (xDS, its metrics, the API) at the mesh
gateway address, e.g. ``10.233.0.1:15128``, although the controller runs in the root
namespace and no link joins the two. The relay's listening socket is created inside
the mesh namespace (`osm.runtime.network.listen_in_netns`); each accepted connection
is spliced to ``127.0.0.1:<port>`` in the controller's own namespace. It forwards one
port to one fixed loopback destination, so it cannot carry anything anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from osm.runtime.network import listen_in_netns


class Splicer:
    """Accepts connections and splices each to the connection `_connect` makes for it
    (None: the client's connection is closed at once); `close` stops accepting and ends
    every spliced pair. Subclasses say where connections go and how they listen."""

    def __init__(self, *, buffer_size: int = 65536) -> None:
        self._buffer_size = buffer_size
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(self._buffer_size):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()


class NamespaceRelay(Splicer):
    """Relays ``<listen_host>:<listen_port>`` in ``netns`` to ``target``.

    Use ``await relay.start()`` and ``await relay.close()`` from one event loop.
    """

    def __init__(
        self,
        netns: str,
        listen_host: str,
        listen_port: int,
        target: tuple[str, int],
        *,
        buffer_size: int = 65536,
    ) -> None:
        super().__init__(buffer_size=buffer_size)
        self.netns = netns
        self.listen = (listen_host, listen_port)
        self.target = target

    async def start(self) -> None:
        sock: socket.socket = listen_in_netns(self.netns, *self.listen)
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(*self.target)
        except OSError:
            return None
