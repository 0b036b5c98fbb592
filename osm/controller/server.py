"""Running the controller: open the store, serve the API, stop cleanly on a signal.

`Controller` is usable in-process (tests start one on an ephemeral port) and from
`osm controller`. Shutdown closes the API first, then the store, so no write is lost
half-way: an apply either committed before the store closed or was refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from pathlib import Path

from aiohttp import web

from osm import paths
from osm.ca import builtin
from osm.ca.errors import CAError
from osm.controller import api
from osm.store import api as store_api
from osm.store import open_store

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Where the controller keeps its state and where it listens."""

    state_dir: Path = dataclasses.field(default_factory=paths.default_state_dir)
    store_url: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 9091

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.state_dir / 'store.db'}"


class Controller:
    """The control-plane process's parts, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: store_api.Store | None = None
        self.ca: builtin.BuiltinCA | None = None
        self._runner: web.AppRunner | None = None
        self.port = settings.api_port

    async def start(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.ca = builtin.BuiltinCA.open(self.settings.state_dir / "ca", builtin.utc_now())
        except CAError as error:
            raise ControllerError(f"the certificate authority cannot start: {error}") from error
        self.store = await open_store(self.settings.resolved_store_url)
        self._runner = web.AppRunner(api.make_app(self.store), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.api_host, self.settings.api_port)
        try:
            await site.start()
        except OSError as error:
            await self.stop()
            raise ControllerError(
                f"cannot listen on {self.settings.api_host}:{self.settings.api_port}: "
                f"{error.strerror} (is another controller running? use --port)"
            ) from error
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info(
            "controller API on http://%s:%d, store %s",
            self.settings.api_host,
            self.port,
            self.settings.resolved_store_url,
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.port}"


class ControllerError(Exception):
    """A problem that stops the controller from starting, said for the user."""


async def run(settings: Settings) -> None:
    """Runs until SIGINT or SIGTERM."""
    controller = Controller(settings)
    await controller.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        log.info("stopping")
        await controller.stop()
