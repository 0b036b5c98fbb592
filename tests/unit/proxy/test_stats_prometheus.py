"""The sidecar's Prometheus forms as Envoy writes them: a cluster's tag extraction, and
`upstream_rq_time` as a histogram with Envoy's bucket bounds (what real Envoy prints is
compared in tests/integration/test_metrics_parity.py)."""

from __future__ import annotations

import pytest

from osm.proxy import stats


@pytest.mark.parametrize(
    ("cluster", "tag", "prefix"),
    [
        ("bookstore/bookstore|14001", "bookstore/bookstore|14001", "envoy_cluster_"),
        ("bookstore/bookstore|14001|local", "bookstore/bookstore|14001|local", "envoy_cluster_"),
        ("ns/svc:80|local", "ns/svc_80|local", "envoy_cluster_"),
        ("httpbin.org:80", "httpbin", "envoy_cluster_org_80_"),
        ("a/b.v1:80|local", "a/b", "envoy_cluster_v1_80_local_"),
    ],
)
def test_the_cluster_tag_is_the_name_up_to_its_first_dot(
    cluster: str, tag: str, prefix: str
) -> None:
    assert stats.cluster_tag(cluster) == (tag, prefix)
    text = stats.Stats()
    stats.ClusterStats(text, cluster).upstream_rq_total.value = 3
    assert f'{prefix}upstream_rq_total{{envoy_cluster_name="{tag}"}} 3' in text.prometheus()


ENVOY_BOUNDS = [
    "0.5",
    "1",
    "5",
    "10",
    "25",
    "50",
    "100",
    "250",
    "500",
    "1000",
    "2500",
    "5000",
    "10000",
    "30000",
    "60000",
    "300000",
    "600000",
    "1800000",
    "3600000",
    "+Inf",
]
"""As real Envoy 1.40 writes them (its /stats/prometheus)."""

# (a value in ms, the lowest `le` whose cumulative count includes it)
BUCKETS = [(0.0, "0.5"), (0.5, "0.5"), (0.51, "1"), (49.9, "50"), (50.0, "50"),
           (3600000.0, "3600000"), (3600001.0, "+Inf")]  # fmt: skip


@pytest.mark.parametrize(("value", "le"), BUCKETS)
def test_a_value_counts_in_the_bucket_of_the_first_bound_not_below_it(
    value: float, le: str
) -> None:
    registry = stats.Stats()
    stats.ClusterStats(registry, "c").upstream_rq_time.record(value)
    lines = registry.prometheus().splitlines()
    buckets = [line for line in lines if line.startswith("envoy_cluster_upstream_rq_time_bucket")]
    bounds = [line.split('le="')[1].split('"')[0] for line in buckets]
    assert bounds == ENVOY_BOUNDS
    counts = [int(line.rsplit(" ", 1)[1]) for line in buckets]
    assert counts == [0] * bounds.index(le) + [1] * (len(bounds) - bounds.index(le))
    assert 'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="c"} 1' in lines
    assert "# TYPE envoy_cluster_upstream_rq_time histogram" in lines


def test_an_unused_histogram_is_not_listed_as_in_envoy() -> None:
    registry = stats.Stats()
    stats.ClusterStats(registry, "c")
    assert "upstream_rq_time_" not in registry.prometheus()
