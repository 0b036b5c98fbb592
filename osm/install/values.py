"""The values ``osm install --set key=value`` takes, under OSM's Helm-values names.

One idea: one table (`SETTINGS`) names every key a user may set, how its text is read, and
what is valid; `parse_sets` reads every ``key=value`` against it and refuses them all at
once (an unknown key with the valid ones and a did-you-mean, a bad value with what is
valid), so a user fixes their command line in one pass. Keys are OSM's chart keys
(``charts/osm/values.yaml``) where OSM has one; ``osm.pythonSidecarImage`` and
``osm.initContainerImage`` are ours. The flags that OSM's CLI takes for the mesh name,
the namespace and single-mesh enforcement are flags here too, and their chart keys say so.

Settings that OSM's chart writes into the MeshConfig are kept as overrides of the model's
own default (`osm.model.config.default_manifest`), keyed by their path in ``spec``; the
model stays the one source of the MeshConfig's defaults. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from osm.model import config
from osm.model.fields import check_dns_label, parse_duration, suggest

DEFAULT_REGISTRY = "osm-py"
"""Where ``make images`` names its images: ``osm-py/osm-controller:<version>``."""
ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"
"""The Envoy sidecar image (Envoy's own), as the injector runs it by default."""
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
MAX_WEBHOOK_TIMEOUT = 30
"""kube-apiserver refuses a webhook timeoutSeconds outside 1..30."""
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._\-/:]*(@sha256:[a-f0-9]{64})?$", re.IGNORECASE)


class SetError(ValueError):
    """Every ``--set`` that cannot be used, one line each (`problems`)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class Resources:
    """A container's resources, as OSM's chart writes them (``resource.limits.cpu``...)."""

    limits_cpu: str
    limits_memory: str
    requests_cpu: str
    requests_memory: str

    def manifest(self) -> dict[str, dict[str, str]]:
        return {
            "limits": {"cpu": self.limits_cpu, "memory": self.limits_memory},
            "requests": {"cpu": self.requests_cpu, "memory": self.requests_memory},
        }


@dataclass(frozen=True, slots=True)
class Values:
    """What an install is made of, besides its mesh name, namespace and version.

    Empty image fields mean the default image of the registry and tag
    (`image`); `mesh_config` holds the MeshConfig fields set, by their path under ``spec``.
    """

    image_registry: str = DEFAULT_REGISTRY
    image_tag: str = ""
    image_pull_policy: str = "IfNotPresent"
    sidecar_image: str = ENVOY_IMAGE
    python_sidecar_image: str = ""
    init_container_image: str = ""
    controller_replicas: int = 1
    injector_replicas: int = 1
    # OSM's chart defaults (osm.osmController.resource, osm.injector.resource).
    controller_resources: Resources = Resources("1.5", "1G", "0.5", "128M")
    injector_resources: Resources = Resources("0.5", "64M", "0.3", "64M")
    webhook_timeout_seconds: int = 20
    # OSM's chart: osm.deployPrometheus, osm.deployJaeger (both off by default).
    deploy_prometheus: bool = False
    deploy_jaeger: bool = False
    mesh_config: Mapping[tuple[str, ...], Any] = field(default_factory=dict)

    def image(self, name: str, version: str) -> str:
        """``<registry>/<name>:<tag>``: one of the images ``make images`` builds."""
        return f"{self.image_registry}/{name}:{self.image_tag or version}"

    def python_sidecar(self, version: str) -> str:
        return self.python_sidecar_image or self.image("sidecar", version)

    def init_container(self, version: str) -> str:
        return self.init_container_image or self.image("init", version)


# -- how a value is read: each returns the value or raises ValueError saying what is valid ----
Reader = Callable[[str], Any]


def _boolean(text: str) -> bool:
    if text in ("true", "false"):
        return text == "true"
    raise ValueError("expected true or false")


def _integer(minimum: int, maximum: int | None = None) -> Reader:
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"≥ {minimum}"

    def read(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", text):
            raise ValueError(f"expected a whole number {bounds}")
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"expected a whole number {bounds}")
        return value

    return read


def _choice(options: Iterable[str]) -> Reader:
    valid = tuple(options)

    def read(text: str) -> str:
        if text not in valid:
            raise ValueError(f"expected one of {', '.join(valid)}{suggest(text, valid)}")
        return text

    return read


def _text(text: str) -> str:
    return text


def _image(text: str) -> str:
    if not _IMAGE.match(text):
        raise ValueError('expected an image reference such as "registry.example/name:tag"')
    return text


def _registry(text: str) -> str:
    if not text or not _IMAGE.match(text) or ":" in text.rpartition("/")[2]:
        raise ValueError('expected a registry and path such as "registry.example/osm"')
    return text.rstrip("/")


def _tag(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", text):
        raise ValueError("expected an image tag: letters, digits, '_', '.', '-' (at most 128)")
    return text


def _quantity(text: str) -> str:
    if not _QUANTITY.match(text):
        raise ValueError('expected a Kubernetes quantity such as "500m", "0.5", "128M", "1Gi"')
    return text


def _duration(minimum: float) -> Reader:
    def read(text: str) -> str:
        seconds = parse_duration(text)
        if seconds is None or seconds < minimum:
            floor = f" of at least {config.go_duration(minimum)}" if minimum else ""
            raise ValueError(f'expected a Go duration{floor} such as "24h", "90s", "1h30m"')
        return text

    return read


def _list(item: Reader) -> Reader:
    """Helm's list syntax: ``{a,b}``; ``{}`` is empty."""

    def read(text: str) -> list[Any]:
        if not (text.startswith("{") and text.endswith("}")):
            raise ValueError("expected a list in braces, as Helm writes it: {a,b} or {}")
        inner = text[1:-1].strip()
        return [item(part.strip()) for part in inner.split(",")] if inner else []

    return read


def _port(text: str) -> int:
    return int(_integer(1, 65535)(text))


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f'"{text}" is not a CIDR such as 10.0.0.0/8') from None
    if "/" not in text:
        raise ValueError(f'"{text}" is not a CIDR such as 10.0.0.0/8 (it needs its /length)')
    return text


def _interface(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,15}", text):
        raise ValueError(f'"{text}" is not a network interface name (at most 15 characters)')
    return text


# -- the table ----------------------------------------------------------------------------
Apply = Callable[[Values, Any], Values]


@dataclass(frozen=True, slots=True)
class Setting:
    """One key: how its text is read (`read` raises ValueError with what is valid) and
    what it changes."""

    key: str
    read: Reader
    apply: Apply
    help: str


def _field(name: str) -> Apply:
    return lambda values, value: replace(values, **{name: value})


def _resource(component: str, part: str) -> Apply:
    attribute = f"{component}_resources"

    def apply(values: Values, value: Any) -> Values:
        current = getattr(values, attribute)
        return replace(values, **{attribute: replace(current, **{part: value})})

    return apply


def _mesh_config(*path: str) -> Apply:
    def apply(values: Values, value: Any) -> Values:
        return replace(values, mesh_config={**values.mesh_config, path: value})

    return apply


def _settings() -> tuple[Setting, ...]:
    settings = [
        Setting(
            "osm.image.registry",
            _registry,
            _field("image_registry"),
            "control plane images' registry",
        ),
        Setting(
            "osm.image.tag",
            _tag,
            _field("image_tag"),
            "control plane images' tag (default: the version)",
        ),
        Setting(
            "osm.image.pullPolicy",
            _choice(PULL_POLICIES),
            _field("image_pull_policy"),
            "imagePullPolicy",
        ),
        Setting("osm.sidecarImage", _image, _field("sidecar_image"), "Envoy's sidecar image"),
        Setting(
            "osm.pythonSidecarImage",
            _image,
            _field("python_sidecar_image"),
            "the Python sidecar's image",
        ),
        Setting(
            "osm.initContainerImage",
            _image,
            _field("init_container_image"),
            "the init container's image",
        ),
        Setting(
            "osm.osmController.replicaCount",
            _integer(0, 100),
            _field("controller_replicas"),
            "controller replicas (0: the controller runs outside the cluster, as in "
            "development; the validating webhook then fails closed until it serves)",
        ),
        Setting(
            "osm.injector.replicaCount",
            _integer(0, 100),
            _field("injector_replicas"),
            "injector replicas (0: the injector runs outside the cluster; pods of "
            "monitored namespaces are refused until it serves)",
        ),
        Setting(
            "osm.deployPrometheus",
            _boolean,
            _field("deploy_prometheus"),
            "run Prometheus in the mesh's namespace, scraping the mesh as OSM's does",
        ),
        Setting(
            "osm.deployJaeger",
            _boolean,
            _field("deploy_jaeger"),
            "run the mesh's Zipkin-compatible trace store as Service jaeger, where "
            "osm.tracing.address points by default",
        ),
        Setting(
            "osm.injector.webhookTimeoutSeconds",
            _integer(1, MAX_WEBHOOK_TIMEOUT),
            _field("webhook_timeout_seconds"),
            "the webhooks' timeoutSeconds",
        ),
    ]
    for chart_name, component in (("osmController", "controller"), ("injector", "injector")):
        for bound in ("limits", "requests"):
            for resource in ("cpu", "memory"):
                settings.append(
                    Setting(
                        f"osm.{chart_name}.resource.{bound}.{resource}",
                        _quantity,
                        _resource(component, f"{bound}_{resource}"),
                        f"the {component}'s {resource} {bound}",
                    )
                )
    mesh = [
        (
            "osm.enablePermissiveTrafficPolicy",
            _boolean,
            ("traffic", "enablePermissiveTrafficPolicyMode"),
        ),
        ("osm.enableEgress", _boolean, ("traffic", "enableEgress")),
        ("osm.outboundPortExclusionList", _list(_port), ("traffic", "outboundPortExclusionList")),
        ("osm.inboundPortExclusionList", _list(_port), ("traffic", "inboundPortExclusionList")),
        (
            "osm.outboundIPRangeExclusionList",
            _list(_cidr),
            ("traffic", "outboundIPRangeExclusionList"),
        ),
        (
            "osm.outboundIPRangeInclusionList",
            _list(_cidr),
            ("traffic", "outboundIPRangeInclusionList"),
        ),
        (
            "osm.networkInterfaceExclusionList",
            _list(_interface),
            ("traffic", "networkInterfaceExclusionList"),
        ),
        (
            "osm.enablePrivilegedInitContainer",
            _boolean,
            ("sidecar", "enablePrivilegedInitContainer"),
        ),
        ("osm.envoyLogLevel", _choice(config.LOG_LEVELS), ("sidecar", "logLevel")),
        ("osm.localProxyMode", _choice(config.LOCAL_PROXY_MODES), ("sidecar", "localProxyMode")),
        ("osm.maxDataPlaneConnections", _integer(0), ("sidecar", "maxDataPlaneConnections")),
        ("osm.configResyncInterval", _duration(0), ("sidecar", "configResyncInterval")),
        ("osm.controllerLogLevel", _choice(config.LOG_LEVELS), ("observability", "osmLogLevel")),
        ("osm.enableDebugServer", _boolean, ("observability", "enableDebugServer")),
        ("osm.tracing.enable", _boolean, ("observability", "tracing", "enable")),
        ("osm.tracing.address", _text, ("observability", "tracing", "address")),
        ("osm.tracing.port", _port, ("observability", "tracing", "port")),
        ("osm.tracing.endpoint", _text, ("observability", "tracing", "endpoint")),
        (
            "osm.certificateProvider.serviceCertValidityDuration",
            _duration(60),
            ("certificate", "serviceCertValidityDuration"),
        ),
        (
            "osm.certificateProvider.certKeyBitSize",
            _integer(2048, 4096),
            ("certificate", "certKeyBitSize"),
        ),
    ]
    flags = (
        "enableWASMStats",
        "enableEgressPolicy",
        "enableSnapshotCacheMode",
        "enableAsyncProxyServiceMapping",
        "enableIngressBackendPolicy",
        "enableEnvoyActiveHealthChecks",
        "enableRetryPolicy",
        "enableMeshRootCertificate",
    )
    mesh += [(f"osm.featureFlags.{flag}", _boolean, ("featureFlags", flag)) for flag in flags]
    for key, read, path in mesh:
        settings.append(
            Setting(key, read, _mesh_config(*path), f"MeshConfig spec.{'.'.join(path)}")
        )
    return tuple(settings)


SETTINGS: tuple[Setting, ...] = _settings()
BY_KEY: Mapping[str, Setting] = {setting.key: setting for setting in SETTINGS}
FLAG_KEYS: Mapping[str, str] = {
    "osm.meshName": "--mesh-name",
    "osm.osmNamespace": "--osm-namespace",
    "osm.enforceSingleMesh": "--enforce-single-mesh",
}
"""Chart keys that are flags of ``osm install``, as in OSM's CLI."""


def parse_sets(sets: Iterable[str], base: Values | None = None) -> Values:
    """`base` (default: the defaults) with every ``key=value`` applied in order (a later
    one wins). Raises `SetError` with every problem found, one line each."""
    values = base or Values()
    problems: list[str] = []
    for item in sets:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key:
            problems.append(f'--set "{item}": expected key=value, e.g. osm.enableEgress=false')
            continue
        if key in FLAG_KEYS:
            problems.append(f"--set {key}: use the flag {FLAG_KEYS[key]} instead")
            continue
        setting = BY_KEY.get(key)
        if setting is None:
            problems.append(
                f"--set {key}: unknown key{suggest(key, BY_KEY)}; valid keys: {', '.join(BY_KEY)}"
            )
            continue
        try:
            value = setting.read(text)
        except ValueError as error:
            problems.append(f'--set {key}="{text}": {error}')
            continue
        values = setting.apply(values, value)
    if problems:
        raise SetError(problems)
    return values


def check_mesh_name(name: str) -> str | None:
    """Why `name` cannot name a mesh (it is a label value and part of object names), or
    None."""
    return check_dns_label(name)
