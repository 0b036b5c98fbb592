"""Pods of the local kubelet are in-cluster Kubernetes clients (root): an API server over a
memory store, a kubelet with its own kubeconfig, and pods whose containers read their
service account token where Kubernetes mounts it and reach the API through the gateway.

Safety: every namespace is named with this run's unique prefix; the kubelet's shutdown
removes what it made (its journal), and a module fixture sweeps this prefix's
namespaces should that fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from osm.apiserver import local
from osm.kube.client import KubeClient
from osm.runtime import kubelet, process, record
from osm.store import open_store
from tests.e2e import hostutil

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, mounts)"),
    pytest.mark.timeout(120),
]

PREFIX = f"osmic{uuid.uuid4().hex[:5]}"
NAMESPACE = "incluster"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

LIST_PODS = textwrap.dedent(
    """
    import lightkube
    from lightkube.resources.core_v1 import Pod
    config = lightkube.KubeConfig.from_service_account()
    client = lightkube.Client(config, trust_env=False)
    namespace = config.contexts[config.current_context].namespace
    pods = list(client.list(Pod, namespace=namespace))
    print(f"listed {len(pods)} pods in {namespace}", flush=True)
    """
)
NO_TOKEN = textwrap.dedent(
    f"""
    import os
    print("token directory:", os.path.exists({TOKEN_DIR!r}), flush=True)
    print("host:", os.environ.get("KUBERNETES_SERVICE_HOST"), flush=True)
    """
)


@pytest.fixture(autouse=True, scope="module")
def sweep_this_runs_leftovers() -> Iterator[None]:
    """Last resort: every network namespace named with this run's prefix is this run's."""
    yield
    for netns in hostutil.netns_named(PREFIX):
        for pid in hostutil.output("ip", "netns", "pids", netns).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", netns], check=False, timeout=10)


@dataclass
class Cluster:
    api: local.LocalApi
    admin: KubeClient
    runtime: kubelet.Kubelet
    state_dir: Path

    def pod(self, name: str, script: str, **spec: Any) -> dict[str, Any]:
        container = {"name": "main", "command": ["python3", "-c", script]}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"containers": [container], "restartPolicy": "Never", **spec},
        }

    async def finished(self, name: str, timeout: float = 60.0) -> tuple[str, str]:
        """How the pod's container ended (``exit 0``), or the pod's status message while
        it waits, and the container's log. (The kubelet leaves such a pod's phase
        Running: the container's state is what says it ended.)"""
        status: dict[str, Any] = {}
        terminated: dict[str, Any] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not terminated:
                    await asyncio.sleep(0.2)
                    pod = await self.admin.get("Pod", NAMESPACE, name)
                    status = pod.get("status") or {}
                    for container in status.get("containerStatuses") or []:
                        terminated = (container.get("state") or {}).get("terminated") or {}
        log = process.log_path(self.state_dir, NAMESPACE, name, "main")
        lines = log.read_text().splitlines() if log.exists() else []
        text = "".join(f"{line}\n" for line in lines if not line.startswith("--- osm:"))
        if terminated:
            return f"exit {terminated.get('exitCode')}", text
        return str(status.get("message")), text


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    store = await open_store("memory:")
    api_dir, state_dir = tmp_path / "api", tmp_path / "runtime"
    kubeconfig = tmp_path / "kubelet.kubeconfig"
    settings = kubelet.RuntimeSettings(state_dir=state_dir, kubeconfig=kubeconfig, prefix=PREFIX)
    api = await local.start(
        store,
        api_dir,
        port=0,
        server_ips=(str(settings.mesh.gateway),),
        clients=(local.Client(kubeconfig, "system:node:test", ("system:nodes",)),),
    )
    admin = KubeClient.from_kubeconfig(api.kubeconfig)
    runtime = kubelet.Kubelet(settings)
    running: asyncio.Task[None] | None = None
    try:
        await runtime.start()
        running = asyncio.create_task(runtime.run())
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        await admin.create(namespace)
        yield Cluster(api, admin, runtime, state_dir)
    finally:
        runtime.stop()
        if running is not None:
            await asyncio.wait_for(running, 10)
        await runtime.shutdown()
        await admin.close()
        await api.stop()
        assert record.teardown(state_dir).ok


async def test_a_pod_lists_the_pods_of_its_namespace_with_its_mounted_token(
    cluster: Cluster,
) -> None:
    await cluster.admin.create(cluster.pod("lister", LIST_PODS))
    phase, log = await cluster.finished("lister")
    assert (phase, log) == ("exit 0", f"listed 1 pods in {NAMESPACE}\n")


async def test_a_pod_that_opts_out_has_no_token_directory(cluster: Cluster) -> None:
    pod = cluster.pod("private", NO_TOKEN, automountServiceAccountToken=False)
    await cluster.admin.create(pod)
    phase, log = await cluster.finished("private")
    gateway = str(cluster.runtime.settings.mesh.gateway)
    assert (phase, log) == ("exit 0", f"token directory: False\nhost: {gateway}\n")


async def test_a_pod_of_a_missing_service_account_waits_for_it(cluster: Cluster) -> None:
    await cluster.admin.create(cluster.pod("robotic", LIST_PODS, serviceAccountName="robot"))
    phase, _ = await cluster.finished("robotic", timeout=3.0)
    assert 'serviceaccounts "robot" not found' in phase
    account = {"apiVersion": "v1", "kind": "ServiceAccount"}
    await cluster.admin.create({**account, "metadata": {"name": "robot", "namespace": NAMESPACE}})
    phase, log = await cluster.finished("robotic")
    assert (phase, log) == ("exit 0", f"listed 1 pods in {NAMESPACE}\n")


WAIT_FOR_A_NEW_TOKEN = textwrap.dedent(
    f"""
    import time, lightkube
    from lightkube.resources.core_v1 import Pod
    def token():
        with open({TOKEN_DIR!r} + "/token") as f:
            return f.read()
    first = token()
    deadline = time.monotonic() + 20
    while token() == first and time.monotonic() < deadline:
        time.sleep(0.1)
    print("replaced:", token() != first, flush=True)
    client = lightkube.Client(lightkube.KubeConfig.from_service_account(), trust_env=False)
    print(f"listed {{len(list(client.list(Pod, namespace={NAMESPACE!r})))}} pods", flush=True)
    """
)


async def test_the_token_is_replaced_in_place_and_the_new_one_works(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replaced after about a second of its hour, instead of 48 minutes.
    monkeypatch.setattr(kubelet, "TOKEN_REFRESH", 1 / kubelet.TOKEN_EXPIRATION_SECONDS)
    await cluster.admin.create(cluster.pod("renewed", WAIT_FOR_A_NEW_TOKEN))
    phase, log = await cluster.finished("renewed")
    assert (phase, log) == ("exit 0", "replaced: True\nlisted 1 pods\n")
