"""The whole mesh end to end (root): `osm up`, the bookstore demo, SMI, mTLS on the wire,
rotation, a controller crash, and `osm down` leaving nothing behind — on each data plane.

The module runs three times, once per data plane (`PLANES`): Envoy everywhere (the
default), the Python sidecar everywhere, and mixed (Envoy clients to Python servers and
the reverse). One mesh per run (its own state dir, ports and namespace prefix, so a mesh
the user runs is not touched); tests run in file order and each leaves the demo permissive
with a 50/50 split. Traffic goes only between namespaces this module creates. Outcomes are
read from the demo clients' own counters (fetched inside their pods over loopback).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osm.base import wellknown
from osm.cli import runtime as cli_runtime
from osm.demo.bookstore import counters
from osm.runtime import daemon, network
from tests.e2e import demo, hostutil
from tests.e2e.demo import Mesh, failure_counters, proxy_stats, set_split, unready_pods, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.timeout(240),
]

MANIFESTS = demo.MANIFESTS
PREFIX = f"osme{uuid.uuid4().hex[:5]}"
NAMESPACES = demo.NAMESPACES


PLANES: dict[str, dict[str, str]] = {
    # deployment -> data plane (absent: Envoy, the injector's default)
    "envoy": {},
    "python": {
        name: "python"
        for name in ("bookbuyer", "bookthief", "bookstore-v1", "bookstore-v2", "bookwarehouse")
    },
    "mixed": {"bookthief": "python", "bookstore-v1": "python", "bookwarehouse": "python"},
}
"""Mixed: bookbuyer (Envoy) reaches bookstore-v1 (Python) and v2 (Envoy); bookthief
(Python) reaches both too; the bookstores (one of each) reach bookwarehouse (Python)."""


@pytest.fixture(scope="module", params=sorted(PLANES))
def mesh(request: pytest.FixtureRequest) -> Iterator[Mesh]:
    # Not under pytest's tmp dir (mode 0700): the sidecars (UID 1500) read their bootstrap.
    base = Path(f"/tmp/{PREFIX}")
    base.mkdir(mode=0o755)
    try:
        edit = demo.choose_planes(PLANES[request.param])
        with demo.running(base / "state", PREFIX, request.param, edit) as running:
            yield running
    finally:
        shutil.rmtree(base, ignore_errors=True)


def traffic(mesh: Mesh, seconds: float) -> dict[str, counters.ClientCounters]:
    """Client counters accumulated over ``seconds`` (differences of two samples)."""
    result = demo.counted(mesh.sample, seconds)
    if any(counted.errors for counted in result.values()):
        # Shown with the failure that follows: where the sidecars saw the errors.
        print(f"clients saw errors: {result}\n{failure_counters(mesh)}")
    return result


def set_mesh_config(mesh: Mesh, *, permissive: bool, validity: str = "24h") -> None:
    def edit(objects: list[dict[str, Any]]) -> None:
        spec = objects[-1]["spec"]
        spec["traffic"]["enablePermissiveTrafficPolicyMode"] = permissive
        spec["certificate"]["serviceCertValidityDuration"] = validity

    mesh.apply_file(MANIFESTS / "50-meshconfig.yaml", edit)


# -- tests, in order -------------------------------------------------------------------------
def test_the_demo_comes_up_with_sidecars_cluster_ips_and_endpoints(mesh: Mesh) -> None:
    wait_for(
        lambda: len(cli_runtime.ready_pods(mesh.api.api, NAMESPACES)) == 5,
        60,
        "5 ready demo pods",
        lambda: unready_pods(mesh),
    )
    ready_after = time.monotonic() - mesh.started
    services = mesh.api.items("Service")
    assert all(s["spec"]["clusterIP"].startswith("10.234.") for s in services)
    endpoints = mesh.api.get("Endpoints", "bookstore", "bookstore-v1")
    (subset,) = endpoints["subsets"]
    assert subset["addresses"][0]["ip"].startswith("10.233.")
    assert subset["ports"][0]["port"] == 14001
    log = (mesh.settings.state_dir / "logs" / "runtime.log").read_text()
    starts = [float(s) for s in re.findall(r"started in ([0-9.]+)s", log)]
    print(f"demo pods ready {ready_after:.1f}s after osm up; pod starts: {starts}")
    assert len(starts) == 5


def test_permissive_mode_everyone_reaches_the_bookstore(mesh: Mesh) -> None:
    wait_for(
        lambda: all(c.ok > 0 for c in mesh.sample().clients), 30, "both clients to get answers"
    )
    print(f"traffic flowing {time.monotonic() - mesh.started:.1f}s after osm up")
    seen = traffic(mesh, 3)
    for name in ("bookbuyer", "bookthief"):
        assert seen[name].ok > 0 and seen[name].errors == 0 and seen[name].denied == 0, seen


def test_osm_proxy_get_reads_a_pods_sidecar(mesh: Mesh) -> None:
    from click.testing import CliRunner

    from osm.cli import main as cli_main

    cli_main.register(cli_main.cli)
    pod = mesh.pod("bookbuyer")["metadata"]["name"]
    runner = CliRunner()
    stats = runner.invoke(
        cli_main.cli,
        [
            "--kubeconfig",
            str(mesh.settings.kubeconfig),
            "proxy",
            "get",
            "stats",
            pod,
            "-n",
            "bookbuyer",
        ],
        obj={},
    )
    assert stats.exit_code == 0, stats.output
    assert "cluster.bookstore/bookstore-v1|14001.upstream_rq_total:" in stats.output
    dump = runner.invoke(
        cli_main.cli,
        [
            "--kubeconfig",
            str(mesh.settings.kubeconfig),
            "proxy",
            "get",
            "config_dump",
            pod,
            "-n",
            "bookbuyer",
        ],
        obj={},
    )
    assert dump.exit_code == 0, dump.output
    assert "outbound-listener" in dump.output
    info = runner.invoke(
        cli_main.cli,
        [
            "--kubeconfig",
            str(mesh.settings.kubeconfig),
            "proxy",
            "get",
            "server_info",
            pod,
            "-n",
            "bookbuyer",
        ],
        obj={},
    )
    assert info.exit_code == 0, info.output
    if PLANES[mesh.plane].get("bookbuyer") == "python":
        # Pods run /opt/osm/venv, where setup.py compiled the hot modules (make deps: gcc).
        if not os.environ.get("OSM_PURE_PYTHON"):
            assert "http1" in json.loads(info.output)["compiled_modules"], info.output
    else:
        assert json.loads(info.output)["version"].split("/")[1].startswith("1.40"), info.output


def test_smi_mode_allows_the_buyer_on_its_routes_and_headers_only(mesh: Mesh) -> None:
    set_mesh_config(mesh, permissive=False)
    try:
        wait_for(lambda: traffic(mesh, 1)["bookthief"].ok == 0, 20, "bookthief to be denied")
        seen = traffic(mesh, 3)
        assert seen["bookthief"].ok == 0 and seen["bookthief"].requests > 0
        assert seen["bookbuyer"].ok == seen["bookbuyer"].requests > 0
        # Only the allowed routes: GET / is not in the HTTPRouteGroup.
        assert buyer_get(mesh, "/") in ("403", "404")
        # A route allowed only with a header: GET /ready with x-e2e: yes.
        mesh.api.apply(HEADER_POLICY)
        try:
            wait_for(
                lambda: buyer_get(mesh, "/ready", "x-e2e: yes") == "200",
                20,
                "the header route to be allowed",
            )
            assert buyer_get(mesh, "/ready") in ("403", "404")
            assert buyer_get(mesh, "/ready", "x-e2e: no") in ("403", "404")
        finally:
            mesh.api.delete(HEADER_POLICY)
    finally:
        set_mesh_config(mesh, permissive=True)


HEADER_POLICY: list[dict[str, Any]] = [
    {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "e2e-header-routes", "namespace": "bookstore"},
        "spec": {
            "matches": [
                {
                    "name": "ready-with-header",
                    "pathRegex": "/ready",
                    "methods": ["GET"],
                    "headers": {"x-e2e": "yes"},
                }
            ]
        },
    },
    {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": "e2e-header-access", "namespace": "bookstore"},
        "spec": {
            "destination": {
                "kind": "ServiceAccount",
                "name": "bookstore",
                "namespace": "bookstore",
            },
            "rules": [
                {
                    "kind": "HTTPRouteGroup",
                    "name": "e2e-header-routes",
                    "matches": ["ready-with-header"],
                }
            ],
            "sources": [{"kind": "ServiceAccount", "name": "bookbuyer", "namespace": "bookbuyer"}],
        },
    },
]


def buyer_get(mesh: Mesh, path: str, header: str = "") -> str:
    """The HTTP status of GET bookstore.bookstore:14001<path> from bookbuyer's pod."""
    buyer = mesh.pod("bookbuyer")
    netns = buyer["metadata"]["annotations"][wellknown.NETNS_ANNOTATION]
    argv = ["ip", "netns", "exec", netns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"]
    argv += ["-m", "3", *(["-H", header] if header else [])]
    return hostutil.output(*argv, f"http://bookstore.bookstore:14001{path}")


def test_traffic_split_follows_weights_live(mesh: Mesh) -> None:
    try:
        for v1, v2 in ((100, 0), (50, 50), (0, 100)):
            set_split(mesh, v1, v2)
            time.sleep(1.0)  # let the new routes reach the sidecars
            seen = traffic(mesh, 4)["bookbuyer"]
            total = seen.by_identity.get("bookstore-v1", 0) + seen.by_identity.get(
                "bookstore-v2", 0
            )
            assert total >= 10, seen
            share = seen.by_identity.get("bookstore-v1", 0) / total
            expected = v1 / 100
            tolerance = 4 * (expected * (1 - expected) / total) ** 0.5 + 0.02
            assert abs(share - expected) <= tolerance, (v1, v2, seen.by_identity)
    finally:
        set_split(mesh, 50, 50)


def test_traffic_between_pods_is_tls_on_the_wire(mesh: Mesh) -> None:
    netns = network.mesh_netns(PREFIX)
    capture = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "timeout",
            "3",
            "tcpdump",
            "-i",
            "osmbr0",
            "-A",
            "-n",
            "-s",
            "0",
            # The kubelet's probes are plain HTTP to the sidecar's probe ports, as on
            # Kubernetes; everything else between pods must be TLS.
            f"tcp and not portrange {wellknown.LIVENESS_PROBE_PORT}-{wellknown.HEALTHCHECK_PORT}",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    text = capture.stdout.decode("latin-1")
    assert "14001" in text or len(text) > 1000, "the capture saw no traffic"
    plaintext = re.findall(r"(GET|POST) /[^ ]* HTTP/1\.1", text)
    assert plaintext == [], plaintext[:3]


def test_certificates_rotate_under_traffic_without_failures(mesh: Mesh) -> None:
    set_mesh_config(mesh, permissive=True, validity="1m")
    try:
        seen = traffic(mesh, 50)  # renewal at half-life: every leaf rotates at least once
        for name in ("bookbuyer", "bookthief"):
            assert seen[name].errors == 0 and seen[name].ok > 100, seen
    finally:
        set_mesh_config(mesh, permissive=True)


def test_every_proxy_accepted_every_configuration_it_was_sent(mesh: Mesh) -> None:
    """After permissive, SMI, splits and rotations: no NACK reached the controller, and
    no Envoy counted a rejected update (a rejection is a failure, not a warning)."""
    proxies = mesh.api.proxies()
    assert len(proxies) >= 5, proxies
    assert [p for p in proxies if p.get("last_nack")] == []
    for namespace in NAMESPACES:
        for pod in mesh.api.items("Pod", namespace):
            containers = [c["name"] for c in pod["spec"]["containers"]]
            if "envoy" not in containers:
                continue
            stats = proxy_stats(mesh, namespace, pod["metadata"]["name"])
            rejected = {k: v for k, v in stats.items() if k.endswith("update_rejected")}
            assert rejected, "Envoy reports its xDS update counters"
            assert set(rejected.values()) == {"0"}, rejected


def test_the_controller_killed_and_restarted_under_traffic_drops_nothing(mesh: Mesh) -> None:
    before = {c.identity: c for c in mesh.sample().clients}
    controller = daemon.controller(mesh.settings.state_dir)
    pid = controller.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(3)  # sidecars keep their last configuration
    daemon.up(mesh.settings)
    time.sleep(3)
    after = {c.identity: c for c in mesh.sample().clients}
    for name in ("bookbuyer", "bookthief"):
        assert after[name].errors == before[name].errors
        assert after[name].ok > before[name].ok + 20


def test_osm_down_leaves_nothing_behind(mesh: Mesh) -> None:
    pids = [
        daemon.runtime(mesh.settings.state_dir).pid(),
        daemon.controller(mesh.settings.state_dir).pid(),
    ]
    daemon.down(mesh.settings.state_dir)
    assert demo.left_behind(PREFIX) == {"netns": [], "etc": []}
    assert daemon.down(mesh.settings.state_dir) == []  # idempotent
    for pid in pids:
        assert pid is None or not Path(f"/proc/{pid}").exists()
    leftovers = [
        line for line in hostutil.output("ps", "-eo", "pid,args").splitlines() if PREFIX in line
    ]
    assert leftovers == []
    with contextlib.suppress(OSError):
        daemon.up(mesh.settings)  # the module fixture's down must find a mesh to stop
