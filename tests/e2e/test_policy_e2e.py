"""OSM's policy kinds end to end (root), on each data plane: Egress, IngressBackend,
Retry and UpstreamTrafficSetting (rate limit, circuit breaker).

One mesh (`osm up`, its own state dir, ports and prefix) in SMI mode (permissive off),
with ``enableEgress`` off and ``featureFlags.enableRetryPolicy`` on, runs the same
workload in a namespace per data plane (`PLANES`): a ``server`` (`policy_app` behind
Service ``server``: ``/flaky`` fails every other request with 503, ``/slow`` answers
after a second; and behind Service ``limited``, on a port of its own, which only the rate
limit scenario calls) and a ``client`` that a TrafficTarget lets call it on every route,
whose pod names the test host ``outside.test`` (``hostAliases``). Two hosts outside the mesh
(`outside.OutsideHost`: network namespaces on the mesh bridge, no sidecar) take part:
``outside`` serves HTTP (`HTTP_PORT`, and `OTHER_HTTP_PORT` which no Egress names),
HTTPS with its own certificate for ``outside.test`` and a TCP echo; ``stranger`` only
makes requests.

Calls are one-shot `policy_app` clients run in the calling pod's network namespace as
root, so intercepted as the pod's own traffic. A denial is only asserted after the same
client reached the meshed server (its sidecar has its configuration) and is checked
where it counts: the outside host never saw the request. Each scenario adds its policy,
waits for the allowed outcome, asserts it, checks that no proxy rejected an update, and
removes the policy. A Python sidecar case for a kind the sidecar does not implement is
an expected failure with the reason (`PYTHON_GAPS`), never a skip.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osm.base import wellknown
from osm.cli import runtime as cli_runtime
from osm.model import manifest
from osm.runtime import daemon, network
from tests.e2e import hostutil, policy_app
from tests.e2e.meshapi import MeshApi
from tests.e2e.outside import OutsideHost

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.timeout(240),
]

REPO = Path(__file__).resolve().parents[2]
APP = Path(policy_app.__file__).resolve()
MESH_CONFIG = REPO / "demo" / "bookstore" / "manifests" / "50-meshconfig.yaml"
PREFIX = f"osmq{uuid.uuid4().hex[:5]}"
PLANES = {"envoy": "policy-envoy", "python": "policy-python"}
"""Data plane -> the namespace whose pods get it."""
SERVER_PORT = 14021
LIMITED_PORT = 14022
"""The server's second port, Service ``limited``: only the rate limit scenario calls it."""
OUTSIDE_NAME = "outside.test"
OUTSIDE_IP = ipaddress.IPv4Address("10.233.250.10")
STRANGER_IP = ipaddress.IPv4Address("10.233.250.11")
"""Far above the pods' addresses (the runtime's pool hands out the lowest free one)."""
HTTP_PORT, OTHER_HTTP_PORT, HTTPS_PORT, ECHO_PORT = 80, 8080, 443, 7000
SETTLE = 25.0
"""How long a new policy may take to reach the sidecars and show its effect."""

PYTHON_GAPS: dict[str, str] = {}
"""Scenario -> why the Python sidecar fails it (an expected failure on that plane; strict,
so the marker goes once the sidecar passes)."""


def on_planes(scenario: str) -> list[Any]:
    """The data planes a scenario runs on; the Python case is xfail where it has a gap."""
    python = pytest.param("python", id="python")
    if scenario in PYTHON_GAPS:
        reason = PYTHON_GAPS[scenario]
        python = pytest.param(
            "python", id="python", marks=pytest.mark.xfail(reason=reason, strict=True)
        )
    return [pytest.param("envoy", id="envoy"), python]


def workload(namespace: str, plane: str) -> list[dict[str, Any]]:
    """The namespace, enrolled with its data plane, and its server, client and access."""
    annotations = {wellknown.SIDECAR_INJECTION_ANNOTATION: "enabled"}
    if plane != "envoy":
        annotations[wellknown.DATA_PLANE_ANNOTATION] = plane
    app = APP.read_text()
    serve = ["python3", "-c", app, "serve", "--name", f"{namespace}/server"]
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {wellknown.MONITORED_BY_LABEL: "osm"},
                "annotations": annotations,
            },
        },
        *(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(namespace, name)}
            for name in ("server", "client")
        ),
        *(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(namespace, name),
                "spec": {
                    "selector": {"app": "server"},
                    "ports": [
                        {"name": "http", "port": port, "targetPort": port, "appProtocol": "http"}
                    ],
                },
            }
            for name, port in (("server", SERVER_PORT), ("limited", LIMITED_PORT))
        ),
        deployment(
            namespace,
            "server",
            {
                "name": "app",
                "command": [*serve, "--http", str(SERVER_PORT), "--http", str(LIMITED_PORT)],
                "ports": [
                    {"name": "http", "containerPort": SERVER_PORT},
                    {"name": "limited", "containerPort": LIMITED_PORT},
                ],
                "readinessProbe": {"tcpSocket": {"port": SERVER_PORT}, "periodSeconds": 1},
            },
        ),
        deployment(
            namespace,
            "client",
            {"name": "idle", "command": ["sleep", "infinity"]},
            hostAliases=[{"ip": str(OUTSIDE_IP), "hostnames": [OUTSIDE_NAME]}],
        ),
        {
            "apiVersion": "specs.smi-spec.io/v1alpha4",
            "kind": "HTTPRouteGroup",
            "metadata": meta(namespace, "everything"),
            "spec": {"matches": [{"name": "all", "pathRegex": ".*", "methods": ["*"]}]},
        },
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": meta(namespace, "client-to-server"),
            "spec": {
                "destination": {"kind": "ServiceAccount", "name": "server", "namespace": namespace},
                "rules": [{"kind": "HTTPRouteGroup", "name": "everything", "matches": ["all"]}],
                "sources": [{"kind": "ServiceAccount", "name": "client", "namespace": namespace}],
            },
        },
    ]


def meta(namespace: str, name: str) -> dict[str, str]:
    return {"name": name, "namespace": namespace}


def deployment(namespace: str, name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(namespace, name),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"serviceAccountName": name, "containers": [container], **spec},
            },
        },
    }


# -- the policies ----------------------------------------------------------------------------
POLICY = "policy.openservicemesh.io/v1alpha1"


def client_source(namespace: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": "client", "namespace": namespace}


def egresses(namespace: str) -> list[dict[str, Any]]:
    """HTTP to outside.test:80 by host, HTTPS to outside.test:443 by SNI, TCP to the
    outside host's address on the echo port. Not `OTHER_HTTP_PORT`."""

    def egress(name: str, **spec: Any) -> dict[str, Any]:
        spec = {"sources": [client_source(namespace)], **spec}
        return {
            "apiVersion": POLICY,
            "kind": "Egress",
            "metadata": meta(namespace, name),
            "spec": spec,
        }

    return [
        egress(
            "outside-http",
            hosts=[OUTSIDE_NAME],
            ports=[{"number": HTTP_PORT, "protocol": "http"}],
        ),
        egress(
            "outside-https",
            hosts=[OUTSIDE_NAME],
            ports=[{"number": HTTPS_PORT, "protocol": "https"}],
        ),
        egress(
            "outside-tcp",
            ipAddresses=[f"{OUTSIDE_IP}/32"],
            ports=[{"number": ECHO_PORT, "protocol": "tcp"}],
        ),
    ]


def ingress_backend(namespace: str, source: ipaddress.IPv4Address) -> dict[str, Any]:
    return {
        "apiVersion": POLICY,
        "kind": "IngressBackend",
        "metadata": meta(namespace, "server-from-outside"),
        "spec": {
            "backends": [{"name": "server", "port": {"number": SERVER_PORT, "protocol": "http"}}],
            "sources": [{"kind": "IPRange", "name": f"{source}/32"}],
        },
    }


def retry(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": POLICY,
        "kind": "Retry",
        "metadata": meta(namespace, "client-retries"),
        "spec": {
            "source": client_source(namespace),
            "destinations": [{"kind": "Service", "name": "server", "namespace": namespace}],
            "retryPolicy": {
                "retryOn": "5xx",
                "perTryTimeout": "2s",
                "numRetries": 5,
                "retryBackoffBaseInterval": "10ms",
            },
        },
    }


RATE = 5
"""Requests per second the rate limit allows (no burst)."""
LIMITED_HEADER = ("x-e2e-limited", "yes")


def upstream_setting(namespace: str, name: str, service: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": POLICY,
        "kind": "UpstreamTrafficSetting",
        "metadata": meta(namespace, name),
        "spec": {"host": f"{service}.{namespace}.svc.cluster.local", **spec},
    }


def rate_limit(namespace: str) -> dict[str, Any]:
    http = {
        "requests": RATE,
        "unit": "second",
        "burst": 0,
        "responseStatusCode": 429,
        "responseHeadersToAdd": [{"name": LIMITED_HEADER[0], "value": LIMITED_HEADER[1]}],
    }
    return upstream_setting(
        namespace, "limited-rate", "limited", rateLimit={"local": {"http": http}}
    )


def circuit_breaker(namespace: str) -> dict[str, Any]:
    connections = {"tcp": {"maxConnections": 1}, "http": {"maxPendingRequests": 1}}
    return upstream_setting(namespace, "server-breaker", "server", connectionSettings=connections)


# -- the mesh --------------------------------------------------------------------------------
@dataclass
class Mesh:
    settings: daemon.MeshSettings
    api: MeshApi
    outside: OutsideHost
    stranger: OutsideHost

    def pod(self, plane: str, deployment: str) -> dict[str, Any]:
        for pod in self.api.items("Pod", PLANES[plane]):
            if pod["metadata"]["labels"].get("app") == deployment:
                return dict(pod)
        raise AssertionError(f"no {deployment} pod in {PLANES[plane]}")

    def netns(self, plane: str, deployment: str) -> str:
        annotations = self.pod(plane, deployment)["metadata"]["annotations"]
        return str(annotations[wellknown.NETNS_ANNOTATION])

    def client(self, plane: str, *argv: str, timeout: float = 30) -> dict[str, Any]:
        """A `policy_app` client run in the plane's client pod: its JSON outcome."""
        command = ["ip", "netns", "exec", self.netns(plane, "client"), sys.executable, str(APP)]
        return app_outcome([*command, *argv], timeout)

    def from_host(self, host: OutsideHost, *argv: str) -> dict[str, Any]:
        """A `policy_app` client run on a host outside the mesh."""
        command = ["ip", "netns", "exec", host.netns, sys.executable, str(APP)]
        return app_outcome([*command, *argv], 30)

    def server_url(self, plane: str, path: str) -> str:
        return f"http://server.{PLANES[plane]}:{SERVER_PORT}{path}"

    def pod_url(self, plane: str, path: str) -> str:
        return f"http://{self.pod(plane, 'server')['status']['podIP']}:{SERVER_PORT}{path}"


def app_outcome(command: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.stdout, f"{command[-3:]}: no outcome (exit {done.returncode}): {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def unready_pods(mesh: Mesh, tail: int = 15) -> str:
    lines: list[str] = []
    namespaces = list(PLANES.values())
    ready = {p["metadata"]["name"] for p in cli_runtime.ready_pods(mesh.api.api, namespaces)}
    logs = mesh.settings.state_dir / "logs"
    for namespace in namespaces:
        for pod in mesh.api.items("Pod", namespace):
            name = pod["metadata"]["name"]
            if name not in ready:
                lines.append(f"pod {namespace}/{name} not ready: {pod.get('status')}")
                for log in sorted((logs / namespace / name).glob("*.log")):
                    lines += [f"--- {log.name}", *log.read_text().splitlines()[-tail:]]
    runtime_log = logs / "runtime.log"
    if runtime_log.exists():
        lines += ["--- runtime.log", *runtime_log.read_text().splitlines()[-tail:]]
    return "\n".join(lines)


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, explain: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}\n{explain()}")
        time.sleep(0.3)


def eventually(call: Callable[[], Any], expected: Callable[[Any], bool], timeout: float) -> Any:
    """The first outcome of ``call`` that is ``expected``, or the last one at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = call()
        if expected(outcome) or time.monotonic() >= deadline:
            return outcome
        time.sleep(0.5)


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    # Not under pytest's tmp dir (mode 0700): the sidecars (UID 1500) read their bootstrap.
    base = Path(f"/tmp/{PREFIX}")
    base.mkdir(mode=0o755)
    settings = daemon.MeshSettings(
        base / "state",
        hostutil.free_port(),
        hostutil.free_port(),
        PREFIX,
        http_port=hostutil.free_port(),
    )
    bridge = network.MeshNetworkConfig(netns=network.mesh_netns(PREFIX))
    outside = OutsideHost(
        bridge,
        PREFIX,
        "outside",
        OUTSIDE_IP,
        http_ports=(HTTP_PORT, OTHER_HTTP_PORT),
        https_port=HTTPS_PORT,
        echo_port=ECHO_PORT,
        tls_name=OUTSIDE_NAME,
        workdir=base,
    )
    stranger = OutsideHost(bridge, PREFIX, "stranger", STRANGER_IP)
    iptables_before = hostutil.host_iptables()
    started = time.monotonic()
    api: MeshApi | None = None
    try:
        daemon.up(settings, progress=print)
        api = MeshApi(settings)
        print(f"osm up took {time.monotonic() - started:.1f}s")
        outside.start()
        stranger.start()
        running = Mesh(settings, api, outside, stranger)
        loaded = manifest.load_paths([str(MESH_CONFIG)])
        assert not loaded.errors, loaded.errors
        config = [r.to_dict() for r in loaded.resources]
        spec = config[-1]["spec"]
        spec["traffic"]["enablePermissiveTrafficPolicyMode"] = False
        spec["traffic"]["enableEgress"] = False
        spec.setdefault("featureFlags", {})["enableRetryPolicy"] = True
        api.apply(config)
        api.apply([obj for plane, ns in PLANES.items() for obj in workload(ns, plane)])
        applied = time.monotonic()
        wait_for(
            lambda: len(cli_runtime.ready_pods(api.api, list(PLANES.values()))) == 2 * len(PLANES),
            60,
            "every pod to be ready",
            lambda: unready_pods(running),
        )
        print(f"pods ready {time.monotonic() - applied:.1f}s after apply")
        taken = {
            str(p["status"].get("podIP")) for ns in PLANES.values() for p in api.items("Pod", ns)
        }
        assert not taken & {str(OUTSIDE_IP), str(STRANGER_IP)}, taken
        yield running
    finally:
        outside.stop()
        stranger.stop()
        if api is not None:
            api.close()
        daemon.down(settings.state_dir)
        for netns in hostutil.netns_named(PREFIX):  # last resort, should teardown be broken
            subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)
        shutil.rmtree(base, ignore_errors=True)
        print(f"the module's mesh ran {time.monotonic() - started:.1f}s")
    assert hostutil.netns_named(PREFIX) == []
    assert hostutil.host_iptables() == iptables_before


@pytest.fixture(scope="module")
def reached(mesh: Mesh) -> Mesh:
    """The mesh once each plane's client has reached its server through the sidecars."""
    for plane in PLANES:
        seen = eventually(
            functools.partial(mesh.client, plane, "call", mesh.server_url(plane, "/hello")),
            lambda seen: seen.get("status") == 200,
            30,
        )
        assert seen.get("status") == 200, f"{plane}: {seen}\n{unreached(mesh, plane)}"
        assert json.loads(seen["body"])["server"] == f"{PLANES[plane]}/server", seen
    return mesh


def unreached(mesh: Mesh, plane: str, tail: int = 20) -> str:
    """Why a client may not reach its server: the pods, the client sidecar's counters
    for the server's cluster, the last lines of both pods' logs and the controller's."""
    namespace = PLANES[plane]
    lines = [
        f"pod {p['metadata']['name']}: {p.get('status')}" for p in mesh.api.items("Pod", namespace)
    ]
    lines += [f"endpoints: {mesh.api.get('Endpoints', namespace, 'server').get('subsets')}"]
    netns = mesh.netns(plane, "client")
    stats = subprocess.run(
        ["ip", "netns", "exec", netns, "curl", "-s", "-m", "3", "127.0.0.1:15000/stats"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    lines += [
        line
        for line in stats.splitlines()
        if f"{namespace}/server" in line and not line.endswith(": 0")
    ]
    logs = mesh.settings.state_dir / "logs"
    for log in [*sorted((logs / namespace).glob("*/*.log")), logs / "controller.log"]:
        lines += [f"--- {log}", *log.read_text(errors="replace").splitlines()[-tail:]]
    return "\n".join(lines)


# -- proxies' acceptance ---------------------------------------------------------------------
Rejections = dict[str, object]


def rejections(mesh: Mesh, plane: str) -> Rejections:
    """Per proxy of the plane: the controller's last NACK from it and, for Envoy, the
    sum of its ``update_rejected`` counters."""
    seen: Rejections = {}
    namespace = PLANES[plane]
    for proxy in mesh.api.proxies():
        if str(proxy.get("node_id", "")).endswith(f".{namespace}"):  # <id>.<kind>.<sa>.<ns>
            seen[f"nack {proxy.get('node_id')}"] = proxy.get("last_nack")
    for pod in mesh.api.items("Pod", namespace):
        containers = {c["name"] for c in pod["spec"]["containers"]}
        if wellknown.ENVOY_CONTAINER_NAME in containers:
            stats = envoy_stats(mesh, namespace, pod["metadata"]["name"])
            rejected = {k: v for k, v in stats.items() if k.endswith("update_rejected")}
            assert rejected, "Envoy reports its xDS update counters"
            seen[f"rejected {pod['metadata']['name']}"] = sum(int(v) for v in rejected.values())
    return seen


def assert_no_new_rejections(mesh: Mesh, plane: str, before: Rejections) -> None:
    after = rejections(mesh, plane)
    changed = {k: after.get(k) for k in after if after.get(k) != before.get(k)}
    assert changed == {}, f"a proxy rejected an update: {changed}"


def envoy_stats(mesh: Mesh, namespace: str, pod: str) -> dict[str, str]:
    """What ``osm proxy get stats`` says of a pod's Envoy."""
    from click.testing import CliRunner

    from osm.cli import main as cli_main

    cli_main.register(cli_main.cli)
    argv = ["--kubeconfig", str(mesh.settings.kubeconfig), "proxy", "get", "stats", pod]
    result = CliRunner().invoke(cli_main.cli, [*argv, "-n", namespace], obj={})
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.output.splitlines() if ": " in line)


def config_dump(mesh: Mesh, plane: str, deployment: str) -> str:
    """The sidecar's configuration (for failure messages)."""
    from click.testing import CliRunner

    from osm.cli import main as cli_main

    cli_main.register(cli_main.cli)
    pod = mesh.pod(plane, deployment)["metadata"]["name"]
    argv = ["--kubeconfig", str(mesh.settings.kubeconfig), "proxy", "get", "config_dump", pod]
    result = CliRunner().invoke(cli_main.cli, [*argv, "-n", PLANES[plane]], obj={})
    return str(result.output)


@dataclass
class Applied:
    """Policies applied for one scenario, removed when it ends."""

    mesh: Mesh
    objects: list[dict[str, Any]]

    def __enter__(self) -> Applied:
        self.mesh.api.apply(self.objects)
        return self

    def __exit__(self, *_: object) -> None:
        self.mesh.api.delete(self.objects)


# -- egress ----------------------------------------------------------------------------------
def marker() -> str:
    return uuid.uuid4().hex[:12]


def http_egress(mesh: Mesh, plane: str, port: int) -> tuple[dict[str, Any], bool]:
    """GET http://outside.test:<port>/egress/<marker> from the client: the outcome, and
    whether the outside host saw the request."""
    mark = marker()
    seen = mesh.client(
        plane, "call", f"http://{OUTSIDE_NAME}:{port}/egress/{mark}", "--timeout", "3"
    )
    return seen, mesh.outside.app.saw(mark)


def https_egress(mesh: Mesh, plane: str) -> tuple[dict[str, Any], bool]:
    mark = marker()
    url = f"https://{OUTSIDE_NAME}:{HTTPS_PORT}/egress/{mark}"
    seen = mesh.client(plane, "call", url, "--cafile", str(mesh.outside.cert), "--timeout", "3")
    return seen, mesh.outside.app.saw(mark)


def tcp_egress(mesh: Mesh, plane: str) -> tuple[dict[str, Any], bool]:
    # No newline: the outbound listener inspects only the ports whose egress chains match
    # on HTTP or SNI, so bytes that are no HTTP request line pass at once (an HTTP
    # inspector on this port would hold them until its 15 s timeout, past echo's 3 s).
    mark = marker()
    seen = mesh.client(plane, "echo", str(OUTSIDE_IP), str(ECHO_PORT), mark)
    return seen, mesh.outside.app.saw(mark)


EGRESS_CALLS: dict[str, Callable[[Mesh, str], tuple[dict[str, Any], bool]]] = {
    "http by host": lambda mesh, plane: http_egress(mesh, plane, HTTP_PORT),
    "https by SNI": https_egress,
    "tcp by address and port": tcp_egress,
    "http on a port no Egress names": lambda mesh, plane: http_egress(mesh, plane, OTHER_HTTP_PORT),
}


def answered(outcome: tuple[dict[str, Any], bool]) -> bool:
    """The outside host saw it and the client got its answer."""
    seen, arrived = outcome
    return arrived and (seen.get("status") == 200 or bool(seen.get("received")))


def test_the_outside_host_serves_http_https_and_tcp(reached: Mesh) -> None:
    """From the stranger (outside the mesh too): the fixture's servers work."""
    host = reached.stranger
    http = reached.from_host(host, "call", f"http://{OUTSIDE_IP}:{HTTP_PORT}/direct")
    assert http.get("status") == 200, http
    flaky = [
        reached.from_host(host, "call", f"http://{OUTSIDE_IP}:{HTTP_PORT}/flaky") for _ in range(2)
    ]
    assert sorted(int(f.get("status", 0)) for f in flaky) == [200, 503], flaky
    echo = reached.from_host(host, "echo", str(OUTSIDE_IP), str(ECHO_PORT), "ping")
    assert echo == {"received": "ping", "seconds": echo["seconds"]}, echo
    # HTTPS with the outside host's own certificate, by its name (no hosts entry here:
    # the stranger connects to the address and checks the certificate's name itself).
    done = host.run(
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        str(reached.outside.cert),
        "--resolve",
        f"{OUTSIDE_NAME}:{HTTPS_PORT}:{OUTSIDE_IP}",
        "-m",
        "3",
        f"https://{OUTSIDE_NAME}:{HTTPS_PORT}/direct",
    )
    assert done.stdout == "200", (done.stdout, done.stderr)


@pytest.mark.parametrize("plane", list(PLANES))
def test_a_client_pod_reaches_the_outside_host_when_its_sidecar_is_bypassed(
    reached: Mesh, plane: str
) -> None:
    """As the proxy's UID, which interception lets through: the network path is there,
    so a denial through the sidecar is the sidecar's doing."""
    uid = str(wellknown.PROXY_UID)
    bypass = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    command = ["ip", "netns", "exec", reached.netns(plane, "client"), *bypass, sys.executable]
    mark = marker()
    seen = app_outcome([*command, str(APP), "call", f"http://{OUTSIDE_NAME}/bypass/{mark}"], 30)
    assert seen.get("status") == 200 and reached.outside.app.saw(mark), seen


@pytest.mark.parametrize("plane", list(PLANES))
@pytest.mark.parametrize("call", list(EGRESS_CALLS))
def test_egress_is_denied_without_a_policy(reached: Mesh, plane: str, call: str) -> None:
    seen, arrived = EGRESS_CALLS[call](reached, plane)
    assert not arrived, seen
    assert seen.get("status") != 200 and not seen.get("received"), seen


@pytest.mark.parametrize("plane", on_planes("egress"))
def test_an_egress_allows_its_hosts_and_ports_only(reached: Mesh, plane: str) -> None:
    before = rejections(reached, plane)
    with Applied(reached, egresses(PLANES[plane])):
        for call in ("http by host", "https by SNI", "tcp by address and port"):
            outcome = eventually(
                functools.partial(EGRESS_CALLS[call], reached, plane), answered, SETTLE
            )
            assert answered(outcome), (call, outcome, config_dump(reached, plane, "client")[-3000:])
        seen, arrived = EGRESS_CALLS["http on a port no Egress names"](reached, plane)
        assert not arrived and seen.get("status") != 200, seen
        assert_no_new_rejections(reached, plane, before)


# -- ingress ---------------------------------------------------------------------------------
def ingress_call(mesh: Mesh, host: OutsideHost, plane: str) -> dict[str, Any]:
    return mesh.from_host(
        host, "call", mesh.pod_url(plane, f"/ingress/{marker()}"), "--timeout", "3"
    )


@pytest.mark.parametrize("plane", list(PLANES))
def test_a_host_outside_the_mesh_is_refused_without_an_ingressbackend(
    reached: Mesh, plane: str
) -> None:
    seen = ingress_call(reached, reached.outside, plane)
    assert "error" in seen or seen.get("status") != 200, seen


@pytest.mark.parametrize("plane", on_planes("ingress"))
def test_an_ingressbackend_admits_its_source_range_only(reached: Mesh, plane: str) -> None:
    before = rejections(reached, plane)
    with Applied(reached, [ingress_backend(PLANES[plane], OUTSIDE_IP)]):
        seen = eventually(
            lambda: ingress_call(reached, reached.outside, plane),
            lambda seen: seen.get("status") == 200,
            SETTLE,
        )
        assert seen.get("status") == 200, (seen, config_dump(reached, plane, "server")[-3000:])
        assert json.loads(seen["body"])["server"] == f"{PLANES[plane]}/server"
        refused = ingress_call(reached, reached.stranger, plane)
        assert "error" in refused or refused.get("status") != 200, refused
        assert_no_new_rejections(reached, plane, before)


# -- retries ---------------------------------------------------------------------------------
FLAKY_REQUESTS = 100


def flaky_load(mesh: Mesh, plane: str, count: int) -> dict[str, int]:
    seen = mesh.client(
        plane, "load", mesh.server_url(plane, policy_app.FLAKY), "--count", str(count)
    )
    statuses: dict[str, int] = seen["statuses"]
    return statuses


@pytest.mark.parametrize("plane", list(PLANES))
def test_without_a_retry_half_the_flaky_requests_fail(reached: Mesh, plane: str) -> None:
    statuses = flaky_load(reached, plane, FLAKY_REQUESTS)
    assert statuses.get("503", 0) >= FLAKY_REQUESTS // 2 - 1, statuses
    assert sum(statuses.values()) == FLAKY_REQUESTS, statuses


@pytest.mark.parametrize("plane", on_planes("retry"))
def test_a_retry_turns_a_half_failing_upstream_into_no_failures(reached: Mesh, plane: str) -> None:
    before = rejections(reached, plane)
    with Applied(reached, [retry(PLANES[plane])]):
        settled = eventually(
            lambda: flaky_load(reached, plane, 10), lambda s: s == {"200": 10}, SETTLE
        )
        assert settled == {"200": 10}, (settled, config_dump(reached, plane, "client")[-3000:])
        statuses = flaky_load(reached, plane, FLAKY_REQUESTS)
        assert statuses == {"200": FLAKY_REQUESTS}, statuses
        assert_no_new_rejections(reached, plane, before)


# -- rate limit ------------------------------------------------------------------------------
def quick_load(mesh: Mesh, plane: str, count: int, service: str = "limited") -> dict[str, Any]:
    """``count`` requests one after another, as fast as they go (a few ms each)."""
    port = LIMITED_PORT if service == "limited" else SERVER_PORT
    url = f"http://{service}.{PLANES[plane]}:{port}/quick"
    return mesh.client(plane, "load", url, "--count", str(count))


def all_limited(seen: dict[str, Any]) -> bool:
    """A burst got 429s and no more answers than the bucket holds."""
    statuses = seen["statuses"]
    return "429" in statuses and statuses.get("200", 0) <= RATE


@pytest.mark.parametrize("plane", list(PLANES))
def test_without_a_rate_limit_every_request_is_answered(reached: Mesh, plane: str) -> None:
    seen = quick_load(reached, plane, 30, "server")
    assert seen["statuses"] == {"200": 30}, seen


@pytest.mark.parametrize("plane", on_planes("rate limit"))
def test_a_local_rate_limit_answers_429_above_its_rate_and_recovers(
    reached: Mesh, plane: str
) -> None:
    before = rejections(reached, plane)
    with Applied(reached, [rate_limit(PLANES[plane])]):
        # The limit is a filter of the server's inbound listener. Envoy drains connections
        # of the listener as it was for its drain time (600 s by default), and requests
        # on them pass unlimited meanwhile: so nothing calls ``limited`` before the server
        # has the filter (the client's sidecar would pool those connections).
        has_filter = eventually(
            lambda: "local_ratelimit" in config_dump(reached, plane, "server"), bool, SETTLE
        )
        assert has_filter, config_dump(reached, plane, "server")[-3000:]
        seen = eventually(lambda: quick_load(reached, plane, 30), all_limited, SETTLE)
        assert all_limited(seen), (seen, config_dump(reached, plane, "server")[-3000:])
        time.sleep(1.5)  # a full window: the bucket is full again
        seen = quick_load(reached, plane, 30)
        statuses = seen["statuses"]
        assert set(statuses) == {"200", "429"}, seen
        # At most the bucket plus what refilled while the burst ran.
        assert RATE <= statuses["200"] <= RATE * (2 + int(seen["seconds"])), seen
        assert seen["headers"]["429"].get(LIMITED_HEADER[0]) == LIMITED_HEADER[1], seen
        time.sleep(1.5)
        assert quick_load(reached, plane, RATE - 1)["statuses"] == {"200": RATE - 1}
        assert_no_new_rejections(reached, plane, before)


# -- circuit breaker -------------------------------------------------------------------------
CONCURRENT = 8


def slow_burst(mesh: Mesh, plane: str) -> list[dict[str, Any]]:
    url = mesh.server_url(plane, policy_app.SLOW)
    outcomes: list[dict[str, Any]] = mesh.client(plane, "burst", url, "--count", str(CONCURRENT))[
        "outcomes"
    ]
    return outcomes


def overloaded(outcome: dict[str, Any]) -> bool:
    """A 503 the client's sidecar answered because a circuit breaker was open: Envoy says
    so in ``x-envoy-overloaded``; the Python sidecar in its local reply's body."""
    if outcome.get("status") != 503:
        return False
    return outcome["headers"].get("x-envoy-overloaded") == "true" or "overflow" in outcome["body"]


@pytest.mark.parametrize("plane", list(PLANES))
def test_without_a_circuit_breaker_concurrent_slow_requests_all_succeed(
    reached: Mesh, plane: str
) -> None:
    outcomes = slow_burst(reached, plane)
    assert [o.get("status") for o in outcomes] == [200] * CONCURRENT, outcomes


@pytest.mark.parametrize("plane", on_planes("circuit breaker"))
def test_a_circuit_breaker_sheds_load_above_its_connections(reached: Mesh, plane: str) -> None:
    before = rejections(reached, plane)
    with Applied(reached, [circuit_breaker(PLANES[plane])]):
        outcomes = eventually(
            lambda: slow_burst(reached, plane), lambda seen: any(map(overloaded, seen)), SETTLE
        )
        statuses = [o.get("status") for o in outcomes]
        assert any(map(overloaded, outcomes)), (
            outcomes,
            config_dump(reached, plane, "client")[-3000:],
        )
        assert 200 in statuses, outcomes
        assert all(o.get("status") == 200 or overloaded(o) for o in outcomes), outcomes
        assert_no_new_rejections(reached, plane, before)


# -- the explanations: osm policy check-pods, osm verify connectivity -------------------------
def osm_cli(mesh: Mesh, *argv: str) -> tuple[int, str]:
    """``osm --kubeconfig <the mesh's> ARGV``: its exit code and output."""
    from click.testing import CliRunner

    from osm.cli import main as cli_main

    cli_main.register(cli_main.cli)
    kubeconfig = ["--kubeconfig", str(mesh.settings.kubeconfig)]
    result = CliRunner().invoke(cli_main.cli, [*kubeconfig, *argv], obj={})
    return result.exit_code, result.output


def check_pods(mesh: Mesh, plane: str) -> tuple[int, str]:
    namespace = PLANES[plane]
    client = f"{namespace}/{mesh.pod(plane, 'client')['metadata']['name']}"
    server = f"{namespace}/{mesh.pod(plane, 'server')['metadata']['name']}"
    return osm_cli(mesh, "policy", "check-pods", client, server, "--port", str(SERVER_PORT))


def verify(mesh: Mesh, plane: str) -> tuple[int, dict[str, Any]]:
    namespace = PLANES[plane]
    client = f"{namespace}/{mesh.pod(plane, 'client')['metadata']['name']}"
    code, out = osm_cli(
        mesh,
        *("verify", "connectivity", "--from-pod", client, "--to-service", f"{namespace}/server"),
        *("--port", str(SERVER_PORT), "--path", "/hello", "-o", "json"),
    )
    try:
        return code, dict(json.loads(out))
    except ValueError:
        raise AssertionError(f"exit {code}: {out}") from None


@pytest.mark.parametrize("plane", on_planes("explanations"))
def test_check_pods_and_verify_connectivity_say_what_the_traffic_does(
    reached: Mesh, plane: str
) -> None:
    """Allowed by the TrafficTarget, and both commands say so (verify from the sidecars'
    own counters); without it, both say denied, and why."""
    code, out = check_pods(reached, plane)
    assert code == 0, out
    assert "allowed" in out and "client-to-server" in out, out
    code, report = verify(reached, plane)
    assert (code, report["observed"], report["agrees"]) == (0, "success", True), report
    target = [o for o in workload(PLANES[plane], plane) if o["kind"] == "TrafficTarget"]
    reached.api.delete(target)
    try:
        code, out = check_pods(reached, plane)
        assert code == 2, out
        assert "DENIED" in out and "no TrafficTarget" in out, out
        refused = eventually(
            functools.partial(reached.client, plane, "call", reached.server_url(plane, "/hello")),
            lambda seen: seen.get("status") != 200,
            SETTLE,
        )
        assert refused.get("status") != 200, refused
        code, report = verify(reached, plane)
        assert code == 2, report
        assert report["observed"] in ("no-route", "rbac-denied"), report
        assert report["agrees"] is True, report
    finally:
        reached.api.apply(target)
        back = eventually(
            functools.partial(reached.client, plane, "call", reached.server_url(plane, "/hello")),
            lambda seen: seen.get("status") == 200,
            SETTLE,
        )
        assert back.get("status") == 200, back
