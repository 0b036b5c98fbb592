"""OSM's health probe rewriting: app probes go through the sidecar's probe ports.

One idea: with every inbound connection redirected to the sidecar, the kubelet's probes
would reach the app only through the sidecar's mTLS listener and fail, so the injector
points them at plain ports the interception rules leave alone, and keeps the original
targets where the sidecar can forward to them (``pkg/injector/health_probes.go``):

- an ``httpGet`` probe (HTTP) goes to 15901/15902/15903 (liveness/readiness/startup)
  with path ``/osm-<kind>-probe``; the sidecar routes that path to the original port,
  rewriting it to the original path;
- an ``httpGet`` probe with scheme HTTPS keeps its path and goes to the same port,
  which the sidecar passes through as TCP to the original port;
- a ``tcpSocket`` probe becomes an ``httpGet`` of ``/osm-healthcheck`` on 15904, the
  original port in its ``Original-Tcp-Port`` header;
- ``exec`` and ``grpc`` probes are left as they are.

The original targets are returned as `HealthProbes`. A probe port named after a container
port that does not exist is an `InjectionError` (OSM logs it and probes port 0); so are
two containers with an httpGet probe of the same kind, which OSM's one listener per kind
would send both to the last one's target.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from osm.base import wellknown
from osm.injector.values import InjectionError


class ProbeKind(enum.Enum):
    """A probe field of a container, with the port, path and port name it is moved to."""

    LIVENESS = ("livenessProbe", wellknown.LIVENESS_PROBE_PORT, wellknown.LIVENESS_PROBE_PATH)
    READINESS = ("readinessProbe", wellknown.READINESS_PROBE_PORT, wellknown.READINESS_PROBE_PATH)
    STARTUP = ("startupProbe", wellknown.STARTUP_PROBE_PORT, wellknown.STARTUP_PROBE_PATH)

    @property
    def field(self) -> str:
        return self.value[0]

    @property
    def port(self) -> int:
        return int(self.value[1])

    @property
    def path(self) -> str:
        return str(self.value[2])

    @property
    def port_name(self) -> str:
        return {
            ProbeKind.LIVENESS: wellknown.LIVENESS_PROBE_PORT_NAME,
            ProbeKind.READINESS: wellknown.READINESS_PROBE_PORT_NAME,
            ProbeKind.STARTUP: wellknown.STARTUP_PROBE_PORT_NAME,
        }[self]

    @property
    def short(self) -> str:
        """``liveness``, ``readiness`` or ``startup`` (OSM's listener and cluster names)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class OriginalProbe:
    """Where a rewritten probe went before: `port` (named ports resolved) and `path` on
    `container`; `https` for a passed-through HTTPS probe, `tcp` for a tcpSocket probe;
    `timeout_seconds` as the probe said (Kubernetes' default 1)."""

    kind: ProbeKind
    container: str
    port: int
    path: str = "/"
    https: bool = False
    tcp: bool = False
    timeout_seconds: int = 1


@dataclass(frozen=True, slots=True)
class HealthProbes:
    """The original targets of the rewritten probes, in container order."""

    probes: tuple[OriginalProbe, ...] = ()

    def kinds(self) -> tuple[ProbeKind, ...]:
        """The kinds of probe the pod has (each gets its port on the sidecar), in OSM's
        order: liveness, readiness, startup."""
        present = {probe.kind for probe in self.probes}
        return tuple(kind for kind in ProbeKind if kind in present)

    def forwarded(self) -> tuple[OriginalProbe, ...]:
        """The probes the sidecar forwards itself (httpGet, HTTP or HTTPS), by kind."""
        by_kind = {probe.kind: probe for probe in self.probes if not probe.tcp}
        return tuple(by_kind[kind] for kind in ProbeKind if kind in by_kind)

    @property
    def uses_tcp(self) -> bool:
        return any(probe.tcp for probe in self.probes)


def rewrite(
    containers: Sequence[Mapping[str, Any]], owner: str, path: str = "spec.containers"
) -> tuple[list[dict[str, Any]], HealthProbes]:
    """The containers with their probes rewritten (copies), and the original targets.

    `owner` (``Pod ns/name``) and `path` locate errors.
    """
    rewritten: list[dict[str, Any]] = []
    originals: list[OriginalProbe] = []
    forwarded: dict[ProbeKind, str] = {}
    for index, container in enumerate(containers):
        result = copy.deepcopy(dict(container))
        name = str(result.get("name", ""))
        ports = result.get("ports") or []
        for kind in ProbeKind:
            probe = result.get(kind.field)
            if not isinstance(probe, dict):
                continue
            where = f"{path}[{index}].{kind.field}"
            original = _rewrite_probe(probe, kind, name, ports, owner, where)
            if original is None:
                continue
            if not original.tcp:
                if kind in forwarded:
                    raise InjectionError(
                        owner,
                        f"{where}.httpGet",
                        f"a second httpGet {kind.short} probe (the first is on "
                        f"{forwarded[kind]}); the sidecar forwards one per pod on port "
                        f"{kind.port}",
                    )
                forwarded[kind] = f"container {name}"
            originals.append(original)
        rewritten.append(result)
    return rewritten, HealthProbes(tuple(originals))


def _rewrite_probe(
    probe: dict[str, Any],
    kind: ProbeKind,
    container: str,
    ports: Sequence[Mapping[str, Any]],
    owner: str,
    where: str,
) -> OriginalProbe | None:
    timeout = probe.get("timeoutSeconds", 1)
    timeout = timeout if isinstance(timeout, int) and timeout > 0 else 1
    http_get = probe.get("httpGet")
    if isinstance(http_get, dict):
        port = _resolve(http_get.get("port"), ports, owner, f"{where}.httpGet.port")
        original_path = str(http_get.get("path") or "/")
        https = str(http_get.get("scheme") or "HTTP").upper() == "HTTPS"
        http_get["port"] = kind.port
        if not https:
            http_get["path"] = kind.path
        return OriginalProbe(kind, container, port, original_path, https, False, timeout)
    tcp_socket = probe.get("tcpSocket")
    if isinstance(tcp_socket, dict):
        port = _resolve(tcp_socket.get("port"), ports, owner, f"{where}.tcpSocket.port")
        del probe["tcpSocket"]
        probe["httpGet"] = {
            "path": wellknown.HEALTHCHECK_PATH,
            "port": wellknown.HEALTHCHECK_PORT,
            "httpHeaders": [{"name": wellknown.ORIGINAL_TCP_PORT_HEADER, "value": str(port)}],
        }
        return OriginalProbe(kind, container, port, "", False, True, timeout)
    return None


def _resolve(port: object, ports: Sequence[Mapping[str, Any]], owner: str, where: str) -> int:
    """A probe's port: a number, a number as text, or a container port's name."""
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return port
    if isinstance(port, str):
        if port.isdigit() and 1 <= int(port) <= 65535:
            return int(port)
        for item in ports:
            if item.get("name") == port and isinstance(item.get("containerPort"), int):
                return int(item["containerPort"])
        names = sorted(str(item["name"]) for item in ports if item.get("name"))
        known = f"; the container's named ports: {', '.join(names)}" if names else ""
        raise InjectionError(owner, where, f'no container port is named "{port}"{known}')
    raise InjectionError(owner, where, f"{port!r} is not a port number (1-65535) or a port name")
