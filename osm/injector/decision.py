"""Whether a pod gets a sidecar, and which one: OSM's webhook rules as one pure function.

One idea: `decide` answers with a `Decision` that carries its `Reason`, so a refusal, a
skip and an injection read the same in messages and in tests. The rules, in OSM's order
(``pkg/injector/webhook.go``; the first that applies wins):

1. never the control plane's namespace, kube-system or kube-public;
2. never a namespace OSM's webhook does not select: not labelled
   ``openservicemesh.io/monitored-by=<mesh>``, or labelled ``openservicemesh.io/ignore``
   or ``control-plane``;
3. never a ``hostNetwork`` pod;
4. the pod's ``openservicemesh.io/sidecar-injection`` annotation (enabled/yes/true or
   disabled/no/false, any case) if it has one, else the namespace's; neither: no sidecar.

An injected pod runs Envoy unless ``osm-py.io/sidecar`` on the pod (or, without one
there, on its namespace) says ``python``. A value that is none of the allowed ones, on
either annotation, is an `InjectionError` naming the object and the annotation.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from osm.base import wellknown
from osm.base.identity import DataPlane
from osm.injector.values import InjectionError, annotation_path, metadata, object_ref, string_map

_ON = ("enabled", "yes", "true")
_OFF = ("disabled", "no", "false")


@dataclass(frozen=True, slots=True)
class Scope:
    """The mesh an injector serves: its name (the ``monitored-by`` label's value) and the
    namespace its control plane runs in."""

    mesh_name: str
    control_plane_namespace: str


class Reason(enum.Enum):
    """Why a pod is or is not injected; the value is the message's template."""

    CONTROL_PLANE_NAMESPACE = "namespace {namespace} is the control plane's"
    SYSTEM_NAMESPACE = "namespace {namespace} is a Kubernetes system namespace"
    NOT_MONITORED = "namespace {namespace} is not labelled {label}={mesh}"
    IGNORED = "namespace {namespace} is labelled {label}"
    HOST_NETWORK = "the pod uses the host's network (spec.hostNetwork)"
    POD_ENABLED = "the pod's annotation {annotation} enables injection"
    POD_DISABLED = "the pod's annotation {annotation} disables injection"
    NAMESPACE_ENABLED = "namespace {namespace}'s annotation {annotation} enables injection"
    NAMESPACE_DISABLED = "namespace {namespace}'s annotation {annotation} disables injection"
    NOT_ANNOTATED = "neither the pod nor namespace {namespace} has the annotation {annotation}"


_INJECTING = (Reason.POD_ENABLED, Reason.NAMESPACE_ENABLED)


@dataclass(frozen=True, slots=True)
class Decision:
    """`inject` and, when it is true, the `data_plane` to inject; `message` says why."""

    reason: Reason
    message: str
    data_plane: DataPlane | None = None

    @property
    def inject(self) -> bool:
        return self.reason in _INJECTING

    def __str__(self) -> str:
        verdict = f"inject {self.data_plane.value}" if self.data_plane else "do not inject"
        return f"{verdict}: {self.message}"


def decide(pod: Mapping[str, Any], namespace: Mapping[str, Any], scope: Scope) -> Decision:
    """OSM's decision for `pod` (a Kubernetes Pod dict) in `namespace` (its Namespace).

    Raises `InjectionError` for an injection or data-plane annotation with a value that
    is not one of the allowed ones (OSM refuses an unknown injection value as well), and
    for a pod whose ``metadata.namespace`` is another namespace.
    """
    ns_name = str(metadata(namespace).get("name") or "")
    ns_labels = string_map(namespace, "labels")
    ns_annotations = string_map(namespace, "annotations")
    pod_annotations = string_map(pod, "annotations")
    pod_ref = object_ref(pod, "Pod", ns_name)
    ns_ref = object_ref(namespace, "Namespace")
    annotation = wellknown.SIDECAR_INJECTION_ANNOTATION
    pod_namespace = metadata(pod).get("namespace")
    if pod_namespace and pod_namespace != ns_name:
        raise InjectionError(
            pod_ref, "metadata.namespace", f'is "{pod_namespace}", not the namespace given'
        )

    def no(reason: Reason, **extra: str) -> Decision:
        text = reason.value.format(namespace=ns_name, annotation=annotation, **extra)
        return Decision(reason, text)

    if ns_name == scope.control_plane_namespace:
        return no(Reason.CONTROL_PLANE_NAMESPACE)
    if ns_name in wellknown.KUBE_SYSTEM_NAMESPACES:
        return no(Reason.SYSTEM_NAMESPACE)
    if ns_labels.get(wellknown.MONITORED_BY_LABEL) != scope.mesh_name:
        return no(Reason.NOT_MONITORED, label=wellknown.MONITORED_BY_LABEL, mesh=scope.mesh_name)
    for label in (wellknown.IGNORE_LABEL, wellknown.CONTROL_PLANE_LABEL):
        if label in ns_labels:
            return no(Reason.IGNORED, label=label)
    spec = pod.get("spec")
    if isinstance(spec, Mapping) and spec.get("hostNetwork") is True:
        return no(Reason.HOST_NETWORK)

    pod_says = switch(pod_annotations, annotation, pod_ref)
    ns_says = switch(ns_annotations, annotation, ns_ref)
    if pod_says is not None:
        reason = Reason.POD_ENABLED if pod_says else Reason.POD_DISABLED
    elif ns_says is not None:
        reason = Reason.NAMESPACE_ENABLED if ns_says else Reason.NAMESPACE_DISABLED
    else:
        reason = Reason.NOT_ANNOTATED
    if reason not in _INJECTING:
        return no(reason)
    plane = data_plane(pod_annotations, pod_ref, ns_annotations, ns_ref)
    message = reason.value.format(namespace=ns_name, annotation=annotation)
    return Decision(reason, message, plane)


def switch(annotations: Mapping[str, str], key: str, owner: str) -> bool | None:
    """OSM's on/off annotation values (any case): True, False, or None when absent or
    empty; anything else raises `InjectionError`."""
    value = annotations.get(key, "").strip().lower()
    if not value:
        return None
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise InjectionError(
        owner,
        annotation_path(key),
        f'"{annotations[key]}" is not a valid value; expected one of {", ".join(_ON + _OFF)}',
    )


def data_plane(
    pod_annotations: Mapping[str, str],
    pod_ref: str,
    ns_annotations: Mapping[str, str],
    ns_ref: str,
) -> DataPlane:
    """The data plane the pod's (else the namespace's) annotation names; Envoy without."""
    key = wellknown.DATA_PLANE_ANNOTATION
    for given, owner in ((pod_annotations, pod_ref), (ns_annotations, ns_ref)):
        if key not in given:
            continue
        value = given[key]
        try:
            return DataPlane(value)
        except ValueError:
            valid = ", ".join(plane.value for plane in DataPlane)
            raise InjectionError(
                owner, annotation_path(key), f'unknown sidecar "{value}"; valid values: {valid}'
            ) from None
    return DataPlane.ENVOY
