"""Kubernetes mode end to end (root): the mesh installed by ``osm install`` into a bare
cluster, its controller and injector run as they run in a cluster, the bookstore meshed
through the webhook path.

The cluster is local mode's Kubernetes without the mesh: the API server over a store with
no built-in injection, calling the admission webhooks its configurations name (as
kube-apiserver does: `osm.apiserver.webhooks`), and the local kubelet. ``osm install``
registers the webhooks, RBAC, CRDs and the MeshConfig, with the control plane's replicas
at 0: the controller (``osm controller --kubernetes``) and the injector (``osm injector``)
run as processes of their own outside the cluster, configured as in a pod (no kubeconfig:
``KUBERNETES_SERVICE_HOST``/``PORT`` and their service account's token and the API's CA at
``/var/run/secrets/kubernetes.io/serviceaccount``, in a mount namespace of their own, from
the TokenRequest API), and the API server reaches their webhooks through its service
resolver (a cluster would reach their pods through the Services). Then, as a user does on a cluster:
label the namespaces, apply the bookstore, and check the scenarios of the local mesh
(permissive, SMI, a live split) from the demo clients' counters, with Envoy and the
Python sidecar side by side; every pod's sidecar came from the injector's webhook, and its
bootstrap Secret from the injector's own create.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from osm.apiserver import local
from osm.base import wellknown
from osm.cli import runtime as cli_runtime
from osm.controller import server as controller_server
from osm.runtime import daemon, sidecar_env
from osm.runtime.kubelet import READY_FILE
from osm.store.sqlite import SqliteStore
from tests.e2e import demo, hostutil
from tests.e2e import test_mesh_e2e as scenarios
from tests.e2e.meshapi import MeshApi

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.timeout(300),
]

T = TypeVar("T")
PREFIX = f"osmk{uuid.uuid4().hex[:5]}"
MESH = "osm"
NAMESPACE = wellknown.CONTROL_PLANE_NAMESPACE
PLANE = "mixed"
"""Both data planes at once (`test_mesh_e2e.PLANES`): the injector's webhook writes Envoy's
and the Python sidecar's containers and bootstraps."""


class Cluster:
    """The API server in a thread of this process (its own event loop), the kubelet as a
    daemon, the control plane as two processes; `stop` ends them all."""

    def __init__(self, base: Path) -> None:
        self.state_dir = base / "state"
        self.settings = daemon.MeshSettings(
            self.state_dir,
            hostutil.free_port(),
            hostutil.free_port(),
            PREFIX,
            http_port=hostutil.free_port(),
        )
        self.webhook_ports = {
            "osm-injector": hostutil.free_port(),
            "osm-validator": hostutil.free_port(),
        }
        self.injector_http_port = hostutil.free_port()
        self.base = base
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api", daemon=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = base / "logs"
        self.api: local.LocalApi | None = None
        self.store: SqliteStore | None = None

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    async def _resolve(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        """Where the control plane's webhooks listen: on this host, outside the cluster."""
        if namespace == NAMESPACE and name in self.webhook_ports:
            return wellknown.LOCALHOST, self.webhook_ports[name]
        raise LookupError(f"service {namespace}/{name} has no endpoint outside the cluster")

    def start_api(self) -> None:
        self.thread.start()
        self.state_dir.mkdir(parents=True, mode=0o700)

        async def start() -> None:
            self.store = await SqliteStore.open(self.state_dir / "store.db")
            self.api = await local.start(
                self.store,
                self.state_dir,
                port=self.settings.api_port,
                webhooks=True,
                resolver=self._resolve,
                clients=(
                    local.Client(
                        daemon_kubelet_kubeconfig(self.state_dir),
                        controller_server.KUBELET_USER,
                        controller_server.KUBELET_GROUPS,
                    ),
                ),
            )

        self.call(start())

    def start_kubelet(self) -> None:
        pod_python = sidecar_env.ensure(self.settings.pod_python, progress=print)
        self.settings.save()
        runtime = daemon.runtime(self.state_dir)
        ready_file = self.state_dir / READY_FILE
        pid = runtime.spawn(
            daemon.runtime_argv(self.settings, pod_python.build or self.settings.pod_python)
        )
        scenarios.wait_for(
            lambda: ready_file.exists() and str(pid) in ready_file.read_text(),
            60,
            "the kubelet to be ready",
            runtime.tail,
        )

    def osm(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "osm.cli", "--kubeconfig", str(self.settings.kubeconfig), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=daemon.daemon_env(os.environ),
        )

    def spawn_in_cluster(self, name: str, argv: list[str]) -> None:
        """``osm ARGV`` as a pod of ServiceAccount ``osm-system/<name>`` runs it: in a mount
        namespace whose ``/run`` (``/var/run``) holds only that account's token directory,
        with the API's address in the environment, as the kubelet sets both up."""
        account = self.base / "serviceaccounts" / name
        assert self.api is not None
        self.call(self.api.write_service_account(account, NAMESPACE, f"osm-{name}"))
        mounted = "/run/secrets/kubernetes.io/serviceaccount"
        command = shlex.join([sys.executable, "-m", "osm.cli", *argv])
        script = (
            f"mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p {mounted} && "
            f"cp {shlex.quote(str(account))}/* {mounted}/ && exec {command}"
        )
        env = {
            **daemon.daemon_env(os.environ),
            "KUBERNETES_SERVICE_HOST": wellknown.LOCALHOST,
            "KUBERNETES_SERVICE_PORT": str(self.settings.api_port),
        }
        self.logs.mkdir(exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def start_control_plane(self) -> None:
        """As ``osm install``'s Deployments run them, on local ports."""
        self.spawn_in_cluster(
            "controller",
            [
                "controller",
                "--kubernetes",
                "--mesh-name",
                MESH,
                "--xds-host",
                wellknown.LOCALHOST,
                "--xds-port",
                str(self.settings.xds_port),
                "--http-host",
                wellknown.LOCALHOST,
                "--http-port",
                str(self.settings.http_port),
                "--webhook-port",
                str(self.webhook_ports["osm-validator"]),
            ],
        )
        self.spawn_in_cluster(
            "injector",
            [
                "injector",
                "--mesh-name",
                MESH,
                "--host",
                wellknown.LOCALHOST,
                "--webhook-port",
                str(self.webhook_ports["osm-injector"]),
                "--http-port",
                str(self.injector_http_port),
            ],
        )
        for name, port in (
            ("controller", self.settings.http_port),
            ("injector", self.injector_http_port),
        ):
            scenarios.wait_for(
                lambda port=port: _ready(port),  # type: ignore[misc]
                60,
                f"the {name} to be ready",
                lambda name=name: self.tail(name),  # type: ignore[misc]
            )

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        daemon.down(self.state_dir)
        if self.api is not None:
            self.call(self.api.stop())
        if self.store is not None:
            self.call(self.store.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def daemon_kubelet_kubeconfig(state_dir: Path) -> Path:
    from osm import paths

    return paths.kubelet_kubeconfig_path(state_dir)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, scenarios.Mesh]]:
    base = Path(f"/tmp/{PREFIX}")  # not pytest's tmp dir: sidecars (UID 1500) read it
    base.mkdir(mode=0o755)
    before = demo.host_snapshot()
    running = Cluster(base)
    api: MeshApi | None = None
    try:
        running.start_api()
        running.start_kubelet()
        installed = running.osm(
            "install",
            "--mesh-name",
            MESH,
            "--set",
            "osm.osmController.replicaCount=0",
            "--set",
            "osm.injector.replicaCount=0",
            "--timeout",
            "60s",
        )
        print(installed.stdout, installed.stderr)
        assert installed.returncode == 0, installed.stderr
        running.start_control_plane()
        api = MeshApi(running.settings)
        mesh = scenarios.Mesh(running.settings, api, time.monotonic(), PLANE)
        yield running, mesh
    finally:
        if api is not None:
            api.close()
        running.stop()
        leftovers = [n for n in _netns() if n.startswith(PREFIX)]
        for netns in leftovers:
            subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)
        shutil.rmtree(base, ignore_errors=True)
    assert not leftovers
    assert demo.host_snapshot() == before


def _netns() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]


# -- tests, in order -------------------------------------------------------------------------
def test_install_registered_the_webhooks_and_the_control_plane_set_their_ca_bundle(
    cluster: tuple[Cluster, scenarios.Mesh],
) -> None:
    _, mesh = cluster
    names = {
        "MutatingWebhookConfiguration": f"osm-webhook-{MESH}",
        "ValidatingWebhookConfiguration": f"osm-validator-mesh-{MESH}",
    }
    secret = mesh.api.get("Secret", NAMESPACE, "osm-ca-bundle")
    assert set(secret["data"]) >= {"ca.crt", "private.key"}

    def bundles_set() -> bool:
        for kind, name in names.items():
            configuration = mesh.api.get(kind, "", name)
            if not all(w["clientConfig"].get("caBundle") for w in configuration["webhooks"]):
                return False
        return True

    scenarios.wait_for(bundles_set, 40, "both webhook configurations to carry the mesh root")


def test_the_bookstore_is_meshed_through_the_injectors_webhook(
    cluster: tuple[Cluster, scenarios.Mesh],
) -> None:
    running, mesh = cluster
    planes = scenarios.PLANES[PLANE]
    mesh.apply_file(scenarios.MANIFESTS, demo.choose_planes(planes))
    scenarios.wait_for(
        lambda: len(cli_runtime.ready_pods(mesh.api.api, scenarios.NAMESPACES)) == 5,
        90,
        "5 ready demo pods",
        lambda: scenarios.unready_pods(mesh) + "\n--- injector\n" + running.tail("injector"),
    )
    for namespace in scenarios.NAMESPACES:
        for pod in mesh.api.items("Pod", namespace):
            proxy_uuid = pod["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
            names = [c["name"] for c in pod["spec"]["containers"]]
            deployment = pod["metadata"]["name"].rsplit("-", 2)[0]
            sidecar = (
                wellknown.PYTHON_SIDECAR_CONTAINER_NAME
                if planes.get(deployment) == "python"
                else wellknown.ENVOY_CONTAINER_NAME
            )
            assert sidecar in names, (deployment, names)
            secret = mesh.api.get(
                "Secret", namespace, f"{wellknown.BOOTSTRAP_SECRET_PREFIX}{proxy_uuid}"
            )
            assert secret["metadata"]["labels"][wellknown.APP_INSTANCE_LABEL] == MESH
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{running.injector_http_port}/metrics", timeout=5
    ).read()
    assert b"osm_admission_webhook_response_total" in metrics


def test_permissive_mode_everyone_reaches_the_bookstore(
    cluster: tuple[Cluster, scenarios.Mesh],
) -> None:
    scenarios.test_permissive_mode_everyone_reaches_the_bookstore(cluster[1])


def test_smi_mode_allows_the_buyer_on_its_routes_and_headers_only(
    cluster: tuple[Cluster, scenarios.Mesh],
) -> None:
    scenarios.test_smi_mode_allows_the_buyer_on_its_routes_and_headers_only(cluster[1])


def test_traffic_split_follows_weights_live(cluster: tuple[Cluster, scenarios.Mesh]) -> None:
    scenarios.test_traffic_split_follows_weights_live(cluster[1])


def test_writes_of_the_mesh_kinds_go_through_the_controllers_validating_webhook(
    cluster: tuple[Cluster, scenarios.Mesh],
) -> None:
    running, mesh = cluster

    def validated() -> float:
        text = (
            urllib.request.urlopen(
                f"http://127.0.0.1:{running.settings.http_port}/metrics", timeout=5
            )
            .read()
            .decode()
        )
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("osm_admission_webhook_response_total{")
        )

    before = validated()
    scenarios.set_split(mesh, 60, 40)
    try:
        assert validated() > before  # the split's update was sent to the controller
    finally:
        scenarios.set_split(mesh, 50, 50)


def test_uninstall_removes_the_webhooks_and_the_mesh_leaves_pods_running(
    cluster: tuple[Cluster, scenarios.Mesh],
) -> None:
    running, mesh = cluster
    removed = running.osm("uninstall", "mesh", "--mesh-name", MESH, "-f")
    assert removed.returncode == 0, removed.stderr
    for kind, name in (
        ("MutatingWebhookConfiguration", f"osm-webhook-{MESH}"),
        ("ValidatingWebhookConfiguration", f"osm-validator-mesh-{MESH}"),
    ):
        assert not [c for c in mesh.api.items(kind) if c["metadata"]["name"] == name]
    assert len(cli_runtime.ready_pods(mesh.api.api, scenarios.NAMESPACES)) == 5
