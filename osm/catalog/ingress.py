"""Ingress: traffic from outside the mesh that IngressBackends admit to a proxy's services.

The one idea: the IngressBackends naming a service as a backend
(`MeshState.ingress_backends_for`) become one `IngressPort` per backend port (OSM's
IngressTrafficMatch and its HTTP policy), computed per service and shared by every proxy
serving it.

Rules (OSM's ``GetIngressTrafficPolicy``, policy.openservicemesh.io/v1alpha1):

* A backend's port is the application's port (the Service's targetPort); the service
  port targeting it gives the local cluster the routes lead to. A backend port that no
  TCP port of the Service targets is ignored, with a warning.
* One IngressBackend per backend port: with several naming the same (service, port) the
  first by name applies, as OSM's lookup returns the first it finds (its webhook is
  meant to refuse the second); a warning names both.
* Sources: an ``IPRange`` is its CIDR; a ``Service`` the addresses of its ready endpoints
  (`outbound.endpoints`: its Endpoints object, else its ready pods), each a /32 (/128);
  an ``AuthenticatedPrincipal`` a client certificate name, checked on https backends
  that validate client certificates. As in OSM, a Service source that is missing or has
  no ready endpoint makes the IngressBackend admit nothing (rather than any address),
  with a warning.
* Requests: the matches of the HTTPRouteGroups in ``matches`` (none: every request). A
  missing group is a warning; when every named group is missing the IngressBackend
  admits nothing. OSM reads no ``matches`` (a wildcard route, its TODO #3779); we apply
  them as its API describes. UpstreamTrafficSetting matches are not routes: the
  service's own limits come in ``rate_limits``.
* http: any client from the source ranges (OSM's wildcard principal; no ranges at all
  admits any address, with OSM's warning that this is insecure). https: TLS ended with
  the proxy's certificate; unless ``skipClientCertValidation`` the client certificate
  must chain to the mesh root and, when AuthenticatedPrincipal sources are listed, name
  one of them. Without such sources any validated client is allowed (OSM would allow
  none: its RBAC policy has no principal); with validation skipped any client is (OSM's
  wildcard identity).
"""

from __future__ import annotations

import ipaddress

from osm.catalog import membership, outbound, routegroups
from osm.catalog.ids import ServiceId
from osm.catalog.policy import IngressPort, IngressRule, RateLimits, RequestMatch
from osm.catalog.state import MeshState
from osm.catalog.warn import Warn, WarningKey
from osm.model.core import Service
from osm.model.meta import ObjectRef
from osm.model.policy import IngressBackend, IngressBackendTarget

HTTP = "http"
HTTPS = "https"
AUTHENTICATED_PRINCIPAL = "AuthenticatedPrincipal"
IP_RANGE = "IPRange"


def ingress_ports(
    state: MeshState, service: ServiceId, rate_limits: RateLimits | None, warn: Warn
) -> tuple[IngressPort, ...]:
    """The ingress ports of ``service`` (sorted by target port), each with the service's
    ``rate_limits``; problems are warnings under ``("service", service)``."""
    backends = state.ingress_backends_for(service)
    if not backends:
        return ()
    key: WarningKey = ("service", service)
    found = state.service(service)
    if found is None:
        for backend in backends:
            warn(key, backend, f'backend Service "{service}" does not exist; nothing is admitted')
        return ()
    chosen: dict[int, tuple[IngressBackend, IngressBackendTarget]] = {}
    for backend in backends:
        for target in backend.backends:
            if target.name != service.name:
                continue
            first = chosen.setdefault(target.port.number, (backend, target))[0]
            if first is not backend:
                warn(
                    key,
                    backend,
                    f'backend "{service.name}" port {target.port.number} is also named by '
                    f'IngressBackend "{first.namespace}/{first.name}", which applies (the '
                    "first by name); this one is ignored for that port",
                )
    sources: dict[ObjectRef, tuple[str, ...] | None] = {}
    requests: dict[ObjectRef, tuple[RequestMatch, ...] | None] = {}
    result: list[IngressPort] = []
    for number in sorted(chosen):
        backend, target = chosen[number]
        port = _service_port(state, found, number)
        if port is None:
            warn(
                key,
                backend,
                f'backend "{service.name}" port {number}: no TCP port of Service "{service}" '
                f"has targetPort {number} (an IngressBackend names the application's port, "
                "the Service's targetPort); nothing is admitted on it",
            )
            continue
        ref = backend.ref
        if ref not in sources:
            sources[ref] = _source_ranges(state, backend, key, warn)
            requests[ref] = _request_matches(state, backend, key, warn)
        ranges, matches = sources[ref], requests[ref]
        if ranges is None or matches is None:
            continue
        protocol = target.port.protocol
        tls = target.tls if protocol == HTTPS else None
        skip = tls is not None and tls.skip_client_cert_validation
        principals = _principals(backend) if protocol == HTTPS and not skip else None
        if protocol == HTTP and not ranges:
            warn(
                key,
                backend,
                f'backend "{service.name}" port {number} is http with no IPRange or Service '
                "source: any address may send to it (insecure; list the ingress "
                "controller as a source)",
            )
        result.append(
            IngressPort(
                service,
                number,
                protocol,
                ranges,
                tuple(IngressRule(match, principals) for match in matches),
                server_names=_server_names(tls.sni_hosts) if tls is not None else (),
                skip_client_cert_validation=skip,
                rate_limits=rate_limits,
                port=port,
                origins=(ref,),
            )
        )
    return tuple(result)


def _service_port(state: MeshState, service: Service, target_port: int) -> int | None:
    """The first TCP port of ``service`` whose target port is ``target_port`` (a named
    target port resolved against the service's pods)."""
    pods = None
    for port in membership.tcp_ports(service):
        if isinstance(port.target_port, int):
            if port.target_port == target_port:
                return port.port
            continue
        if pods is None:
            pods = state.pods_selected_by(service)
        if any(membership.target_port(port, pod) == target_port for pod in pods):
            return port.port
    return None


def _source_ranges(
    state: MeshState, backend: IngressBackend, key: WarningKey, warn: Warn
) -> tuple[str, ...] | None:
    """The CIDRs of the IPRange and Service sources, sorted; None when a Service source
    has no address (the IngressBackend then admits nothing)."""
    ranges: set[str] = set()
    for index, source in enumerate(backend.sources):
        if source.kind == IP_RANGE:
            ranges.add(source.name)
        elif source.kind == Service.KIND:
            sid = ServiceId(source.namespace or backend.namespace, source.name)
            where = f'spec.sources[{index}]: Service "{sid}"'
            found = state.service(sid)
            if found is None:
                warn(key, backend, f"{where} does not exist; the IngressBackend admits nothing")
                return None
            ips = {e.ip for port in found.ports for e in outbound.endpoints(state, found, port)}
            if not ips:
                warn(
                    key,
                    backend,
                    f"{where} has no ready endpoint; the IngressBackend admits nothing until "
                    "it has",
                )
                return None
            ranges.update(_host_cidr(ip) for ip in ips)
    return tuple(sorted(ranges))


def _host_cidr(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    return f"{address}/{address.max_prefixlen}"


def _request_matches(
    state: MeshState, backend: IngressBackend, key: WarningKey, warn: Warn
) -> tuple[RequestMatch, ...] | None:
    """The requests admitted: the matches of the named HTTPRouteGroups in order (no
    group named: every request); None when every group named is missing."""
    found, named = routegroups.request_matches(state, backend, key, warn, "it admits no request")
    if not named:
        return (RequestMatch(),)
    return found or None


def _server_names(sni_hosts: tuple[str, ...]) -> tuple[str, ...]:
    """The SNI hosts lower-cased (DNS names are case-insensitive), each once: Envoy
    refuses a chain that lists a server name twice (overlapping matches)."""
    return tuple(dict.fromkeys(host.lower() for host in sni_hosts))


def _principals(backend: IngressBackend) -> tuple[str, ...] | None:
    """The AuthenticatedPrincipal names, sorted (None: none listed, any validated client)."""
    names = {s.name for s in backend.sources if s.kind == AUTHENTICATED_PRINCIPAL}
    return tuple(sorted(names)) if names else None
