"""The demo apps as the runtime runs them: `python -m osm.demo.bookstore ROLE` with env."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from osm.demo.bookstore import wire
from tests.unit.demo.demotesting import (
    ROOT,
    Apps,
    Reply,
    Stub,
    free_port,
    get,
    get_json,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

StartStub = Callable[[Callable[[int], Reply]], Stub]


def client_env(identity: str, bookstore_url: str, **more: str) -> dict[str, str]:
    return {"IDENTITY": identity, "BOOKSTORE_URL": bookstore_url, "RATE": "50", **more}


def metrics_when(url: str, predicate: Callable[[Any], bool], what: str) -> Any:
    seen: list[Any] = []

    def check() -> bool:
        seen[:] = [get_json(url)]
        return predicate(seen[0])

    wait_until(check, what=what)
    return seen[0]


def test_client_counts_the_bookstore_identity(apps: Apps) -> None:
    store = apps.start("bookstore", {"IDENTITY": "bookstore-v1"})
    buyer = apps.start("client", client_env("bookbuyer", store.url))

    metrics = metrics_when(
        f"{buyer.url}/metrics", lambda m: m["requests"] >= 10, "ten requests from the client"
    )

    assert metrics["role"] == "client"
    assert metrics["identity"] == "bookbuyer"
    assert metrics["ok"] == metrics["requests"]
    assert metrics["by_identity"] == {"bookstore-v1": metrics["requests"]}
    assert metrics["by_status_class"] == {"2xx": metrics["requests"]}
    assert metrics["denied"] == metrics["errors"] == 0
    assert isinstance(metrics["books_bought"], int)
    sold = get_json(f"{store.url}/metrics")
    assert sold["by_client"]["bookbuyer"] >= 5


def test_client_counts_each_identity_a_split_sends_it_to(apps: Apps, stub: StartStub) -> None:
    split = stub(lambda n: (200, {"identity": f"bookstore-v{n % 2 + 1}"}))
    buyer = apps.start("client", client_env("bookbuyer", split.url))

    metrics = metrics_when(f"{buyer.url}/metrics", lambda m: m["requests"] >= 10, "ten requests")

    assert set(metrics["by_identity"]) == {"bookstore-v1", "bookstore-v2"}
    assert abs(metrics["by_identity"]["bookstore-v1"] - metrics["by_identity"]["bookstore-v2"]) <= 1
    assert {"/buy-a-book/new", "/books-bought"} <= set(split.requests)


@pytest.mark.parametrize("status", [403, 404])
def test_client_counts_denials(apps: Apps, stub: StartStub, status: int) -> None:
    mesh = stub(lambda n: (status, {}))
    thief = apps.start("client", client_env("bookthief", mesh.url))

    metrics = metrics_when(f"{thief.url}/metrics", lambda m: m["requests"] >= 5, "five requests")

    assert metrics["denied"] == metrics["requests"]
    assert metrics["ok"] == metrics["errors"] == 0
    assert metrics["by_status_class"] == {"4xx": metrics["requests"]}
    assert metrics["by_identity"] == {}
    assert metrics["last_outcome"] == "denied"


def test_client_counts_other_statuses_as_errors(apps: Apps, stub: StartStub) -> None:
    mesh = stub(lambda n: (503, {}))
    buyer = apps.start("client", client_env("bookbuyer", mesh.url))

    metrics = metrics_when(f"{buyer.url}/metrics", lambda m: m["requests"] >= 3, "three requests")

    assert metrics["errors"] == metrics["requests"]
    assert metrics["by_status_class"] == {"5xx": metrics["requests"]}


def test_client_keeps_running_against_a_dead_server(apps: Apps) -> None:
    buyer = apps.start("client", client_env("bookbuyer", f"http://127.0.0.1:{free_port()}"))

    first = metrics_when(f"{buyer.url}/metrics", lambda m: m["requests"] >= 3, "three requests")
    later = metrics_when(
        f"{buyer.url}/metrics", lambda m: m["requests"] >= first["requests"] + 5, "more requests"
    )

    assert buyer.process.poll() is None
    assert later["errors"] == later["requests"]
    assert later["by_error"] == {"connect": later["requests"]}
    assert later["last_outcome"] == "connect"
    assert "now connect" in buyer.output()


def test_client_counts_timeouts_from_a_server_that_never_answers(apps: Apps) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # accepted by the kernel, never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        buyer = apps.start("client", client_env("bookbuyer", url, TIMEOUT="0.2"))

        metrics = metrics_when(
            f"{buyer.url}/metrics", lambda m: m["requests"] >= 2, "two timed-out requests"
        )

    assert metrics["by_error"].get("timeout", 0) >= 2


def test_bookstore_sells_with_its_identity_and_restocks_the_warehouse(apps: Apps) -> None:
    warehouse = apps.start("bookwarehouse", {"IDENTITY": "bookwarehouse"})
    store = apps.start(
        "bookstore",
        {"IDENTITY": "bookstore-v2", "WAREHOUSE_URL": warehouse.url, "RESTOCK_EVERY": "2"},
    )

    for _ in range(6):
        status, headers, _ = get(f"{store.url}/buy-a-book/new")
        assert (status, headers["identity"]) == (200, "bookstore-v2")

    stock = metrics_when(f"{warehouse.url}/metrics", lambda m: m["restocks"] == 3, "three restocks")
    assert stock["by_bookstore"] == {"bookstore-v2": 3}
    assert stock["books_restocked"] == 6
    sold = metrics_when(f"{store.url}/metrics", lambda m: m["restocks_ok"] == 3, "restocks ok")
    assert sold["books_sold"] == 6
    assert sold["restocks_failed"] == 0
    assert get_json(f"{store.url}/books-bought")["books_bought"] == 6
    status, headers, page = get(f"{store.url}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"bookstore-v2" in page


def test_a_failing_restock_is_counted_not_fatal(apps: Apps) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = apps.start(
        "bookstore", {"IDENTITY": "bookstore-v1", "WAREHOUSE_URL": dead, "RESTOCK_EVERY": "1"}
    )

    for _ in range(3):
        assert get(f"{store.url}/buy-a-book/new")[0] == 200

    sold = metrics_when(f"{store.url}/metrics", lambda m: m["restocks_failed"] == 3, "3 fails")
    assert sold["restocks_ok"] == 0
    assert sold["last_restock_error"]
    assert store.process.poll() is None
    assert "failed" in store.output()


def test_servers_answer_unknown_routes_and_methods(apps: Apps) -> None:
    store = apps.start("bookstore", {"IDENTITY": "bookstore-v1"})
    warehouse = apps.start("bookwarehouse", {})

    assert get(f"{store.url}/nope")[0] == 404
    assert get(f"{warehouse.url}/restock-books")[0] == 405
    assert get_json(f"{warehouse.url}/metrics")["restocks"] == 0


@pytest.mark.parametrize("role", ["bookstore", "bookwarehouse", "client"])
def test_sigterm_exits_promptly_with_code_zero(apps: Apps, role: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        # The client is mid-request to a server that never answers, with a long timeout.
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = client_env("bookbuyer", url, TIMEOUT="30") if role == "client" else {}
        app = apps.start(role, env)
        time.sleep(0.2)

        began = time.monotonic()
        app.process.send_signal(signal.SIGTERM)
        code = app.process.wait(timeout=5)

    assert code == 0, app.output()
    assert time.monotonic() - began < 2.0
    assert "stopped" in app.output()


def test_a_port_in_use_is_reported_not_a_traceback(apps: Apps) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "osm.demo.bookstore", "bookwarehouse", "--host", "127.0.0.1"],
            env={"PORT": str(port), "PATH": "/usr/bin:/bin"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )

    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


def test_help_names_the_roles_and_their_variables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "osm.demo.bookstore", "client", "--help"],
        capture_output=True,
        text=True,
        timeout=10,
    )

    assert result.returncode == 0
    for variable in ("IDENTITY", "BOOKSTORE_URL", "METRICS_PORT", "RATE", "TIMEOUT"):
        assert variable in result.stdout


def test_bookstore_forwards_the_trace_headers_of_a_sale_to_its_restock(apps: Apps) -> None:
    """The app takes part in tracing as Envoy asks apps to: the headers of the sale go on
    to the warehouse; the app starts no trace of its own."""
    import http.server
    import threading
    import urllib.request

    seen: list[dict[str, str]] = []

    class Warehouse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    warehouse = http.server.HTTPServer(("127.0.0.1", 0), Warehouse)
    threading.Thread(target=warehouse.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{warehouse.server_address[1]}"
        store = apps.start(
            "bookstore", {"IDENTITY": "bookstore-v1", "WAREHOUSE_URL": url, "RESTOCK_EVERY": "1"}
        )
        trace = {
            "x-request-id": "r-1",
            "x-b3-traceid": "463ac35c9f6413ad",
            "x-b3-spanid": "a2fb4a1d1a96d312",
            "x-b3-parentspanid": "0020000000000001",
            "x-b3-sampled": "1",
            "b3": "463ac35c9f6413ad-a2fb4a1d1a96d312-1",
            "x-ot-span-context": "ot",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        request = urllib.request.Request(f"{store.url}/buy-a-book/new", headers=trace)
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        request = urllib.request.Request(f"{store.url}/buy-a-book/new")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        metrics_when(f"{store.url}/metrics", lambda m: m["restocks_ok"] == 2, "two restocks")
    finally:
        warehouse.shutdown()
        warehouse.server_close()
    traced, untraced = sorted(seen, key=lambda headers: "x-b3-traceid" not in headers)
    assert {k: traced[k] for k in trace} == trace
    assert not set(wire.TRACE_HEADERS) & set(untraced)


def test_a_demo_app_whose_log_cannot_be_written_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its log's filesystem full (``/dev/full``: ENOSPC on every write), an app loses its
    log lines and nothing else: a client that died of it stopped buying."""
    from osm.demo.bookstore import process

    full = open("/dev/full", "w")  # noqa: SIM115 (its close fails too: what is left to write)
    monkeypatch.setattr(sys, "stdout", full)
    for number in range(3):
        process.log("bookthief", f"line {number}")
    monkeypatch.undo()
    with contextlib.suppress(OSError):
        full.close()
