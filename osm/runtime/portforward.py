"""A port-forward from the host's loopback into a network namespace: how the host reaches
pod IPs in local mode.

The one idea: `osm.runtime.relay` the other way round. The listening socket is an ordinary
one on the host's ``127.0.0.1``; each accepted connection is spliced to a socket created
inside the namespace (`osm.runtime.network.socket_in_netns`, so it is routed by the
mesh's bridge) and connected to the target there. The target is asked of a resolver for
every connection, so a forward to a Service's endpoint follows its pod across restarts;
a resolver that has no target (None) or a target that refuses closes the client's
connection at once. Needs CAP_SYS_ADMIN (setns); binds loopback only.

Use ``await forward.start()`` (returns the bound port) and ``await forward.close()`` from
one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from osm.base import wellknown
from osm.runtime.network import NetworkError, socket_in_netns

log = logging.getLogger(__name__)

Target = tuple[str, int]
Resolver = Callable[[], Awaitable[Target | None]]


def fixed(target: Target) -> Resolver:
    """A resolver that always answers ``target``."""

    async def resolve() -> Target | None:
        return target

    return resolve


class PortForward:
    """Forwards ``listen_host:listen_port`` (0: any free port) to the resolver's target
    inside network namespace ``netns``."""

    def __init__(
        self,
        netns: str,
        resolve: Resolver,
        *,
        listen_host: str = wellknown.LOCALHOST,
        listen_port: int = 0,
        connect_timeout: float = 2.0,
        buffer_size: int = 65536,
    ) -> None:
        self.netns = netns
        self._resolve = resolve
        self.listen = (listen_host, listen_port)
        self.connect_timeout = connect_timeout
        self._buffer_size = buffer_size
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        """Starts listening; returns the bound port."""
        self._server = await asyncio.start_server(self._handle, *self.listen)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    @property
    def url(self) -> str:
        return f"http://{self.listen[0]}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        target = await self._resolve()
        if target is None:
            return None
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, socket_in_netns, self.netns)
        try:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, target), self.connect_timeout)
            return await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                upstream = await self._connect()
            except (OSError, TimeoutError, NetworkError) as error:
                log.debug("port-forward into %s: %s", self.netns, error)
                return
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
