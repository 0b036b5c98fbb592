"""``osm policy check-pods SOURCE_POD DESTINATION_POD``: may one pod call another, and why.

The one idea: the command reads the mesh's objects through the API (the kinds the
controller's push loop watches), builds the same `MeshState` and `Catalog` the controller
builds, and prints `osm.catalog.explain.explain`'s answer: per port and route of every
service the destination serves, allowed or denied and the object that decides, with the
source's Retry, the service's limits and the catalog's warnings about the objects
involved. OSM's lines open and close the output (its mode line, its verdict line naming
the TrafficTargets), so a reader of OSM's docs finds them.

Pods are ``NAMESPACE/NAME`` or ``NAME`` (namespace ``default``), as OSM's. Exit status:
0 when the source may call the destination on some port, 2 when it may call none (OSM
exits 0 in both cases; a script can test ours), 1 on an error (a missing pod or namespace,
no API).
"""

from __future__ import annotations

import io
import shutil
import sys

import click

from osm.base import wellknown
from osm.catalog import explain
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId
from osm.catalog.state import MeshState
from osm.cli import output
from osm.cli.client import Api
from osm.cli.common import CONTEXT, connect, fail, fail_with
from osm.kube.errors import ApiError, KubeError
from osm.model import kinds
from osm.model.core import Namespace
from osm.model.errors import ValidationFailed
from osm.model.meta import Resource

DENIED_EXIT = 2
"""Exit status when the source may call the destination on no port."""
TABLE_WIDTH = 120
"""The table's width when the output is not a terminal (files, pipes, golden files)."""


def mesh_kinds() -> tuple[str, ...]:
    """The kinds the catalog reads: those the controller's push loop watches."""
    from osm.controller.server import MESH_KINDS

    return MESH_KINDS


def read_mesh(api: Api) -> MeshState:
    """Every object the catalog reads, listed through the API, as one `MeshState` (an
    object the model cannot read is left out, as the controller leaves it out; a kind
    the server does not serve has no objects). Raises `KubeError`."""
    resources: list[Resource] = []
    for kind in mesh_kinds():
        try:
            items, _version = api.list(kind, None)
        except ApiError as error:
            if error.code == 404:  # a cluster without this CRD has no such objects
                continue
            raise
        for item in items:
            try:
                resources.append(kinds.decode(item))
            except ValidationFailed:
                continue
    return MeshState.from_resources(resources)


def parse_pod(text: str, role: str) -> ProxyId:
    """OSM's pod argument: ``NAMESPACE/NAME``, or ``NAME`` in namespace ``default``."""
    parts = text.split("/")
    if text and len(parts) == 1:
        return ProxyId("default", text)
    if len(parts) == 2 and all(parts):
        return ProxyId(parts[0], parts[1])
    fail(
        f"Invalid argument specified for the {role} pod [{text}]: Pod name should be of the "
        "form <namespace/pod>, or <pod> for default namespace"
    )


def check_exists(state: MeshState, pod: ProxyId) -> None:
    """Exit 1 with OSM's message when ``pod`` (or its namespace) does not exist."""
    if state.pod(pod.namespace, pod.name) is not None:
        return
    if not isinstance(state.namespace(pod.namespace), Namespace):
        fail(
            f"Could not find pod {pod.name} in namespace {pod.namespace}: namespace "
            f'"{pod.namespace}" does not exist'
        )
    fail(f"Could not find pod {pod.name} in namespace {pod.namespace}")


# -- rendering -------------------------------------------------------------------------------
def render(found: explain.Explanation, width: int = TABLE_WIDTH) -> str:
    """The human form: OSM's mode line, the pods, a table of ports and routes, notes,
    warnings, and OSM's verdict line(s)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, color_system=None, force_terminal=False, highlight=False
    )
    namespace = wellknown.CONTROL_PLANE_NAMESPACE
    if found.permissive:
        mode = (
            "[+] Permissive mode enabled for mesh operated by osm-controller running in "
            f"'{namespace}' namespace"
        )
    else:
        mode = (
            "[+] SMI traffic policy mode enabled for mesh operated by osm-controller "
            f"running in {namespace} namespace"
        )
    lines = [mode, ""]
    for role, pod, identity, sidecar in (
        ("Source:     ", found.source, found.source_identity, found.source_sidecar),
        ("Destination:", found.destination, found.destination_identity, found.destination_sidecar),
    ):
        plane = "no sidecar" if sidecar == "none" else f"{sidecar} sidecar"
        lines.append(f"{role} {pod} (service account {identity}, {plane})")
    policy_mode = "permissive" if found.permissive else "SMI"
    lines.append(f"Policy:      {policy_mode} ({found.mesh_config})")
    lines += [f"Not meshed:  {reason}" for reason in found.membership]
    console.print("\n".join(lines), markup=False, soft_wrap=True)
    if found.ports:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for header in ("SERVICE PORT", "PROTOCOL", "ROUTE", "VERDICT", "DECIDED BY"):
            table.add_column(header, overflow="fold")
        for port in found.ports:
            name = f"{port.service}:{port.port}"
            if port.target_port != port.port:
                name += f" -> {port.target_port}"
            decided = "\n".join(port.decided_by)
            if port.allowed and len(port.routes) > 1:
                allowed = sum(route.allowed for route in port.routes)
                decided = f"{allowed} of {len(port.routes)} routes allowed:"
            table.add_row(name, port.protocol, "(port)", _verdict(port.allowed), decided)
            for route in port.routes:
                table.add_row(
                    "", "", route.match, _verdict(route.allowed), "\n".join(route.decided_by)
                )
        console.print()
        console.print(table)
    else:
        which = f"port {found.port}" if found.port is not None else "port"
        console.print(
            f"\nPod {found.destination} serves no Service {which}.", markup=False, soft_wrap=True
        )
    notes = [(port, note) for port in found.ports for note in port.notes]
    if notes:
        console.print("\nNotes:", markup=False, soft_wrap=True)
        for port, note in notes:
            console.print(f"  {port.service}:{port.port}: {note}", markup=False, soft_wrap=True)
    if found.warnings:
        console.print(
            "\nWarnings (these objects do nothing in the proxies):", markup=False, soft_wrap=True
        )
        for warning in found.warnings:
            console.print(f"  {warning}", markup=False, soft_wrap=True)
    console.print(markup=False, soft_wrap=True)
    for line in summary(found):
        console.print(line, markup=False, soft_wrap=True)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _verdict(allowed: bool) -> str:
    return "allowed" if allowed else "DENIED"


def summary(found: explain.Explanation) -> list[str]:
    """OSM's verdict line(s): one per allowing TrafficTarget, else the mode or the other
    objects that allow, else OSM's missing-policy line."""
    src = f"'{found.source}'"
    dst = f"'{found.destination}'"
    if not found.allowed:
        if found.permissive or found.membership:
            return [f"[+] Pod {src} is not allowed to communicate to pod {dst}"]
        return [
            f"[+] Pod {src} is not allowed to communicate to pod {dst}, missing SMI "
            "TrafficTarget policy"
        ]
    lines = []
    for ref in found.allowing:
        if ref.kind == "TrafficTarget":
            lines.append(
                f"[+] Pod {src} is allowed to communicate to pod {dst} via the SMI "
                f'TrafficTarget policy "{ref.name}" in namespace {ref.namespace}'
            )
        else:
            lines.append(f"[+] Pod {src} is allowed to communicate to pod {dst} via {ref}")
    return lines or [f"[+] Pod {src} is allowed to communicate to pod {dst}"]


# -- the command -----------------------------------------------------------------------------
@click.group(name="policy", context_settings=CONTEXT)
def policy() -> None:
    """Check the mesh's traffic policy between pods."""


@policy.command(name="check-pods", context_settings=CONTEXT)
@click.argument("source_pod")
@click.argument("destination_pod")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Only this port of the destination (a service port or its target port).",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
)
@click.pass_context
def check_pods(
    ctx: click.Context, source_pod: str, destination_pod: str, port: int | None, fmt: str
) -> None:
    """Check whether SOURCE_POD may send traffic to DESTINATION_POD, and why.

    For each port (and, on HTTP ports, each route) of every Service the destination
    serves: allowed or denied, and the object that decides it: the TrafficTarget rule and
    its HTTPRouteGroup match or TCPRoute, permissive mode (the MeshConfig), an Egress or
    IngressBackend for a pod outside the mesh, or that no TrafficTarget names the source's
    service account. Computed from the same catalog that configures the proxies; the
    warnings are the catalog's about the objects involved (a policy naming a missing
    service account or HTTPRouteGroup does nothing).

    Pods are NAMESPACE/NAME, or NAME in namespace default. Exit status 0 when the source
    may call the destination on some port, 2 when on none, 1 on an error.

    \b
    Examples:
      osm policy check-pods bookbuyer/bookbuyer-0 bookstore/bookstore-v1-0
      osm policy check-pods bookthief/bookthief-0 bookstore/bookstore-v1-0 --port 14001
    """
    source = parse_pod(source_pod, "source")
    destination = parse_pod(destination_pod, "destination")
    with connect(ctx) as api:
        try:
            state = read_mesh(api)
        except KubeError as error:
            fail_with(error, api.server)
    check_exists(state, source)
    check_exists(state, destination)
    found = explain.explain(Catalog(state), source, destination, port)
    if fmt == "table":
        width = TABLE_WIDTH if not sys.stdout.isatty() else shutil.get_terminal_size().columns
        click.echo(render(found, width), nl=False)
    else:
        click.echo(output.dump(found.to_dict(), fmt))
    if not found.allowed:
        sys.exit(DENIED_EXIT)
