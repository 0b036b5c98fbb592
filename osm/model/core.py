"""Kubernetes core kinds that the mesh reads: Namespace, ServiceAccount, Service,
Deployment, Pod, Endpoints, Secret and ConfigMap.

The mesh models only the fields it acts on. Those are validated as Kubernetes would;
other fields of these kinds pass through untouched (real manifests carry many), unlike
the CRD kinds, which are strict. A pod's spec is modelled as far as the local runtime
runs it (init containers, env from the downward API, Secrets and ConfigMaps, volumes,
security contexts, probes, resources with their quantities exact): what it cannot run,
such as a hostPath volume, is an error that says what is supported rather than a field
ignored.
"""

from __future__ import annotations

import base64
import ipaddress
import posixpath
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from types import MappingProxyType
from typing import ClassVar, Literal

from osm.base import wellknown
from osm.model import quantity
from osm.model.fields import (
    IANA_SVC_NAME,
    Fields,
    check_dns_label,
    check_dns_subdomain,
    check_label_key,
    described,
    suggest,
)
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


# -- kinds the mesh stores for a cluster but does not read (read leniently, kept as sent) ---
@dataclass(frozen=True, slots=True)
class CustomResourceDefinition(Resource):
    KIND = "CustomResourceDefinition"


@dataclass(frozen=True, slots=True)
class ClusterRole(Resource):
    KIND = "ClusterRole"


@dataclass(frozen=True, slots=True)
class ClusterRoleBinding(Resource):
    KIND = "ClusterRoleBinding"


@dataclass(frozen=True, slots=True)
class Role(Resource):
    KIND = "Role"


@dataclass(frozen=True, slots=True)
class RoleBinding(Resource):
    KIND = "RoleBinding"


@dataclass(frozen=True, slots=True)
class MutatingWebhookConfiguration(Resource):
    KIND = "MutatingWebhookConfiguration"


@dataclass(frozen=True, slots=True)
class ValidatingWebhookConfiguration(Resource):
    KIND = "ValidatingWebhookConfiguration"


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
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROBE_FIELDS = ("livenessProbe", "readinessProbe", "startupProbe")
PROBE_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")
ENV_SOURCES = ("fieldRef", "secretKeyRef", "configMapKeyRef", "resourceFieldRef")
ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
"""The pod fields an env var may take (Kubernetes' downward API for env), besides a
label or an annotation: ``metadata.labels['<key>']``, ``metadata.annotations['<key>']``."""
SUBSCRIPTED_FIELD_PATHS = ("metadata.labels", "metadata.annotations")
VOLUME_SOURCES = ("secret", "configMap", "emptyDir")
EMPTY_DIR_MEDIA = ("", "Memory")
MAX_ID = 2**31 - 1
"""The largest runAsUser or runAsGroup Kubernetes accepts."""
MAX_MODE = 0o777
DEFAULT_MODE = 0o644
"""A Secret or ConfigMap volume's files are rw-r--r-- unless the volume says otherwise."""
DEFAULT_GRACE_SECONDS = 30
_HTTP_HEADER_NAME = re.compile(r"^[-A-Za-z0-9]+$")


@dataclass(frozen=True, slots=True)
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Probe:
    """A liveness, readiness or startup probe with exactly one handler, its `kind`:
    ``httpGet`` (port, path, scheme, host, http_headers), ``tcpSocket`` (port), ``exec``
    (command) or ``grpc`` (port, service)."""

    kind: str  # "httpGet" | "tcpSocket" | "exec" | "grpc"
    port: int | str = 0
    path: str = "/"
    scheme: str = "HTTP"
    command: tuple[str, ...] = ()
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    host: str = ""
    """httpGet: the host to connect to; empty means the pod's IP."""
    http_headers: tuple[tuple[str, str], ...] = ()
    """httpGet: (name, value) of each header to send, in order."""
    service: str = ""
    """grpc: the service name of the health check request."""


@dataclass(frozen=True, slots=True)
class FieldRef:
    """``valueFrom.fieldRef``: a field of the pod itself (`ENV_FIELD_PATHS`, or a label or
    annotation by key; see `split_field_path`)."""

    field_path: str


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """``valueFrom.secretKeyRef``: one key of a Secret in the pod's namespace. Without
    `optional`, the container cannot start while the Secret or its key is missing."""

    KIND: ClassVar[str] = "Secret"
    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ConfigMapKeyRef:
    """``valueFrom.configMapKeyRef``: as `SecretKeyRef`, of a ConfigMap."""

    KIND: ClassVar[str] = "ConfigMap"
    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ResourceFieldRef:
    """``valueFrom.resourceFieldRef``: a limit or request of the variable's own container
    (or of `container_name`), such as ``limits.memory``, in units of `divisor`, rounded
    up. An unset limit is the node's capacity, an unset request the limit (as the API
    server defaults it) or else 0, as the kubelet answers."""

    resource: str
    container_name: str = ""
    divisor: Fraction = Fraction(1)


EnvSource = FieldRef | SecretKeyRef | ConfigMapKeyRef | ResourceFieldRef


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One ``env`` entry: a `value` (may hold ``$(VAR)`` references) or, with
    `value_from`, a value the kubelet looks up (never expanded)."""

    name: str
    value: str = ""
    value_from: EnvSource | None = None


@dataclass(frozen=True, slots=True)
class EnvFromSource:
    """One ``envFrom`` entry: every key of a Secret or ConfigMap (`kind`), as a variable
    named `prefix` + key."""

    kind: Literal["Secret", "ConfigMap"]
    name: str
    optional: bool = False
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """The pod's volume `name` at `mount_path` (absolute); `sub_path` (relative, no
    ``..``) mounts one path inside the volume instead of its root."""

    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True, slots=True)
class SecurityContext:
    """A container's ``securityContext``. None means not given: the pod's value, then
    the runtime's default, apply. Capabilities are kept as written (``NET_ADMIN``)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    privileged: bool = False
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PodSecurityContext:
    """The pod's ``securityContext``: defaults for its containers' own."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None


@dataclass(frozen=True, slots=True)
class Resources:
    """A container's ``resources``: quantities by resource name (``cpu``, ``memory``,
    ``ephemeral-storage``, ``hugepages-2Mi``, extended ``example.com/gpu``), exact. The
    local runtime enforces ``limits.memory`` and ``limits.cpu`` (`osm.runtime.cgroups`);
    the rest is kept as Kubernetes keeps it. A limit of 0 sets no limit, as the kubelet
    reads it."""

    limits: Mapping[str, Fraction] = field(default_factory=empty_map)
    requests: Mapping[str, Fraction] = field(default_factory=empty_map)

    @property
    def memory_limit(self) -> int | None:
        """``limits.memory`` in bytes (rounded up), or None for no limit."""
        value = self.limits.get("memory")
        return quantity.whole(value) if value else None

    @property
    def cpu_limit(self) -> int | None:
        """``limits.cpu`` in millicores (rounded up), or None for no limit."""
        value = self.limits.get("cpu")
        return quantity.millicores(value) if value else None


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    env_from: tuple[EnvFromSource, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    security_context: SecurityContext = SecurityContext()
    working_dir: str = ""
    resources: Resources = Resources()


@dataclass(frozen=True, slots=True)
class KeyToPath:
    """One ``items`` entry of a Secret or ConfigMap volume: `key` written at `path`
    (relative, may contain ``/``), with `mode` or else the volume's default mode."""

    key: str
    path: str
    mode: int | None = None


@dataclass(frozen=True, slots=True)
class SecretVolume:
    """A Secret's keys as files: all of them, or only `items` (renamed). Without
    `optional`, the pod cannot start while the Secret (or an item's key) is missing."""

    secret_name: str
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = DEFAULT_MODE
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ConfigMapVolume:
    """As `SecretVolume`, of the ConfigMap `name`."""

    name: str
    items: tuple[KeyToPath, ...] = ()
    default_mode: int = DEFAULT_MODE
    optional: bool = False


@dataclass(frozen=True, slots=True)
class EmptyDirVolume:
    """A directory that lives as long as the pod; ``Memory`` puts it on a tmpfs."""

    medium: str = ""


VolumeSource = SecretVolume | ConfigMapVolume | EmptyDirVolume


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    source: VolumeSource = EmptyDirVolume()


@dataclass(frozen=True, slots=True)
class HostAlias:
    """Names a pod's hosts file maps to ``ip`` (``spec.hostAliases``), after its own."""

    ip: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PodSpec:
    containers: tuple[Container, ...]
    service_account_name: str = "default"
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    security_context: PodSecurityContext = PodSecurityContext()
    host_network: bool = False
    restart_policy: str = "Always"
    termination_grace_period_seconds: int = DEFAULT_GRACE_SECONDS
    node_name: str = ""
    host_aliases: tuple[HostAlias, ...] = ()

    def volume(self, name: str) -> Volume | None:
        for volume in self.volumes:
            if volume.name == name:
                return volume
        return None


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
    """A pod's spec, checked as the API server checks it, within what the mesh models.

    Init containers are read first, so a name they share with a container is reported
    at the container; a volume mount must name one of the pod's volumes.
    """
    volumes, volume_names = _volumes(spec)
    names: set[str] = set()
    init_containers = tuple(
        _container(item, names, volume_names, init=True) for item in spec.objects("initContainers")
    )
    containers = tuple(
        _container(item, names, volume_names, init=False)
        for item in spec.objects("containers", required=True, non_empty=True)
    )
    account = spec.string("serviceAccountName", default="default") or "default"
    if complaint := check_dns_label(account):
        spec.error("serviceAccountName", complaint)
    context = spec.object("securityContext")
    return PodSpec(
        containers,
        account,
        init_containers=init_containers,
        volumes=volumes,
        security_context=PodSecurityContext(
            _optional_id(context, "runAsUser"),
            _optional_id(context, "runAsGroup"),
            _optional_boolean(context, "runAsNonRoot"),
        ),
        host_network=spec.boolean("hostNetwork"),
        restart_policy=spec.string("restartPolicy", default="Always", choices=RESTART_POLICIES),
        termination_grace_period_seconds=spec.integer(
            "terminationGracePeriodSeconds", minimum=0, default=DEFAULT_GRACE_SECONDS
        ),
        node_name=spec.string("nodeName", check=_unless_empty(check_dns_subdomain)),
        host_aliases=tuple(_host_alias(alias) for alias in spec.objects("hostAliases")),
    )


def _host_alias(alias: Fields) -> HostAlias:
    """One ``hostAliases`` entry, checked as the API server checks it: an IP address and
    hostnames that are DNS subdomains."""
    ip = alias.string("ip", required=True)
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        if ip:
            alias.error("ip", f'"{ip}" is not an IP address')
    hostnames = alias.str_list("hostnames")
    for index, hostname in enumerate(hostnames):
        if complaint := check_dns_subdomain(hostname):
            alias.error(f"hostnames[{index}]", complaint)
    return HostAlias(ip, hostnames)


def _container(item: Fields, names: set[str], volumes: Collection[str], *, init: bool) -> Container:
    name = item.string("name", required=True, check=check_dns_label)
    if name in names:
        item.error(
            "name",
            f'duplicate container name "{name}"; names are unique across containers and '
            "initContainers",
        )
    names.add(name)
    if item.has("restartPolicy"):
        item.error(
            "restartPolicy",
            "a container's own restartPolicy (a sidecar init container) is not supported; "
            "the pod's restartPolicy applies",
        )
    probes: dict[str, Probe | None] = dict.fromkeys(PROBE_FIELDS)
    for key in PROBE_FIELDS:
        if init and item.has(key):
            item.error(key, "an init container runs to completion and takes no probes")
            continue
        probe_fields = item.object(key)
        if probe_fields.present:
            probes[key] = _probe(probe_fields, key)
    ports = tuple(
        ContainerPort(
            port.integer("containerPort", required=True, minimum=1, maximum=65535),
            port.string("name"),
            port.string("protocol", default="TCP", choices=PROTOCOLS),
        )
        for port in item.objects("ports")
    )
    env_from = (_env_from(entry) for entry in item.objects("envFrom"))
    return Container(
        name=name,
        image=item.string("image"),
        command=item.str_list("command"),
        args=item.str_list("args"),
        env=tuple(_env_var(variable) for variable in item.objects("env")),
        ports=ports,
        readiness_probe=probes["readinessProbe"],
        liveness_probe=probes["livenessProbe"],
        startup_probe=probes["startupProbe"],
        env_from=tuple(entry for entry in env_from if entry is not None),
        volume_mounts=_volume_mounts(item, volumes),
        security_context=_security_context(item.object("securityContext")),
        working_dir=item.string("workingDir"),
        resources=_resources(item.object("resources")),
    )


# -- resources ---------------------------------------------------------------------------
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
"""A container's resource names besides ``hugepages-<size>`` and extended resources."""


def check_resource_name(name: str) -> str | None:
    """Kubernetes' rule for a container's resource names: a standard one, a huge page
    size, or an extended resource (a qualified name outside ``kubernetes.io``)."""
    if name in STANDARD_RESOURCES:
        return None
    if name.startswith("hugepages-"):
        try:
            quantity.parse(name.removeprefix("hugepages-"))
        except quantity.QuantityError:
            return f'"{name}" is not a huge page size (hugepages-2Mi, say)'
        return None
    domain, slash, _ = name.partition("/")
    if slash and check_label_key(name) is None:
        if domain == "kubernetes.io" or domain.endswith(".kubernetes.io"):
            return f'"{name}": the kubernetes.io domain has no extended resources'
        return None
    valid = (*STANDARD_RESOURCES, "hugepages-<size>")
    return (
        f'"{name}" is not a resource of a container{suggest(name, valid)}; valid: '
        f"{', '.join(valid)} or an extended resource (example.com/gpu)"
    )


def _extended(name: str) -> bool:
    return name not in STANDARD_RESOURCES and not name.startswith("hugepages-")


def _resources(resources: Fields) -> Resources:
    """``resources``, checked as the API server checks them: every quantity valid, no
    request above its limit (extended resources and huge pages: requests equal to limits,
    whole numbers of extended resources)."""
    limits = _quantities(resources.object("limits"))
    requests = _quantities(resources.object("requests"))
    for name, value in requests.items():
        limit = limits.get(name)
        if limit is None:
            if _extended(name):
                resources.error(f"limits.{name}", "required: an extended resource has a limit")
            continue
        if not _extended(name) and not name.startswith("hugepages-"):
            if value > limit:
                resources.error(
                    f"requests.{name}",
                    f"{quantity.format_quantity(value)} must be less than or equal to the "
                    f"{name} limit of {quantity.format_quantity(limit)}",
                )
        elif value != limit:
            resources.error(
                f"requests.{name}",
                f"{quantity.format_quantity(value)} must equal the {name} limit of "
                f"{quantity.format_quantity(limit)} (requests of {name} are not overcommitted)",
            )
    return Resources(frozen_quantities(limits), frozen_quantities(requests))


def _quantities(fields: Fields) -> dict[str, Fraction]:
    values: dict[str, Fraction] = {}
    for name in fields.given():
        if complaint := check_resource_name(name):
            fields.error(name, complaint)
            continue
        try:
            value = quantity.parse(fields.raw(name))
        except quantity.QuantityError as error:
            fields.error(name, str(error))
            continue
        if _extended(name) and value.denominator != 1:
            fields.error(
                name, f"{quantity.format_quantity(value)}: an extended resource is a whole number"
            )
            continue
        values[name] = value
    return values


def frozen_quantities(values: Mapping[str, Fraction]) -> Mapping[str, Fraction]:
    return MappingProxyType(dict(values)) if values else EMPTY


# -- env ---------------------------------------------------------------------------------
def check_env_name(value: str) -> str | None:
    """Kubernetes' rule for variable names (and envFrom prefixes) since 1.32."""
    if "=" not in value and all(" " <= character <= "~" for character in value):
        return None
    return f'"{value}" is not a valid variable name: use printable ASCII characters but "="'


def split_field_path(path: str) -> tuple[str, str | None]:
    """``metadata.labels['app']`` -> (``metadata.labels``, ``app``); a path without a
    subscript -> (path, None). Splits as Kubernetes does (the key may hold anything)."""
    if not path.endswith("']"):
        return path, None
    head, bracket, key = path[:-2].partition("['")
    if not bracket or not head:
        return path, None
    return head, key


def check_env_field_path(path: str) -> str | None:
    head, key = split_field_path(path)
    if key is None and head in ENV_FIELD_PATHS:
        return None
    if key is not None and head in SUBSCRIPTED_FIELD_PATHS:
        what = "label" if head == "metadata.labels" else "annotation"
        # Kubernetes checks an annotation key in lower case (annotations keys are any case).
        if check_label_key(key if what == "label" else key.lower()) is None:
            return None
        return (
            f'"{key}" is not a valid {what} key: an optional DNS subdomain and "/", then at '
            "most 63 letters, digits, '-', '_' and '.'"
        )
    valid = (*ENV_FIELD_PATHS, "metadata.labels['<key>']", "metadata.annotations['<key>']")
    return f'"{path}" is not a field an env var can take{suggest(path, valid)}; valid: ' + (
        ", ".join(valid)
    )


def _env_var(variable: Fields) -> EnvVar:
    name = variable.string("name", required=True, check=check_env_name)
    value = variable.string("value")
    if not variable.has("valueFrom"):
        return EnvVar(name, value)
    if value:
        variable.error("valueFrom", "may not be given with a non-empty value; give one of them")
    return EnvVar(name, value, _env_source(variable.object("valueFrom")))


def _env_source(source: Fields) -> EnvSource | None:
    if not source.present:
        return None
    given = [key for key in ENV_SOURCES if source.has(key)]
    if len(given) != 1:
        found = f" (found {', '.join(given)})" if given else ""
        source.error(
            "",
            "needs exactly one of fieldRef, secretKeyRef, configMapKeyRef or "
            f"resourceFieldRef{found}",
        )
        return None
    key = given[0]
    ref = source.object(key)
    if key == "resourceFieldRef":
        return _resource_field_ref(ref)
    if key == "fieldRef":
        ref.string("apiVersion", choices=("v1",))
        path = ref.string("fieldPath", required=True, check=check_env_field_path)
        return FieldRef(path)
    name = ref.string("name", required=True, check=check_dns_subdomain)
    data_key = ref.string("key", required=True, check=check_data_key)
    optional = ref.boolean("optional")
    if key == "secretKeyRef":
        return SecretKeyRef(name, data_key, optional)
    return ConfigMapKeyRef(name, data_key, optional)


RESOURCE_FIELD_RESOURCES = (
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
)
"""What a resourceFieldRef may name (Kubernetes' downward API), besides huge pages:
``limits.hugepages-<size>``, ``requests.hugepages-<size>``."""
CPU_DIVISORS = ("1m", "1")
BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")


def _resource_field_ref(ref: Fields) -> ResourceFieldRef | None:
    """Checked as the API server checks it: a resource it may name, a divisor of that
    resource's units; `container_name`, if given, is checked when the pod runs."""
    resource = ref.string("resource", required=True)
    huge_pages = resource.startswith(("limits.hugepages-", "requests.hugepages-"))
    if resource and resource not in RESOURCE_FIELD_RESOURCES and not huge_pages:
        ref.error(
            "resource",
            f'"{resource}" is not a resource an env var can take'
            f"{suggest(resource, RESOURCE_FIELD_RESOURCES)}; valid: "
            f"{', '.join(RESOURCE_FIELD_RESOURCES)}, limits.hugepages-<size>, "
            "requests.hugepages-<size>",
        )
        resource = ""
    container_name = ref.string("containerName", check=_unless_empty(check_dns_label))
    divisor = Fraction(1)
    if ref.has("divisor"):
        valid = CPU_DIVISORS if resource.endswith(".cpu") else BYTE_DIVISORS
        try:
            divisor = quantity.parse(ref.raw("divisor"))
        except quantity.QuantityError as error:
            ref.error("divisor", str(error))
            return None
        if resource and divisor not in {quantity.parse(v) for v in valid}:
            ref.error(
                "divisor",
                f"{quantity.format_quantity(divisor)} is not a divisor of {resource}; "
                f"valid: {', '.join(valid)}",
            )
            return None
    if not resource:
        return None
    return ResourceFieldRef(resource, container_name, divisor)


def _env_from(entry: Fields) -> EnvFromSource | None:
    if not entry.present:
        return None
    prefix = entry.string("prefix", check=check_env_name)
    refs = [key for key in ("configMapRef", "secretRef") if entry.has(key)]
    if len(refs) != 1:
        entry.error("", "an envFrom entry needs exactly one of configMapRef or secretRef")
        return None
    ref = entry.object(refs[0])
    name = ref.string("name", required=True, check=check_dns_subdomain)
    kind: Literal["Secret", "ConfigMap"] = "ConfigMap" if refs[0] == "configMapRef" else "Secret"
    return EnvFromSource(kind, name, ref.boolean("optional"), prefix)


# -- volumes, mounts, security -----------------------------------------------------------
def check_relative_path(value: str) -> str | None:
    """A path inside a volume: relative, without a ``..`` element (Kubernetes splits at
    ``/`` and ``\\``)."""
    if value.startswith("/"):
        return f'"{value}" must be a relative path'
    if ".." in re.split(r"[/\\]", value):
        return f'"{value}" must not contain ".."'
    return None


def _check_item_path(value: str) -> str | None:
    if complaint := check_relative_path(value):
        return complaint
    if value.startswith(".."):
        return f'"{value}" must not start with ".." (the volume keeps its own ..data there)'
    return None


def _check_mount_path(value: str) -> str | None:
    return None if value.startswith("/") else f'"{value}" is not an absolute path'


def _volume_mounts(item: Fields, volumes: Collection[str]) -> tuple[VolumeMount, ...]:
    mounts: list[VolumeMount] = []
    at: dict[str, int] = {}
    for index, mount in enumerate(item.objects("volumeMounts")):
        name = mount.string("name", required=True)
        if name and name not in volumes:
            known = ", ".join(sorted(volumes)) or "none"
            mount.error(
                "name",
                f'the pod has no volume named "{name}"{suggest(name, volumes)}; '
                f"its volumes: {known}",
            )
        mount_path = mount.string("mountPath", required=True, check=_check_mount_path)
        if mount_path:
            normal = posixpath.normpath(mount_path)
            if normal in at:
                mount.error(
                    "mountPath",
                    f'"{mount_path}" is mounted already (volumeMounts[{at[normal]}]); a '
                    "container mounts one volume at a path",
                )
            at.setdefault(normal, index)
        if mount.has("subPathExpr"):
            mount.error("subPathExpr", "is not supported; use subPath")
        mounts.append(
            VolumeMount(
                name,
                mount_path,
                mount.boolean("readOnly"),
                mount.string("subPath", check=check_relative_path),
            )
        )
    return tuple(mounts)


def _security_context(context: Fields) -> SecurityContext:
    capabilities = context.object("capabilities")
    return SecurityContext(
        run_as_user=_optional_id(context, "runAsUser"),
        run_as_group=_optional_id(context, "runAsGroup"),
        run_as_non_root=_optional_boolean(context, "runAsNonRoot"),
        privileged=context.boolean("privileged"),
        capabilities_add=capabilities.str_list("add"),
        capabilities_drop=capabilities.str_list("drop"),
    )


def _optional_id(fields: Fields, key: str) -> int | None:
    if not fields.has(key):
        return None
    return fields.integer(key, minimum=0, maximum=MAX_ID)


def _optional_boolean(fields: Fields, key: str) -> bool | None:
    return fields.boolean(key) if fields.has(key) else None


def _unless_empty(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    return lambda value: check(value) if value else None


def _volumes(spec: Fields) -> tuple[tuple[Volume, ...], frozenset[str]]:
    """The volumes, and every name written (also of a volume with other mistakes, so
    that its mounts are not reported too)."""
    volumes: list[Volume] = []
    names: set[str] = set()
    for item in spec.objects("volumes"):
        written = item.raw("name")
        name = item.string("name", required=True, check=check_dns_label)
        if isinstance(written, str) and written:
            if written in names:
                item.error("name", f'duplicate volume name "{written}"')
            names.add(written)
        source = _volume_source(item)
        if source is not None:
            volumes.append(Volume(name, source))
    return tuple(volumes), frozenset(names)


def _volume_source(item: Fields) -> VolumeSource | None:
    if not item.present:
        return None
    sources = [key for key in item.given() if key != "name"]
    if not sources:  # the API server's default
        return EmptyDirVolume()
    supported = ", ".join(VOLUME_SOURCES)
    unsupported = [key for key in sources if key not in VOLUME_SOURCES]
    for key in unsupported:
        item.error(
            key,
            f'"{key}" is not a supported volume source{suggest(key, VOLUME_SOURCES)}; '
            f"supported: {supported}",
        )
    if unsupported:
        return None
    if len(sources) > 1:
        item.error(sources[1], f"a volume has exactly one source, and this one has {sources[0]}")
        return None
    key = sources[0]
    source = item.object(key)
    if key == "emptyDir":
        return EmptyDirVolume(source.string("medium", choices=EMPTY_DIR_MEDIA))
    name_key = "secretName" if key == "secret" else "name"
    name = source.string(name_key, required=True, check=check_dns_subdomain)
    items = _key_to_paths(source)
    default_mode = _mode(source, "defaultMode")
    mode = DEFAULT_MODE if default_mode is None else default_mode
    optional = source.boolean("optional")
    if key == "secret":
        return SecretVolume(name, items, mode, optional)
    return ConfigMapVolume(name, items, mode, optional)


def _key_to_paths(source: Fields) -> tuple[KeyToPath, ...]:
    items: list[KeyToPath] = []
    paths: set[str] = set()
    for item in source.objects("items"):
        key = item.string("key", required=True, check=check_data_key)
        path = item.string("path", required=True, check=_check_item_path)
        if path in paths:
            item.error("path", f'"{path}" is written by an earlier item; paths must be unique')
        if path:
            paths.add(path)
        items.append(KeyToPath(key, path, _mode(item, "mode")))
    return tuple(items)


def _mode(fields: Fields, key: str) -> int | None:
    """A file mode: an integer from 0 to 0o777, as YAML (0644) or JSON (420) writes it."""
    value = fields.raw(key)
    if value is None:
        return None
    expected = "a file mode from 0 to 0777 (decimal 511), e.g. 0644 (JSON: 420)"
    if isinstance(value, bool) or not isinstance(value, int):
        fields.error(key, f"must be {expected}, not {described(value)}")
        return None
    if not 0 <= value <= MAX_MODE:
        fields.error(key, f"{value} is out of range; expected {expected}")
        return None
    return value


def _probe(probe: Fields, field_name: str) -> Probe | None:
    handlers = [key for key in PROBE_HANDLERS if probe.has(key)]
    if len(handlers) != 1:
        probe.error("", "a probe needs exactly one of httpGet, tcpSocket, exec or grpc")
        return None
    kind = handlers[0]
    success = probe.integer("successThreshold", minimum=1, default=1)
    if success != 1 and field_name != "readinessProbe":
        probe.error("successThreshold", f"must be 1 for a {field_name}")
    timing = Probe(
        kind,
        initial_delay_seconds=probe.integer("initialDelaySeconds", minimum=0, default=0),
        period_seconds=probe.integer("periodSeconds", minimum=1, default=10),
        timeout_seconds=probe.integer("timeoutSeconds", minimum=1, default=1),
        success_threshold=success,
        failure_threshold=probe.integer("failureThreshold", minimum=1, default=3),
    )
    handler = probe.object(kind)
    if kind == "exec":
        return replace(timing, command=handler.str_list("command", required=True))
    if kind == "grpc":
        return replace(
            timing,
            port=handler.integer("port", required=True, minimum=1, maximum=65535),
            service=handler.string("service"),
        )
    if handler.present and not handler.has("port"):
        handler.error("port", "required field is missing (expected a port number or name)")
    port = _port_ref(handler, "port")
    if kind == "tcpSocket":
        return replace(timing, port=port)
    headers = tuple(
        (
            header.string("name", required=True, check=_check_header_name),
            header.string("value"),
        )
        for header in handler.objects("httpHeaders")
    )
    return replace(
        timing,
        port=port,
        path=handler.string("path", default="/") or "/",
        scheme=handler.string("scheme", default="HTTP", choices=PROBE_SCHEMES),
        host=handler.string("host"),
        http_headers=headers,
    )


def _check_header_name(value: str) -> str | None:
    if _HTTP_HEADER_NAME.match(value):
        return None
    return f'"{value}" is not a valid HTTP header name: use letters, digits and "-"'


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
    template_spec = template.object("spec", required=True, strict=False)
    pod_spec = parse_pod_spec(template_spec)
    if pod_spec.restart_policy != "Always":
        template_spec.error(
            "restartPolicy",
            f'"{pod_spec.restart_policy}" is not valid in a Deployment, whose pods always '
            'restart; valid values: "Always"',
        )
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
    if pod_ip:
        try:
            ipaddress.ip_address(pod_ip)
        except ValueError:
            status.error("podIP", f'"{pod_ip}" is not an IP address')
            pod_ip = ""
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


# -- Secret and ConfigMap --------------------------------------------------------------
MAX_DATA_SIZE = 1024 * 1024
"""What a Secret's or ConfigMap's values may add up to (bytes), as Kubernetes allows."""
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def check_data_key(value: str) -> str | None:
    """A key of a Secret or ConfigMap (it becomes a file name in a volume)."""
    valid = len(value) <= 253 and _DATA_KEY.match(value) is not None
    if valid and value != "." and not value.startswith(".."):
        return None
    return (
        f'"{value}" is not a valid key: use at most 253 letters, digits, "-", "_" and ".", '
        'and neither "." nor a start with ".."'
    )


@dataclass(frozen=True, slots=True)
class Secret(Resource):
    """``data`` decoded, with ``stringData`` merged over it as the API server stores it."""

    KIND = "Secret"
    type: str = "Opaque"
    data: Mapping[str, bytes] = field(default_factory=empty_map)
    immutable: bool = False


@dataclass(frozen=True, slots=True)
class ConfigMap(Resource):
    """Text values in ``data``, bytes in ``binary_data``; a key is in one of them."""

    KIND = "ConfigMap"
    data: Mapping[str, str] = field(default_factory=empty_map)
    binary_data: Mapping[str, bytes] = field(default_factory=empty_map)
    immutable: bool = False

    def files(self) -> dict[str, bytes]:
        """Every key with its value as bytes (text as UTF-8), as a volume writes them."""
        return {**{key: value.encode() for key, value in self.data.items()}, **self.binary_data}


def parse_secret(doc: Fields, base: Resource) -> Secret:
    data = _base64_map(doc, "data")
    for key, value in _keyed_str_map(doc, "stringData").items():
        data[key] = value.encode()
    _check_size(doc, "data", data.values(), "Secret")
    return Secret(
        base.api_version,
        base.metadata,
        base.manifest,
        type=doc.string("type", default="Opaque") or "Opaque",
        data=_frozen(data),
        immutable=doc.boolean("immutable"),
    )


def parse_config_map(doc: Fields, base: Resource) -> ConfigMap:
    data = _keyed_str_map(doc, "data")
    binary_data = _base64_map(doc, "binaryData")
    for key in data:
        if key in binary_data:
            doc.error(f"data.{key}", "is in binaryData too; a key is in one of them")
    values = [value.encode() for value in data.values()]
    _check_size(doc, "data", [*values, *binary_data.values()], "ConfigMap")
    return ConfigMap(
        base.api_version,
        base.metadata,
        base.manifest,
        data=frozen_map(data),
        binary_data=_frozen(binary_data),
        immutable=doc.boolean("immutable"),
    )


def _keyed_str_map(doc: Fields, key: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in doc.str_map(key).items():
        if complaint := check_data_key(name):
            doc.error(f"{key}.{name}", complaint)
        else:
            result[name] = value
    return result


def _base64_map(doc: Fields, key: str) -> dict[str, bytes]:
    """Values in base64 as Go decodes it (padding required, line breaks skipped)."""
    value = doc.raw(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        doc.error(key, f"must be an object of base64 strings, not {described(value)}")
        return {}
    result: dict[str, bytes] = {}
    for name, item in value.items():
        path = f"{key}.{name}"
        if complaint := check_data_key(str(name)):
            doc.error(path, complaint)
        elif not isinstance(item, str):
            doc.error(path, f"must be a base64 string, not {described(item)}")
        else:
            try:
                text = item.replace("\n", "").replace("\r", "")
                result[str(name)] = base64.b64decode(text, validate=True)
            except ValueError as error:  # binascii.Error, or a character beyond ASCII
                doc.error(path, f"is not valid base64: {error}")
    return result


def _check_size(doc: Fields, key: str, values: Collection[bytes], kind: str) -> None:
    size = sum(len(value) for value in values)
    if size > MAX_DATA_SIZE:
        doc.error(
            key,
            f"the values add up to {size} bytes; a {kind} holds at most 1 MiB "
            f"({MAX_DATA_SIZE} bytes)",
        )


def _frozen(data: Mapping[str, bytes]) -> Mapping[str, bytes]:
    return MappingProxyType(dict(data)) if data else EMPTY
