"""The `osm` command: run the controller and manage the mesh's resources.

Commands that read or write resources are Kubernetes clients (`osm.cli.client`): they
work against local mode's API (``osm up`` writes its kubeconfig, found by itself) or any
cluster (``--kubeconfig``, ``--context``, ``$KUBECONFIG``). ``validate`` and the offline
tools only read files. Output and exit codes follow kubectl's habits: tables by default,
``-o yaml|json|wide|name``, kubectl's messages (``trafficsplit.split.smi-spec.io/web
configured``, ``Error from server (NotFound): ...``), errors on stderr, exit status 1 on
any failure. What `apply` and `delete` do per object is `osm.cli.apply`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

import osm
from osm import paths
from osm.base import wellknown
from osm.cli import apply as applying
from osm.cli import output
from osm.cli.client import Api, describe
from osm.cli.common import (
    CONTEXT,
    CONTEXT_KEY,
    KUBECONFIG_KEY,
    connect,
    control_plane_options,
    fail,
    fail_with,
    kubeconfig_of,
    log_to_stderr,
)
from osm.kube.errors import KubeError
from osm.model import kinds, manifest
from osm.model.errors import Problem
from osm.model.meta import Resource

DELETE_TIMEOUT = 60.0
"""Seconds ``osm delete`` waits for deleted Namespaces to go (their content first)."""


@click.group(context_settings=CONTEXT)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    default=None,
    help="The kubeconfig to use. [default: $KUBECONFIG, else local mode's "
    "STATE_DIR/kubeconfig (written by osm up), else ~/.kube/config]",
)
@click.option("--context", "kube_context", default=None, help="The kubeconfig context to use.")
@click.version_option(osm.__version__, prog_name="osm")
@click.pass_context
def cli(ctx: click.Context, kubeconfig: str | None, kube_context: str | None) -> None:
    """A service mesh after Open Service Mesh: SMI policy, mutual TLS everywhere,
    Envoy xDS.

    \b
    Start here:
      osm up                         run the mesh on this machine (local mode; root)
      osm apply -f demo/bookstore/manifests
      osm get trafficsplits -A
      osm namespace add bookstore    put a namespace in the mesh
      osm validate -f my-manifests/  check files offline, every error at once
      osm policy check-pods SRC DST  may pod SRC call pod DST, and which object decides
    """
    ctx.ensure_object(dict)
    ctx.obj[KUBECONFIG_KEY] = kubeconfig
    ctx.obj[CONTEXT_KEY] = kube_context


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
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Listen address of the Kubernetes API (HTTPS) and of --http-port.",
)
@click.option(
    "--port",
    default=wellknown.API_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Kubernetes API (HTTPS) listen port (0 picks a free one).",
)
@click.option(
    "--http-port",
    default=wellknown.CONTROLLER_HTTP_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the controller's own HTTP endpoint: /metrics, /health/ready, "
    "/health/alive, /version, /debug/proxies (plain HTTP on the API's address; 0 picks "
    "a free one).",
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
    "--kubernetes",
    is_flag=True,
    help="Kubernetes mode (how `osm install` runs it): a client of the cluster's API "
    "(--kubeconfig, else the pod's service account) instead of serving the local API; "
    "the mesh root from the CA bundle Secret; the validating webhook on --webhook-port.",
)
@click.option(
    "--validator-webhook-config",
    default="",
    help="The ValidatingWebhookConfiguration whose caBundle the controller keeps "
    "current (Kubernetes mode). [default: osm-validator-mesh-MESH_NAME]",
)
@click.option(
    "--webhook-port",
    default=wellknown.VALIDATING_WEBHOOK_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The validating webhook's HTTPS port (Kubernetes mode).",
)
@click.option(
    "--http-host",
    default=None,
    help="Listen address of --http-port and of the webhook. [default: --host]",
)
@control_plane_options("injector")
@click.pass_context
def controller(
    ctx: click.Context,
    state_dir: Path | None,
    store_url: str,
    host: str,
    port: int,
    http_port: int,
    xds_host: str,
    xds_port: int,
    xds_insecure: bool,
    mesh_name: str,
    sidecar_xds_host: str | None,
    kubernetes: bool,
    validator_webhook_config: str,
    webhook_port: int,
    http_host: str | None,
    local_kubeconfig: str | None,
    osm_namespace: str,
    ca_bundle_secret_name: str,
    log_level: str,
) -> None:
    """Run the control plane in the foreground until interrupted.

    Local mode (the default, what `osm up` runs): the store and the Kubernetes API over
    it (HTTPS, client certificates; kubeconfigs written in STATE_DIR), the certificate
    authority, and the xDS server that configures every proxy.

    Kubernetes mode (--kubernetes, what `osm install` deploys): the same controller as a
    client of the cluster's API, plus the validating webhook.
    """
    from osm.controller import server

    log_to_stderr(log_level)
    settings = server.Settings(
        state_dir=state_dir or paths.default_state_dir(),
        store_url=store_url,
        api_host=host,
        api_port=port,
        http_host=http_host or host,
        http_port=http_port,
        xds_host=xds_host,
        xds_port=xds_port,
        xds_insecure=xds_insecure,
        mesh_name=mesh_name,
        kubernetes=kubernetes,
        kubeconfig=kubeconfig_of(ctx, local_kubeconfig),
        osm_namespace=osm_namespace,
        ca_bundle_secret_name=ca_bundle_secret_name,
        validator_webhook_config=validator_webhook_config,
        webhook_host=http_host or host,
        webhook_port=webhook_port,
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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Have the server admit and validate every object; store nothing.",
)
@click.pass_context
def apply(ctx: click.Context, files: tuple[str, ...], namespace: str | None, dry_run: bool) -> None:
    """Create or update the objects in files (Namespaces first).

    Every error in every file is printed first, and then nothing is applied. Each object
    is then reported as created, configured or unchanged; an object the server refuses
    is reported and the others are still applied (exit status 1).
    """
    result = _load(files, namespace)
    if result.errors:
        _print_problems(result.errors)
        fail(f"{len(result.errors)} error(s) in the manifests; nothing was applied")
    if not result.objects:
        fail("no objects found in " + ", ".join(files))
    sources = {
        applying.Ref.of(loaded.resource.manifest): loaded.source for loaded in result.objects
    }
    suffix = " (server dry run)" if dry_run else ""

    def report(outcome: applying.Outcome) -> None:
        if outcome.error is None:
            click.echo(f"{outcome.ref} {outcome.action}{suffix}")
        else:
            where = f'error when applying {outcome.ref} from "{sources.get(outcome.ref, "")}"'
            click.echo(describe(outcome.error, api.server, context=where), err=True)

    with connect(ctx) as api:
        outcomes = applying.apply(
            api, [r.to_dict() for r in result.resources], dry_run=dry_run, report=report
        )
    if any(outcome.error is not None for outcome in outcomes):
        sys.exit(1)


@cli.command(context_settings=CONTEXT)
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    help="Delete the objects defined in these files or directories (- for stdin).",
)
@namespace_option
@click.option("--ignore-not-found", is_flag=True, help="Treat missing objects as deleted.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until deleted Namespaces are gone (after their content).",
)
@click.option(
    "--timeout",
    default=DELETE_TIMEOUT,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds to wait with --wait.",
)
@click.pass_context
def delete(
    ctx: click.Context,
    kind: str | None,
    names: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    ignore_not_found: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Delete objects: `osm delete KIND NAME...` or `osm delete -f PATH`.

    Deleting a Namespace deletes everything in it. A file's objects are deleted in
    reverse order, its Namespaces last. A missing object is an error (exit status 1,
    the others are still deleted) unless --ignore-not-found.
    """
    if files:
        if kind:
            fail("give either -f PATH or KIND NAME, not both")
        result = _load(files, namespace)
        if result.errors:
            _print_problems(result.errors)
            fail(f"{len(result.errors)} error(s) in the manifests; nothing was deleted")
        refs = applying.deletion_order(
            applying.Ref.of(resource.manifest) for resource in result.resources
        )
    elif kind:
        info = _kind(kind)
        if not names:
            fail(f"name the {info.plural} to delete: osm delete {kind} NAME")
        scope = (namespace or "default") if info.namespaced else ""
        refs = [applying.Ref(info.kind, scope, name) for name in names]
    else:
        fail("nothing to delete: give KIND NAME or -f PATH (see osm delete --help)")

    def report(outcome: applying.Outcome) -> None:
        if outcome.error is None:
            click.echo(f'{applying.type_name(outcome.ref.kind)} "{outcome.ref.name}" deleted')
        else:
            click.echo(describe(outcome.error, api.server), err=True)

    with connect(ctx) as api:
        outcomes = applying.delete(api, refs, ignore_not_found=ignore_not_found, report=report)
        namespaces = [o.ref for o in outcomes if o.error is None and o.ref.kind == "Namespace"]
        if wait and namespaces:
            try:
                left = applying.wait_until_gone(api, namespaces, timeout=timeout)
            except KubeError as error:
                fail_with(error, api.server)
            if left:
                fail(
                    f"timed out after {timeout:g}s waiting for "
                    + ", ".join(f'namespace "{ref.name}"' for ref in left)
                    + " to be deleted (still Terminating; see osm get ns)"
                )
    if any(outcome.error is not None for outcome in outcomes):
        sys.exit(1)


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


def _decode(items: Sequence[Mapping[str, Any]]) -> list[Resource]:
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
    """Show objects of a kind (short names work: ns, sa, svc, deploy, po, ep, cm, tt, htr,
    tr, ts, meshconfig)."""
    info = _kind(kind)
    scope = None if all_namespaces or not info.namespaced else (namespace or "default")
    with connect(ctx) as api:
        try:
            if name:
                item = api.get(info.kind, scope, name)
                items, version = [item], str(item["metadata"].get("resourceVersion") or "")
            else:
                items, version = api.list(info.kind, scope, selector)
        except KubeError as error:
            fail_with(error, api.server)
        _print(items, fmt, name=name, namespace=scope, all_namespaces=scope is None)
        if watch:
            _watch(api, info, scope, version, fmt, name=name, selector=selector)


def _print(
    items: Sequence[Mapping[str, Any]],
    fmt: str,
    *,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
) -> None:
    if fmt in ("yaml", "json"):
        click.echo(output.dump(items[0] if name else output.as_list(items), fmt))
        return
    resources = _decode(items)
    if fmt == "name":
        for resource in resources:
            click.echo(output.name_of(resource))
    elif not resources:
        where = f" in {namespace} namespace" if namespace else ""
        click.echo(f"No resources found{where}.", err=True)
    else:
        click.echo(output.table(resources, wide=fmt == "wide", all_namespaces=all_namespaces))


def _watch(
    api: Api,
    info: kinds.KindInfo,
    namespace: str | None,
    since: str,
    fmt: str,
    *,
    name: str | None,
    selector: str | None,
) -> None:
    events = api.watch(
        info.kind,
        namespace,
        since or None,
        label_selector=selector,
        field_selector=f"metadata.name={name}" if name else None,
    )
    try:
        for event_type, item in events:
            if fmt in ("yaml", "json"):
                click.echo(output.dump({"type": event_type, "object": item}, fmt))
            elif fmt == "name":
                click.echo(output.name_of(kinds.decode(item)))
            else:
                row = output.table(
                    [kinds.decode(item)], wide=fmt == "wide", all_namespaces=namespace is None
                ).splitlines()[-1]
                click.echo(f"{row}   {event_type}")
    except KubeError as error:
        fail_with(error, api.server)
    except KeyboardInterrupt:
        pass
    finally:
        events.close()


def register(group: click.Group) -> None:
    """Adds the sub-command groups that live in their own modules."""
    from osm.cli import (
        ca,
        injector,
        install,
        metrics,
        namespace,
        policy,
        proxy,
        runtime,
        verify,
        xds,
    )

    group.add_command(injector.injector)
    group.add_command(ca.ca)
    group.add_command(xds.xds)
    group.add_command(proxy.proxy)
    group.add_command(proxy.sidecar)
    group.add_command(namespace.namespace)
    group.add_command(metrics.metrics)
    group.add_command(policy.policy)
    group.add_command(verify.verify)
    from osm.cli import dashboard

    group.add_command(dashboard.dashboard)
    for command in install.COMMANDS:
        group.add_command(command)
    group.add_command(install.uninstall, "del")  # OSM's alias ("delete" is osm delete)
    for command in (
        runtime.up,
        runtime.down,
        runtime.demo,
        runtime.exec_command,
        runtime.logs,
    ):
        group.add_command(command)


def main() -> None:
    register(cli)
    cli(obj={})
