"""`connectivity.diagnose` reads where a request failed off the sidecars' own counters:
each row is a request's outcome with the counters the proxies recorded before and after
it (Envoy's names, which the Python sidecar shares), and the verdict."""

from __future__ import annotations

from typing import Any

import pytest

from osm.catalog.ids import ServiceId
from osm.cli import connectivity
from osm.cli.connectivity import Outcome, Probe, Reading, Target

STORE = ServiceId("bookstore", "bookstore")
HTTP = Target(STORE, 14001, 14001, "http")
TCP = Target(STORE, 5432, 5432, "tcp")
CLUSTER = "cluster.bookstore/bookstore|14001"
TCP_CLUSTER = "cluster.bookstore/bookstore|5432"
OUTBOUND = "outbound_bookstore_bookstore_14001"
INBOUND = "inbound_bookstore_bookstore_14001"
BASE = {f"{CLUSTER}.upstream_rq_total": 7, f"{CLUSTER}.membership_total": 1}


def reading(before: dict[str, int], after: dict[str, int]) -> Reading:
    return Reading({**BASE, **before}, {**BASE, **after})


NOTHING = Reading(dict(BASE), dict(BASE))
UNREAD = Reading()

CASES: list[tuple[str, Target, Probe, Reading, Reading, Any, Outcome]] = [
    (
        "an answer from the application",
        HTTP,
        Probe(200, "[]", True),
        reading({}, {f"{CLUSTER}.upstream_rq_total": 8}),
        NOTHING,
        None,
        Outcome.SUCCESS,
    ),
    (
        "the application's own 503 is an answer",
        HTTP,
        Probe(503, "busy", True),
        reading({}, {f"{CLUSTER}.upstream_rq_total": 8}),
        NOTHING,
        None,
        Outcome.SUCCESS,
    ),
    (
        "a TCP connection carried",
        TCP,
        Probe(connected=True),
        reading({f"{TCP_CLUSTER}.upstream_cx_total": 1}, {f"{TCP_CLUSTER}.upstream_cx_total": 2}),
        NOTHING,
        None,
        Outcome.SUCCESS,
    ),
    (
        "no cluster for the service in the source's configuration",
        HTTP,
        Probe(error="the connection was closed at once"),
        NOTHING,
        NOTHING,
        {"configs": [{"dynamicActiveClusters": [{"cluster": {"name": "other/x|80"}}]}]},
        Outcome.NO_ROUTE,
    ),
    (
        "the outbound listener matched no filter chain",
        HTTP,
        Probe(error="the connection was closed at once"),
        reading(
            {"listener.0.0.0.0_15001.no_filter_chain_match": 0},
            {"listener.0.0.0.0_15001.no_filter_chain_match": 1},
        ),
        NOTHING,
        None,
        Outcome.NO_ROUTE,
    ),
    (
        "the route table has no route for the request",
        HTTP,
        Probe(404, "", True),
        reading({f"http.{OUTBOUND}.no_route": 2}, {f"http.{OUTBOUND}.no_route": 3}),
        NOTHING,
        None,
        Outcome.NO_ROUTE,
    ),
    (
        "Envoy found no healthy endpoint",
        HTTP,
        Probe(503, "no healthy upstream", True),
        reading(
            {f"{CLUSTER}.upstream_cx_none_healthy": 0}, {f"{CLUSTER}.upstream_cx_none_healthy": 1}
        ),
        NOTHING,
        None,
        Outcome.NO_ENDPOINTS,
    ),
    (
        "the Python sidecar's cluster has no members",
        HTTP,
        Probe(503, "no healthy upstream", True),
        reading({}, {f"{CLUSTER}.membership_total": 0}),
        UNREAD,
        None,
        Outcome.NO_ENDPOINTS,
    ),
    (
        "the source's TLS handshake failed",
        HTTP,
        Probe(503, "upstream connect error or disconnect/reset before headers", True),
        reading(
            {f"{CLUSTER}.ssl.connection_error": 0, f"{CLUSTER}.upstream_cx_connect_fail": 0},
            {f"{CLUSTER}.ssl.connection_error": 1, f"{CLUSTER}.upstream_cx_connect_fail": 1},
        ),
        NOTHING,
        None,
        Outcome.TLS,
    ),
    (
        "the destination refused the client certificate",
        HTTP,
        Probe(503, "upstream connect error", True),
        reading(
            {f"{CLUSTER}.upstream_cx_connect_fail": 0}, {f"{CLUSTER}.upstream_cx_connect_fail": 1}
        ),
        reading(
            {"listener.0.0.0.0_15003.ssl.fail_verify_error": 4},
            {"listener.0.0.0.0_15003.ssl.fail_verify_error": 5},
        ),
        None,
        Outcome.TLS,
    ),
    (
        "the destination's HTTP RBAC denied the request",
        HTTP,
        Probe(403, "RBAC: access denied", True),
        reading({}, {f"{CLUSTER}.upstream_rq_total": 8}),
        reading({f"http.{INBOUND}.rbac.denied": 0}, {f"http.{INBOUND}.rbac.denied": 1}),
        None,
        Outcome.RBAC_DENIED,
    ),
    (
        "the destination's network RBAC closed the connection",
        TCP,
        Probe(error="the connection was closed at once"),
        NOTHING,
        reading(
            {"inbound_bookstore_bookstore_5432_rbac.rbac.denied": 0},
            {"inbound_bookstore_bookstore_5432_rbac.rbac.denied": 1},
        ),
        None,
        Outcome.RBAC_DENIED,
    ),
    (
        "RBAC's answer without the destination's stats",
        HTTP,
        Probe(403, "RBAC: access denied", True),
        NOTHING,
        UNREAD,
        None,
        Outcome.RBAC_DENIED,
    ),
    (
        "the application's own 403 is an answer",
        HTTP,
        Probe(403, "forbidden by the app", True),
        reading({}, {f"{CLUSTER}.upstream_rq_total": 8}),
        NOTHING,
        None,
        Outcome.SUCCESS,
    ),
    (
        "nothing listening behind the destination",
        HTTP,
        Probe(503, "upstream connect error", True),
        reading(
            {f"{CLUSTER}.upstream_cx_connect_fail": 0}, {f"{CLUSTER}.upstream_cx_connect_fail": 2}
        ),
        NOTHING,
        None,
        Outcome.CONNECT_FAILURE,
    ),
    (
        "a timeout no counter explains",
        HTTP,
        Probe(error="no answer within 5s"),
        NOTHING,
        NOTHING,
        None,
        Outcome.UNKNOWN,
    ),
]


@pytest.mark.parametrize(
    ("target", "probe", "source", "destination", "config", "outcome"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_diagnose(
    target: Target,
    probe: Probe,
    source: Reading,
    destination: Reading,
    config: Any,
    outcome: Outcome,
) -> None:
    verdict = connectivity.diagnose(target, probe, source, destination, config)
    assert verdict.outcome is outcome, verdict
    assert verdict.ok is (outcome is Outcome.SUCCESS)


def test_the_evidence_names_the_counters_that_grew() -> None:
    verdict = connectivity.diagnose(
        HTTP,
        Probe(403, "RBAC: access denied", True),
        NOTHING,
        reading({f"http.{INBOUND}.rbac.denied": 0}, {f"http.{INBOUND}.rbac.denied": 2}),
    )
    assert verdict.evidence == (f"destination http.{INBOUND}.rbac.denied +2",)
    assert verdict.message.startswith("RBAC denied: the destination's sidecar refused its requests")


def test_a_missing_chain_and_cluster_are_both_named() -> None:
    config = {
        "configs": [
            {"dynamicActiveClusters": [{"cluster": {"name": "other/x|80"}}]},
            {
                "dynamicListeners": [
                    {
                        "name": "outbound-listener",
                        "activeState": {
                            "listener": {
                                "name": "outbound-listener",
                                "filterChains": [{"name": "outbound_other/x_80_http"}],
                            }
                        },
                    }
                ]
            },
        ]
    }
    verdict = connectivity.diagnose(HTTP, Probe(), NOTHING, NOTHING, config)
    assert verdict.message == (
        "no route: the source's sidecar has no cluster bookstore/bookstore|14001 and no "
        "outbound filter chain outbound_bookstore/bookstore_14001_http"
    )


def test_stats_text_is_read_as_envoy_prints_it() -> None:
    text = (
        "cluster.bookstore/bookstore|14001.upstream_rq_total: 7\n"
        'cluster_manager.cds.version_text: "abc"\n'
        "http.inbound_x.downstream_rq_time: P0(nan,1) P25(nan,2)\n"
        "server.uptime: 12\n"
    )
    assert connectivity.parse_stats(text) == {
        "cluster.bookstore/bookstore|14001.upstream_rq_total": 7,
        "server.uptime": 12,
    }


def test_envoy_s_snake_case_config_dump_is_read_too() -> None:
    config = {
        "configs": [
            {"dynamic_active_clusters": [{"cluster": {"name": "bookstore/bookstore|14001"}}]},
            {
                "dynamic_listeners": [
                    {
                        "active_state": {
                            "listener": {
                                "name": "outbound-listener",
                                "filter_chains": [
                                    {"name": "outbound_bookstore/bookstore_14001_http"}
                                ],
                            }
                        }
                    }
                ]
            },
        ]
    }
    assert connectivity.configured(config) == (
        {"bookstore/bookstore|14001"},
        {"outbound_bookstore/bookstore_14001_http"},
    )
