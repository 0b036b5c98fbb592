"""Running the controller: the CA, the push loop and the xDS server, and in local mode
the Kubernetes API server over the store.

`Controller` is usable in-process (tests start one on ephemeral ports) and from
`osm controller` (which ``osm up`` runs as a daemon). Start order: CA (refuse to start on
a damaged one); in local mode the store (creating the control plane's namespace and
default MeshConfig when absent, `osm.controller.install`) and the API server over HTTPS
(admitting pods with the injector, `osm.controller.admission`; its own CA in
``<state>/apiserver``; kubeconfigs for the user, the kubelet and the controller written
0600 in the state dir); then the push loop, which reads the API through the Kubernetes
client like any other client (`osm.kube`), and the xDS server. Stop order is the
reverse, so no write is lost half-way: a request either committed before the store
closed or was refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import dataclasses
import ipaddress
import logging
import os
import signal
import tempfile
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from osm import paths
from osm.ads import cache as ads_cache
from osm.ads import server as ads_server
from osm.apiserver import local
from osm.base import ipam, wellknown
from osm.base.identity import InvalidNodeId, NodeId
from osm.ca import builtin
from osm.ca import manager as ca_manager
from osm.ca.errors import CAError
from osm.ca.issuer import LeafRequest
from osm.controller import admission, api, install, mesh
from osm.controller import metrics as controller_metrics
from osm.injector import admission as rules
from osm.kube import config as kube_config
from osm.kube import informer
from osm.kube.client import KubeClient
from osm.kube.errors import KubeConfigError, KubeError
from osm.model import kinds
from osm.store import api as store_api
from osm.store import open_store
from osm.webhook import ca_secret, certificates
from osm.webhook import run as webhooks
from osm.webhook import server as webhook_server

log = logging.getLogger(__name__)

PROFILE_ENV = "OSM_CONTROLLER_PROFILE"
CONTROLLER_USER = "system:serviceaccount:osm-system:osm-controller"
KUBELET_USER = "system:node:osm-local"
KUBELET_GROUPS = ("system:nodes",)
MESH_KINDS = (
    "Namespace",
    "ServiceAccount",
    "Service",
    "Pod",
    "Endpoints",
    *(info.kind for info in kinds.KINDS if info.strict),
)
"""What the push loop watches: the kinds the catalog reads (the SMI and OSM kinds, and the
core kinds that place workloads); ``osm install``'s ClusterRole grants exactly these."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Where the controller keeps its state and where it listens.

    ``xds_insecure`` serves xDS without TLS (node ids are then trusted as sent): only for
    local development and for proxyless gRPC clients in tests. ``mesh_name`` is the
    ``openservicemesh.io/monitored-by`` value of the namespaces whose pods the injector
    serves; ``sidecar_xds_host`` where injected sidecars reach the ADS server (on
    `wellknown.XDS_PORT`): the controller's Service DNS name by default.
    """

    state_dir: Path = dataclasses.field(default_factory=paths.default_state_dir)
    store_url: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = wellknown.API_PORT
    http_host: str = "127.0.0.1"
    http_port: int = wellknown.CONTROLLER_HTTP_PORT
    """Metrics, health and ``/debug/proxies`` (`osm.controller.api`)."""
    xds_host: str = "127.0.0.1"
    xds_port: int = wellknown.XDS_PORT
    xds_insecure: bool = False
    mesh_name: str = rules.DEFAULT_MESH_NAME
    sidecar_xds_host: str = rules.CONTROLLER_HOST
    serve_api: bool = True
    """Local mode: serve the Kubernetes API over the store. Without it the controller is
    a client of the API that ``kubeconfig`` names (or of the in-cluster one)."""
    kubeconfig: Path | None = None
    kubernetes: bool = False
    """Kubernetes mode (``osm install``'s controller): a client of the cluster's API (no
    store, no API served), the mesh root from the ``osm-ca-bundle`` Secret, and the
    validating webhook on `webhook_port`. Implies not `serve_api`."""
    osm_namespace: str = wellknown.CONTROL_PLANE_NAMESPACE
    ca_bundle_secret_name: str = ca_secret.SECRET_NAME
    validator_webhook_config: str = ""
    """"" : ``osm-validator-mesh-<mesh>``."""
    webhook_host: str = "0.0.0.0"
    webhook_port: int = wellknown.VALIDATING_WEBHOOK_PORT

    @property
    def validator_configuration(self) -> str:
        return self.validator_webhook_config or webhooks.validating_configuration_name(
            self.mesh_name
        )

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.state_dir / 'store.db'}"


class ControllerError(Exception):
    """A problem that stops the controller from starting, said for the user."""


class Controller:
    """The control-plane process's parts, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = controller_metrics.ControllerMetrics(self.registry)
        self.store: store_api.Store | None = None
        self.ca: builtin.BuiltinCA | None = None
        self.certificates: ca_manager.CertificateManager | None = None
        self.ads: ads_server.AdsServer | None = None
        self.pusher: mesh.MeshPusher | None = None
        self._push_task: asyncio.Task[None] | None = None
        self.api: local.LocalApi | None = None
        self._http_runner: web.AppRunner | None = None
        self.http_port = settings.http_port
        self.client: KubeClient | None = None
        self.port = settings.api_port
        self.validator: webhook_server.WebhookServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ca_dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        settings = self.settings
        if settings.kubernetes:
            settings = self.settings = dataclasses.replace(settings, serve_api=False)
        if not settings.kubernetes:
            settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            if settings.kubernetes:
                self.client = self._client()
                self.ca = await self._ca_from_secret(self.client)
            else:
                self.ca = builtin.BuiltinCA.open(settings.state_dir / "ca", builtin.utc_now())
        except CAError as error:
            await self.stop()
            raise ControllerError(f"the certificate authority cannot start: {error}") from error
        except BaseException:
            await self.stop()
            raise
        self.certificates = ca_manager.CertificateManager(self.ca, builtin.utc_now)
        self.certificates.on_issued = self.metrics.issued
        try:
            if settings.serve_api:
                self.store = await open_store(settings.resolved_store_url)
                created = await install.ensure(self.store)
                if created:
                    log.info("created %s", ", ".join(str(key) for key in created))
                await self._start_api()
            if self.client is None:
                self.client = self._client()
            client = self.client
            cache = ads_cache.SnapshotCache()
            self.pusher = mesh.MeshPusher(
                lambda: informer.Informer(client, MESH_KINDS),
                cache,
                self.certificates,
                self.registry,
                grpc_mtls=not settings.xds_insecure,
            )
            self._push_task = asyncio.create_task(self.pusher.run(), name="push-loop")
            self.pusher.on_trust_bundle = self._new_trust_bundle
            tls = None if settings.xds_insecure else self._xds_tls()
            self.ads = ads_server.AdsServer(
                cache,
                self.registry,
                ads_server.ServerConfig(host=settings.xds_host, port=settings.xds_port, tls=tls),
                _SidecarCheck(self.pusher),
            )
            try:
                await self.ads.start()
            except ads_server.AdsServerError as error:
                raise ControllerError(
                    f"{error} (is another controller running? use --xds-port)"
                ) from error
            await self._start_http()
            if settings.kubernetes:
                await self._start_validator(client)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "API on %s, xDS on %s:%d, store %s",
            self.url,
            settings.xds_host,
            self.ads.port,
            settings.resolved_store_url if settings.serve_api else "(a client of the API)",
        )

    def _client(self) -> KubeClient:
        settings = self.settings
        if settings.serve_api:
            return KubeClient.from_kubeconfig(paths.controller_kubeconfig_path(settings.state_dir))
        explicit = str(settings.kubeconfig) if settings.kubeconfig else None
        try:
            if settings.kubernetes and explicit is None and kube_config.in_a_pod():
                return KubeClient.from_kubeconfig(None)  # in a pod: its service account
            return KubeClient.from_kubeconfig(kube_config.find_kubeconfig(explicit))
        except KubeConfigError as error:
            raise ControllerError(str(error)) from error

    async def _ca_from_secret(self, client: KubeClient) -> builtin.BuiltinCA:
        """The mesh root shared with the injector through the ``osm-ca-bundle`` Secret,
        mirrored in a private temporary directory (the Secret is its home; a pod's root
        filesystem is read-only but for ``/tmp``)."""
        settings = self.settings
        self._ca_dir = tempfile.TemporaryDirectory(prefix="osm-ca-")
        ca_dir = Path(self._ca_dir.name) / "ca"
        try:
            return await ca_secret.load_or_create(
                client,
                settings.osm_namespace,
                settings.ca_bundle_secret_name,
                ca_dir,
                builtin.utc_now(),
                labels={
                    wellknown.APP_NAME_LABEL: wellknown.APP_NAME,
                    wellknown.APP_INSTANCE_LABEL: settings.mesh_name,
                },
            )
        except KubeError as error:
            raise ControllerError(
                f"cannot read or create the mesh root (Secret {settings.osm_namespace}/"
                f"{settings.ca_bundle_secret_name}): {error}"
            ) from error

    async def _start_validator(self, client: KubeClient) -> None:
        """The validating webhook, and its configuration's caBundle kept current."""
        assert self.ca is not None
        settings = self.settings
        try:
            self.validator = await webhooks.start_validator(
                self.ca,
                osm_namespace=settings.osm_namespace,
                host=settings.webhook_host,
                port=settings.webhook_port,
                registry=self.registry,
            )
        except OSError as error:
            raise ControllerError(
                f"the validating webhook cannot listen on {settings.webhook_host}:"
                f"{settings.webhook_port}: {error.strerror} (use --webhook-port)"
            ) from error
        self._tasks.append(
            asyncio.create_task(
                webhooks.keep_ca_bundles(
                    client,
                    self.ca,
                    [("ValidatingWebhookConfiguration", settings.validator_configuration)],
                ),
                name="ca-bundle",
            )
        )

    def _xds_tls(self) -> ads_server.TlsConfig:
        assert self.ca is not None
        issued = self.ca.issue(
            LeafRequest.xds_server(
                wellknown.XDS_SERVER_NAMES, (ipaddress.IPv4Address(wellknown.LOCALHOST),)
            ),
            builtin.utc_now(),
        )
        return ads_server.TlsConfig(issued.cert_pem, issued.key_pem, issued.trust_bundle_pem)

    def _new_trust_bundle(self, bundle: bytes) -> None:
        if self.ads is not None and not self.settings.xds_insecure:
            self.ads.update_tls(self._xds_tls())

    async def _start_api(self) -> None:
        """The Kubernetes API over HTTPS, and the kubeconfigs that reach it."""
        assert self.store is not None
        assert self.ca is not None
        settings = self.settings
        pod_admission = admission.PodAdmission(
            rules.AdmissionSettings(
                mesh_name=settings.mesh_name, xds_host=settings.sidecar_xds_host
            ),
            certificates.issuing(self.ca, builtin.utc_now),
        )
        try:
            self.api = await local.start(
                self.store,
                settings.state_dir,
                host=settings.api_host,
                port=settings.api_port,
                admission=admission.ServerAdmission(pod_admission),
                registry=self.registry,
                server_hosts=("localhost", rules.CONTROLLER_HOST),
                # The local runtime relays pods' KUBERNETES_SERVICE_HOST, the mesh gateway.
                server_ips=(str(ipam.gateway_address(ipam.DEFAULT_POD_SUBNET)),),
                clients=(
                    local.Client(
                        paths.kubelet_kubeconfig_path(settings.state_dir),
                        KUBELET_USER,
                        KUBELET_GROUPS,
                    ),
                    local.Client(
                        paths.controller_kubeconfig_path(settings.state_dir), CONTROLLER_USER
                    ),
                ),
            )
        except local.ApiUnavailable as error:
            raise ControllerError(str(error)) from error
        self.port = self.api.port

    async def _start_http(self) -> None:
        pusher = self.pusher
        assert pusher is not None
        app = api.make_app(self.registry, self._proxy_status, pusher.synced.is_set, self.metrics)
        self._http_runner = web.AppRunner(app, access_log=None)
        await self._http_runner.setup()
        site = web.TCPSite(self._http_runner, self.settings.http_host, self.settings.http_port)
        try:
            await site.start()
        except OSError as error:
            raise ControllerError(
                f"cannot listen on {self.settings.http_host}:{self.settings.http_port}: "
                f"{error.strerror} (is another controller running? use --http-port)"
            ) from error
        self.http_port = local.bound_port(site, self.settings.http_port)

    @property
    def kubeconfig(self) -> Path:
        """The user's kubeconfig in local mode (``export KUBECONFIG=...``)."""
        return paths.kubeconfig_path(self.settings.state_dir)

    def _proxy_status(self) -> list[dict[str, object]]:
        if self.ads is None:
            return []
        return [
            api.jsonable(_status_fields(status, self.certificates)) for status in self.ads.status()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.validator is not None:
            await self.validator.stop()
            self.validator = None
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        if self.ads is not None:
            await self.ads.stop(grace=0.5)
            self.ads = None
        if self._push_task is not None:
            self._push_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._push_task
            self._push_task = None
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.api is not None:
            await self.api.stop()
            self.api = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self._ca_dir is not None:
            self._ca_dir.cleanup()
            self._ca_dir = None

    @property
    def url(self) -> str:
        return f"https://{self.settings.api_host}:{self.port}"

    @property
    def xds_port(self) -> int:
        return self.ads.port if self.ads is not None else self.settings.xds_port


DATA_PLANES = {"envoy": "envoy", mesh.PYTHON_SIDECAR_USER_AGENT: "python"}
"""A node's ``user_agent_name`` -> ``data_plane`` in ``/debug/proxies`` (others: null)."""


def _status_fields(
    status: ads_server.ProxyStatus, certificates: ca_manager.CertificateManager | None = None
) -> dict[str, object]:
    """A status as a dict; not `dataclasses.asdict`, which deep-copies and so fails on the
    read-only mapping of ACKed versions. Adds ``data_plane`` and ``cert_expiry``: the
    notAfter of the mesh certificate the manager holds as current for the proxy's identity
    (the one its SDS secret carries), or None."""
    fields = {f.name: getattr(status, f.name) for f in dataclasses.fields(status)}
    if status.last_nack is not None:
        fields["last_nack"] = dataclasses.asdict(status.last_nack)
    fields["data_plane"] = DATA_PLANES.get(status.user_agent)
    fields["cert_expiry"] = None
    if certificates is not None:
        try:
            identity = NodeId.parse(status.node_id).identity
        except InvalidNodeId:
            identity = None
        current = certificates.current(identity) if identity is not None else None
        if current is not None:
            fields["cert_expiry"] = current.not_after
    return fields


async def run(settings: Settings) -> None:
    """Runs until SIGINT or SIGTERM.

    With the environment variable ``OSM_CONTROLLER_PROFILE`` set to a path, the event
    loop's thread (the push loop, the ADS streams, the API) runs under cProfile and the
    statistics are written there on a clean stop (for `bench/ads.py --profile`).
    """
    profile_path = os.environ.get(PROFILE_ENV)
    if not profile_path:
        await _run(settings)
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await _run(settings)
    finally:
        profiler.disable()
        profiler.dump_stats(profile_path)


async def _run(settings: Settings) -> None:
    controller = Controller(settings)
    await controller.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        log.info("stopping")
        await controller.stop()


class _SidecarCheck(ads_server.ProxyCallbacks):
    """Warns when a connecting sidecar is not the data plane its pod's annotation says
    (`mesh.sidecar_mismatch`): its configuration was built for the other one."""

    def __init__(self, pusher: mesh.MeshPusher) -> None:
        self.pusher = pusher

    def on_connect(self, proxy: ads_server.ConnectedProxy) -> None:
        found = self.pusher.proxy_of(proxy.node_id)
        if found is None:
            return
        problem = mesh.sidecar_mismatch(found, proxy.node.user_agent_name)
        if problem is not None:
            log.warning("proxy %s: %s", proxy.node_id, problem)
