"""The runtime's pod lifecycle against a fake network and fake containers (no root).

The races these pin down: a pod's network is made in a worker thread while the event
loop goes on reconciling (the hosts file refresh and a removal must not touch that pod's
namespace until the thread is done), and a pod whose start fails is retried with backoff
instead of staying dead (the bookstore-v2 pod that never came up in the e2e test).
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from osm.base import ipam
from osm.runtime import kubelet, process, record
from osm.runtime.network import HostEntry, NetworkError

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "command": ["python3", "-m", "web"]}]},
        },
    },
}


def service(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"clusterIP": ip, "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }


class FakeNetwork:
    """`MeshNetwork` as the runtime uses it. ``add_pod`` runs (in the runtime's worker
    thread) until ``gate`` is set, and fails while ``failures`` is positive; every call
    that touches a namespace while ``add_pod`` is making it is a race, recorded."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.adding_started = threading.Event()
        self.failures = 0
        self.calls: list[tuple[str, str]] = []
        self.races: list[str] = []
        self.made: set[str] = set()
        self._adding: set[str] = set()
        self._lock = threading.Lock()

    def add_pod(
        self, netns: str, ip: ipaddress.IPv4Address, hosts: Sequence[HostEntry] = ()
    ) -> None:
        with self._lock:
            self.calls.append(("add_pod", netns))
            self._adding.add(netns)
        self.adding_started.set()
        try:
            assert self.gate.wait(10), "the test never let add_pod finish"
            with self._lock:
                if self.failures > 0:
                    self.failures -= 1
                    raise NetworkError(f"injected failure creating {netns}")
                if netns in self.made:
                    raise NetworkError(f'network namespace "{netns}" exists already')
                self.made.add(netns)
        finally:
            with self._lock:
                self._adding.discard(netns)

    def write_hosts(self, netns: str, entries: Sequence[HostEntry]) -> None:
        with self._lock:
            self.calls.append(("write_hosts", netns))
            if netns in self._adding or netns not in self.made:
                self.races.append(f"write_hosts({netns}) while its network is not made")

    def remove_pod(self, netns: str) -> None:
        with self._lock:
            self.calls.append(("remove_pod", netns))
            if netns in self._adding:
                self.races.append(f"remove_pod({netns}) while add_pod makes it")
            self.made.discard(netns)


class FakeContainer:
    """`ContainerProcess` without a process: ready once started."""

    def __init__(self, spec: process.ProcessSpec, journal: record.Journal, **_: Any) -> None:
        self.spec = spec
        self.ready = False
        self.restarts = 0
        self.pid: int | None = None

    async def start(self) -> None:
        self.ready, self.pid = True, 4242

    async def stop(self, grace: float = 5.0) -> None:
        self.ready, self.pid = False, None


class FakeApi:
    """The controller's API as the runtime calls it: lists ``objects``, a watch that
    stays quiet, and the Pod/Endpoints objects it writes (``written``: every version)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.written: list[dict[str, Any]] = []

    async def list(self, kind: str) -> tuple[list[dict[str, Any]], int]:
        return [o for o in self.objects if o["kind"] == kind], 1

    async def watch(self, since: int, kinds_: Sequence[str]) -> AsyncIterator[dict[str, Any]]:
        await asyncio.Event().wait()
        yield {}  # pragma: no cover (never reached: the watch stays quiet)

    async def apply(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.written += [dict(o) for o in objects]

    async def delete(self, refs: Sequence[Mapping[str, str]]) -> None:
        pass

    async def close(self) -> None:
        pass

    def pod_statuses(self) -> builtins.list[dict[str, Any]]:
        return [dict(o["status"]) for o in self.written if o["kind"] == "Pod"]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[record.Journal]:
    with record.Journal.open(tmp_path) as opened:
        yield opened


@pytest.fixture
def network() -> Iterator[FakeNetwork]:
    fake = FakeNetwork()
    yield fake
    fake.gate.set()  # never leave a worker thread waiting


@pytest.fixture
async def runtime(
    tmp_path: Path,
    journal: record.Journal,
    network: FakeNetwork,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[kubelet.Kubelet]:
    monkeypatch.setattr(kubelet, "ContainerProcess", FakeContainer)
    running = kubelet.Kubelet(kubelet.RuntimeSettings(state_dir=tmp_path))
    api = FakeApi([NAMESPACE, DEPLOYMENT, service("web", "10.234.0.1")])
    running.api = api  # type: ignore[assignment]
    running.journal = journal
    running.network = network  # type: ignore[assignment]
    running.pool = ipam.pod_pool(ipam.MemoryRecord())
    running.start_backoff = lambda: process.Backoff(initial=0.01, maximum=0.05)
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
    network.gate.set()
    await asyncio.wait_for(task, 5)
    for pod in list(running.pods.values()):
        await running._remove_pod(pod)


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def only_pod(runtime: kubelet.Kubelet) -> kubelet.RunningPod:
    (pod,) = runtime.pods.values()
    return pod


async def test_hosts_are_not_written_while_the_pods_network_is_being_made(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    await until(network.adding_started.is_set, "add_pod to start")
    pod = only_pod(runtime)
    assert pod.ip  # the IP is allocated (and published) before the network exists
    # A change that rewrites every pod's hosts file arrives while add_pod runs.
    api: Any = runtime.api
    api.objects.append(service("db", "10.234.0.2"))
    runtime.resources.clear()
    await runtime._relist()
    runtime._reconcile()
    await asyncio.sleep(0.05)  # more reconciles, from the loop's own kicks
    network.gate.set()
    await until(lambda: pod.ready, "the pod to be ready")
    assert network.races == []
    # Once made, its hosts file follows the Services again.
    await until(lambda: ("write_hosts", pod.netns) in network.calls, "a hosts refresh")
    assert network.races == []


async def test_a_pod_whose_start_fails_is_undone_and_retried_until_it_runs(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.failures = 2
    network.gate.set()
    await until(lambda: bool(runtime.pods) and only_pod(runtime).ready, "the pod to be ready")
    pod = only_pod(runtime)
    assert pod.start_attempts == 3 and pod.phase == "Running" and pod.message == ""
    adds = [c for c in network.calls if c == ("add_pod", pod.netns)]
    removes = [c for c in network.calls if c == ("remove_pod", pod.netns)]
    assert len(adds) == 3 and len(removes) == 2  # each failed start was undone
    assert network.made == {pod.netns}
    api: Any = runtime.api
    await until(
        lambda: any(
            s["conditions"] == [{"type": "Ready", "status": "True"}] for s in api.pod_statuses()
        ),
        "a Ready Pod object",
    )
    failed = [s for s in api.pod_statuses() if "start failed" in s.get("message", "")]
    assert failed and failed[0]["phase"] == "Pending"
    assert "injected failure" in failed[0]["message"]


async def test_a_pod_removed_while_its_network_is_made_is_removed_after_it(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    await until(network.adding_started.is_set, "add_pod to start")
    pod = only_pod(runtime)
    api: Any = runtime.api
    api.objects.remove(DEPLOYMENT)
    runtime.resources.clear()
    await runtime._relist()
    await asyncio.sleep(0.05)
    assert ("remove_pod", pod.netns) not in network.calls  # waits for add_pod's thread
    network.gate.set()
    await until(lambda: not runtime.pods, "the pod to be gone")
    assert network.races == []
    assert network.made == set()
