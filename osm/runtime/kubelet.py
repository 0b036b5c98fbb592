"""The local runtime's process: a ReplicaSet controller and a kubelet over the controller's API.

The one idea: this is a separate process from the controller, talking to it only through
its API (list + watch in; Pods, their status and Endpoints out), as a kubelet talks to
the Kubernetes API server. So the controller can be stopped, killed or upgraded while the
pods and their sidecars keep running on their last configuration; the runtime re-lists
and carries on when the controller is back. Two loops share one event loop:

- **Deployments -> Pods**: `osm.runtime.pods.plan` says which Pods each Deployment wants;
  they are created through the API, whose admission injects the sidecar (OSM's init
  container, the Envoy or Python sidecar container, the bootstrap Secret volume), and
  deleted through it.
- **Pods -> processes**: every stored Pod runs as it was admitted: an IP and a network
  namespace (`osm.runtime.network`), a sandbox with the pod's volumes (`osm.runtime.sandbox`:
  Secret and ConfigMap files at their mountPaths, for this pod only), its init containers
  to completion in order (``osm-init`` applies OSM's iptables rules), then its containers,
  each as its ``securityContext`` says, with its env, probes and restart policy
  (`osm.runtime.podspec` derives all that, `osm.runtime.process` runs it). The runtime
  chooses nothing about sidecars: it runs what the Pod says. Its status (IP, phase,
  conditions, container states) and the Endpoints of its Services go back to the API.
- **in-cluster clients**: unless the pod (or its ServiceAccount) says
  ``automountServiceAccountToken: false``, each pod gets a token of its ServiceAccount
  through the TokenRequest API, mounted with the API's CA and its namespace at
  `podspec.SERVICE_ACCOUNT_PATH` in every container and rewritten atomically before 80%
  of its life; a ServiceAccount that does not exist keeps the pod waiting
  (``ContainerCreating``, the kubelet's FailedMount) and is tried again. The API is
  relayed from the mesh gateway's port `wellknown.API_SERVICE_PORT`, which every
  container's ``KUBERNETES_SERVICE_*`` variables name. As kube-controller-manager's
  ServiceAccount controller, the runtime creates the ``default`` ServiceAccount of each
  namespace that lacks one.
- **names**: each pod's hosts file names the controller at the mesh gateway, where the
  runtime relays xDS and the controller's metrics port (`wellknown.CONTROLLER_HTTP_PORT`,
  which Prometheus scrapes), every ClusterIP Service at its ClusterIP, and every headless
  Service at the ready IPs of the Endpoints last published for it (rewritten when they
  change), as cluster DNS answers for headless names.

**Start-up**: the runtime opens its journal and keeps the mesh network as it is (made
if missing), starts its relays (xDS, metrics, API) and follows the API. At the first
sync it adopts the pods a previous runtime (killed, say) left running, as a restarted
kubelet keeps its containers (`osm.runtime.adoption` decides which): same namespace, IP,
sandbox and processes, supervised and probed from then on, ready as their stored status
says (their Pods and Endpoints are not flipped while that happens); a container that died
meanwhile is restarted in place. Everything else the journal names is torn down, and the
IPs of pods not adopted are freed. Endpoints it wrote earlier are rewritten, not deleted
first. `shutdown` (SIGTERM: ``osm down``) removes every pod and the mesh network.

A start that fails (an ``ip`` run refused, a Secret not there yet, a process that cannot
be spawned) is undone and tried again with exponential backoff, as a kubelet retries a pod
sandbox: the pod reports the error in its status meanwhile, and is never left dead. A
pod's network is made in a worker thread; until that is done, nothing else touches it.
Everything created outside the process is journaled first (`osm.runtime.record`).

Why one module of this size: this is the runtime's one stateful actor. The watch loop, the
running pods and their starts, restarts and removals all change the same state on one
event loop, and its races are reasoned about together. The decisions are elsewhere
(`osm.runtime.pods`, `osm.runtime.podspec`), as are the network, sandbox, processes and
journal.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from osm.base import ipam, wellknown
from osm.kube import informer
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError as KubeApiError
from osm.kube.errors import ConnectionFailed, KubeConfigError
from osm.model import kinds
from osm.model.core import (
    ConfigMap,
    Deployment,
    EmptyDirVolume,
    Namespace,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from osm.model.errors import ValidationFailed
from osm.model.meta import Resource
from osm.runtime import adoption, cgroups, network, pods, podspec, process, record, sandbox
from osm.runtime.network import MeshNetwork, MeshNetworkConfig, mesh_netns
from osm.runtime.process import ContainerProcess, ProbeTarget, ProcessSpec
from osm.runtime.relay import NamespaceRelay

log = logging.getLogger(__name__)

WATCHED = (
    "Namespace",
    "Service",
    "Deployment",
    "MeshConfig",
    "Pod",
    "Secret",
    "ConfigMap",
    "ServiceAccount",
)
READY_FILE = "runtime.ready"
FAST_PROBE = 0.02
"""While a container is not ready (or not started), probe it this often: local mode
reports a pod ready as soon as it is."""
START_BACKOFF_INITIAL = 1.0
START_BACKOFF_MAXIMUM = 60.0
"""Delays between attempts to start a pod whose start failed (doubling)."""
CREATE_BACKOFF_MAXIMUM = 30.0
"""Longest wait before a Deployment's controller asks again for a Pod the API refused."""
EXPECTATION_SECONDS = 30.0
"""How long a created Pod counts for its Deployment before the watch shows it."""
TOKEN_EXPIRATION_SECONDS = 3607
"""What the kubelet asks for a pod's token (kube's admission writes 3607 seconds)."""
TOKEN_REFRESH = 0.8
"""A token is replaced once this share of its life has passed, as kube's kubelet does."""
TOKEN_RETRY = 10.0
"""Seconds between attempts to replace a token when the API does not answer."""
DEFAULT_SERVICE_ACCOUNT = "default"
POD_POOL = "pods"
"""The journal's name of the pod IP allocations (`record.JournalAllocations`)."""


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Where the runtime keeps its state and how it reaches the controller."""

    state_dir: Path
    kubeconfig: Path = Path("kubelet.kubeconfig")
    """The kubelet's kubeconfig (`osm.paths.kubelet_kubeconfig_path`), written by the
    controller that serves the API."""
    xds_port: int = wellknown.XDS_PORT
    http_port: int = wellknown.CONTROLLER_HTTP_PORT
    """The controller's metrics port on loopback, relayed from the gateway's
    `wellknown.CONTROLLER_HTTP_PORT` (Prometheus scrapes the controller there)."""
    prefix: str = "osm"
    pod_python: Path = Path("/opt/osm/venv")
    subnet: Any = ipam.DEFAULT_POD_SUBNET

    @property
    def mesh(self) -> MeshNetworkConfig:
        return MeshNetworkConfig(netns=mesh_netns(self.prefix), subnet=self.subnet)


# -- the Kubernetes API, asynchronously ---------------------------------------------------------
class ApiFailure(Exception):
    """The API refused a write: ``status`` is the HTTP status (409: conflict)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


ApiAway = (ConnectionFailed, OSError, TimeoutError)
"""What a call raises when the API does not answer (the runtime keeps pods running)."""


class Api:
    """The few calls the runtime makes, through the Kubernetes client (`osm.kube`); errors
    are `ApiFailure` (a Status) or one of `ApiAway`."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self._client: KubeClient | None = None

    def client(self) -> KubeClient:
        if self._client is None:
            self._client = KubeClient.from_kubeconfig(self.kubeconfig)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def informer(self, kinds_: Sequence[str]) -> informer.Informer:
        return informer.Informer(self.client(), kinds_)

    async def list(self, kind: str) -> list[dict[str, Any]]:
        items, _ = await self._call(self.client().list(kind))
        return list(items)

    async def create(self, obj: Mapping[str, Any]) -> None:
        await self._call(self.client().create(obj))

    async def token(self, namespace: str, name: str, seconds: int) -> tuple[str, float]:
        """A token of the ServiceAccount ``namespace/name`` and how many seconds it lives."""
        token, expires = await self._call(
            self.client().create_token(namespace, name, expiration_seconds=seconds)
        )
        until = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return token, (until - datetime.now(UTC)).total_seconds()

    def server(self) -> tuple[str, int, bytes]:
        """The API's loopback host and port and its CA (PEM), from the kubeconfig: what
        the relay forwards to and what ``ca.crt`` holds."""
        url = urllib.parse.urlsplit(self.client().server)
        document = yaml.safe_load(self.kubeconfig.read_text())
        context = next(
            c["context"] for c in document["contexts"] if c["name"] == document["current-context"]
        )
        cluster = next(
            c["cluster"] for c in document["clusters"] if c["name"] == context["cluster"]
        )
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        return url.hostname or wellknown.LOCALHOST, url.port or wellknown.API_PORT, ca_pem

    async def write_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Replaces an object's status (fields it no longer has are removed) if it is still
        at the resourceVersion ``obj`` carries: one changed or deleted meanwhile gives
        `ApiFailure` 409 or 404 instead of a stale write."""
        meta = obj["metadata"]
        patch = {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "status": pods.status_patch(obj.get("status") or {}, status),
        }
        kind, namespace, name = str(obj["kind"]), meta.get("namespace"), meta["name"]
        await self._call(self.client().patch_status(kind, namespace, name, patch))

    async def annotate(self, obj: Mapping[str, Any], annotations: Mapping[str, str]) -> None:
        """Merge-patches annotations onto an object still at its resourceVersion."""
        meta = obj["metadata"]
        patch = {
            "metadata": {"resourceVersion": meta["resourceVersion"], "annotations": annotations}
        }
        await self._call(
            self.client().patch(str(obj["kind"]), meta.get("namespace"), meta["name"], patch)
        )

    async def put(self, obj: Mapping[str, Any]) -> None:
        """Creates ``obj`` or replaces the stored one's content with it (merge patch of the
        whole object: lists such as Endpoints' subsets are replaced)."""
        meta = obj["metadata"]
        client = self.client()
        try:
            await self._call(
                client.patch(str(obj["kind"]), meta.get("namespace"), meta["name"], obj)
            )
        except ApiFailure as error:
            if error.status != 404:
                raise
            await self._call(client.create(obj))

    async def delete(self, refs: Sequence[Mapping[str, str]]) -> None:
        """Deletes each object; one that is already gone is not an error."""
        client = self.client()
        for ref in refs:
            try:
                await self._call(client.delete(ref["kind"], ref.get("namespace"), ref["name"]))
            except ApiFailure as error:
                if error.status != 404:
                    raise

    async def _call(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except KubeApiError as error:
            raise ApiFailure(error.code, _refusal(error)) from error


_T = TypeVar("_T")


def _refusal(error: KubeApiError) -> str:
    """The API's Status as one line: its message and each cause with its field."""
    parts = [error.message]
    parts += [f"{c.field}: {c.message}" if c.field else c.message for c in error.causes]
    return "; ".join(dict.fromkeys(p for p in parts if p))


# -- one pod ------------------------------------------------------------------------------------
@dataclass
class RunningPod:
    """A stored Pod the kubelet runs (or is starting), with its processes."""

    pod: Pod
    netns: str
    created: float = field(default_factory=time.monotonic)
    start_time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    ip: str = ""
    phase: str = "Pending"
    message: str = ""
    reason: str = ""
    sandbox: sandbox.PodSandbox | None = None
    init_containers: list[ContainerProcess] = field(default_factory=list)
    containers: list[ContainerProcess] = field(default_factory=list)
    initialized: bool = False
    task: asyncio.Task[None] | None = None
    removing: bool = False
    network_ready: bool = False
    """Its namespace, veth and hosts file exist (`MeshNetwork.add_pod` has returned)."""
    start_attempts: int = 0
    blocking: asyncio.Future[Any] | None = None
    """The worker thread's call that changes this pod's network, while one runs."""
    token_refresh: asyncio.Task[None] | None = None
    """Replaces the service account token before it expires, while the pod runs."""

    @property
    def namespace(self) -> str:
        return self.pod.namespace

    @property
    def name(self) -> str:
        return self.pod.name

    @property
    def uid(self) -> str:
        return self.pod.metadata.uid

    @property
    def ready(self) -> bool:
        if self.phase != "Running" or self.removing:
            return False
        return bool(self.containers) and all(c.ready for c in self.containers)

    def report(self, host_ip: str) -> pods.PodReport:
        waiting = "PodInitializing" if self.network_ready else "ContainerCreating"
        spec = self.pod.spec
        return pods.PodReport(
            namespace=self.namespace,
            name=self.name,
            labels=self.pod.metadata.labels,
            pod_ip=self.ip,
            phase=self.phase,
            ready=self.ready,
            host_ip=host_ip,
            initialized=self.initialized,
            init_containers=_statuses(
                spec.init_containers, self.init_containers, waiting, init=True
            ),
            containers=_statuses(spec.containers, self.containers, waiting, init=False),
            message=self.message,
            reason=self.reason,
            start_time=self.start_time,
            containers_spec=spec.containers,
        )


def _statuses(
    specs: Sequence[Any], running: Sequence[ContainerProcess], waiting: str, *, init: bool
) -> tuple[pods.ContainerStatus, ...]:
    by_name = {c.spec.name: c for c in running}
    statuses = []
    for container in specs:
        current = by_name.get(container.name)
        if current is None:
            statuses.append(
                pods.ContainerStatus(
                    container.name, "waiting", reason=waiting, image=container.image
                )
            )
            continue
        state = current.state
        exit_code = current.last_exit_code
        crashed = state == "waiting" and exit_code is not None
        statuses.append(
            pods.ContainerStatus(
                container.name,
                state,
                ready=current.ready if not init else state == "terminated" and exit_code == 0,
                started=current.started and state == "running",
                restarts=current.restarts,
                reason=(
                    "CrashLoopBackOff"
                    if crashed
                    else current.last_termination
                    if state == "terminated"
                    else ""
                ),
                exit_code=exit_code if state == "terminated" else None,
                last_exit_code=exit_code if state != "terminated" else None,
                last_reason=current.last_termination if state != "terminated" else "",
                image=container.image,
            )
        )
    return tuple(statuses)


class PodWaiting(Exception):
    """A pod cannot start yet for a reason outside it (a Secret it mounts is not there):
    its start is retried, and its status says why (``reason``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- the runtime --------------------------------------------------------------------------------
class Kubelet:
    """Runs until `stop`; use from one event loop."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.api = Api(settings.kubeconfig)
        self.journal: record.Journal | None = None
        self.network: MeshNetwork | None = None
        self.pool: ipam.Pool | None = None
        self.relay: NamespaceRelay | None = None
        self.http_relay: NamespaceRelay | None = None
        self.api_relay: NamespaceRelay | None = None
        self.api_ca: bytes = b""
        """The API's CA (PEM), which pods' ``ca.crt`` holds; empty until the relay runs."""
        self._accounts_asked: set[str] = set()
        """Namespaces whose ``default`` ServiceAccount this runtime has created."""
        self.resources: dict[tuple[str, str, str], Resource] = {}
        self.pods: dict[tuple[str, str], RunningPod] = {}
        self.synced = False
        self.node_name = socket.gethostname()
        self._dirty = asyncio.Event()
        self._published_pods: dict[tuple[str, str], str] = {}
        self._published_endpoints: dict[tuple[str, str], str] = {}
        self._headless: dict[tuple[str, str], list[str]] = {}
        """Headless Services' ready endpoint IPs, as last published: pods' hosts files
        name them (`pods.hosts_entries`)."""
        self._expected: dict[tuple[str, str], tuple[pods.PodState, float]] = {}
        """Pods a Deployment's controller created that the watch has not shown yet."""
        self._refused: dict[tuple[str, str], tuple[float, float, str]] = {}
        """Per Deployment whose Pod the API refused: (retry at, backoff, reason)."""
        self._stopping = asyncio.Event()
        self._adopting = False
        """Set by `start`: the first sync adopts or tears down what a previous runtime left."""
        self._hosts: dict[str, str] = {}
        self._removals: set[asyncio.Task[None]] = set()
        # Delays between a pod's start attempts (tests make them short).
        self.start_backoff: Callable[[], process.Backoff] = lambda: process.Backoff(
            initial=START_BACKOFF_INITIAL, maximum=START_BACKOFF_MAXIMUM
        )
        self.make_sandbox: Callable[..., sandbox.PodSandbox] = sandbox.PodSandbox.create
        self.cgroups = cgroups.Cgroups.detect(f"{settings.prefix}-pods")
        self.node_capacity = cgroups.node_capacity()
        self._unlimited: dict[str, str] = {}
        """Per pod (netns) whose limits are not enforced: why, for its status message."""

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Containers (UID 1500, nobody) write nothing under the state dir; their volumes
        # reach them through bind mounts, which need no search permission on the source.
        # What a previous runtime left is adopted or torn down once the API has said which
        # Pods exist (`_adopt`, at the first sync); the mesh network stays as it is.
        self.journal = record.Journal.open(settings.state_dir)
        self._adopting = True
        self.network = MeshNetwork(settings.mesh, self.journal)
        await asyncio.to_thread(self.network.create)
        self.relay = NamespaceRelay(
            settings.mesh.netns,
            str(settings.mesh.gateway),
            wellknown.XDS_PORT,
            ("127.0.0.1", settings.xds_port),
        )
        await self.relay.start()
        self.http_relay = NamespaceRelay(
            settings.mesh.netns,
            str(settings.mesh.gateway),
            wellknown.CONTROLLER_HTTP_PORT,
            ("127.0.0.1", settings.http_port),
        )
        await self.http_relay.start()
        await self._start_api_relay()

    async def _start_api_relay(self) -> None:
        """Relays the gateway's `wellknown.API_SERVICE_PORT` to the API's loopback port;
        without a readable kubeconfig, pods get no API (and no ``KUBERNETES_*``)."""
        settings = self.settings
        try:
            host, port, self.api_ca = self.api.server()
        except (KubeConfigError, OSError, ValueError, LookupError, TypeError, yaml.YAMLError) as e:
            log.warning("pods get no API: cannot read %s: %s", settings.kubeconfig, e)
            return
        self.api_relay = NamespaceRelay(
            settings.mesh.netns,
            str(settings.mesh.gateway),
            wellknown.API_SERVICE_PORT,
            (host, port),
        )
        await self.api_relay.start()

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
                    await self._create_default_accounts()
                    await self._reconcile_deployments()
                    self._reconcile()
                    await self._publish()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        """Stops every pod and tears down. The Pod objects stay (they are what users and
        Deployments asked for: the next runtime runs them again); the Endpoints it wrote
        are removed, best effort, as no pod serves them any more."""
        running = list(self.pods.values())
        await asyncio.gather(*self._removals, return_exceptions=True)
        await asyncio.gather(*(self._remove_pod(pod, forget=False) for pod in running))
        with contextlib.suppress(*ApiAway, ApiFailure):
            refs = [
                {"kind": "Endpoints", "namespace": ns, "name": name}
                for ns, name in self._published_endpoints
            ]
            if refs:
                async with asyncio.timeout(5):
                    await self.api.delete(refs)
        self.pods.clear()
        for relay in (self.relay, self.http_relay, self.api_relay):
            if relay is not None:
                await relay.close()
        if self.journal is not None:
            report = record.teardown(self.settings.state_dir, journal=self.journal)
            for failure in report.failed:
                log.error("teardown: %s", failure)
            self.journal.close()
        shutil.rmtree(self._sandboxes_dir(), ignore_errors=True)
        await self.api.close()

    def _sandboxes_dir(self) -> Path:
        return self.settings.state_dir / "pods"

    def kick(self) -> None:
        self._dirty.set()

    # -- following the controller ------------------------------------------------------------------
    async def _follow(self) -> None:
        """Keeps `resources` in step with the API (an informer relists by itself after
        a gap); an informer that fails is started again."""
        while True:
            try:
                async with self.api.informer(WATCHED) as events:
                    async for event in events:
                        await self._apply_event(event)
            except (*ApiAway, ApiFailure) as error:
                log.warning("the API is unreachable (%s); pods keep running, retrying", error)
            await asyncio.sleep(1.0)

    async def _sync(self, objects: Sequence[Mapping[str, Any]]) -> None:
        resources: dict[tuple[str, str, str], Resource] = {}
        for item in objects:
            resource = _decode(item)
            if resource is not None:
                resources[(resource.kind, resource.namespace, resource.name)] = resource
        self.resources = resources
        if not self.synced:
            if self._adopting:
                self._adopting = False
                try:
                    await self._adopt()
                except Exception:  # the runtime must run on: start from a clean slate
                    log.exception("cannot adopt what a previous runtime left; removing it")
                    await self._adopt_nothing()
            try:
                await self._forget_stale_endpoints()
            except (*ApiAway, ApiFailure) as error:
                log.warning("cannot remove stale endpoints: %s", error)
            self.synced = True
        # The API may have lost writes while away: write everything again.
        self._published_pods = {key: "" for key in self._published_pods}
        self._published_endpoints = {key: "" for key in self._published_endpoints}

    async def _forget_stale_endpoints(self) -> None:
        """Endpoints that an earlier runtime wrote: those of a Service that is gone (or
        selects no pods) are deleted; the others are rewritten by the next `_publish`
        (never deleted first: an adopted pod serving them would drop out meanwhile)."""
        items = await self.api.list("Endpoints")
        selecting = {(s.namespace, s.name) for s in self._typed(Service) if s.selector}
        keys = [
            (str(i["metadata"]["namespace"]), str(i["metadata"]["name"]))
            for i in items
            if pods.managed(i)
        ]
        refs = [
            {"kind": "Endpoints", "namespace": ns, "name": name}
            for ns, name in keys
            if (ns, name) not in selecting
        ]
        if refs:
            await self.api.delete(refs)
        for key in keys:
            if key in selecting:
                self._published_endpoints.setdefault(key, "")

    async def _apply_event(self, event: informer.Event) -> None:
        if isinstance(event, informer.Sync):
            await self._sync(event.objects)
        elif event.type in ("ADDED", "MODIFIED"):
            resource = _decode(event.object)
            if resource is None:
                return
            self.resources[(resource.kind, resource.namespace, resource.name)] = resource
            self._expected.pop((resource.namespace, resource.name), None)
        else:
            obj = event.object
            meta = obj.get("metadata") or {}
            key = (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta["name"]))
            self.resources.pop(key, None)
        self.kick()

    def _typed(self, cls: type[Any]) -> list[Any]:
        return [r for r in self.resources.values() if isinstance(r, cls)]

    def _named(self, cls: type[Any], namespace: str) -> dict[str, Any]:
        return {r.name: r for r in self._typed(cls) if r.namespace == namespace}

    # -- ServiceAccounts ------------------------------------------------------------------------
    async def _create_default_accounts(self) -> None:
        """Creates the ``default`` ServiceAccount of each namespace that has none (kube's
        ServiceAccount controller); asked once per namespace, a refusal is logged."""
        have = {a.namespace for a in self._typed(ServiceAccount) if a.name == "default"}
        namespaces: list[Namespace] = self._typed(Namespace)
        for namespace in namespaces:
            name = namespace.name
            terminating = (namespace.manifest.get("status") or {}).get("phase") == "Terminating"
            if name in have or name in self._accounts_asked or terminating:
                continue
            self._accounts_asked.add(name)
            account = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": name},
            }
            try:
                await self.api.create(account)
            except ApiFailure as error:
                if error.status != 409:
                    log.warning("cannot create the default ServiceAccount of %s: %s", name, error)
            except ApiAway as error:
                self._accounts_asked.discard(name)
                log.warning("cannot create the default ServiceAccount of %s: %s", name, error)

    async def _token_volume(self, pod: RunningPod) -> tuple[podspec.VolumeContent, float] | None:
        """The pod's service account volume and its token's life in seconds, or None when
        the pod gets none. `PodWaiting` while its ServiceAccount does not exist."""
        stored = pod.pod
        account_name = stored.spec.service_account_name or DEFAULT_SERVICE_ACCOUNT
        account = self.resources.get(("ServiceAccount", stored.namespace, account_name))
        manifest = account.manifest if account is not None else None
        if not podspec.automounts_token(stored, manifest) or not self.api_ca:
            return None
        try:
            token, life = await self.api.token(
                stored.namespace, account_name, TOKEN_EXPIRATION_SECONDS
            )
        except ApiFailure as error:
            if error.status != 404:
                raise
            volume = podspec.token_volume_name(stored)
            raise PodWaiting(
                "ContainerCreating",
                f'MountVolume.SetUp failed for volume "{volume}": serviceaccounts '
                f'"{account_name}" not found',
            ) from None
        files = podspec.token_files(token, self.api_ca, stored.namespace)
        return podspec.VolumeContent(podspec.token_volume_name(stored), files, "Memory"), life

    async def _refresh_token(self, pod: RunningPod, volume: str, life: float) -> None:
        """Replaces the pod's token files (one atomic swap) each time 80% of the current
        token's life has passed; retried every `TOKEN_RETRY` seconds when that fails."""
        delay = life * TOKEN_REFRESH
        while True:
            await asyncio.sleep(max(delay, 0.0))
            try:
                content = await self._token_volume(pod)
                if content is None or pod.sandbox is None:
                    return
                files, life = content[0].files, content[1]
                await asyncio.to_thread(pod.sandbox.update_volume, volume, files)
                delay = life * TOKEN_REFRESH
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the old token stays until a new one is there
                log.warning(
                    "pod %s/%s: cannot refresh its token: %s", pod.namespace, pod.name, error
                )
                delay = TOKEN_RETRY

    # -- Deployments -> Pods -------------------------------------------------------------------
    async def _reconcile_deployments(self) -> None:
        """Creates and deletes Pod objects so that each Deployment has its replicas."""
        deployments: list[Deployment] = self._typed(Deployment)
        now = time.monotonic()
        self._expected = {k: v for k, v in self._expected.items() if v[1] > now}
        ready = {key: pod.ready for key, pod in self.pods.items()}
        states = pods.owned_pods(self._typed(Pod), ready)
        states += [state for state, _ in self._expected.values()]
        decided = pods.plan(deployments, states)
        by_key = {(d.namespace, d.name): d for d in deployments}
        doomed = [{"kind": "Pod", "namespace": p.namespace, "name": p.name} for p in decided.remove]
        if doomed:
            try:
                await self.api.delete(doomed)
            except (*ApiAway, ApiFailure) as error:
                log.warning("cannot delete pods %s: %s", [d["name"] for d in doomed], error)
                self._retry_later(1.0)
            for ref in doomed:
                self._expected.pop((ref["namespace"], ref["name"]), None)
        creations = []
        for new in decided.start:
            key = (new.namespace, new.deployment)
            retry_at, backoff, _ = self._refused.get(key, (0.0, 0.0, ""))
            if retry_at <= now:
                creations.append(self._create_pod(by_key[key], new.template_hash, backoff))
        await asyncio.gather(*creations)  # each request admits one pod: in parallel
        stored = pods.owned_pods(self._typed(Pod), ready)
        await asyncio.gather(*(self._write_deployment_status(d, stored) for d in deployments))

    async def _write_deployment_status(
        self, deployment: Deployment, states: Sequence[pods.PodState]
    ) -> None:
        """Writes what the Deployment's pods are (and why the API refuses them), as
        Kubernetes' deployment controller does, when it changed."""
        refusal = self._refused.get((deployment.namespace, deployment.name), (0, 0, ""))[2]
        status = pods.deployment_status(deployment, states, refusal, _now())
        if status == deployment.manifest.get("status"):
            return
        try:
            await self.api.write_status(deployment.manifest, status)
        except ApiFailure as error:
            if error.status not in (404, 409):
                log.warning(
                    "cannot write the status of deployment %s/%s: %s",
                    deployment.namespace,
                    deployment.name,
                    error,
                )
        except ApiAway as error:
            log.warning("cannot write deployment status to the API: %s", error)

    async def _create_pod(self, deployment: Deployment, template: str, backoff: float) -> None:
        key = (deployment.namespace, deployment.name)
        taken = {(r.namespace, r.name) for r in self._typed(Pod)} | set(self._expected)
        while True:
            name = pods.pod_name(deployment.name, template, _suffix())
            if (deployment.namespace, name) not in taken:
                break
        # Expected from now on: the watch may show the Pod before the API has answered.
        state = pods.PodState(deployment.namespace, name, deployment.name, template)
        expected = (deployment.namespace, name)
        self._expected[expected] = (state, time.monotonic() + EXPECTATION_SECONDS)
        try:
            await self.api.create(pods.pod_manifest(deployment, template, name))
        except ApiFailure as error:
            self._expected.pop(expected, None)
            delay = min(max(backoff * 2, 1.0), CREATE_BACKOFF_MAXIMUM)
            if self._refused.get(key, (0, 0, ""))[2] != str(error):
                log.error(
                    "deployment %s/%s: the API refused its pod: %s (retrying every %gs at most)",
                    *key,
                    error,
                    CREATE_BACKOFF_MAXIMUM,
                )
            self._refused[key] = (time.monotonic() + delay, delay, str(error))
            self._retry_later(delay)
            return
        except ApiAway as error:
            self._expected.pop(expected, None)
            log.warning("cannot create a pod for %s/%s: %s", *key, error)
            self._retry_later(1.0)
            return
        self._refused.pop(key, None)

    def _retry_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.kick)

    # -- Pods -> processes ------------------------------------------------------------------------
    def _reconcile(self) -> None:
        stored: dict[tuple[str, str], Pod] = {(p.namespace, p.name): p for p in self._typed(Pod)}
        for key, running in list(self.pods.items()):
            current = stored.get(key)
            if running.removing:
                continue
            if current is None or current.metadata.uid != running.uid:
                running.removing = True
                task = asyncio.create_task(self._remove_pod(running), name=f"remove-{running.name}")
                self._removals.add(task)
                task.add_done_callback(self._removals.discard)
            else:
                running.pod = current  # its status and metadata as last written
        for key, pod in sorted(stored.items()):
            if key not in self.pods:
                self._start_pod(pod)
        self._refresh_hosts()

    def _hosts_text(self, pod: RunningPod) -> list[network.HostEntry]:
        return pods.hosts_entries(
            self._typed(Service),
            pod.namespace,
            controller_ip=str(self.settings.mesh.gateway),
            aliases=pod.pod.spec.host_aliases,
            headless=self._headless,
        )

    def _refresh_hosts(self) -> None:
        assert self.network is not None
        for pod in self.pods.values():
            # Only once `add_pod` has returned: before, its worker thread is creating the
            # namespace and the hosts directory, and a write from here would race it (and
            # could remove the directory under it).
            if pod.removing or not pod.network_ready:
                continue
            entries = self._hosts_text(pod)
            text = network.hosts_file(entries)
            if self._hosts.get(pod.netns) != text:
                with contextlib.suppress(network.NetworkError, OSError):
                    self.network.write_hosts(pod.netns, entries)
                    self._hosts[pod.netns] = text

    def _start_pod(self, stored: Pod) -> None:
        if stored.phase in ("Succeeded", "Failed"):
            return  # a pod that ran to its end stays ended, as on Kubernetes
        pod = RunningPod(
            stored, netns=pods.netns_name(self.settings.prefix, stored.namespace, stored.name)
        )
        self.pods[(pod.namespace, pod.name)] = pod
        pod.task = asyncio.create_task(self._run_pod(pod), name=f"pod-{pod.name}")

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
                waiting = isinstance(error, PodWaiting)
                (log.info if waiting else log.exception)(
                    "pod %s/%s cannot start (attempt %d: %s); retrying in %gs",
                    pod.namespace,
                    pod.name,
                    pod.start_attempts,
                    error,
                    delay,
                )
                pod.phase = "Pending"
                pod.reason = error.reason if isinstance(error, PodWaiting) else "StartError"
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
        stored = pod.pod
        secrets_ = self._named(Secret, stored.namespace)
        config_maps = self._named(ConfigMap, stored.namespace)
        try:
            volumes = podspec.volume_contents(stored, secrets_, config_maps)
        except podspec.MissingObject as missing:
            raise PodWaiting("ContainerCreating", str(missing)) from None
        token = await self._token_volume(pod)
        if token is not None:
            volumes = (*volumes, token[0])
        ip = self.pool.allocate(adoption.owner(pod.namespace, pod.name))
        pod.ip = str(ip)
        entries = self._hosts_text(pod)
        await self._in_thread(pod, self.network.add_pod, pod.netns, ip, entries)
        self._hosts[pod.netns] = network.hosts_file(entries)
        pod.network_ready = True
        self.kick()  # publish the Pod's IP: the controller builds its proxy's config
        timings = [f"network {time.perf_counter() - started:.3f}s"]
        plans = self._plans(pod, None if token is None else token[0].name)
        mark = time.perf_counter()
        pod.sandbox = await self._in_thread(
            pod,
            self.make_sandbox,
            self._journal(),
            self._sandboxes_dir(),
            pod.netns,
            pod.netns,
            {v.name: v.files for v in volumes},
            _container_mounts(plans),
            frozenset(v.name for v in stored.spec.volumes if isinstance(v.source, EmptyDirVolume)),
        )
        timings.append(f"sandbox {time.perf_counter() - mark:.3f}s")
        if pod.removing:
            return
        if token is not None:
            pod.token_refresh = asyncio.create_task(
                self._refresh_token(pod, token[0].name, token[1]), name=f"token-{pod.name}"
            )
        policy = stored.spec.restart_policy
        for plan in (p for p in plans if p.init):
            mark = time.perf_counter()
            init = self._container(pod, plan, "Never" if policy == "Never" else "OnFailure")
            pod.init_containers.append(init)
            await init.start()
            code = await init.wait()
            timings.append(f"{plan.name} {time.perf_counter() - mark:.3f}s")
            if code != 0:  # only with restartPolicy Never: the others retry until success
                pod.phase = "Failed"
                pod.reason = "InitContainerFailed"
                pod.message = f"init container {plan.name} exited with {code}"
                log.error("pod %s/%s failed: %s", pod.namespace, pod.name, pod.message)
                return
        pod.initialized = True
        for plan in (p for p in plans if not p.init):
            running = self._container(pod, plan, policy)
            pod.containers.append(running)
            await running.start()
        pod.phase = "Running"
        pod.message, pod.reason = self._unlimited.get(pod.netns, ""), ""
        log.info(
            "pod %s/%s started in %.3fs (%s)%s",
            pod.namespace,
            pod.name,
            time.perf_counter() - started,
            ", ".join(timings),
            f" (attempt {pod.start_attempts})" if pod.start_attempts > 1 else "",
        )

    def _plans(
        self, pod: RunningPod, token_volume: str | None
    ) -> tuple[podspec.ContainerPlan, ...]:
        """What each of the pod's containers runs (`podspec.container_plans`), at its IP;
        `PodWaiting` while an object its env names is missing or a container cannot run."""
        stored = pod.pod
        # The build pods run from: `osm up` names the one it made (`daemon.runtime_argv`);
        # given the shared venv symlink instead, the build it names now, which the pod
        # stays on when an `osm up` of other sources switches the symlink.
        pod_python = Path(os.path.realpath(self.settings.pod_python))
        base_env = {
            "PATH": f"{pod_python / 'bin'}:{process.DEFAULT_PATH}",
            "HOME": "/",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "HOSTNAME": pod.name,
        }
        if self.api_relay is not None:
            gateway = str(self.settings.mesh.gateway)
            base_env.update(podspec.api_env(gateway, wellknown.API_SERVICE_PORT))
        try:
            return podspec.container_plans(
                stored,
                pod_ip=pod.ip,
                host_ip=str(self.settings.mesh.gateway),
                node_name=self.node_name,
                secrets=self._named(Secret, stored.namespace),
                config_maps=self._named(ConfigMap, stored.namespace),
                base_env=base_env,
                token_volume=token_volume,
                node_capacity=self.node_capacity,
            )
        except podspec.MissingObject as missing:
            raise PodWaiting("CreateContainerConfigError", str(missing)) from None
        except podspec.CannotRun as error:
            raise PodWaiting("CreateContainerError", str(error)) from None

    def _container(
        self, pod: RunningPod, plan: podspec.ContainerPlan, restart_policy: str
    ) -> ContainerProcess:
        assert pod.sandbox is not None
        box = pod.sandbox
        cgroup = self._cgroup(pod, plan)

        def launcher(argv: Sequence[str], uid: int, gid: int) -> list[str]:
            command = box.command(plan.name, argv, uid=uid, gid=gid, working_dir=plan.working_dir)
            return cgroups.confine(command, cgroup.procs if cgroup else ())

        def start(argv: Sequence[str], uid: int, gid: int) -> list[str]:
            if cgroup is not None:  # the container's own process, not an exec probe
                cgroup.mark()
            return launcher(argv, uid, gid)

        container = plan.container
        spec = ProcessSpec(
            name=plan.name,
            netns=pod.netns,
            argv=plan.argv,
            env=plan.env,
            log=process.log_path(self.settings.state_dir, pod.namespace, pod.name, plan.name),
            uid=plan.uid,
            gid=plan.gid,
            readiness=None if plan.init else container.readiness_probe,
            liveness=None if plan.init else container.liveness_probe,
            startup=None if plan.init else container.startup_probe,
            # Probes come from outside the pod, as a kubelet's come from the node.
            probe_target=ProbeTarget(
                self.settings.mesh.netns, pod.ip, container, plan.uid, plan.gid, launcher
            ),
            restart_policy=restart_policy,
            launcher=start,
            exit_reason=(lambda: "OOMKilled" if cgroup.oom_killed() else "") if cgroup else None,
        )
        return ContainerProcess(
            spec,
            self._journal(),
            on_ready_change=lambda _: self.kick(),
            fast_probe_interval=FAST_PROBE,
        )

    def _cgroup(
        self, pod: RunningPod, plan: podspec.ContainerPlan
    ) -> cgroups.ContainerCgroup | None:
        """The container's cgroup with its memory and cpu limits (the pod's journaled
        first); None if it has no limits, or where cgroups are unavailable (then the pod's
        status message says its limits are not enforced)."""
        resources = plan.container.resources
        memory, cpu = resources.memory_limit, resources.cpu_limit
        if memory is None and cpu is None:
            return None
        directories = self.cgroups.pod_directories(pod.namespace, pod.name)
        key = self.cgroups.pod_path(pod.namespace, pod.name)
        if directories and self._journal().get(record.CGROUP, key) is None:
            paths = [str(d) for d in directories]
            self._journal().created(record.CGROUP, key, directories=paths, netns=pod.netns)
        try:
            cgroup = self.cgroups.container(
                pod.namespace, pod.name, plan.name, memory=memory, cpu=cpu
            )
        except cgroups.CgroupError as error:
            raise PodWaiting("CreateContainerError", str(error)) from None
        if cgroup is None:
            what = f"pod {pod.namespace}/{pod.name}"
            self._unlimited[pod.netns] = self.cgroups.warn_unlimited(what)
        return cgroup

    async def _remove_cgroups(self, pod: RunningPod) -> None:
        """Removes the pod's cgroups, once its processes are stopped (in a thread: it
        waits for whatever else ran in them to die)."""
        self._unlimited.pop(pod.netns, None)
        key = self.cgroups.pod_path(pod.namespace, pod.name)
        entry = self.journal.get(record.CGROUP, key) if self.journal else None
        if entry is None:
            return
        try:  # not `_in_thread`: the pod's `blocking` call is its network's
            await asyncio.to_thread(record.teardown_entry, entry)
        except (OSError, RuntimeError) as error:
            log.error("pod %s/%s: %s", pod.namespace, pod.name, error)
            return
        self._journal().removed(entry.kind, entry.key)

    def _journal(self) -> record.Journal:
        assert self.journal is not None
        return self.journal

    async def _remove_pod(self, pod: RunningPod, *, forget: bool = True) -> None:
        pod.removing = True
        self.kick()
        if pod.task is not None and not pod.task.done():
            pod.task.cancel()
            await asyncio.gather(pod.task, return_exceptions=True)
        await self._release(pod)
        assert self.pool is not None
        self.pool.release(adoption.owner(pod.namespace, pod.name))
        if forget:
            self.pods.pop((pod.namespace, pod.name), None)
            self._published_pods.pop((pod.namespace, pod.name), None)
            self.kick()

    async def _release(self, pod: RunningPod) -> None:
        """Stops the pod's processes, removes its sandbox and network (what a start made,
        or half made); the pod keeps its IP. Idempotent."""
        pod.network_ready = False
        if pod.token_refresh is not None:
            pod.token_refresh.cancel()
            await asyncio.gather(pod.token_refresh, return_exceptions=True)
            pod.token_refresh = None
        grace = float(pod.pod.spec.termination_grace_period_seconds)
        # Forgotten only once stopped: a removal that cancels this half way stops them again.
        running = [*pod.containers, *pod.init_containers]
        await asyncio.gather(
            *(c.stop(grace=min(grace, 5.0)) for c in running), return_exceptions=True
        )
        pod.containers = []
        pod.init_containers = []
        pod.initialized = False
        await self._remove_cgroups(pod)
        if pod.blocking is not None:  # a network change still running in its thread
            await asyncio.gather(pod.blocking, return_exceptions=True)
        if pod.sandbox is not None:
            with contextlib.suppress(OSError, RuntimeError):
                await self._in_thread(pod, pod.sandbox.remove)
            pod.sandbox = None
        assert self.network is not None
        with contextlib.suppress(network.NetworkError, OSError, RuntimeError):
            await self._in_thread(pod, self.network.remove_pod, pod.netns)
        pod.blocking = None
        self._hosts.pop(pod.netns, None)

    # -- adopting what a previous runtime left ------------------------------------------------
    async def _adopt(self) -> None:
        """Takes over the pods a previous runtime left running (`osm.runtime.adoption`
        decides which, from the journal and the Pods just listed), keeping their IPs;
        tears down everything else it journaled and frees the other IPs."""
        journal = self._journal()
        settings = self.settings
        entries = journal.live()
        previous = record.JournalAllocations(journal, POD_POOL).load()
        facts = await asyncio.to_thread(adoption.observe, entries, settings.mesh.netns)
        decided = adoption.decide(
            entries,
            self._typed(Pod),
            previous,
            facts,
            prefix=settings.prefix,
            mesh=settings.mesh,
        )
        for netns, why in decided.reasons.items():
            log.info("not adopting %s: %s", netns, why)
        if decided.allocations:
            journal.created(record.ALLOCATIONS, POD_POOL, allocations=dict(decided.allocations))
        else:
            journal.removed(record.ALLOCATIONS, POD_POOL)
        self.pool = ipam.pod_pool(record.JournalAllocations(journal, POD_POOL), settings.subnet)
        report = await asyncio.to_thread(
            record.teardown, settings.state_dir, journal=journal, keep=decided.keep
        )
        if report.removed:
            log.info("removed what a previous runtime left: %s", ", ".join(report.removed))
        for failure in report.failed:
            log.error("cannot remove what a previous runtime left: %s", failure)
        kept = {str(a.sandbox) for a in decided.adopt}
        base = Path(os.path.realpath(self._sandboxes_dir()))
        if base.is_dir():
            for child in base.iterdir():
                if str(child) not in kept:
                    shutil.rmtree(child, ignore_errors=True)
        stored = {(p.namespace, p.name): p for p in self._typed(Pod)}
        for adopted in decided.adopt:
            pod = RunningPod(stored[(adopted.namespace, adopted.name)], netns=adopted.netns)
            self.pods[(pod.namespace, pod.name)] = pod
            await self._adopt_pod(pod, adopted)

    async def _adopt_nothing(self) -> None:
        """What a start did before runtimes adopted pods: every pod of the journal torn
        down (those adopted so far too), every IP freed; the mesh network stays."""
        await asyncio.gather(*(self._remove_pod(pod) for pod in list(self.pods.values())))
        journal = self._journal()
        journal.removed(record.ALLOCATIONS, POD_POOL)
        self.pool = ipam.pod_pool(
            record.JournalAllocations(journal, POD_POOL), self.settings.subnet
        )
        keep = adoption.shared(journal.live(), self.settings.mesh)
        await asyncio.to_thread(
            record.teardown, self.settings.state_dir, journal=journal, keep=keep
        )

    async def _adopt_pod(self, pod: RunningPod, adopted: adoption.Adoption) -> None:
        """Takes over one pod; if that fails half way, what was taken over is removed and
        the pod started again from scratch (at the IP it had)."""
        try:
            await self._take_over(pod, adopted)
        except Exception as error:  # one pod's failure must not stop the runtime
            log.warning(
                "pod %s/%s cannot be adopted (%s); starting it again",
                pod.namespace,
                pod.name,
                error,
            )
            await self._release(pod)
            pod.phase, pod.message, pod.reason = "Pending", "", ""
            pod.start_time = datetime.now(UTC).isoformat()
            pod.task = asyncio.create_task(self._run_pod(pod), name=f"pod-{pod.name}")
        self.kick()

    async def _take_over(self, pod: RunningPod, adopted: adoption.Adoption) -> None:
        """Makes ``pod`` a running pod of this runtime: its network and sandbox as they
        are, its init containers completed, each container's process supervised (one that
        died meanwhile restarted in the sandbox, or left ended as its restartPolicy says),
        ready as its stored status says until its probes say otherwise, its restart
        counts and last states kept, its token refreshed now."""
        stored = pod.pod
        status = stored.manifest.get("status") or {}
        pod.ip = adopted.ip
        pod.start_time = str(status.get("startTime") or pod.start_time)
        pod.network_ready = True
        token_name = podspec.token_volume_name(stored)
        token = token_name if (adopted.sandbox / sandbox.VOLUMES / token_name).is_dir() else None
        plans = self._plans(pod, token)
        pinned = frozenset(m.volume for plan in plans for m in plan.mounts if m.sub_path)
        pod.sandbox = await self._in_thread(
            pod,
            sandbox.PodSandbox.attach,
            self._journal(),
            adopted.sandbox,
            pod.netns,
            [plan.name for plan in plans],
            pinned,
        )
        pod.blocking = None
        policy = stored.spec.restart_policy
        for plan in (p for p in plans if p.init):
            init = self._container(pod, plan, "Never" if policy == "Never" else "OnFailure")
            init.completed(0)
            pod.init_containers.append(init)
        pod.initialized = True
        pod.phase = "Running"
        before = {str(c.get("name")): c for c in status.get("containerStatuses") or []}
        restarted = []
        for plan in (p for p in plans if not p.init):
            container = self._container(pod, plan, policy)
            pod.containers.append(container)
            last = before.get(plan.name) or {}
            container.restarts = int(last.get("restartCount") or 0)
            terminated = (last.get("lastState") or {}).get("terminated") or {}
            if terminated:
                container.last_exit_code = int(terminated.get("exitCode") or 0)
                container.last_termination = str(terminated.get("reason") or "")
            ended = (last.get("state") or {}).get("terminated")
            if ended is not None and policy != "Always":  # ran to its end: it stays so
                container.completed(int(ended.get("exitCode") or 0))
                continue
            entry = adopted.processes.get(plan.name)
            if entry is not None:
                with contextlib.suppress(ProcessLookupError):
                    ready = bool(last.get("ready"))
                    await container.adopt(entry, ready=ready, started=bool(last.get("started")))
                    continue
            # It died while no runtime watched it: ended with an unknown status.
            restarted.append(plan.name)
            if policy == "Never":
                container.completed(process.UNKNOWN_EXIT_CODE)
            else:
                container.restarts += 1
                await container.start()
            container.last_exit_code = process.UNKNOWN_EXIT_CODE
            container.last_termination = process.UNKNOWN_EXIT_REASON
        if token is not None:
            pod.token_refresh = asyncio.create_task(
                self._refresh_token(pod, token, 0.0), name=f"token-{pod.name}"
            )
        log.info(
            "adopted pod %s/%s at %s%s",
            pod.namespace,
            pod.name,
            pod.ip,
            f" (restarted: {', '.join(restarted)})" if restarted else "",
        )

    # -- writing back --------------------------------------------------------------------------
    async def _publish(self) -> None:
        """Writes the status of Pods that changed (in parallel: one request each) and the
        Endpoints of every Service; on failure (controller away, a Pod changed meanwhile)
        it is retried later."""
        host_ip = str(self.settings.mesh.gateway)
        running = [p for p in self.pods.values() if not p.removing]
        reports = [p.report(host_ip) for p in running]
        writes = []
        for pod, report in zip(running, reports, strict=True):
            key = (pod.namespace, pod.name)
            status = pods.pod_status(report)
            text = _text(status)
            marked = pod.pod.metadata.annotations.get(wellknown.NETNS_ANNOTATION) == pod.netns
            if marked and _text(pod.pod.manifest.get("status") or {}) == text:
                self._published_pods[key] = text  # stored as it is
            elif self._published_pods.get(key) != text:  # else written, not yet watched
                writes.append(self._write_status(pod, status, text))
        outcomes = await asyncio.gather(*writes, self._publish_endpoints(reports))
        if "away" in outcomes:
            self._retry_later(1.0)
        elif "conflict" in outcomes:
            self._retry_later(0.5)  # the Pod changed; its new version comes by the watch

    async def _write_status(self, pod: RunningPod, status: dict[str, Any], text: str) -> str:
        """Writes one Pod's status (and, once, the annotation naming its network
        namespace); "ok", "conflict" (or refused) or "away"."""
        key = (pod.namespace, pod.name)
        stored = pod.pod.manifest
        try:
            if stored["metadata"].get("annotations", {}).get(wellknown.NETNS_ANNOTATION) != (
                pod.netns
            ):
                await self.api.annotate(stored, {wellknown.NETNS_ANNOTATION: pod.netns})
                return "conflict"  # the annotated Pod comes back by the watch
            await self.api.write_status(stored, status)
        except ApiFailure as error:
            if error.status not in (404, 409):
                log.warning("cannot write the status of pod %s/%s: %s", *key, error)
            return "conflict"
        except ApiAway as error:
            log.warning("cannot write pod status to the API: %s", error)
            return "away"
        self._published_pods[key] = text
        return "ok"

    async def _publish_endpoints(self, reports: Sequence[pods.PodReport]) -> str:
        """Writes the Endpoints that changed; "ok" or "away"."""
        reports = [r for r in reports if r.pod_ip]
        services: list[Service] = self._typed(Service)
        changes: list[dict[str, Any]] = []
        endpoint_texts: dict[tuple[str, str], str] = {}
        headless: dict[tuple[str, str], list[str]] = {}
        for service in services:
            endpoints = pods.endpoints_object(service, reports)
            if endpoints is None:
                continue
            key = (service.namespace, service.name)
            if service.headless:
                headless[key] = pods.ready_addresses(endpoints)
            endpoint_texts[key] = _text(endpoints)
            if self._published_endpoints.get(key) != endpoint_texts[key]:
                changes.append(endpoints)
        gone = [
            {"kind": "Endpoints", "namespace": ns, "name": name}
            for ns, name in pods.stale_endpoints(self._published_endpoints, services)
        ]
        try:
            await asyncio.gather(*(self.api.put(endpoints) for endpoints in changes))
            if gone:
                await self.api.delete(gone)
        except (*ApiAway, ApiFailure) as error:
            log.warning("cannot write endpoints to the API: %s", error)
            return "away"
        self._published_endpoints = endpoint_texts
        if headless != self._headless:
            self._headless = headless
            self._refresh_hosts()
        return "ok"


def _container_mounts(plans: Sequence[podspec.ContainerPlan]) -> dict[str, list[sandbox.Mount]]:
    """Each container's mounts (every container, with or without; `podspec` makes Secret
    and ConfigMap volumes read-only whatever the mount says, as Kubernetes does)."""
    return {
        plan.name: [
            sandbox.Mount(m.volume, m.mount_path, m.read_only, m.sub_path) for m in plan.mounts
        ]
        for plan in plans
    }


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


def _now() -> str:
    """Now as Kubernetes writes times (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
