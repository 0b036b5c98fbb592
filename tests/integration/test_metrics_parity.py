"""The Prometheus series both data planes expose, compared on the same traffic: real Envoy
(the independent peer) and the Python sidecar, configured from the same Listener and
Clusters, send the same requests to one app; then each one's ``/stats/prometheus`` is read
and the series the mesh's Prometheus keeps are compared.

Kept series: OSM's chart's regex plus ``envoy_cluster_upstream_rq_time_*`` and the
per-code ``envoy_cluster_upstream_rq`` (docs of issue #18). The two planes must write the
same names with the same label keys (``envoy_cluster_name`` as Envoy's tag extraction makes
it: up to the cluster's first dot, ``:`` as ``_``), the same histogram bucket bounds, and
the same request counts per cluster, class and code. Byte counts and latencies differ by
nature (Envoy adds its own headers; each plane has its own speed): for those the test
checks only what the traffic guarantees (bytes flowed; a delayed request is above the
delay's bucket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import json_format

from osm.base import wellknown
from osm.proxy import assembly, server
from osm.proxy.runtime import Options
from tests.integration import proxymesh
from tests.unit.xds.envoy_validate import ENVOY, SKIP_REASON

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(ENVOY is None, reason=SKIP_REASON),
]

MESH = "bookstore/bookstore|14001"  # an outbound cluster as osm.xds names it
DOTTED = "bookstore/bookstore.v1:80|local"  # a dot and a colon: Envoy's tag extraction
DELAY = 0.06  # seconds the app holds a `/slow/...` response: above the 50 ms bucket
TRAFFIC = [
    ("/200", 200), ("/200", 200), ("/200", 200), ("/slow/200", 200), ("/slow/201", 201),
    ("/404", 404), ("/404", 404), ("/503", 503), ("/302", 302),
    ("/dotted/200", 200), ("/dotted/500", 500),
]  # fmt: skip
KEPT = re.compile(
    r"envoy_server_live|envoy_cluster_health_check_.*|envoy_cluster_upstream_rq_xx"
    r"|envoy_cluster_upstream_cx_active|envoy_cluster_upstream_cx_tx_bytes_total"
    r"|envoy_cluster_upstream_cx_rx_bytes_total|envoy_cluster_upstream_rq_total"
    r"|envoy_cluster_upstream_cx_destroy_remote_with_active_rq"
    r"|envoy_cluster_upstream_cx_connect_timeout"
    r"|envoy_cluster_upstream_cx_destroy_local_with_active_rq"
    r"|envoy_cluster_upstream_rq_pending_failure_eject|envoy_cluster_upstream_rq_pending_overflow"
    r"|envoy_cluster_upstream_rq_timeout|envoy_cluster_upstream_rq_rx_reset"
    r"|envoy_cluster_upstream_rq_time_(bucket|sum|count)|envoy_cluster_upstream_rq"
)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    """Prometheus text 0.0.4 -> {(name, labels): value}; comments skipped."""
    series: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(LABEL.findall(labels or ""))
        series[(name, pairs)] = float(value)
    return series


DOTTED_PREFIX = "envoy_cluster_v1_80_local_"  # what DOTTED's name adds to its metrics' names
RQ_TIME_COUNTS = {"envoy_cluster_upstream_rq_time_count", DOTTED_PREFIX + "upstream_rq_time_count"}


def kept(series: Series) -> Series:
    """The series Prometheus keeps (DOTTED's too, whose names its dot changes)."""
    return {
        key: value
        for key, value in series.items()
        if KEPT.fullmatch(key[0].replace(DOTTED_PREFIX, "envoy_cluster_", 1))
    }


def shape(series: Series) -> set[tuple[str, tuple[str, ...]]]:
    """Each series' name and label keys, and the values of the labels that name things
    (cluster, class, code, bucket bound): what a dashboard's query selects on."""
    return {(name, tuple(sorted(f"{k}={v}" for k, v in labels))) for name, labels in series}


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


# -- the app and the shared configuration ---------------------------------------------------
async def serve_app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive: answers the status the path ends in, `/slow/...` after DELAY."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            if path.startswith("/slow/"):
                await asyncio.sleep(DELAY)
            status = int(path.rsplit("/", 1)[1])
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok".encode())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def resources(app_port: int, listen_port: int) -> dict[str, dict[str, object]]:
    def route(prefix: str, cluster: str) -> route_components_pb2.Route:
        return route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix=prefix),
            route=route_components_pb2.RouteAction(cluster=cluster),
        )

    manager = proxymesh.hcm("outbound-mesh-http", "")
    manager.ClearField("rds")
    manager.route_config.CopyFrom(
        route_pb2.RouteConfiguration(
            name="inline",
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name="app", domains=["*"], routes=[route("/dotted/", DOTTED), route("/", MESH)]
                )
            ],
        )
    )
    listener = proxymesh.http_listener("http", listen_port, manager)
    return {
        wellknown.LISTENER_TYPE: {"http": listener},
        wellknown.CLUSTER_TYPE: {
            name: proxymesh.static_cluster(name, "127.0.0.1", app_port) for name in (MESH, DOTTED)
        },
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def envoy_bootstrap(config: dict[str, dict[str, object]]) -> dict[str, object]:
    def as_json(message: object) -> object:
        return json_format.MessageToDict(message, preserving_proto_field_name=True)  # type: ignore[arg-type]

    return {
        "node": {"id": "parity", "cluster": "parity"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "stats_flush_interval": "0.1s",  # histograms reach /stats/prometheus at a flush
        "static_resources": {
            "listeners": [as_json(m) for m in config[wellknown.LISTENER_TYPE].values()],
            "clusters": [as_json(m) for m in config[wellknown.CLUSTER_TYPE].values()],
        },
    }


@contextlib.asynccontextmanager
async def envoy(tmp_path: Path, bootstrap: dict[str, object]) -> AsyncIterator[int]:
    """Real Envoy on `bootstrap`; yields its admin port once it listens."""
    assert ENVOY is not None
    config, admin_path = tmp_path / "envoy.json", tmp_path / "admin-address"
    config.write_text(json.dumps(bootstrap))
    with (tmp_path / "envoy.log").open("w") as log:
        process = await asyncio.create_subprocess_exec(
            ENVOY, "-c", str(config), "--disable-hot-restart", "-l", "warning",
            "--admin-address-path", str(admin_path), stdout=log, stderr=log,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while not admin_path.exists() or not admin_path.read_text().strip():
                assert process.returncode is None, (tmp_path / "envoy.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "Envoy wrote no admin address"
                await asyncio.sleep(0.05)
            yield int(admin_path.read_text().strip().rsplit(":", 1)[1])
        finally:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
            if process.returncode is None:
                process.kill()
                await process.wait()


async def get(port: int, path: str) -> int:
    """One request on a connection of its own -> the status."""
    for _ in range(100):  # Envoy's listener may take a moment after its admin
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1])


async def send_traffic(port: int) -> None:
    for path, status in TRAFFIC:
        assert await get(port, path) == status, path


def admin_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


async def envoy_series(admin_port: int) -> Series:
    """Envoy's series once its histograms have caught up with the traffic."""
    deadline = time.monotonic() + 10
    while True:
        series = parse(await asyncio.to_thread(admin_get, admin_port, "/stats/prometheus"))
        counted = sum(v for (n, _), v in series.items() if n in RQ_TIME_COUNTS)
        if counted >= len(TRAFFIC) or time.monotonic() > deadline:
            return series
        await asyncio.sleep(0.1)


@pytest.fixture
async def planes(tmp_path: Path) -> AsyncIterator[tuple[Series, Series]]:
    """(Envoy's series, the sidecar's series) after the same traffic through each."""
    app = await asyncio.start_server(serve_app, "127.0.0.1", 0)
    app_port = int(app.sockets[0].getsockname()[1])
    envoy_port = free_port()
    sidecar = server.Sidecar(Options())
    try:
        await sidecar.apply(assembly.assemble(resources(app_port, 0)))
        async with envoy(tmp_path, envoy_bootstrap(resources(app_port, envoy_port))) as admin:
            await send_traffic(envoy_port)
            await send_traffic(sidecar.listener_address("http")[1])
            yield await envoy_series(admin), parse(sidecar.stats.prometheus())
    finally:
        await sidecar.close()
        app.close()
        await app.wait_closed()


# -- the comparisons ----------------------------------------------------------------------------
CLUSTERS = [  # (cluster, the tag Envoy extracts, the metric name's prefix)
    pytest.param(MESH, MESH, "envoy_cluster_", id="mesh-cluster"),
    pytest.param(DOTTED, "bookstore/bookstore", DOTTED_PREFIX, id="dotted-name"),
]


async def test_both_planes_expose_the_same_kept_series(planes: tuple[Series, Series]) -> None:
    envoy_side, sidecar_side = (kept(side) for side in planes)
    missing = shape(envoy_side) - shape(sidecar_side)
    extra = shape(sidecar_side) - shape(envoy_side)
    assert not missing, f"Envoy has, the sidecar lacks: {sorted(missing)}"
    assert not extra, f"the sidecar has, Envoy lacks: {sorted(extra)}"
    assert value(envoy_side, "envoy_server_live") == value(sidecar_side, "envoy_server_live") == 1


@pytest.mark.parametrize(("cluster", "tag", "prefix"), CLUSTERS)
async def test_the_counts_match_for_the_same_traffic(
    planes: tuple[Series, Series], cluster: str, tag: str, prefix: str
) -> None:
    routed = [s for path, s in TRAFFIC if path.startswith("/dotted/") == (cluster == DOTTED)]
    envoy_side, sidecar_side = planes
    for side in (envoy_side, sidecar_side):
        name = {"envoy_cluster_name": tag}
        assert value(side, prefix + "upstream_rq_total", **name) == len(routed)
        assert value(side, prefix + "upstream_rq_time_count", **name) == len(routed)
        assert value(side, prefix + "upstream_rq_time_bucket", le="+Inf", **name) == len(routed)
        # Every request took well under a second, whether it reused a pooled connection or
        # opened one: none may count the time since some other clock's zero.
        assert value(side, prefix + "upstream_rq_time_bucket", le="1000", **name) == len(routed)
        for klass in sorted({s // 100 for s in routed}):
            count = sum(1 for s in routed if s // 100 == klass)
            assert (
                value(side, prefix + "upstream_rq_xx", envoy_response_code_class=str(klass), **name)
                == count
            )
        for code in sorted(set(routed)):
            count = routed.count(code)
            assert value(side, prefix + "upstream_rq", envoy_response_code=str(code), **name) == (
                count
            )
        assert value(side, prefix + "upstream_cx_tx_bytes_total", **name) > 0
        assert value(side, prefix + "upstream_cx_rx_bytes_total", **name) > 0


async def test_a_delayed_request_is_above_the_delays_bucket(
    planes: tuple[Series, Series],
) -> None:
    delayed = sum(1 for path, _ in TRAFFIC if path.startswith("/slow/"))
    routed = sum(1 for path, _ in TRAFFIC if not path.startswith("/dotted/"))
    for side in planes:
        below = value(
            side, "envoy_cluster_upstream_rq_time_bucket", envoy_cluster_name=MESH, le="50"
        )
        assert below <= routed - delayed
        assert value(side, "envoy_cluster_upstream_rq_time_sum", envoy_cluster_name=MESH) >= (
            delayed * DELAY * 1000
        )
