"""Python sidecars configured by a real controller over mTLS ADS, on loopback.

The controller runs in this event loop (`tests.controllers.running`) and the mesh is
written through its Kubernetes API; the sidecars run in the same loop
(`osm.proxy.main.Sidecar`) with bootstrap certificates issued from the controller's own
CA directory. Pods get loopback IPs, so the path client
-> outbound sidecar -> mTLS -> inbound sidecar -> app works without iptables: the outbound
sidecar is told the original destination (the service's ClusterIP), the inbound one
listens on the pod IP itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from osm.base.identity import Identity
from osm.ca import builtin
from osm.cli import proxy as proxy_cli
from osm.controller import server
from osm.kube.client import KubeClient
from osm.proxy import bootstrap, main, xds_client
from osm.proxy.runtime import Options
from osm.runtime import bootstrap as bootstrap_writer
from tests import controllers, kubeapi
from tests.conftest import free_port
from tests.unit.catalog import meshes

pytestmark = pytest.mark.timeout(90)

BUYER_IP, STORE_IP, STORE_V2_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"
APEX_IP = "10.96.0.10"
WAIT = 20.0
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def app_port() -> int:
    """A port free on both 127.0.0.1 (the app) and STORE_IP (the inbound sidecar)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind((STORE_IP, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def mesh(port: int) -> list[dict[str, Any]]:
    ports = ((80, port, "http"),)
    store = {"app": "bookstore"}
    return [
        meshes.namespace("osm-system", mesh=False),
        meshes.mesh_config(permissive=True),
        meshes.namespace("bookbuyer"),
        meshes.namespace("bookstore"),
        meshes.pod("bookbuyer", "bookbuyer-0", {"app": "bookbuyer"}, "bookbuyer", BUYER_IP),
        meshes.service("bookstore", "bookstore", store, ports, cluster_ip=APEX_IP),
        meshes.service(
            "bookstore", "bookstore-v1", {**store, "version": "v1"}, ports, "10.96.0.11"
        ),
        meshes.service(
            "bookstore", "bookstore-v2", {**store, "version": "v2"}, ports, "10.96.0.12"
        ),
        meshes.pod(
            "bookstore", "bookstore-v1-0", {**store, "version": "v1"}, "bookstore", STORE_IP
        ),
        meshes.pod(
            "bookstore",
            "bookstore-v2-0",
            {**store, "version": "v2"},
            "bookstore",
            STORE_V2_IP,
            ready=False,  # no sidecar runs there: keep it out of the endpoints
        ),
    ]


def split(v1: int, v2: int) -> dict[str, Any]:
    return meshes.traffic_split(
        "bookstore", "bookstore-split", "bookstore", [("bookstore-v1", v1), ("bookstore-v2", v2)]
    )


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[server.Controller]:
    async with controllers.running(tmp_path / "state") as running:
        yield running


def write_bootstrap(
    controller: server.Controller,
    directory: Path,
    pod: str,
    identity: Identity,
    listeners: dict[str, tuple[str, int]],
    certificate_identity: Identity | None = None,
) -> bootstrap.Bootstrap:
    ca = builtin.BuiltinCA.open(controller.settings.state_dir / "ca", builtin.utc_now())
    written = bootstrap_writer.write(
        directory,
        proxy_id=pod,
        identity=certificate_identity or identity,
        xds_address=f"127.0.0.1:{controller.xds_port}",
        issuer=ca,
        now=builtin.utc_now(),
        admin=("127.0.0.1", 0),
        listeners=listeners,
    )
    boot = bootstrap.load(written.path)
    if certificate_identity is not None:  # claim `identity` with another's certificate
        node = f"{pod}.sidecar.{identity.service_account}.{identity.namespace}"
        boot = dataclasses.replace(boot, node_id=node)
    return boot


async def start_sidecar(
    boot: bootstrap.Bootstrap,
    original_destination: Callable[[socket.socket], tuple[str, int]] | None = None,
) -> main.Sidecar:
    options = Options() if original_destination is None else Options(original_destination)
    sidecar = main.Sidecar(boot, options, wait_timeout=5.0, backoff=xds_client.Backoff(0.05, 0.5))
    await sidecar.start()
    return sidecar


async def admin_get(sidecar: main.Sidecar, path: str) -> tuple[int, str]:
    host, port = sidecar.admin.address
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}{path}") as response,
    ):
        return response.status, await response.text()


def ready_status(port: int) -> int:
    """The HTTP status of ``/ready`` on the admin port ``port`` of 127.0.0.1; 0 while
    nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


async def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def route_weights(dump: dict[str, Any]) -> list[tuple[str, int]]:
    for part in dump["configs"]:
        for entry in part.get("dynamicRouteConfigs", []):
            config = entry["routeConfig"]
            for vhost in config.get("virtualHosts", []):
                if "bookstore.bookstore" not in vhost.get("domains", []):
                    continue
                for route in vhost["routes"]:
                    clusters = route["route"].get("weightedClusters", {}).get("clusters", [])
                    return [(c["name"], int(c["weight"])) for c in clusters]
    return []


async def apply(controller: server.Controller, *docs: dict[str, Any]) -> None:
    async with KubeClient.from_kubeconfig(controller.kubeconfig) as client:
        await kubeapi.apply(client, *docs)


@contextlib.asynccontextmanager
async def app_server(port: int) -> AsyncIterator[None]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path, "via": request.headers.get("host")})

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


BUYER = Identity("bookbuyer", "bookbuyer")
STORE = Identity("bookstore", "bookstore")
LOOPBACK_ANY = ("127.0.0.1", 0)


def buyer_bootstrap(
    controller: server.Controller, directory: Path, certificate_identity: Identity | None = None
) -> bootstrap.Bootstrap:
    """bookbuyer-0's bootstrap, its outbound and prometheus listeners on loopback."""
    return write_bootstrap(
        controller,
        directory,
        "bookbuyer-0",
        BUYER,
        {"outbound-listener": LOOPBACK_ANY, "inbound-prometheus-listener": LOOPBACK_ANY},
        certificate_identity,
    )


async def test_sidecars_get_config_serve_traffic_and_follow_a_split(
    controller: server.Controller, tmp_path: Path
) -> None:
    port = app_port()
    await apply(controller, *mesh(port))
    buyer_boot = buyer_bootstrap(controller, tmp_path / "buyer")
    store_boot = write_bootstrap(
        controller,
        tmp_path / "store",
        "bookstore-v1-0",
        STORE,
        {
            "outbound-listener": LOOPBACK_ANY,
            "inbound-prometheus-listener": LOOPBACK_ANY,
            "inbound-listener": (STORE_IP, port),
        },
    )
    buyer = await start_sidecar(buyer_boot, lambda sock: (APEX_IP, 80))
    store = await start_sidecar(store_boot)
    try:
        async with app_server(port):
            assert (await admin_get(buyer, "/ready"))[0] in (200, 503)
            await buyer.wait_ready(WAIT)
            await store.wait_ready(WAIT)
            assert await admin_get(buyer, "/ready") == (200, "LIVE\n")
            status, body = await admin_get(buyer, "/config_dump")
            assert status == 200
            listeners = [
                entry["name"]
                for part in json.loads(body)["configs"]
                for entry in part.get("dynamicListeners", [])
            ]
            assert "outbound-listener" in listeners
            assert buyer.client.protocol == "delta"

            # client -> outbound sidecar -> mTLS -> inbound sidecar -> app
            outbound = buyer.proxy.listener_address("outbound-listener")
            url = f"http://{outbound[0]}:{outbound[1]}/hello"
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, headers={"Host": "bookstore.bookstore"}) as response,
            ):
                assert response.status == 200, await response.text()
                assert (await response.json())["path"] == "/hello"

            # a TrafficSplit arrives on the same stream
            streams = buyer.client.streams
            await apply(controller, split(75, 25))

            async def weights() -> list[tuple[str, int]]:
                return route_weights(json.loads((await admin_get(buyer, "/config_dump"))[1]))

            expected = [("bookstore/bookstore-v1|80", 75), ("bookstore/bookstore-v2|80", 25)]
            await eventually(lambda: _equals(weights(), expected), "the split's weights")
            await apply(controller, split(10, 90))
            expected = [("bookstore/bookstore-v1|80", 10), ("bookstore/bookstore-v2|80", 90)]
            await eventually(lambda: _equals(weights(), expected), "the new weights")
            assert buyer.client.streams == streams, "reconnected instead of updating"
            assert buyer.core.last_rejection is None

            # the controller's view: both proxies, ACKed versions, no NACK
            proxies = await kubeapi.proxies(controller.http_port)
            by_id = {p["node_id"]: p for p in proxies}
            entry = by_id["bookbuyer-0.sidecar.bookbuyer.bookbuyer"]
            assert entry["protocol"] == "delta" and entry["last_nack"] is None
            assert set(entry["acked_versions"]) >= {"CDS", "LDS", "RDS", "EDS", "SDS"}
            table = proxy_cli.status_table(proxies)
            assert "bookstore-v1-0.sidecar.bookstore.bookstore" in table.splitlines()[2]

            # osm proxy get, against the admin interface
            admin = f"{buyer.admin.address[0]}:{buyer.admin.address[1]}"
            result = await asyncio.to_thread(
                CliRunner().invoke, proxy_cli.proxy, ["get", "listeners", "--address", admin]
            )
            assert result.exit_code == 0, result.output
            assert "outbound-listener::127.0.0.1:" in result.output
    finally:
        await buyer.stop(0.1)
        await store.stop(0.1)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_osm_proxy_get_of_a_pod_the_runtime_did_not_start_is_a_clear_error(
    controller: server.Controller,
) -> None:
    """A pod this test made itself (not the local runtime's) has no network namespace to
    find its proxy in: a clear error, not a traceback. The CLI finds the API through
    ``$KUBECONFIG``."""
    await apply(controller, *mesh(app_port()))
    result = await asyncio.to_thread(
        CliRunner().invoke,
        proxy_cli.proxy,
        ["get", "ready", "bookbuyer-0", "-n", "bookbuyer"],
        env={"KUBECONFIG": str(controller.kubeconfig)},
    )
    assert result.exit_code == 1, result.output
    assert "was not started by the local runtime" in result.output


async def test_a_certificate_of_another_identity_is_refused_and_retried(
    controller: server.Controller, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await apply(controller, *mesh(app_port()))
    boot = buyer_bootstrap(controller, tmp_path / "impostor", certificate_identity=STORE)
    with caplog.at_level(logging.INFO, logger="osm.proxy"):
        sidecar = await start_sidecar(boot)
        try:
            await eventually(lambda: sidecar.client.streams >= 3, "three attempts")
            assert not sidecar.ready
            assert (await admin_get(sidecar, "/ready"))[0] == 503
        finally:
            await sidecar.stop(0.1)
    assert "refused this proxy (PERMISSION_DENIED)" in caplog.text
    assert "spiffe://cluster.local/ns/bookstore/sa/bookstore" in caplog.text
    assert sidecar.client.backoff.attempts >= 2


async def test_the_sidecar_keeps_its_config_while_the_controller_is_away(
    controller: server.Controller, tmp_path: Path
) -> None:
    await apply(controller, *mesh(app_port()))
    boot = buyer_bootstrap(controller, tmp_path / "buyer")
    sidecar = await start_sidecar(boot, lambda sock: (APEX_IP, 80))
    ports = controllers.same_ports(controller)
    try:
        await sidecar.wait_ready(WAIT)
        before = json.loads((await admin_get(sidecar, "/config_dump"))[1])
        await controller.stop()
        await eventually(lambda: not sidecar.client.connected, "the stream to end")
        await eventually(lambda: sidecar.client.streams >= 3, "reconnect attempts")
        assert await admin_get(sidecar, "/ready") == (200, "LIVE\n")
        outbound = sidecar.proxy.listener_address("outbound-listener")
        with socket.create_connection(outbound, timeout=2):
            pass  # still listening
        after = json.loads((await admin_get(sidecar, "/config_dump"))[1])
        assert route_weights(after) == route_weights(before)
        assert after["configs"][1] == before["configs"][1]  # the listeners
        async with controllers.running(controller.settings.state_dir, **ports):
            await eventually(lambda: sidecar.client.connected, "the reconnect")
            assert sidecar.core.last_rejection is None
    finally:
        await sidecar.stop(0.1)


def test_osm_sidecar_process_drains_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """`osm sidecar` as a process; no controller: it retries, is not ready, stops cleanly."""
    admin_port = free_port()
    path = tmp_path / "bootstrap.json"
    path.write_text(
        json.dumps(
            {
                "node": {"id": "bookbuyer-0.sidecar.bookbuyer.bookbuyer"},
                "xds": {"address": f"127.0.0.1:{free_port()}", "insecure": True},
                "admin": {"port": admin_port},
                "drain_seconds": 1,
            }
        )
    )
    command = "from osm.cli.proxy import sidecar; sidecar()"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "--bootstrap", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while (status := ready_status(admin_port)) != 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 503, "the admin interface did not come up"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
        assert process.returncode == 0, output.decode()
        assert "xDS stream failed: UNAVAILABLE" in output.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
