"""The webhook processes' pieces: the injector as a whole process (`run_injector`), and
what the controller adds in Kubernetes mode (`start_validator`, `keep_ca_bundles`).

One idea: a process here is a client of the cluster's API like any other (in-cluster
configuration, or a kubeconfig): it takes the mesh root from the ``osm-ca-bundle`` Secret
(`ca_secret.load_or_create`, so the controller and the injector sign with one root across
restarts), serves its webhook with a certificate of that root, and keeps the caBundle of
its webhook configuration equal to the root's trust bundle (`cabundle.keep_ca_bundle`), at
start and every `BUNDLE_INTERVAL` after (a configuration ``osm install`` creates later, or
a rotated bundle, is caught up with then).

The CLI (``osm injector``, ``osm controller --kubernetes``) maps its flags onto
`InjectorSettings` and calls these; they run until cancelled, and cancelling them closes
what they opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from osm.base import wellknown
from osm.ca import builtin
from osm.ca.issuer import Issuer
from osm.injector import admission, patch
from osm.kube.client import KubeClient
from osm.kube.errors import KubeError
from osm.webhook import ca_secret, cabundle, certificates, injector, server, validator
from osm.webhook.view import ClusterView

log = logging.getLogger(__name__)

INJECTOR_SERVICE = wellknown.INJECTOR_SERVICE
VALIDATOR_SERVICE = wellknown.VALIDATOR_SERVICE
BUNDLE_INTERVAL = 30.0
"""Seconds between checks that the webhook configurations' caBundle is current."""


def mutating_configuration_name(mesh_name: str) -> str:
    """OSM's name of the injector's MutatingWebhookConfiguration."""
    return f"{wellknown.MUTATING_CONFIGURATION_PREFIX}{mesh_name}"


def validating_configuration_name(mesh_name: str) -> str:
    """OSM's name of the controller's ValidatingWebhookConfiguration."""
    return f"{wellknown.VALIDATING_CONFIGURATION_PREFIX}{mesh_name}"


@dataclass(frozen=True, slots=True)
class InjectorSettings:
    """``osm injector``'s flags. `kubeconfig` None: the in-cluster configuration;
    `webhook_config_name` None: ``osm-webhook-<mesh>``; `ca_dir` None: a private
    temporary directory (the Secret is the root's home). `host` is where both ports
    listen; `xds_host` where sidecars find the controller."""

    kubeconfig: Path | None = None
    mesh_name: str = admission.DEFAULT_MESH_NAME
    osm_namespace: str = wellknown.CONTROL_PLANE_NAMESPACE
    ca_bundle_secret_name: str = ca_secret.SECRET_NAME
    webhook_config_name: str | None = None
    host: str = "0.0.0.0"
    webhook_port: int = wellknown.INJECTOR_WEBHOOK_PORT
    http_port: int = wellknown.CONTROLLER_HTTP_PORT
    init_container_image: str = patch.INIT_IMAGE
    sidecar_image: str = patch.ENVOY_IMAGE
    python_sidecar_image: str = patch.PYTHON_SIDECAR_IMAGE
    healthcheck_image: str | None = None
    """None: the Python sidecar's image (the healthcheck is one of its modules)."""
    xds_host: str = admission.CONTROLLER_HOST
    ca_dir: Path | None = None

    @property
    def admission(self) -> admission.AdmissionSettings:
        return admission.AdmissionSettings(
            mesh_name=self.mesh_name,
            osm_namespace=self.osm_namespace,
            xds_host=self.xds_host,
            envoy_image=self.sidecar_image,
            init_image=self.init_container_image,
            python_sidecar_image=self.python_sidecar_image,
            healthcheck_image=self.healthcheck_image or self.python_sidecar_image,
        )

    @property
    def configuration_name(self) -> str:
        return self.webhook_config_name or mutating_configuration_name(self.mesh_name)


async def run_injector(
    settings: InjectorSettings, clock: Callable[[], datetime] = builtin.utc_now
) -> None:
    """The injector process: the CA from the Secret, the mutating webhook on
    `webhook_port` (HTTPS), health and metrics on `http_port`, the caBundle of its
    MutatingWebhookConfiguration kept current. Runs until cancelled. Raises
    `KubeConfigError` (no configuration), `KubeError` (the API cannot be reached at
    start), `CAError` (the Secret's root is unusable), OSError (a port is taken)."""
    client = KubeClient.from_kubeconfig(settings.kubeconfig)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(client.close)
        ca_dir = settings.ca_dir
        if ca_dir is None:
            ca_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="osm-ca-")))
        ca = await ca_secret.load_or_create(
            client,
            settings.osm_namespace,
            settings.ca_bundle_secret_name,
            ca_dir / "ca",
            clock(),
            labels=_labels(settings.mesh_name),
        )
        view = ClusterView(client, settings.osm_namespace)
        following = asyncio.create_task(view.run(), name="cluster-view")
        stack.push_async_callback(_cancel, following)
        webhook = await start_injector(client, ca, settings, clock, view=view)
        stack.push_async_callback(webhook.stop)
        await view.wait_synced()
        webhook.set_ready()
        await keep_ca_bundles(
            client,
            ca,
            [("MutatingWebhookConfiguration", settings.configuration_name)],
        )


async def start_injector(
    client: KubeClient,
    ca: Issuer,
    settings: InjectorSettings,
    clock: Callable[[], datetime] = builtin.utc_now,
    *,
    registry: CollectorRegistry | None = None,
    view: ClusterView | None = None,
) -> server.WebhookServer:
    """The injector's webhook server, started (not yet ready: call `set_ready`); `stop`
    it. Port 0 in `settings` binds any free port (``server.port``). With `view` (running:
    `ClusterView.run`), pods are admitted from its Namespaces and MeshConfig."""
    handler = injector.PodInjector(
        client, settings.admission, certificates.issuing(ca, clock), view=view
    )
    webhook = server.WebhookServer(
        {injector.PATH: handler},
        ca,
        clock,
        server.ServerSettings(
            service=INJECTOR_SERVICE,
            namespace=settings.osm_namespace,
            host=settings.host,
            port=settings.webhook_port,
            health_host=settings.host,
            health_port=settings.http_port,
        ),
        server.Metrics(registry),
    )
    await webhook.start()
    return webhook


async def start_validator(
    ca: Issuer,
    *,
    osm_namespace: str = wellknown.CONTROL_PLANE_NAMESPACE,
    host: str = "0.0.0.0",
    port: int = wellknown.VALIDATING_WEBHOOK_PORT,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = builtin.utc_now,
) -> server.WebhookServer:
    """The controller's validating webhook (``/validate`` over HTTPS on `port`, service
    ``osm-validator``), started and ready; `stop` it. It has no health port of its own:
    the controller's health and metrics endpoints serve (pass the controller's
    `registry` so ``osm_admission_webhook_response_total`` is on its ``/metrics``). Pair
    it with `keep_ca_bundles` for ``osm-validator-mesh-<mesh>``."""
    webhook = server.WebhookServer(
        {validator.PATH: validator.validate},
        ca,
        clock,
        server.ServerSettings(
            service=VALIDATOR_SERVICE,
            namespace=osm_namespace,
            host=host,
            port=port,
            health_port=None,
        ),
        server.Metrics(registry),
    )
    await webhook.start()
    webhook.set_ready()
    return webhook


async def keep_ca_bundles(
    client: KubeClient,
    ca: Issuer,
    configurations: Sequence[tuple[cabundle.Kind, str]],
    interval: float = BUNDLE_INTERVAL,
) -> None:
    """Keep the caBundle of each (kind, name) configuration equal to `ca`'s trust bundle:
    now and every `interval` seconds (root transitions are the CA owner's: the controller
    refreshes its CA, this reads the bundle). A missing configuration or an unreachable
    API is logged and tried again. Runs until cancelled."""
    while True:
        bundle = ca.trust_bundle().pem
        for kind, name in configurations:
            try:
                if await cabundle.keep_ca_bundle(client, kind, name, bundle):
                    log.info("%s %s: caBundle set to the mesh roots", kind, name)
            except (KubeError, cabundle.ConfigurationChanging) as error:
                log.warning("%s %s: cannot set its caBundle yet: %s", kind, name, error)
        await asyncio.sleep(interval)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _labels(mesh_name: str) -> dict[str, str]:
    return {
        wellknown.APP_NAME_LABEL: wellknown.APP_NAME,
        wellknown.APP_INSTANCE_LABEL: mesh_name,
    }
