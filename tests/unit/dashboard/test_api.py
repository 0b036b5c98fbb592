"""The dashboard's API over real HTTP sources that misbehave: Prometheus, the trace store
and the controller as small fake servers (or none), the bookstore demo as the mesh. Every
answer is 200 with what there is, and ``errors`` says which source failed and how."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from osm.catalog.state import MeshState
from osm.dashboard import server, sources, views
from osm.dashboard.sources import HttpSource, SourceState
from tests.unit.dashboard import bookstore
from tests.unit.dashboard.test_views import BOOK_TRACE, V1, V2

NOT_INSTALLED = "not installed (no Service osm-system/osm-prometheus)"


@dataclass
class Fakes:
    """The fake sources' behaviour and what they were asked."""

    prometheus_delay: float = 0.0
    asked: list[str] = field(default_factory=list)


def prometheus_answer(query: str) -> list[dict[str, Any]]:
    named = {q: name for name, q in sources.window_queries("1m").items()}
    name = named.get(query)
    if name == "rps":
        return [
            bookstore.edge("bookbuyer", "bookbuyer", V1, 4),
            bookstore.edge("bookbuyer", "bookbuyer", V2, 6),
        ]
    if name == "seen":
        return [bookstore.edge("bookthief", "bookthief", V1, 100)]
    return []


def fake_prometheus(fakes: Fakes) -> web.Application:
    async def query(request: web.Request) -> web.Response:
        fakes.asked.append(request.query["query"])
        await asyncio.sleep(fakes.prometheus_delay)
        result = prometheus_answer(request.query["query"])
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    async def query_range(request: web.Request) -> web.Response:
        fakes.asked.append(request.query["query"])
        start = float(request.query["start"])
        values = [[start, "1.5"], [start + 15, "NaN"]]
        result = [{"metric": {}, "values": values}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    async def buildinfo(request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"version": "2.42.0"}})

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/v1/query", query),
            web.get("/api/v1/query_range", query_range),
            web.get("/api/v1/status/buildinfo", buildinfo),
        ]
    )
    return app


def fake_zipkin_and_controller() -> web.Application:
    async def traces(request: web.Request) -> web.Response:
        return web.json_response([BOOK_TRACE])

    async def trace(request: web.Request) -> web.Response:
        if request.match_info["trace_id"] != "00000000000000a1":
            return web.json_response([], status=404)
        return web.json_response(BOOK_TRACE)

    async def services(request: web.Request) -> web.Response:
        return web.json_response(["bookbuyer"])

    async def proxies(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "proxies": [
                    {
                        "node_id": "uuid-bookbuyer-0.sidecar.bookbuyer.bookbuyer",
                        "identity": "bookbuyer/bookbuyer",
                        "acked_versions": {"CDS": "1"},
                        "last_nack": None,
                        "cert_expiry": None,
                        "data_plane": "envoy",
                    }
                ]
            }
        )

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/v2/traces", traces),
            web.get("/api/v2/trace/{trace_id}", trace),
            web.get("/api/v2/services", services),
            web.get("/debug/proxies", proxies),
        ]
    )
    return app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Setup:
    prometheus: str = "up"  # up | missing | slow
    tracing: str = "up"  # up | down
    kubernetes: str = "up"  # up | down
    permissive: bool = False


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Fakes, str, str]]:
    fakes = Fakes()
    prometheus = TestServer(fake_prometheus(fakes))
    others = TestServer(fake_zipkin_and_controller())
    await prometheus.start_server()
    await others.start_server()
    yield fakes, str(prometheus.make_url("")), str(others.make_url(""))
    await prometheus.close()
    await others.close()


async def client_for(
    setup: Setup,
    servers: tuple[Fakes, str, str],
    static_dir: Path | None = None,
    *,
    prepared: bool = False,
) -> TestClient[Any, Any]:
    fakes, prometheus_url, others_url = servers
    timeout = 0.3
    if setup.prometheus == "slow":
        fakes.prometheus_delay = 2.0
    prometheus_at = sources.fixed(
        None if setup.prometheus == "missing" else prometheus_url, NOT_INSTALLED
    )
    tracing_url = others_url if setup.tracing == "up" else f"http://127.0.0.1:{closed_port()}"
    mesh = (
        sources.StaticMesh(MeshState.from_resources(bookstore.resources(setup.permissive)))
        if setup.kubernetes == "up"
        else sources.StaticMesh(
            None, SourceState("unreachable", "https://127.0.0.1:6443: connection refused")
        )
    )
    found = server.Sources(
        "local",
        mesh,
        sources.Prometheus(HttpSource("prometheus", prometheus_at, timeout=timeout)),
        sources.Zipkin(HttpSource("tracing", sources.fixed(tracing_url, ""), timeout=timeout)),
        sources.Controller(
            HttpSource("controller", sources.fixed(others_url, ""), timeout=timeout)
        ),
    )
    dashboard = server.Dashboard(found, refresh_s=5.0)
    if prepared:
        await dashboard.prepare()
    app = server.make_app(dashboard, static_dir or Path("/nonexistent"))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def get(client: TestClient[Any, Any], path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path)
    return response.status, await response.json()


async def test_everything_up(servers: tuple[Fakes, str, str]) -> None:
    client = await client_for(Setup(), servers)
    try:
        status, body = await get(client, "/api/status")
        assert status == 200 and body["errors"] == []
        assert {n: s["state"] for n, s in body["sources"].items()} == {
            "kubernetes": "ok",
            "prometheus": "ok",
            "tracing": "ok",
            "controller": "ok",
        }
        assert (body["mode"], body["refresh_s"]) == ("local", 5.0)
        _, graph = await get(client, "/api/graph?window=1m")
        states = {(e["source"], e["target"]): e["state"] for e in graph["edges"]}
        assert states[("workload:bookthief/bookthief", "service:bookstore/bookstore-v1")] == (
            "denied"
        )
        assert states[("workload:bookbuyer/bookbuyer", "service:bookstore/bookstore-v2")] == (
            "active"
        )
        _, splits = await get(client, "/api/splits")
        assert [b["observed_share"] for b in splits["splits"][0]["backends"]] == [0.4, 0.6]
        _, proxies = await get(client, "/api/proxies")
        assert [p["pod"] for p in proxies["proxies"]] == ["bookbuyer-0"]
        _, traces = await get(client, "/api/traces?service=bookbuyer&limit=5&lookback=1h")
        assert [t["span_count"] for t in traces["traces"]] == [5]
        _, trace = await get(client, "/api/traces/00000000000000a1")
        assert [s["depth"] for s in trace["spans"]] == [0, 1, 2, 2, 3]
        _, missing = await get(client, "/api/traces/00000000000000b2")
        assert missing["errors"] == ["tracing: no trace 00000000000000b2"]
        _, series = await get(client, "/api/services/bookstore/bookstore-v1?range=1m&step=15s")
        assert series["series"]["rps"][0][1] == 1.5 and series["series"]["rps"][1][1] is None
        assert set(series["series"]) == {"rps", "success_rate", "p50_ms", "p99_ms"}
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("setup", "path", "source", "state", "error_starts"),
    [
        (
            Setup(prometheus="missing"),
            "/api/graph",
            "prometheus",
            "not-installed",
            f"prometheus: {NOT_INSTALLED}",
        ),
        (
            Setup(prometheus="slow"),
            "/api/services",
            "prometheus",
            "timeout",
            "prometheus: timed out after 0.3 s",
        ),
        (
            Setup(tracing="down"),
            "/api/traces",
            "tracing",
            "unreachable",
            "tracing: unreachable at http://127.0.0.1:",
        ),
        (
            Setup(kubernetes="down"),
            "/api/graph",
            "kubernetes",
            "unreachable",
            "kubernetes: https://127.0.0.1:6443: connection refused",
        ),
    ],
    ids=["prometheus not installed", "a query timing out", "tracing unreachable", "no API"],
)
async def test_a_failing_source_is_a_state_not_a_5xx(
    servers: tuple[Fakes, str, str],
    setup: Setup,
    path: str,
    source: str,
    state: str,
    error_starts: str,
) -> None:
    client = await client_for(setup, servers)
    try:
        status, body = await get(client, path)
        assert status == 200
        assert len(body["errors"]) == 1 and body["errors"][0].startswith(error_starts)
        if source == "tracing":
            assert "connection refused" in body["errors"][0]
            assert body["traces"] == []
        _, found = await get(client, "/api/status")
        assert found["sources"][source]["state"] == state
        assert any(e.startswith(f"{source}: ") for e in found["errors"])
        for other in ("/api/graph", "/api/splits", "/api/services", "/api/proxies"):
            response = await client.get(other)
            assert response.status == 200
    finally:
        await client.close()


async def test_without_prometheus_rates_are_null_and_the_policy_still_shows(
    servers: tuple[Fakes, str, str],
) -> None:
    client = await client_for(Setup(prometheus="missing"), servers)
    try:
        _, graph = await get(client, "/api/graph")
        traffic = [e for e in graph["edges"] if e["kind"] == "traffic"]
        assert traffic and {e["rps"] for e in traffic} == {None}
        assert {e["state"] for e in traffic} == {"idle"}
        _, splits = await get(client, "/api/splits")
        assert [b["configured_share"] for b in splits["splits"][0]["backends"]] == [0.5, 0.5]
    finally:
        await client.close()


async def test_many_tabs_cost_prometheus_one_query_each(
    servers: tuple[Fakes, str, str],
) -> None:
    fakes = servers[0]
    client = await client_for(Setup(), servers)
    try:
        answers = await asyncio.gather(*(client.get("/api/graph") for _ in range(20)))
        assert {a.status for a in answers} == {200}
        await asyncio.gather(*(client.get("/api/services") for _ in range(5)))
        assert len(fakes.asked) == len(sources.window_queries("1m"))
    finally:
        await client.close()


async def test_one_period_folds_metrics_once_and_one_state_builds_one_topology(
    servers: tuple[Fakes, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph, splits and services of one period share one fold of Prometheus's answers;
    the graph's topology (policy verdicts) is built once per mesh state, not per refresh."""
    folds: list[object] = []
    built: list[object] = []
    fold, topology = views.metrics_from, views.Topology

    def counted_fold(**answers: Any) -> views.Metrics:
        folds.append(1)
        return fold(**answers)

    def counted_topology(catalog: Any) -> views.Topology:
        built.append(1)
        return topology(catalog)

    monkeypatch.setattr(views, "metrics_from", counted_fold)
    monkeypatch.setattr(views, "Topology", counted_topology)
    client = await client_for(Setup(), servers)
    try:
        for path in ("/api/graph", "/api/splits", "/api/services", "/api/graph?window=5m"):
            status, _ = await get(client, path)
            assert status == 200
        assert (len(folds), len(built)) == (2, 1)  # windows 1m and 5m; one mesh state
    finally:
        await client.close()


async def test_a_prepared_dashboard_answers_the_first_graph_from_the_topology_it_built(
    servers: tuple[Fakes, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`osm dashboard` prepares before it prints the URL: the first page's graph only adds
    Prometheus's figures to the topology built then, and says the same as an unprepared one."""
    built: list[object] = []
    topology = views.Topology

    def counted_topology(catalog: Any) -> views.Topology:
        built.append(1)
        return topology(catalog)

    monkeypatch.setattr(views, "Topology", counted_topology)
    answers = []
    for prepared in (True, False):
        client = await client_for(Setup(), servers, prepared=prepared)
        try:
            if prepared:
                assert len(built) == 1
            status, body = await get(client, "/api/graph")
            assert status == 200
            answers.append({k: v for k, v in body.items() if k != "generated"})
        finally:
            await client.close()
    assert len(built) == 2  # one per dashboard: the prepared one built none on request
    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        ("/api/graph?window=abc", "window: 'abc' is not a duration"),
        ("/api/graph?window=30d", "window: 30d is longer than"),
        ("/api/traces?limit=0", "limit: 0 is not between 1 and 1000"),
        ("/api/traces/xyz", "trace id: 'xyz' is not 16 or 32 hex digits"),
        ("/api/services/Bad_NS/x", "namespace: 'Bad_NS' is not a Kubernetes name"),
        ("/api/services/a/b?range=7d&step=1s", "range/step: more than 11000 points"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    servers: tuple[Fakes, str, str], path: str, complaint: str
) -> None:
    client = await client_for(Setup(), servers)
    try:
        status, body = await get(client, path)
        assert status == 400
        assert body["errors"][0].startswith(complaint)
    finally:
        await client.close()


async def test_a_failing_view_is_an_error_not_a_5xx(
    servers: tuple[Fakes, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(views, "graph", broken)
    client = await client_for(Setup(), servers)
    try:
        status, body = await get(client, "/api/graph")
        assert status == 200
        assert body["errors"] == ["dashboard: graph failed: KeyError: 'boom'"]
    finally:
        await client.close()


async def test_page_and_static_files(servers: tuple[Fakes, str, str], tmp_path: Path) -> None:
    client = await client_for(Setup(), servers)
    try:
        response = await client.get("/")
        assert response.status == 200 and "/api/status" in await response.text()
    finally:
        await client.close()
    (tmp_path / "index.html").write_text("<html>the page</html>")
    (tmp_path / "app.js").write_text("console.log(1)")
    client = await client_for(Setup(), servers, static_dir=tmp_path)
    try:
        assert await (await client.get("/")).text() == "<html>the page</html>"
        assert await (await client.get("/static/app.js")).text() == "console.log(1)"
    finally:
        await client.close()


async def test_cache_shares_one_computation_and_expires() -> None:
    now = [0.0]
    cache: sources.TtlCache[str, int] = sources.TtlCache(5.0, clock=lambda: now[0])
    calls = []

    async def compute() -> int:
        calls.append(1)
        await asyncio.sleep(0.01)
        return len(calls)

    assert await asyncio.gather(*(cache.get("k", compute) for _ in range(10))) == [1] * 10
    now[0] = 4.9
    assert await cache.get("k", compute) == 1
    now[0] = 5.0
    assert await cache.get("k", compute) == 2


async def test_cache_keeps_failures_for_the_period() -> None:
    cache: sources.TtlCache[str, int] = sources.TtlCache(5.0, clock=lambda: 0.0)
    calls = []

    async def failing() -> int:
        calls.append(1)
        raise sources.SourceError("prometheus", SourceState("timeout", "timed out"))

    for _ in range(3):
        with pytest.raises(sources.SourceError):
            await cache.get("k", failing)
    assert len(calls) == 1
