"""Helpers for the bookstore demo tests: its apps as subprocesses on free ports, stub servers.

Every process started here is killed when its test ends, whatever happened; every wait has
a deadline, so a broken app fails a test instead of hanging it.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.05)


def get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, f"GET {url} answered {status}: {body[:200]!r}"
    return json.loads(body)


def answers(url: str) -> bool:
    try:
        return get(url, timeout=0.5)[0] == 200
    except OSError:
        return False


@dataclass
class App:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Apps:
    """Starts demo apps; `close` kills whatever is still running."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[App] = []

    def start(self, role: str, env: Mapping[str, str], *args: str, port: int | None = None) -> App:
        """Starts `role` on 127.0.0.1 and waits until it answers on `port` (its listen or
        metrics port)."""
        port = port or free_port()
        log = self._directory / f"{role}-{port}.log"
        environment = {**os.environ, "HOST": "127.0.0.1", **env}
        if role == "client":
            environment.setdefault("METRICS_PORT", str(port))
        else:
            environment.setdefault("PORT", str(port))
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "osm.demo.bookstore", role, *args],
                env=environment,
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        app = App(process, port, log)
        self._started.append(app)
        try:
            wait_until(
                lambda: process.poll() is not None or answers(f"{app.url}/ready"),
                what=f"{role} to answer /ready",
            )
        except AssertionError:
            raise AssertionError(f"{role} never became ready:\n{app.output()}") from None
        assert process.poll() is None, f"{role} exited early:\n{app.output()}"
        return app

    def close(self) -> None:
        for app in self._started:
            if app.process.poll() is None:
                app.process.kill()
            app.process.wait(timeout=5)


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Apps]:
    started = Apps(tmp_path)
    try:
        yield started
    finally:
        started.close()


Reply = tuple[int, dict[str, str]]


@dataclass
class Stub:
    url: str
    requests: list[str]


@pytest.fixture
def stub() -> Iterator[Callable[[Callable[[int], Reply]], Stub]]:
    """Starts HTTP servers whose answer to the n-th request is `reply(n)`: (status, headers)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(reply: Callable[[int], Reply]) -> Stub:
        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                status, headers = reply(len(seen))
                body = b"{}"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return Stub(f"http://127.0.0.1:{server.server_address[1]}", seen)

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
