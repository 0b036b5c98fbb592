"""Benchmark: what tracing costs each data plane, at a fixed request rate.

One proxy process per data plane (Envoy ``--concurrency 1``; the Python sidecar, one
event loop, uvloop when installed) on loopback: one outbound HCM (CLIENT spans) to an
app, with OSM's Zipkin tracer (`osm.xds.tracing`) off, at 1% and at 100% sampling, and
the tracing cluster pointing to a collector that answers 202 (spans are counted, not
kept). The app, the collector and an open-loop load generator (``--rate`` requests/s
over ``--connections`` keep-alive connections, for ``--duration`` s) run in this
process; only the proxy's CPU time (utime + stime from /proc) is measured, over the
loaded window. Goal (issue #18): 1% sampling adds <= 5% CPU per 1,000 rps.

    .venv/bin/python bench/tracing.py [--rate 1000] [--duration 10] [--planes envoy,python]

Needs no root: everything is on 127.0.0.1, on ports the kernel picks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import json_format

from osm.base import wellknown
from osm.xds import common, lds, names
from osm.xds import tracing as tracing_xds
from osm.xds.resources import pack

LOOPBACK = "127.0.0.1"
MODES: dict[str, float | None] = {"off": None, "1%": 1.0, "100%": 100.0}
BODY = b"x" * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def resources(
    listen_port: int, app_port: int, collector_port: int, sampling: float | None
) -> dict[str, list[Any]]:
    """The proxy's listener and clusters; ``sampling`` None: tracing off."""
    traced = (
        None
        if sampling is None
        else tracing_xds.Tracing(LOOPBACK, collector_port, wellknown.ZIPKIN_SPANS_PATH, sampling)
    )
    manager = lds.http_connection_manager("bench", "", tracing=traced)
    manager.ClearField("rds")
    manager.route_config.CopyFrom(
        route_pb2.RouteConfiguration(
            name="bench",
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name="app",
                    domains=["*"],
                    routes=[
                        route_components_pb2.Route(
                            match=route_components_pb2.RouteMatch(prefix="/"),
                            route=route_components_pb2.RouteAction(cluster="app"),
                        )
                    ],
                )
            ],
        )
    )
    listener = listener_pb2.Listener(
        name="bench",
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=LOOPBACK, port_value=listen_port)
        ),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name=names.HTTP_CONNECTION_MANAGER, typed_config=pack(manager)
                    )
                ]
            )
        ],
    )
    clusters = [
        cluster_pb2.Cluster(
            name="app",
            type=cluster_pb2.Cluster.STATIC,
            connect_timeout=common.seconds(1),
            load_assignment=common.single_endpoint("app", LOOPBACK, app_port),
        )
    ]
    if traced is not None:
        clusters.append(tracing_xds.cluster(traced))
    return {"listeners": [listener], "clusters": clusters}


def as_json(built: dict[str, list[Any]]) -> dict[str, list[dict[str, Any]]]:
    return {k: [json_format.MessageToDict(m) for m in v] for k, v in built.items()}


# -- the Python sidecar's process ---------------------------------------------------------
async def serve_python(config: Path) -> None:
    from osm.proxy import assembly, server
    from osm.proxy.runtime import Options

    loaded = json.loads(config.read_text())
    listeners = {
        d["name"]: json_format.ParseDict(d, listener_pb2.Listener()) for d in loaded["listeners"]
    }
    clusters = {
        d["name"]: json_format.ParseDict(d, cluster_pb2.Cluster()) for d in loaded["clusters"]
    }
    proxy = server.Sidecar(Options())
    await proxy.apply(
        assembly.assemble({wellknown.LISTENER_TYPE: listeners, wellknown.CLUSTER_TYPE: clusters})
    )
    await asyncio.Event().wait()


# -- the bench process: app, collector, load ------------------------------------------------
class Counters:
    spans = 0
    reports = 0


async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    response = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BODY) + BODY
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(response)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def collector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            fields = dict(
                line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line
            )
            if fields.get(b"transfer-encoding", b"").strip() == b"chunked":
                body = b""
                while size := int((await reader.readline()).strip(), 16):
                    body += await reader.readexactly(size)
                    await reader.readline()
                await reader.readline()
            else:
                body = await reader.readexactly(int(fields.get(b"content-length", b"0")))
            Counters.spans += len(json.loads(body))
            Counters.reports += 1
            writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def load(port: int, rate: float, duration: float, connections: int) -> tuple[int, int]:
    """Open loop: request i goes out at start + i/rate on connection i % connections (a
    connection with a request in flight queues it). -> (answered, failed)."""
    streams = [await asyncio.open_connection(LOOPBACK, port) for _ in range(connections)]
    request = b"GET /books HTTP/1.1\r\nhost: bookstore.bookstore:14001\r\n\r\n"
    answered = failed = 0
    total = int(rate * duration)
    queues: list[asyncio.Queue[None]] = [asyncio.Queue() for _ in streams]

    async def worker(index: int) -> None:
        nonlocal answered, failed
        reader, writer = streams[index]
        while True:
            await queues[index].get()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                answered += 1
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                failed += 1
            queues[index].task_done()

    tasks = [asyncio.create_task(worker(i)) for i in range(connections)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(total):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queues[i % connections].put_nowait(None)
    for queue in queues:
        await queue.join()
    for task in tasks:
        task.cancel()
    for _, writer in streams:
        writer.close()
    return answered, failed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_listening(port: int) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection(LOOPBACK, port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


def start_proxy(plane: str, built: dict[str, list[Any]], workdir: Path) -> subprocess.Popen[bytes]:
    if plane == "python":
        config = workdir / "python.json"
        config.write_text(json.dumps(as_json(built)))
        return subprocess.Popen([sys.executable, __file__, "--serve-python", str(config)])
    envoy = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    bootstrap = {
        "node": {"id": "bench.sidecar.bookbuyer.bookbuyer", "cluster": "bookbuyer"},
        "admin": {"address": {"socket_address": {"address": LOOPBACK, "port_value": 0}}},
        "layered_runtime": {
            "layers": [{"name": "static", "static_layer": {"tracing.zipkin.min_flush_spans": 100}}]
        },
        "static_resources": as_json(built),
    }
    path = workdir / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    return subprocess.Popen(
        [envoy, "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "-l", "error"]
    )


async def measure(plane: str, mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    app_server = await asyncio.start_server(app, LOOPBACK, 0)
    sink = await asyncio.start_server(collector, LOOPBACK, 0)
    port = free_port()
    built = resources(
        port,
        app_server.sockets[0].getsockname()[1],
        sink.sockets[0].getsockname()[1],
        MODES[mode],
    )
    Counters.spans = Counters.reports = 0
    process = start_proxy(plane, built, workdir)
    try:
        await wait_listening(port)
        await load(port, args.rate, 1.0, args.connections)  # warm up
        before, began = cpu_seconds(process.pid), time.monotonic()
        answered, failed = await load(port, args.rate, args.duration, args.connections)
        cpu, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - began
        await asyncio.sleep(1.5)  # let the last reports arrive
    finally:
        process.terminate()
        process.wait(10)
        app_server.close()
        sink.close()
    return {
        "plane": plane,
        "mode": mode,
        "rps": answered / elapsed,
        "failed": failed,
        "cpu": cpu / elapsed,
        "spans": Counters.spans,
    }


async def main(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for plane in args.planes.split(","):
            for mode in MODES:
                rows.append(await measure(plane, mode, args, Path(directory)))
    base = {r["plane"]: r["cpu"] for r in rows if r["mode"] == "off"}
    print(
        f"\ntracing cost at {args.rate:.0f} rps, {args.duration:.0f} s per case (CPU of the proxy)"
    )
    print(
        f"{'plane':8} {'tracing':8} {'rps':>8} {'failed':>7} {'CPU %':>7} {'vs off':>8} "
        f"{'+CPU%/1k rps':>13} {'spans':>8}"
    )
    for r in rows:
        ratio = r["cpu"] / base[r["plane"]] if base[r["plane"]] else float("nan")
        per_k = (ratio - 1.0) * 100.0 * 1000.0 / args.rate
        print(
            f"{r['plane']:8} {r['mode']:8} {r['rps']:8.0f} {r['failed']:7d} "
            f"{r['cpu'] * 100:7.1f} {ratio:8.3f} {per_k:+13.1f} {r['spans']:8d}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--planes", default="envoy,python")
    parser.add_argument("--serve-python", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve_python is not None:
        from osm.proxy import server as proxy_server

        proxy_server.install_uvloop()
        asyncio.run(serve_python(parsed.serve_python))
    else:
        asyncio.run(main(parsed))
