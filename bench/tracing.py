"""Benchmark: what tracing costs each data plane, at a fixed request rate.

One proxy process per data plane (Envoy ``--concurrency 1``; the Python sidecar, one
event loop, uvloop when installed) on loopback: one outbound HCM (CLIENT spans) to an
app, with OSM's Zipkin tracer (`osm.xds.tracing`) off, at 1% and at 100% sampling, and
the tracing cluster pointing to a collector that answers 202 (spans are counted, not
kept). The app, the collector and an open-loop load generator (``--rate`` requests/s
over ``--connections`` keep-alive connections, for ``--duration`` s) run in this
process; only the proxy's CPU time is measured, over the loaded window: the nanoseconds
its threads ran (``/proc/<pid>/task/*/schedstat``). Goal (issue #18): 1% sampling adds
<= 5% CPU per 1,000 rps, against tracing off in the same repetition.

Each case starts its own proxy. ``--repeat N`` runs every (plane, sampling) case N times,
interleaved (the order reversed every other repetition), and prints the median and the
range of each figure; a ratio to "off" is taken within one repetition.

Planes: ``envoy``, ``python`` (the sidecar from this source tree, pure Python) and, with
``--sidecar-variant [NAME=]DIR`` (repeatable), a sidecar that imports ``osm`` from DIR,
e.g. ``.venv/compiled`` (``make compiled``: the mypyc build pods run) or a copy of the code
before a change; the plane is called NAME (default ``variant``).

``--instructions`` counts instead, for the sidecar planes, the user-space instructions
per request (callgrind's Ir, bench/_callgrind.py): each sidecar runs under ``valgrind
--tool=callgrind``, is warmed up, its counters zeroed, then loaded at ``--rate`` (use
~50 rps: valgrind runs it ~50x slower) for ``--duration`` s. Noise moves an instruction
count by well under 1%, so it is the figure to compare two builds with; the kernel's
share (syscalls, TCP) is not in it.

    .venv/bin/python bench/tracing.py [--rate 1000] [--duration 10] [--repeat 3]
        [--planes envoy,python] [--sidecar-variant [NAME=]DIR ...] [--instructions [--top N]]

Needs no root: everything is on 127.0.0.1, on ports the kernel picks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _callgrind
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
MODES: dict[str, float | None] = {"off": None, "0%": 0.0, "1%": 1.0, "100%": 100.0}
"""Tracing off (the baseline), or on at this sampling percentage. At 0% every request
pays what an unsampled one costs (B3 in, ids, B3 out) and no span is reported."""
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
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # the connection ended, or this process is ending
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
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # the connection ended, or this process is ending
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
    """The CPU time the process's threads have run, in seconds (ns precision: schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


async def wait_listening(port: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection(LOOPBACK, port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


def is_compiled(code: Path | None) -> bool:
    """Whether the sidecar imported from `code` (None: this tree) runs mypyc's build."""
    root = code if code is not None else Path(__file__).resolve().parent.parent
    return any((root / "osm" / "proxy").glob("http_session.*.so"))


def start_proxy(
    plane: str,
    built: dict[str, list[Any]],
    workdir: Path,
    code: Path | None,
    wrap: list[str],
) -> subprocess.Popen[bytes]:
    """The proxy of `plane`; a sidecar imports `osm` from `code` (None: as this process)."""
    if plane != "envoy":
        config = workdir / "python.json"
        config.write_text(json.dumps(as_json(built)))
        env = dict(os.environ)
        if code is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(code), env.get("PYTHONPATH"))))
        argv = [*wrap, sys.executable, __file__, "--serve-python", str(config)]
        return subprocess.Popen(argv, env=env)
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


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


async def measure(
    plane: str, code: Path | None, mode: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """One case: a fresh proxy, warmed up, then loaded for ``args.duration`` s."""
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
    wrap = []
    if args.instructions:
        wrap = ["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={workdir}/cg.%p"]
    process = start_proxy(plane, built, workdir, code, wrap)
    profile: _callgrind.Profile | None = None
    try:
        await wait_listening(port, 300.0 if wrap else 20.0)
        await load(port, args.rate, args.warmup, args.connections)
        if wrap:
            callgrind_control("--zero", str(process.pid))
        before, began = cpu_seconds(process.pid), time.monotonic()
        answered, failed = await load(port, args.rate, args.duration, args.connections)
        cpu, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - began
        if wrap:
            dumped = set(workdir.glob(f"cg.{process.pid}*"))
            callgrind_control("--dump", str(process.pid))
            (dump,) = set(workdir.glob(f"cg.{process.pid}*")) - dumped
            profile = _callgrind.read(dump)
        await asyncio.sleep(1.5)  # let the last reports arrive
    finally:
        process.terminate()
        process.wait(30)
        app_server.close()
        sink.close()
    return {
        "plane": plane,
        "mode": mode,
        "rps": answered / elapsed,
        "failed": failed,
        "cpu": cpu / elapsed,
        "spans": Counters.spans,
        "answered": answered,
        "profile": profile,
    }


def spread(values: list[float], scale: float = 1.0, fmt: str = ".1f") -> str:
    """`median [low, high]`, or the one value."""
    if len(values) == 1:
        return f"{values[0] * scale:{fmt}}"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid * scale:{fmt}} [{low * scale:{fmt}}, {high * scale:{fmt}}]"


def report_cpu(rows: list[dict[str, Any]], planes: list[str], args: argparse.Namespace) -> None:
    print(
        f"\ntracing cost at {args.rate:.0f} rps, {args.duration:.0f} s per case, "
        f"{args.repeat} repetition(s): CPU of the proxy, median [range]"
    )
    print(
        f"{'plane':12} {'tracing':8} {'rps':>6} {'failed':>6} {'CPU %':>20} {'vs off':>24} "
        f"{'+CPU%/1k rps':>24} {'spans':>7}"
    )
    for plane in planes:
        base = {r["rep"]: r["cpu"] for r in rows if r["plane"] == plane and r["mode"] == "off"}
        for mode in args.modes:
            cases = [r for r in rows if r["plane"] == plane and r["mode"] == mode]
            ratios = [r["cpu"] / base[r["rep"]] for r in cases if base.get(r["rep"])]
            per_k = [(ratio - 1.0) * 100.0 * 1000.0 / args.rate for ratio in ratios]
            print(
                f"{plane:12} {mode:8} {statistics.median(r['rps'] for r in cases):6.0f} "
                f"{sum(r['failed'] for r in cases):6d} "
                f"{spread([r['cpu'] for r in cases], 100.0):>20} "
                f"{spread(ratios, fmt='.3f'):>24} {spread(per_k, fmt='+.1f'):>24} "
                f"{sum(r['spans'] for r in cases) // len(cases):7d}"
            )


def report_instructions(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nuser-space instructions per request (callgrind Ir), {args.duration:g} s at "
        f"{args.rate:g} rps per case; median [range] over {args.repeat} repetition(s)"
    )
    groups = ("interpreter", "compiled", "loop", "http", "libc", "other")
    print(
        f"{'plane':12} {'tracing':8} {'requests':>8} {'Ir/request':>28} {'vs off':>10}"
        + "".join(f" {group:>11}" for group in groups)
    )
    planes = list(dict.fromkeys(r["plane"] for r in rows))
    for plane in planes:
        base = {r["rep"]: r for r in rows if r["plane"] == plane and r["mode"] == "off"}
        for mode in args.modes:
            cases = [r for r in rows if r["plane"] == plane and r["mode"] == mode]
            per_request = [r["profile"].total / r["answered"] for r in cases]
            offs = [base[r["rep"]]["profile"].total / base[r["rep"]]["answered"] for r in cases]
            deltas = [mine - off for mine, off in zip(per_request, offs, strict=True)]
            by_group = [
                {g: n / r["answered"] for g, n in r["profile"].by_group().items()} for r in cases
            ]
            print(
                f"{plane:12} {mode:8} {statistics.median(r['answered'] for r in cases):8.0f} "
                f"{spread(per_request, fmt=',.0f'):>28} "
                f"{statistics.median(deltas):+10,.0f}"
                + "".join(
                    f" {statistics.median(g.get(group, 0.0) for g in by_group):11,.0f}"
                    for group in groups
                )
            )
    if args.top:
        offs = {r["plane"]: r for r in rows if r["rep"] == 0 and r["mode"] == "off"}
        for r in rows:
            if r["rep"] != 0 or r["mode"] == "off":
                continue
            off = offs[r["plane"]]
            mine = {f: n / r["answered"] for f, n in r["profile"].by_function.items()}
            theirs = {f: n / off["answered"] for f, n in off["profile"].by_function.items()}
            delta = {f: mine.get(f, 0.0) - theirs.get(f, 0.0) for f in mine.keys() | theirs}
            print(
                f"\n{r['plane']} {r['mode']}: the {args.top} functions that gained most Ir/request"
            )
            for function in sorted(delta, key=delta.__getitem__, reverse=True)[: args.top]:
                binary = r["profile"].binary_of.get(function, "?").rsplit("/", 1)[-1]
                print(f"  {delta[function]:>+9,.0f}  {function[:80]}  [{binary[:40]}]")


def sidecar_planes(args: argparse.Namespace) -> dict[str, Path | None]:
    """Each plane's code: None for this process's own (envoy, python), else a directory."""
    planes: dict[str, Path | None] = {plane: None for plane in args.planes.split(",") if plane}
    for variant in args.sidecar_variant:
        name, _, directory = variant.rpartition("=")
        planes[name or "variant"] = Path(directory).resolve()
    if args.instructions:
        planes.pop("envoy", None)
    return planes


async def main(args: argparse.Namespace) -> None:
    planes = sidecar_planes(args)
    for plane, code in planes.items():
        if plane != "envoy":
            build = "mypyc-compiled" if is_compiled(code) else "pure Python"
            print(f"{plane}: the sidecar from {code or 'this tree'} ({build})", flush=True)
    rows = []
    cases = [(plane, mode) for plane in planes for mode in args.modes]
    with tempfile.TemporaryDirectory() as directory:
        for rep in range(args.repeat):
            for plane, mode in cases if rep % 2 == 0 else cases[::-1]:
                row = await measure(plane, planes[plane], mode, args, Path(directory))
                row["rep"] = rep
                rows.append(row)
                print(
                    f"  {rep}: {plane} {mode}: {row['cpu'] * 100:.1f}% CPU, {row['rps']:.0f} rps",
                    flush=True,
                )
    if args.instructions:
        report_instructions(rows, args)
    else:
        report_cpu(rows, list(planes), args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds first")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--planes", default="envoy,python")
    parser.add_argument("--sidecar-variant", action="append", default=[], metavar="[NAME=]DIR")
    parser.add_argument("--modes", default="off,1%,100%", help="of: " + ",".join(MODES))
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--top", type=int, default=0, metavar="N")
    parser.add_argument("--serve-python", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    parsed.modes = ["off", *(m for m in parsed.modes.split(",") if m and m != "off")]
    if set(parsed.modes) - set(MODES):
        parser.error(f"--modes {parsed.modes}: choose among {', '.join(MODES)}")
    if parsed.serve_python is not None:
        from osm.proxy import server as proxy_server

        proxy_server.install_uvloop()
        asyncio.run(serve_python(parsed.serve_python))
    else:
        asyncio.run(main(parsed))
