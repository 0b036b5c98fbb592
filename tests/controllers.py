"""Controllers for tests and benchmarks: in the test's event loop, or as a process of their own.

`running` starts `osm.controller.server.Controller` in-process on ephemeral ports (its
Kubernetes API over HTTPS, its plain-HTTP endpoint and xDS), so tests run side by side;
`same_ports` restarts one where clients will look for it. `ControllerProcess` runs one as
a child (``python -m tests.controllers``) for what needs a process: ``kill -9``, callers
that block, CPU and memory measured apart. The child writes the ports it bound to a file
once its API answers (so the first start can use port 0 everywhere), and a restart binds
the same ones. Either way, clients use ``controller.kubeconfig`` (the admin's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from osm import paths
from osm.controller import server

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


# -- in-process -----------------------------------------------------------------------------
def settings(state_dir: Path, **changes: Any) -> server.Settings:
    """Local mode in `state_dir` on ephemeral ports (unless `changes` say otherwise)."""
    ports = {"api_port": 0, "http_port": 0, "xds_port": 0}
    return server.Settings(state_dir=state_dir, **{**ports, **changes})


def same_ports(controller: server.Controller) -> dict[str, int]:
    """The ports a started controller bound, as `settings` changes."""
    return {
        "api_port": controller.port,
        "http_port": controller.http_port,
        "xds_port": controller.xds_port,
    }


@contextlib.asynccontextmanager
async def running(state_dir: Path, **changes: Any) -> AsyncIterator[server.Controller]:
    """A started and `settled` controller (see `settings`), stopped on exit."""
    controller = server.Controller(settings(state_dir, **changes))
    await controller.start()
    try:
        await settled(controller)
        yield controller
    finally:
        await controller.stop()


async def settled(controller: server.Controller, timeout: float = 10.0) -> None:
    """Waits until the push loop has built its first configuration and its informer has a
    watch open in the store for every kind it follows.

    Why tests wait for the watches: a controller stopped while its informer is still
    opening them (within ~50 ms of `start`) leaves their TLS connections half open, the
    server's accept tasks pending and the sockets unclosed, and the ResourceWarnings
    that follow fail whichever test the garbage collector runs in next. The store's
    watch count is read from its private hub, for want of a public one."""
    assert controller.pusher is not None and controller.store is not None
    async with asyncio.timeout(timeout):
        await controller.pusher.synced.wait()
        hub = getattr(controller.store, "_hub", None)
        while hub is not None and len(hub) < len(server.MESH_KINDS):
            await asyncio.sleep(0.005)


# -- a process ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Ports:
    api: int = 0
    http: int = 0
    xds: int = 0


@dataclasses.dataclass
class ControllerProcess:
    """A controller child process; `stop` (or `kill`) it."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    log: Path
    ports: Ports
    options: tuple[str, ...]

    @property
    def kubeconfig(self) -> Path:
        return paths.kubeconfig_path(self.state_dir)

    @property
    def url(self) -> str:
        """The Kubernetes API (HTTPS; clients need the kubeconfig's certificate)."""
        return f"https://127.0.0.1:{self.ports.api}"

    @property
    def http_url(self) -> str:
        """The controller's own endpoint: metrics, health, ``/debug/proxies``."""
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def xds_port(self) -> int:
        return self.ports.xds

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *options: str,
        ports: Ports = Ports(),
        env: dict[str, str] | None = None,
    ) -> ControllerProcess:
        """Starts a child on `ports` (0: any) and waits until its API answers. `options`:
        ``--xds-insecure``, ``--log-level LEVEL``."""
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ready = state_dir.parent / f"{state_dir.name}-controller-ready.json"
        ready.unlink(missing_ok=True)
        log = state_dir.parent / f"{state_dir.name}-controller.log"
        args = [
            sys.executable,
            "-m",
            "tests.controllers",
            "--state-dir",
            str(state_dir),
            "--ready-file",
            str(ready),
            "--api-port",
            str(ports.api),
            "--http-port",
            str(ports.http),
            "--xds-port",
            str(ports.xds),
            *options,
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env or dict(os.environ)
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.exists():
            if process.poll() is not None:
                raise RuntimeError(f"the controller exited: {log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"the controller did not start: {log.read_text()[-3000:]}")
            time.sleep(0.02)
        bound = Ports(**json.loads(ready.read_text()))
        return cls(process, state_dir, log, bound, tuple(options))

    def restart(self) -> ControllerProcess:
        """A new child on this one's state and ports (this one must have stopped)."""
        assert self.process.poll() is not None, "stop it first"
        return ControllerProcess.start(self.state_dir, *self.options, ports=self.ports)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Sends `sig` and waits for the exit (a clean stop for SIGTERM)."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the controller did not stop in {STOP_TIMEOUT} s: {self.log.read_text()[-2000:]}"
            ) from None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


# -- the child ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.controllers")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--xds-port", type=int, default=0)
    parser.add_argument("--xds-insecure", action="store_true")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    chosen = settings(
        args.state_dir,
        api_port=args.api_port,
        http_port=args.http_port,
        xds_port=args.xds_port,
        xds_insecure=args.xds_insecure,
    )
    profile = os.environ.get(server.PROFILE_ENV)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(_serve(chosen, args.ready_file))
    except server.ControllerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)
    return 0


async def _serve(chosen: server.Settings, ready: Path) -> None:
    controller = server.Controller(chosen)
    await controller.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        ports = Ports(controller.port, controller.http_port, controller.xds_port)
        temporary = ready.with_suffix(".tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(ports)))
        temporary.rename(ready)
        await stopping.wait()
    finally:
        await controller.stop()


if __name__ == "__main__":
    sys.exit(main())
