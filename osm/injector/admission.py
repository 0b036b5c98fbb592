"""Admission's rules for Pods, one object at a time: what a Kubernetes admission webhook
and the local API's admission both apply.

One idea: the rules are pure functions of the objects they judge; whoever admits (the
local API's batch admission, `osm.controller.admission`, or the webhooks of
`osm.webhook`) reads the Namespace and the MeshConfig, draws the proxy's UUID and issues
its bootstrap certificate (an `Issue` it is handed), and stores or answers the result.

- CREATE: `mutate_pod`. A Pod that OSM's decision selects gets the injector's additions
  (`patch.inject`) with a certificate from `issue`, which is called only for a pod that
  is injected; a pod that must be refused raises `InjectionError`.
- UPDATE: `check_pod_update`. Never injected again. As kube-apiserver, the spec is
  immutable apart from ``spec.containers[*].image``, ``spec.initContainers[*].image``
  (not of the containers the injector added) and ``spec.activeDeadlineSeconds``; the
  ``osm-proxy-uuid`` label, and on an injected pod the ``osm-py.io/sidecar`` annotation
  (which sidecar it runs), can be neither changed, added nor removed. Other metadata and
  the status may change.
- DELETE: `bootstrap_secret_of` names the Secret a Pod takes along (named by the pod's
  label and mounted by its spec, so a label alone cannot aim a deletion at another
  Secret).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from osm.base import identity, wellknown
from osm.base.identity import DataPlane, Identity
from osm.injector import patch
from osm.injector.decision import Scope, decide
from osm.injector.values import (
    BootstrapCertificate,
    XdsServer,
    annotation_path,
    label_path,
    metadata,
    string_map,
)
from osm.model import kinds
from osm.model.config import MeshConfig, default_mesh_config
from osm.model.errors import Problem, ValidationFailed

log = logging.getLogger(__name__)


DEFAULT_MESH_NAME = "osm"
"""The mesh's name: the value of the ``openservicemesh.io/monitored-by`` label that
selects namespaces for injection (``osm install --mesh-name``)."""
CONTROLLER_HOST = (
    f"{wellknown.CONTROLLER_SERVICE}.{wellknown.CONTROL_PLANE_NAMESPACE}"
    f".svc.{identity.CLUSTER_DOMAIN}"
)
"""Where injected sidecars reach the ADS server: the controller's Service DNS name (the
local kubelet resolves it for its pods in their hosts files)."""

MUTABLE_POD_FIELDS = (
    "spec.containers[*].image, spec.initContainers[*].image and spec.activeDeadlineSeconds"
)
SPEC_IMMUTABLE = (
    f"pod updates may not change fields other than {MUTABLE_POD_FIELDS} (Kubernetes keeps "
    "a pod's spec as it was created); delete the pod and create it again to change it, "
    "or apply the Pod as it is stored to change its metadata or status"
)
_INJECTED_LISTS = ("containers", "initContainers", "volumes")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Issue = Callable[[Identity, uuid.UUID], BootstrapCertificate]
"""Issues a proxy's bootstrap certificate for its identity and UUID; raises
`AdmissionUnavailable` when it cannot."""


class AdmissionUnavailable(Exception):
    """Admission cannot decide (the CA cannot issue): the write is refused, and it is
    the server's fault, not the request's."""


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    """The injector's side of the mesh: its name and the namespace of its control plane
    (never injected; the MeshConfig's), where sidecars find the ADS server (`xds_host`,
    an IP address or a DNS name, and `xds_port`), and the images of what it adds to a
    pod (``osm injector --sidecar-image`` and its siblings)."""

    mesh_name: str = DEFAULT_MESH_NAME
    osm_namespace: str = wellknown.CONTROL_PLANE_NAMESPACE
    xds_host: str = CONTROLLER_HOST
    xds_port: int = wellknown.XDS_PORT
    envoy_image: str = patch.ENVOY_IMAGE
    init_image: str = patch.INIT_IMAGE
    python_sidecar_image: str = patch.PYTHON_SIDECAR_IMAGE
    healthcheck_image: str = patch.HEALTHCHECK_IMAGE

    @property
    def scope(self) -> Scope:
        return Scope(self.mesh_name, self.osm_namespace)

    @property
    def xds(self) -> XdsServer:
        return XdsServer(self.xds_host, wellknown.XDS_SERVER_NAME, self.xds_port)

    @property
    def images(self) -> patch.Images:
        return patch.Images(
            envoy=self.envoy_image,
            init=self.init_image,
            python_sidecar=self.python_sidecar_image,
            healthcheck=self.healthcheck_image,
        )


def mutate_pod(
    pod: Mapping[str, Any],
    namespace: Mapping[str, Any],
    mesh_config: MeshConfig,
    settings: AdmissionSettings,
    *,
    proxy_uuid: uuid.UUID,
    issue: Issue,
) -> patch.Injection:
    """A Pod being created, as the injector makes it (`patch.inject`); the certificate is
    issued only for a pod that is injected. Raises `InjectionError` to refuse the pod."""
    scope = settings.scope
    decision = decide(pod, namespace, scope)
    if not decision.inject:
        return patch.Injection(decision, copy.deepcopy(dict(pod)))
    namespace_name = str(metadata(namespace).get("name") or "")
    certificate = issue(patch.pod_identity(pod, namespace_name), proxy_uuid)
    return patch.inject(
        pod,
        namespace,
        scope,
        proxy_uuid=proxy_uuid,
        certificate=certificate,
        xds=settings.xds,
        mesh_config=mesh_config,
        images=settings.images,
    )


def check_pod_update(stored: Mapping[str, Any], updated: Mapping[str, Any]) -> list[Problem]:
    """Why `updated` may not replace the `stored` Pod (empty: it may)."""
    meta = metadata(stored)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    problems: list[Problem] = []

    def refuse(path: str, message: str) -> None:
        problems.append(Problem(message, path, kind="Pod", namespace=namespace, name=name))

    old_labels, new_labels = string_map(stored, "labels"), string_map(updated, "labels")
    old_uuid = old_labels.get(wellknown.PROXY_UUID_LABEL)
    new_uuid = new_labels.get(wellknown.PROXY_UUID_LABEL)
    if old_uuid != new_uuid:
        refuse(
            label_path(wellknown.PROXY_UUID_LABEL),
            f'is the UUID of the proxy the injector added ("{old_uuid}"); it cannot be changed '
            "or removed (delete the pod and create it again for a new proxy)"
            if old_uuid is not None
            else "is set by the sidecar injector when it creates a pod; it cannot be added "
            "to a pod that was not injected",
        )
    if old_uuid is not None:
        key = wellknown.DATA_PLANE_ANNOTATION
        old_plane = string_map(stored, "annotations").get(key)
        new_plane = string_map(updated, "annotations").get(key)
        if old_plane != new_plane:
            refuse(
                annotation_path(key),
                f"names the sidecar the injector added ({old_plane or 'envoy'}); it cannot "
                "change (delete the pod and create it again for another sidecar)",
            )

    old_spec, new_spec = stored.get("spec"), updated.get("spec")
    injected = _injected_items(stored) if old_uuid is not None else {}
    reported: set[tuple[str, int]] = set()
    for parts in _differences(old_spec, new_spec, ("spec",)):
        if _mutable(parts, injected):
            continue
        item = (str(parts[1]), parts[2]) if len(parts) > 2 and isinstance(parts[2], int) else None
        if item is not None and item in injected:
            if item not in reported:
                reported.add(item)
                refuse(
                    _path(parts[:3]),
                    f'"{injected[item]}" was added by the sidecar injector; it cannot change',
                )
            continue
        refuse(_path(parts), SPEC_IMMUTABLE)
        if len(parts) == 2 and parts[1] in _INJECTED_LISTS:
            kept = _names(new_spec, str(parts[1]))
            for (key, index), what in sorted(injected.items()):
                if key == parts[1] and what not in kept:
                    refuse(
                        f"spec.{key}[{index}]",
                        f'"{what}" was added by the sidecar injector; it cannot be removed',
                    )
    return problems


def bootstrap_secret_of(pod: Mapping[str, Any]) -> str | None:
    """The name of the bootstrap Secret an injected Pod owns (in the Pod's namespace):
    named after its ``osm-proxy-uuid`` label and mounted by its spec's bootstrap volume;
    None for a pod that was not injected."""
    label = string_map(pod, "labels").get(wellknown.PROXY_UUID_LABEL)
    if not label:
        return None
    name = f"{wellknown.BOOTSTRAP_SECRET_PREFIX}{label}"
    spec = pod.get("spec")
    volumes = spec.get("volumes") if isinstance(spec, Mapping) else None
    for volume in volumes if isinstance(volumes, list) else ():
        if not isinstance(volume, Mapping) or volume.get("name") != wellknown.BOOTSTRAP_VOLUME_NAME:
            continue
        source = volume.get("secret")
        if isinstance(source, Mapping) and source.get("secretName") == name:
            return name
    return None


# -- comparing specs ------------------------------------------------------------------------
Parts = tuple[str | int, ...]


def _differences(old: Any, new: Any, parts: Parts) -> Iterator[Parts]:
    """Where two JSON values differ: objects key by key, lists of equal length item by
    item; anything else (a list that grew or shrank included) as a whole."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(old.keys() | new.keys()):
            if key not in old or key not in new:
                yield (*parts, key)
            else:
                yield from _differences(old[key], new[key], (*parts, key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _differences(a, b, (*parts, index))
    elif not _same(old, new):
        yield parts


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1`` is not ``true``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _mutable(parts: Parts, injected: Mapping[tuple[str, int], str]) -> bool:
    """Whether Kubernetes lets an update change the field `parts` of a pod."""
    if parts == ("spec", "activeDeadlineSeconds"):
        return True
    return (
        len(parts) == 4
        and parts[1] in ("containers", "initContainers")
        and isinstance(parts[2], int)
        and parts[3] == "image"
        and (str(parts[1]), parts[2]) not in injected
    )


def _injected_items(pod: Mapping[str, Any]) -> dict[tuple[str, int], str]:
    """(list, index) -> name of what the injector added to an injected pod's spec."""
    plane = string_map(pod, "annotations").get(wellknown.DATA_PLANE_ANNOTATION)
    sidecar = (
        wellknown.PYTHON_SIDECAR_CONTAINER_NAME
        if plane == DataPlane.PYTHON.value
        else wellknown.ENVOY_CONTAINER_NAME
    )
    added = {
        "containers": sidecar,
        "initContainers": wellknown.INIT_CONTAINER_NAME,
        "volumes": wellknown.BOOTSTRAP_VOLUME_NAME,
    }
    spec = pod.get("spec")
    found = {}
    for key, name in added.items():
        items = spec.get(key) if isinstance(spec, Mapping) else None
        for index, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, Mapping) and item.get("name") == name:
                found[(key, index)] = name
    return found


def _names(spec: Any, key: str) -> set[str]:
    items = spec.get(key) if isinstance(spec, Mapping) else None
    return {
        str(item.get("name"))
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, Mapping)
    }


def _path(parts: Parts) -> str:
    """kubectl's field path: ``spec.containers[0].image``, ``metadata.labels["a/b"]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def mesh_config_for_injection(
    stored: Mapping[str, Any] | None, namespace: str = wellknown.CONTROL_PLANE_NAMESPACE
) -> MeshConfig:
    """The MeshConfig that decides injection: the stored one (None: there is none), or its
    defaults when there is none or it cannot be read (logged: pods are then injected as a
    fresh install would inject them, rather than refused)."""
    if stored is None:
        return default_mesh_config(namespace)
    try:
        decoded = kinds.decode(stored)
    except ValidationFailed as error:
        log.error("the MeshConfig cannot be read; injecting with defaults: %s", error)
        return default_mesh_config(namespace)
    return decoded if isinstance(decoded, MeshConfig) else default_mesh_config(namespace)
