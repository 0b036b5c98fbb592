"""bench/dataplane.py's pure parts: which cases a run has, in which groups they run, where
each pair's traffic is redirected, and the Envoy goals as printed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import _envoy
import dataplane

from osm.base import wellknown

ALL = ["direct", "sidecar", "haproxy", "variant", "envoy-xds", "envoy-static"]


@pytest.mark.parametrize(
    ("text", "variant", "envoy", "expected", "notes"),
    [
        pytest.param(None, True, True, ALL, 0, id="default: everything"),
        pytest.param(None, False, True, [c for c in ALL if c != "variant"], 0, id="no variant"),
        pytest.param(
            None, False, False, ["direct", "sidecar", "haproxy"], 1, id="no envoy: said so"
        ),
        pytest.param(
            "envoy-static,direct,envoy-xds",
            False,
            True,
            ["direct", "envoy-xds", "envoy-static"],
            0,
            id="in the run's order",
        ),
        pytest.param("haproxy", False, False, ["direct", "haproxy"], 1, id="direct added"),
    ],
)
def test_the_cases_of_a_run(
    text: str | None, variant: bool, envoy: bool, expected: list[str], notes: int
) -> None:
    selected, said = dataplane.select_cases(text, variant=variant, envoy=envoy)
    assert selected == expected
    assert len(said) == notes


@pytest.mark.parametrize(
    ("text", "variant", "envoy", "error"),
    [
        ("direct,nginx", True, True, "unknown case.*nginx"),
        ("variant", False, True, "needs --sidecar-variant"),
        ("envoy-xds", True, False, "need an envoy binary"),
    ],
)
def test_cases_that_cannot_run_are_refused(
    text: str, variant: bool, envoy: bool, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        dataplane.select_cases(text, variant=variant, envoy=envoy)


@pytest.mark.parametrize(
    ("paired", "expected"),
    [
        (False, [(case,) for case in ALL]),
        (
            True,
            [("direct",), ("sidecar", "variant"), ("haproxy",), ("envoy-xds",), ("envoy-static",)],
        ),
    ],
)
def test_phases_pair_only_the_sidecar_and_its_variant(
    paired: bool, expected: list[tuple[str, ...]]
) -> None:
    assert dataplane.phases(argparse.Namespace(cases=ALL, paired=paired)) == expected


def _redirects(case: str) -> tuple[int, int]:
    client, server = dataplane.nat_rules(case)
    return int(client[0].rsplit(" ", 1)[1]), int(server[0].rsplit(" ", 1)[1])


def test_the_xds_envoys_get_osms_ports_and_the_static_ones_theirs_moved() -> None:
    assert _redirects("envoy-xds") == (wellknown.PROXY_OUTBOUND_PORT, wellknown.PROXY_INBOUND_PORT)
    moved = _envoy.static_ports(dataplane.ENVOY_STATIC_OFFSET)
    assert _redirects("envoy-static") == (
        moved[wellknown.PROXY_OUTBOUND_PORT],
        moved[wellknown.PROXY_INBOUND_PORT],
    )
    assert dataplane.envoy_admin_port("envoy-static") == moved[wellknown.PROXY_ADMIN_PORT]


def test_no_two_pairs_share_a_port_in_the_pods() -> None:
    """Every pair lives in the same two pods: a port bound twice would fail (or, with
    SO_REUSEPORT, split one case's connections between two proxies)."""
    bound: list[int] = []
    for case in ALL:
        if case != "direct":
            bound += _redirects(case)
    for offset in (0, dataplane.ENVOY_STATIC_OFFSET):  # both Envoy pairs' admin, metrics
        bound += [wellknown.PROXY_ADMIN_PORT + offset, wellknown.PROXY_PROMETHEUS_PORT + offset]
    assert len(bound) == len(set(bound)), sorted(bound)
    assert dataplane.APP_PORT not in bound and dataplane.VARIANT_APP_PORT not in bound


def _results(xds_rps: float, xds_cpu: float, xds_p50: float, xds_p99: float) -> dataplane.Results:
    results = dataplane.Results()
    figures = {
        "direct": (50_000.0, None, 0.2, 1.0),
        "envoy-static": (10_000.0, 0.20, 0.6, 2.0),
        "envoy-xds": (xds_rps, xds_cpu, xds_p50, xds_p99),
    }
    for case, (rps, cpu, p50, p99) in figures.items():
        results.throughput[case] = [rps, rps * 1.5, rps * 0.5]  # the median is `rps`
        results.p50[case] = [p50]
        results.p99[case] = [p99]
        if cpu is not None:
            for role in ("outbound", "inbound"):
                results.cpu[f"{case}/{role}"] = [cpu]
    return results


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        pytest.param(
            _results(9_500.0, 0.21, 1.1, 4.9),
            [
                "goal: envoy-xds within 10% of envoy-static: max rps 0.95x, vCPU/1k rps "
                "outbound 1.05x, vCPU/1k rps inbound 1.05x: met",
                "goal: an Envoy pair adds <= +1 ms p50 / <= +4 ms p99 over direct at 1,000 "
                "rps: envoy-xds +0.900 / +3.900 ms: met; envoy-static +0.400 / +1.000 ms: met",
            ],
            id="met",
        ),
        pytest.param(
            _results(8_000.0, 0.25, 1.3, 5.1),
            [
                "goal: envoy-xds within 10% of envoy-static: max rps 0.80x, vCPU/1k rps "
                "outbound 1.25x, vCPU/1k rps inbound 1.25x: MISSED",
                "goal: an Envoy pair adds <= +1 ms p50 / <= +4 ms p99 over direct at 1,000 "
                "rps: envoy-xds +1.100 / +4.100 ms: MISSED; envoy-static +0.400 / +1.000 ms: "
                "met",
            ],
            id="missed",
        ),
    ],
)
def test_the_envoy_goals_are_printed_met_or_missed(
    results: dataplane.Results, expected: list[str]
) -> None:
    assert dataplane.envoy_goals(results, 1000.0) == expected


def test_the_goals_say_when_the_rate_is_not_the_goals() -> None:
    (_, latency) = dataplane.envoy_goals(_results(9_500.0, 0.21, 1.1, 4.9), 500.0)
    assert "(this run's rate: 500 rps)" in latency


def test_no_envoy_case_no_envoy_goal() -> None:
    results = dataplane.Results()
    results.p50["direct"], results.p99["direct"] = [0.1], [0.5]
    assert dataplane.envoy_goals(results, 1000.0) == []
