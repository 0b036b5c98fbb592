"""Real Prometheus (Debian's) discovers the pods of our API server as OSM's configuration
says, and scrapes them.

Debian's Prometheus has no Kubernetes discovery, so local mode's Prometheus reads the
same targets over HTTP SD from `osm.runtime.prometheus_sd`, an API client that lists and
watches Pods. Here: our API server (`tests.kubectl_harness.cluster`), the discovery with the
admin's kubeconfig, and Prometheus with local mode's ``prometheus.yml`` (only its discovery
URL changed). Pods whose IP is 127.0.0.1 point Prometheus at a metrics server of the test.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from osm.base import wellknown
from osm.install import observability
from osm.kube.client import KubeClient
from osm.runtime import prometheus_sd
from tests import kubeapi
from tests.conftest import free_port
from tests.kubectl_harness import Cluster, cluster

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus"),
]
NAMESPACE = "bookstore"
WAIT = 60.0
T = TypeVar("T")

EXPOSITION = """\
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="bookwarehouse/bw|14001"} 7
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="bookwarehouse/bw|14001",le="5"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="bookwarehouse/bw|14001",le="+Inf"} 7
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="bookwarehouse/bw|14001"} 40
envoy_cluster_upstream_rq_time_count{envoy_cluster_name="bookwarehouse/bw|14001"} 7
# TYPE envoy_cluster_upstream_cx_total counter
envoy_cluster_upstream_cx_total{envoy_cluster_name="bookwarehouse/bw|14001"} 2
"""
"""What the scraped pod serves: two kept families and one OSM's list drops."""


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    deadline = time.monotonic() + WAIT
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"after {WAIT:g}s: {what}")
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def metrics_server(port: int) -> AsyncIterator[None]:
    async def exposition(request: web.Request) -> web.Response:
        return web.Response(text=EXPOSITION, content_type="text/plain")

    app = web.Application()
    app.router.add_get(wellknown.PROMETHEUS_SCRAPE_PATH, exposition)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, wellknown.LOCALHOST, port).start()
    try:
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def prometheus(config: dict[str, Any], directory: Path, port: int) -> AsyncIterator[str]:
    directory.mkdir()
    path = directory / "prometheus.yml"
    path.write_text(observability.prometheus_yaml(config))
    assert PROMETHEUS is not None
    log = (directory / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={path}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={wellknown.LOCALHOST}:{port}",
        stdout=log,
        stderr=log,
    )
    url = f"http://{wellknown.LOCALHOST}:{port}"
    try:
        async with aiohttp.ClientSession(url) as session:

            async def ready() -> bool | None:
                assert process.returncode is None, (directory / "prometheus.log").read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get("/-/ready") as response:
                        return True if response.status == 200 else None
                return None

            await eventually(ready, "Prometheus is not ready")
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log.close()


def pod(name: str, deployment: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    meta = deployment["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": "bookstore", "version": "v1"},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "bookstore",
                    "command": ["sleep", "infinity"],
                    "ports": [{"name": "http", "containerPort": 14001}],
                }
            ]
        },
    }


def scraped(port: int) -> dict[str, str]:
    return {
        wellknown.PROMETHEUS_SCRAPE_ANNOTATION: "true",
        wellknown.PROMETHEUS_PORT_ANNOTATION: str(port),
        wellknown.PROMETHEUS_PATH_ANNOTATION: wellknown.PROMETHEUS_SCRAPE_PATH,
    }


async def running(api: Cluster, client: KubeClient, obj: dict[str, Any]) -> None:
    """Creates the pod and writes what a kubelet would: its IP (this machine's loopback)
    and Ready."""
    async with kubeapi.https(api.api.kubeconfig) as session:
        stored = await kubeapi.apply_one(client, obj)
        stored["status"] = {
            "phase": "Running",
            "podIP": wellknown.LOCALHOST,
            "hostIP": wellknown.LOCALHOST,
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        await kubeapi.replace_status(session, stored)


async def targets(session: aiohttp.ClientSession) -> list[dict[str, Any]]:
    async with session.get("/api/v1/targets", params={"state": "active"}) as response:
        body = await response.json()
        found: list[dict[str, Any]] = body["data"]["activeTargets"]
        return [t for t in found if t["scrapePool"] == observability.PODS_JOB]


async def query(session: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
    async with session.get("/api/v1/query", params={"query": promql}) as response:
        body = await response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


async def test_prometheus_discovers_scrapes_and_forgets_annotated_pods(tmp_path: Path) -> None:
    metrics_port, silent_port = free_port(), free_port()
    async with cluster(tmp_path) as api:
        client = KubeClient.from_kubeconfig(api.api.kubeconfig)
        try:
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "bookstore", "namespace": NAMESPACE},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "bookstore"}},
                    "template": {
                        "metadata": {"labels": {"app": "bookstore"}},
                        "spec": {"containers": [{"name": "b", "command": ["sleep", "1"]}]},
                    },
                },
            }
            await kubeapi.apply(client, namespace)
            stored = await kubeapi.apply_one(client, deployment)
            await running(api, client, pod("bookstore-a", stored, scraped(metrics_port)))
            await running(api, client, pod("bookstore-b", stored, scraped(silent_port)))
            await running(api, client, pod("bookstore-c", stored, {}))

            sd_port = free_port()
            runner, follow = await prometheus_sd.serve(client, wellknown.LOCALHOST, sd_port)
            config = observability.prometheus_config(
                "osm-system", local=True, discovery=observability.discovery_url(sd_port)
            )
            config["scrape_configs"] = [
                observability.pods_job(
                    "osm-system", local=True, discovery=observability.discovery_url(sd_port)
                )
            ]
            try:
                async with (
                    metrics_server(metrics_port),
                    prometheus(config, tmp_path / "prometheus", free_port()) as url,
                    aiohttp.ClientSession(url) as session,
                ):
                    await check(session, api, client)
            finally:
                follow.cancel()
                await asyncio.gather(follow, return_exceptions=True)
                await runner.cleanup()
        finally:
            await client.close()


async def check(session: aiohttp.ClientSession, api: Cluster, client: KubeClient) -> None:
    async def both() -> list[dict[str, Any]] | None:
        found = await targets(session)
        return found if len(found) == 2 else None

    found = {t["labels"]["source_pod_name"]: t for t in await eventually(both, "two targets")}
    assert set(found) == {"bookstore-a", "bookstore-b"}, "bookstore-c is not annotated"
    labels = found["bookstore-a"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("source_")} == {
        "source_namespace": NAMESPACE,
        "source_pod_name": "bookstore-a",
        "source_service": "bookstore",
        "source_workload_kind": "Deployment",
        "source_workload_name": "bookstore",
    }
    assert found["bookstore-a"]["scrapeUrl"].endswith(
        f":{labels['instance'].rpartition(':')[2]}{wellknown.PROMETHEUS_SCRAPE_PATH}"
    )
    assert "version" not in labels, "pod labels other than app are not target labels"

    async def healthy() -> str | None:
        health = {t["labels"]["source_pod_name"]: t["health"] for t in await targets(session)}
        return "scraped" if health == {"bookstore-a": "up", "bookstore-b": "down"} else None

    await eventually(healthy, "bookstore-a up and bookstore-b down")

    async def kept() -> list[dict[str, Any]] | None:
        found = await query(
            session, 'envoy_cluster_upstream_rq_total{source_pod_name="bookstore-a"}'
        )
        return found or None

    sample = (await eventually(kept, "the request count of bookstore-a"))[0]
    assert sample["metric"]["source_workload_name"] == "bookstore"
    assert sample["value"][1] == "7"
    assert await query(session, "envoy_cluster_upstream_rq_time_bucket"), "ours is kept"
    assert not await query(session, "envoy_cluster_upstream_cx_total"), "OSM's list drops it"

    await client.delete("Pod", NAMESPACE, "bookstore-b")

    async def forgotten() -> bool | None:
        names = {t["labels"]["source_pod_name"] for t in await targets(session)}
        return True if names == {"bookstore-a"} else None

    await eventually(forgotten, "the deleted pod bookstore-b is still a target")
