"""``osm verify connectivity`` reads both sidecars before and after one request and prints
the verdict beside the policy's expectation. The pods' admin interfaces and the request
are stand-ins here (recorded stats, a recorded answer); the live path runs in the e2e
tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from osm.base import wellknown
from osm.cli import connectivity, main, verify
from osm.cli.client import Api
from tests.unit.catalog import meshes as m
from tests.unit.cli.local_api import RunningApi

main.register(main.cli)

INJECTED = {wellknown.PROXY_UUID_LABEL: "6f1c1a8e-3b52-4a4e-9f4b-2d3c8f5e7a10"}
CLUSTER = "cluster.bookstore/bookstore|14001"
CONFIG = {
    "configs": [{"dynamicActiveClusters": [{"cluster": {"name": "bookstore/bookstore|14001"}}]}]
}


def netns(name: str) -> dict[str, str]:
    return {wellknown.NETNS_ANNOTATION: name}


@pytest.fixture
def mesh(api: RunningApi, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningApi]:
    docs = [
        m.namespace("bookbuyer"),
        m.namespace("bookstore"),
        m.pod(
            "bookbuyer",
            "bookbuyer-0",
            {"app": "bookbuyer", **INJECTED},
            "bookbuyer",
            "",
            annotations=netns("buyer-ns"),
        ),
        m.pod(
            "bookstore",
            "bookstore-0",
            {"app": "bookstore", **INJECTED},
            "bookstore",
            "",
            annotations=netns("store-ns"),
        ),
        m.service("bookstore", "bookstore", ports=((14001, 14001, "http"),)),
    ]
    with Api.connect(api.kubeconfig) as client:
        for doc in docs:
            client.create(doc)
    monkeypatch.setattr(verify.os, "geteuid", lambda: 0)
    yield api


def admin(readings: dict[str, list[str]]) -> Any:
    """An admin interface per network namespace answering /stats from ``readings`` in
    turn, and /config_dump with the bookstore's cluster."""

    def get(namespace: str, query: str, timeout: float = 10.0) -> tuple[int, str]:
        if query == "config_dump":
            return 200, json.dumps(CONFIG)
        return 200, readings[namespace].pop(0)

    return get


def osm(api: RunningApi, *args: str) -> Result:
    return CliRunner().invoke(main.cli, ["--kubeconfig", str(api.kubeconfig), *args], obj={})


ARGS = ["verify", "connectivity", "--from-pod", "bookbuyer/bookbuyer-0"]
ARGS += ["--to-service", "bookstore/bookstore", "--path", "/books-bought"]


def test_a_denied_request_is_rbac_as_the_policy_expects(
    mesh: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch = {"spec": {"traffic": {"enablePermissiveTrafficPolicyMode": False}}}
    with Api.connect(mesh.kubeconfig) as client:
        client.patch("MeshConfig", wellknown.CONTROL_PLANE_NAMESPACE, "osm-mesh-config", patch)
    readings = {
        "buyer-ns": [f"{CLUSTER}.upstream_rq_total: 1\n", f"{CLUSTER}.upstream_rq_total: 2\n"],
        "store-ns": [
            "http.inbound_bookstore_bookstore_14001.rbac.denied: 0\n",
            "http.inbound_bookstore_bookstore_14001.rbac.denied: 1\n",
        ],
    }
    sent: list[tuple[str, int, str]] = []

    def send(ns: str, ip: str, target: connectivity.Target, path: str, timeout: float) -> Any:
        sent.append((ns, target.port, path))
        return connectivity.Probe(403, "RBAC: access denied", True)

    monkeypatch.setattr(verify, "admin_in_netns", admin(readings))
    monkeypatch.setattr(verify, "send", send)
    result = osm(mesh, *ARGS)
    assert result.exit_code == verify.FAILED_EXIT, result.output
    assert sent == [("buyer-ns", 14001, "/books-bought")]
    lines = result.output.splitlines()
    assert lines[1] == (
        "Observed: rbac-denied: RBAC denied: the destination's sidecar refused its requests "
        "(the source's identity or the request is not allowed on this port)"
    )
    assert lines[2] == "  destination http.inbound_bookstore_bookstore_14001.rbac.denied +1"
    assert lines[3] == "Expected: denied by the policy"
    assert "disagrees" not in result.output


def test_success_in_permissive_mode_as_json(
    mesh: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = {
        "buyer-ns": [f"{CLUSTER}.upstream_rq_total: 1\n", f"{CLUSTER}.upstream_rq_total: 2\n"],
        "store-ns": ["", ""],
    }
    monkeypatch.setattr(verify, "admin_in_netns", admin(readings))
    monkeypatch.setattr(verify, "send", lambda *args: connectivity.Probe(200, "[]", True))
    result = osm(mesh, *ARGS, "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["observed"], report["agrees"]) == ("success", True)
    assert report["expected"]["allowed"] is True
    assert report["evidence"] == [f"source {CLUSTER}.upstream_rq_total +1"]


ERRORS = [
    (
        ["--from-pod", "bookbuyer/nobody", "--to-service", "bookstore/bookstore"],
        "error: Could not find pod nobody in namespace bookbuyer\n",
    ),
    (
        ["--from-pod", "bookbuyer/bookbuyer-0", "--to-service", "bookstore/gone"],
        'error: service "gone" not found in namespace "bookstore"\n',
    ),
    (
        [
            "--from-pod",
            "bookbuyer/bookbuyer-0",
            "--to-service",
            "bookstore/bookstore",
            "--port",
            "80",
        ],
        "error: Service bookstore/bookstore has TCP ports 14001: choose one with --port\n",
    ),
    (
        ["--from-pod", "bookbuyer", "--to-service", "bookstore/bookstore"],
        'error: "bookbuyer" is not NAMESPACE/NAME: give --from-pod NAMESPACE/POD and '
        "--to-service NAMESPACE/SERVICE\n",
    ),
]


@pytest.mark.parametrize(("args", "message"), ERRORS, ids=[e[1][7:45] for e in ERRORS])
def test_what_cannot_be_tried_is_an_error(mesh: RunningApi, args: list[str], message: str) -> None:
    result = osm(mesh, "verify", "connectivity", *args)
    assert result.exit_code == 1
    assert result.stderr == message


# -- the request itself, on the loopback (a socket "in the pod" is a plain socket here) ------
def serve_once(answer: bytes) -> tuple[int, Any]:
    """A server on 127.0.0.1 that reads a request and writes ``answer`` (nothing: close)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            if answer:
                conn.sendall(answer)
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


SEND_CASES = [
    # (protocol, what the server answers, expected probe)
    ("http", b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno", (404, "no", True, "")),
    ("http", b"", (None, "", False, "the connection closed without an HTTP answer")),
    ("tcp", b"hello", (None, "", True, "")),
]


@pytest.mark.parametrize(("protocol", "answer", "expected"), SEND_CASES)
def test_send(
    monkeypatch: pytest.MonkeyPatch, protocol: str, answer: bytes, expected: tuple[Any, ...]
) -> None:
    import socket

    from osm.catalog.ids import ServiceId
    from osm.runtime import network

    port, thread = serve_once(answer)
    monkeypatch.setattr(network, "socket_in_netns", lambda netns: socket.socket())
    target = connectivity.Target(ServiceId("bookstore", "bookstore"), port, port, protocol)
    probe = verify.send("pod-ns", "127.0.0.1", target, "/", 2.0)
    thread.join(5)
    assert (probe.status, probe.body, probe.connected, probe.error) == expected
