"""Shared fixtures: a running controller process for CLI and API tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningController:
    process: subprocess.Popen[bytes]
    url: str
    state_dir: Path
    port: int
    log: Path
    xds_port: int

    def stop(self, sig: int | None = None) -> None:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                # Generous: CI machines are shared, and a loaded one is slow to schedule us.
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"the controller did not stop within 30 s: {self.log.read_text()[-2000:]}"
                ) from None


def start_controller(
    state_dir: Path,
    port: int | None = None,
    store: str = "",
    xds_port: int | None = None,
    extra: tuple[str, ...] = (),
) -> RunningController:
    """Starts `osm controller` as a subprocess and waits until its API answers.

    Every controller gets its own API and xDS ports, so tests can run side by side.
    """
    port = port or free_port()
    xds_port = xds_port or free_port()
    log = state_dir.parent / f"controller-{port}.log"
    args = [
        sys.executable,
        "-m",
        "osm.cli",
        "controller",
        "--state-dir",
        str(state_dir),
        "--port",
        str(port),
        "--xds-port",
        str(xds_port),
        *extra,
    ]
    if store:
        args += ["--store", store]
    with log.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"controller exited: {log.read_text()}")
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return RunningController(process, url, state_dir, port, log, xds_port)
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"controller did not start: {log.read_text()}")


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[RunningController]:
    running = start_controller(tmp_path / "state")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def osm_env(controller: RunningController) -> dict[str, str]:
    """Environment for CLI invocations that talk to the fixture's controller."""
    return {**os.environ, "OSM_SERVER": controller.url}
