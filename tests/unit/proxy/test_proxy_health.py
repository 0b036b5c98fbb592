"""The sidecar's probe ports (`osm.proxy.health`) and their bootstrap field, row by row.

A tiny app on an ephemeral port stands for the pod's container; each row says what the
kubelet sends to the probe port and what it gets back. The statuses where the sidecar
answers itself are Envoy's, as measured on Envoy 1.40 with the same listeners (the
integration test `tests/integration/test_probes_envoy.py` compares the two live).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from osm.proxy import bootstrap, health, main, model
from osm.proxy.bootstrap import HealthProbe

NODE = {"id": "bookstore-0.sidecar.bookstore.bookstore"}
XDS = {"address": "127.0.0.1:1", "insecure": True}


# -- the bootstrap field ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("probes", "expected"),
    [
        pytest.param([], (), id="none"),
        pytest.param(
            [{"kind": "liveness", "scheme": "HTTP", "port": 14001}],
            (HealthProbe("liveness", "HTTP", 14001, "/", 1.0),),
            id="defaults: path / and 1 s",
        ),
        pytest.param(
            [
                {
                    "kind": "readiness",
                    "scheme": "HTTP",
                    "port": 8081,
                    "path": "/ready?full=1",
                    "timeout_seconds": 3,
                },
                {"kind": "startup", "scheme": "HTTPS", "port": 8443, "timeout_seconds": 0.5},
            ],
            (
                HealthProbe("readiness", "HTTP", 8081, "/ready?full=1", 3.0),
                HealthProbe("startup", "HTTPS", 8443, "/", 0.5),
            ),
            id="every field; a query in the path",
        ),
    ],
)
def test_health_probes_are_read_from_the_bootstrap(
    probes: list[dict[str, Any]], expected: tuple[HealthProbe, ...]
) -> None:
    boot = bootstrap.parse({"node": NODE, "xds": XDS, "health_probes": probes}, "b.json")
    assert boot.health_probes == expected


def test_a_bootstrap_without_health_probes_has_none() -> None:
    assert bootstrap.parse({"node": NODE, "xds": XDS}).health_probes == ()


LIVENESS = {"kind": "liveness", "scheme": "HTTP", "port": 14001}


@pytest.mark.parametrize(
    ("probes", "message"),
    [
        pytest.param(
            {"liveness": LIVENESS},
            "b.json: health_probes: expected a list of probes, got a mapping",
            id="not a list",
        ),
        pytest.param(
            ["liveness"],
            "b.json: health_probes[0]: expected a mapping, got a string",
            id="an item not a mapping",
        ),
        pytest.param(
            [{**LIVENESS, "timeout": 3}],
            "b.json: health_probes[0].timeout: unknown field; valid fields here: kind, scheme, "
            "port, path, timeout_seconds",
            id="unknown field",
        ),
        pytest.param(
            [{"kind": "liveness", "port": 14001}],
            "b.json: health_probes[0].scheme: required field is missing",
            id="no scheme",
        ),
        pytest.param(
            [LIVENESS, {**LIVENESS, "kind": "alive"}],
            "b.json: health_probes[1].kind: expected one of liveness, readiness, startup, "
            "got 'alive'",
            id="unknown kind",
        ),
        pytest.param(
            [LIVENESS, {**LIVENESS, "port": 9000}],
            "b.json: health_probes[1].kind: a second liveness probe; the sidecar forwards one "
            "per kind",
            id="two of a kind",
        ),
        pytest.param(
            [{**LIVENESS, "scheme": "http"}],
            "b.json: health_probes[0].scheme: expected one of HTTP, HTTPS, got 'http'",
            id="scheme in lower case (Kubernetes writes HTTP)",
        ),
        pytest.param(
            [{**LIVENESS, "port": 0}],
            "b.json: health_probes[0].port: expected a port number 1-65535, got 0",
            id="port zero",
        ),
        pytest.param(
            [{**LIVENESS, "port": "web"}],
            "b.json: health_probes[0].port: expected a port number 1-65535, got 'web'",
            id="named port (the injector resolves names)",
        ),
        pytest.param(
            [{**LIVENESS, "path": "healthz"}],
            "b.json: health_probes[0].path: expected a request path starting with / "
            "(printable ASCII, no spaces), got 'healthz'",
            id="relative path",
        ),
        pytest.param(
            [{**LIVENESS, "path": "/health z"}],
            "b.json: health_probes[0].path: expected a request path starting with / "
            "(printable ASCII, no spaces), got '/health z'",
            id="a space in the path",
        ),
        pytest.param(
            [{**LIVENESS, "timeout_seconds": 0}],
            "b.json: health_probes[0].timeout_seconds: expected a number of seconds > 0, got 0",
            id="timeout zero",
        ),
        pytest.param(
            [{**LIVENESS, "timeout_seconds": True}],
            "b.json: health_probes[0].timeout_seconds: expected a number of seconds > 0, got True",
            id="timeout a boolean",
        ),
    ],
)
def test_bad_health_probes_are_refused_naming_the_field(probes: Any, message: str) -> None:
    with pytest.raises(bootstrap.BootstrapError) as raised:
        bootstrap.parse({"node": NODE, "xds": XDS, "health_probes": probes}, "b.json")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/osm-liveness-probe", "/healthz"),
        ("/osm-liveness-probe?verbose", "/healthz?verbose"),
        ("/osm-liveness-probe/deep", "/healthz/deep"),
        ("/osm-liveness-probex", "/healthzx"),  # a plain string prefix, as Envoy's
        ("/osm-readiness-probe", None),
        ("/", None),
    ],
)
def test_the_target_is_rewritten_as_envoys_prefix_rewrite(
    target: str, expected: str | None
) -> None:
    assert health.rewrite_target(target, "/osm-liveness-probe", "/healthz") == expected


# -- a tiny app, and the probe ports in front of it -------------------------------------------
class App:
    """An HTTP app whose answer is chosen by the request's path: ``fail`` 500, ``slow``
    after a second, ``close`` closes without an answer, ``garbage`` is not HTTP, ``chunked``
    answers with a chunked body, else 200. It remembers each request's head."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            path = head.split(b" ")[1].decode()
            if "close" in path:
                return
            if "garbage" in path:
                writer.write(b"NOT HTTP AT ALL\r\n\r\n")
                return
            if "slow" in path:
                await asyncio.sleep(1.0)
            if "chunked" in path:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                )
                return
            status = 500 if "fail" in path else 200
            body = f"app saw {path}".encode()
            writer.write(
                b"HTTP/1.1 %d Whatever\r\ncontent-length: %d\r\nx-app: yes\r\n\r\n%s"
                % (status, len(body), body)
            )
        finally:
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(b"echo:" + data)
        await writer.drain()
    writer.close()


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Pod:
    """The app, an echo server (a TLS app, as far as a pass-through can tell) and the
    sidecar's probe ports for: liveness -> the app at /healthz (timeout 0.3 s), readiness
    -> a port nothing listens on, startup -> HTTPS to the echo server."""

    def __init__(self, app: App, probes: health.HealthServer, down_port: int) -> None:
        self.app = app
        self.probes = probes
        self.down_port = down_port

    def port(self, kind: str) -> int:
        return self.probes.addresses[health.listener_name(kind)][1]


@pytest.fixture
async def the_pod() -> AsyncIterator[Pod]:
    app = App()
    app_server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    echo_server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    app_port = app_server.sockets[0].getsockname()[1]
    echo_port = echo_server.sockets[0].getsockname()[1]
    down_port = _unused_port()
    probes = health.HealthServer(
        [
            HealthProbe("liveness", "HTTP", app_port, "/healthz", 0.3),
            HealthProbe("readiness", "HTTP", down_port, "/ready", 1.0),
            HealthProbe("startup", "HTTPS", echo_port),
        ],
        {
            health.listener_name(kind): ("127.0.0.1", 0)
            for kind in ("liveness", "readiness", "startup")
        },
    )
    await probes.start()
    try:
        yield Pod(app, probes, down_port)
    finally:
        await probes.close()
        for server in (app_server, echo_server):
            server.close()


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    return answer


def _get(target: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", "Host: 10.0.0.7:15901", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        pytest.param("/osm-liveness-probe", 200, b"app saw /healthz", id="app 200"),
        pytest.param("/osm-liveness-probe?fail", 500, b"app saw /healthz?fail", id="app 500"),
        pytest.param(
            "/osm-liveness-probe/slow",
            504,
            b"upstream request timeout",
            id="slow app: the probe's timeout",
        ),
        pytest.param(
            "/osm-liveness-probe?close",
            503,
            b"upstream connect error or disconnect/reset before headers. reset reason: "
            b"connection termination",
            id="app closes without an answer",
        ),
        pytest.param(
            "/osm-liveness-probe?garbage",
            502,
            b"upstream connect error or disconnect/reset before headers. reset reason: "
            b"protocol error",
            id="app answers something that is not HTTP",
        ),
        pytest.param("/osm-readiness-probe", 404, b"", id="another kind's path: no route"),
        pytest.param("/healthz", 404, b"", id="the original path: no route"),
    ],
)
async def test_an_http_probe_gets_the_apps_answer_or_envoys(
    the_pod: Pod, target: str, status: int, body: bytes
) -> None:
    answer = await _exchange(the_pod.port("liveness"), _get(target, "Connection: close"))
    assert _status_and_body(answer) == (status, body)
    assert b"\r\nconnection: close\r\n" in answer.partition(b"\r\n\r\n")[0] + b"\r\n"


async def test_an_http_probe_of_an_app_that_is_down_is_503(the_pod: Pod) -> None:
    answer = await _exchange(the_pod.port("readiness"), _get("/osm-readiness-probe"))
    assert _status_and_body(answer) == (
        503,
        b"upstream connect error or disconnect/reset before headers. reset reason: "
        b"remote connection failure",
    )


async def test_the_app_gets_the_kubelets_headers_and_the_original_path(the_pod: Pod) -> None:
    request = _get(
        "/osm-liveness-probe?x=1",
        "User-Agent: kube-probe/1.30",
        "X-Custom: from-httpHeaders",
        "Connection: close",
    )
    answer = await _exchange(the_pod.port("liveness"), request)
    assert _status_and_body(answer) == (200, b"app saw /healthz?x=1")
    head = the_pod.app.heads[-1].decode()
    lines = head.split("\r\n")
    assert lines[0] == "GET /healthz?x=1 HTTP/1.1"
    for line in (
        "host: 10.0.0.7:15901",
        "user-agent: kube-probe/1.30",
        "x-custom: from-httpHeaders",
        "x-forwarded-proto: http",
        "x-envoy-original-path: /osm-liveness-probe?x=1",
    ):
        assert line in lines


async def test_the_apps_headers_come_back_and_a_chunked_body_is_delimited_by_the_close(
    the_pod: Pod,
) -> None:
    answer = await _exchange(the_pod.port("liveness"), _get("/osm-liveness-probe"))
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 Whatever"
    assert b"x-app: yes" in head
    chunked = await _exchange(the_pod.port("liveness"), _get("/osm-liveness-probe/chunked"))
    assert _status_and_body(chunked) == (200, b"hello")
    assert b"transfer-encoding" not in chunked.lower()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(_get("/osm-liveness-probe", version="1.0"), 426, id="HTTP/1.0: 426"),
        pytest.param(b"not a request\r\n\r\n", 400, id="malformed: 400"),
        pytest.param(
            b"POST /osm-liveness-probe HTTP/1.1\r\nHost: a\r\ncontent-length: 70000\r\n\r\n"
            + b"x" * 70000,
            413,
            id="a body over 64 KiB: 413",
        ),
    ],
)
async def test_requests_the_sidecar_answers_itself(
    the_pod: Pod, request_bytes: bytes, status: int
) -> None:
    answer = await _exchange(the_pod.port("liveness"), request_bytes)
    assert _status_and_body(answer)[0] == status


async def test_a_post_with_a_body_is_forwarded_with_it(the_pod: Pod) -> None:
    request = b"POST /osm-liveness-probe HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\r\nabc"
    answer = await _exchange(the_pod.port("liveness"), request)
    assert _status_and_body(answer) == (200, b"app saw /healthz")
    assert b"content-length: 3" in the_pod.app.heads[-1]


async def test_an_https_probe_is_passed_through_as_tcp(the_pod: Pod) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", the_pod.port("startup"))
    writer.write(b"\x16\x03\x01 a TLS ClientHello, as far as we care")
    await writer.drain()
    writer.write_eof()
    async with asyncio.timeout(5):
        assert await reader.read() == b"echo:\x16\x03\x01 a TLS ClientHello, as far as we care"
    writer.close()


async def test_an_https_probe_of_an_app_that_is_down_is_accepted_and_closed() -> None:
    probes = health.HealthServer(
        [HealthProbe("startup", "HTTPS", _unused_port())],
        {health.listener_name("startup"): ("127.0.0.1", 0)},
    )
    await probes.start()
    try:
        port = probes.addresses["startup_listener"][1]
        assert await _exchange(port, b"\x16\x03\x01hello") == b""
    finally:
        await probes.close()


async def test_each_kind_listens_on_its_port_on_every_address_unless_overridden() -> None:
    probes = health.HealthServer(
        [HealthProbe("liveness", "HTTP", 14001), HealthProbe("startup", "HTTPS", 8443)],
        {"startup_listener": ("127.0.0.1", 0)},
    )
    assert [probes.bind_address(probe) for probe in probes.probes] == [
        ("0.0.0.0", 15901),
        ("127.0.0.1", 0),
    ]


async def test_a_port_taken_is_an_error_naming_the_probe_and_nothing_stays_open() -> None:
    blocker = await asyncio.start_server(_echo, "127.0.0.1", 0)
    taken = blocker.sockets[0].getsockname()[1]
    probes = health.HealthServer(
        [HealthProbe("liveness", "HTTP", 14001), HealthProbe("readiness", "HTTP", 14001)],
        {"liveness_listener": ("127.0.0.1", 0), "readiness_listener": ("127.0.0.1", taken)},
    )
    try:
        with pytest.raises(
            OSError, match=rf"cannot serve the readiness probe on 127.0.0.1:{taken}"
        ):
            await probes.start()
        assert probes._servers == []
    finally:
        blocker.close()


async def test_close_ends_the_probes_in_progress(the_pod: Pod) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", the_pod.port("startup"))
    writer.write(b"hello")
    await writer.drain()
    assert await reader.read(100) == b"echo:hello"
    await the_pod.probes.close()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


# -- in the sidecar -----------------------------------------------------------------------------
async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


@pytest.mark.parametrize(
    "configured", [True, False], ids=["configuration applied", "no xDS: Envoy's fallback"]
)
async def test_the_sidecar_serves_its_probes_once_configured_as_envoy_does(
    tmp_path: Path, configured: bool
) -> None:
    app = App()
    app_server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    app_port = app_server.sockets[0].getsockname()[1]
    boot = bootstrap.parse(
        {
            "node": NODE,
            "xds": XDS,
            "admin": {"port": 0},
            "listeners": {"readiness_listener": "127.0.0.1:0"},
            "health_probes": [{"kind": "readiness", "scheme": "HTTP", "port": app_port}],
        },
        "b.json",
        tmp_path,
    )
    sidecar = main.Sidecar(boot, probes_without_xds=3600 if configured else 0.2)
    await sidecar.start()
    try:
        port = sidecar.health.addresses["readiness_listener"][1]
        assert await _refused(port)  # bound, not listening: as Envoy before its workers
        if configured:
            await sidecar._apply(
                model.ProxyConfig({}, {}, {}, {}, {}, {}, {})
            )  # the xDS client's call
        async with asyncio.timeout(5):
            while not sidecar.health.serving:
                await asyncio.sleep(0.01)
        answer = await _exchange(port, _get("/osm-readiness-probe"))
        assert _status_and_body(answer) == (200, b"app saw /")
        assert sidecar.ready is configured
    finally:
        await sidecar.stop(grace=0)
        app_server.close()
    assert await _refused(port)


async def test_a_sidecar_whose_probe_port_is_taken_does_not_start(tmp_path: Path) -> None:
    blocker = await asyncio.start_server(_echo, "127.0.0.1", 0)
    taken = blocker.sockets[0].getsockname()[1]
    boot = bootstrap.parse(
        {
            "node": NODE,
            "xds": XDS,
            "admin": {"port": 0},
            "listeners": {"liveness_listener": f"127.0.0.1:{taken}"},
            "health_probes": [{"kind": "liveness", "scheme": "HTTP", "port": 14001}],
        },
        "b.json",
        tmp_path,
    )
    sidecar = main.Sidecar(boot)
    try:
        with pytest.raises(main.SidecarError, match="cannot serve the liveness probe"):
            await sidecar.start()
        assert sidecar.admin.server is not None and not sidecar.admin.server.is_serving()
    finally:
        blocker.close()
