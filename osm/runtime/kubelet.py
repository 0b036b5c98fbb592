"""The local runtime's process: follows the controller's API and runs the mesh's pods.

The one idea: this is a separate process from the controller, talking to it only through
its HTTP API (list + watch in, Pod and Endpoints objects out), as a kubelet talks to the
Kubernetes API server. So the controller can be stopped, killed or upgraded while the pods
and their sidecars keep running on their last configuration; the runtime re-lists and
carries on when the controller is back. It owns the network (`osm.runtime.network`), the
journal of everything it created (`osm.runtime.record`) and the relay that lets pods reach
the controller's xDS port at the mesh gateway (`osm.runtime.relay`). Decisions are made by
the pure `osm.runtime.pods`; this module carries them out.

Starting a pod: IP from the pod pool -> namespace, veth and hosts file -> (with sidecar
injection) OSM's interception rules, the bootstrap certificate from the controller's CA,
the sidecar as UID 1500 -> once the sidecar has its configuration, the containers as
``nobody``. Each step's time is logged (``pod ... started in``). A start that fails (an
``ip`` or ``iptables-restore`` run refused or timed out, a process that cannot be spawned)
is undone and tried again with exponential backoff, as a kubelet retries a pod sandbox:
the pod reports the error in its status meanwhile, and is never left dead.

A pod's network is made in a worker thread; until that is done, nothing else touches it
(the hosts file is refreshed only for pods whose network exists, and a removal waits for
the thread before it removes the namespace).

Why one module of ~750 lines: this is the runtime's one stateful actor. The watch loop, the
running pods and their starts, restarts and removals all change the same state on one
event loop, and its races are reasoned about together. What could leave has left: the
decisions (`osm.runtime.pods`), the network, processes, journal and bootstrap writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from osm import paths
from osm.base import ipam, wellknown
from osm.base.identity import Identity
from osm.ca import builtin
from osm.interception import apply as interception_apply
from osm.interception import rules
from osm.model import kinds
from osm.model.config import MeshConfig
from osm.model.core import Container, Deployment, Namespace, Probe, Service
from osm.model.errors import ValidationFailed
from osm.model.meta import Resource
from osm.runtime import bootstrap, network, pods, process, record
from osm.runtime.network import MeshNetwork, MeshNetworkConfig
from osm.runtime.process import ContainerProcess, ProbeTarget, ProcessSpec
from osm.runtime.relay import NamespaceRelay

log = logging.getLogger(__name__)

WATCHED = ("Namespace", "Service", "Deployment", "MeshConfig")
READY_FILE = "runtime.ready"
SIDECAR_READY_TIMEOUT = 20.0
FAST_PROBE = 0.05
SIDECAR_FAST_PROBE = 0.02
"""The sidecar's readiness gates the pod's containers: probe it more often until ready."""
START_BACKOFF_INITIAL = 1.0
START_BACKOFF_MAXIMUM = 60.0
"""Delays between attempts to start a pod whose start failed (doubling)."""
# The sidecar's lean entry point (`osm sidecar` without click and `osm.cli`): its imports
# are part of every pod's start. Arguments: --bootstrap FILE.
SIDECAR_MAIN = ("-m", "osm.proxy")


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Where the runtime keeps its state and how it reaches the controller."""

    state_dir: Path
    server: str = f"http://{paths.DEFAULT_API_ADDRESS}"
    xds_port: int = wellknown.XDS_PORT
    prefix: str = "osm"
    pod_python: Path = Path("/opt/osm/venv")
    subnet: Any = ipam.DEFAULT_POD_SUBNET

    @property
    def mesh(self) -> MeshNetworkConfig:
        return MeshNetworkConfig(netns=f"{self.prefix}-mesh", subnet=self.subnet)


# -- the controller's API, asynchronously ------------------------------------------------------
class Api:
    """The few calls the runtime makes; errors are `aiohttp.ClientError` / `OSError`."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def list(self, kind: str) -> tuple[list[dict[str, Any]], int]:
        async with self.session().get(f"{self.server}/api/v1/objects/{kind}") as response:
            response.raise_for_status()
            body = await response.json()
        return list(body["items"]), int(body["resourceVersion"])

    async def apply(self, objects: Sequence[Mapping[str, Any]]) -> None:
        payload = {"objects": list(objects), "source": "osm-runtime"}
        async with self.session().post(f"{self.server}/api/v1/apply", json=payload) as response:
            if response.status >= 400:
                raise ApiFailure(f"apply failed: HTTP {response.status}: {await response.text()}")

    async def delete(self, refs: Sequence[Mapping[str, str]]) -> None:
        payload = {"objects": list(refs), "ignoreNotFound": True}
        async with self.session().post(f"{self.server}/api/v1/delete", json=payload) as response:
            if response.status >= 400:
                raise ApiFailure(f"delete failed: HTTP {response.status}: {await response.text()}")

    async def watch(self, since: int, kinds_: Sequence[str]) -> AsyncIterator[dict[str, Any]]:
        url = f"{self.server}/api/v1/watch?since={since}&kinds={','.join(kinds_)}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with self.session().get(url, timeout=timeout) as response:
            response.raise_for_status()
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)


class ApiFailure(Exception):
    """The controller refused a write."""


# -- one pod ------------------------------------------------------------------------------------
@dataclass
class RunningPod:
    """A pod the runtime started (or is starting), with its processes."""

    namespace: str
    name: str
    deployment: str
    template_hash: str
    netns: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]
    containers_spec: tuple[Container, ...]
    service_account: str
    injected: bool
    created: float = field(default_factory=time.monotonic)
    start_time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    ip: str = ""
    phase: str = "Pending"
    message: str = ""
    sidecar: ContainerProcess | None = None
    containers: list[ContainerProcess] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    removing: bool = False
    network_ready: bool = False
    """Its namespace, veth and hosts file exist (`MeshNetwork.add_pod` has returned)."""
    start_attempts: int = 0
    blocking: asyncio.Future[Any] | None = None
    """The worker thread's call that changes this pod's network, while one runs."""

    @property
    def ready(self) -> bool:
        if self.phase != "Running" or self.removing:
            return False
        if self.sidecar is not None and not self.sidecar.ready:
            return False
        return bool(self.containers) and all(c.ready for c in self.containers)

    def state(self) -> pods.PodState:
        return pods.PodState(
            self.namespace, self.name, self.deployment, self.template_hash, self.ready, self.created
        )

    def report(self) -> pods.PodReport:
        statuses = [
            pods.ContainerStatus(c.spec.name, c.ready, c.restarts, c.pid is not None)
            for c in self.containers
        ]
        if self.sidecar is not None:
            s = self.sidecar
            statuses.append(
                pods.ContainerStatus(pods.SIDECAR_CONTAINER, s.ready, s.restarts, s.pid is not None)
            )
        return pods.PodReport(
            namespace=self.namespace,
            name=self.name,
            deployment=self.deployment,
            template_hash=self.template_hash,
            netns=self.netns,
            labels=self.labels,
            annotations=self.annotations,
            spec=self.spec,
            pod_ip=self.ip,
            phase=self.phase,
            ready=self.ready,
            containers=tuple(statuses),
            message=self.message,
            start_time=self.start_time,
            containers_spec=self.containers_spec,
        )


# -- the runtime --------------------------------------------------------------------------------
class Kubelet:
    """Runs until `stop`; use from one event loop."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.api = Api(settings.server)
        self.journal: record.Journal | None = None
        self.network: MeshNetwork | None = None
        self.pool: ipam.Pool | None = None
        self.relay: NamespaceRelay | None = None
        self.ca: builtin.BuiltinCA | None = None
        self.resources: dict[tuple[str, str, str], Resource] = {}
        self.pods: dict[tuple[str, str], RunningPod] = {}
        self.synced = False
        self._dirty = asyncio.Event()
        self._published_pods: dict[tuple[str, str], str] = {}
        self._published_endpoints: dict[tuple[str, str], str] = {}
        self._stopping = asyncio.Event()
        self._hosts: dict[str, str] = {}
        self._removals: set[asyncio.Task[None]] = set()
        # Delays between a pod's start attempts (tests make them short).
        self.start_backoff: Callable[[], process.Backoff] = lambda: process.Backoff(
            initial=START_BACKOFF_INITIAL, maximum=START_BACKOFF_MAXIMUM
        )

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Sidecars (UID 1500) read their bootstrap under the state dir: let them traverse.
        os.chmod(settings.state_dir, 0o711)
        for parent in settings.state_dir.resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                raise PermissionError(
                    f"{parent} is not searchable by other users, so the sidecars (UID "
                    f"{wellknown.PROXY_UID}) cannot read their bootstrap under "
                    f"{settings.state_dir}; "
                    "choose a state dir whose parents are (e.g. /var/lib/osm)"
                )
        self.journal = record.Journal.open(settings.state_dir)
        leftovers = record.teardown(settings.state_dir, journal=self.journal)
        if leftovers.removed:
            log.info("removed what a previous runtime left: %s", ", ".join(leftovers.removed))
        self.journal.removed(record.ALLOCATIONS, "pods")
        self.pool = ipam.pod_pool(record.JournalAllocations(self.journal, "pods"), settings.subnet)
        shutil.rmtree(self._sidecars_dir(), ignore_errors=True)
        self.network = MeshNetwork(settings.mesh, self.journal)
        await asyncio.to_thread(self.network.create)
        self.relay = NamespaceRelay(
            settings.mesh.netns,
            str(settings.mesh.gateway),
            wellknown.XDS_PORT,
            ("127.0.0.1", settings.xds_port),
        )
        await self.relay.start()

    async def run(self) -> None:
        """Follows the controller and reconciles until `stop`."""
        follower = asyncio.create_task(self._follow(), name="follow")
        try:
            while not self._stopping.is_set():
                waiter = asyncio.ensure_future(self._dirty.wait())
                stopper = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if self._stopping.is_set():
                    break
                await asyncio.sleep(0.01)  # let a burst of changes arrive together
                self._dirty.clear()
                if self.synced:
                    self._reconcile()
                    await self._publish()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        """Stops every pod, removes their objects (best effort) and tears down."""
        running = list(self.pods.values())
        await asyncio.gather(*self._removals, return_exceptions=True)
        await asyncio.gather(*(self._remove_pod(pod, forget=False) for pod in running))
        with contextlib.suppress(aiohttp.ClientError, OSError, ApiFailure, TimeoutError):
            refs = [{"kind": "Pod", "namespace": ns, "name": name} for ns, name in self.pods]
            refs += [
                {"kind": "Endpoints", "namespace": ns, "name": name}
                for ns, name in self._published_endpoints
            ]
            if refs:
                async with asyncio.timeout(5):
                    await self.api.delete(refs)
        self.pods.clear()
        if self.relay is not None:
            await self.relay.close()
        if self.journal is not None:
            report = record.teardown(self.settings.state_dir, journal=self.journal)
            for failure in report.failed:
                log.error("teardown: %s", failure)
            self.journal.close()
        shutil.rmtree(self._sidecars_dir(), ignore_errors=True)
        await self.api.close()

    def _sidecars_dir(self) -> Path:
        return self.settings.state_dir / "sidecars"

    def kick(self) -> None:
        self._dirty.set()

    # -- following the controller ------------------------------------------------------------------
    async def _follow(self) -> None:
        delay = 0.2
        while True:
            try:
                since = await self._relist()
                delay = 0.2
                async for event in self.api.watch(since, WATCHED):
                    self._apply_event(event)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                log.warning("controller unreachable (%s); pods keep running, retrying", error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _relist(self) -> int:
        resources: dict[tuple[str, str, str], Resource] = {}
        rv = 0
        for kind in WATCHED:
            items, kind_rv = await self.api.list(kind)
            rv = max(rv, kind_rv)
            for item in items:
                resource = _decode(item)
                if resource is not None:
                    resources[(resource.kind, resource.namespace, resource.name)] = resource
        self.resources = resources
        if not self.synced:
            await self._forget_stale_objects()
            self.synced = True
        # The controller may have lost writes while away: write everything again.
        self._published_pods = {key: "" for key in self._published_pods}
        self._published_endpoints = {key: "" for key in self._published_endpoints}
        self.kick()
        return rv

    async def _forget_stale_objects(self) -> None:
        """Pods and Endpoints that an earlier runtime wrote describe nothing that runs."""
        refs: list[dict[str, str]] = []
        for kind in ("Pod", "Endpoints"):
            items, _ = await self.api.list(kind)
            for item in items:
                if pods.managed(item):
                    meta = item["metadata"]
                    refs.append(
                        {"kind": kind, "namespace": meta["namespace"], "name": meta["name"]}
                    )
        if refs:
            await self.api.delete(refs)

    def _apply_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "RESYNC":
            resources = {}
            for item in event.get("objects") or ():
                resource = _decode(item)
                if resource is not None:
                    resources[(resource.kind, resource.namespace, resource.name)] = resource
            self.resources = resources
        elif kind in ("ADDED", "MODIFIED"):
            resource = _decode(event["object"])
            if resource is not None:
                self.resources[(resource.kind, resource.namespace, resource.name)] = resource
        elif kind == "DELETED":
            obj = event["object"]
            meta = obj.get("metadata") or {}
            self.resources.pop((obj.get("kind"), meta.get("namespace", ""), meta["name"]), None)
        else:
            return
        self.kick()

    def _typed(self, cls: type[Any]) -> list[Any]:
        return [r for r in self.resources.values() if isinstance(r, cls)]

    def mesh_config(self) -> MeshConfig | None:
        configs = sorted(self._typed(MeshConfig), key=lambda c: (c.namespace, c.name))
        return configs[0] if configs else None

    # -- reconciling ---------------------------------------------------------------------------
    def _reconcile(self) -> None:
        deployments: list[Deployment] = self._typed(Deployment)
        decided = pods.plan(deployments, [p.state() for p in self.pods.values() if not p.removing])
        by_key = {(d.namespace, d.name): d for d in deployments}
        for doomed in decided.remove:
            pod = self.pods.get((doomed.namespace, doomed.name))
            if pod is not None and not pod.removing:
                pod.removing = True
                task = asyncio.create_task(self._remove_pod(pod), name=f"remove-{pod.name}")
                self._removals.add(task)
                task.add_done_callback(self._removals.discard)
        for new in decided.start:
            self._start_pod(by_key[(new.namespace, new.deployment)], new.template_hash)
        self._refresh_hosts()

    def _hosts_text(self, namespace: str) -> list[network.HostEntry]:
        return pods.hosts_entries(self._typed(Service), namespace)

    def _refresh_hosts(self) -> None:
        assert self.network is not None
        for pod in self.pods.values():
            # Only once `add_pod` has returned: before, its worker thread is creating the
            # namespace and the hosts directory, and a write from here would race it (and
            # could remove the directory under it).
            if pod.removing or not pod.network_ready:
                continue
            entries = self._hosts_text(pod.namespace)
            text = network.hosts_file(entries)
            if self._hosts.get(pod.netns) != text:
                with contextlib.suppress(network.NetworkError, OSError):
                    self.network.write_hosts(pod.netns, entries)
                    self._hosts[pod.netns] = text

    def _start_pod(self, deployment: Deployment, template: str) -> None:
        while True:
            name = pods.pod_name(deployment.name, template, _suffix())
            if (deployment.namespace, name) not in self.pods:
                break
        template_spec = deployment.manifest["spec"]["template"]
        namespace = self.resources.get(("Namespace", "", deployment.namespace))
        template_annotations = deployment.template.annotations
        injected = pods.sidecar_injected(
            namespace if isinstance(namespace, Namespace) else None, template_annotations
        )
        annotations = pods.pod_annotations(template_annotations, injected)
        pod = RunningPod(
            namespace=deployment.namespace,
            name=name,
            deployment=deployment.name,
            template_hash=template,
            netns=pods.netns_name(self.settings.prefix, deployment.namespace, name),
            labels=dict(deployment.template.labels),
            annotations=annotations,
            spec=dict(template_spec.get("spec") or {}),
            containers_spec=deployment.template.spec.containers,
            service_account=deployment.template.spec.service_account_name,
            injected=injected,
        )
        self.pods[(pod.namespace, pod.name)] = pod
        pod.task = asyncio.create_task(self._run_pod(pod), name=f"pod-{name}")

    async def _run_pod(self, pod: RunningPod) -> None:
        """Starts the pod; a failed start is undone and retried with backoff until it
        succeeds or the pod is removed (which cancels this task)."""
        backoff = self.start_backoff()
        while True:
            pod.start_attempts += 1
            try:
                await self._bring_up(pod)
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one pod's failure must not stop the runtime
                delay = backoff.delay(0.0)
                log.exception(
                    "pod %s/%s failed to start (attempt %d); retrying in %gs",
                    pod.namespace,
                    pod.name,
                    pod.start_attempts,
                    delay,
                )
                pod.phase = "Pending"
                attempt = f"attempt {pod.start_attempts}, retrying in {delay:g}s"
                pod.message = f"start failed ({attempt}): {error}"
                self.kick()
                await self._release(pod)
                if pod.removing:
                    return
                await asyncio.sleep(delay)
        self.kick()

    async def _in_thread(self, pod: RunningPod, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in a worker thread, as the pod's `blocking` call: if this task
        is cancelled the thread still runs to its end, and `_release` waits for it."""
        future = asyncio.ensure_future(asyncio.to_thread(func, *args))
        pod.blocking = future
        return await asyncio.shield(future)

    async def _bring_up(self, pod: RunningPod) -> None:
        assert self.network is not None and self.pool is not None
        started = time.perf_counter()
        ip = self.pool.allocate(f"pod:{pod.namespace}/{pod.name}")
        pod.ip = str(ip)
        entries = self._hosts_text(pod.namespace)
        await self._in_thread(pod, self.network.add_pod, pod.netns, ip, entries)
        self._hosts[pod.netns] = network.hosts_file(entries)
        pod.network_ready = True
        self.kick()  # publish the Pod (with its IP): the controller builds its proxy's config
        timings = [f"network {time.perf_counter() - started:.3f}s"]
        # The build that the pod venv (a symlink, `sidecar_env`) names now: the pod runs
        # from it, and stays on it when an `osm up` of other sources switches the symlink.
        pod_python = Path(os.path.realpath(self.settings.pod_python))
        if pod.injected:
            mark = time.perf_counter()
            config = rules.config_for_pod(
                pod.annotations,
                self.mesh_config(),
                pod_ip=pod.ip,
                excluded_addresses=[str(self.settings.mesh.gateway)],
            )
            await self._in_thread(
                pod, interception_apply.apply_rules, pod.netns, rules.render(config)
            )
            timings.append(f"rules {time.perf_counter() - mark:.3f}s")
            mark = time.perf_counter()
            pod.sidecar = await self._start_sidecar(pod, pod_python)
            ready = await _wait_ready(pod.sidecar, SIDECAR_READY_TIMEOUT)
            timings.append(
                f"sidecar {time.perf_counter() - mark:.3f}s" + ("" if ready else " (NOT ready)")
            )
        if pod.removing:
            return
        env_base = {
            "PATH": f"{pod_python / 'bin'}:{process.DEFAULT_PATH}",
            "POD_NAME": pod.name,
            "POD_NAMESPACE": pod.namespace,
            "POD_IP": pod.ip,
            "PYTHONUNBUFFERED": "1",
        }
        for container in pod.containers_spec:
            env = process.container_env(container, env_base)
            spec = ProcessSpec(
                name=container.name,
                netns=pod.netns,
                argv=process.container_argv(container, env),
                env=env,
                log=process.log_path(
                    self.settings.state_dir, pod.namespace, pod.name, container.name
                ),
                readiness=container.readiness_probe,
                probe_target=ProbeTarget(pod.netns, pod.ip, container),
            )
            running = ContainerProcess(
                spec,
                self._journal(),
                on_ready_change=lambda _: self.kick(),
                fast_probe_interval=FAST_PROBE,
            )
            pod.containers.append(running)
            await running.start()
        pod.phase = "Running"
        pod.message = ""
        log.info(
            "pod %s/%s started in %.3fs (%s)%s%s",
            pod.namespace,
            pod.name,
            time.perf_counter() - started,
            ", ".join(timings),
            " with sidecar" if pod.injected else "",
            f" (attempt {pod.start_attempts})" if pod.start_attempts > 1 else "",
        )

    def _journal(self) -> record.Journal:
        assert self.journal is not None
        return self.journal

    async def _start_sidecar(self, pod: RunningPod, pod_python: Path) -> ContainerProcess:
        directory = self._sidecars_dir() / pod.netns
        self._sidecars_dir().mkdir(mode=0o711, exist_ok=True)
        os.chmod(self._sidecars_dir(), 0o711)
        ca = self._ca()
        written = bootstrap.write(
            directory,
            proxy_id=pod.name,
            identity=Identity(pod.namespace, pod.service_account),
            xds_address=f"{self.settings.mesh.gateway}:{wellknown.XDS_PORT}",
            issuer=ca,
            now=builtin.utc_now(),
            server_name=wellknown.XDS_SERVER_NAME,
        )
        for path in (directory, *directory.iterdir()):
            os.chown(path, wellknown.PROXY_UID, wellknown.PROXY_UID)
        python = str(pod_python / "bin" / "python3")
        env = {
            "PATH": f"{pod_python / 'bin'}:{process.DEFAULT_PATH}",
            "HOME": "/",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "POD_NAME": pod.name,
            "POD_NAMESPACE": pod.namespace,
            "POD_IP": pod.ip,
        }
        container = Container(pods.SIDECAR_CONTAINER)
        spec = ProcessSpec(
            name=pods.SIDECAR_CONTAINER,
            netns=pod.netns,
            argv=(python, *SIDECAR_MAIN, "--bootstrap", str(written.path)),
            env=env,
            log=process.log_path(
                self.settings.state_dir, pod.namespace, pod.name, pods.SIDECAR_CONTAINER
            ),
            uid=wellknown.PROXY_UID,
            gid=wellknown.PROXY_UID,
            readiness=Probe(
                "httpGet", port=wellknown.PROXY_ADMIN_PORT, path="/ready", period_seconds=1
            ),
            probe_target=ProbeTarget(pod.netns, "127.0.0.1", container),
        )
        sidecar = ContainerProcess(
            spec,
            self._journal(),
            on_ready_change=lambda _: self.kick(),
            fast_probe_interval=SIDECAR_FAST_PROBE,
        )
        await sidecar.start()
        return sidecar

    def _ca(self) -> builtin.BuiltinCA:
        if self.ca is None:
            self.ca = builtin.BuiltinCA.open(
                self.settings.state_dir / "ca", builtin.utc_now(), create=False
            )
        return self.ca

    async def _remove_pod(self, pod: RunningPod, *, forget: bool = True) -> None:
        pod.removing = True
        self.kick()
        if pod.task is not None and not pod.task.done():
            pod.task.cancel()
            await asyncio.gather(pod.task, return_exceptions=True)
        await self._release(pod)
        assert self.pool is not None
        self.pool.release(f"pod:{pod.namespace}/{pod.name}")
        if forget:
            self.pods.pop((pod.namespace, pod.name), None)
            self.kick()

    async def _release(self, pod: RunningPod) -> None:
        """Stops the pod's processes and removes its network (what a start made, or half
        made); the pod keeps its IP. Idempotent."""
        pod.network_ready = False
        # Forgotten only once stopped: a removal that cancels this half way stops them again.
        await asyncio.gather(*(c.stop(grace=2.0) for c in pod.containers), return_exceptions=True)
        pod.containers = []
        if pod.sidecar is not None:
            await pod.sidecar.stop(grace=1.0)
            pod.sidecar = None
        if pod.blocking is not None:  # a network change still running in its thread
            await asyncio.gather(pod.blocking, return_exceptions=True)
        assert self.network is not None
        with contextlib.suppress(network.NetworkError, OSError, RuntimeError):
            await self._in_thread(pod, self.network.remove_pod, pod.netns)
        pod.blocking = None
        self._hosts.pop(pod.netns, None)
        shutil.rmtree(self._sidecars_dir() / pod.netns, ignore_errors=True)

    # -- writing back --------------------------------------------------------------------------
    async def _publish(self) -> None:
        """Applies changed Pod and Endpoints objects, deletes those of removed pods and
        Services. On failure (controller away) it is retried on the next change."""
        reports = [p.report() for p in self.pods.values() if p.ip and not p.removing]
        current_pods = {(r.namespace, r.name): pods.pod_object(r) for r in reports}
        changes: list[dict[str, Any]] = []
        pod_texts = {key: _text(obj) for key, obj in current_pods.items()}
        for key, obj in current_pods.items():
            if self._published_pods.get(key) != pod_texts[key]:
                changes.append(obj)
        gone = [
            {"kind": "Pod", "namespace": ns, "name": name}
            for ns, name in self._published_pods
            if (ns, name) not in current_pods
        ]
        services: list[Service] = self._typed(Service)
        endpoint_texts: dict[tuple[str, str], str] = {}
        for service in services:
            endpoints = pods.endpoints_object(service, reports)
            if endpoints is None:
                continue
            key = (service.namespace, service.name)
            endpoint_texts[key] = _text(endpoints)
            if self._published_endpoints.get(key) != endpoint_texts[key]:
                changes.append(endpoints)
        gone += [
            {"kind": "Endpoints", "namespace": ns, "name": name}
            for ns, name in pods.stale_endpoints(self._published_endpoints, services)
        ]
        try:
            if changes:
                await self.api.apply(changes)
            if gone:
                await self.api.delete(gone)
        except (aiohttp.ClientError, OSError, ApiFailure, TimeoutError) as error:
            log.warning("cannot write pod status to the controller: %s", error)
            asyncio.get_running_loop().call_later(1.0, self.kick)
            return
        self._published_pods = pod_texts
        self._published_endpoints = endpoint_texts


def _text(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True)


def _suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' (no vowels: no words)
    return "".join(secrets.choice(alphabet) for _ in range(5))


def _decode(item: Mapping[str, Any]) -> Resource | None:
    try:
        return kinds.decode(item)
    except ValidationFailed as error:
        log.error("ignoring an object the model cannot read: %s", error)
        return None


async def _wait_ready(running: ContainerProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not running.ready:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def serve(settings: RuntimeSettings) -> None:
    """Runs the runtime until SIGINT/SIGTERM, then tears everything down."""
    runtime = Kubelet(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runtime.stop)
    try:
        await runtime.start()
        (settings.state_dir / READY_FILE).write_text(json.dumps({"pid": os.getpid()}))
        log.info("runtime ready: mesh network %s", settings.mesh.netns)
        await runtime.run()
    finally:
        with contextlib.suppress(FileNotFoundError):
            (settings.state_dir / READY_FILE).unlink()
        log.info("stopping: removing every pod and the mesh network")
        await runtime.shutdown()
