"""``osm dashboard``: serve the mesh's web UI locally, print its URL, open a browser.

The one idea: the command only wires sources to `osm.dashboard` and waits for Ctrl-C.
In local mode (``osm up``: the ``osm-system`` namespace carries the local-mode
annotation) Prometheus and the trace store are found through the API, as their
Services' ready endpoints, and reached through a port-forward into the mesh's network
namespace (`osm.runtime.portforward`; needs root), and the controller is on the host's
loopback. In Kubernetes mode each comes from its URL flag (a ``kubectl port-forward``
away); a missing flag is that source's "not installed" state, said once at start. A
source that is missing, down or slow never stops the dashboard: it serves what it has
and shows the rest as states.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

import click

from osm import paths
from osm.base import wellknown
from osm.cli.client import HOW_TO_CONNECT
from osm.cli.common import CONTEXT, CONTEXT_KEY, KUBECONFIG_KEY, fail
from osm.dashboard import server, sources
from osm.dashboard.sources import Location, SourceState
from osm.kube import config as kube_config
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError, KubeError
from osm.runtime import network, portforward

NAMESPACE = wellknown.CONTROL_PLANE_NAMESPACE


def _hint(service: str, port: int, flag: str) -> str:
    return (
        f"kubectl port-forward -n {NAMESPACE} svc/{service} {port}, then "
        f"{flag} http://127.0.0.1:{port}"
    )


class ServiceLocator:
    """Local mode's way to a Service of ``osm-system``: its first ready endpoint, reached
    through a port-forward into the mesh's namespace. `locate` says where the forward
    listens, or why there is nothing to forward to; the forward connects to the endpoint
    `locate` found last (a restarted pod's new address is found within a period)."""

    def __init__(self, client: KubeClient, service: str, netns: str, ttl: float) -> None:
        self.client = client
        self.service = service
        self.netns = netns
        self.target: tuple[str, int] | None = None
        self.forward = portforward.PortForward(netns, self._resolve)
        self._cache: sources.TtlCache[str, Location] = sources.TtlCache(ttl)

    async def _resolve(self) -> tuple[str, int] | None:
        return self.target

    async def start(self) -> None:
        await self.forward.start()

    async def close(self) -> None:
        await self.forward.close()

    async def locate(self) -> Location:
        return await self._cache.get("location", self._find)

    async def _find(self) -> Location:
        name = f"{NAMESPACE}/{self.service}"
        try:
            await self.client.get("Service", NAMESPACE, self.service)
        except ApiError as error:
            if error.code == 404:
                return _missing(sources.NOT_INSTALLED, f"not installed (no Service {name})")
            return _missing(sources.ERROR, f"cannot read Service {name}: {error}")
        except KubeError as error:
            return _missing(sources.UNREACHABLE, f"cannot read Service {name}: {error}")
        try:
            endpoints = await self.client.get("Endpoints", NAMESPACE, self.service)
        except KubeError:
            endpoints = {}
        target = _first_ready(endpoints)
        if target is None:
            return _missing(
                sources.UNREACHABLE, f"no ready endpoint of Service {name} (is its pod running?)"
            )
        if os.geteuid() != 0:
            return _missing(
                sources.ERROR,
                f"reaching {target[0]} in the mesh's network namespace needs root "
                "(run osm dashboard as root, or pass its URL flag)",
            )
        if not network.netns_exists(self.netns):
            return _missing(
                sources.UNREACHABLE,
                f"network namespace {self.netns} does not exist (is osm up running?)",
            )
        self.target = target
        return Location(self.forward.url)


def _missing(state: str, detail: str) -> Location:
    return Location(None, SourceState(state, detail, None))


def _first_ready(endpoints: dict[str, Any]) -> tuple[str, int] | None:
    for subset in endpoints.get("subsets") or ():
        ports = [p.get("port") for p in subset.get("ports") or () if p.get("port")]
        for address in subset.get("addresses") or ():
            if address.get("ip") and ports:
                return str(address["ip"]), int(ports[0])
    return None


async def _local_mode(client: KubeClient, kubeconfig: Path | None) -> bool:
    """Whether the API is ``osm up``'s: its ``osm-system`` is annotated so, or (when the
    API cannot say, or an applied manifest replaced the Namespace without the annotation,
    as the demo's does) the kubeconfig is one ``osm up`` wrote."""
    try:
        found = await client.get("Namespace", None, NAMESPACE)
    except ApiError as error:
        if error.code == 404:
            return False
        return _written_by_osm_up(kubeconfig)
    except KubeError:
        return _written_by_osm_up(kubeconfig)
    annotations = (found.get("metadata") or {}).get("annotations") or {}
    return wellknown.LOCAL_MODE_ANNOTATION in annotations or _written_by_osm_up(kubeconfig)


def _written_by_osm_up(kubeconfig: Path | None) -> bool:
    """``kubeconfig`` is local mode's default one, or lies in a state dir ``osm up`` made."""
    from osm.runtime import daemon

    if kubeconfig is None:
        return False
    return kubeconfig == paths.kubeconfig_path() or (
        daemon.MeshSettings.load(kubeconfig.parent) is not None
    )


def local_mesh(kubeconfig: Path | None) -> tuple[str, int]:
    """Local mode: the mesh's network namespace and its controller's HTTP port, as the
    ``osm up`` that wrote ``kubeconfig`` recorded them in its state dir (beside the
    kubeconfig; ``osm up --prefix/--http-port``), else OSM's defaults."""
    from osm.runtime import daemon

    settings = daemon.MeshSettings.load(kubeconfig.parent) if kubeconfig is not None else None
    if settings is None:
        return network.MeshNetworkConfig().netns, wellknown.CONTROLLER_HTTP_PORT
    return network.mesh_netns(settings.prefix), settings.http_port


async def run(
    client: KubeClient,
    kubeconfig: Path | None,
    *,
    address: str,
    port: int,
    open_browser: bool,
    prometheus_url: str | None,
    tracing_url: str | None,
    controller_url: str | None,
    refresh_s: float,
    timeout_s: float,
) -> None:
    local = await _local_mode(client, kubeconfig)
    mesh_netns, controller_port = local_mesh(kubeconfig)
    forwards: list[ServiceLocator] = []

    async def locator(url: str | None, service: str, service_port: int, flag: str) -> Any:
        if url:
            return sources.fixed(url, "")
        if local:
            found = ServiceLocator(client, service, mesh_netns, refresh_s)
            await found.start()
            forwards.append(found)
            return found.locate
        return sources.fixed(
            None, f"not installed: no {flag} given ({_hint(service, service_port, flag)})"
        )

    prometheus_at = await locator(
        prometheus_url,
        wellknown.PROMETHEUS_SERVICE,
        wellknown.PROMETHEUS_SERVICE_PORT,
        "--prometheus-url",
    )
    tracing_at = await locator(
        tracing_url, wellknown.TRACING_SERVICE, wellknown.ZIPKIN_PORT, "--tracing-url"
    )
    if controller_url or local:
        default = f"http://{wellknown.LOCALHOST}:{controller_port}"
        controller_at = sources.fixed(controller_url or default, "")
    else:
        port_hint = wellknown.CONTROLLER_HTTP_PORT
        controller_at = sources.fixed(
            None,
            "not installed: no --controller-url given (kubectl port-forward -n "
            f"{NAMESPACE} deploy/{wellknown.CONTROLLER_SERVICE} {port_hint}, then "
            f"--controller-url http://127.0.0.1:{port_hint})",
        )

    def http(name: str, at: sources.Locator) -> sources.HttpSource:
        return sources.HttpSource(name, at, timeout=timeout_s, ttl=refresh_s)

    mesh = sources.KubernetesMesh(client, timeout=timeout_s)
    await mesh.start()
    dashboard = server.Dashboard(
        server.Sources(
            "local" if local else "kubernetes",
            mesh,
            sources.Prometheus(http("prometheus", prometheus_at)),
            sources.Zipkin(http("tracing", tracing_at)),
            sources.Controller(http("controller", controller_at)),
        ),
        refresh_s=refresh_s,
    )
    try:
        runner = await server.serve(dashboard, address, port)
    except OSError as error:
        await dashboard.close()
        for forward in forwards:
            await forward.close()
        fail(
            f"cannot listen on {address}:{port}: {error.strerror or error} "
            "(is another dashboard running? use --port)"
        )
    try:
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{port}/"
        mode = "local mode" if local else "Kubernetes mode"
        click.echo(f"osm dashboard ({mode}, {client.server}) at {url}")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(mesh.mesh(), timeout_s)
        status = await dashboard.prepare()  # the first page's answers, before the URL opens
        for name, state in status["sources"].items():
            where = f" ({state['url']})" if state["url"] else ""
            click.echo(f"  {name:<11} {state['state']}{where}: {state['detail']}")
        click.echo("Press Ctrl-C to stop.")
        if open_browser:
            threading.Thread(target=_open, args=(url,), daemon=True).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        for forward in forwards:
            await forward.close()


def _open(url: str) -> None:
    """Opens ``url`` in a browser, if there is one (never fails)."""
    with contextlib.suppress(Exception):
        webbrowser.open(url)


@click.command(name="dashboard", context_settings=CONTEXT)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=wellknown.DASHBOARD_PORT,
    show_default=True,
    help="The port to serve on.",
)
@click.option(
    "--address",
    default=wellknown.LOCALHOST,
    show_default=True,
    help="The address to serve on (the API shows the mesh's policy: keep it private).",
)
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@click.option(
    "--prometheus-url",
    default=None,
    help="Prometheus's URL. [default: local mode finds Service osm-system/osm-prometheus; "
    "Kubernetes mode has none]",
)
@click.option(
    "--tracing-url",
    default=None,
    help="The Zipkin API of the trace store (Jaeger's Zipkin port, Zipkin). [default: "
    "local mode finds Service osm-system/jaeger; Kubernetes mode has none]",
)
@click.option(
    "--controller-url",
    default=None,
    help="The controller's HTTP port (its /debug/proxies). [default: local mode's "
    f"http://{wellknown.LOCALHOST}:{wellknown.CONTROLLER_HTTP_PORT}; Kubernetes mode has none]",
)
@click.option(
    "--refresh",
    default="5s",
    show_default=True,
    help="How often the page refreshes; each source is asked at most once per period.",
)
@click.option(
    "--timeout",
    "timeout_text",
    default="2s",
    show_default=True,
    help="How long a source may take to answer before it shows as timed out.",
)
@click.pass_context
def dashboard(
    ctx: click.Context,
    port: int,
    address: str,
    no_browser: bool,
    prometheus_url: str | None,
    tracing_url: str | None,
    controller_url: str | None,
    refresh: str,
    timeout_text: str,
) -> None:
    """Serve a web UI of the mesh on this machine, print its URL and open a browser.

    The mesh as a live graph (requests/s, success rate and p50/p99 per edge from
    Prometheus; edges the SMI policy denies, with the TrafficTarget that would allow
    them), traffic splits' weights beside the shares observed, each service's golden
    signals over time, the proxies' xDS and certificate state (the controller's
    /debug/proxies) and traces from the trace store. It runs until Ctrl-C.

    In local mode (osm up) Prometheus and the trace store are found in osm-system and
    reached through a port-forward into the mesh (as root). In Kubernetes mode give
    their URLs, e.g. after `kubectl port-forward -n osm-system svc/osm-prometheus 7070`:
    --prometheus-url http://127.0.0.1:7070. A source that is missing or down is shown as
    such; the rest of the dashboard works.

    \b
    Examples:
      osm dashboard
      osm dashboard --no-browser --port 3001
      osm dashboard --prometheus-url http://127.0.0.1:7070 --tracing-url http://127.0.0.1:9411
    """
    try:
        refresh_s = server.duration_s("--refresh", refresh, 3600)
        timeout_s = server.duration_s("--timeout", timeout_text, 60)
    except server.BadParameter as error:
        raise click.BadParameter(str(error)) from None
    for flag, url in (
        ("--prometheus-url", prometheus_url),
        ("--tracing-url", tracing_url),
        ("--controller-url", controller_url),
    ):
        if url and not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{flag}: {url!r} is not an http:// or https:// URL")
    obj = ctx.find_root().obj
    options = obj if isinstance(obj, dict) else {}
    chosen = options.get(KUBECONFIG_KEY)
    try:
        kubeconfig = kube_config.find_kubeconfig(str(chosen) if chosen else None)
    except KubeError as error:
        fail(str(error))
    if kubeconfig is None and not kube_config.in_a_pod():
        fail(
            f"no kubeconfig found ($KUBECONFIG, {paths.kubeconfig_path()}, ~/.kube/config): "
            + HOW_TO_CONNECT.format(kubeconfig=paths.kubeconfig_path())
        )
    try:
        client = KubeClient.from_kubeconfig(
            kubeconfig, context=options.get(CONTEXT_KEY), timeout=timeout_s
        )
    except KubeError as error:
        fail(str(error))

    async def main() -> None:
        try:
            await run(
                client,
                kubeconfig,
                address=address,
                port=port,
                open_browser=not no_browser,
                prometheus_url=prometheus_url,
                tracing_url=tracing_url,
                controller_url=controller_url,
                refresh_s=refresh_s,
                timeout_s=timeout_s,
            )
        finally:
            await client.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
        sys.exit(0)
