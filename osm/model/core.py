"""Kubernetes core kinds that the mesh reads: Namespace, ServiceAccount, Service,
Deployment, Pod and Endpoints.

The mesh models only the fields it acts on. Those are validated as Kubernetes would;
other fields of these kinds pass through untouched (real manifests carry many), unlike
the CRD kinds, which are strict.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from osm.base import wellknown
from osm.model.fields import IANA_SVC_NAME, Fields, check_dns_label
from osm.model.meta import EMPTY, Resource, empty_map, frozen_map

# appProtocol values the mesh knows how to proxy (OSM's set).
APP_PROTOCOLS = ("http", "tcp", "tcp-server-first", "grpc")
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROBE_SCHEMES = ("HTTP", "HTTPS")

# OSM's annotation that turns sidecar injection on for a namespace or a pod.
_ENABLED = ("enabled", "yes", "true")


def injection_enabled(annotations: Mapping[str, str]) -> bool | None:
    """True or False when the injection annotation says so, None when it is absent."""
    value = annotations.get(wellknown.SIDECAR_INJECTION_ANNOTATION)
    if value is None:
        return None
    return value.lower() in _ENABLED


@dataclass(frozen=True, slots=True)
class Namespace(Resource):
    KIND = "Namespace"

    @property
    def sidecar_injection(self) -> bool:
        return injection_enabled(self.metadata.annotations) is True


@dataclass(frozen=True, slots=True)
class ServiceAccount(Resource):
    KIND = "ServiceAccount"


# -- Service ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of a Service. ``target_port`` is a number or a container port name."""

    port: int
    target_port: int | str
    name: str = ""
    protocol: str = "TCP"
    app_protocol: str = "http"


@dataclass(frozen=True, slots=True)
class Service(Resource):
    KIND = "Service"
    ports: tuple[ServicePort, ...] = ()
    selector: Mapping[str, str] = field(default_factory=empty_map)
    cluster_ip: str = ""
    type: str = "ClusterIP"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"

    def port_named(self, name_or_number: str | int) -> ServicePort | None:
        for port in self.ports:
            if port.name == name_or_number or port.port == name_or_number:
                return port
        return None


def parse_service(doc: Fields, base: Resource) -> Service:
    spec = doc.object("spec", required=True, strict=False)
    ports: list[ServicePort] = []
    names: set[str] = set()
    numbers: set[tuple[int, str]] = set()
    port_items = list(spec.objects("ports"))
    for item in port_items:
        port = item.integer("port", required=True, minimum=1, maximum=65535)
        name = item.string("name", required=len(port_items) > 1)
        if name:
            if complaint := check_dns_label(name):
                item.error("name", complaint)
            elif name in names:
                item.error("name", f'duplicate port name "{name}"; port names must be unique')
            names.add(name)
        protocol = item.string("protocol", default="TCP", choices=PROTOCOLS)
        if port and (port, protocol) in numbers:
            item.error("port", f"duplicate port {port}/{protocol}")
        numbers.add((port, protocol))
        target = _port_ref(item, "targetPort", default=port)
        app_protocol = item.string("appProtocol", default="http", choices=APP_PROTOCOLS)
        ports.append(ServicePort(port, target, name, protocol, app_protocol))
    service_type = spec.string("type", default="ClusterIP", choices=SERVICE_TYPES)
    cluster_ip = spec.string("clusterIP")
    if cluster_ip and cluster_ip != "None":
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            spec.error("clusterIP", f'"{cluster_ip}" is not an IP address or "None"')
    ports_given = spec.raw("ports")
    if (
        spec.present
        and not ports
        and ports_given in (None, [])
        and service_type != "ExternalName"
        and cluster_ip != "None"
    ):
        spec.error("ports", "a Service needs at least one port")
    return Service(
        base.api_version,
        base.metadata,
        base.manifest,
        ports=tuple(ports),
        selector=frozen_map(spec.str_map("selector", check_labels=True)),
        cluster_ip=cluster_ip,
        type=service_type,
    )


def _port_ref(fields: Fields, key: str, *, default: int | str = 0) -> int | str:
    """A port given as a number (1-65535) or as a named container port."""
    value = fields.raw(key)
    if value is None:
        return default
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return fields.int_value(
                int(value),
                key,
                minimum=1,
                maximum=65535,
                default=default if isinstance(default, int) else 0,
            )
        if not IANA_SVC_NAME.match(value) or not any(c.isalpha() for c in value):
            fields.error(
                key,
                f'"{value}" is not a port number or a port name (at most 15 lowercase '
                "letters, digits and '-', with at least one letter)",
            )
            return default
        return value
    return fields.int_value(
        value, key, minimum=1, maximum=65535, default=default if isinstance(default, int) else 0
    )


# -- Pod template, Deployment, Pod -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Probe:
    """A readiness probe: exactly one of http_get path, tcp_socket or exec is set."""

    kind: str  # "httpGet" | "tcpSocket" | "exec"
    port: int | str = 0
    path: str = "/"
    scheme: str = "HTTP"
    command: tuple[str, ...] = ()
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    readiness_probe: Probe | None = None


@dataclass(frozen=True, slots=True)
class PodSpec:
    containers: tuple[Container, ...]
    service_account_name: str = "default"


@dataclass(frozen=True, slots=True)
class PodTemplate:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec: PodSpec


@dataclass(frozen=True, slots=True)
class Deployment(Resource):
    KIND = "Deployment"
    replicas: int = 1
    selector: Mapping[str, str] = field(default_factory=empty_map)
    template: PodTemplate = PodTemplate(EMPTY, EMPTY, PodSpec(()))


def parse_pod_spec(spec: Fields) -> PodSpec:
    containers: list[Container] = []
    names: set[str] = set()
    for item in spec.objects("containers", required=True, non_empty=True):
        name = item.string("name", required=True, check=check_dns_label)
        if name in names:
            item.error("name", f'duplicate container name "{name}"')
        names.add(name)
        env: list[tuple[str, str]] = []
        for variable in item.objects("env"):
            variable_name = variable.string("name", required=True)
            if variable.has("valueFrom"):
                variable.error("valueFrom", "is not supported by the mesh; use value")
            env.append((variable_name, variable.string("value")))
        ports = tuple(
            ContainerPort(
                port.integer("containerPort", required=True, minimum=1, maximum=65535),
                port.string("name"),
                port.string("protocol", default="TCP", choices=PROTOCOLS),
            )
            for port in item.objects("ports")
        )
        probe_fields = item.object("readinessProbe")
        containers.append(
            Container(
                name=name,
                image=item.string("image"),
                command=item.str_list("command"),
                args=item.str_list("args"),
                env=tuple(env),
                ports=ports,
                readiness_probe=_probe(probe_fields) if probe_fields.present else None,
            )
        )
    account = spec.string("serviceAccountName", default="default") or "default"
    if complaint := check_dns_label(account):
        spec.error("serviceAccountName", complaint)
    return PodSpec(tuple(containers), account)


def _probe(probe: Fields) -> Probe | None:
    handlers = [key for key in ("httpGet", "tcpSocket", "exec") if probe.has(key)]
    if len(handlers) != 1:
        probe.error("", "a probe needs exactly one of httpGet, tcpSocket or exec")
        return None
    kind = handlers[0]
    timing = Probe(
        kind,
        initial_delay_seconds=probe.integer("initialDelaySeconds", minimum=0, default=0),
        period_seconds=probe.integer("periodSeconds", minimum=1, default=10),
        timeout_seconds=probe.integer("timeoutSeconds", minimum=1, default=1),
        success_threshold=probe.integer("successThreshold", minimum=1, default=1),
        failure_threshold=probe.integer("failureThreshold", minimum=1, default=3),
    )
    handler = probe.object(kind)
    if kind == "exec":
        return replace(timing, command=handler.str_list("command", required=True))
    if handler.present and not handler.has("port"):
        handler.error("port", "required field is missing (expected a port number or name)")
    port = _port_ref(handler, "port")
    if kind == "tcpSocket":
        return replace(timing, port=port)
    return replace(
        timing,
        port=port,
        path=handler.string("path", default="/") or "/",
        scheme=handler.string("scheme", default="HTTP", choices=PROBE_SCHEMES),
    )


def parse_deployment(doc: Fields, base: Resource) -> Deployment:
    spec = doc.object("spec", required=True, strict=False)
    replicas = spec.integer("replicas", default=1, minimum=0)
    selector_fields = spec.object("selector", required=True)
    selector = selector_fields.str_map("matchLabels", check_labels=True)
    if selector_fields.has("matchExpressions"):
        selector_fields.error("matchExpressions", "is not supported; use matchLabels")
    if selector_fields.present and not selector:
        selector_fields.error("matchLabels", "required: a Deployment selects its pods by label")
    template = spec.object("template", required=True, strict=False)
    template_meta = template.object("metadata", strict=False)
    labels = template_meta.str_map("labels", check_labels=True)
    annotations = template_meta.str_map("annotations")
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        template_meta.error(
            "labels",
            f"must match spec.selector.matchLabels {dict(selector)} "
            "(the Deployment would not select its own pods)",
        )
    pod_spec = parse_pod_spec(template.object("spec", required=True, strict=False))
    return Deployment(
        base.api_version,
        base.metadata,
        base.manifest,
        replicas=replicas,
        selector=frozen_map(selector),
        template=PodTemplate(frozen_map(labels), frozen_map(annotations), pod_spec),
    )


@dataclass(frozen=True, slots=True)
class Pod(Resource):
    """A pod as Kubernetes mode reads it (local mode keeps its own pod records)."""

    KIND = "Pod"
    spec: PodSpec = PodSpec(())
    pod_ip: str = ""
    phase: str = ""
    ready: bool = False


def parse_pod(doc: Fields, base: Resource) -> Pod:
    pod_spec = parse_pod_spec(doc.object("spec", required=True, strict=False))
    status = doc.object("status", strict=False)
    ready = False
    for condition in status.objects("conditions"):
        if condition.string("type") == "Ready":
            ready = condition.string("status") == "True"
    pod_ip = status.string("podIP")
    return Pod(
        base.api_version,
        base.metadata,
        base.manifest,
        spec=pod_spec,
        pod_ip=pod_ip,
        phase=status.string("phase"),
        ready=ready,
    )


# -- Endpoints -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EndpointAddress:
    ip: str
    ready: bool = True
    target_kind: str = ""
    target_name: str = ""
    target_namespace: str = ""


@dataclass(frozen=True, slots=True)
class EndpointPort:
    port: int
    name: str = ""
    protocol: str = "TCP"
    app_protocol: str = ""


@dataclass(frozen=True, slots=True)
class EndpointSubset:
    addresses: tuple[EndpointAddress, ...]
    ports: tuple[EndpointPort, ...]


@dataclass(frozen=True, slots=True)
class Endpoints(Resource):
    KIND = "Endpoints"
    subsets: tuple[EndpointSubset, ...] = ()


def parse_endpoints(doc: Fields, base: Resource) -> Endpoints:
    subsets: list[EndpointSubset] = []
    for subset in doc.objects("subsets"):
        addresses: list[EndpointAddress] = []
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.objects(key):
                ip = address.string("ip", required=True)
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    address.error("ip", f'"{ip}" is not an IP address')
                target = address.object("targetRef", strict=False)
                addresses.append(
                    EndpointAddress(
                        ip,
                        ready,
                        target.string("kind"),
                        target.string("name"),
                        target.string("namespace"),
                    )
                )
        ports = tuple(
            EndpointPort(
                port.integer("port", required=True, minimum=1, maximum=65535),
                port.string("name"),
                port.string("protocol", default="TCP", choices=PROTOCOLS),
                port.string("appProtocol"),
            )
            for port in subset.objects("ports")
        )
        subsets.append(EndpointSubset(tuple(addresses), ports))
    return Endpoints(base.api_version, base.metadata, base.manifest, subsets=tuple(subsets))
