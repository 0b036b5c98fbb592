"""Local mode's commands: ``osm up``, ``down``, ``exec``, ``logs`` and ``demo``.

The one idea: ``osm up`` starts two background daemons (`osm.runtime.daemon`): the
controller, which serves the Kubernetes API and writes its kubeconfig in the state
directory (where ``osm`` and ``KUBECONFIG`` find it), and the runtime that runs pods in
network namespaces. Then, as any client of the API would, it applies the observability
stack into ``osm-system`` (`osm.install.observability` with ``local=True``: Prometheus and
the trace store, as pods of the mesh's runtime; ``--no-observability`` skips it): created
when absent, replaced when it differs, left alone when it is as rendered, so a second
``osm up`` changes nothing. Every other command is a client of the API: ``logs`` reads
``pods/NAME/log``; ``exec`` reads the Pod (its network namespace is an annotation) and
acts on this machine.

Exported click objects (registered by `osm.cli.main`): `up`, `down`, `exec_command`,
`logs`, `demo`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from osm import paths
from osm.base import wellknown
from osm.cli import apply as applying
from osm.cli.client import Api, describe
from osm.cli.common import CONTEXT, connect, fail_with
from osm.cli.common import fail as _fail
from osm.kube.errors import KubeError

DEMO_MANIFESTS = Path("demo/bookstore/manifests")
DEMO_NAMESPACES = ("bookbuyer", "bookthief", "bookstore", "bookwarehouse")


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        _fail(
            f"{what} needs root: local mode creates network namespaces, veth links and "
            "iptables rules inside them, and runs processes as other users (try sudo)"
        )


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
    "--port",
    default=wellknown.API_PORT,
    show_default=True,
    help="The Kubernetes API's port (HTTPS).",
)
@click.option(
    "--http-port",
    default=wellknown.CONTROLLER_HTTP_PORT,
    show_default=True,
    help="The controller's metrics, health and debug port (plain HTTP).",
)
@click.option(
    "--xds-port", default=wellknown.XDS_PORT, show_default=True, help="The controller's xDS port."
)
@click.option(
    "--prefix", default="osm", show_default=True, help="Prefix of the network namespaces."
)
@click.option(
    "--observability/--no-observability",
    default=True,
    show_default=True,
    help="Deploy Prometheus and the trace store into osm-system.",
)
def up(
    state_dir: Path | None,
    port: int,
    http_port: int,
    xds_port: int,
    prefix: str,
    observability: bool,
) -> None:
    """Start the mesh on this machine: the controller (with the Kubernetes API) and the
    runtime that runs pods in network namespaces, in the background (logs under
    STATE_DIR/logs). Starts only what is not running, so it also restarts a controller
    that died. The API's kubeconfig is STATE_DIR/kubeconfig: osm finds it by itself;
    export KUBECONFIG=STATE_DIR/kubeconfig for kubectl."""
    _need_root("osm up")
    from osm.runtime import daemon, sidecar_env

    directory = _state_dir(state_dir)
    settings = daemon.MeshSettings.load(directory)
    if settings is None or daemon.controller(directory).pid() is None:
        settings = daemon.MeshSettings(directory, port, xds_port, prefix, http_port=http_port)
    started = time.monotonic()
    try:
        daemon.up(settings, progress=_progress)
    except (daemon.DaemonError, sidecar_env.SidecarEnvError) as error:
        _fail(str(error))
    if observability:
        _deploy_observability(settings.kubeconfig)
    click.echo(
        f"mesh up in {time.monotonic() - started:.1f}s: Kubernetes API {settings.server}, "
        f"state in {directory}. Next: osm apply -f demo/bookstore/manifests (or osm demo)"
    )
    click.echo(kubeconfig_hint(settings.kubeconfig))


def deploy_observability(api: Api) -> tuple[list[str], list[str]]:
    """Applies local mode's observability stack; (what changed, as ``kind/name created``
    or ``configured``, and the errors, each naming its object). Unchanged objects are in
    neither list."""
    from osm.install import observability

    changed, errors = [], []
    for outcome in applying.apply(api, observability.render(local=True)):
        what = str(outcome.ref)
        if outcome.error is not None:
            errors.append(describe(outcome.error, api.server, context=what))
        elif outcome.action != "unchanged":
            changed.append(f"{what} {outcome.action}")
    return changed, errors


def _deploy_observability(kubeconfig: Path) -> None:
    try:
        with Api.connect(kubeconfig) as api:
            changed, errors = deploy_observability(api)
    except KubeError as error:
        fail_with(error)
    if errors:
        _fail(
            "the observability stack was not all applied (run osm up again, or skip it with "
            "--no-observability): " + "; ".join(errors)
        )
    where = wellknown.CONTROL_PLANE_NAMESPACE
    services = f"{wellknown.PROMETHEUS_SERVICE} and {wellknown.TRACING_SERVICE}"
    if changed:
        _progress(f"deployed {services} into {where} ({', '.join(changed)})")
    else:
        _progress(f"{services} in {where} are as deployed")


def kubeconfig_hint(kubeconfig: Path) -> str:
    """Where the kubeconfig is, and who finds it without help."""
    found_alone = kubeconfig == paths.kubeconfig_path()
    osm_line = (
        "osm finds it by itself"
        if found_alone
        else f"osm finds it with --kubeconfig {kubeconfig} or KUBECONFIG"
    )
    return (
        f"  kubeconfig: {kubeconfig} ({osm_line}); for kubectl and other clients:\n"
        f"  export KUBECONFIG={kubeconfig}"
    )


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


# -- exec / logs ---------------------------------------------------------------------------
def _pod(ctx: click.Context, namespace_name: str, pod: str) -> dict[str, Any]:
    with connect(ctx) as api:
        try:
            return api.get("Pod", namespace_name, pod)
        except KubeError as error:
            fail_with(error, api.server)


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
@click.option(
    "-c",
    "--container",
    default=None,
    help="Container name. [default: the pod's only or default container]",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until Ctrl-C.")
@click.option(
    "--tail",
    default=-1,
    show_default=True,
    type=click.IntRange(-1),
    help="Lines of recent output to print (-1: all).",
)
@click.pass_context
def logs(
    ctx: click.Context,
    namespace_name: str,
    pod: str,
    container: str | None,
    follow: bool,
    tail: int,
) -> None:
    """Print a container's output, read through the API (pods/POD/log), as kubectl logs."""
    with connect(ctx) as api:
        chunks = api.logs(
            namespace_name,
            pod,
            container=container,
            tail_lines=tail if tail >= 0 else None,
            follow=follow,
        )
        try:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        except KubeError as error:
            fail_with(error, api.server)
        except KeyboardInterrupt:
            pass
        finally:
            chunks.close()


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
    _deploy_observability(settings.kubeconfig)
    path = manifests or sidecar_env.project_root() / DEMO_MANIFESTS
    loaded = manifest.load_paths([str(path)])
    if loaded.errors:
        _fail("; ".join(str(p) for p in loaded.errors))
    try:
        api = Api.connect(settings.kubeconfig)
    except KubeError as error:
        fail_with(error)
    failed = [
        outcome
        for outcome in applying.apply(api, [r.to_dict() for r in loaded.resources])
        if outcome.error is not None
    ]
    if failed:
        _fail(
            f"the demo's manifests ({path}) were not all applied: "
            + "; ".join(
                describe(o.error, api.server, context=str(o.ref)) for o in failed if o.error
            )
        )
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


def ready_pods(api: Api, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """Ready pods of ``namespaces`` (none while the API does not answer)."""
    pods = []
    for name in namespaces:
        try:
            items, _ = api.list("Pod", namespace=name)
        except KubeError:
            return []
        for item in items:
            conditions = (item.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                pods.append(item)
    return pods


class Sampler:
    """Reads each demo app's /metrics over loopback inside its pod's network namespace
    (not intercepted: the request is the runtime's own, to 127.0.0.1)."""

    def __init__(self, api: Api, namespaces: Sequence[str], timeout: float = 1.0) -> None:
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
