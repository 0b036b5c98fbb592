"""Local mode's commands: ``osm up``, ``down``, ``namespace``, ``exec``, ``logs`` and ``demo``.

The one idea: ``osm up`` starts two background daemons (`osm.runtime.daemon`): the
controller and the runtime that runs pods in network namespaces; every other command
talks to the controller's API, or, for ``exec`` and ``logs``, looks up the pod's Pod
object (its network namespace is an annotation) and acts on this machine. ``osm namespace``
behaves as OSM's does: it sets or removes the sidecar-injection annotation.

Exported click objects (registered by `osm.cli.main`): `up`, `down`, `namespace`,
`exec_command`, `logs`, `demo`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from osm import paths
from osm.base import wellknown
from osm.cli.client import ApiError, Client

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEMO_MANIFESTS = Path("demo/bookstore/manifests")
DEMO_NAMESPACES = ("bookbuyer", "bookthief", "bookstore", "bookwarehouse")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        _fail(
            f"{what} needs root: local mode creates network namespaces, veth links and "
            "iptables rules inside them, and runs processes as other users (try sudo)"
        )


def _server(ctx: click.Context) -> str:
    obj = ctx.find_root().obj
    server = obj.get("server") if isinstance(obj, dict) else None
    return str(server or paths.default_server())


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the mesh keeps its state. [default: $OSM_STATE_DIR or /var/lib/osm]",
)


def _state_dir(value: Path | None) -> Path:
    return value or paths.default_state_dir()


# -- up / down -----------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@state_dir_option
@click.option(
    "--port", default=wellknown.API_PORT, show_default=True, help="The controller's API port."
)
@click.option(
    "--xds-port", default=wellknown.XDS_PORT, show_default=True, help="The controller's xDS port."
)
@click.option(
    "--prefix", default="osm", show_default=True, help="Prefix of the network namespaces."
)
def up(state_dir: Path | None, port: int, xds_port: int, prefix: str) -> None:
    """Start the mesh on this machine: the controller and the runtime that runs pods in
    network namespaces, in the background (logs under STATE_DIR/logs). Starts only what
    is not running, so it also restarts a controller that died."""
    _need_root("osm up")
    from osm.runtime import daemon, sidecar_env

    directory = _state_dir(state_dir)
    settings = daemon.MeshSettings.load(directory)
    if settings is None or daemon.controller(directory).pid() is None:
        settings = daemon.MeshSettings(directory, port, xds_port, prefix)
    started = time.monotonic()
    try:
        daemon.up(settings, progress=_progress)
    except (daemon.DaemonError, sidecar_env.SidecarEnvError) as error:
        _fail(str(error))
    click.echo(
        f"mesh up in {time.monotonic() - started:.1f}s: API {settings.server}, state in "
        f"{directory}. Next: osm apply -f demo/bookstore/manifests (or osm demo)"
    )
    if settings.server != paths.default_server():
        click.echo(f"  export OSM_SERVER={settings.server}")


@click.command(context_settings=CONTEXT)
@state_dir_option
def down(state_dir: Path | None) -> None:
    """Stop the mesh and remove everything it created on this machine (network
    namespaces, links, hosts files, processes). Safe to run twice, and after a crash.
    The resources applied (the store) are kept for the next `osm up`."""
    _need_root("osm down")
    from osm.runtime import daemon

    try:
        removed = daemon.down(_state_dir(state_dir), progress=_progress)
    except daemon.DaemonError as error:
        _fail(str(error))
    if removed:
        click.echo(f"removed {len(removed)} leftover(s): {', '.join(removed)}")
    click.echo("mesh down")


# -- namespace -------------------------------------------------------------------------------
@click.group(context_settings=CONTEXT, name="namespace")
def namespace() -> None:
    """Add namespaces to the mesh or remove them (alias: ns)."""


def _namespaces(api: Client, names: Sequence[str]) -> list[dict[str, Any]]:
    found = []
    for name in names:
        try:
            found.append(api.get("Namespace", "", name))
        except ApiError as error:
            if error.status == 404:
                _fail(f'namespace "{name}" not found; create it first (osm apply)')
            _fail(str(error))
    return found


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    for key in ("resourceVersion", "generation", "uid", "creationTimestamp"):
        meta.pop(key, None)
    return obj


@namespace.command(name="add", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@click.option("--mesh-name", default="osm", show_default=True)
@click.option(
    "--disable-sidecar-injection",
    is_flag=True,
    help="Monitor the namespace without injecting sidecars into its pods.",
)
@click.pass_context
def namespace_add(
    ctx: click.Context, names: tuple[str, ...], mesh_name: str, disable_sidecar_injection: bool
) -> None:
    """Add namespaces to the mesh: pods started in them get a sidecar."""
    api = Client(_server(ctx))
    objects = []
    for obj in _namespaces(api, names):
        meta = _strip(obj)["metadata"]
        meta.setdefault("labels", {})[wellknown.MONITORED_BY_LABEL] = mesh_name
        meta.setdefault("annotations", {})[wellknown.SIDECAR_INJECTION_ANNOTATION] = (
            "disabled" if disable_sidecar_injection else "enabled"
        )
        objects.append(obj)
    try:
        api.apply(objects, source="osm namespace add")
    except ApiError as error:
        _fail(str(error))
    for name in names:
        what = "without sidecar injection" if disable_sidecar_injection else ""
        click.echo(f"Namespace [{name}] successfully added to mesh [{mesh_name}] {what}".rstrip())


@namespace.command(name="remove", context_settings=CONTEXT)
@click.argument("name")
@click.option("--mesh-name", default="osm", show_default=True)
@click.pass_context
def namespace_remove(ctx: click.Context, name: str, mesh_name: str) -> None:
    """Remove a namespace from the mesh (pods started later get no sidecar)."""
    api = Client(_server(ctx))
    obj = _strip(_namespaces(api, [name])[0])
    meta = obj["metadata"]
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if (
        labels.get(wellknown.MONITORED_BY_LABEL) != mesh_name
        and wellknown.SIDECAR_INJECTION_ANNOTATION not in annotations
    ):
        _fail(f'namespace "{name}" is not in mesh [{mesh_name}]')
    labels.pop(wellknown.MONITORED_BY_LABEL, None)
    annotations.pop(wellknown.SIDECAR_INJECTION_ANNOTATION, None)
    meta["labels"], meta["annotations"] = labels, annotations
    try:
        api.apply([obj], source="osm namespace remove")
    except ApiError as error:
        _fail(str(error))
    click.echo(f"Namespace [{name}] successfully removed from mesh [{mesh_name}]")


@namespace.command(name="list", context_settings=CONTEXT)
@click.option("--mesh-name", default="", help="Only namespaces of this mesh.")
@click.pass_context
def namespace_list(ctx: click.Context, mesh_name: str) -> None:
    """List the namespaces in the mesh and whether their pods get sidecars."""
    try:
        items = Client(_server(ctx)).list("Namespace")["items"]
    except ApiError as error:
        _fail(str(error))
    rows = [("NAMESPACE", "MESH", "SIDECAR-INJECTION")]
    for item in items:
        meta = item["metadata"]
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        mesh = labels.get(
            wellknown.MONITORED_BY_LABEL,
            "osm" if wellknown.SIDECAR_INJECTION_ANNOTATION in annotations else "",
        )
        if not mesh or (mesh_name and mesh != mesh_name):
            continue
        rows.append(
            (meta["name"], mesh, annotations.get(wellknown.SIDECAR_INJECTION_ANNOTATION, "-"))
        )
    if len(rows) == 1:
        click.echo("No namespaces in the mesh.", err=True)
        return
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- exec / logs ---------------------------------------------------------------------------
def _pod(ctx: click.Context, namespace_name: str, pod: str) -> dict[str, Any]:
    try:
        return Client(_server(ctx)).get("Pod", namespace_name, pod)
    except ApiError as error:
        if error.status == 404:
            _fail(f'pod "{pod}" not found in namespace "{namespace_name}" (osm get po -A)')
        _fail(str(error))


@click.command(name="exec", context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.option("-n", "--namespace", "namespace_name", default="default", show_default=True)
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(
    ctx: click.Context, namespace_name: str, pod: str, command: tuple[str, ...]
) -> None:
    """Run COMMAND in POD's network namespace (as root; its traffic is intercepted like
    the pod's): osm exec -n bookbuyer POD -- curl -s http://bookstore.bookstore:14001/"""
    _need_root("osm exec")
    obj = _pod(ctx, namespace_name, pod)
    netns = (obj["metadata"].get("annotations") or {}).get(wellknown.NETNS_ANNOTATION)
    if not netns:
        _fail(f'pod "{pod}" was not started by the local runtime (no network namespace)')
    argv = ["ip", "netns", "exec", netns, *command]
    try:
        os.execvp("ip", argv)
    except OSError as error:
        _fail(f"cannot run {' '.join(argv)}: {error}")


@click.command(context_settings=CONTEXT)
@click.option("-n", "--namespace", "namespace_name", default="default", show_default=True)
@click.argument("pod")
@click.option("-c", "--container", default="", help="Container name (sidecar: the proxy).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output.")
@state_dir_option
@click.pass_context
def logs(
    ctx: click.Context,
    namespace_name: str,
    pod: str,
    container: str,
    follow: bool,
    state_dir: Path | None,
) -> None:
    """Print a container's output (kept under STATE_DIR/logs)."""
    from osm.runtime import process

    obj = _pod(ctx, namespace_name, pod)
    spec = obj.get("spec") or {}
    containers = [c["name"] for c in spec.get("containers", [])]
    names = [*containers, *(c["name"] for c in spec.get("initContainers", []))]
    name = container or (containers[0] if containers else "")
    if name not in names:
        _fail(f'container "{name}" is not in pod "{pod}"; choose one of {", ".join(names)}')
    path = process.log_path(_state_dir(state_dir), namespace_name, pod, name)
    if not path.exists():
        _fail(f"no log at {path} (is this the machine and --state-dir the pod runs on?)")
    with path.open("rb") as log:
        sys.stdout.buffer.write(log.read())
        sys.stdout.flush()
        while follow:
            chunk = log.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            else:
                try:
                    time.sleep(0.2)
                except KeyboardInterrupt:
                    return


# -- demo ------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@state_dir_option
@click.option(
    "-f",
    "--filename",
    "manifests",
    type=click.Path(path_type=Path),
    default=None,
    help="The demo's manifests. [default: demo/bookstore/manifests of the source tree]",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for pods.")
@click.pass_context
def demo(
    ctx: click.Context, state_dir: Path | None, manifests: Path | None, timeout: float
) -> None:
    """Run the bookstore demo from nothing: `osm up` if needed, apply the manifests, wait
    for the pods, then show live traffic (Ctrl-C leaves the mesh running)."""
    _need_root("osm demo")
    from osm.demo.bookstore import view
    from osm.model import manifest
    from osm.runtime import daemon, sidecar_env

    started = time.monotonic()
    directory = _state_dir(state_dir)
    settings = daemon.MeshSettings.load(directory) or daemon.MeshSettings(directory)
    try:
        daemon.up(settings, progress=_progress)
    except (daemon.DaemonError, sidecar_env.SidecarEnvError) as error:
        _fail(str(error))
    api = Client(settings.server)
    path = manifests or sidecar_env.project_root() / DEMO_MANIFESTS
    loaded = manifest.load_paths([str(path)])
    if loaded.errors:
        _fail("; ".join(str(p) for p in loaded.errors))
    try:
        api.apply([r.to_dict() for r in loaded.resources], source=str(path))
    except ApiError as error:
        _fail(str(error))
    _progress(f"applied {path}; waiting for the demo's pods")
    wanted = sum(1 for r in loaded.resources if r.kind == "Deployment")
    deadline = time.monotonic() + timeout
    while True:
        ready = ready_pods(api, DEMO_NAMESPACES)
        if len(ready) >= wanted:
            break
        if time.monotonic() > deadline:
            _fail(
                f"only {len(ready)} of {wanted} demo pods are ready after {timeout:g}s; "
                f"see osm get po -A and the logs under {directory}/logs"
            )
        time.sleep(0.2)
    _progress(f"{wanted} pods ready {time.monotonic() - started:.1f}s after start")
    sampler = Sampler(api, DEMO_NAMESPACES)
    first = wait_for_traffic(sampler, deadline=time.monotonic() + timeout)
    if first is not None:
        _progress(f"traffic flowing {time.monotonic() - started:.1f}s after start")
    view.watch(lambda: asyncio.run(sampler.sample()))


# -- the demo's counters, read inside each pod -----------------------------------------------
METRICS_PORTS = {"client": 14002, "bookstore": 14001, "bookwarehouse": 14001}
ROLES = {"bookbuyer": "client", "bookthief": "client", "bookstore": "bookstore"}


def ready_pods(api: Client, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """Ready pods of ``namespaces``."""
    pods = []
    for name in namespaces:
        try:
            items = api.list("Pod", namespace=name)["items"]
        except ApiError:
            return []
        for item in items:
            conditions = (item.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                pods.append(item)
    return pods


class Sampler:
    """Reads each demo app's /metrics over loopback inside its pod's network namespace
    (not intercepted: the request is the runtime's own, to 127.0.0.1)."""

    def __init__(self, api: Client, namespaces: Sequence[str], timeout: float = 1.0) -> None:
        self.api = api
        self.namespaces = namespaces
        self.timeout = timeout

    async def sample(self) -> Any:
        from osm.demo.bookstore import counters

        pods = await asyncio.to_thread(ready_pods, self.api, self.namespaces)
        parts = await asyncio.gather(*(self._one(pod) for pod in pods))
        return counters.assemble(parts)

    async def _one(self, pod: dict[str, Any]) -> Any:
        from osm.demo.bookstore import counters

        meta = pod["metadata"]
        role = ROLES.get(meta["namespace"], "bookwarehouse")
        netns = (meta.get("annotations") or {}).get(wellknown.NETNS_ANNOTATION, "")
        try:
            async with asyncio.timeout(self.timeout):
                payload = await fetch_in_netns(netns, METRICS_PORTS[role], "/metrics")
            return counters.parse(payload)
        except (OSError, ValueError, TimeoutError) as error:
            return counters.unreachable(role, meta["name"], str(error) or type(error).__name__)


async def fetch_in_netns(netns: str, port: int, path: str) -> dict[str, Any]:
    """GET http://127.0.0.1:PORT/PATH inside ``netns``; the JSON body."""
    import json

    from osm.runtime.network import socket_in_netns

    sock = socket_in_netns(netns)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)
    if len(status) < 2 or status[1] != b"200":
        raise ValueError(f"/metrics answered {head.splitlines()[0] if head else b'nothing'!r}")
    payload = json.loads(body)
    if not isinstance(payload, dict):
        raise ValueError("/metrics is not a JSON object")
    return payload


def wait_for_traffic(sampler: Sampler, *, deadline: float) -> Any:
    """The first sample in which a client got an answer, or None at ``deadline``."""
    while time.monotonic() < deadline:
        sample = asyncio.run(sampler.sample())
        if any(c.ok or c.denied for c in sample.clients):
            return sample
        time.sleep(0.2)
    return None
