"""The registry of resource kinds: API groups and versions, names, and their parsers.

Everything that needs to know "which kinds exist" (manifest loading, the CLI's short
names, the controller's API) asks this module, so adding a kind is one entry here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from osm.model import config, core, policy, smi
from osm.model.errors import Problem, ValidationFailed
from osm.model.fields import Fields, suggest
from osm.model.meta import Resource, read_metadata

Parser = Callable[[Fields, Resource], Resource]


@dataclass(frozen=True, slots=True)
class KindInfo:
    """What the mesh knows about one kind.

    ``versions`` are full apiVersions, preferred first. ``strict`` kinds (the CRDs)
    report unknown fields; core kinds are read leniently (see `osm.model.core`).
    """

    kind: str
    versions: tuple[str, ...]
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    strict: bool
    parser: Parser | None

    @property
    def group(self) -> str:
        version = self.versions[0]
        return version.rpartition("/")[0] if "/" in version else ""

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the CLI accepts for this kind, lower case."""
        singular = self.kind.lower()
        fq = f"{self.plural}.{self.group}" if self.group else self.plural
        return (singular, self.plural, *self.short_names, fq)


KINDS: tuple[KindInfo, ...] = (
    KindInfo("Namespace", ("v1",), "namespaces", ("ns",), False, False, None),
    KindInfo("ServiceAccount", ("v1",), "serviceaccounts", ("sa",), True, False, None),
    KindInfo("Service", ("v1",), "services", ("svc",), True, False, core.parse_service),
    KindInfo(
        "Deployment", ("apps/v1",), "deployments", ("deploy",), True, False, core.parse_deployment
    ),
    KindInfo("Pod", ("v1",), "pods", ("po",), True, False, core.parse_pod),
    KindInfo("Endpoints", ("v1",), "endpoints", ("ep",), True, False, core.parse_endpoints),
    KindInfo("Secret", ("v1",), "secrets", (), True, False, core.parse_secret),
    KindInfo("ConfigMap", ("v1",), "configmaps", ("cm",), True, False, core.parse_config_map),
    # What a cluster holds for `osm install`: stored as sent, read by the API server
    # (webhooks) and kubectl; the mesh's pipeline does not watch them.
    KindInfo(
        "CustomResourceDefinition",
        ("apiextensions.k8s.io/v1",),
        "customresourcedefinitions",
        ("crd", "crds"),
        False,
        False,
        None,
    ),
    KindInfo(
        "ClusterRole", ("rbac.authorization.k8s.io/v1",), "clusterroles", (), False, False, None
    ),
    KindInfo(
        "ClusterRoleBinding",
        ("rbac.authorization.k8s.io/v1",),
        "clusterrolebindings",
        (),
        False,
        False,
        None,
    ),
    KindInfo("Role", ("rbac.authorization.k8s.io/v1",), "roles", (), True, False, None),
    KindInfo(
        "RoleBinding", ("rbac.authorization.k8s.io/v1",), "rolebindings", (), True, False, None
    ),
    KindInfo(
        "MutatingWebhookConfiguration",
        ("admissionregistration.k8s.io/v1",),
        "mutatingwebhookconfigurations",
        (),
        False,
        False,
        None,
    ),
    KindInfo(
        "ValidatingWebhookConfiguration",
        ("admissionregistration.k8s.io/v1",),
        "validatingwebhookconfigurations",
        (),
        False,
        False,
        None,
    ),
    KindInfo(
        "TrafficTarget",
        ("access.smi-spec.io/v1alpha3",),
        "traffictargets",
        ("tt",),
        True,
        True,
        smi.parse_traffic_target,
    ),
    KindInfo(
        "HTTPRouteGroup",
        ("specs.smi-spec.io/v1alpha4",),
        "httproutegroups",
        ("htr",),
        True,
        True,
        smi.parse_http_route_group,
    ),
    KindInfo(
        "TCPRoute",
        ("specs.smi-spec.io/v1alpha4",),
        "tcproutes",
        ("tr",),
        True,
        True,
        smi.parse_tcp_route,
    ),
    KindInfo(
        "TrafficSplit",
        ("split.smi-spec.io/v1alpha4", "split.smi-spec.io/v1alpha2"),
        "trafficsplits",
        ("ts",),
        True,
        True,
        smi.parse_traffic_split,
    ),
    KindInfo(
        "Egress",
        (policy.API_VERSION,),
        "egresses",
        ("egress",),
        True,
        True,
        policy.parse_egress,
    ),
    KindInfo(
        "IngressBackend",
        (policy.API_VERSION,),
        "ingressbackends",
        ("ingressbackend",),
        True,
        True,
        policy.parse_ingress_backend,
    ),
    KindInfo(
        "Retry",
        (policy.API_VERSION,),
        "retries",
        ("retry",),
        True,
        True,
        policy.parse_retry,
    ),
    KindInfo(
        "UpstreamTrafficSetting",
        (policy.API_VERSION,),
        "upstreamtrafficsettings",
        ("upstreamtrafficsetting",),
        True,
        True,
        policy.parse_upstream_traffic_setting,
    ),
    KindInfo(
        "MeshConfig",
        ("config.openservicemesh.io/v1alpha2",),
        "meshconfigs",
        ("meshconfig", "mc"),
        True,
        True,
        config.parse_mesh_config,
    ),
)

CLASSES: Mapping[str, type[Resource]] = {
    cls.KIND: cls
    for cls in (
        core.Namespace,
        core.ServiceAccount,
        core.Service,
        core.Deployment,
        core.Pod,
        core.Endpoints,
        core.Secret,
        core.ConfigMap,
        core.CustomResourceDefinition,
        core.ClusterRole,
        core.ClusterRoleBinding,
        core.Role,
        core.RoleBinding,
        core.MutatingWebhookConfiguration,
        core.ValidatingWebhookConfiguration,
        smi.TrafficTarget,
        smi.HTTPRouteGroup,
        smi.TCPRoute,
        smi.TrafficSplit,
        policy.Egress,
        policy.IngressBackend,
        policy.Retry,
        policy.UpstreamTrafficSetting,
        config.MeshConfig,
    )
}
# Kinds of the SMI family that users will try, and why the mesh does not read them.
UNSUPPORTED_KINDS: Mapping[str, str] = {
    "UDPRoute": "the mesh, like OSM, proxies TCP only",
    "TrafficMetrics": "an aggregated metrics API, not a manifest; OSM never implemented it",
    "IdentityBinding": "access.smi-spec.io/v1alpha4 exists only in the SMI prose spec",
}
BY_KIND: Mapping[str, KindInfo] = {info.kind: info for info in KINDS}
_BY_NAME: Mapping[str, KindInfo] = {name: info for info in KINDS for name in info.names}


def lookup(name: str) -> KindInfo:
    """Finds a kind by any of its names (``ts``, ``trafficsplit``, ``TrafficSplit``, ...).

    Raises KeyError with a message that lists what is valid.
    """
    info = _BY_NAME.get(name.lower())
    if info is None:
        valid = ", ".join(f"{i.kind} ({'/'.join(i.short_names)})" for i in KINDS)
        raise KeyError(
            f'unknown resource type "{name}"{suggest(name.lower(), _BY_NAME)}; valid: {valid}'
        )
    return info


def parse(
    data: object, *, default_namespace: str = "default"
) -> tuple[Resource | None, list[Problem]]:
    """Validates one manifest and builds its typed object.

    Returns the object (None when it has errors) and every problem found, each with the
    object's kind, namespace and name filled in as far as they could be read. Never
    raises on bad input.
    """
    problems: list[Problem] = []
    if data is None:
        return None, [Problem("is empty; expected an object with apiVersion, kind and metadata")]
    doc = Fields(data, "", problems, strict=True)
    if not doc.present:
        return None, problems
    kind = doc.string("kind", required=True)
    api_version = doc.string("apiVersion", required=True)
    info = BY_KIND.get(kind)
    if kind and info is None:
        valid = ", ".join(i.kind for i in KINDS)
        reason = UNSUPPORTED_KINDS.get(kind)
        doc.error(
            "kind",
            f"{kind} is not supported ({reason}); supported kinds: {valid}"
            if reason
            else f'unknown kind "{kind}"{suggest(kind, BY_KIND)}; supported kinds: {valid}',
        )
    elif info is not None and api_version and api_version not in info.versions:
        doc.error(
            "apiVersion",
            f'{kind} is not supported in "{api_version}"; supported: {", ".join(info.versions)}',
        )
    if info is None or not kind or not api_version or problems:
        meta = doc.raw("metadata")
        name = meta.get("name", "") if isinstance(meta, Mapping) else ""
        namespace = meta.get("namespace", "") if isinstance(meta, Mapping) else ""
        return None, [
            p.located(kind=kind, namespace=str(namespace), name=str(name)) for p in problems
        ]
    doc.strict = info.strict
    metadata = read_metadata(doc, namespaced=info.namespaced, default_namespace=default_namespace)
    manifest = normalised(data, metadata.namespace if info.namespaced else None)
    base = CLASSES[kind](api_version, metadata, manifest)
    result = base if info.parser is None else info.parser(doc, base)
    doc.finish(ignored=("status", "metadata", "kind", "apiVersion"))
    located = [
        p.located(kind=kind, namespace=metadata.namespace, name=metadata.name) for p in problems
    ]
    if any(p.severity == "error" for p in located):
        return None, located
    return result, located


def decode(data: Mapping[str, Any]) -> Resource:
    """Builds the typed object of a manifest already known to be valid (from the store).

    Raises ValidationFailed if it is not valid after all.
    """
    resource, problems = parse(data)
    if resource is None:
        raise ValidationFailed(problems)
    return resource


def normalised(data: object, namespace: str | None) -> dict[str, Any]:
    """A copy of the manifest with ``metadata.namespace`` made explicit."""
    assert isinstance(data, Mapping)
    manifest = copy.deepcopy(dict(data))
    raw_metadata = manifest.get("metadata")
    metadata = dict(raw_metadata) if isinstance(raw_metadata, Mapping) else {}
    if namespace is not None:
        metadata["namespace"] = namespace
    manifest["metadata"] = metadata
    return manifest
