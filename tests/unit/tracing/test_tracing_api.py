"""Zipkin's HTTP API as openzipkin's ``zipkin-api.yaml`` specifies it, one request and its
answer per row: the collector (JSON, gzip, 202, 400 naming the span, 415), the queries and
their parameters, 404 for an unknown trace, CORS, health and metrics."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from osm.tracing import server
from osm.tracing.store import TraceStore

Client = TestClient[Any, Any]
NOW_MS = 1_700_000_000_000
NOW_US = NOW_MS * 1000
TRACE_A = "463ac35c9f6413ad48485a3953bb6124"
TRACE_B = "00000000000000bb"


def span(trace_id: str, span_id: str, service: str, **fields: Any) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "id": span_id,
        "timestamp": NOW_US - 1000,
        "localEndpoint": {"serviceName": service},
        **fields,
    }


SPANS = [
    # bookbuyer → bookstore (Envoy's shared span), bookstore → bookwarehouse failing
    span(TRACE_A, "a1", "bookbuyer", kind="CLIENT", name="GET /books-bought", duration=9000,
         remoteEndpoint={"serviceName": "bookstore"}, tags={"http.method": "GET"}),
    span(TRACE_A, "a1", "bookstore", kind="SERVER", name="GET /books-bought", duration=8000,
         shared=True),
    span(TRACE_A, "a2", "bookstore", kind="CLIENT", name="POST /restock", parentId="a1",
         duration=3000, remoteEndpoint={"serviceName": "bookwarehouse"},
         tags={"error": "true", "http.status_code": "503"}),
    # an older trace of bookthief alone
    span(TRACE_B, "b1", "bookthief", kind="CLIENT", name="GET /buy", duration=100,
         timestamp=NOW_US - 3_600_000_000),
]  # fmt: skip


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    store = await TraceStore.open(tmp_path / "traces.db")
    app = server.make_app(store, now_ms=lambda: NOW_MS)
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.post("/api/v2/spans", json=SPANS)
        assert response.status == 202, await response.text()
        yield test_client
    await store.close()


def trace_ids(body: Any) -> list[str]:
    return [trace[0]["traceId"] for trace in body]


QUERIES = [
    # (what, path, status, expected body: a value, or a function of the JSON body)
    ("services, sorted, lowercased", "/api/v2/services", 200,
     ["bookbuyer", "bookstore", "bookthief"]),
    ("span names of a service", "/api/v2/spans?serviceName=BookStore", 200,
     ["get /books-bought", "post /restock"]),
    ("remote services of a service", "/api/v2/remoteServices?serviceName=bookstore", 200,
     ["bookwarehouse"]),
    ("span names need a service", "/api/v2/spans", 400, "serviceName: missing"),
    ("remote services need a service", "/api/v2/remoteServices?serviceName=", 400,
     "serviceName: missing"),
    ("traces in the last day, newest first", "/api/v2/traces", 200,
     lambda body: trace_ids(body) == [TRACE_A, TRACE_B] and len(body[0]) == 3),
    ("traces of a service", "/api/v2/traces?serviceName=bookthief", 200,
     lambda body: trace_ids(body) == [TRACE_B]),
    ("a remote service", "/api/v2/traces?serviceName=bookstore&remoteServiceName=bookwarehouse",
     200, lambda body: trace_ids(body) == [TRACE_A]),
    ("a span name", "/api/v2/traces?spanName=POST%20/restock", 200,
     lambda body: trace_ids(body) == [TRACE_A]),
    ("an annotation query on a tag", "/api/v2/traces?annotationQuery=error", 200,
     lambda body: trace_ids(body) == [TRACE_A]),
    ("a tag value", "/api/v2/traces?annotationQuery=http.status_code%3D503", 200,
     lambda body: trace_ids(body) == [TRACE_A]),
    ("a tag value no span has", "/api/v2/traces?annotationQuery=http.method%3DPOST", 200, []),
    ("a minimum duration", "/api/v2/traces?minDuration=8500", 200,
     lambda body: trace_ids(body) == [TRACE_A]),
    ("a duration range", "/api/v2/traces?minDuration=50&maxDuration=150", 200,
     lambda body: trace_ids(body) == [TRACE_B]),
    ("a lookback excluding the old trace", "/api/v2/traces?lookback=60000", 200,
     lambda body: trace_ids(body) == [TRACE_A]),
    ("an endTs before the new trace", f"/api/v2/traces?endTs={NOW_MS - 60_000}", 200,
     lambda body: trace_ids(body) == [TRACE_B]),
    ("a limit", "/api/v2/traces?limit=1", 200, lambda body: trace_ids(body) == [TRACE_A]),
    ("maxDuration alone", "/api/v2/traces?maxDuration=5", 400,
     "maxDuration: minDuration is required"),
    ("a bad limit", "/api/v2/traces?limit=ten", 400, "limit: 'ten'; valid:"),
    ("a trace by id", f"/api/v2/trace/{TRACE_A}", 200,
     lambda body: [s["id"] for s in body] == ["00000000000000a1", "00000000000000a1",
                                              "00000000000000a2"]),
    ("a trace id is normalized", "/api/v2/trace/BB", 200,
     lambda body: trace_ids([body]) == [TRACE_B]),
    ("an unknown trace", "/api/v2/trace/00000000000000cc", 404, "00000000000000cc not found"),
    ("a malformed trace id", "/api/v2/trace/xyz", 400, "traceId: 'xyz' is not hex"),
    ("several traces", f"/api/v2/traceMany?traceIds={TRACE_B},00000000000000cc,{TRACE_A}", 200,
     lambda body: trace_ids(body) == [TRACE_B, TRACE_A]),
    ("traceMany needs ids", "/api/v2/traceMany?traceIds=", 400, "traceIds: empty"),
    ("dependencies", f"/api/v2/dependencies?endTs={NOW_MS}&lookback=60000", 200,
     [{"parent": "bookbuyer", "child": "bookstore", "callCount": 1},
      {"parent": "bookstore", "child": "bookwarehouse", "callCount": 1, "errorCount": 1}]),
    ("dependencies of a window without traces", f"/api/v2/dependencies?endTs={NOW_MS - 7_200_000}",
     200, []),
    ("dependencies need endTs", "/api/v2/dependencies", 400, "endTs: missing"),
    ("health", "/health", 200, lambda body: body["status"] == "UP"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "status", "expected"), [q[1:] for q in QUERIES], ids=[q[0] for q in QUERIES]
)
async def test_queries_answer_as_zipkin(
    client: Client, path: str, status: int, expected: Any
) -> None:
    response = await client.get(path)
    text = await response.text()
    assert response.status == status, text
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    if status != 200:
        assert text.startswith(expected), text
        return
    assert response.content_type == "application/json"
    body = json.loads(text)
    assert expected(body) if callable(expected) else body == expected, body


GOOD = json.dumps([span("c" * 16, "c1", "Gzipped")]).encode()
POSTS = [
    # (what, body, headers, status, response text's start)
    ("JSON", GOOD, {"Content-Type": "application/json"}, 202, ""),
    ("gzip", gzip.compress(GOOD), {"Content-Type": "application/json",
                                   "Content-Encoding": "gzip"}, 202, ""),
    ("no content type (curl -d)", GOOD, {"Content-Type": "application/octet-stream"}, 202, ""),
    ("an empty list", b"[]", {"Content-Type": "application/json"}, 202, ""),
    ("a bad span", json.dumps([span("c" * 16, "c1", "a"), {"traceId": "1"}]).encode(),
     {"Content-Type": "application/json"}, 400, "span[1].id: missing; valid: 16 lower-hex"),
    ("not JSON", b"{", {"Content-Type": "application/json"}, 400, "the body is not JSON"),
    ("protobuf", b"\x0a\x00", {"Content-Type": "application/x-protobuf"}, 415,
     "Content-Type 'application/x-protobuf' is not supported"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "headers", "status", "text"), [p[1:] for p in POSTS], ids=[p[0] for p in POSTS]
)
async def test_the_collector_accepts_zipkin_v2_json(
    client: Client, body: bytes, headers: dict[str, str], status: int, text: str
) -> None:
    response = await client.post("/api/v2/spans", data=body, headers=headers)
    answer = await response.text()
    assert response.status == status, answer
    assert answer.startswith(text) if text else answer == "", answer
    services = await (await client.get("/api/v2/services")).json()
    assert ("gzipped" in services) is (status == 202 and body not in (b"[]",)), services


async def test_a_refused_list_stores_none_of_its_spans(client: Client) -> None:
    bad = [span("d" * 16, "d1", "refused"), {"traceId": "d" * 16, "id": "d2", "kind": "x"}]
    response = await client.post("/api/v2/spans", json=bad)
    assert response.status == 400
    assert "refused" not in await (await client.get("/api/v2/services")).json()


async def test_a_browser_preflight_is_allowed(client: Client) -> None:
    response = await client.options(
        "/api/v2/spans",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "content-type"


async def test_metrics_count_spans_accepted_and_refused_and_the_store_size(client: Client) -> None:
    await client.post("/api/v2/spans", json=[{"traceId": "1"}, {"traceId": "2"}])
    text = await (await client.get("/metrics")).text()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['zipkin_collector_spans_total{transport="http"}'] == len(SPANS)
    assert samples['zipkin_collector_spans_dropped_total{transport="http"}'] == 2
    assert samples['zipkin_collector_messages_dropped_total{transport="http"}'] == 1
    assert samples["osm_tracing_store_spans"] == len(SPANS)
    assert samples["osm_tracing_store_traces"] == 2
    assert samples["osm_tracing_store_bytes"] > 0
