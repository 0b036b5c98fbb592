"""grpcio's own xDS client (proxyless gRPC) against our ADS server: an independent peer.

The client runs in a subprocess (GRPC_XDS_BOOTSTRAP must be set before its first xDS
channel, and xDS client state is process-global). The server hands it hand-built
LDS/RDS/CDS/EDS for two backends weighted 80/20; the client's call counts must match
within binomial tolerance, then again after the weights change on the same channel.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from osm.ads import cache, server
from osm.ads.resources import MappingSnapshot
from osm.base.wellknown import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

NODE_ID = "client-1.grpc.default.test"
CALLS = 1000
TIMEOUT = 30.0

CLIENT = """
import json, sys
import grpc
channel = grpc.insecure_channel("xds:///echo")
who = channel.unary_unary("/test.Echo/Who")
grpc.channel_ready_future(channel).result(timeout=20)
for line in sys.stdin:
    counts = {}
    for _ in range(int(line)):
        name = who(b"", timeout=10).decode()
        counts[name] = counts.get(name, 0) + 1
    print(json.dumps(counts), flush=True)
"""


def listener() -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="echo",
        rds=hcm_pb2.Rds(
            route_config_name="echo-route",
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
        ),
    )
    router = manager.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    result = listener_pb2.Listener(name="echo")
    result.api_listener.CopyFrom(api_listener_pb2.ApiListener())
    result.api_listener.api_listener.Pack(manager)
    return result


def routes(weights: dict[str, int]) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name="echo-route")
    host = config.virtual_hosts.add(name="echo", domains=["*"])
    route = host.routes.add()
    route.match.prefix = ""
    for name, weight in weights.items():
        weighted = route.route.weighted_clusters.clusters.add(name=name)
        weighted.weight.value = weight
    return config


def cluster(name: str) -> cluster_pb2.Cluster:
    result = cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.EDS, lb_policy=cluster_pb2.Cluster.ROUND_ROBIN
    )
    result.eds_cluster_config.eds_config.ads.SetInParent()
    result.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.V3
    return result


def endpoints(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    locality = assignment.endpoints.add()
    locality.locality.zone = "local"
    locality.load_balancing_weight.value = 1
    endpoint = locality.lb_endpoints.add()
    endpoint.endpoint.address.socket_address.CopyFrom(
        address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
    )
    return assignment


def snapshot(weights: dict[str, int], ports: dict[str, int]) -> MappingSnapshot:
    contents: dict[str, list[Message]] = {
        LISTENER_TYPE: [listener()],
        ROUTE_TYPE: [routes(weights)],
        CLUSTER_TYPE: [cluster(n) for n in ports],
        ENDPOINT_TYPE: [endpoints(n, p) for n, p in ports.items()],
    }
    return MappingSnapshot(contents)


async def backend(name: str) -> tuple[grpc.aio.Server, int]:
    async def who(request: bytes, context: Any) -> bytes:
        return name.encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
    backend_server = grpc.aio.server()
    backend_server.add_generic_rpc_handlers((handler,))
    port = backend_server.add_insecure_port("127.0.0.1:0")
    await backend_server.start()
    return backend_server, port


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, int]]:
    started = [await backend("a"), await backend("b")]
    yield {"a": started[0][1], "b": started[1][1]}
    for backend_server, _ in started:
        await backend_server.stop(0)


def assert_binomial(counts: dict[str, int], share_of_a: float) -> None:
    """`a`'s count is within 5 standard deviations of CALLS * share_of_a."""
    assert sum(counts.values()) == CALLS and set(counts) <= {"a", "b"}
    mean = CALLS * share_of_a
    deviation = math.sqrt(CALLS * share_of_a * (1 - share_of_a))
    assert abs(counts.get("a", 0) - mean) <= 5 * deviation, counts


async def test_grpc_xds_client_follows_weighted_clusters(
    backends: dict[str, int], tmp_path: Path
) -> None:
    snapshots = cache.SnapshotCache()
    ads = server.AdsServer(snapshots, CollectorRegistry(), server.ServerConfig(port=0))
    await ads.start()
    snapshots.set_snapshot(NODE_ID, snapshot({"a": 80, "b": 20}, backends))
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{ads.port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": NODE_ID, "cluster": "test", "locality": {"zone": "local"}},
    }
    (tmp_path / "bootstrap.json").write_text(json.dumps(bootstrap))
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(tmp_path / "bootstrap.json")}
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert client.stdin is not None and client.stdout is not None

    async def calls() -> dict[str, int]:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(f"{CALLS}\n".encode())
        await client.stdin.drain()
        line = await asyncio.wait_for(client.stdout.readline(), TIMEOUT)
        assert line, "the xDS client exited"
        counts: dict[str, int] = json.loads(line)
        return counts

    try:
        assert_binomial(await calls(), 0.8)
        (status,) = ads.status()
        assert set(status.acked_versions) == {"CDS", "EDS", "LDS", "RDS"}
        assert status.last_nack is None
        updated = snapshot({"a": 20, "b": 80}, backends)
        snapshots.set_snapshot(NODE_ID, updated)
        for _ in range(500):
            (status,) = ads.status()
            if status.acked_versions.get("RDS") == updated.version(ROUTE_TYPE):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"RDS update not acknowledged: {status}")
        await asyncio.sleep(0.2)  # the channel swaps its picker just after the ACK
        assert_binomial(await calls(), 0.2)
        (after,) = ads.status()
        assert after.connected_since == status.connected_since, "the client reconnected"
        assert after.last_nack is None
    finally:
        client.stdin.close()
        try:
            await asyncio.wait_for(client.wait(), 10)
        except TimeoutError:
            client.kill()
            await client.wait()
        if client.returncode not in (0, -9):
            assert client.stderr is not None
            print((await client.stderr.read()).decode()[-4000:])
        await ads.stop(0)
