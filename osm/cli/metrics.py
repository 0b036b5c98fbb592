"""``osm metrics enable|disable --namespace NS``: OSM's metrics switch, through the API.

One idea: metrics are switched per namespace, exactly as OSM's CLI does it
(``cmd/cli/metrics_*.go``): the Namespace annotation ``openservicemesh.io/metrics:
enabled`` makes the injector annotate the namespace's new pods for Prometheus
(`osm.injector.patch`), and the pods already in the mesh (those with the proxy UUID label)
are patched now with the same ``prometheus.io/scrape|port|path`` annotations (the sidecar's
Prometheus port and path); ``disable`` removes the Namespace annotation and the pods'.

Rules, as OSM's: ``--namespace`` takes one or more names (repeated, or comma-separated with
blanks around them); a namespace that is not labelled ``openservicemesh.io/monitored-by``
with the name of a mesh in the cluster is refused with OSM's message, and the command stops
at the first error. The meshes in the cluster are the ``osm-controller`` Deployments'
``meshName`` labels (Kubernetes mode) and local mode's mesh (``osm up``'s ``osm-system``).

This is also what ``osm demo`` and the demo's manifests do for the bookstore's namespaces
(OSM's demo runs ``osm metrics enable`` after ``osm namespace add``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import click

from osm.base import wellknown
from osm.cli import install as installing
from osm.cli.client import Api
from osm.cli.common import CONTEXT, connect, fail
from osm.cli.namespace import DEFAULT_MESH_NAME, ENABLED, NamespaceError
from osm.cli.namespace import _text as error_text
from osm.kube.errors import ApiError, KubeError


def pod_annotations() -> dict[str, str]:
    """What a pod in the mesh is annotated with for scraping (the sidecar's stats)."""
    return {
        wellknown.PROMETHEUS_SCRAPE_ANNOTATION: "true",
        wellknown.PROMETHEUS_PORT_ANNOTATION: str(wellknown.PROXY_PROMETHEUS_PORT),
        wellknown.PROMETHEUS_PATH_ANNOTATION: wellknown.PROMETHEUS_SCRAPE_PATH,
    }


def namespace_patch(*, enable: bool) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {wellknown.METRICS_ANNOTATION: ENABLED if enable else None}}
    }


def pod_patch(*, enable: bool) -> dict[str, Any]:
    annotations: dict[str, str | None] = dict(pod_annotations())
    if not enable:
        annotations = dict.fromkeys(annotations)
    return {"metadata": {"annotations": annotations}}


def split_namespaces(values: Iterable[str]) -> list[str]:
    """``--namespace a --namespace "b, c"`` -> a, b, c (cobra's StringSlice, trimmed)."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def mesh_names(api: Api) -> set[str]:
    """The meshes in the cluster: each controller Deployment's, and local mode's."""
    names = {mesh.name for mesh in installing.meshes(api)}
    if installing.local_mode(api):
        names.add(DEFAULT_MESH_NAME)
    return names


def monitored(namespace: Mapping[str, Any], meshes: set[str]) -> bool:
    """OSM's isMonitoredNamespace: labelled by a mesh of the cluster. Raises
    `NamespaceError` for an empty or unknown mesh name."""
    meta = namespace.get("metadata") or {}
    labels = meta.get("labels") or {}
    if wellknown.MONITORED_BY_LABEL not in labels:
        return False
    mesh = labels[wellknown.MONITORED_BY_LABEL]
    name = meta.get("name", "")
    if not mesh:
        raise NamespaceError(
            f'Label "{wellknown.MONITORED_BY_LABEL}" on namespace "{name}" cannot be empty'
        )
    if mesh not in meshes:
        raise NamespaceError(
            f'Invalid mesh name "{mesh}" used with label "{wellknown.MONITORED_BY_LABEL}" '
            f'on namespace "{name}", must be one of [{" ".join(sorted(meshes))}]'
        )
    return True


def switch(api: Api, name: str, *, enable: bool, meshes: set[str] | None = None) -> str:
    """Enable or disable metrics in one namespace; the line to print. Raises
    `NamespaceError` with OSM's messages."""
    try:
        namespace = api.get("Namespace", None, name)
    except KubeError as error:
        raise NamespaceError(
            f"Failed to retrieve namespace [{name}]: {error_text(error)}"
        ) from None
    if not monitored(namespace, mesh_names(api) if meshes is None else meshes):
        raise NamespaceError(
            f'Namespace [{name}] does not belong to a mesh, missing annotation "'
            f'{wellknown.MONITORED_BY_LABEL}"'
        )
    verb = "enable" if enable else "disable"
    try:
        api.patch("Namespace", None, name, namespace_patch(enable=enable))
    except KubeError as error:
        raise NamespaceError(
            f"Failed to {verb} metrics in namespace [{name}]: {error_text(error)}"
        ) from None
    try:
        patch_pods(api, name, enable=enable)
    except KubeError as error:
        raise NamespaceError(
            f"Failed to {verb} metrics for existing pod in namespace [{name}]: {error_text(error)}"
        ) from None
    return f"Metrics successfully {verb}d in namespace [{name}]"


def patch_pods(api: Api, namespace: str, *, enable: bool) -> list[str]:
    """Annotates (or un-annotates) the namespace's pods in the mesh; their names. A pod
    deleted meanwhile is skipped."""
    pods, _ = api.list("Pod", namespace, label_selector=wellknown.PROXY_UUID_LABEL)
    patched = []
    for pod in pods:
        name = pod["metadata"]["name"]
        try:
            api.patch("Pod", namespace, name, pod_patch(enable=enable))
        except ApiError as error:
            if error.code != 404:
                raise
            continue
        patched.append(name)
    return patched


# -- click --------------------------------------------------------------------------------
namespace_option = click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    required=True,
    help="One or more namespaces (repeat it, or separate them with commas).",
)


@click.group(context_settings=CONTEXT)
def metrics() -> None:
    """Manage metrics of the mesh's pods (as OSM's osm metrics)."""


@metrics.command(name="enable", context_settings=CONTEXT)
@namespace_option
@click.pass_context
def metrics_enable(ctx: click.Context, namespaces: tuple[str, ...]) -> None:
    """Enable metrics scraping on all pods of the given namespaces in the mesh; pods
    created later in those namespaces are annotated for scraping by the injector. Does not
    deploy Prometheus (osm up does, locally)."""
    _run(ctx, namespaces, enable=True)


@metrics.command(name="disable", context_settings=CONTEXT)
@namespace_option
@click.pass_context
def metrics_disable(ctx: click.Context, namespaces: tuple[str, ...]) -> None:
    """Disable metrics scraping on all pods of the given namespaces."""
    _run(ctx, namespaces, enable=False)


def _run(ctx: click.Context, namespaces: tuple[str, ...], *, enable: bool) -> None:
    with connect(ctx) as api:
        try:
            meshes = mesh_names(api)
        except KubeError as error:
            fail(error_text(error))
        for name in split_namespaces(namespaces):
            try:
                click.echo(switch(api, name, enable=enable, meshes=meshes))
            except NamespaceError as error:
                fail(str(error))
