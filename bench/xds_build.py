"""Benchmark: building every proxy's xDS snapshot, cold and after one TrafficSplit change.

Meshes of N services x 5 pods (one service account per service, 10 namespaces), in
permissive mode and in SMI mode with 10 allowed upstreams per service (TrafficTargets
plus an HTTPRouteGroup); every 10th service is the apex of a TrafficSplit. Each run
(a forked process, so peak RSS is per run) builds the state, does a cold
`Generator.build`, then changes one split's weights and builds incrementally.

Each timed build starts after a ``gc.collect()``, so it pays for the garbage it makes
itself, not for a full collection of what the previous step left (the first change
after a cold build would otherwise often pay ~50 ms collecting the cold build's heap).

The policies variant (``SMI+policies``, after the baseline of the same run) adds OSM's
policy kinds: per 10 services an Egress (HTTPS to an outside host, from the first
service's account), a Retry (from the first service's account to the next two
services) and an UpstreamTrafficSetting (circuit breaking and TCP and HTTP local rate
limits on the fifth service), with MeshConfig ``enableRetryPolicy`` on and mesh-wide
egress off (so the Egress objects apply). Its change columns time one
UpstreamTrafficSetting change (new connection limits), one Retry change (new retry
count) and one Egress change (a second host) after the split.

Run: ``.venv/bin/python bench/xds_build.py [--sizes 100,1000] [--repeat 3] [--profile]``.
Not run by CI; prints a table of min-max over the repeats. Goals (issue #3): cold SMI
build of 1,000 services / 5,000 proxies <= 5 s; one split change <= 50 ms, rebuilding
only the route configurations that reference the split. Issue #17: the same with every
policy kind present, and one policy change <= 50 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import multiprocessing
import pstats
import resource
import time
from typing import Any

from osm.base.identity import Identity
from osm.base.wellknown import ROUTE_TYPE
from osm.catalog.state import MeshState
from osm.model.config import FeatureFlags, MeshConfig, TrafficSettings, default_mesh_config
from osm.model.core import Container, Namespace, Pod, PodSpec, Service, ServicePort
from osm.model.meta import ObjectMeta, Resource
from osm.model.policy import (
    API_VERSION as POLICY_API_VERSION,
)
from osm.model.policy import (
    ConnectionSettings,
    Egress,
    HTTPConnectionSettings,
    HTTPLocalRateLimit,
    LocalRateLimit,
    PortSpec,
    Retry,
    RetryPolicy,
    ServiceRef,
    TCPConnectionSettings,
    TCPLocalRateLimit,
    UpstreamTrafficSetting,
)
from osm.model.smi import (
    HTTPMatch,
    HTTPRouteGroup,
    IdentityRef,
    SplitBackend,
    TrafficSplit,
    TrafficTarget,
    TrafficTargetRule,
)
from osm.xds.context import Credentials
from osm.xds.generator import Generator

PODS_PER_SERVICE = 5
NAMESPACES = 10
UPSTREAMS = 10
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB" + b"A" * 600 + b"\n-----END CERTIFICATE-----\n"


def namespace_of(index: int) -> str:
    return f"ns{index % NAMESPACES}"


def split(index: int, weights: tuple[int, int]) -> TrafficSplit:
    ns = namespace_of(index)
    return TrafficSplit(
        "split.smi-spec.io/v1alpha2",
        ObjectMeta(f"split{index}", ns),
        service=f"svc{index}",
        backends=(
            SplitBackend(f"svc{index}", weights[0]),
            SplitBackend(f"svc{(index + NAMESPACES) % 10**9}", weights[1]),
        ),
    )


def upstream_setting(index: int, max_connections: int) -> UpstreamTrafficSetting:
    """The UpstreamTrafficSetting of service ``index``."""
    ns = namespace_of(index)
    return UpstreamTrafficSetting(
        POLICY_API_VERSION,
        ObjectMeta(f"uts{index}", ns),
        host=f"svc{index}.{ns}.svc.cluster.local",
        connection_settings=ConnectionSettings(
            TCPConnectionSettings(max_connections, 2.0), HTTPConnectionSettings(max_requests=100)
        ),
        rate_limit=LocalRateLimit(
            TCPLocalRateLimit(1000, "second", 100), HTTPLocalRateLimit(500, "second", 50)
        ),
    )


def retry(index: int, services: int, num_retries: int) -> Retry:
    """The Retry from service ``index``'s account to the next two services."""
    ns = namespace_of(index)
    return Retry(
        POLICY_API_VERSION,
        ObjectMeta(f"retry{index}", ns),
        source=IdentityRef(ns, f"sa{index}"),
        destinations=tuple(
            ServiceRef(namespace_of(j), f"svc{j}") for j in ((index + k) % services for k in (1, 2))
        ),
        retry_policy=RetryPolicy("5xx", 1.0, num_retries, 0.025),
    )


def egress(index: int, hosts: tuple[str, ...]) -> Egress:
    """The Egress of service ``index``'s account: HTTPS to ``hosts``."""
    ns = namespace_of(index)
    return Egress(
        POLICY_API_VERSION,
        ObjectMeta(f"egress{index}", ns),
        sources=(IdentityRef(ns, f"sa{index}"),),
        hosts=hosts,
        ports=(PortSpec(443, "https"),),
    )


def policies(services: int) -> list[Resource]:
    """An Egress, a Retry and an UpstreamTrafficSetting per 10 services."""
    items: list[Resource] = []
    for index in range(0, services, 10):
        items.append(egress(index, (f"api{index}.example.com",)))
        items.append(retry(index, services, 3))
        items.append(upstream_setting((index + 5) % services, 100))
    return items


def mesh(services: int, permissive: bool, with_policies: bool = False) -> list[Resource]:
    annotations = {"openservicemesh.io/sidecar-injection": "enabled"}
    items: list[Resource] = [
        Namespace("v1", ObjectMeta(f"ns{n}", annotations=annotations)) for n in range(NAMESPACES)
    ]
    config = default_mesh_config()
    items.append(
        MeshConfig(
            config.api_version,
            config.metadata,
            traffic=TrafficSettings(
                enable_egress=not with_policies, enable_permissive_traffic_policy_mode=permissive
            ),
            feature_flags=FeatureFlags(enable_retry_policy=with_policies),
        )
    )
    if with_policies:
        items += policies(services)
    for index in range(services):
        ns = namespace_of(index)
        name = f"svc{index}"
        items.append(
            Service(
                "v1",
                ObjectMeta(name, ns),
                ports=(ServicePort(80, 8080, "http", "TCP", "http"),),
                selector={"app": name},
                cluster_ip=f"10.96.{index // 250}.{index % 250 + 1}",
            )
        )
        for pod in range(PODS_PER_SERVICE):
            number = index * PODS_PER_SERVICE + pod
            items.append(
                Pod(
                    "v1",
                    ObjectMeta(f"{name}-{pod}", ns, labels={"app": name}),
                    spec=PodSpec((Container("app"),), f"sa{index}"),
                    pod_ip=f"10.{number // 62500 + 1}.{number // 250 % 250}.{number % 250 + 1}",
                    phase="Running",
                    ready=True,
                )
            )
        if index % 10 == 0 and index + NAMESPACES < services:
            items.append(split(index, (90, 10)))
        if not permissive:
            items.append(
                HTTPRouteGroup(
                    "specs.smi-spec.io/v1alpha4",
                    ObjectMeta(f"routes{index}", ns),
                    matches=(HTTPMatch("api", "/api/.*", ("GET",)),),
                )
            )
            sources = tuple(
                IdentityRef(namespace_of(s), f"sa{s}")
                for s in ((index - k) % services for k in range(1, UPSTREAMS + 1))
            )
            items.append(
                TrafficTarget(
                    "access.smi-spec.io/v1alpha3",
                    ObjectMeta(f"tt{index}", ns),
                    destination=IdentityRef(ns, f"sa{index}"),
                    sources=sources,
                    rules=(TrafficTargetRule("HTTPRouteGroup", f"routes{index}"),),
                )
            )
    return items


def credentials(identity: Identity) -> Credentials:
    return Credentials(PEM + str(identity).encode(), PEM)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_change(
    generator: Generator, state: MeshState, upserts: list[Resource]
) -> tuple[MeshState, float, int, int]:
    """Applies ``upserts`` and builds incrementally: the new state, the build's seconds,
    resources rebuilt and proxies changed."""
    after, changed = state.with_changes(upserts=upserts)
    gc.collect()
    start = time.perf_counter()
    built = generator.build(after, changed)
    seconds = time.perf_counter() - start
    assert not built.errors, list(built.errors.items())[:3]
    return after, seconds, built.stats.resources_built, len(built.changed)


def run(services: int, permissive: bool, profile: bool, with_policies: bool) -> dict[str, Any]:
    start = time.perf_counter()
    state = MeshState.from_resources(mesh(services, permissive, with_policies))
    state_seconds = time.perf_counter() - start
    generator = Generator(credentials=credentials, trust_bundle=PEM)
    profiler = cProfile.Profile() if profile else None
    gc.collect()
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    cold = generator.build(state)
    if profiler:
        profiler.disable()
    cold_seconds = time.perf_counter() - start
    assert not cold.errors, list(cold.errors.items())[:3]
    after, changed = state.with_changes(upserts=[split(0, (50, 50))])
    gc.collect()
    start = time.perf_counter()
    warm = generator.build(after, changed)
    change_seconds = time.perf_counter() - start
    rebuilt_types = {
        b.type_url
        for s in warm.snapshots.values()
        if s.proxy.id in warm.changed
        for url in (ROUTE_TYPE,)
        for b in s.of_type(url).values()
    }
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(25)
    policy: dict[str, Any] = {}
    if with_policies:
        # The split change above is the baseline's; time one policy change of each kind.
        after, seconds, rebuilt, _ = timed_change(
            generator, after, [upstream_setting(5 % services, 7)]
        )
        policy["uts_ms"], policy["uts_rebuilt"] = seconds * 1000, rebuilt
        after, seconds, rebuilt, _ = timed_change(generator, after, [retry(0, services, 9)])
        policy["retry_ms"], policy["retry_rebuilt"] = seconds * 1000, rebuilt
        hosts = ("api0.example.com", "api0.example.org")
        after, seconds, rebuilt, _ = timed_change(generator, after, [egress(0, hosts)])
        policy["egress_ms"], policy["egress_rebuilt"] = seconds * 1000, rebuilt
    return {
        **policy,
        "state_s": state_seconds,
        "cold_s": cold_seconds,
        "proxies": len(cold.snapshots),
        "classes": cold.stats.classes_recomputed,
        "resources": cold.stats.resources_built,
        "change_ms": change_seconds * 1000,
        "rebuilt": warm.stats.resources_built,
        "proxies_changed": len(warm.changed),
        "rss_mb": peak_rss_mb(),
        "rebuilt_types": sorted(t.rpartition(".")[2] for t in rebuilt_types),
    }


def _child(queue: Any, services: int, permissive: bool, profile: bool, with_policies: bool) -> None:
    queue.put(run(services, permissive, profile, with_policies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one SMI cold build")
    parser.add_argument(
        "--policies",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run SMI with every policy kind (and with --profile, profile that)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    context = multiprocessing.get_context("fork")
    parser_policies = args.policies
    if args.profile:
        run(sizes[-1], False, True, parser_policies)
        return
    header = (
        f"{'services':>8} {'mode':>12} {'proxies':>7} {'classes':>7} {'resources':>9} "
        f"{'cold build s':>13} {'split change ms':>16} {'rebuilt':>7} {'peak RSS MB':>12} "
        f"{'UTS change ms':>14} {'rebuilt':>7} {'Retry change ms':>16} {'rebuilt':>7} "
        f"{'Egress change ms':>17} {'rebuilt':>7}"
    )
    print(header)
    print("-" * len(header))
    variants = [("permissive", True, False), ("SMI", False, False)]
    if parser_policies:
        variants.append(("SMI+policies", False, True))
    for services in sizes:
        for label, permissive, with_policies in variants:
            results = []
            for _ in range(args.repeat):
                queue = context.Queue()
                process = context.Process(
                    target=_child, args=(queue, services, permissive, False, with_policies)
                )
                process.start()
                results.append(queue.get())
                process.join()

            def span(key: str, fmt: str, rs: list[dict[str, Any]] = results) -> str:
                if key not in rs[0]:
                    return "-"
                values = [r[key] for r in rs]
                low, high = min(values), max(values)
                return format(low, fmt) if low == high else f"{low:{fmt}}-{high:{fmt}}"

            first = results[0]
            print(
                f"{services:>8} {label:>12} "
                f"{first['proxies']:>7} {first['classes']:>7} {first['resources']:>9} "
                f"{span('cold_s', '.2f'):>13} {span('change_ms', '.1f'):>16} "
                f"{span('rebuilt', 'd'):>7} {span('rss_mb', '.0f'):>12} "
                f"{span('uts_ms', '.1f'):>14} {span('uts_rebuilt', 'd'):>7} "
                f"{span('retry_ms', '.1f'):>16} {span('retry_rebuilt', 'd'):>7} "
                f"{span('egress_ms', '.1f'):>17} {span('egress_rebuilt', 'd'):>7}"
            )


if __name__ == "__main__":
    main()
