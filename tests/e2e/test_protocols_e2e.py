"""HTTP/2, gRPC and TCP through the mesh in SMI mode, end to end (root), on each data plane.

One mesh (`osm up`, its own state dir, ports and prefix) runs the same workload twice,
in a namespace per data plane (`PLANES`): Envoy's and the Python sidecar's. In each, a
`server` pod runs three apps of `osm.demo.protocols`, each behind a Service: ``web``
(appProtocol http), ``greeter`` (gRPC: appProtocol grpc) and ``echo`` (appProtocol tcp).
Its TrafficTarget lets the `client` identities of both namespaces make ``GET /hello`` and
call ``Greeter/SayHello`` (an HTTPRouteGroup) and use the echo port (a TCPRoute on that
port only); the `outsider` identities have no TrafficTarget. Calls are one-shot commands
run in the calling pod's network namespace, intercepted like the pod's own traffic; each
case is retried until it gives its expected outcome, after the allowed clients have
reached the servers (so that a denial is policy, not configuration still on its way).

What each data plane does with that policy is the tables of expectations (`HTTP_CASES`,
`GRPC_CASES`, `TCP_CASES`; callers and servers on either plane). Outcomes, as observed:

- an identity that no TrafficTarget names has no route to the services at all: its
  sidecar has no outbound listener, so its connections are refused in its own pod
  (curl exit 7, gRPC UNAVAILABLE, TCP refused), on both data planes;
- a request that no rule allows has no inbound route on an Envoy server (as in OSM), so
  Envoy's router answers 404 (``no_route``), which gRPC clients see as UNIMPLEMENTED;
- the Python sidecar differs by design (docs/decisions.md): it speaks HTTP/1.1 only, so
  it answers an HTTP/2 client's preface with an HTTP/1.1 505 (h2c unsupported) and
  closes, which the client cannot read (curl exit 52, no response); and it carries gRPC
  ports as TCP, so on its gRPC port, where it cannot check methods, a route policy allows
  no one (the connection is closed: UNAVAILABLE), with a catalog warning that says so.
  Its gRPC clients still get per-method policy from an Envoy server, inside the TCP
  tunnel.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import string
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from osm.base import wellknown
from osm.cli import runtime as cli_runtime
from osm.demo import protocols
from osm.model import manifest
from osm.runtime import daemon
from tests.e2e import demo, hostutil
from tests.e2e.meshapi import MeshApi

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.timeout(240),
]

REPO = Path(__file__).resolve().parents[2]
MESH_CONFIG = REPO / "demo" / "bookstore" / "manifests" / "50-meshconfig.yaml"
PREFIX = f"osmp{uuid.uuid4().hex[:5]}"
PLANES = {"envoy": "protocols-envoy", "python": "protocols-python"}
"""Data plane -> the namespace whose pods get it."""
HTTP_PORT = int(protocols.DEFAULT_PORTS["http-server"])
GRPC_PORT = int(protocols.DEFAULT_PORTS["grpc-server"])
TCP_PORT = int(protocols.DEFAULT_PORTS["tcp-echo"])
PODS = ("server", "client", "outsider")

WORKLOAD = string.Template(
    """
apiVersion: v1
kind: ServiceAccount
metadata: {name: server, namespace: $ns}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: $ns}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: outsider, namespace: $ns}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $ns}
spec:
  selector: {app: server}
  ports: [{name: http, port: $http, targetPort: $http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: $ns}
spec:
  selector: {app: server}
  ports: [{name: grpc, port: $grpc, targetPort: $grpc, appProtocol: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: $ns}
spec:
  selector: {app: server}
  ports: [{name: tcp, port: $tcp, targetPort: $tcp, appProtocol: tcp}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: server, namespace: $ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server}}
    spec:
      serviceAccountName: server
      containers:
      - name: web
        command: [python3, -m, osm.demo.protocols, http-server, --identity, $ns/web]
        ports: [{name: http, containerPort: $http}]
        readinessProbe: {httpGet: {path: /ready, port: $http}, periodSeconds: 1}
      - name: greeter
        command: [python3, -m, osm.demo.protocols, grpc-server, --identity, $ns/greeter]
        ports: [{name: grpc, containerPort: $grpc}]
        readinessProbe: {tcpSocket: {port: $grpc}, periodSeconds: 1}
      - name: echo
        command: [python3, -m, osm.demo.protocols, tcp-echo, --identity, $ns/echo]
        ports: [{name: tcp, containerPort: $tcp}]
        readinessProbe: {tcpSocket: {port: $tcp}, periodSeconds: 1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: $ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      serviceAccountName: client
      containers: [{name: idle, command: [sleep, infinity]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: outsider, namespace: $ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: outsider}}
  template:
    metadata: {labels: {app: outsider}}
    spec:
      serviceAccountName: outsider
      containers: [{name: idle, command: [sleep, infinity]}]
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: server-routes, namespace: $ns}
spec:
  matches:
  - {name: hello, pathRegex: /hello, methods: [GET]}
  - {name: say-hello, pathRegex: '$say_hello', methods: [POST]}
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: echo, namespace: $ns}
spec:
  matches: {name: echo, ports: [$tcp]}
---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: client-to-server, namespace: $ns}
spec:
  destination: {kind: ServiceAccount, name: server, namespace: $ns}
  rules:
  - {kind: HTTPRouteGroup, name: server-routes, matches: [hello, say-hello]}
  - {kind: TCPRoute, name: echo}
  sources:
  - {kind: ServiceAccount, name: client, namespace: protocols-envoy}
  - {kind: ServiceAccount, name: client, namespace: protocols-python}
"""
)
"""The workload of one namespace. The TCPRoute names the echo port: one without ports
would cover every port of the server identity, and admit any request on the HTTP ones."""


def workload(namespace: str, plane: str) -> list[dict[str, Any]]:
    """The namespace, enrolled in the mesh with its data plane, and its workload."""
    annotations = {wellknown.SIDECAR_INJECTION_ANNOTATION: "enabled"}
    if plane != "envoy":
        annotations[wellknown.DATA_PLANE_ANNOTATION] = plane
    enrolled = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {wellknown.MONITORED_BY_LABEL: "osm"},
            "annotations": annotations,
        },
    }
    text = WORKLOAD.substitute(
        ns=namespace,
        http=HTTP_PORT,
        grpc=GRPC_PORT,
        tcp=TCP_PORT,
        say_hello=protocols.grpc_path("SayHello").replace(".", r"\."),
    )
    return [enrolled, *yaml.safe_load_all(text)]


# -- the mesh ----------------------------------------------------------------------------
@dataclass
class Mesh:
    settings: daemon.MeshSettings
    api: MeshApi
    python: Path
    """The interpreter of the pods' build, for one-shot commands in their namespaces."""

    def pod(self, plane: str, deployment: str) -> dict[str, Any]:
        for pod in self.api.items("Pod", PLANES[plane]):
            if pod["metadata"]["labels"].get("app") == deployment:
                return dict(pod)
        raise AssertionError(f"no {deployment} pod in {PLANES[plane]}")

    def pod_name(self, plane: str, deployment: str) -> str:
        return str(self.pod(plane, deployment)["metadata"]["name"])

    def netns(self, plane: str, deployment: str) -> str:
        annotations = self.pod(plane, deployment)["metadata"]["annotations"]
        return str(annotations[wellknown.NETNS_ANNOTATION])

    def run_in(self, plane: str, deployment: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` in the pod's network namespace, as root (its traffic is intercepted
        like the pod's, with the pod's identity)."""
        command = ["ip", "netns", "exec", self.netns(plane, deployment), *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)

    def demo(self, plane: str, deployment: str, *argv: str) -> dict[str, Any]:
        """A one-shot client of `osm.demo.protocols`, run in the pod: its JSON outcome."""
        done = self.run_in(plane, deployment, str(self.python), "-m", "osm.demo.protocols", *argv)
        assert done.stdout, f"{argv}: no outcome (exit {done.returncode}): {done.stderr}"
        result: dict[str, Any] = json.loads(done.stdout)
        return result


def unready_pods(mesh: Mesh, tail: int = 15) -> str:
    """Pods that are not Ready, with the last lines of their logs and of the runtime's."""
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
        time.sleep(0.2)


def pods_python(settings: daemon.MeshSettings) -> Path:
    """The interpreter of the build the mesh's runtime runs pods from (its command line
    names it: the shared venv symlink may name another checkout's build by now)."""
    pid = daemon.runtime(settings.state_dir).pid()
    assert pid is not None, "the runtime is not running"
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return Path(argv[argv.index("--pod-python") + 1]) / "bin" / "python3"


def eventually(call: Callable[[], Any], expected: Callable[[Any], bool], timeout: float) -> Any:
    """The first outcome of ``call`` that is ``expected``, or the last one at the deadline
    (sidecars may still be taking their configuration)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = call()
        if expected(outcome) or time.monotonic() >= deadline:
            return outcome
        time.sleep(0.3)


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
    iptables_before = hostutil.host_iptables()
    started = time.monotonic()
    api: MeshApi | None = None
    try:
        daemon.up(settings, progress=print)
        api = MeshApi(settings)
        running = Mesh(settings, api, pods_python(settings))
        print(f"osm up took {time.monotonic() - started:.1f}s")
        loaded = manifest.load_paths([str(MESH_CONFIG)])
        assert not loaded.errors, loaded.errors
        config = [r.to_dict() for r in loaded.resources]
        config[-1]["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] = False
        api.apply(config)
        objects = [obj for plane, ns in PLANES.items() for obj in workload(ns, plane)]
        api.apply(objects)
        applied = time.monotonic()
        wait_for(
            lambda: len(cli_runtime.ready_pods(api.api, list(PLANES.values()))) == 2 * len(PODS),
            60,
            "every pod to be ready",
            lambda: unready_pods(running),
        )
        print(f"pods ready {time.monotonic() - applied:.1f}s after apply")
        yield running
    finally:
        if api is not None:
            api.close()
        daemon.down(settings.state_dir)
        for netns in hostutil.netns_named(PREFIX):  # last resort, should teardown be broken
            subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)
        shutil.rmtree(base, ignore_errors=True)
        print(f"the module's mesh ran {time.monotonic() - started:.1f}s")
    assert hostutil.netns_named(PREFIX) == []
    assert hostutil.host_iptables() == iptables_before


# -- calls ---------------------------------------------------------------------------------
def curl(
    mesh: Mesh, plane: str, caller: str, server_plane: str, path: str, *, http2: bool
) -> dict[str, Any]:
    """One request to ``web``: curl's exit code, the status, the HTTP version the caller
    spoke (``2`` or ``1.1``; ``0`` when no response came) and the body."""
    url = f"http://web.{PLANES[server_plane]}:{HTTP_PORT}{path}"
    version = "--http2-prior-knowledge" if http2 else "--http1.1"
    written = "\n%{http_code} %{http_version}"
    done = mesh.run_in(plane, caller, "curl", "-s", version, "-m", "3", "-w", written, url)
    body, _, tail = done.stdout.rpartition("\n")
    status, _, spoken = tail.partition(" ")
    return {"exit": done.returncode, "status": status, "version": spoken, "body": body}


def grpc_call(
    mesh: Mesh, plane: str, caller: str, server_plane: str, method: str
) -> dict[str, Any]:
    target = f"greeter.{PLANES[server_plane]}:{GRPC_PORT}"
    return mesh.demo(plane, caller, "grpc-call", target, method, "--message", caller)


def tcp_call(mesh: Mesh, plane: str, caller: str, server_plane: str) -> dict[str, Any]:
    target = f"echo.{PLANES[server_plane]}:{TCP_PORT}"
    return mesh.demo(plane, caller, "tcp-call", target, "--message", f"from {caller}")


@pytest.fixture(scope="module")
def reached(mesh: Mesh) -> Mesh:
    """The mesh once each plane's allowed client has reached each server on each port
    its sidecar can carry there: web and echo on both planes, greeter on Envoy."""
    for plane, server_plane in itertools.product(PLANES, PLANES):
        web = eventually(
            functools.partial(curl, mesh, plane, "client", server_plane, "/hello", http2=False),
            lambda seen: seen["status"] == "200",
            20,
        )
        assert web["status"] == "200", (plane, server_plane, web)
        echo = eventually(functools.partial(tcp_call, mesh, plane, "client", server_plane), _ok, 20)
        assert echo["ok"], (plane, server_plane, echo)
        if server_plane == "envoy":
            call = functools.partial(grpc_call, mesh, plane, "client", server_plane, "SayHello")
            greeter = eventually(call, _ok, 20)
            assert greeter["ok"], (plane, greeter)
    return mesh


def _ok(outcome: dict[str, Any]) -> bool:
    return bool(outcome["ok"])


# -- tests -----------------------------------------------------------------------------------
def test_each_namespace_runs_its_data_plane(mesh: Mesh) -> None:
    sidecars = {
        "envoy": wellknown.ENVOY_CONTAINER_NAME,
        "python": wellknown.PYTHON_SIDECAR_CONTAINER_NAME,
    }
    for plane, namespace in PLANES.items():
        for pod in mesh.api.items("Pod", namespace):
            containers = {c["name"] for c in pod["spec"]["containers"]}
            assert sidecars[plane] in containers, (plane, pod["metadata"]["name"], containers)
            assert sidecars["python" if plane == "envoy" else "envoy"] not in containers


HTTP_CASES = [
    # caller plane, caller, server plane, path, HTTP/2 from the caller,
    # expected (curl exit, status, HTTP version the caller spoke; 0: no response)
    ("envoy", "client", "envoy", "/hello", True, (0, "200", "2")),
    ("envoy", "client", "envoy", "/hello", False, (0, "200", "1.1")),
    ("envoy", "client", "envoy", "/other", True, (0, "404", "2")),
    ("envoy", "outsider", "envoy", "/hello", True, (7, "000", "0")),
    ("envoy", "client", "python", "/hello", True, (0, "200", "2")),
    ("python", "client", "python", "/hello", False, (0, "200", "1.1")),
    ("python", "client", "python", "/other", False, (0, "404", "1.1")),
    ("python", "client", "envoy", "/hello", True, (52, "000", "0")),
    ("python", "outsider", "python", "/hello", False, (7, "000", "0")),
]


@pytest.mark.parametrize(
    ("caller_plane", "caller", "server_plane", "path", "http2", "expected"), HTTP_CASES
)
def test_http(
    reached: Mesh,
    caller_plane: str,
    caller: str,
    server_plane: str,
    path: str,
    http2: bool,
    expected: tuple[int, str, str],
) -> None:
    def outcome(seen: dict[str, Any]) -> tuple[int, str, str]:
        return seen["exit"], seen["status"], seen["version"]

    seen = eventually(
        lambda: curl(reached, caller_plane, caller, server_plane, path, http2=http2),
        lambda seen: outcome(seen) == expected,
        10,
    )
    assert outcome(seen) == expected, seen
    if expected[1] == "200":
        answer = json.loads(seen["body"])
        assert answer == {"identity": f"{PLANES[server_plane]}/web", "method": "GET", "path": path}


GRPC_CASES = [
    # caller plane, caller, server plane, method, expected status code
    ("envoy", "client", "envoy", "SayHello", "OK"),
    ("envoy", "client", "envoy", "SayGoodbye", "UNIMPLEMENTED"),
    ("envoy", "outsider", "envoy", "SayHello", "UNAVAILABLE"),
    ("python", "client", "envoy", "SayHello", "OK"),
    ("python", "client", "envoy", "SayGoodbye", "UNIMPLEMENTED"),
    ("python", "client", "python", "SayHello", "UNAVAILABLE"),
    ("envoy", "client", "python", "SayHello", "UNAVAILABLE"),
    ("python", "outsider", "python", "SayHello", "UNAVAILABLE"),
]


@pytest.mark.parametrize(
    ("caller_plane", "caller", "server_plane", "method", "expected"), GRPC_CASES
)
def test_grpc(
    reached: Mesh, caller_plane: str, caller: str, server_plane: str, method: str, expected: str
) -> None:
    server = reached.pod_name(server_plane, "server")
    no_route = f"http.inbound_{PLANES[server_plane]}_greeter_{GRPC_PORT}.no_route"
    if expected == "UNIMPLEMENTED":
        refused_before = int(envoy_stats(reached, server_plane, server).get(no_route, "0"))
    seen = eventually(
        lambda: grpc_call(reached, caller_plane, caller, server_plane, method),
        lambda seen: seen["code"] == expected,
        10,
    )
    assert seen["code"] == expected, seen
    if expected == "OK":
        reply = {"identity": f"{PLANES[server_plane]}/greeter", "method": method, "message": caller}
        assert seen["reply"] == reply
    if expected == "UNIMPLEMENTED":  # the server's sidecar refused it, not the app
        assert int(envoy_stats(reached, server_plane, server)[no_route]) > refused_before


def test_the_python_sidecar_says_whom_a_route_policy_on_its_grpc_port_denies(
    reached: Mesh,
) -> None:
    log = (reached.settings.state_dir / "logs" / "controller.log").read_text()
    service = f'port {GRPC_PORT} of Service "{PLANES["python"]}/greeter"'
    warnings = [line for line in log.splitlines() if service in line]
    assert warnings, "no catalog warning about the Python sidecar's gRPC port"
    denied = ", ".join(f"{namespace}/client" for namespace in sorted(PLANES.values()))
    assert f"{denied} denied" in warnings[-1], warnings[-1]
    assert f"TrafficTarget {PLANES['python']}/client-to-server" in warnings[-1]


TCP_CASES = [
    # caller plane, caller, server plane, expected outcome
    ("envoy", "client", "envoy", "echoed"),
    ("envoy", "outsider", "envoy", "refused"),
    ("envoy", "client", "python", "echoed"),
    ("python", "client", "python", "echoed"),
    ("python", "client", "envoy", "echoed"),
    ("python", "outsider", "python", "refused"),
]


@pytest.mark.parametrize(("caller_plane", "caller", "server_plane", "expected"), TCP_CASES)
def test_tcp(
    reached: Mesh, caller_plane: str, caller: str, server_plane: str, expected: str
) -> None:
    seen = eventually(
        lambda: tcp_call(reached, caller_plane, caller, server_plane),
        lambda seen: seen["outcome"] == expected,
        10,
    )
    assert seen["outcome"] == expected, seen
    assert seen["received"] == (f"from {caller}" if expected == "echoed" else "")


def test_every_proxy_accepted_every_configuration_it_was_sent(reached: Mesh) -> None:
    proxies = reached.api.proxies()
    assert len(proxies) == 2 * len(PODS), proxies
    assert [p for p in proxies if p.get("last_nack")] == []
    for pod in reached.api.items("Pod", PLANES["envoy"]):
        stats = envoy_stats(reached, "envoy", pod["metadata"]["name"])
        rejected = {k: v for k, v in stats.items() if k.endswith("update_rejected")}
        assert rejected, "Envoy reports its xDS update counters"
        assert set(rejected.values()) == {"0"}, rejected


def envoy_stats(mesh: Mesh, plane: str, pod: str) -> dict[str, str]:
    """What ``osm proxy get stats`` says of a pod's Envoy."""
    return demo.proxy_stats(mesh, PLANES[plane], pod)
