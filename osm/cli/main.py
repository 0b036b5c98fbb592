"""The `osm` command: run the controller and manage the mesh's resources.

Commands talk to the controller's HTTP API (``--server``, ``$OSM_SERVER``), except
``validate`` and the offline tools, which only read files. Output and exit codes follow
kubectl's habits: tables by default, ``-o yaml|json|wide|name``, errors on stderr, exit
status 1 on any failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

import osm
from osm import paths
from osm.base import wellknown
from osm.cli import output
from osm.cli.client import ApiError, Client
from osm.model import kinds, manifest
from osm.model.errors import Problem
from osm.model.meta import Resource

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def report_api_error(error: ApiError) -> NoReturn:
    for problem in error.problems:
        click.echo(str(problem), err=True)
    prefix = f"Error from server ({error.reason}): " if error.reason else "error: "
    click.echo(f"{prefix}{error}", err=True)
    sys.exit(1)


def client(ctx: click.Context) -> Client:
    return Client(ctx.obj["server"])


@click.group(context_settings=CONTEXT)
@click.option(
    "--server",
    envvar="OSM_SERVER",
    default=paths.default_server,
    show_default=f"$OSM_SERVER or http://{paths.DEFAULT_API_ADDRESS}",
    help="URL of the controller's API.",
)
@click.version_option(osm.__version__, prog_name="osm")
@click.pass_context
def cli(ctx: click.Context, server: str) -> None:
    """A service mesh after Open Service Mesh: SMI policy, mutual TLS everywhere,
    Envoy xDS.

    \b
    Start here:
      osm controller                 run the control plane (keeps state in --state-dir)
      osm apply -f demo/bookstore/manifests
      osm get trafficsplits -A
      osm validate -f my-manifests/  check files offline, every error at once
    """
    ctx.ensure_object(dict)
    ctx.obj["server"] = server


# -- controller ----------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the store and the CA live. [default: $OSM_STATE_DIR, /var/lib/osm "
    "for root, else ~/.local/state/osm]",
)
@click.option(
    "--store",
    "store_url",
    default="",
    help="Store URL: sqlite:///PATH or memory: [default: STATE_DIR/store.db]",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="API listen address.")
@click.option(
    "--port",
    default=wellknown.API_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="API listen port (0 picks a free one).",
)
@click.option(
    "--xds-host", default="127.0.0.1", show_default=True, help="xDS (ADS gRPC) listen address."
)
@click.option(
    "--xds-port",
    default=wellknown.XDS_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help=f"xDS listen port (OSM's {wellknown.XDS_PORT}; 0 picks a free one).",
)
@click.option(
    "--xds-insecure",
    is_flag=True,
    help="Serve xDS without TLS and trust node ids as sent (development and "
    "proxyless gRPC tests only).",
)
@click.option(
    "--mesh-name",
    default="osm",
    show_default=True,
    help="The mesh's name: pods of namespaces labelled "
    f"{wellknown.MONITORED_BY_LABEL}=NAME get sidecars.",
)
@click.option(
    "--sidecar-xds-host",
    default=None,
    help="Where injected sidecars reach the xDS server (port "
    f"{wellknown.XDS_PORT}). [default: the controller's Service DNS name]",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def controller(
    state_dir: Path | None,
    store_url: str,
    host: str,
    port: int,
    xds_host: str,
    xds_port: int,
    xds_insecure: bool,
    mesh_name: str,
    sidecar_xds_host: str | None,
    log_level: str,
) -> None:
    """Run the control plane in the foreground until interrupted: the store and its API,
    the certificate authority, and the xDS server that configures every proxy."""
    from osm.controller import server

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = server.Settings(
        state_dir=state_dir or paths.default_state_dir(),
        store_url=store_url,
        api_host=host,
        api_port=port,
        xds_host=xds_host,
        xds_port=xds_port,
        xds_insecure=xds_insecure,
        mesh_name=mesh_name,
    )
    if sidecar_xds_host:
        settings = dataclasses.replace(settings, sidecar_xds_host=sidecar_xds_host)
    try:
        asyncio.run(server.run(settings))
    except server.ControllerError as error:
        fail(str(error))
    except PermissionError as error:
        fail(f"{error}; choose a writable --state-dir or run as root")


# -- apply / delete / validate ---------------------------------------------------------
def _load(files: Sequence[str], namespace: str | None) -> manifest.LoadResult:
    """Loads -f arguments ('-' is stdin)."""
    return manifest.load_paths(
        files, default_namespace=namespace or "default", stdin=sys.stdin.read
    )


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)


file_option = click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="A manifest file or directory (recursive), or - for stdin. Repeatable.",
)
namespace_option = click.option(
    "-n",
    "--namespace",
    default=None,
    help="Namespace for objects that name none. [default: default]",
)


@cli.command(context_settings=CONTEXT)
@file_option
@namespace_option
@click.option("--dry-run", is_flag=True, help="Validate on the server; change nothing.")
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...], namespace: str | None, dry_run: bool) -> None:
    """Create or update the objects in files, all or nothing.

    Every error in every file is printed, and then nothing is applied.
    """
    result = _load(files, namespace)
    if result.errors:
        _print_problems(result.errors)
        fail(f"{len(result.errors)} error(s) in the manifests; nothing was applied")
    if not result.objects:
        fail("no objects found in " + ", ".join(files))
    try:
        answer = client(ctx).apply(
            [r.to_dict() for r in result.resources], dry_run=dry_run, source=", ".join(files)
        )
    except ApiError as error:
        report_api_error(error)
    for item in answer["results"]:
        click.echo(f"{item['kind'].lower()}/{item['name']} {item['action']}")


@cli.command(context_settings=CONTEXT)
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    help="Delete the objects defined in these files or directories.",
)
@namespace_option
@click.option("--ignore-not-found", is_flag=True, help="Treat missing objects as deleted.")
@click.pass_context
def delete(
    ctx: click.Context,
    kind: str | None,
    names: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    ignore_not_found: bool,
) -> None:
    """Delete objects: `osm delete KIND NAME...` or `osm delete -f PATH`.

    Deleting a Namespace deletes everything in it. All or nothing: if one object is
    missing, nothing is deleted (unless --ignore-not-found).
    """
    refs: list[dict[str, str]] = []
    if files:
        if kind:
            fail("give either -f PATH or KIND NAME, not both")
        result = _load(files, namespace)
        if result.errors:
            _print_problems(result.errors)
            fail(f"{len(result.errors)} error(s) in the manifests; nothing was deleted")
        refs = [
            {"kind": r.kind, "namespace": r.namespace, "name": r.name} for r in result.resources
        ]
    elif kind:
        info = _kind(kind)
        if not names:
            fail(f"name the {info.plural} to delete: osm delete {kind} NAME")
        refs = [
            {
                "kind": info.kind,
                "namespace": namespace or "default" if info.namespaced else "",
                "name": name,
            }
            for name in names
        ]
    else:
        fail("nothing to delete: give KIND NAME or -f PATH (see osm delete --help)")
    try:
        answer = client(ctx).delete(refs, ignore_not_found=ignore_not_found)
    except ApiError as error:
        report_api_error(error)
    for item in answer["results"]:
        click.echo(f'{item["kind"].lower()} "{item["name"]}" deleted')


@cli.command(context_settings=CONTEXT)
@file_option
@namespace_option
def validate(files: tuple[str, ...], namespace: str | None) -> None:
    """Check manifests offline: every error at once, and warnings for references that
    the files do not satisfy. Exits 1 if there is any error."""
    result = _load(files, namespace)
    warnings = result.warnings + manifest.reference_warnings(result)
    _print_problems(result.errors)
    _print_problems(warnings)
    summary = (
        f"{len(result.objects)} valid object(s), {len(result.errors)} error(s), "
        f"{len(warnings)} warning(s)"
    )
    if result.errors:
        fail(summary)
    click.echo(summary)


# -- get -------------------------------------------------------------------------------
def _kind(name: str) -> kinds.KindInfo:
    try:
        return kinds.lookup(name)
    except KeyError as error:
        fail(str(error.args[0]))


def _decode(items: Sequence[dict[str, Any]]) -> list[Resource]:
    return [kinds.decode(item) for item in items]


@cli.command(context_settings=CONTEXT)
@click.argument("kind")
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["table", "wide", "yaml", "json", "name"]),
    default="table",
    show_default=True,
)
@click.option("-l", "--selector", default=None, help="Label selector, e.g. app=bookstore.")
@click.option("-w", "--watch", is_flag=True, help="After listing, print changes as they happen.")
@click.pass_context
def get(
    ctx: click.Context,
    kind: str,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    fmt: str,
    selector: str | None,
    watch: bool,
) -> None:
    """Show objects of a kind (short names work: ns, sa, svc, deploy, po, ep, tt, htr,
    tr, ts, meshconfig)."""
    info = _kind(kind)
    api = client(ctx)
    namespace = None if all_namespaces or not info.namespaced else (namespace or "default")
    try:
        if name:
            item = api.get(info.kind, namespace or "", name)
            items, rv = [item], None
        else:
            answer = api.list(info.kind, namespace=namespace, selector=selector)
            items, rv = answer["items"], answer["resourceVersion"]
    except ApiError as error:
        report_api_error(error)
    resources = _decode(items)
    if fmt in ("yaml", "json"):
        click.echo(output.dump(items[0] if name else output.as_list(items), fmt))
    elif fmt == "name":
        for resource in resources:
            click.echo(output.name_of(resource))
    elif not resources:
        where = f" in {namespace} namespace" if namespace else ""
        click.echo(f"No resources found{where}.", err=True)
    else:
        click.echo(output.table(resources, wide=fmt == "wide", all_namespaces=all_namespaces))
    if watch and not name:
        _watch(api, info, namespace, rv, fmt)


def _watch(
    api: Client, info: kinds.KindInfo, namespace: str | None, since: int | None, fmt: str
) -> None:
    try:
        for event in api.watch(since=since, kinds=[info.kind]):
            objects = event.get("objects") or ([event["object"]] if event.get("object") else [])
            for item in objects:
                resource = kinds.decode(item)
                if namespace and resource.namespace != namespace:
                    continue
                if fmt in ("yaml", "json"):
                    click.echo(output.dump({"type": event["type"], "object": item}, fmt))
                else:
                    row = output.table(
                        [resource], wide=fmt == "wide", all_namespaces=namespace is None
                    ).splitlines()[-1]
                    click.echo(f"{row}   {event['type']}")
    except ApiError as error:
        report_api_error(error)
    except KeyboardInterrupt:
        pass


def register(group: click.Group) -> None:
    """Adds the sub-command groups that live in their own modules."""
    from osm.cli import ca, proxy, runtime, xds

    group.add_command(ca.ca)
    group.add_command(xds.xds)
    group.add_command(proxy.proxy)
    group.add_command(proxy.sidecar)
    for command in (
        runtime.up,
        runtime.down,
        runtime.demo,
        runtime.namespace,
        runtime.exec_command,
        runtime.logs,
    ):
        group.add_command(command)


def main() -> None:
    register(cli)
    cli(obj={})
