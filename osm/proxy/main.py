"""The sidecar process: bootstrap -> proxy + admin + xDS client, until SIGTERM.

The one idea: `Sidecar` wires the parts and owns their lifecycle; it is what `osm sidecar`
runs and what integration tests start in-process (with injected `Options`, e.g. an
original-destination resolver for loopback). The proxy reports ready on the admin's
`/ready` only once the first complete configuration from xDS is applied. On SIGTERM it
drains: listeners stop accepting, in-flight requests get `drain_seconds` to finish, and
the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from pathlib import Path
from typing import TextIO

from envoy.config.core.v3 import base_pb2

import osm
from osm.proxy import admin, bootstrap, server, stats, xds_client
from osm.proxy.runtime import Options

log = logging.getLogger(__name__)

USER_AGENT = "osm-py-sidecar"
"""`node.user_agent_name`: lets the control plane tell this sidecar from Envoy."""


class SidecarError(Exception):
    """The sidecar cannot start (say, the admin port is taken); said for the user."""


def node_of(boot: bootstrap.Bootstrap) -> base_pb2.Node:
    """The `Node` sent on each stream's first request."""
    node = base_pb2.Node(
        id=boot.node_id,
        cluster=boot.node_cluster,
        user_agent_name=USER_AGENT,
        user_agent_version=osm.__version__,
    )
    node.metadata.update(dict(boot.node_metadata))
    return node


class Sidecar:
    """A whole sidecar in this event loop. `await start()`, then `await stop()`.

    `options` are the proxy's knobs (the bootstrap's listener overrides are added to
    them); `connector` replaces the gRPC transport (tests).
    """

    def __init__(
        self,
        boot: bootstrap.Bootstrap,
        options: Options | None = None,
        *,
        connector: xds_client.Connector | None = None,
        wait_timeout: float = xds_client.DEFAULT_WAIT_TIMEOUT,
        backoff: xds_client.Backoff | None = None,
    ) -> None:
        self.bootstrap = boot
        base = options or Options()
        overrides = {**boot.bind_overrides, **base.bind_overrides}
        self._log_file: TextIO | None = None
        if boot.access_log is not None:
            self._log_file = boot.access_log.open("a", encoding="utf-8")
        self.proxy = server.Proxy(
            dataclasses.replace(base, bind_overrides=overrides),
            access_log=stats.AccessLog(self._log_file),
        )
        self.admin = admin.Admin(self.proxy)
        self.core = xds_client.ClientCore(node_of(boot), wait_timeout)
        self.client = xds_client.XdsClient(
            self.core,
            connector or xds_client.GrpcConnector(boot.xds.target, boot.xds.tls),
            self.proxy.apply,
            protocol=boot.xds.protocol,
            backoff=backoff,
        )
        connected = self.proxy.stats.gauge("control_plane.connected_state")
        self.client.on_state = lambda client: setattr(connected, "value", int(client.connected))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve the admin interface and start talking to the xDS server."""
        boot = self.bootstrap
        try:
            await self.admin.start(boot.admin_host, boot.admin_port)
        except OSError as error:
            raise SidecarError(
                f"cannot serve the admin interface on {boot.admin_host}:{boot.admin_port}: "
                f"{error.strerror or error} (set admin.port in {boot.source})"
            ) from None
        log.info(
            "sidecar %s: admin on %s:%d, xDS server %s (%s)",
            boot.node_id,
            *self.admin.address,
            boot.xds.target,
            "mTLS" if boot.xds.tls else "INSECURE",
        )
        self._task = asyncio.get_running_loop().create_task(self.client.run(), name="xds-client")

    @property
    def ready(self) -> bool:
        """A complete configuration from xDS is applied (what `/ready` says)."""
        return self.proxy.initialized

    async def wait_ready(self, timeout: float) -> None:
        """Wait until `ready`; raises TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not self.ready:
                await asyncio.sleep(0.02)

    async def stop(self, grace: float | None = None) -> None:
        """Stop the xDS client, drain the listeners for `grace` seconds (default: the
        bootstrap's `drain_seconds`), close the admin interface."""
        self.client.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.proxy.close(self.bootstrap.drain_seconds if grace is None else grace)
        await self.admin.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


async def serve(boot: bootstrap.Bootstrap) -> None:
    """Run a sidecar until SIGTERM or SIGINT, then drain and return."""
    sidecar = Sidecar(boot)
    await sidecar.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
        log.info("draining for up to %.1fs", boot.drain_seconds)
    finally:
        await sidecar.stop()
    log.info("stopped")


def run(bootstrap_path: Path) -> int:
    """`osm sidecar`: load the bootstrap, run until SIGTERM; -> the exit status (0).
    Raises `bootstrap.BootstrapError` or `SidecarError` for the user to read."""
    boot = bootstrap.load(bootstrap_path)
    server.install_uvloop()
    asyncio.run(serve(boot))
    return 0
