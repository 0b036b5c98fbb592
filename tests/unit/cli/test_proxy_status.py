"""``osm proxy status`` reads the controller's own HTTP endpoint (``/debug/proxies`` of
`osm.controller.api`), not the Kubernetes API, and says how to reach it when it does
not answer."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from osm.apiserver import local
from osm.base import wellknown
from osm.cli import main, proxy
from osm.controller import api as controller_api
from osm.runtime import daemon
from tests.conftest import free_port
from tests.unit.cli.local_api import RunningApi

main.register(main.cli)

CONNECTED = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
PROXY = {
    "node_id": "6a1c.sidecar.bookbuyer.bookbuyer",
    "identity": "bookbuyer.bookbuyer",
    "protocol": "ads",
    "connected_since": CONNECTED,
    "acked_versions": {"CDS": "3", "LDS": "3"},
    "last_nack": {"type": "RDS", "version": "2", "message": "unknown cluster"},
}


def serve_proxies(api: RunningApi, proxies: list[dict[str, Any]]) -> tuple[str, web.AppRunner]:
    """The controller's HTTP app on a free port of the test API's loop; its address."""
    app = controller_api.make_app(
        CollectorRegistry(), lambda: [controller_api.jsonable(p) for p in proxies], lambda: True
    )

    async def start() -> tuple[str, web.AppRunner]:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"127.0.0.1:{local.bound_port(site, 0)}", runner

    return api.call(start())


def test_status_lists_the_connected_proxies(api: RunningApi) -> None:
    address, runner = serve_proxies(api, [PROXY])
    try:
        result = CliRunner().invoke(main.cli, ["proxy", "status", "--address", address], obj={})
        fetched = proxy.fetch_proxies(address)
    finally:
        api.call(runner.cleanup())
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split() == [
        "NODE", "ID", "IDENTITY", "PROTOCOL", "CONNECTED", "CDS", "LDS", "RDS", "EDS", "SDS",
        "LAST", "NACK",
    ]  # fmt: skip
    assert row.split()[:3] == ["6a1c.sidecar.bookbuyer.bookbuyer", "bookbuyer.bookbuyer", "ads"]
    assert row.endswith("RDS 2: unknown cluster")
    assert json.loads(json.dumps(fetched)) == [controller_api.jsonable(PROXY)]


def test_no_proxies(api: RunningApi) -> None:
    address, runner = serve_proxies(api, [])
    try:
        result = CliRunner().invoke(main.cli, ["proxy", "status", "--address", address], obj={})
    finally:
        api.call(runner.cleanup())
    assert (result.output, result.exit_code) == ("No proxies are connected.\n", 0)


def test_a_controller_that_does_not_answer(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main.cli, ["proxy", "status", "--address", address], obj={})
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot reach the controller at http://{address}/")
    assert "osm up" in result.output


def test_the_default_address_is_the_port_osm_up_recorded(tmp_path: Path) -> None:
    default = f"127.0.0.1:{wellknown.CONTROLLER_HTTP_PORT}"
    assert proxy.default_controller_address(tmp_path) == default, "OSM's port by default"
    daemon.MeshSettings(tmp_path, http_port=19091).save()
    assert proxy.default_controller_address(tmp_path) == "127.0.0.1:19091"
