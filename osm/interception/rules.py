"""OSM's sidecar interception rules, as ``iptables-restore --noflush`` input for ``*nat``.

The one idea: the rules are exactly those of OSM's init container
(``pkg/injector/iptables.go``, v1.2), in the same order, so a pod in local mode is
intercepted the way an injected Kubernetes pod is. Everything that varies per pod is in
a frozen `InterceptionConfig`, built by `config_for_pod` from the pod's annotations and
the MeshConfig's traffic lists (MeshConfig entries first, then the pod's, without
duplicates, as OSM's ``mergePortExclusionLists`` does). `render` is pure: no I/O.

OSM's init container leaves ``$POD_IP`` to its shell in PodIP mode; `render` writes the
pod's address when the config has one and the literal ``$POD_IP`` otherwise (for a
Kubernetes init container script). `osm.interception.apply` refuses the placeholder.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from osm.base import wellknown
from osm.model.config import LOCAL_PROXY_MODES, MeshConfig

POD_IP_PLACEHOLDER = "$POD_IP"

_T = TypeVar("_T")

# The names iptables accepts for an interface (Linux IFNAMSIZ is 16 with the NUL).
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")


class InterceptionConfigError(ValueError):
    """A bad exclusion or inclusion value; the message names its source and the item."""


@dataclass(frozen=True, slots=True)
class InterceptionConfig:
    """Everything that varies between pods' interception rules.

    Lists are already merged and free of duplicates; CIDRs are normalised IPv4 networks
    (``10.0.0.0/8``). ``pod_ip`` matters only when ``local_proxy_mode`` is ``"PodIP"``.
    """

    outbound_port_exclusions: tuple[int, ...] = ()
    inbound_port_exclusions: tuple[int, ...] = ()
    outbound_ip_range_exclusions: tuple[str, ...] = ()
    outbound_ip_range_inclusions: tuple[str, ...] = ()
    network_interface_exclusions: tuple[str, ...] = ()
    local_proxy_mode: str = "Localhost"
    pod_ip: str = ""


def config_for_pod(
    annotations: Mapping[str, str],
    mesh_config: MeshConfig | None = None,
    *,
    pod_ip: str = "",
    excluded_addresses: Iterable[str] = (),
) -> InterceptionConfig:
    """Builds a pod's `InterceptionConfig` from its annotations and the MeshConfig.

    ``excluded_addresses`` (e.g. the controller's xDS address as seen from pods) are
    added to the outbound IP range exclusions as /32s. The sidecar's own traffic is
    UID 1500 and never intercepted; this keeps the path open for other processes too.

    Raises `InterceptionConfigError` naming the annotation (or MeshConfig field) and
    the bad item, e.g. a port that is not 1-65535 or a range that is not an IPv4 CIDR.
    """
    traffic = mesh_config.traffic if mesh_config is not None else None
    mode = mesh_config.sidecar.local_proxy_mode if mesh_config is not None else "Localhost"
    mesh = "MeshConfig spec.traffic."
    out_ports = _merge(
        _ports(
            traffic.outbound_port_exclusion_list if traffic else (),
            mesh + "outboundPortExclusionList",
        ),
        _annotation_ports(annotations, wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION),
    )
    in_ports = _merge(
        _ports(
            traffic.inbound_port_exclusion_list if traffic else (),
            mesh + "inboundPortExclusionList",
        ),
        _annotation_ports(annotations, wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION),
    )
    ip_exclusions = _merge(
        _cidrs(
            traffic.outbound_ip_range_exclusion_list if traffic else (),
            mesh + "outboundIPRangeExclusionList",
        ),
        _cidrs(
            _split(annotations.get(wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION, "")),
            wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION,
        ),
        _cidrs((f"{a}/32" for a in excluded_addresses), "excluded addresses"),
    )
    ip_inclusions = _merge(
        _cidrs(
            traffic.outbound_ip_range_inclusion_list if traffic else (),
            mesh + "outboundIPRangeInclusionList",
        ),
        _cidrs(
            _split(annotations.get(wellknown.OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION, "")),
            wellknown.OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION,
        ),
    )
    interfaces = _merge(
        _interfaces(
            traffic.network_interface_exclusion_list if traffic else (),
            mesh + "networkInterfaceExclusionList",
        )
    )
    config = InterceptionConfig(
        outbound_port_exclusions=out_ports,
        inbound_port_exclusions=in_ports,
        outbound_ip_range_exclusions=ip_exclusions,
        outbound_ip_range_inclusions=ip_inclusions,
        network_interface_exclusions=interfaces,
        local_proxy_mode=mode,
        pod_ip=pod_ip,
    )
    validate(config)
    return config


def validate(config: InterceptionConfig) -> None:
    """Raises `InterceptionConfigError` if a hand-built config could not be rendered."""
    if config.local_proxy_mode not in LOCAL_PROXY_MODES:
        raise InterceptionConfigError(
            f'local proxy mode "{config.local_proxy_mode}" is not one of {list(LOCAL_PROXY_MODES)}'
        )
    if config.pod_ip:
        try:
            ipaddress.IPv4Address(config.pod_ip)
        except ValueError:
            raise InterceptionConfigError(
                f'pod IP "{config.pod_ip}" is not an IPv4 address'
            ) from None
    _ports(config.outbound_port_exclusions, "outbound port exclusions")
    _ports(config.inbound_port_exclusions, "inbound port exclusions")
    _cidrs(config.outbound_ip_range_exclusions, "outbound IP range exclusions")
    _cidrs(config.outbound_ip_range_inclusions, "outbound IP range inclusions")
    _interfaces(config.network_interface_exclusions, "network interface exclusions")


def render(config: InterceptionConfig) -> str:
    """The ``iptables-restore --noflush`` input for the ``*nat`` table, ending in COMMIT.

    The order of rules is OSM's: inbound statics, interface and inbound-port RETURNs
    (inserted at the top), outbound statics, the PodIP DNAT (inserted in OUTPUT),
    interface RETURNs, IP range and port exclusions, then either the inclusion ranges
    followed by RETURN, or the catch-all redirect to the outbound listener. More than 15
    excluded ports (iptables' multiport limit, on which OSM's single rule fails) become
    several rules of 15.
    """
    validate(config)
    rules = [
        "# OSM sidecar interception rules",
        "*nat",
        ":OSM_PROXY_INBOUND - [0:0]",
        ":OSM_PROXY_IN_REDIRECT - [0:0]",
        ":OSM_PROXY_OUTBOUND - [0:0]",
        ":OSM_PROXY_OUT_REDIRECT - [0:0]",
        # 1. Inbound: redirect to the inbound listener, except metrics and probe ports.
        f"-A OSM_PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-port {wellknown.PROXY_INBOUND_PORT}",
        "-A PREROUTING -p tcp -j OSM_PROXY_INBOUND",
    ]
    for port in (
        wellknown.PROXY_PROMETHEUS_PORT,
        wellknown.LIVENESS_PROBE_PORT,
        wellknown.READINESS_PROBE_PORT,
        wellknown.STARTUP_PROBE_PORT,
        wellknown.HEALTHCHECK_PORT,
    ):
        rules.append(f"-A OSM_PROXY_INBOUND -p tcp --dport {port} -j RETURN")
    rules.append("-A OSM_PROXY_INBOUND -p tcp -j OSM_PROXY_IN_REDIRECT")
    for interface in config.network_interface_exclusions:
        rules.append(f"-I OSM_PROXY_INBOUND -i {interface} -j RETURN")
    # 2. Inbound port exclusions.
    for ports in _multiport_lists(config.inbound_port_exclusions):
        rules.append(f"-I OSM_PROXY_INBOUND -p tcp --match multiport --dports {ports} -j RETURN")
    # 3. Outbound statics.
    rules += [
        f"-A OSM_PROXY_OUT_REDIRECT -p tcp -j REDIRECT --to-port {wellknown.PROXY_OUTBOUND_PORT}",
        f"-A OSM_PROXY_OUT_REDIRECT -p tcp --dport {wellknown.PROXY_ADMIN_PORT} -j ACCEPT",
        "-A OUTPUT -p tcp -j OSM_PROXY_OUTBOUND",
        # The sidecar calling its own app over a service address: to the inbound listener.
        f"-A OSM_PROXY_OUTBOUND -o lo ! -d 127.0.0.1/32 -m owner --uid-owner {wellknown.PROXY_UID} "
        "-j OSM_PROXY_IN_REDIRECT",
        # The app calling itself over lo (e.g. by pod IP): not redirected.
        f"-A OSM_PROXY_OUTBOUND -o lo -m owner ! --uid-owner {wellknown.PROXY_UID} -j RETURN",
        # The sidecar's own traffic: never back to itself.
        f"-A OSM_PROXY_OUTBOUND -m owner --uid-owner {wellknown.PROXY_UID} -j RETURN",
        "-A OSM_PROXY_OUTBOUND -d 127.0.0.1/32 -j RETURN",
    ]
    if config.local_proxy_mode == "PodIP":
        destination = config.pod_ip or POD_IP_PLACEHOLDER
        rules.append(
            f"-I OUTPUT -p tcp -o lo -d 127.0.0.1/32 -m owner --uid-owner {wellknown.PROXY_UID} "
            f"-j DNAT --to-destination {destination}"
        )
    for interface in config.network_interface_exclusions:
        rules.append(f"-A OSM_PROXY_OUTBOUND -o {interface} -j RETURN")
    # 4-5. Outbound exclusions (before inclusions: order matters).
    for cidr in config.outbound_ip_range_exclusions:
        rules.append(f"-A OSM_PROXY_OUTBOUND -d {cidr} -j RETURN")
    for ports in _multiport_lists(config.outbound_port_exclusions):
        rules.append(f"-A OSM_PROXY_OUTBOUND -p tcp --match multiport --dports {ports} -j RETURN")
    # 6. Inclusions, or redirect everything that is left.
    if config.outbound_ip_range_inclusions:
        for cidr in config.outbound_ip_range_inclusions:
            rules.append(f"-A OSM_PROXY_OUTBOUND -d {cidr} -j OSM_PROXY_OUT_REDIRECT")
        rules.append("-A OSM_PROXY_OUTBOUND -j RETURN")
    else:
        rules.append("-A OSM_PROXY_OUTBOUND -j OSM_PROXY_OUT_REDIRECT")
    rules.append("COMMIT")
    return "\n".join(rules) + "\n"


def init_container_script(config: InterceptionConfig) -> str:
    """The shell command OSM's init container runs: ``iptables-restore`` with a heredoc."""
    return f"iptables-restore --noflush <<EOF\n{render(config)}EOF\n"


def _multiport_lists(ports: Sequence[int]) -> list[str]:
    """Ports as ``--dports`` values: one list as OSM writes it, split into several rules
    of at most 15 ports where OSM's single rule would exceed iptables' multiport limit."""
    return [",".join(str(p) for p in ports[i : i + 15]) for i in range(0, len(ports), 15)]


# -- parsing and merging ---------------------------------------------------------------
def _split(value: str) -> list[str]:
    """Comma-separated items, trimmed; an empty annotation is an empty list."""
    return [item.strip() for item in value.split(",")] if value.strip() else []


def _annotation_ports(annotations: Mapping[str, str], key: str) -> tuple[int, ...]:
    ports: list[int] = []
    for item in _split(annotations.get(key, "")):
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise InterceptionConfigError(
                f'annotation {key}: "{item}" is not a port number (1-65535); '
                'expected a comma-separated list such as "8080,8443"'
            )
        ports.append(int(item))
    return tuple(ports)


def _ports(ports: Iterable[int], source: str) -> tuple[int, ...]:
    checked = tuple(ports)
    for port in checked:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InterceptionConfigError(f"{source}: {port!r} is not a port number (1-65535)")
    return checked


def _cidrs(items: Iterable[str], source: str) -> tuple[str, ...]:
    networks: list[str] = []
    for item in items:
        if "/" not in item:
            raise InterceptionConfigError(
                f'{source}: "{item}" is not an IP range in CIDR notation (e.g. "10.0.0.0/8")'
            )
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise InterceptionConfigError(
                f'{source}: "{item}" is not an IP range in CIDR notation (e.g. "10.0.0.0/8")'
            ) from None
        if network.version != 4:
            raise InterceptionConfigError(
                f'{source}: "{item}" is an IPv6 range; interception rules are IPv4 (iptables)'
            )
        networks.append(str(network))
    return tuple(networks)


def _interfaces(names: Iterable[str], source: str) -> tuple[str, ...]:
    checked = tuple(names)
    for name in checked:
        if not _INTERFACE.match(name):
            raise InterceptionConfigError(
                f'{source}: "{name}" is not a network interface name (1-15 characters)'
            )
    return checked


def _merge(*lists: Sequence[_T]) -> tuple[_T, ...]:
    """Concatenates, keeping the first occurrence of each item (global lists come first)."""
    seen: dict[_T, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return tuple(seen)
