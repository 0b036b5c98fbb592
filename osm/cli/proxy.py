"""``osm sidecar`` runs the Python sidecar; ``osm proxy`` looks at running proxies.

The one idea: a proxy is inspected from two sides, as in OSM: ``osm proxy get`` asks the
proxy itself (its Envoy-style admin interface: config_dump, stats, clusters, listeners,
ready, server_info) and ``osm proxy status`` asks the controller what each connected
proxy has acknowledged or rejected over xDS (the controller's plain-HTTP
``/debug/proxies``, on `wellknown.CONTROLLER_HTTP_PORT` or the port ``osm up`` recorded;
not the Kubernetes API). ``osm sidecar`` is `osm.proxy.main.execute` behind click; pods
run the same code as ``python -m osm.proxy``, without this package's imports.
"""

from __future__ import annotations

import datetime
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from osm import paths
from osm.base import wellknown
from osm.cli.common import CONTEXT, connect, fail_with
from osm.cli.common import fail as _fail
from osm.kube.errors import KubeError

QUERIES = ("config_dump", "stats", "clusters", "listeners", "ready", "server_info")
TYPES = ("CDS", "LDS", "RDS", "EDS", "SDS")
VERSION_WIDTH = 8


@click.command(name="sidecar", context_settings=CONTEXT)
@click.option(
    "--bootstrap",
    "bootstrap_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The bootstrap file (YAML or JSON): node id, xDS server, admin address.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def sidecar(bootstrap_path: Path, log_level: str) -> None:
    """Run the Python sidecar proxy: configured over xDS by the controller, until SIGTERM
    (then it drains in-flight requests and exits 0).

    Pods run the same thing without the `osm` command's imports: python -m osm.proxy."""
    from osm.proxy import main

    sys.exit(main.execute(main.Arguments(bootstrap_path, log_level)))


@click.group(name="proxy", context_settings=CONTEXT)
def proxy() -> None:
    """Inspect the mesh's proxies: their admin interface, and their xDS status."""


@proxy.command(name="get", context_settings=CONTEXT)
@click.argument("query", type=click.Choice(QUERIES))
@click.argument("pod", required=False)
@click.option(
    "-n", "--namespace", default="default", show_default=True, help="The POD's namespace."
)
@click.option(
    "--address",
    default=f"{wellknown.LOCALHOST}:{wellknown.PROXY_ADMIN_PORT}",
    show_default=True,
    help="HOST:PORT of the proxy's admin interface (without POD).",
)
@click.pass_context
def get(ctx: click.Context, query: str, pod: str | None, namespace: str, address: str) -> None:
    """Print a proxy's admin QUERY (config_dump, stats, clusters, listeners, ready,
    server_info: its version and whether its data plane runs compiled).

    With POD, the proxy is that pod's sidecar in the local runtime (its admin interface
    listens on 127.0.0.1:15000 inside the pod; this needs root). Without POD, the proxy
    whose admin interface listens on --address."""
    if pod is not None:
        status, body = _admin_in_pod(ctx, namespace, pod, query)
        where = f"pod {namespace}/{pod}'s proxy"
    else:
        status, body = _admin_at(address, query)
        where = f"http://{address}/{query}"
    click.echo(body, nl=not body.endswith("\n"))
    if status != 200:
        _fail(f"{where} answered HTTP {status}")


def _admin_at(address: str, query: str) -> tuple[int, str]:
    url = f"http://{address}/{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        _fail(f"cannot reach the proxy's admin interface at {address}: {reason}")


def _admin_in_pod(ctx: click.Context, namespace: str, pod: str, query: str) -> tuple[int, str]:
    """GET the admin QUERY from inside the pod's network namespace (the admin interface
    listens on the pod's loopback only, as OSM's Envoy does)."""
    with connect(ctx) as api:
        try:
            obj = api.get("Pod", namespace, pod)
        except KubeError as error:
            fail_with(error, api.server)
    netns = ((obj.get("metadata") or {}).get("annotations") or {}).get(wellknown.NETNS_ANNOTATION)
    if not netns:
        _fail(
            f"pod {namespace}/{pod} was not started by the local runtime (no network "
            "namespace recorded); give its admin interface with --address instead"
        )
    try:
        return admin_in_netns(netns, query)
    except PermissionError:
        _fail("reading a pod's proxy enters its network namespace: run as root")
    except AdminUnreachable as error:
        _fail(
            f"pod {namespace}/{pod} has no proxy answering on port "
            f"{wellknown.PROXY_ADMIN_PORT}: "
            f"{error} (is sidecar injection enabled in its namespace?)"
        )
    except OSError as error:
        _fail(f"pod {namespace}/{pod}'s network namespace {netns}: {error}")


class AdminUnreachable(OSError):
    """Nothing answered on the admin port inside the pod's network namespace."""


def admin_in_netns(netns: str, query: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET ``/QUERY`` from the admin interface on the loopback of network namespace
    ``netns``: the status and the body. Raises `PermissionError` (not root),
    `AdminUnreachable` (no proxy answers), or another `OSError` (no such namespace)."""
    from osm.runtime import network

    try:
        sock = network.socket_in_netns(netns)
    except network.NetworkError as error:
        if "not permitted" in str(error):
            raise PermissionError(str(error)) from None
        raise OSError(str(error)) from None
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect((wellknown.LOCALHOST, wellknown.PROXY_ADMIN_PORT))
            sock.sendall(
                f"GET /{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
            )
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as error:
            raise AdminUnreachable(str(error)) from None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    if b"chunked" in head.lower():
        body = _dechunk(body)
    return status, body.decode(errors="replace")


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


@proxy.command(name="status", context_settings=CONTEXT)
@click.option(
    "--address",
    default=None,
    help="HOST:PORT of the controller's HTTP endpoint. [default: 127.0.0.1 and the "
    f"--http-port osm up recorded in STATE_DIR, else {wellknown.CONTROLLER_HTTP_PORT}]",
)
def status(address: str | None) -> None:
    """List the proxies connected to the controller: identity, protocol, the versions
    they acknowledged per type, and the last configuration they rejected."""
    try:
        proxies = fetch_proxies(address or default_controller_address())
    except ProxyStatusUnavailable as error:
        _fail(str(error))
    if not proxies:
        click.echo("No proxies are connected.")
        return
    click.echo(status_table(proxies))


def default_controller_address(state_dir: Path | None = None) -> str:
    """127.0.0.1 and the controller's HTTP port that ``osm up`` recorded, else OSM's."""
    from osm.runtime import daemon

    settings = daemon.MeshSettings.load(state_dir or paths.default_state_dir())
    port = settings.http_port if settings is not None else wellknown.CONTROLLER_HTTP_PORT
    return f"{wellknown.LOCALHOST}:{port}"


class ProxyStatusUnavailable(Exception):
    """The controller's ``/debug/proxies`` did not answer with its list."""


def fetch_proxies(address: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The entries of ``http://ADDRESS/debug/proxies``, one per connected proxy. Raises
    `ProxyStatusUnavailable`, saying why."""
    url = f"http://{address}/debug/proxies"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise ProxyStatusUnavailable(f"{url} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ProxyStatusUnavailable(
            f"cannot reach the controller at {url}: {reason} (is the mesh running? osm up "
            "starts it; --address names another controller's HTTP endpoint)"
        ) from None
    except ValueError:
        raise ProxyStatusUnavailable(f"{url} answered something that is not JSON") from None
    found = body.get("proxies") if isinstance(body, dict) else None
    if not isinstance(found, list):
        raise ProxyStatusUnavailable(f"{url} answered no list of proxies")
    return [p for p in found if isinstance(p, dict)]


def _short(version: str) -> str:
    if not version:
        return "-"
    base, plus, rest = version.partition("+")
    return base[:VERSION_WIDTH] + (plus + rest if plus else "")


def _since(text: str, now: datetime.datetime) -> str:
    try:
        stamp = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = max(0, int((now - stamp).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _nack(entry: Mapping[str, Any]) -> str:
    nack = entry.get("last_nack")
    if not isinstance(nack, Mapping):
        return "-"
    return (
        f"{nack.get('type', '?')} {_short(str(nack.get('version', '')))}: {nack.get('message', '')}"
    )


def status_table(proxies: Sequence[Mapping[str, Any]], now: datetime.datetime | None = None) -> str:
    """A kubectl-style table of the controller's ``/debug/proxies`` entries."""
    moment = now or datetime.datetime.now(datetime.UTC)
    header = ["NODE ID", "IDENTITY", "PROTOCOL", "CONNECTED", *TYPES, "LAST NACK"]
    rows = [header]
    for entry in proxies:
        acked = entry.get("acked_versions") or {}
        rows.append(
            [
                str(entry.get("node_id", "")),
                str(entry.get("identity", "")),
                str(entry.get("protocol", "")),
                _since(str(entry.get("connected_since", "")), moment),
                *(_short(str(acked.get(t, ""))) for t in TYPES),
                _nack(entry),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
