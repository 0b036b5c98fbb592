"""Shared fixtures: a running controller process for CLI and API tests; which `osm` is tested.

Tests run against the source tree (pure Python). ``--compiled DIR`` runs them against an
installed build in DIR instead, whose sidecar hot modules are compiled by mypyc (``make
test-compiled``); either way the session refuses to start if it would import something
else: compiled files inside the source tree, or a build in DIR that is not compiled.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
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
_TESTED_OSM = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--compiled",
        metavar="DIR",
        help="import osm from DIR, a build installed with `pip install --target DIR` whose "
        "sidecar hot modules are compiled by mypyc (make test-compiled), not the source tree",
    )


def pytest_configure(config: pytest.Config) -> None:
    directory = config.getoption("--compiled")
    if directory:
        sys.path.insert(0, str(Path(directory).resolve()))
    spec = importlib.util.find_spec("osm")
    assert spec is not None and spec.origin is not None
    package = Path(spec.origin).parent
    extensions = _extension_modules(package)
    if directory and package.parent != Path(directory).resolve():
        raise pytest.UsageError(f"--compiled {directory}: osm would be imported from {package}")
    if directory and not extensions:
        raise pytest.UsageError(f"--compiled {directory}: {package} has no compiled modules")
    if not directory and extensions:
        raise pytest.UsageError(
            f"compiled modules in the source tree would shadow their sources: "
            f"{', '.join(extensions)}; remove them (find osm -name '*.so' -delete)"
        )
    config.stash[_TESTED_OSM] = (
        f"{package} ({'compiled: ' + ', '.join(extensions) if extensions else 'pure Python'})"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"osm: {config.stash[_TESTED_OSM]}"


def _extension_modules(package: Path) -> list[str]:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(
        str(path.relative_to(package.parent)).split(".")[0].replace("/", ".")
        for path in package.rglob("*")
        if path.name.endswith(suffixes)
    )


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
