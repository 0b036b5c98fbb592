"""Simulated proxies for `bench/ads.py`: many SotW ADS streams in one process.

Run as ``python -m bench._ads_client``; it reads JSON commands on stdin and answers each
with one JSON line on stdout:

- ``{"cmd": "connect", "target": "127.0.0.1:PORT", "nodes": [...], "channels": K}``
  opens one stream per node id over K grpc.aio channels (each its own HTTP/2
  connection), and answers once every stream has a full configuration ACKed (or after
  ``timeout`` seconds) with the monotonic times of the first connect and of each
  stream's completion.
- ``{"cmd": "since", "t": T, "type": "RDS", "nodes": [...]}``: for each node, the
  monotonic time of its first response of that type received after T (or null).
- ``{"cmd": "stop"}``.

Each stream behaves like a proxy: it asks CDS and LDS as wildcards, then EDS for the
EDS clusters, RDS for the route configurations its listeners name and SDS for the
secrets its clusters and listeners name, and ACKs every response (with the names it
wants now). It records when each response arrived. Names are found by walking the
protos (unpacking every Any); results are cached by the resource's bytes, since
proxies share most resources. CLOCK_MONOTONIC is system-wide on Linux, so times compare
with the orchestrator's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, descriptor, message, symbol_database

import osm.xds.generator  # noqa: F401  (registers every Envoy type the builders use)
from osm.base import wellknown

CDS, EDS, LDS, RDS, SDS = (
    wellknown.CLUSTER_TYPE,
    wellknown.ENDPOINT_TYPE,
    wellknown.LISTENER_TYPE,
    wellknown.ROUTE_TYPE,
    wellknown.SECRET_TYPE,
)
SHORT = wellknown.SHORT_NAMES
_RDS = "envoy.extensions.filters.network.http_connection_manager.v3.Rds"
_SDS = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig"
_symbols = symbol_database.Default()
_names_cache: dict[bytes, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {}


def _walk(value: message.Message, rds: set[str], sds: set[str]) -> None:
    name = value.DESCRIPTOR.full_name
    if name == "google.protobuf.Any":
        assert isinstance(value, any_pb2.Any)
        try:
            inner = _symbols.GetSymbol(value.TypeName())()
        except KeyError:
            return
        inner.ParseFromString(value.value)
        _walk(inner, rds, sds)
        return
    if name == _RDS:
        rds.add(value.route_config_name)
    elif name == _SDS:
        sds.add(value.name)
    for field, field_value in value.ListFields():
        if field.type != descriptor.FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = field_value.values()
        elif field.is_repeated:
            items = field_value
        else:
            items = (field_value,)
        for item in items:
            if isinstance(item, message.Message):
                _walk(item, rds, sds)


def names_in(type_url: str, packed: any_pb2.Any) -> tuple[frozenset[str], ...]:
    """(EDS names, RDS names, SDS names) that one CDS or LDS resource refers to."""
    key = packed.value
    cached = _names_cache.get(key)
    if cached is None:
        rds: set[str] = set()
        sds: set[str] = set()
        eds: set[str] = set()
        _walk(packed, rds, sds)
        if type_url == CDS:
            cluster = cluster_pb2.Cluster.FromString(packed.value)
            if cluster.type == cluster_pb2.Cluster.EDS:
                eds.add(cluster.eds_cluster_config.service_name or cluster.name)
        cached = (frozenset(eds), frozenset(rds), frozenset(sds))
        _names_cache[key] = cached
    return cached


class Stream:
    """One simulated proxy's SotW stream."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        self.names: dict[str, frozenset[str]] = {}
        self.state: dict[str, tuple[str, str]] = {}  # type -> (version, nonce)
        self.received: list[tuple[float, str, str]] = []  # (time, type, version)
        self.refs: dict[str, dict[str, frozenset[str]]] = {CDS: {}, LDS: {}}
        self.complete_at: float | None = None
        self.error: str = ""
        self._first = True

    def request(self, type_url: str) -> None:
        version, nonce = self.state.get(type_url, ("", ""))
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            version_info=version,
            response_nonce=nonce,
            resource_names=sorted(self.names.get(type_url, ())),
        )
        if self._first:
            request.node.id = self.node_id
            self._first = False
        self.outbox.put_nowait(request)

    async def requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            request = await self.outbox.get()
            if request is None:
                return
            yield request

    def on_response(self, response: discovery_pb2.DiscoveryResponse) -> None:
        now = time.monotonic()
        type_url = response.type_url
        self.received.append((now, type_url, response.version_info))
        self.state[type_url] = (response.version_info, response.nonce)
        wanted: dict[str, frozenset[str]] = {}
        if type_url in (CDS, LDS):
            self.refs[type_url] = {}
            eds: set[str] = set()
            rds: set[str] = set()
            sds: set[str] = set()
            for packed in response.resources:
                e, r, s = names_in(type_url, packed)
                eds |= e
                rds |= r
                sds |= s
            self.refs[type_url] = {
                "eds": frozenset(eds),
                "rds": frozenset(rds),
                "sds": frozenset(sds),
            }
            wanted[EDS] = self.refs[CDS].get("eds", frozenset())
            wanted[RDS] = self.refs[LDS].get("rds", frozenset())
            wanted[SDS] = self.refs[CDS].get("sds", frozenset()) | self.refs[LDS].get(
                "sds", frozenset()
            )
        self.request(type_url)  # the ACK
        for other, names in wanted.items():
            if names != self.names.get(other, frozenset()):
                self.names[other] = names
                self.request(other)
        if self.complete_at is None and self._complete():
            self.complete_at = now

    def _complete(self) -> bool:
        if CDS not in self.state or LDS not in self.state:
            return False
        return all(t in self.state for t, names in self.names.items() if names)

    async def run(self, channel: grpc.aio.Channel) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.names = {CDS: frozenset(), LDS: frozenset()}
        self.request(CDS)
        self.request(LDS)
        try:
            async for response in stub.StreamAggregatedResources(self.requests()):
                self.on_response(response)
        except grpc.aio.AioRpcError as error:
            self.error = f"{error.code().name}: {error.details()}"
        except Exception as error:  # a bug here: say so rather than hang
            self.error = f"{type(error).__name__}: {error}"


class Simulator:
    def __init__(self) -> None:
        self.streams: dict[str, Stream] = {}
        self.channels: list[grpc.aio.Channel] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        count = max(1, int(command.get("channels", 8)))
        self.channels = [
            grpc.aio.insecure_channel(
                command["target"],
                options=[
                    ("grpc.use_local_subchannel_pool", 1),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ],
            )
            for _ in range(count)
        ]
        started = time.monotonic()
        for index, node_id in enumerate(command["nodes"]):
            stream = Stream(node_id)
            self.streams[node_id] = stream
            channel = self.channels[index % count]
            self.tasks.append(asyncio.create_task(stream.run(channel)))
        deadline = started + float(command.get("timeout", 300))
        while time.monotonic() < deadline:
            if all(s.complete_at is not None or s.error for s in self.streams.values()):
                break
            await asyncio.sleep(0.05)
        done = [s.complete_at for s in self.streams.values() if s.complete_at is not None]
        errors = sorted({s.error for s in self.streams.values() if s.error})
        failed = [s for s in self.streams.values() if s.error]
        return {
            "failed": len(failed),
            "failed_after_responses": sorted({len(s.received) for s in failed})[:10],
            "failed_sample": [s.node_id for s in failed][:: max(1, len(failed) // 8)],
            "started": started,
            "complete": len(done),
            "last_complete": max(done) if done else None,
            "errors": errors[:5],
        }

    def since(self, command: dict[str, Any]) -> dict[str, Any]:
        t = float(command["t"])
        wanted = {v: k for k, v in SHORT.items()}[command["type"]]
        answer: dict[str, float | None] = {}
        for node_id in command["nodes"]:
            stream = self.streams.get(node_id)
            first = None
            if stream is not None:
                for at, type_url, _ in stream.received:
                    if at > t and type_url == wanted:
                        first = at
                        break
            answer[node_id] = first
        return {"times": answer}

    async def stop(self) -> None:
        for stream in self.streams.values():
            stream.outbox.put_nowait(None)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


async def main() -> None:
    simulator = Simulator()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)  # node id lists are long
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        if command["cmd"] == "connect":
            answer = await simulator.connect(command)
        elif command["cmd"] == "since":
            answer = simulator.since(command)
        elif command["cmd"] == "stop":
            break
        else:
            answer = {"error": f"unknown command {command['cmd']!r}"}
        print(json.dumps(answer), flush=True)
    await simulator.stop()
    print(json.dumps({"stopped": True}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
