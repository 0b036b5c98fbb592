"""The runtime's pod lifecycle against a fake network and fake containers (no root).

The races these pin down: a pod's network is made in a worker thread while the event
loop goes on reconciling (the hosts file refresh and a removal must not touch that pod's
namespace until the thread is done), and a pod whose start fails is retried with backoff
instead of staying dead (the bookstore-v2 pod that never came up in the e2e test).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ipaddress
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from osm.base import ipam, wellknown
from osm.kube import informer
from osm.runtime import kubelet, pods, process, record
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
        self.hosts: dict[str, list[HostEntry]] = {}
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
            self.hosts[netns] = list(entries)
            if netns in self._adding or netns not in self.made:
                self.races.append(f"write_hosts({netns}) while its network is not made")

    def remove_pod(self, netns: str) -> None:
        with self._lock:
            self.calls.append(("remove_pod", netns))
            if netns in self._adding:
                self.races.append(f"remove_pod({netns}) while add_pod makes it")
            self.made.discard(netns)


class FakeContainer:
    """`ContainerProcess` without a process: ready once started; an init container
    "exits" with the code `EXIT_CODES` gives its name (0 by default)."""

    EXIT_CODES: dict[str, int] = {}
    started_names: list[str] = []

    def __init__(self, spec: process.ProcessSpec, journal: record.Journal, **_: Any) -> None:
        self.spec = spec
        self.ready = False
        self.started = False
        self.restarts = 0
        self.pid: int | None = None
        self.last_exit_code: int | None = None
        self.last_termination = ""
        self.finished = asyncio.Event()
        self.state = "waiting"

    async def start(self) -> None:
        FakeContainer.started_names.append(self.spec.name)
        self.ready = self.started = True
        self.pid, self.state = 4242, "running"

    async def wait(self) -> int:
        code = FakeContainer.EXIT_CODES.get(self.spec.name, 0)
        self.ready, self.pid, self.state = False, None, "terminated"
        self.last_exit_code, self.last_termination = code, "Completed" if code == 0 else "Error"
        self.finished.set()
        return code

    async def stop(self, grace: float = 5.0) -> None:
        self.ready, self.pid = False, None


class FakeSandbox:
    """`PodSandbox` without mounts: records what it was given."""

    made: list[FakeSandbox] = []

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.removed = False
        self.updates: list[tuple[str, list[Any]]] = []
        FakeSandbox.made.append(self)

    def command(
        self, argv: Sequence[str], *, uid: int, gid: int, working_dir: str = ""
    ) -> list[str]:
        return list(argv)

    def remove(self) -> None:
        self.removed = True

    def update_volume(self, volume: str, files: Sequence[Any]) -> None:
        self.updates.append((volume, list(files)))


class FakeApi:
    """The Kubernetes API as the runtime calls it (`kubelet.Api`), over a dict: an informer
    (a Sync, then every write as a Change), create, status and annotation patches with
    their resourceVersion precondition (Conflict when stale), put and delete; Pods are
    refused while ``refuse`` is set. Tests write with `apply` (create or replace)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: asyncio.Queue[informer.Event] = asyncio.Queue()
        self.written: list[dict[str, Any]] = []
        self.refuse = ""
        self.rv = 0
        self.tokens: list[tuple[str, str]] = []
        self.token_life = 3600.0
        for obj in objects:
            self._store(obj)

    @staticmethod
    def key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = obj["metadata"]
        return (obj["kind"], meta.get("namespace", ""), meta["name"])

    def _store(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        key = self.key(obj)
        old = self.objects.get(key)
        self.rv += 1
        stored = json.loads(json.dumps(obj))
        meta = stored["metadata"]
        meta["resourceVersion"] = str(self.rv)
        meta["uid"] = old["metadata"]["uid"] if old else f"uid-{self.rv}"
        meta.setdefault("creationTimestamp", "2026-12-06T00:00:00Z")
        self.objects[key] = stored
        return stored

    @contextlib.asynccontextmanager
    async def _stream(self) -> AsyncIterator[AsyncIterator[informer.Event]]:
        async def events() -> AsyncIterator[informer.Event]:
            yield informer.Sync(tuple(self.objects.values()), {})
            while True:
                yield await self.events.get()

        yield events()

    def informer(self, kinds_: Sequence[str]) -> Any:
        return self._stream()

    async def list(self, kind: str) -> builtins.list[dict[str, Any]]:
        return [o for k, o in self.objects.items() if k[0] == kind]

    async def apply(self, objects: Sequence[Mapping[str, Any]]) -> None:
        for obj in objects:
            if obj["kind"] == "Pod" and self.refuse:
                raise kubelet.ApiFailure(422, self.refuse)
            current = self.objects.get(self.key(obj))
            expected = obj["metadata"].get("resourceVersion")
            if expected and (current is None or current["metadata"]["resourceVersion"] != expected):
                raise kubelet.ApiFailure(409, "conflict")
        for obj in objects:
            created = self.key(obj) not in self.objects
            stored = self._store(obj)
            self.written.append(stored)
            await self.events.put(informer.Change("ADDED" if created else "MODIFIED", stored))

    async def create(self, obj: Mapping[str, Any]) -> None:
        await self.apply([obj])

    async def token(self, namespace: str, name: str, seconds: int) -> tuple[str, float]:
        if ("ServiceAccount", namespace, name) not in self.objects:
            raise kubelet.ApiFailure(404, f'serviceaccounts "{name}" not found')
        self.tokens.append((namespace, name))
        return f"token-{len(self.tokens)}", self.token_life

    async def put(self, obj: Mapping[str, Any]) -> None:
        await self.apply([{**obj, "metadata": {**obj["metadata"], "resourceVersion": ""}}])

    async def write_status(self, pod: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        await self.apply([{**pod, "status": dict(status)}])

    async def annotate(self, obj: Mapping[str, Any], annotations: Mapping[str, str]) -> None:
        meta = obj["metadata"]
        merged = {**meta.get("annotations", {}), **annotations}
        await self.apply([{**obj, "metadata": {**meta, "annotations": merged}}])

    async def delete(self, refs: Sequence[Mapping[str, str]]) -> None:
        for ref in refs:
            gone = self.objects.pop((ref["kind"], ref["namespace"], ref["name"]), None)
            if gone is not None:
                await self.events.put(informer.Change("DELETED", gone))

    async def close(self) -> None:
        pass

    def pods(self) -> builtins.list[dict[str, Any]]:
        return [o for k, o in self.objects.items() if k[0] == "Pod"]

    def pod_statuses(self) -> builtins.list[dict[str, Any]]:
        return [dict(o.get("status") or {}) for o in self.written if o["kind"] == "Pod"]


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
    FakeContainer.EXIT_CODES = {}
    FakeContainer.started_names = []
    FakeSandbox.made = []
    running = kubelet.Kubelet(kubelet.RuntimeSettings(state_dir=tmp_path))
    running.make_sandbox = FakeSandbox  # type: ignore[assignment]
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


async def test_a_deployments_pod_is_created_through_the_api_then_run_as_stored(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    api: Any = runtime.api
    await until(lambda: bool(runtime.pods) and only_pod(runtime).ready, "the pod to be ready")
    (stored,) = api.pods()
    assert stored["metadata"]["ownerReferences"][0]["name"] == "web"
    assert stored["metadata"]["labels"]["app"] == "web"
    await until(
        lambda: (
            (stored := api.pods()[0]).get("status", {}).get("phase") == "Running"
            and stored["status"]["conditions"][-1] == {"type": "Ready", "status": "True"}
        ),
        "a Ready Pod status",
    )
    pod = api.pods()[0]
    assert pod["status"]["podIP"] == only_pod(runtime).ip
    assert pod["metadata"]["annotations"][wellknown.NETNS_ANNOTATION] == only_pod(runtime).netns
    assert pod["spec"] == stored["spec"]  # the kubelet writes status, never the spec
    # The Endpoints may be written empty first (before the pod has its address).
    await until(
        lambda: bool(api.objects.get(("Endpoints", "shop", "web"), {}).get("subsets")),
        "the Endpoints with the pod",
    )
    (subset,) = api.objects[("Endpoints", "shop", "web")]["subsets"]
    assert subset["addresses"][0]["ip"] == only_pod(runtime).ip


def bare_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": [{"name": "main", "command": ["python3", "-m", "app"]}], **spec},
    }


async def test_init_containers_run_to_completion_in_order_before_the_containers(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    api: Any = runtime.api
    init = [{"name": n, "command": ["true"]} for n in ("first", "second")]
    await api.apply([bare_pod("solo", initContainers=init)])
    await until(
        lambda: ("shop", "solo") in runtime.pods and runtime.pods[("shop", "solo")].ready,
        "the pod to be ready",
    )
    order = [n for n in FakeContainer.started_names if n != "app"]  # not the Deployment's
    assert order == ["first", "second", "main"]


async def test_a_failed_init_container_fails_a_pod_that_never_restarts(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    api: Any = runtime.api
    FakeContainer.EXIT_CODES = {"setup": 3}
    init = [{"name": "setup", "command": ["false"]}]
    await api.apply([bare_pod("doomed", initContainers=init, restartPolicy="Never")])

    def status() -> dict[str, Any]:
        return dict(api.objects[("Pod", "shop", "doomed")].get("status") or {})

    await until(lambda: status().get("phase") == "Failed", "the pod to fail")
    assert status()["message"] == "init container setup exited with 3"
    (setup,) = status()["initContainerStatuses"]
    assert setup["state"] == {"terminated": {"exitCode": 3, "reason": "Error"}}
    assert "main" not in FakeContainer.started_names


async def test_a_pod_waits_for_the_secret_it_mounts(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    api: Any = runtime.api
    pod = bare_pod("needs-secret", volumes=[{"name": "cfg", "secret": {"secretName": "cfg"}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/cfg"}]

    await api.apply([pod])

    def status() -> dict[str, Any]:
        return dict(api.objects[("Pod", "shop", "needs-secret")].get("status") or {})

    await until(lambda: status().get("reason") == "ContainerCreating", "a waiting status")
    assert 'secret "cfg"' in status()["message"].lower() or "cfg" in status()["message"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cfg", "namespace": "shop"},
        "data": {"key": "dmFsdWU="},
    }
    await api.apply([secret])
    await until(lambda: status().get("phase") == "Running", "the pod to run", timeout=10)
    box = next(b for b in FakeSandbox.made if b.args[2].endswith("needs-secret"))
    volumes, mounts = box.args[4], box.args[5]
    assert [(f.path, f.data, f.mode) for f in volumes["cfg"]] == [("key", b"value", 0o644)]
    # Secret volumes are read-only, as Kubernetes mounts them.
    assert [(m.volume, m.mount_path, m.read_only) for m in mounts["main"]] == [
        ("cfg", "/etc/cfg", True)
    ]


async def test_a_pod_the_api_refuses_is_asked_for_again_with_backoff(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    api: Any = runtime.api
    await until(lambda: bool(runtime.pods) and only_pod(runtime).ready, "the first pod")
    api.refuse = "admission: annotation bad"
    other = json.loads(json.dumps(DEPLOYMENT))
    other["metadata"]["name"] = "other"
    await api.apply([other])
    await asyncio.sleep(0.3)
    assert [p["metadata"]["name"] for p in api.pods() if "other" in p["metadata"]["name"]] == []
    assert ("shop", "other") in runtime._refused

    def conditions(name: str) -> dict[str, tuple[str, str]]:
        status = api.objects[("Deployment", "shop", name)].get("status") or {}
        return {c["type"]: (c["status"], c["message"]) for c in status.get("conditions", ())}

    # The refusal is where `kubectl describe deployment` shows it, as Kubernetes does.
    await until(lambda: "ReplicaFailure" in conditions("other"), "the refusal in the status")
    assert conditions("other")["ReplicaFailure"] == ("True", "admission: annotation bad")
    assert conditions("other")["Available"][0] == "False"
    await until(lambda: conditions("web").get("Available", ("",))[0] == "True", "web available")
    assert api.objects[("Deployment", "shop", "web")]["status"]["readyReplicas"] == 1
    api.refuse = ""
    await until(
        lambda: any(p["metadata"]["name"].startswith("other-") for p in api.pods()),
        "the pod once the API takes it",
        timeout=5,
    )


async def test_hosts_are_not_written_while_the_pods_network_is_being_made(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    await until(network.adding_started.is_set, "add_pod to start")
    pod = only_pod(runtime)
    assert pod.ip  # the IP is allocated (and published) before the network exists
    # A change that rewrites every pod's hosts file arrives while add_pod runs.
    api: Any = runtime.api
    await api.apply([service("db", "10.234.0.2")])
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
            {"type": "Ready", "status": "True"} in s.get("conditions", [])
            for s in api.pod_statuses()
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
    await api.delete([{"kind": "Deployment", "namespace": "shop", "name": "web"}])
    await asyncio.sleep(0.05)
    assert ("remove_pod", pod.netns) not in network.calls  # waits for add_pod's thread
    network.gate.set()
    await until(lambda: not runtime.pods, "the pod to be gone")
    assert network.races == []
    assert network.made == set()


async def test_each_namespace_gets_its_default_service_account(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    api: Any = runtime.api
    await until(
        lambda: ("ServiceAccount", "shop", "default") in api.objects,
        "the default ServiceAccount of shop",
    )


async def test_a_pod_waits_for_its_service_account_then_mounts_its_token(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    runtime.api_ca = b"the API's CA"
    api: Any = runtime.api
    await api.apply([bare_pod("robotic", serviceAccountName="robot")])

    def status() -> dict[str, Any]:
        return dict(api.objects[("Pod", "shop", "robotic")].get("status") or {})

    await until(lambda: status().get("reason") == "ContainerCreating", "a waiting status")
    assert 'serviceaccounts "robot" not found' in status()["message"]
    account = {"apiVersion": "v1", "kind": "ServiceAccount"}
    await api.apply([{**account, "metadata": {"name": "robot", "namespace": "shop"}}])
    await until(lambda: status().get("phase") == "Running", "the pod to run", timeout=10)
    assert api.tokens[-1] == ("shop", "robot")
    box = next(b for b in FakeSandbox.made if b.args[2].endswith("robotic"))
    volumes, mounts = box.args[4], box.args[5]
    assert {f.path: f.data for f in volumes["kube-api-access"]} == {
        "ca.crt": b"the API's CA",
        "namespace": b"shop",
        "token": f"token-{len(api.tokens)}".encode(),
    }
    assert [(m.volume, m.mount_path, m.read_only) for m in mounts["main"]] == [
        ("kube-api-access", "/var/run/secrets/kubernetes.io/serviceaccount", True)
    ]


async def test_a_pod_that_opts_out_gets_no_token(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    runtime.api_ca = b"the API's CA"
    api: Any = runtime.api
    await api.apply([bare_pod("private", automountServiceAccountToken=False)])
    await until(
        lambda: (
            (api.objects[("Pod", "shop", "private")].get("status") or {}).get("phase") == "Running"
        ),
        "the pod to run",
    )
    box = next(b for b in FakeSandbox.made if b.args[2].endswith("private"))
    assert box.args[4] == {} and box.args[5] == {"main": []}


async def test_the_token_is_replaced_before_it_expires(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    runtime.api_ca = b"the API's CA"
    api: Any = runtime.api
    api.token_life = 0.05  # replaced after 80% of it: every 40 ms
    await api.apply([bare_pod("short-lived")])
    await until(
        lambda: any(b.args[2].endswith("short-lived") for b in FakeSandbox.made),
        "the pod's sandbox",
    )
    box = next(b for b in FakeSandbox.made if b.args[2].endswith("short-lived"))
    await until(lambda: len(box.updates) >= 2, "two refreshes", timeout=5)
    volume, files = box.updates[-1]
    assert volume == "kube-api-access"
    assert {f.path for f in files} == {"ca.crt", "namespace", "token"}
    assert len(api.tokens) >= 3


async def test_a_headless_services_name_follows_its_ready_endpoints(
    runtime: kubelet.Kubelet, network: FakeNetwork
) -> None:
    network.gate.set()
    api: Any = runtime.api
    await api.apply([service("web-pods", "None"), bare_pod("client")])
    name = "web-pods.shop.svc.cluster.local"

    def resolved() -> list[str]:
        client = runtime.pods.get(("shop", "client"))
        entries = network.hosts.get(client.netns, []) if client else []
        return [e.ip for e in entries if name in e.names]

    def web_ips() -> list[str]:
        return [p.ip for (_, pod_name), p in runtime.pods.items() if pod_name != "client"]

    await until(lambda: bool(web_ips()) and resolved() == web_ips(), "the web pod's IP")
    scaled = {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 0}}
    await api.apply([scaled])
    await until(lambda: not web_ips() and resolved() == [], "the name to resolve to nothing")


async def test_endpoints_an_earlier_runtime_wrote_are_rewritten_not_deleted_first(
    tmp_path: Path,
    journal: record.Journal,
    network: FakeNetwork,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted runtime adopts running pods: deleting the Endpoints that name them,
    even for a moment, would take them out of every client's load balancing."""

    def endpoints(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": name,
                "namespace": "shop",
                "annotations": {pods.MANAGED_ANNOTATION: pods.MANAGER},
            },
            "subsets": [{"addresses": [{"ip": "10.233.0.7"}], "ports": [{"port": 80}]}],
        }

    monkeypatch.setattr(kubelet, "ContainerProcess", FakeContainer)
    api = FakeApi([NAMESPACE, DEPLOYMENT, service("web", "10.234.0.1"), *map(endpoints, "ab")])
    api.objects[("Endpoints", "shop", "web")] = api.objects.pop(("Endpoints", "shop", "a"))
    api.objects[("Endpoints", "shop", "web")]["metadata"]["name"] = "web"
    deleted: list[str] = []
    delete = api.delete

    async def recording_delete(refs: Sequence[Mapping[str, str]]) -> None:
        deleted.extend(f"{r['kind']} {r['name']}" for r in refs)
        await delete(refs)

    api.delete = recording_delete  # type: ignore[method-assign]
    running = kubelet.Kubelet(kubelet.RuntimeSettings(state_dir=tmp_path))
    running.make_sandbox = FakeSandbox  # type: ignore[assignment]
    running.api = api  # type: ignore[assignment]
    running.journal = journal
    running.network = network  # type: ignore[assignment]
    running.pool = ipam.pod_pool(ipam.MemoryRecord())
    network.gate.set()
    task = asyncio.create_task(running.run())
    try:

        def serving() -> bool:
            stored = api.objects[("Endpoints", "shop", "web")]
            addresses = [a["ip"] for s in stored["subsets"] for a in s.get("addresses", [])]
            return bool(running.pods) and addresses == [only_pod(running).ip]

        await until(serving, "the Endpoints rewritten with the pod")
        assert ("Endpoints", "shop", "b") not in api.objects  # its Service is gone
        assert [d for d in deleted if d.startswith("Endpoints")] == ["Endpoints b"]
    finally:
        running.stop()
        await asyncio.wait_for(task, 5)
        for pod in list(running.pods.values()):
            await running._remove_pod(pod)
