"""The controller's own HTTP endpoints (OSM's osm-controller :9091): metrics, health,
version, and the connected proxies for ``osm proxy status``.

Read-only and about the controller itself; the mesh's resources are read and written
through the Kubernetes API only. ``/debug/proxies`` lists each connected proxy's identity,
ACKed versions per type and last NACK (OSM serves this on its debug server), the data plane
and the expiry of the mesh certificate the proxy holds. ``/metrics`` writes OSM's metric
names (`osm.ads.metrics.exposition`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import osm
from osm.ads.metrics import exposition
from osm.controller.metrics import ControllerMetrics

ProxyStatusSource = Callable[[], list[dict[str, Any]]]
Readiness = Callable[[], bool]


def make_app(
    registry: CollectorRegistry,
    proxies: ProxyStatusSource,
    ready: Readiness,
    counted: ControllerMetrics | None = None,
) -> web.Application:
    """The app; with `counted`, every response counts in its ``osm_http_response_*``."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=exposition(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def alive(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readiness(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(text="not ready: the first configuration is not built", status=503)

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": osm.__version__})

    async def proxy_status(request: web.Request) -> web.Response:
        return web.json_response({"proxies": proxies()})

    app = web.Application(middlewares=[counted.middleware()] if counted is not None else [])
    app.add_routes(
        [
            web.get("/metrics", metrics),
            web.get("/health/alive", alive),
            web.get("/health/ready", readiness),
            web.get("/version", version),
            web.get("/debug/proxies", proxy_status),
        ]
    )
    return app


def jsonable(value: Any) -> Any:
    """Dataclass dicts with datetimes and mappings, made JSON-ready."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
