"""``osm injector``: the sidecar injector as its own process (Kubernetes mode).

The process `osm install` deploys as ``osm-injector``: a client of the cluster's API that
serves the mutating webhook (AdmissionReview v1 over HTTPS on 9090, OSM's
``/mutate-pod-creation``) and its health and metrics on plain HTTP. Everything it does is
`osm.webhook.run.run_injector`; this module maps flags onto its settings and says what
went wrong in the user's terms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

import click

from osm.base import wellknown
from osm.ca.errors import CAError
from osm.cli.common import CONTEXT, control_plane_options, fail, kubeconfig_of, log_to_stderr
from osm.injector import patch
from osm.kube.errors import KubeConfigError, KubeError
from osm.webhook import run


@click.command(context_settings=CONTEXT)
@control_plane_options("controller")
@click.option("--mesh-name", default="osm", show_default=True, help="The mesh's name.")
@click.option(
    "--webhook-config-name",
    default=None,
    help="The MutatingWebhookConfiguration whose caBundle the injector keeps current. "
    "[default: osm-webhook-MESH_NAME]",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Listen address.")
@click.option(
    "--webhook-port",
    default=wellknown.INJECTOR_WEBHOOK_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The mutating webhook's HTTPS port.",
)
@click.option(
    "--http-port",
    default=wellknown.CONTROLLER_HTTP_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Health (/health/ready, /health/alive) and /metrics, plain HTTP.",
)
@click.option(
    "--init-container-image",
    default=patch.INIT_IMAGE,
    show_default=True,
    help="The image of the osm-init container (iptables).",
)
@click.option(
    "--sidecar-image",
    default=patch.ENVOY_IMAGE,
    show_default=True,
    help="Envoy's image, for pods on the Envoy data plane.",
)
@click.option(
    "--python-sidecar-image",
    default=patch.PYTHON_SIDECAR_IMAGE,
    show_default=True,
    help="The Python sidecar's image (also runs osm-healthcheck).",
)
@click.option(
    "--sidecar-xds-host",
    default=None,
    help="Where injected sidecars reach the controller's xDS server. [default: the "
    "controller's Service DNS name]",
)
@click.pass_context
def injector(
    ctx: click.Context,
    local_kubeconfig: str | None,
    osm_namespace: str,
    ca_bundle_secret_name: str,
    log_level: str,
    mesh_name: str,
    webhook_config_name: str | None,
    host: str,
    webhook_port: int,
    http_port: int,
    init_container_image: str,
    sidecar_image: str,
    python_sidecar_image: str,
    sidecar_xds_host: str | None,
) -> None:
    """Run the sidecar injector (the mutating admission webhook) until interrupted.

    Pods created in namespaces labelled openservicemesh.io/monitored-by=MESH_NAME get
    the osm-init container, the sidecar and its bootstrap Secret, signed by the mesh
    root kept in the CA bundle Secret.
    """
    log_to_stderr(log_level)
    settings = run.InjectorSettings(
        kubeconfig=kubeconfig_of(ctx, local_kubeconfig),
        mesh_name=mesh_name,
        osm_namespace=osm_namespace,
        ca_bundle_secret_name=ca_bundle_secret_name,
        webhook_config_name=webhook_config_name,
        host=host,
        webhook_port=webhook_port,
        http_port=http_port,
        init_container_image=init_container_image,
        sidecar_image=sidecar_image,
        python_sidecar_image=python_sidecar_image,
    )
    if sidecar_xds_host:
        settings = dataclasses.replace(settings, xds_host=sidecar_xds_host)
    try:
        asyncio.run(_run(settings))
    except KubeConfigError as error:
        fail(f"{error}; pass --kubeconfig, or run it in a pod with a service account")
    except KubeError as error:
        fail(f"the cluster's API cannot be used: {error}")
    except CAError as error:
        fail(
            f"the mesh root in Secret {osm_namespace}/{ca_bundle_secret_name} is unusable: {error}"
        )
    except OSError as error:
        fail(f"cannot listen on {host}:{webhook_port} or {host}:{http_port}: {error}")


async def _run(settings: run.InjectorSettings) -> None:
    """`run.run_injector` until SIGINT or SIGTERM."""
    task = asyncio.create_task(run.run_injector(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("stopped")
