"""``osm verify connectivity --from-pod NS/POD --to-service NS/SVC``: send one request from
inside a pod and say where it failed, using the proxies' own counters.

The one idea: the request is sent the way the pod's application would send it (a socket
in the pod's network namespace, to the service's ClusterIP and port, so the pod's
iptables rules hand it to its sidecar), and the evidence is what the sidecars themselves
count: the source's ``/stats`` and ``/config_dump`` and every destination pod's
``/stats`` are read before and after, and `osm.cli.connectivity.diagnose` turns the
difference into a verdict (no route, no endpoints, TLS, RBAC denied, connect failure,
success). Beside it, what the catalog expects (`osm.catalog.explain`): a verdict that
disagrees with the policy is said so.

Local mode only (``osm up``: pods have network namespaces; needs root). Exit status: 0
when the request succeeded, 2 when it failed (the verdict says where), 1 when it could
not be tried (a missing pod or service, no network namespace, not root).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from osm.base import wellknown
from osm.catalog import explain, membership
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId, ServiceId
from osm.catalog.policy import is_http
from osm.catalog.state import MeshState
from osm.cli import connectivity, output
from osm.cli.common import CONTEXT, connect, fail, fail_with
from osm.cli.policy import read_mesh
from osm.cli.proxy import admin_in_netns
from osm.kube.errors import KubeError
from osm.model.core import Pod, Service

FAILED_EXIT = 2
MAX_DESTINATION_PODS = 10
"""Destination sidecars whose stats are read (a request reaches one of them)."""
SETTLE_SECONDS = 0.3
"""Wait after the request before reading the counters again."""
RESPONSE_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Sidecar:
    pod: ProxyId
    netns: str


def _netns(pod: Pod) -> str:
    return pod.metadata.annotations.get(wellknown.NETNS_ANNOTATION, "")


def _stats(sidecar: Sidecar, timeout: float) -> dict[str, int] | None:
    try:
        status, body = admin_in_netns(sidecar.netns, "stats", timeout)
    except PermissionError:
        fail("reading a pod's proxy enters its network namespace: run as root")
    except OSError:
        return None
    return connectivity.parse_stats(body) if status == 200 else None


def _config(sidecar: Sidecar, timeout: float) -> Mapping[str, Any] | None:
    try:
        status, body = admin_in_netns(sidecar.netns, "config_dump", timeout)
    except OSError:
        return None
    return connectivity.parse_config_dump(body) if status == 200 else None


def send(
    netns: str, ip: str, target: connectivity.Target, path: str, timeout: float
) -> connectivity.Probe:
    """One request from inside network namespace ``netns`` to ``ip:port``: an HTTP GET of
    ``path`` on HTTP ports, a connection held for a moment on others."""
    from osm.runtime import network

    try:
        sock = network.socket_in_netns(netns)
    except network.NetworkError as error:
        return connectivity.Probe(error=str(error))
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect((ip, target.port))
        except OSError as error:
            return connectivity.Probe(error=f"connect to {ip}:{target.port}: {error}")
        if not is_http(target.protocol):
            return _hold(sock, min(timeout, 1.0))
        host = f"{target.service.fqdn}:{target.port}"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: osm-verify\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        data = b""
        try:
            sock.sendall(request.encode())
            while len(data) < RESPONSE_LIMIT:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            if not data:
                return connectivity.Probe(error=f"no answer within {timeout:g}s")
        except OSError as error:
            if not data:
                return connectivity.Probe(error=f"connection failed: {error}")
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return connectivity.Probe(error="the connection closed without an HTTP answer")
    return connectivity.Probe(
        status=int(status_line[1]), body=body[:512].decode(errors="replace"), connected=True
    )


def _hold(sock: socket.socket, seconds: float) -> connectivity.Probe:
    """A TCP connection is carried when it stays open (or the server speaks first)."""
    sock.settimeout(seconds)
    try:
        chunk = sock.recv(1024)
    except TimeoutError:
        return connectivity.Probe(connected=True)
    except OSError as error:
        return connectivity.Probe(error=f"connection reset: {error}")
    if chunk:
        return connectivity.Probe(connected=True)
    return connectivity.Probe(error="the connection was closed at once")


def resolve(
    state: MeshState, service_id: ServiceId, port: int | None
) -> tuple[Service, connectivity.Target, str]:
    """The service, the port asked (the only one when ``port`` is None) and the address
    a client connects to (the ClusterIP, or an endpoint of a headless service)."""
    service = state.service(service_id)
    if service is None:
        fail(f'service "{service_id.name}" not found in namespace "{service_id.namespace}"')
    ports = membership.tcp_ports(service)
    chosen = [p for p in ports if port is None or p.port == port]
    if not chosen or (port is None and len(chosen) > 1):
        listed = ", ".join(str(p.port) for p in ports) or "none"
        fail(f"Service {service_id} has TCP ports {listed}: choose one with --port")
    found = chosen[0]
    pods = [p for p in state.pods_selected_by(service) if p.pod_ip]
    target_port = next(
        (t for p in pods if (t := membership.target_port(found, p)) is not None),
        found.target_port if isinstance(found.target_port, int) else found.port,
    )
    target = connectivity.Target(service_id, found.port, target_port, found.app_protocol)
    address = service.cluster_ip if service.cluster_ip and not service.headless else ""
    if not address:
        address = next((p.pod_ip for p in pods if p.ready), "")
    if not address:
        fail(f"Service {service_id} has no ClusterIP and no ready endpoint to connect to")
    return service, target, address


def expectation(
    catalog: Catalog, source: ProxyId, service: Service, target: connectivity.Target
) -> explain.PortAnswer | None:
    """What the catalog says of the source calling the service port (through a pod the
    service selects)."""
    for pod in catalog.state.pods_selected_by(service):
        found = explain.explain(
            catalog, source, ProxyId(pod.namespace, pod.name), target.target_port
        )
        for answer in found.ports:
            if answer.service == target.service and answer.port == target.port:
                return answer
    return None


@click.group(name="verify", context_settings=CONTEXT)
def verify() -> None:
    """Check the running mesh end to end."""


@verify.command(name="connectivity", context_settings=CONTEXT)
@click.option("--from-pod", "from_pod", required=True, help="NAMESPACE/POD sending the request.")
@click.option("--to-service", "to_service", required=True, help="NAMESPACE/SERVICE to call.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="The service port.")
@click.option("--path", default="/", show_default=True, help="The request's path (HTTP ports).")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 120),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the answer (and for each admin read).",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
)
@click.pass_context
def connectivity_command(
    ctx: click.Context,
    from_pod: str,
    to_service: str,
    port: int | None,
    path: str,
    timeout: float,
    fmt: str,
) -> None:
    """Send one request from inside --from-pod to --to-service and say where it failed:
    no route (the source's sidecar has no cluster, chain or route for it), no endpoints,
    TLS handshake failure, RBAC denied (the destination's sidecar refused it), connect
    failure, or success; read from both sidecars' admin counters before and after, beside
    what the policy (osm policy check-pods) expects.

    Local mode only (osm up), as root. Exit status 0 on success, 2 when the request
    failed, 1 when it could not be tried.

    \b
    Example:
      osm verify connectivity --from-pod bookbuyer/bookbuyer-0 \\
          --to-service bookstore/bookstore --port 14001 --path /books-bought
    """
    if os.geteuid() != 0:
        fail("osm verify connectivity enters the pods' network namespaces: run as root")
    try:
        source = ProxyId.parse(from_pod)
        named = ProxyId.parse(to_service)
    except ValueError as error:
        fail(f"{error}: give --from-pod NAMESPACE/POD and --to-service NAMESPACE/SERVICE")
    service_id = ServiceId(named.namespace, named.name)
    with connect(ctx) as api:
        try:
            state = read_mesh(api)
        except KubeError as error:
            fail_with(error, api.server)
    pod = state.pod(source.namespace, source.name)
    if pod is None:
        fail(f"Could not find pod {source.name} in namespace {source.namespace}")
    if not _netns(pod):
        fail(
            f"pod {source} was not started by the local runtime (no network namespace "
            "recorded): osm verify connectivity works in local mode (osm up)"
        )
    service, target, address = resolve(state, service_id, port)
    catalog = Catalog(state)
    expected = expectation(catalog, source, service, target)
    src = Sidecar(source, _netns(pod))
    destinations = [
        Sidecar(ProxyId(p.namespace, p.name), _netns(p))
        for p in state.pods_selected_by(service)
        if _netns(p)
    ][:MAX_DESTINATION_PODS]
    src_before = _stats(src, timeout)
    src_config = _config(src, timeout) if src_before is not None else None
    dst_before = [_stats(d, timeout) for d in destinations]
    probe = send(src.netns, address, target, path, timeout)
    time.sleep(SETTLE_SECONDS)
    src_after = _stats(src, timeout) if src_before is not None else None
    dst_after = [_stats(d, timeout) for d in destinations]
    verdict = connectivity.diagnose(
        target,
        probe,
        connectivity.Reading(src_before, src_after),
        connectivity.Reading(_sum(dst_before), _sum(dst_after)),
        src_config,
    )
    if src_before is None:
        verdict = _without_sidecar(verdict)
    report = {
        "from": str(source),
        "to": f"{target.service}:{target.port}",
        "address": f"{address}:{target.port}",
        "protocol": target.protocol,
        "observed": verdict.outcome.value,
        "message": verdict.message,
        "evidence": list(verdict.evidence),
        "expected": _expected(expected),
        "probe": {
            "status": probe.status,
            "error": probe.error,
            "connected": probe.connected,
        },
        "agrees": _agrees(expected, verdict),
    }
    if fmt == "text":
        click.echo(render(report, expected))
    else:
        click.echo(output.dump(report, fmt))
    if not verdict.ok:
        sys.exit(FAILED_EXIT)


def _sum(readings: Sequence[Mapping[str, int] | None]) -> dict[str, int] | None:
    """The destinations' counters added up (None when none could be read)."""
    present = [r for r in readings if r is not None]
    if not present:
        return None
    total: dict[str, int] = {}
    for reading in present:
        for name, value in reading.items():
            total[name] = total.get(name, 0) + value
    return total


def _without_sidecar(verdict: connectivity.Verdict) -> connectivity.Verdict:
    return connectivity.Verdict(
        verdict.outcome,
        verdict.message + " (the source pod's sidecar did not answer on its admin port: "
        "is the pod in the mesh?)",
        verdict.evidence,
    )


def _expected(answer: explain.PortAnswer | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    return {"allowed": answer.allowed, "decidedBy": list(answer.decided_by)}


def _agrees(answer: explain.PortAnswer | None, verdict: connectivity.Verdict) -> bool | None:
    """Whether the observation matches the policy: allowed and reached, or denied and
    stopped by the route table or RBAC. None when the catalog has no answer."""
    if answer is None:
        return None
    if answer.allowed:
        return verdict.ok
    return verdict.outcome in (
        connectivity.Outcome.NO_ROUTE,
        connectivity.Outcome.RBAC_DENIED,
    )


def render(report: Mapping[str, Any], expected: explain.PortAnswer | None) -> str:
    lines = [
        f"From pod {report['from']} to Service {report['to']} ({report['protocol']}, "
        f"{report['address']})",
        f"Observed: {report['observed']}: {report['message']}",
    ]
    lines += [f"  {item}" for item in report["evidence"]]
    if expected is None:
        lines.append("Expected: (the catalog has no answer for this port)")
    else:
        verdict = "allowed" if expected.allowed else "denied"
        lines.append(f"Expected: {verdict} by the policy")
        lines += [f"  {reason}" for reason in expected.decided_by]
        if report["agrees"] is False:
            lines.append(
                "The observation disagrees with the policy: the proxies may not have their "
                "configuration yet (osm proxy status), or something outside the policy "
                "stopped the request"
            )
    return "\n".join(lines)
