"""Local mode's plumbing end to end (root): pods on the mesh bridge, processes in them,
interception by OSM's rules, the controller relay, and teardown, also after a crash.

Safety: traffic goes only to addresses inside namespaces these tests create, or to
loopback. Every test snapshots the host's namespace state (links, routes, iptables,
ip_forward) before and after and fails if anything changed; every namespace is named
with this run's unique prefix and removed by teardown, even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from osm.base import wellknown
from osm.interception import apply, rules
from osm.model.core import Container, Probe
from osm.runtime import network, process, record
from osm.runtime.network import HostEntry, MeshNetwork, MeshNetworkConfig
from osm.runtime.process import ContainerProcess, ProbeTarget, ProcessSpec
from osm.runtime.relay import NamespaceRelay
from tests.e2e import demo, hostutil

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.timeout(120),
]

PREFIX = f"osmt{uuid.uuid4().hex[:6]}"
PYTHON = "/usr/bin/python3"  # readable by every user, unlike a venv under /root
REPO = Path(__file__).resolve().parents[2]
SERVER_IP = ipaddress.IPv4Address("10.233.0.2")
CLIENT_IP = ipaddress.IPv4Address("10.233.0.3")

SERVER = textwrap.dedent(
    """
    import http.server, threading
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello from port {self.server.server_address[1]} to {self.client_address[0]}"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *args):
            pass
    servers = [http.server.ThreadingHTTPServer(("0.0.0.0", p), Handler) for p in (8080, 8081)]
    threading.Thread(target=servers[1].serve_forever, daemon=True).start()
    print("serving", flush=True)
    servers[0].serve_forever()
    """
)

# A stand-in for the sidecar's outbound listener: reads SO_ORIGINAL_DST and connects there.
RELAY = textwrap.dedent(
    """
    import os, socket, struct, threading
    SO_ORIGINAL_DST = 80
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 15001))
    listener.listen()
    print(f"relay uid {os.getuid()}", flush=True)
    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    def handle(client):
        raw = client.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        (port,) = struct.unpack("!H", raw[2:4])
        ip = socket.inet_ntoa(raw[4:8])
        if (ip, port) == (client.getsockname()[0], 15001):
            client.close()  # a probe of the relay itself, not intercepted traffic
            return
        print(f"ORIGINAL_DST {ip}:{port}", flush=True)
        upstream = socket.create_connection((ip, port), timeout=5)
        back = threading.Thread(target=pipe, args=(upstream, client))
        back.start()
        pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=handle, args=(connection,), daemon=True).start()
    """
)

CLIENT = textwrap.dedent(
    """
    import sys, urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    print(opener.open(sys.argv[1], timeout=5).read().decode())
    """
)


# -- host safety ---------------------------------------------------------------------------
def host_snapshot() -> dict[str, str]:
    """The host (root namespace) state the tests must not change."""
    iptables = hostutil.host_iptables()
    ip6tables = "\n".join(
        line for line in hostutil.output("ip6tables-save").splitlines() if not line.startswith("#")
    )
    return {
        "links": "\n".join(
            line.split(": ")[1] for line in hostutil.output("ip", "-o", "link").splitlines()
        ),
        "addresses": re.sub(
            r"(valid|preferred)_lft \S+", "", hostutil.output("ip", "-o", "addr", "show")
        ),
        "routes": hostutil.output("ip", "route", "show", "table", "all"),
        "routes6": hostutil.output("ip", "-6", "route", "show", "table", "all"),
        "rules": hostutil.output("ip", "rule"),
        "iptables": iptables,
        "ip6tables": ip6tables,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


@pytest.fixture(autouse=True, scope="module")
def sweep_this_runs_leftovers() -> Iterator[None]:
    """Last resort, should a test's own cleanup be broken: every namespace and hosts
    directory named with this run's random prefix was made by this run; remove them."""
    yield
    for netns in demo.left_behind(PREFIX)["netns"]:
        for pid in hostutil.output("ip", "netns", "pids", netns).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)
    for name in demo.left_behind(PREFIX)["etc"]:
        shutil.rmtree(record.ETC_NETNS / name, ignore_errors=True)


@pytest.fixture(autouse=True)
def host_unchanged() -> Iterator[None]:
    before = host_snapshot()
    yield
    assert host_snapshot() == before
    assert demo.left_behind(PREFIX) == {"netns": [], "etc": []}


# -- fixtures --------------------------------------------------------------------------------
@dataclass
class Mesh:
    journal: record.Journal
    network: MeshNetwork
    state_dir: Path
    processes: list[ContainerProcess]

    def pod(self, name: str, ip: ipaddress.IPv4Address, hosts: list[HostEntry]) -> str:
        netns = f"{self.network.config.netns[: -len('-mesh')]}-{name}"
        self.network.add_pod(netns, ip, hosts)
        return netns

    async def start(
        self,
        netns: str,
        name: str,
        script: str,
        *,
        uid: int = process.APP_UID,
        gid: int = process.APP_GID,
        probe: Probe | None = None,
        pod_ip: str = "",
    ) -> ContainerProcess:
        container = Container(name, command=(PYTHON, "-c", script))
        spec = ProcessSpec(
            name=name,
            netns=netns,
            argv=container.command,
            env={"PATH": process.DEFAULT_PATH, "HOME": "/", "LANG": "C.UTF-8"},
            log=process.log_path(self.state_dir, "default", netns, name),
            uid=uid,
            gid=gid,
            readiness=probe,
            probe_target=ProbeTarget(netns, pod_ip, container) if probe else None,
        )
        running = ContainerProcess(spec, self.journal)
        self.processes.append(running)
        await running.start()
        return running


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    state_dir = tmp_path / "state"
    journal = record.Journal.open(state_dir)
    config = MeshNetworkConfig(netns=f"{PREFIX}-{uuid.uuid4().hex[:4]}-mesh")
    created = Mesh(journal, MeshNetwork(config, journal), state_dir, [])
    try:
        created.network.create()
        yield created
    finally:
        for running in created.processes:
            await running.stop(grace=1.0)
        report = record.teardown(state_dir, journal=journal)
        journal.close()
        assert report.ok, report.failed


def web_hosts() -> list[HostEntry]:
    return [HostEntry(str(SERVER_IP), network.service_hostnames("web", "default"))]


async def fetch(netns: str, url: str) -> str:
    """GETs ``url`` from inside ``netns`` as an unprivileged user; the body."""
    argv = process.pod_command(netns, [PYTHON, "-c", CLIENT, url], uid=65534, gid=65534)
    result = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=20, cwd="/", check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def wait_ready(running: ContainerProcess, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not running.ready:
        assert time.monotonic() < deadline, running.spec.log.read_text()
        await asyncio.sleep(0.05)


HTTP_READY = Probe("httpGet", port=8080, path="/healthz", period_seconds=1)


# -- tests -------------------------------------------------------------------------------------
async def test_pods_reach_each_other_by_ip_and_by_hosts_name(mesh: Mesh) -> None:
    started = time.perf_counter()
    server = mesh.pod("server", SERVER_IP, [])
    setup = time.perf_counter() - started
    client = mesh.pod("client", CLIENT_IP, web_hosts())
    print(f"pod namespace + veth + addresses + hosts: {setup * 1000:.1f} ms")
    app = await mesh.start(server, "web", SERVER, probe=HTTP_READY, pod_ip=str(SERVER_IP))
    await wait_ready(app)
    assert (
        await fetch(client, f"http://{SERVER_IP}:8080/") == f"hello from port 8080 to {CLIENT_IP}"
    )
    for name in network.service_hostnames("web", "default"):
        assert await fetch(client, f"http://{name}:8081/") == f"hello from port 8081 to {CLIENT_IP}"
    log = app.spec.log.read_text()
    assert "serving" in log


async def test_interception_sends_the_clients_traffic_through_the_relay(mesh: Mesh) -> None:
    server = mesh.pod("server", SERVER_IP, [])
    client = mesh.pod("client", CLIENT_IP, web_hosts())
    config = rules.config_for_pod(
        {wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION: "8081"}, excluded_addresses=[]
    )
    apply.apply_rules(client, rules.render(config))
    app = await mesh.start(server, "web", SERVER, probe=HTTP_READY, pod_ip=str(SERVER_IP))
    relay = await mesh.start(
        client,
        "relay",
        RELAY,
        uid=wellknown.PROXY_UID,
        gid=wellknown.PROXY_UID,
        probe=Probe("tcpSocket", port=wellknown.PROXY_OUTBOUND_PORT, period_seconds=1),
        pod_ip=str(CLIENT_IP),
    )
    await wait_ready(app)
    await wait_ready(relay)

    # Intercepted: the relay sees the original destination and the request succeeds.
    body = await fetch(client, f"http://{SERVER_IP}:8080/")
    assert body == f"hello from port 8080 to {CLIENT_IP}"
    body = await fetch(client, "http://web.default.svc.cluster.local:8080/x")
    assert body == f"hello from port 8080 to {CLIENT_IP}"
    relay_log = relay.spec.log.read_text()
    assert f"relay uid {wellknown.PROXY_UID}" in relay_log
    assert relay_log.count(f"ORIGINAL_DST {SERVER_IP}:8080") == 2

    # Excluded port: straight to the server, the relay sees nothing.
    body = await fetch(client, f"http://{SERVER_IP}:8081/")
    assert body == f"hello from port 8081 to {CLIENT_IP}"
    assert f"{SERVER_IP}:8081" not in relay.spec.log.read_text()
    assert "OSM_PROXY_OUTBOUND" in apply.saved_rules(client)


async def test_the_controller_is_reachable_from_pods_only_through_the_relay(mesh: Mesh) -> None:
    client = mesh.pod("client", CLIENT_IP, [])

    async def controller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        writer.write(b"HTTP/1.0 200 OK\r\n\r\ncontroller saw " + request.split()[1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(controller, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gateway = str(mesh.network.config.gateway)
    relay = NamespaceRelay(mesh.network.config.netns, gateway, 15128, ("127.0.0.1", port))
    await relay.start()
    try:
        assert await fetch(client, f"http://{gateway}:15128/xds") == "controller saw /xds"
    finally:
        await relay.close()
        server.close()
        await server.wait_closed()


async def test_a_container_that_exits_is_restarted_and_logged(mesh: Mesh) -> None:
    pod = mesh.pod("crashy", SERVER_IP, [])
    crashy = await mesh.start(pod, "crashy", "print('run', flush=True); raise SystemExit(3)")
    crashy.backoff = process.Backoff(initial=0.05, maximum=0.2)
    deadline = time.monotonic() + 15
    while crashy.restarts < 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await crashy.stop(grace=1.0)
    log = crashy.spec.log.read_text()
    assert log.count("run\n") >= 3
    assert "exited with 3" in log
    assert crashy.last_exit_code == 3
    assert mesh.journal.live(record.PROCESS) == []


async def test_exec_readiness_probes_follow_their_exit_status(mesh: Mesh) -> None:
    pod = mesh.pod("probed", SERVER_IP, [])
    idle = "import time; time.sleep(300)"
    good = await mesh.start(
        pod, "good", idle, probe=Probe("exec", command=("true",), period_seconds=1)
    )
    bad = await mesh.start(
        pod, "bad", idle, probe=Probe("exec", command=("false",), period_seconds=1)
    )
    await wait_ready(good)
    await asyncio.sleep(1.5)
    assert good.ready and not bad.ready
    assert bad.pid is not None  # unready, but running


def test_the_sidecar_user_cannot_run_what_it_cannot_read(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "app.py").write_text("print('hi')\n")
    problem = process.access_problem(
        [PYTHON, str(private / "app.py")], uid=wellknown.PROXY_UID, gid=wellknown.PROXY_UID
    )
    assert problem is not None
    assert "cannot run as uid 1500" in problem and "outside /root" in problem
    assert process.access_problem([PYTHON, "-c", "pass"], uid=wellknown.PROXY_UID, gid=1500) is None


def test_teardown_leaves_nothing_and_is_idempotent(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    stranger = f"{PREFIX}-stranger"
    sleeper: subprocess.Popen[bytes] | None = None
    try:
        with record.Journal.open(state_dir) as journal:
            config = MeshNetworkConfig(netns=f"{PREFIX}-td-mesh")
            net = MeshNetwork(config, journal)
            net.create()
            pod = f"{PREFIX}-td-a"
            net.add_pod(pod, SERVER_IP, web_hosts())
            net.add_pod(f"{PREFIX}-td-b", CLIENT_IP, [])
            sleeper = subprocess.Popen(
                process.pod_command(pod, ["sleep", "300"], uid=65534, gid=65534),
                start_new_session=True,
            )
            record.record_process(journal, sleeper.pid, netns=pod, name="sleep")
            assert len(demo.left_behind(PREFIX)["netns"]) == 3
            # Removing one pod takes its namespace, veth and hosts directory, nothing else.
            net.remove_pod(f"{PREFIX}-td-b")
            net.remove_pod(f"{PREFIX}-td-b")
            assert demo.left_behind(PREFIX) == {"netns": sorted([config.netns, pod]), "etc": [pod]}
            links = hostutil.output("ip", "-n", config.netns, "-o", "link")
            assert network.veth_name(pod) in links
            assert network.veth_name(f"{PREFIX}-td-b") not in links
        # A namespace with our prefix that the runtime did not create is left alone.
        subprocess.run(["ip", "netns", "add", stranger], check=True, timeout=10)
        report = record.teardown(state_dir)
        assert report.ok, report.failed
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert demo.left_behind(PREFIX) == {"netns": [stranger], "etc": []}
        assert record.teardown(state_dir).removed == []
    finally:
        subprocess.run(["ip", "netns", "delete", stranger], check=False, timeout=10)
        record.teardown(state_dir)
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait(timeout=10)


CRASHING_RUNTIME = textwrap.dedent(
    """
    import ipaddress, subprocess, sys, time
    from pathlib import Path
    from osm.runtime import network, process, record
    state_dir, prefix = Path(sys.argv[1]), sys.argv[2]
    journal = record.Journal.open(state_dir)
    net = network.MeshNetwork(network.MeshNetworkConfig(netns=prefix + "-crash-mesh"), journal)
    net.create()
    pod = prefix + "-crash-pod"
    net.add_pod(pod, ipaddress.IPv4Address("10.233.0.2"), [])
    child = subprocess.Popen(
        process.pod_command(pod, ["sleep", "300"], uid=65534, gid=65534), start_new_session=True
    )
    record.record_process(journal, child.pid, netns=pod, name="sleep")
    print(child.pid, flush=True)
    time.sleep(300)
    """
)


def test_teardown_after_the_runtime_was_killed(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    runtime = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUNTIME, str(state_dir), PREFIX],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert runtime.stdout is not None
        sleeper_pid = int(runtime.stdout.readline())
        runtime.send_signal(signal.SIGKILL)
        runtime.wait(timeout=10)
        assert sorted(demo.left_behind(PREFIX)["netns"]) == [
            f"{PREFIX}-crash-mesh",
            f"{PREFIX}-crash-pod",
        ]
        assert alive(sleeper_pid)  # orphaned, still running
    finally:
        runtime.kill()
        runtime.wait(timeout=10)
        if runtime.stdout is not None:
            runtime.stdout.close()
        report = record.teardown(state_dir)
    assert report.ok, report.failed
    assert any(item.startswith("process") for item in report.removed)
    deadline = time.monotonic() + 5
    while alive(sleeper_pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running (not gone, and not a zombie waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
