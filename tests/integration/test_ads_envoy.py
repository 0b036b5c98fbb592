"""Real Envoy over SotW ADS against our server: a changed cluster goes live at once.

Envoy warms a cluster again whenever CDS changes it, and an EDS cluster warms only on a
new ClusterLoadAssignment response, even one with the same endpoints (xDS protocol,
"Resource warming"). Its re-request for the unchanged names repeats the nonce it already
ACKed; a server that takes it for an ACK leaves the cluster warming until Envoy's initial
fetch timeout (15 s). Each case changes the served clusters and measures how long Envoy
takes to show the change in its admin API; on failure the message lists every request
Envoy sent and every response it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import CollectorRegistry

from osm.ads import cache, server, sotw
from osm.ads.resources import MappingSnapshot
from osm.base import wellknown
from tests.unit.ads.adstesting import NODE_ID
from tests.unit.xds.envoy_validate import ENVOY, SKIP_REASON

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(ENVOY is None, reason=SKIP_REASON),
]

LIVE_WITHIN = 3.0
"""Seconds a cluster change may take to be live; Envoy's initial fetch timeout is 15."""
PATIENCE = 25.0
"""How long to wait for Envoy at all (beyond its 15 s timeout, to measure a failure)."""
ENDPOINT_PORT = 1
"""Endpoints are never connected to: health checks are off and no traffic is sent."""


def eds_cluster(name: str, max_connections: int | None = None) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    cluster.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.V3
    cluster.connect_timeout.seconds = 1
    if max_connections is not None:
        cluster.circuit_breakers.thresholds.add().max_connections.value = max_connections
    return cluster


def static_cluster(name: str, connect_timeout: int = 1) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
    cluster.connect_timeout.seconds = connect_timeout
    cluster.load_assignment.CopyFrom(assignment(name))
    return cluster


def assignment(name: str) -> endpoint_pb2.ClusterLoadAssignment:
    load = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    address = load.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    address.address, address.port_value = "127.0.0.1", ENDPOINT_PORT
    return load


def snapshot(*clusters: cluster_pb2.Cluster) -> MappingSnapshot:
    eds = [assignment(c.name) for c in clusters if c.type == cluster_pb2.Cluster.EDS]
    return MappingSnapshot({wellknown.CLUSTER_TYPE: clusters, wellknown.ENDPOINT_TYPE: eds})


HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def bootstrap(ads_port: int) -> dict[str, Any]:
    """Envoy on SotW ADS for clusters only, to our server over plaintext gRPC."""
    grpc_cluster = {
        "name": "xds",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{HTTP_OPTIONS}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "xds",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": ads_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    return {
        "node": {"id": NODE_ID, "cluster": "bookbuyer"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"clusters": [grpc_cluster]},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
    }


@dataclass
class Wire:
    """What crossed our server's SotW streams, in order, one line each."""

    lines: list[str] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)

    def note(self, line: str) -> None:
        self.lines.append(f"{time.monotonic() - self.start:7.3f} {line}")

    def mark(self, what: str) -> None:
        self.note(f"--- {what}")

    def __str__(self) -> str:
        return "\n".join(self.lines)


def short(type_url: str) -> str:
    return wellknown.short_name(type_url)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    """Records every request the SotW machines receive and every response they send."""
    log = Wire()
    receive, respond = sotw.SotwStream.receive, sotw.SotwStream.respond

    def logged_receive(self: sotw.SotwStream, request: discovery_pb2.DiscoveryRequest) -> list[Any]:
        events = receive(self, request)
        log.note(
            f"<- {short(request.type_url)} names={list(request.resource_names)} "
            f"version={request.version_info!r} nonce={request.response_nonce!r}"
            f"{' error' if request.HasField('error_detail') else ''} "
            f"=> {[type(e).__name__ for e in events]}"
        )
        return events

    def logged_respond(self: sotw.SotwStream, snap: Any) -> list[Any]:
        responses = respond(self, snap)
        for r in responses:
            log.note(
                f"-> {short(r.type_url)} version={r.version_info!r} nonce={r.nonce!r} "
                f"resources={len(r.resources)}"
            )
        return responses

    monkeypatch.setattr(sotw.SotwStream, "receive", logged_receive)
    monkeypatch.setattr(sotw.SotwStream, "respond", logged_respond)
    return log


@dataclass
class Envoy:
    snapshots: cache.SnapshotCache
    admin_port: int
    wire: Wire

    def serve(self, what: str, snap: MappingSnapshot) -> float:
        self.wire.mark(what)
        self.snapshots.set_snapshot(NODE_ID, snap)
        return time.monotonic()

    def admin(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stats(self) -> dict[str, str]:
        text = self.admin("/stats?filter=^cluster_manager\\.")
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)

    def clusters(self) -> dict[str, dict[str, Any]]:
        body = json.loads(self.admin("/clusters?format=json"))
        return {c["name"]: c for c in body.get("cluster_statuses", [])}

    def settled(self) -> bool:
        """No cluster is warming."""
        return self.stats().get("cluster_manager.warming_clusters") == "0"

    async def until(self, since: float, what: str, ready: Callable[[], bool]) -> float:
        """Seconds from `since` until `ready()` holds (with no cluster warming); fails
        with the wire log after `PATIENCE`."""
        while time.monotonic() - since < PATIENCE:
            if await asyncio.to_thread(lambda: self.settled() and ready()):
                elapsed = time.monotonic() - since
                self.wire.mark(f"{what}: live after {elapsed:.2f} s")
                return elapsed
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what}: not live after {PATIENCE} s\n{self.wire}")


def max_connections(cluster: dict[str, Any]) -> int | None:
    thresholds = cluster.get("circuit_breakers", {}).get("thresholds", [])
    default = [t for t in thresholds if t.get("priority", "DEFAULT") == "DEFAULT"]
    return int(default[0]["max_connections"]) if default else None


@contextlib.asynccontextmanager
async def envoy(tmp_path: Path, wire: Wire, first: MappingSnapshot) -> AsyncIterator[Envoy]:
    assert ENVOY is not None
    snapshots = cache.SnapshotCache()
    snapshots.set_snapshot(NODE_ID, first)
    ads = server.AdsServer(
        snapshots,
        CollectorRegistry(),
        server.ServerConfig(port=0, tls=None),
        server.ProxyCallbacks(),
    )
    await ads.start()
    config, admin_path = tmp_path / "envoy.json", tmp_path / "admin-address"
    config.write_text(json.dumps(bootstrap(ads.port)))
    log = (tmp_path / "envoy.log").open("w")
    process = await asyncio.create_subprocess_exec(
        ENVOY,
        "-c", str(config),
        "--disable-hot-restart",
        "--admin-address-path", str(admin_path),
        "-l", "debug",
        "--component-log-level", "upstream:debug,config:debug",
        stdout=log,
        stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + PATIENCE
        while not admin_path.exists() or not admin_path.read_text().strip():
            assert process.returncode is None, (tmp_path / "envoy.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Envoy wrote no admin address"
            await asyncio.sleep(0.05)
        port = int(admin_path.read_text().strip().rsplit(":", 1)[1])
        yield Envoy(snapshots, port, wire)
    finally:
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 10)
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
        await ads.stop(0)


async def test_a_changed_eds_cluster_is_live_at_once(tmp_path: Path, wire: Wire) -> None:
    async with envoy(tmp_path, wire, snapshot(eds_cluster("backend"))) as proxy:
        await proxy.until(wire.start, "first config", lambda: "backend" in proxy.clusters())
        since = proxy.serve("circuit breaker", snapshot(eds_cluster("backend", 7)))
        took = await proxy.until(
            since,
            "circuit breaker",
            lambda: max_connections(proxy.clusters().get("backend", {})) == 7,
        )
        assert took < LIVE_WITHIN, f"the changed cluster took {took:.2f} s\n{wire}"


async def test_a_cluster_removed_and_added_back_is_live_at_once(tmp_path: Path, wire: Wire) -> None:
    two = snapshot(eds_cluster("backend"), eds_cluster("other"))
    async with envoy(tmp_path, wire, two) as proxy:
        await proxy.until(wire.start, "first config", lambda: "backend" in proxy.clusters())
        since = proxy.serve("removed", snapshot(eds_cluster("other")))
        await proxy.until(since, "removed", lambda: "backend" not in proxy.clusters())
        since = proxy.serve("added back", snapshot(eds_cluster("backend", 5), eds_cluster("other")))
        took = await proxy.until(
            since,
            "added back",
            lambda: max_connections(proxy.clusters().get("backend", {})) == 5,
        )
        assert took < LIVE_WITHIN, f"the re-added cluster took {took:.2f} s\n{wire}"


async def test_a_change_beside_the_eds_clusters_is_live_at_once(tmp_path: Path, wire: Wire) -> None:
    first = snapshot(eds_cluster("backend"), static_cluster("local"))
    async with envoy(tmp_path, wire, first) as proxy:
        await proxy.until(wire.start, "first config", lambda: "local" in proxy.clusters())
        changed = snapshot(eds_cluster("backend"), static_cluster("local"), static_cluster("new"))
        since = proxy.serve("static cluster added", changed)
        took = await proxy.until(since, "static cluster added", lambda: "new" in proxy.clusters())
        assert took < LIVE_WITHIN, f"the new cluster took {took:.2f} s\n{wire}"
        assert "backend" in proxy.clusters()
