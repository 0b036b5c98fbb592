"""The controller's ``/metrics`` under OSM's names (as OSM's Go client writes them) and its
``/debug/proxies`` entries' ``data_plane`` and ``cert_expiry``."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import osm
from osm.ads import server as ads_server
from osm.ads.metrics import AdsMetrics, exposition
from osm.base.identity import Identity
from osm.ca import builtin
from osm.ca import manager as ca_manager
from osm.controller import api, mesh, server
from osm.controller.metrics import ControllerMetrics

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def families(text: str) -> dict[str, str]:
    """{metric family: its TYPE} of a Prometheus text exposition."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def sample_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


# (how a metric is registered, the family name and type scraped, as OSM's Go client writes it)
EXPOSED = [
    (lambda r: Counter("osm_proxy_reconnect_count", "h", registry=r), "osm_proxy_reconnect_count"),
    (
        lambda r: Counter("osm_proxy_max_connections_rejected", "h", registry=r),
        "osm_proxy_max_connections_rejected",
    ),
    (
        lambda r: Counter("osm_admission_webhook_response", "h", registry=r),
        "osm_admission_webhook_response_total",
    ),
    (lambda r: Counter("osm_http_response_total", "h", registry=r), "osm_http_response_total"),
    (lambda r: Gauge("osm_proxy_connect_count", "h", registry=r), "osm_proxy_connect_count"),
    (lambda r: Histogram("osm_cert_issued_time", "h", registry=r), "osm_cert_issued_time"),
]


@pytest.mark.parametrize(("register", "scraped"), EXPOSED)
def test_a_metric_is_scraped_under_the_name_osm_gives_it(register: Any, scraped: str) -> None:
    registry = CollectorRegistry()
    metric = register(registry)
    metric.inc() if hasattr(metric, "inc") else metric.observe(0.2)
    text = exposition(registry).decode()
    found = families(text)
    assert scraped in found
    if found[scraped] == "counter":
        assert sample_names(text) == {scraped}  # no `_total` added, no `_created`


def test_every_osm_metric_the_controller_registers_is_exposed() -> None:
    registry = CollectorRegistry()
    AdsMetrics.create(registry)
    mesh.PushMetrics(registry)
    ControllerMetrics(registry)
    found = families(exposition(registry).decode())
    expected = {
        "osm_proxy_connect_count": "gauge",
        "osm_proxy_reconnect_count": "counter",
        "osm_proxy_response_send_success_count": "counter",
        "osm_proxy_response_send_error_count": "counter",
        "osm_proxy_xds_request_count": "counter",
        "osm_proxy_config_update_time": "histogram",
        "osm_proxy_broadcast_event_count": "counter",
        "osm_cert_issued_count": "counter",
        "osm_cert_issued_time": "histogram",
        "osm_k8s_api_event_count": "counter",
        "osm_resource_namespace_count": "gauge",
        "osm_http_response_total": "counter",
        "osm_http_response_duration": "histogram",
        "osm_feature_flag_enabled": "gauge",
        "osm_version_info": "gauge",
        "osm_events_queued": "gauge",
    }
    assert {name: found.get(name) for name in expected} == expected


async def test_http_responses_are_counted_by_code_method_and_route() -> None:
    registry = CollectorRegistry()
    app = api.make_app(registry, lambda: [], lambda: True, ControllerMetrics(registry))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/version")).status == 200
        assert (await client.get("/nowhere")).status == 404
        text = await (await client.get("/metrics")).text()
    assert 'osm_http_response_total{code="200",method="GET",path="/version"} 1.0' in text
    assert 'osm_http_response_total{code="404",method="GET",path="unmatched"} 1.0' in text
    assert f'osm_version_info{{version="{osm.__version__}"}} 1.0' in text


def test_each_certificate_the_manager_issues_is_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    manager = ca_manager.CertificateManager(builtin.BuiltinCA.open(tmp_path / "ca", T0), lambda: T0)
    manager.on_issued = metrics.issued
    for name in ("bookbuyer", "bookstore", "bookbuyer"):
        manager.get_or_issue(Identity(name, name))
    assert registry.get_sample_value("osm_cert_issued_count_total") == 2
    assert registry.get_sample_value("osm_cert_issued_time_count") == 2


def status(node_id: str, user_agent: str) -> ads_server.ProxyStatus:
    return ads_server.ProxyStatus(
        node_id=node_id,
        identity="",
        kind="sidecar",
        protocol="delta",
        peer="",
        authenticated=True,
        connected_since=T0,
        acked_versions=MappingProxyType({}),
        last_nack=None,
        requests=0,
        responses=0,
        user_agent=user_agent,
    )


# (node id, user agent, data_plane, whether the identity has a certificate)
PROXIES = [
    ("b1.sidecar.bookbuyer.bookbuyer", "envoy", "envoy", True),
    ("b2.sidecar.bookbuyer.bookbuyer", mesh.PYTHON_SIDECAR_USER_AGENT, "python", True),
    ("s1.sidecar.bookstore.bookstore", "grpc-python", None, False),
    ("not-a-node-id", "", None, False),
]


@pytest.mark.parametrize(("node_id", "agent", "plane", "has_cert"), PROXIES)
def test_debug_proxies_says_the_data_plane_and_the_certificates_expiry(
    tmp_path: Path, node_id: str, agent: str, plane: str | None, has_cert: bool
) -> None:
    manager = ca_manager.CertificateManager(builtin.BuiltinCA.open(tmp_path / "ca", T0), lambda: T0)
    issued = manager.get_or_issue(Identity("bookbuyer", "bookbuyer"))
    entry = api.jsonable(server._status_fields(status(node_id, agent), manager))
    assert entry["data_plane"] == plane
    expiry = entry["cert_expiry"]
    assert expiry == (issued.not_after.isoformat() if has_cert else None)
    if expiry is not None:
        assert datetime.datetime.fromisoformat(expiry) > T0
