"""Shared fixtures: a running controller process for CLI and API tests; which `osm` is tested.

Tests run against the source tree (pure Python). ``--compiled DIR`` runs them against an
installed build in DIR instead, whose sidecar hot modules are compiled by mypyc (``make
test-compiled``); either way the session refuses to start if it would import something
else: compiled files inside the source tree, or a build in DIR that is not compiled.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import socket
import sys
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
