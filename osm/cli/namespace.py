"""``osm namespace add|remove|list|ignore``: OSM's namespace commands, through the API.

One idea: a namespace joins a mesh by a label and leaves it by losing the label, exactly
as OSM's CLI does it (``cmd/cli/namespace_*.go``), with merge patches on the Namespace:

- add: label ``openservicemesh.io/monitored-by=<mesh>`` and annotation
  ``openservicemesh.io/sidecar-injection: enabled`` (``disabled`` with
  ``--disable-sidecar-injection``); refused for the control plane's namespace and for a
  namespace labelled ``openservicemesh.io/ignore=true``;
- remove: only from the mesh named in the label; the label and the annotation go;
- list: the namespaces labelled ``monitored-by`` (by this mesh with ``--mesh-name``);
- ignore: label ``openservicemesh.io/ignore=true`` (OSM's webhook then skips its pods).

One deliberate difference: OSM's ``add`` skips a namespace already in the mesh even when
the flags ask for another injection setting, while its help says the command switches
injection; here a namespace already in the mesh with another setting is patched (its
help's behaviour). Messages are OSM's, word for word.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import click

from osm.base import wellknown
from osm.cli.client import Api, describe
from osm.cli.common import CONTEXT, connect, fail
from osm.kube.errors import ApiError, KubeError

DEFAULT_MESH_NAME = "osm"
IGNORED = "true"
"""The value of the ignore label that OSM's ``add`` refuses (``osm namespace ignore``
sets it)."""
ENABLED, DISABLED = "enabled", "disabled"


class NamespaceError(Exception):
    """A namespace command that cannot go on; the message is OSM's."""


# -- the patches ------------------------------------------------------------------------------
def add_patch(mesh_name: str, *, sidecar_injection: bool) -> dict[str, Any]:
    """The merge patch of ``osm namespace add``."""
    return {
        "metadata": {
            "labels": {wellknown.MONITORED_BY_LABEL: mesh_name},
            "annotations": {
                wellknown.SIDECAR_INJECTION_ANNOTATION: ENABLED if sidecar_injection else DISABLED
            },
        }
    }


def remove_patch() -> dict[str, Any]:
    """The merge patch of ``osm namespace remove``: null deletes a key (and is harmless
    when the key is absent)."""
    return {
        "metadata": {
            "labels": {wellknown.MONITORED_BY_LABEL: None},
            "annotations": {wellknown.SIDECAR_INJECTION_ANNOTATION: None},
        }
    }


def ignore_patch() -> dict[str, Any]:
    """The merge patch of ``osm namespace ignore``."""
    return {"metadata": {"labels": {wellknown.IGNORE_LABEL: IGNORED}}}


# -- the commands' logic (one namespace at a time, as OSM's) --------------------------------
def add(api: Api, name: str, mesh_name: str, *, sidecar_injection: bool) -> str:
    """Add one namespace to the mesh; the line to print. Raises `NamespaceError`."""
    if name == wellknown.CONTROL_PLANE_NAMESPACE:
        return (
            f"Namespace [{name}] already has [{wellknown.CONTROLLER_SERVICE}] installed and "
            f"cannot be added to mesh [{mesh_name}]"
        )
    try:
        namespace = api.get("Namespace", None, name)
    except KubeError as error:
        raise NamespaceError(
            f"Could not add namespace [{name}] to mesh [{mesh_name}]: {_text(error)}"
        ) from None
    labels, annotations = _labels(namespace), _annotations(namespace)
    wanted = ENABLED if sidecar_injection else DISABLED
    if (
        labels.get(wellknown.MONITORED_BY_LABEL) == mesh_name
        and annotations.get(wellknown.SIDECAR_INJECTION_ANNOTATION) == wanted
    ):
        return f"Namespace [{name}] has already been added to mesh [{mesh_name}]"
    if labels.get(wellknown.IGNORE_LABEL) == IGNORED:
        raise NamespaceError("Cannot add ignored namespace")
    try:
        api.patch(
            "Namespace", None, name, add_patch(mesh_name, sidecar_injection=sidecar_injection)
        )
    except KubeError as error:
        raise NamespaceError(
            f"Could not add namespace [{name}] to mesh [{mesh_name}]: {_text(error)}"
        ) from None
    return f"Namespace [{name}] successfully added to mesh [{mesh_name}]"


def remove(api: Api, name: str, mesh_name: str) -> str:
    """Remove one namespace from the mesh; the line to print. Raises `NamespaceError`."""
    try:
        namespace = api.get("Namespace", None, name)
    except KubeError as error:
        raise NamespaceError(f"Could not get namespace [{name}]: {_text(error)}") from None
    mesh = _labels(namespace).get(wellknown.MONITORED_BY_LABEL)
    if mesh is None:
        return f"Namespace [{name}] already does not belong to any mesh"
    if mesh != mesh_name:
        raise NamespaceError(
            f"Namespace belongs to mesh [{mesh}], not mesh [{mesh_name}]. "
            "Please specify the correct mesh"
        )
    try:
        api.patch("Namespace", None, name, remove_patch())
    except KubeError as error:
        raise NamespaceError(
            f"Could not remove namespace [{name}] from mesh [{mesh_name}]: {_text(error)}"
        ) from None
    return f"Namespace [{name}] successfully removed from mesh [{mesh_name}]"


def ignore(api: Api, name: str) -> str:
    """Label one namespace to be ignored; the line to print. Raises `NamespaceError`."""
    try:
        api.get("Namespace", None, name)
    except KubeError as error:
        raise NamespaceError(f"Failed to retrieve namespace [{name}]: {_text(error)}") from None
    try:
        api.patch("Namespace", None, name, ignore_patch())
    except KubeError as error:
        raise NamespaceError(
            f"Failed to configure namespace [{name}] to be ignored: {_text(error)}"
        ) from None
    return f"Successfully configured namespace [{name}] to be ignored"


def listing(api: Api, mesh_name: str = "") -> str:
    """The table of ``osm namespace list``, or OSM's line when there is nothing to list."""
    selector = wellknown.MONITORED_BY_LABEL + (f"={mesh_name}" if mesh_name else "")
    try:
        items, _ = api.list("Namespace", label_selector=selector)
    except KubeError as error:
        raise NamespaceError(
            f"Could not list namespaces related to osm [{mesh_name}]: {_text(error)}"
        ) from None
    if not items:
        return f"No namespaces in mesh [{mesh_name}]" if mesh_name else "No namespaces in any mesh"
    rows = [("NAMESPACE", "MESH", "SIDECAR-INJECTION")]
    for item in items:
        labels, annotations = _labels(item), _annotations(item)
        injection = annotations.get(wellknown.SIDECAR_INJECTION_ANNOTATION, "-")
        if wellknown.IGNORE_LABEL in labels:
            injection = "disabled (ignored)"
        name = str((item.get("metadata") or {}).get("name", ""))
        rows.append((name, labels.get(wellknown.MONITORED_BY_LABEL, ""), injection))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _text(error: KubeError) -> str:
    """The error as OSM embeds client-go's: the server's message alone."""
    if isinstance(error, ApiError):
        return error.message or str(error)
    return describe(error).removeprefix("error: ")


# -- click --------------------------------------------------------------------------------
mesh_name_option = click.option(
    "--mesh-name", default=DEFAULT_MESH_NAME, show_default=True, help="Name of the service mesh."
)


@click.group(context_settings=CONTEXT, name="namespace")
def namespace() -> None:
    """Add namespaces to a mesh, remove them, list them, or have the mesh ignore them
    (as OSM's osm namespace)."""


@namespace.command(name="add", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@mesh_name_option
@click.option(
    "--enable-sidecar-injection/--disable-sidecar-injection",
    "sidecar_injection",
    default=True,
    show_default=True,
    help="Whether pods created in the namespaces get a sidecar.",
)
@click.pass_context
def namespace_add(
    ctx: click.Context, names: tuple[str, ...], mesh_name: str, sidecar_injection: bool
) -> None:
    """Add namespaces to the mesh: label them monitored by it and, unless
    --disable-sidecar-injection, enable sidecar injection for their new pods."""
    with connect(ctx) as api:
        for name in names:
            _echo(
                functools.partial(
                    add, api, name.strip(), mesh_name, sidecar_injection=sidecar_injection
                )
            )


@namespace.command(name="remove", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@mesh_name_option
@click.pass_context
def namespace_remove(ctx: click.Context, names: tuple[str, ...], mesh_name: str) -> None:
    """Remove namespaces from the mesh (pods created later get no sidecar; running ones
    keep theirs until restarted)."""
    with connect(ctx) as api:
        for name in names:
            _echo(functools.partial(remove, api, name.strip(), mesh_name))


@namespace.command(name="list", context_settings=CONTEXT)
@click.option("--mesh-name", default="", help="Only the namespaces of this mesh.")
@click.pass_context
def namespace_list(ctx: click.Context, mesh_name: str) -> None:
    """List the namespaces in meshes and whether their new pods get sidecars."""
    with connect(ctx) as api:
        _echo(functools.partial(listing, api, mesh_name))


@namespace.command(name="ignore", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def namespace_ignore(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Keep namespaces out of every mesh: their new pods get no sidecar (running ones
    keep theirs)."""
    with connect(ctx) as api:
        for name in names:
            _echo(functools.partial(ignore, api, name.strip()))


def _echo(step: Callable[[], str]) -> None:
    """Print a step's line, or its error and exit 1 (OSM stops at the first error)."""
    try:
        click.echo(step())
    except NamespaceError as error:
        fail(str(error))
