"""bench/injection.py's pure parts: its arguments, the turns the cases take, the figures
it prints, and that its cases are what they say (the webhook ``osm install`` renders
selects the monitored namespace and not the other)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import injection

from osm.apiserver import selectors
from osm.base import wellknown

BENCH = Path(injection.__file__).parent


@pytest.mark.parametrize(
    ("argv", "n", "concurrency"),
    [
        pytest.param([], 300, [1, 4], id="defaults"),
        pytest.param(["--quick"], 100, [1, 4], id="quick"),
        pytest.param(["--quick", "--n", "30"], 30, [1, 4], id="--n wins over --quick"),
        pytest.param(["--concurrency", "2,8"], 300, [2, 8], id="concurrency list"),
    ],
)
def test_arguments(argv: list[str], n: int, concurrency: list[int]) -> None:
    args = injection.parse_args(argv)
    assert (args.n, args.concurrency, args.serve) == (n, concurrency, None)


def test_help_runs_without_starting_anything() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "injection.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--concurrency" in done.stdout


def test_every_case_gets_every_pod_once_and_the_first_of_a_turn_rotates() -> None:
    a, b, c = injection.CASES
    turns = list(injection.schedule(5, 2, injection.CASES))
    assert [(case.name, list(indices)) for case, indices in turns] == [
        (a.name, [0, 1]),
        (b.name, [0, 1]),
        (c.name, [0, 1]),
        (b.name, [2, 3]),
        (c.name, [2, 3]),
        (a.name, [2, 3]),
        (c.name, [4]),
        (a.name, [4]),
        (b.name, [4]),
    ]


def test_percentiles_are_nearest_rank_in_ms_and_the_rate_is_pods_over_wall_time() -> None:
    samples = [i / 1000 for i in range(100, 0, -1)]  # 1..100 ms, in any order
    summary = injection.Summary.of(samples, seconds=2.0)
    assert (summary.p50, summary.p90, summary.p99, summary.max) == pytest.approx((50, 90, 99, 100))
    assert summary.rate == 50


def as_the_api_stores(namespace: dict[str, object]) -> dict[str, str]:
    """The labels of a Namespace as the API stores it (it adds its name's label)."""
    metadata = namespace["metadata"]
    assert isinstance(metadata, dict)
    return {**metadata.get("labels", {}), wellknown.NAMESPACE_NAME_LABEL: metadata["name"]}


def test_the_installed_webhook_selects_the_monitored_namespace_only() -> None:
    configuration = injection.mutating_configuration()
    (webhook,) = configuration["webhooks"]
    assert webhook["clientConfig"]["service"]["name"] == "osm-injector"
    assert "caBundle" not in webhook["clientConfig"]  # the bench sets it from the mesh root
    selector = selectors.label_selector(webhook["namespaceSelector"])
    for case in injection.CASES:
        monitored = injection.namespace_manifest(case.namespace, monitored=case.injected)
        assert selector.matches(as_the_api_stores(monitored)) is case.injected, case.name
