"""The protocol demo apps as the runtime and the e2e test run them: `python -m
osm.demo.protocols ROLE`, servers until SIGTERM, one-shot clients that print one JSON line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osm.demo import protocols
from tests.unit.demo.demotesting import ROOT, free_port, get, wait_until

pytestmark = pytest.mark.timeout(60)


@dataclass
class Servers:
    http: int
    grpc: int
    tcp: int


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """One of each server on free ports of 127.0.0.1, with identities ``<role>-1``."""
    logs = tmp_path_factory.mktemp("protocols")
    ports = {role: free_port() for role in protocols.SERVERS}
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for role, port in ports.items():
            log = logs / f"{role}.log"
            argv = [sys.executable, "-m", "osm.demo.protocols", role, "--identity", f"{role}-1"]
            argv += ["--host", "127.0.0.1", "--port", str(port)]
            with log.open("wb") as sink:
                child = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
            started.append((role, child, log))
        for (role, child, log), port in zip(started, ports.values(), strict=True):
            wait_until(
                lambda child=child, port=port: child.poll() is not None or _accepts(port),
                what=f"{role} to listen",
            )
            assert child.poll() is None, f"{role} exited:\n{log.read_text()}"
        yield Servers(ports["http-server"], ports["grpc-server"], ports["tcp-echo"])
    finally:
        for role, child, log in started:
            child.terminate()
            assert child.wait(timeout=10) == 0, f"{role} did not stop cleanly:\n{log.read_text()}"


def call(*argv: str) -> tuple[int, dict[str, Any]]:
    """A one-shot client: its exit status and the JSON line it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "osm.demo.protocols", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0])


@pytest.mark.parametrize("method", protocols.GRPC_METHODS)
def test_grpc_call_prints_the_servers_reply(servers: Servers, method: str) -> None:
    status, result = call("grpc-call", f"127.0.0.1:{servers.grpc}", method, "--message", "hi")
    assert status == 0
    assert result == {
        "ok": True,
        "code": "OK",
        "details": "",
        "reply": {"identity": "grpc-server-1", "method": method, "message": "hi"},
    }


def test_grpc_call_reports_the_status_code_of_a_failed_call(servers: Servers) -> None:
    status, unknown = call("grpc-call", f"127.0.0.1:{servers.grpc}", "SayNothing")
    assert (status, unknown["ok"], unknown["code"]) == (1, False, "UNIMPLEMENTED")
    closed = free_port()
    status, nobody = call("grpc-call", f"127.0.0.1:{closed}", "SayHello", "--timeout", "2")
    assert (status, nobody["ok"], nobody["code"]) == (1, False, "UNAVAILABLE")
    assert "Connection refused" in nobody["details"]


def test_tcp_call_gets_its_bytes_back_from_the_echo(servers: Servers) -> None:
    message = "x" * 100_000  # more than one read (and than one argument may be long)
    status, result = call("tcp-call", f"127.0.0.1:{servers.tcp}", "--message", message)
    assert status == 0
    assert result == {"ok": True, "outcome": "echoed", "received": message}


def _listener(behaviour: str) -> int:
    """A one-connection server on 127.0.0.1 that reads what it is sent, then closes or
    says nothing."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            peer, _ = server.accept()
            with peer:
                peer.recv(100)  # closing with unread bytes would reset the connection
                if behaviour == "silent":
                    peer.recv(100)  # until the client gives up

    threading.Thread(target=serve, daemon=True).start()
    port: int = server.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("peer", "outcome"),
    [
        ("nobody listening", "refused"),
        ("reads and closes", "closed"),
        ("silent", "timeout"),
    ],
)
def test_tcp_call_says_what_became_of_its_bytes(peer: str, outcome: str) -> None:
    port = free_port() if peer == "nobody listening" else _listener(peer)
    argv = ["tcp-call", f"127.0.0.1:{port}", "--timeout", "0.5"]
    status, result = call(*argv)
    assert (status, result) == (1, {"ok": False, "outcome": outcome, "received": ""})


@pytest.mark.parametrize("path", ["/hello", "/ready", "/any/thing"])
def test_the_http_server_answers_every_path_with_who_and_what(servers: Servers, path: str) -> None:
    status, headers, body = get(f"http://127.0.0.1:{servers.http}{path}")
    assert status == 200
    assert headers["identity"] == "http-server-1"
    assert json.loads(body) == {"identity": "http-server-1", "method": "GET", "path": path}


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["tcp-call", "echo.demo"], "expected HOST:PORT"),
        (["tcp-call", "echo.demo:port"], "expected HOST:PORT"),
        (["grpc-call", "greeter.demo:14051"], "required: method"),
        (["tcp-echo", "--port", "-1"], "is not a port number"),
    ],
)
def test_bad_command_lines_say_what_is_expected(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        protocols.main(argv, environ={})
    assert exited.value.code == 2
    assert error in capsys.readouterr().err


def test_servers_take_their_settings_from_the_environment() -> None:
    parser = protocols.build_parser({"IDENTITY": "greeter-7", "PORT": "9999", "HOST": "::1"})
    args = parser.parse_args(["grpc-server"])
    assert (args.identity, args.host, args.port) == ("greeter-7", "::1", 9999)
    defaults = protocols.build_parser({}).parse_args(["tcp-echo"])
    assert (defaults.identity, defaults.port) == (
        "tcp-echo",
        int(protocols.DEFAULT_PORTS["tcp-echo"]),
    )
