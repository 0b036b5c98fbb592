"""The push loop: API informer -> MeshState -> debounce -> build -> snapshot cache.

One idea: the loop keeps exactly one `MeshState` and one `Generator`, and feeds them
batches of changes; the generator recomputes only the proxies a batch can affect, and
only snapshots that actually changed are handed to the cache (which wakes only the
streams whose versions differ). Certificates enter the same way: the certificate
manager's rotation events become a rebuild of the affected identities' secrets.

The loop reads the Kubernetes API through an informer (`osm.kube.informer`), the same
code in local mode and on a cluster: a ``Sync`` replaces the whole state, a ``Change``
upserts or deletes one object.

A failing required input for one proxy (no certificate yet, an inconsistent set) keeps
that proxy's last good snapshot and is retried on the next batch; a manifest the
current model cannot read (stored by an older version) is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from osm.ads import cache as ads_cache
from osm.ads import xds_snapshot
from osm.base import identity, wellknown
from osm.base.identity import DataPlane, ProxyKind
from osm.ca import manager as ca_manager
from osm.catalog import ids, policy
from osm.catalog.state import Changed, MeshState
from osm.controller.debounce import Debouncer
from osm.controller.metrics import set_feature_flags
from osm.kube import informer
from osm.model import kinds
from osm.model.core import Namespace
from osm.model.errors import ValidationFailed
from osm.model.meta import ObjectRef, Resource
from osm.xds import generator as xds_generator
from osm.xds import snapshot as xds
from osm.xds.context import Credentials, MissingCredentials

log = logging.getLogger(__name__)

CERTIFICATE_TICK_SECONDS = 1.0

PYTHON_SIDECAR_USER_AGENT = "osm-py-sidecar"
"""The Python sidecar's ``node.user_agent_name`` (`osm.proxy.main.USER_AGENT`; the
controller does not import the sidecar)."""


def node_id(proxy: policy.Proxy) -> str:
    """The node id a proxy presents (`osm.base.identity.NodeId`):
    ``<uuid or pod>.<kind>.<sa>.<ns>``."""
    return str(identity.NodeId(proxy.node_name, proxy.kind, proxy.identity))


def sidecar_mismatch(proxy: policy.Proxy, user_agent: str) -> str | None:
    """Why a connecting sidecar's ``node.user_agent_name`` contradicts the data plane its
    pod's ``osm-py.io/sidecar`` annotation names (which chose its configuration), or
    None. Proxyless gRPC clients have no sidecar to contradict."""
    if proxy.kind != ProxyKind.SIDECAR:
        return None
    python = user_agent == PYTHON_SIDECAR_USER_AGENT
    marked = proxy.sidecar == DataPlane.PYTHON
    annotation = f"{wellknown.DATA_PLANE_ANNOTATION}: {DataPlane.PYTHON}"
    if python and not marked:
        return (
            f"it is the Python sidecar (user agent {user_agent}) but its pod is not "
            f'annotated "{annotation}": it gets Envoy\'s configuration, and rejects it '
            "when a gRPC port is HTTP/2 there"
        )
    if marked and not python:
        return (
            f'its pod is annotated "{annotation}" but the proxy says it is '
            f'"{user_agent or "(no user agent)"}": it gets the Python sidecar\'s '
            "configuration (gRPC ports as TCP; gRPC route rules deny)"
        )
    return None


class PushMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.builds = Histogram(
            "osm_snapshot_build_seconds",
            "Time to rebuild snapshots after a batch of changes",
            ["kind"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.events = Counter(
            "osm_k8s_api_event_count",
            "Kubernetes API events received, by watch event type and the object's namespace",
            ["type", "namespace"],
            registry=registry,
        )
        self.broadcasts = Counter(
            "osm_proxy_broadcast_event_count",
            "Builds published to the proxies (one per batch of changes)",
            registry=registry,
        )
        self.queued = Gauge(
            "osm_events_queued", "API events received and not yet applied", registry=registry
        )
        self.namespaces = Gauge(
            "osm_resource_namespace_count", "Namespaces monitored by the mesh", registry=registry
        )
        self.feature_flags = Gauge(
            "osm_feature_flag_enabled",
            "Whether a MeshConfig feature flag is enabled (1) or disabled (0)",
            ["feature_flag"],
            registry=registry,
        )
        self.snapshots = Gauge("osm_snapshot_count", "Proxies with a snapshot", registry=registry)
        self.build_errors = Gauge(
            "osm_snapshot_build_errors",
            "Proxies whose last update failed (they keep their last good snapshot)",
            registry=registry,
        )


class MeshPusher:
    """Keeps the snapshot cache in step with the API and the certificate manager."""

    def __init__(
        self,
        events: Callable[[], informer.Informer],
        cache: ads_cache.SnapshotCache,
        certificates: ca_manager.CertificateManager,
        registry: CollectorRegistry,
        *,
        debouncer: Debouncer | None = None,
        grpc_mtls: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events = events
        self.cache = cache
        self.certificates = certificates
        self.debouncer = debouncer or Debouncer()
        self.clock = clock
        self.metrics = PushMetrics(registry)
        self.generator = xds_generator.Generator(
            credentials=self._credentials,
            trust_bundle=certificates.trust_bundle().pem,
            grpc_mtls=grpc_mtls,
        )
        self.state = MeshState.empty()
        self.synced = asyncio.Event()
        """Set once the first full listing is built and published."""
        self._wrappers: dict[int, xds_snapshot.XdsSnapshot] = {}
        self._published: dict[ids.ProxyId, str] = {}
        self._by_node: dict[str, ids.ProxyId] = {}
        """The inverse of `_published`: which proxy a node id names."""
        self._warned: set[policy.CatalogWarning] = set()
        self._bundle_version = certificates.trust_bundle().version
        self._rotated: set[identity.Identity] = set()
        self.on_trust_bundle: Callable[[bytes], None] | None = None
        self._log_level: str | None = None
        """The MeshConfig's ``osmLogLevel`` at the last build (None: no build yet)."""
        certificates.subscribe(self._certificate_event)

    # -- certificates ----------------------------------------------------------------------
    def _credentials(self, workload: identity.Identity) -> Credentials:
        """The workload's certificate. The CA writes its state while it issues (at most
        once an hour); a full filesystem then leaves the proxy on its last configuration
        (`MissingCredentials`) instead of failing the whole build, and the next build
        tries again."""
        try:
            issued = self.certificates.get_or_issue(workload)
        except OSError as error:
            raise MissingCredentials(
                f"the certificate of {workload} cannot be issued now: {error}"
            ) from error
        return Credentials(issued.cert_pem, issued.key_pem)

    def _certificate_event(self, event: ca_manager.Event) -> None:
        if isinstance(event, ca_manager.CertificateRotated):
            self._rotated.add(event.identity)

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Follows the API (a first full listing, then changes) until cancelled."""
        events: asyncio.Queue[informer.Event | None] = asyncio.Queue()
        self.metrics.queued.set_function(events.qsize)
        reader = asyncio.create_task(self._read(events))
        ticker = asyncio.create_task(self._tick_certificates())
        pending = Changed()
        # One long-lived `get` awaited through `asyncio.wait`: unlike `wait_for`, which on
        # 3.11 can swallow a cancellation that races with the result, this lets a stop
        # always end the loop.
        getter: asyncio.Task[informer.Event | None] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(events.get())
                deadline = self.debouncer.deadline
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                done, _ = await asyncio.wait({getter}, timeout=timeout)
                if getter in done:
                    event, getter = getter.result(), None
                    if event is None:
                        return  # the informer ended
                    pending = pending.merged(self._apply_event(event))
                    if isinstance(event, informer.Sync) and not self.synced.is_set():
                        self.push(pending)  # the first build goes out at once
                        pending = Changed()
                        self.synced.set()
                        continue
                    self.debouncer.add(self.clock())
                if self.debouncer.due(self.clock()):
                    self.debouncer.flush()
                    self.push(pending)
                    pending = Changed()
        finally:
            for task in (getter, reader, ticker):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in (getter, reader, ticker) if t is not None), return_exceptions=True
            )

    async def _read(self, events: asyncio.Queue[informer.Event | None]) -> None:
        async with self.events() as stream:
            async for event in stream:
                await events.put(event)
        await events.put(None)

    def _apply_event(self, event: informer.Event) -> Changed:
        if isinstance(event, informer.Sync):
            self.metrics.events.labels("SYNC", "").inc()
            resources = [r for r in map(_decode, event.objects) if r is not None]
            self.state = MeshState.from_resources(resources)
            return Changed.all()
        meta = event.object.get("metadata") or {}
        self.metrics.events.labels(event.type, str(meta.get("namespace") or "")).inc()
        if event.type == "DELETED":
            ref = ObjectRef(
                str(event.object.get("kind")), str(meta.get("namespace") or ""), str(meta["name"])
            )
            self.state, changed = self.state.with_changes(deletes=[ref])
            return changed
        resource = _decode(event.object)
        if resource is None:
            return Changed()
        self.state, changed = self.state.with_changes(upserts=[resource])
        return changed

    async def _tick_certificates(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATE_TICK_SECONDS)
            try:
                self.certificates.tick()
            except OSError as error:  # the CA's state could not be written (a full disk)
                log.warning("certificates not renewed now, tried again in a tick: %s", error)
                continue
            bundle = self.certificates.trust_bundle()
            if bundle.version != self._bundle_version or self._rotated:
                self.push(Changed())

    def proxy_of(self, node: identity.NodeId) -> policy.Proxy | None:
        """The proxy of the last build that ``node`` names (None: not built yet)."""
        last = self.generator.last
        if last is None:
            return None
        proxy_id = self._by_node.get(str(node))
        snapshot = last.snapshots.get(proxy_id) if proxy_id is not None else None
        if snapshot is None or node_id(snapshot.proxy) != str(node):
            return None
        return snapshot.proxy

    # -- building and publishing -----------------------------------------------------------
    def push(self, changed: Changed) -> xds.Snapshots:
        """Rebuilds what `changed` (and pending certificate rotations) affect, and hands
        the changed snapshots to the cache."""
        validity = self.state.mesh_config.certificate.service_cert_validity_duration
        if self.certificates.validity != timedelta(seconds=validity):
            self.certificates.validity = timedelta(seconds=validity)
        self._follow_log_level(self.state.mesh_config.observability.osm_log_level)
        bundle = self.certificates.trust_bundle()
        new_bundle = bundle.pem if bundle.version != self._bundle_version else None
        rotated, self._rotated = self._rotated, set()
        started = time.perf_counter()
        snapshots = self.generator.build(
            self.state,
            None if changed.everything else changed,
            rotated=rotated or None,
            trust_bundle=new_bundle,
        )
        kind = "full" if snapshots.stats.full else "incremental"
        self.metrics.builds.labels(kind).observe(time.perf_counter() - started)
        if new_bundle is not None:
            self._bundle_version = bundle.version
            if self.on_trust_bundle is not None:
                self.on_trust_bundle(new_bundle)
        self._publish(snapshots)
        return snapshots

    def _follow_log_level(self, level: str) -> None:
        """A change of the MeshConfig's ``osmLogLevel`` sets the control plane's log level,
        as OSM's controller does; the value found at the first build leaves the level the
        process started with (``--log-level``) alone."""
        previous, self._log_level = self._log_level, level
        if previous is None or previous == level:
            return
        logging.getLogger("osm").setLevel(python_log_level(level))
        log.warning("log level set to %s (MeshConfig osmLogLevel; was %s)", level, previous)

    def _publish(self, snapshots: xds.Snapshots) -> None:
        live: dict[int, xds_snapshot.XdsSnapshot] = {}
        for proxy_id, snapshot in snapshots.snapshots.items():
            key = id(snapshot.resources)
            wrapper = live.get(key) or self._wrappers.get(key)
            if wrapper is None or wrapper.resource_set is not snapshot.resources:
                wrapper = xds_snapshot.XdsSnapshot(snapshot.resources)
            live[key] = wrapper
            node = node_id(snapshot.proxy)
            if proxy_id in snapshots.changed or self._published.get(proxy_id) != node:
                previous = self._published.get(proxy_id)
                if previous is not None and previous != node:
                    self.cache.clear(previous)
                    self._by_node.pop(previous, None)
                self.cache.set_snapshot(node, wrapper)
                self._published[proxy_id] = node
                self._by_node[node] = proxy_id
        for proxy_id in snapshots.removed | (set(self._published) - set(snapshots.snapshots)):
            gone = self._published.pop(proxy_id, "")
            if gone:
                self.cache.clear(gone)
                self._by_node.pop(gone, None)
        self._wrappers = live
        for proxy_id, error in sorted(snapshots.errors.items()):
            log.warning("proxy %s keeps its last configuration: %s", proxy_id, error)
        # A warning stands as long as its cause: said once when it appears, not per build.
        current = set(snapshots.warnings)
        for warning in snapshots.warnings:
            if warning not in self._warned:
                log.info("catalog: %s", warning)
        self._warned = current
        self.metrics.snapshots.set(len(snapshots.snapshots))
        self.metrics.build_errors.set(len(snapshots.errors))
        self.metrics.broadcasts.inc()
        self.metrics.namespaces.set(
            sum(
                1
                for namespace in self.state.typed(Namespace)
                if wellknown.MONITORED_BY_LABEL in namespace.metadata.labels
            )
        )
        set_feature_flags(self.metrics.feature_flags, self.state.mesh_config.feature_flags)


def _decode(item: Mapping[str, Any]) -> Resource | None:
    try:
        return kinds.decode(item)
    except ValidationFailed as error:
        log.error("ignoring a stored object the model cannot read: %s", error)
        return None


_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
    "disabled": logging.CRITICAL + 10,
}


def python_log_level(level: str) -> int:
    """The `logging` level of one of the MeshConfig's log levels (`config.LOG_LEVELS`)."""
    return _LOG_LEVELS.get(level, logging.INFO)
