"""The sidecar process: bootstrap -> proxy + admin + probe ports + xDS client, until SIGTERM.

The one idea: `Sidecar` wires the parts and owns their lifecycle; it is what
``python -m osm.proxy`` (what the local runtime starts) and ``osm sidecar`` run, and what
integration tests start in-process (with injected `Options`, e.g. an original-destination
resolver for loopback). The proxy reports ready on the admin's `/ready` only once the first
complete configuration from xDS is applied. On SIGTERM it drains: listeners stop accepting,
in-flight requests get `drain_seconds` to finish, and the process exits 0.

Start-up cost is part of every pod's start, so this module's import closure is kept to the
data plane, the ADS transport and the protos it needs: ADS runs on grpclib, never grpcio
(`osm.proxy.ads_transport`), `command` parses its own few arguments (no click, no
`osm.cli`), the bootstrap is read without PyYAML or `cryptography`, and the admin's
``/config_dump`` protos load on first use. Once a configuration is applied, `HeapFreezer`
moves what survives a collection into the permanent generation (`gc.freeze`), so later
collections do not walk the modules and the configuration again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from envoy.config.core.v3 import base_pb2

import osm
from osm.proxy import (
    admin,
    ads_transport,
    bootstrap,
    health,
    model,
    options,
    server,
    stats,
    xds_client,
)
from osm.proxy.runtime import Options

log = logging.getLogger(__name__)

USER_AGENT = "osm-py-sidecar"
"""`node.user_agent_name`: lets the control plane tell this sidecar from Envoy."""


class SidecarError(Exception):
    """The sidecar cannot start (say, the admin port is taken); said for the user."""


PROBES_WITHOUT_XDS = 30.0
"""Seconds from the start after which the probe ports listen although no configuration
has come: Envoy starts its listeners, the probe listeners among them, once its initial
xDS fetch is done, or after the initial fetch timeouts of CDS and then LDS (15 s each)."""

FREEZE_DELAY = 0.1
"""Seconds from an applied configuration to `HeapFreezer.applied` (a collection takes some
milliseconds; the readiness probe should not wait for it)."""


class HeapFreezer:
    """Keeps the modules and the applied configuration out of the garbage collector's scans.

    After the first applied configuration, and after any whose resource count differs from
    the one last frozen by more than `growth` times (a large update), `applied` collects
    everything (`gc.unfreeze`, `gc.collect`) and moves the survivors into the permanent
    generation (`gc.freeze`). Later collections scan only what was allocated since; the full
    collection at each large update frees cycles that frozen objects left behind (a replaced
    listener, say), so they cannot pile up. Small updates change nothing here.
    """

    def __init__(self, growth: float = 1.25) -> None:
        self.growth = growth
        self.frozen_resources: int | None = None
        """The resource count of the configuration applied at the last freeze."""

    def applied(self, new: model.ProxyConfig) -> bool:
        """Called after `new` is applied; -> whether it froze the heap."""
        count = sum(len(resources) for resources in new.raw.values())
        last = self.frozen_resources
        if last is not None and last / self.growth <= count <= last * self.growth:
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.frozen_resources = count
        log.debug("froze %d objects (configuration of %d resources)", gc.get_freeze_count(), count)
        return True


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
    them); `connector` replaces the ADS transport (tests); `heap`, when given, is told of
    every applied configuration (the process entry point freezes the heap; in-process
    tests leave the interpreter's collector alone).

    The app's probe ports (`health`) are bound at `start`, and listen once the first
    configuration is applied or `probes_without_xds` seconds have passed, whichever comes
    first: until then a probe is refused, as Envoy refuses it.
    """

    def __init__(
        self,
        boot: bootstrap.Bootstrap,
        options: Options | None = None,
        *,
        connector: xds_client.Connector | None = None,
        wait_timeout: float = xds_client.DEFAULT_WAIT_TIMEOUT,
        backoff: xds_client.Backoff | None = None,
        heap: HeapFreezer | None = None,
        probes_without_xds: float = PROBES_WITHOUT_XDS,
    ) -> None:
        self.bootstrap = boot
        self.probes_without_xds = probes_without_xds
        self.heap = heap
        self._freeze: asyncio.TimerHandle | None = None
        base = options or Options()
        overrides = {**boot.bind_overrides, **base.bind_overrides}
        self._log_file: TextIO | None = None
        if boot.access_log is not None:
            self._log_file = boot.access_log.open("a", encoding="utf-8")
        self.proxy = server.Sidecar(
            dataclasses.replace(base, bind_overrides=overrides),
            access_log=stats.AccessLog(self._log_file),
        )
        tracer = self.proxy.runtime.tracer  # spans name the node as Envoy's do
        tracer.node_id, tracer.service_name = boot.node_id, boot.node_cluster
        self.admin = admin.Admin(self.proxy)
        self.health = health.HealthServer(boot.health_probes, overrides)
        self._configured = asyncio.Event()
        self._probes_task: asyncio.Task[None] | None = None
        self.core = xds_client.ClientCore(node_of(boot), wait_timeout)
        self.client = xds_client.XdsClient(
            self.core,
            connector or ads_transport.GrpclibConnector.of(boot.xds),
            self._apply,
            protocol=boot.xds.protocol,
            backoff=backoff,
        )
        connected = self.proxy.stats.gauge("control_plane.connected_state")
        self.client.on_state = lambda client: setattr(connected, "value", int(client.connected))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve the admin interface and the app's probes, and start talking to the xDS
        server."""
        boot = self.bootstrap
        try:
            await self.admin.start(boot.admin_host, boot.admin_port)
        except OSError as error:
            raise SidecarError(
                f"cannot serve the admin interface on {boot.admin_host}:{boot.admin_port}: "
                f"{error.strerror or error} (set admin.port in {boot.source})"
            ) from None
        try:
            self.health.bind()
        except OSError as error:
            await self.admin.close()
            raise SidecarError(f"{error.strerror} (health_probes in {boot.source})") from None
        if boot.health_probes:
            self._probes_task = asyncio.get_running_loop().create_task(
                self._serve_probes(), name="probe-ports"
            )
        log.info(
            "sidecar %s: admin on %s:%d, xDS server %s (%s), data plane %s",
            boot.node_id,
            *self.admin.address,
            boot.xds.target,
            "mTLS" if boot.xds.tls else "INSECURE",
            osm.proxy.build_flavour(),
        )
        self._task = asyncio.get_running_loop().create_task(self.client.run(), name="xds-client")

    async def _serve_probes(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.probes_without_xds):
                await self._configured.wait()
        if not self._configured.is_set():
            log.warning(
                "no configuration from xDS after %.0fs: serving the probe ports anyway",
                self.probes_without_xds,
            )
        await self.health.serve()

    async def _apply(self, new: model.ProxyConfig) -> None:
        await self.proxy.apply(new)
        self._configured.set()
        if self.heap is not None:  # after `/ready` has had its chance to answer
            if self._freeze is not None:
                self._freeze.cancel()
            self._freeze = asyncio.get_running_loop().call_later(
                FREEZE_DELAY, self.heap.applied, new
            )

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
        if self._freeze is not None:
            self._freeze.cancel()
            self._freeze = None
        for task in (self._task, self._probes_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._probes_task = None
        await self.proxy.close(self.bootstrap.drain_seconds if grace is None else grace)
        await self.health.close()
        await self.admin.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


async def serve(boot: bootstrap.Bootstrap) -> None:
    """Run a sidecar until SIGTERM or SIGINT, then drain and return."""
    sidecar = Sidecar(boot, heap=HeapFreezer())
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


# ---------------------------------------------------------------------------------------------
# The command line: ``python -m osm.proxy`` (and ``osm sidecar``, through click)

LOG_LEVELS = ("debug", "info", "warning", "error")
USAGE = "usage: python -m osm.proxy --bootstrap FILE [--log-level LEVEL]"
HELP = f"""{USAGE}

Run the Python sidecar proxy: configured over xDS by the controller, until SIGTERM
(then it drains in-flight requests and exits 0).

options:
  --bootstrap FILE   the bootstrap file (YAML or JSON): node id, xDS server, admin address
  --log-level LEVEL  {", ".join(LOG_LEVELS)} (default: info)
  -h, --help         show this message and exit
"""


class UsageError(Exception):
    """The command line is wrong (the caller's fault); the message says what is valid."""


@dataclasses.dataclass(frozen=True, slots=True)
class Arguments:
    """What the command line asks for."""

    bootstrap: Path
    log_level: str = "info"


def parse_arguments(argv: Sequence[str]) -> Arguments | None:
    """``--bootstrap FILE [--log-level LEVEL]`` (also ``--name=value``); -> None for
    ``--help``. Raises `UsageError`."""
    values = options.parse(argv, ("--bootstrap", "--log-level"))
    if values is None:
        return None
    if "--bootstrap" not in values:
        raise options.UsageError("--bootstrap FILE is required")
    level = values.get("--log-level", "info")
    if level not in LOG_LEVELS:
        raise options.UsageError(
            f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    return Arguments(Path(values["--bootstrap"]), level)


def execute(arguments: Arguments) -> int:
    """Configure logging and run the sidecar; -> the exit status (a user's mistake in the
    bootstrap, or a sidecar that cannot start, is printed to stderr: status 1)."""
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return run(arguments.bootstrap)
    except (bootstrap.BootstrapError, SidecarError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def command(argv: Sequence[str]) -> int:
    """``python -m osm.proxy ARGS``; -> the exit status (2: a usage error)."""
    try:
        arguments = parse_arguments(argv)
    except options.UsageError as error:
        print(f"{USAGE}\nerror: {error}", file=sys.stderr)
        return 2
    if arguments is None:
        print(HELP, end="")
        return 0
    return execute(arguments)
