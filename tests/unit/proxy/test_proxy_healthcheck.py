"""osm-healthcheck (`osm.proxy.healthcheck`), row by row: what a rewritten tcpSocket probe
sends to 15904 and what it gets back, against a port that listens and one that does not."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from osm.proxy import healthcheck

ROOT = Path(__file__).resolve().parents[3]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.fixture
async def ports() -> AsyncIterator[dict[str, Any]]:
    """The healthcheck on an ephemeral port, an app port that listens, one that does not."""
    app = await asyncio.start_server(_nothing, "127.0.0.1", 0)
    server = healthcheck.Healthcheck()
    await server.start("127.0.0.1", 0)
    try:
        yield {
            "healthcheck": server.address[1],
            "up": str(app.sockets[0].getsockname()[1]),
            "down": str(_unused_port()),
        }
    finally:
        await server.close()
        app.close()


async def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize(
    ("method", "target", "header", "status", "body"),
    [
        pytest.param(
            "GET",
            "/osm-healthcheck",
            "up",
            200,
            "Successfully established connection to 127.0.0.1:{up}",
            id="the port listens: 200",
        ),
        pytest.param(
            "GET",
            "/osm-healthcheck",
            "down",
            503,
            "Failed to establish connection to 127.0.0.1:{down}",
            id="the port does not listen: 503",
        ),
        pytest.param(
            "GET",
            "/osm-healthcheck?verbose",
            "up",
            200,
            "Successfully established connection to 127.0.0.1:{up}",
            id="a query is ignored",
        ),
        pytest.param("HEAD", "/osm-healthcheck", "up", 200, "", id="HEAD: no body"),
        pytest.param(
            "GET",
            "/osm-healthcheck",
            None,
            400,
            "Header Original-Tcp-Port not found in request",
            id="no header: 400",
        ),
        pytest.param(
            "GET",
            "/osm-healthcheck",
            "web",
            400,
            "Header Original-Tcp-Port is 'web', not a port number 1-65535",
            id="a port name: 400",
        ),
        pytest.param(
            "GET",
            "/osm-healthcheck",
            "0",
            400,
            "Header Original-Tcp-Port is '0', not a port number 1-65535",
            id="port zero: 400",
        ),
        pytest.param(
            "GET",
            "/osm-healthcheck",
            "65536",
            400,
            "Header Original-Tcp-Port is '65536', not a port number 1-65535",
            id="a port too large: 400",
        ),
        pytest.param(
            "GET", "/osm-liveness-probe", "up", 404, "404 page not found\n", id="other path: 404"
        ),
    ],
)
async def test_a_rewritten_tcp_socket_probe(
    ports: dict[str, Any],
    method: str,
    target: str,
    header: str | None,
    status: int,
    body: str,
) -> None:
    value = ports.get(header or "", header)
    lines = [f"{method} {target} HTTP/1.1", "Host: 10.0.0.7:15904", "User-Agent: kube-probe/1.30"]
    if header is not None:
        lines.append(f"Original-Tcp-Port: {value}")
    request = "\r\n".join([*lines, "", ""]).encode()
    answer = await _exchange(ports["healthcheck"], request)
    assert answer == (status, body.format(**ports).encode())


async def test_a_malformed_request_is_400(ports: dict[str, Any]) -> None:
    assert (await _exchange(ports["healthcheck"], b"nonsense\r\n\r\n"))[0] == 400


async def test_a_port_that_does_not_answer_within_a_second_is_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(host: str, port: int) -> Any:
        await asyncio.sleep(3600)

    monkeypatch.setattr(healthcheck, "DIAL_TIMEOUT", 0.05)
    monkeypatch.setattr(asyncio, "open_connection", never)
    from osm.proxy import http1

    head = http1.RequestParser().feed(
        b"GET /osm-healthcheck HTTP/1.1\r\nHost: a\r\nOriginal-Tcp-Port: 14001\r\n\r\n"
    )[0]
    assert isinstance(head, http1.RequestHead)
    assert await healthcheck.answer(head) == (
        503,
        "Failed to establish connection to 127.0.0.1:14001",
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], (15904, "info")),
        (["--port", "25904"], (25904, "info")),
        (["--verbosity=debug", "--port=0"], (0, "debug")),
        (["--help"], None),
    ],
)
def test_arguments(argv: list[str], expected: tuple[int, str] | None) -> None:
    assert healthcheck.parse_arguments(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "--port must be a port number 0-65535, got 'http'"),
        (["--port", "70000"], "--port must be a port number 0-65535, got '70000'"),
        (["--verbosity", "loud"], "--verbosity must be one of debug, info, warning, error"),
        (["-v"], "unknown argument '-v'; valid: --port, --verbosity, --help"),
        (["--port"], "--port needs a value"),
    ],
)
def test_usage_errors_say_what_is_valid(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert healthcheck.command(argv) == 2
    assert message in capsys.readouterr().err


def test_python_m_runs_it_with_a_lean_import_closure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "osm.proxy.healthcheck", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m osm.proxy.healthcheck [--port N]")
    probe = (
        "import sys, osm.proxy.healthcheck; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('envoy', 'google', 'grpclib', 'grpc', 'yaml', 'click', 'cryptography') "
        "or m in ('osm.proxy.main', 'osm.proxy.server', 'osm.proxy.bootstrap')))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert imported.stdout.strip() == "[]"
