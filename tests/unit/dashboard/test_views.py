"""The dashboard's views over the bookstore demo: the graph's edges and what decides them
(permissive and SMI mode), the split's shares, services' signals, proxies and traces."""

from __future__ import annotations

from typing import Any

import pytest

from osm.catalog import explain
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.state import MeshState
from osm.dashboard import views
from osm.model import manifest
from tests.unit.dashboard import bookstore
from tests.unit.dashboard.bookstore import edge, sample

V1 = "bookstore/bookstore-v1|14001"
V2 = "bookstore/bookstore-v2|14001"
WAREHOUSE = "bookwarehouse/bookwarehouse|14001"


def metrics(thief_now: float) -> views.Metrics:
    """bookbuyer sends 4 rps to v1 and 6 to v2 (v2 answers 1 in 6 with a 5xx); v1 calls
    the warehouse; bookthief sent to v1 within the lookback and ``thief_now`` rps now."""
    rps = [
        edge("bookbuyer", "bookbuyer", V1, 4),
        edge("bookbuyer", "bookbuyer", V2, 6),
        edge("bookstore", "bookstore-v1", WAREHOUSE, 1),
        edge("bookbuyer", "bookbuyer", "bookbuyer/bookbuyer|local", 9),  # inbound: not an edge
        edge("bookbuyer", "bookbuyer", "envoy-tracing-cluster", 3),  # not a service
        # Envoy reports every cluster it has, called or not: a zero rate is no edge.
        edge("bookbuyer", "bookbuyer", WAREHOUSE, 0),
        edge("bookthief", "bookthief", WAREHOUSE, 0),
    ]
    if thief_now:
        rps.append(edge("bookthief", "bookthief", V1, thief_now))
    classes = [
        edge("bookbuyer", "bookbuyer", V1, 4, envoy_response_code_class="2"),
        edge("bookbuyer", "bookbuyer", V2, 5, envoy_response_code_class="2"),
        edge("bookbuyer", "bookbuyer", V2, 1, envoy_response_code_class="5"),
    ]
    p50 = [
        edge("bookbuyer", "bookbuyer", V1, 2.5),
        edge("bookbuyer", "bookbuyer", V2, float("nan")),
    ]
    p99 = [edge("bookbuyer", "bookbuyer", V1, 9.0)]
    service_p50 = [sample(3.0, envoy_cluster_name=V1)]
    seen = [
        edge("bookthief", "bookthief", V1, 120),
        edge("bookbuyer", "bookbuyer", V1, 240),
        edge("bookthief", "bookthief", WAREHOUSE, 0),
    ]
    return views.metrics_from(rps, classes, p50, p99, service_p50, [], seen)


def traffic(graph: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["source"], e["target"]): e for e in graph["edges"] if e["kind"] == "traffic"}


BUYER = "workload:bookbuyer/bookbuyer"
THIEF = "workload:bookthief/bookthief"
STORE_V1 = "workload:bookstore/bookstore-v1"
STORE_V2 = "workload:bookstore/bookstore-v2"
SVC_V1 = "service:bookstore/bookstore-v1"
SVC_V2 = "service:bookstore/bookstore-v2"
SVC_APEX = "service:bookstore/bookstore"
SVC_WAREHOUSE = "service:bookwarehouse/bookwarehouse"
TT_STORE = "TrafficTarget bookstore/bookbuyer-access-bookstore"
TT_WAREHOUSE = "TrafficTarget bookwarehouse/bookstore-access-bookwarehouse"


@pytest.mark.parametrize(
    ("permissive", "thief_now", "with_prometheus", "expected"),
    [
        pytest.param(
            False,
            0.0,
            True,
            {
                (BUYER, SVC_V1): ("active", 4.0, True, TT_STORE),
                (BUYER, SVC_V2): ("active", 6.0, True, TT_STORE),
                (BUYER, SVC_APEX): ("active", 10.0, True, TT_STORE),
                (STORE_V1, SVC_WAREHOUSE): ("active", 1.0, True, TT_WAREHOUSE),
                (STORE_V2, SVC_WAREHOUSE): ("idle", 0.0, True, TT_WAREHOUSE),
                (THIEF, SVC_V1): (
                    "denied",
                    0.0,
                    False,
                    "no TrafficTarget allows bookthief/bookthief → bookstore/bookstore",
                ),
                # what the thief called: the split's apex, whose backend it reached
                (THIEF, SVC_APEX): (
                    "denied",
                    0.0,
                    False,
                    "no TrafficTarget allows bookthief/bookthief → bookstore/bookstore",
                ),
            },
            id="smi: buyer active by its TrafficTarget, thief denied after earlier traffic",
        ),
        pytest.param(
            True,
            2.0,
            True,
            {
                (BUYER, SVC_V1): ("active", 4.0, True, "permissive mode"),
                (BUYER, SVC_V2): ("active", 6.0, True, "permissive mode"),
                (BUYER, SVC_APEX): ("active", 10.0, True, "permissive mode"),
                (STORE_V1, SVC_WAREHOUSE): ("active", 1.0, True, "permissive mode"),
                (THIEF, SVC_V1): ("active", 2.0, True, "permissive mode"),
                (THIEF, SVC_APEX): ("active", 2.0, True, "permissive mode"),
            },
            id="permissive: only pairs with requests, all allowed",
        ),
        pytest.param(
            False,
            0.0,
            False,
            {
                (BUYER, SVC_V1): ("idle", None, True, TT_STORE),
                (BUYER, SVC_V2): ("idle", None, True, TT_STORE),
                (BUYER, SVC_APEX): ("idle", None, True, TT_STORE),
                (STORE_V1, SVC_WAREHOUSE): ("idle", None, True, TT_WAREHOUSE),
                (STORE_V2, SVC_WAREHOUSE): ("idle", None, True, TT_WAREHOUSE),
            },
            id="smi without Prometheus: the allowed pairs, idle, rates null",
        ),
        pytest.param(True, 0.0, False, {}, id="permissive without Prometheus: no traffic edges"),
    ],
)
def test_graph_edges(
    permissive: bool, thief_now: float, with_prometheus: bool, expected: dict[Any, Any]
) -> None:
    found = views.graph(
        bookstore.catalog(permissive), metrics(thief_now) if with_prometheus else None, "1m"
    )
    edges = traffic(found)
    assert {
        key: (e["state"], e["rps"], e["policy"]["allowed"], e["policy"]["by"])
        for key, e in edges.items()
    } == expected
    node_ids = {n["id"] for n in found["nodes"]}
    assert {e["source"] for e in found["edges"]} | {e["target"] for e in found["edges"]} <= node_ids
    suggested = [e for e in edges.values() if e["policy"]["suggestion"]]
    assert all(e["state"] == "denied" for e in suggested)


def test_nodes_and_serves_edges() -> None:
    found = views.graph(bookstore.catalog(False), None, "5m")
    nodes = {n["id"]: (n["kind"], n["data_plane"], n["pods"]) for n in found["nodes"]}
    assert nodes[BUYER] == ("workload", "envoy", 1)
    assert nodes[SVC_APEX] == ("service", "envoy", 2)
    serves = {(e["source"], e["target"]) for e in found["edges"] if e["kind"] == "serves"}
    assert serves == {
        (SVC_APEX, STORE_V1),
        (SVC_APEX, STORE_V2),
        (SVC_V1, STORE_V1),
        (SVC_V2, STORE_V2),
        (SVC_WAREHOUSE, "workload:bookwarehouse/bookwarehouse"),
    }
    assert found["window"] == "5m"


@pytest.mark.parametrize("permissive", [True, False])
def test_a_kept_topology_answers_as_a_fresh_graph_on_every_refresh(permissive: bool) -> None:
    """The dashboard keeps one `Topology` per mesh state: each refresh's metrics (thief
    quiet, then sending, then Prometheus down) give the graph a fresh computation gives."""
    catalog = bookstore.catalog(permissive)
    topology = views.Topology(catalog)
    for refresh in (metrics(0.0), metrics(3.0), None):
        kept = views.graph(catalog, refresh, "1m", topology)
        assert kept == views.graph(bookstore.catalog(permissive), refresh, "1m")


@pytest.mark.parametrize(
    ("labels", "workload"),
    [
        ({"app": "web", "tier": "front"}, "web-front"),  # the first Deployment that matches
        ({"app": "web", "tier": "back"}, "web"),
        ({"tier": "front"}, "front"),
        ({"app": "db"}, "bare"),  # no Deployment selects it: the pod is its own workload
    ],
)
def test_workload_of_a_pod_is_the_first_deployment_selecting_it(
    labels: dict[str, str], workload: str
) -> None:
    def deployment(name: str, selector: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {"containers": [{"name": "app", "image": "app"}]},
                },
            },
        }

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    }
    loaded = manifest.load_objects(
        [
            deployment("web-front", {"app": "web", "tier": "front"}),
            deployment("web", {"app": "web"}),
            deployment("front", {"tier": "front"}),
            pod,
        ]
    )
    assert not loaded.errors, [str(e) for e in loaded.errors]
    deployments = [r for r in loaded.resources if r.kind == "Deployment"]
    (found,) = [r for r in loaded.resources if r.kind == "Pod"]
    assert views.workload_of(found, deployments) == workload  # type: ignore[arg-type]


def test_edge_signals_from_prometheus() -> None:
    edges = traffic(views.graph(bookstore.catalog(False), metrics(0.0), "1m"))
    v1, v2 = edges[(BUYER, SVC_V1)], edges[(BUYER, SVC_V2)]
    assert (v1["success_rate"], v1["p50_ms"], v1["p99_ms"]) == (1.0, 2.5, 9.0)
    assert (v2["success_rate"], v2["p50_ms"], v2["p99_ms"]) == (0.8333, None, None)


def test_denied_edge_suggestion_allows_it_once_applied() -> None:
    """The suggested YAML parses, and with it applied bookthief may call bookstore."""
    edges = traffic(views.graph(bookstore.catalog(False), metrics(0.0), "1m"))
    suggestion = edges[(THIEF, SVC_V1)]["policy"]["suggestion"]
    loaded = manifest.load_text(suggestion)
    assert not loaded.errors, [str(p) for p in loaded.errors]
    assert [(r.kind, r.namespace, r.name) for r in loaded.resources] == [
        ("TrafficTarget", "bookstore", "bookthief-access-bookstore")
    ]
    after = Catalog(MeshState.from_resources(bookstore.resources(False) + loaded.resources))
    found = explain.explain(
        after, ProxyId("bookthief", "bookthief-0"), ProxyId("bookstore", "bookstore-v1-0")
    )
    assert found.allowed
    edges_after = traffic(views.graph(after, metrics(0.0), "1m"))
    assert edges_after[(THIEF, SVC_V1)]["state"] == "idle"


def test_suggestion_without_other_targets_brings_its_routes() -> None:
    """No TrafficTarget to bookwarehouse names rules bookthief could share once the
    warehouse's is gone: the suggestion brings an HTTPRouteGroup of every request."""
    state = MeshState.from_resources(
        r
        for r in bookstore.resources(False)
        if (r.kind, r.name) != ("TrafficTarget", "bookstore-access-bookwarehouse")
    )
    from osm.base.identity import Identity

    text = views.suggest_target(
        state,
        Identity("bookthief", "bookthief"),
        Identity("bookwarehouse", "bookwarehouse"),
        ServiceId("bookwarehouse", "bookwarehouse"),
    )
    loaded = manifest.load_text(text)
    assert not loaded.errors
    assert [r.kind for r in loaded.resources] == ["HTTPRouteGroup", "TrafficTarget"]
    after = Catalog(
        MeshState.from_resources(list(state.all("Pod")) + _all(state) + loaded.resources)
    )
    found = explain.explain(
        after, ProxyId("bookthief", "bookthief-0"), ProxyId("bookwarehouse", "bookwarehouse-0")
    )
    assert found.allowed


def _all(state: MeshState) -> list[Any]:
    kinds = {"Namespace", "ServiceAccount", "Service", "Deployment", "MeshConfig", "HTTPRouteGroup"}
    return [r for kind in kinds for r in state.all(kind)]


@pytest.mark.parametrize(
    ("with_prometheus", "expected"),
    [
        (True, [("bookstore-v1", 50, 0.5, 0.4, 4.0), ("bookstore-v2", 50, 0.5, 0.6, 6.0)]),
        (False, [("bookstore-v1", 50, 0.5, None, None), ("bookstore-v2", 50, 0.5, None, None)]),
    ],
    ids=["observed beside configured", "without Prometheus: observed null"],
)
def test_splits(with_prometheus: bool, expected: list[Any]) -> None:
    state = bookstore.catalog(True).state
    (split,) = views.splits(state, metrics(0.0) if with_prometheus else None)
    assert (split["namespace"], split["name"], split["service"]) == (
        "bookstore",
        "bookstore-split",
        "bookstore",
    )
    assert [
        (b["service"], b["weight"], b["configured_share"], b["observed_share"], b["rps"])
        for b in split["backends"]
    ] == expected


def test_services_signals() -> None:
    found = {
        s["name"]: (s["rps"], s["success_rate"], s["p50_ms"])
        for s in views.services(bookstore.catalog(True), metrics(2.0))
    }
    assert found == {
        "bookstore": (0.0, None, None),
        "bookstore-v1": (6.0, 1.0, 3.0),
        "bookstore-v2": (6.0, 0.8333, None),
        "bookwarehouse": (1.0, None, None),
    }
    nulls = views.services(bookstore.catalog(True), None)
    assert {s["rps"] for s in nulls} == {None}


def test_proxies_pods_by_uuid_and_summary() -> None:
    now = 1_700_000_000.0
    statuses = [
        {
            "node_id": "uuid-bookbuyer-0.sidecar.bookbuyer.bookbuyer",
            "identity": "bookbuyer/bookbuyer",
            "protocol": "sotw",
            "connected_since": "2023-11-14T22:00:00+00:00",
            "acked_versions": {"CDS": "3", "LDS": "3"},
            "last_nack": None,
            "cert_expiry": "2023-11-15T22:13:20+00:00",
            "data_plane": "envoy",
        },
        {
            "node_id": "uuid-bookstore-v1-0.sidecar.bookstore.bookstore",
            "identity": "bookstore/bookstore",
            "protocol": "delta",
            "acked_versions": {"CDS": "2"},
            "last_nack": {"type": "LDS", "message": "unknown field", "at": "2023-11-14T22:10:00"},
            "cert_expiry": "2023-11-14T22:43:20Z",  # 30 minutes from now
        },
        {"node_id": "gone.sidecar.x.y", "identity": "y/x", "acked_versions": {}},
    ]
    found = views.proxies(bookstore.catalog(True).state, statuses, now)
    rows = [(p["namespace"], p["pod"], p["data_plane"]) for p in found["proxies"]]
    assert rows == [
        ("bookbuyer", "bookbuyer-0", "envoy"),
        ("bookstore", "bookstore-v1-0", "envoy"),
        ("y", None, None),
    ]
    assert found["proxies"][1]["last_nack"] == {
        "type": "LDS",
        "error": "unknown field",
        "at": "2023-11-14T22:10:00",
    }
    assert found["summary"] == {"connected": 3, "nacked": 1, "expiring_soon": 1}


def span(
    span_id: str,
    parent: str | None,
    service: str,
    start: int,
    duration: int,
    kind: str,
    **tags: str,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "traceId": "t1",
        "id": span_id,
        "name": f"{service} {kind.lower()}",
        "kind": kind,
        "timestamp": start,
        "duration": duration,
        "localEndpoint": {"serviceName": service},
        "tags": tags,
    }
    if parent:
        found["parentId"] = parent
    return found


# bookbuyer -> bookstore -> bookwarehouse, as Envoy reports it: client and server side of a
# hop share a span id; the warehouse call is a child of the bookstore's server span.
BOOK_TRACE = [
    span("b", "a", "bookstore", 1_000_300, 500, "CLIENT", **{"http.status_code": "200"}),
    span("a", None, "bookbuyer", 1_000_000, 2_000, "CLIENT"),
    span("a", None, "bookstore", 1_000_100, 1_800, "SERVER"),
    span("b", "a", "bookwarehouse", 1_000_350, 400, "SERVER", error="true"),
    span("c", "a", "bookstore", 1_000_200, 50, "CLIENT"),
]


def test_waterfall_order_and_depth() -> None:
    ordered = views.waterfall(BOOK_TRACE)
    assert [(s["service"], s["kind"], s["depth"], s["start_us"]) for s in ordered] == [
        ("bookbuyer", "CLIENT", 0, 0),
        ("bookstore", "SERVER", 1, 100),
        ("bookstore", "CLIENT", 2, 200),
        ("bookstore", "CLIENT", 2, 300),
        ("bookwarehouse", "SERVER", 3, 350),
    ]


def test_trace_list_summary() -> None:
    other = [span("z", None, "bookthief", 5_000_000, 10, "CLIENT")]
    found = views.traces([BOOK_TRACE, other, []], limit=20)
    assert [t["root_service"] for t in found] == ["bookthief", "bookbuyer"]
    book = found[1]
    assert (book["start_us"], book["duration_us"], book["span_count"], book["error"]) == (
        1_000_000,
        2_000,
        5,
        True,
    )
    assert book["services"] == ["bookbuyer", "bookstore", "bookwarehouse"]
    assert views.traces([BOOK_TRACE, other], limit=1)[0]["root_service"] == "bookthief"


def test_waterfall_survives_a_parent_cycle() -> None:
    looped = [span("x", "y", "a", 10, 1, "CLIENT"), span("y", "x", "b", 20, 1, "CLIENT")]
    assert {s["id"] for s in views.waterfall(looped)} == {"x", "y"}


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        ("bookstore/bookstore-v1|14001", ServiceId("bookstore", "bookstore-v1")),
        ("bookstore/bookstore-v1|local", None),
        ("envoy-tracing-cluster", None),
        ("passthrough-outbound", None),
    ],
)
def test_cluster_service(cluster: str, expected: ServiceId | None) -> None:
    assert views.cluster_service(cluster) == expected
