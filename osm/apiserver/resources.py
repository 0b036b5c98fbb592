"""The API's resources: what each kind is called on the wire, and the discovery documents.

Built from the model's registry of kinds (`osm.model.kinds`), so a kind the model knows is
served at every apiVersion it accepts: ``/api/v1/namespaces/{ns}/pods`` for core kinds,
``/apis/{group}/{version}/namespaces/{ns}/{plural}`` for the others, cluster-scoped kinds
without the namespace part. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from osm.model import kinds

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
OWN_CATEGORIES = ("osm",)
# Kinds that `kubectl get all` lists in Kubernetes.
ALL_CATEGORY = frozenset({"Pod", "Service", "Deployment"})
# Subresources served per kind (besides the object itself); every kind has `status`.
SUBRESOURCES: Mapping[str, tuple[str, ...]] = {
    "Pod": ("status", "log"),
    "Deployment": ("status", "scale"),
    "ServiceAccount": ("status", "token"),
}
TOKEN_REQUEST_API_VERSION = "authentication.k8s.io/v1"
"""What ``serviceaccounts/token`` takes and answers (a TokenRequest), and its only verb."""


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    """One kind at one group/version, as the API serves it."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    builtin: bool
    """A Kubernetes built-in kind: strategic merge patch applies (custom kinds answer 415)."""
    subresources: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def info(self) -> kinds.KindInfo:
        return kinds.BY_KIND[self.kind]

    def path(self, namespace: str = "", name: str = "") -> str:
        """The URL path of the collection (``name`` empty) or of one object."""
        base = "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{where}/{self.plural}" + (f"/{name}" if name else "")


def _resources() -> tuple[Resource, ...]:
    found = []
    for info in kinds.KINDS:
        custom = info.strict
        categories = ("all",) if info.kind in ALL_CATEGORY else ()
        if custom:
            categories = (*categories, *OWN_CATEGORIES)
        short = tuple(name for name in info.short_names if name != info.kind.lower())
        for api_version in info.versions:
            group, _, version = api_version.rpartition("/")
            found.append(
                Resource(
                    kind=info.kind,
                    group=group,
                    version=version,
                    plural=info.plural,
                    namespaced=info.namespaced,
                    short_names=short,
                    categories=categories,
                    builtin=not custom,
                    subresources=SUBRESOURCES.get(info.kind, ("status",)),
                )
            )
    return tuple(found)


RESOURCES: tuple[Resource, ...] = _resources()
_BY_PATH: Mapping[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}
_PREFERRED: Mapping[str, Resource] = {
    info.kind: next(
        r for r in RESOURCES if r.kind == info.kind and r.api_version == info.versions[0]
    )
    for info in kinds.KINDS
}


def find(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at ``/apis/{group}/{version}/{plural}`` (group "" for core)."""
    return _BY_PATH.get((group, version, plural))


def preferred(kind: str) -> Resource:
    """The kind at its preferred (first) apiVersion; KeyError for an unknown kind."""
    return _PREFERRED[kind]


def group_versions() -> dict[str, list[str]]:
    """Every group (core "" included) and its versions, preferred first."""
    groups: dict[str, list[str]] = {}
    for info in kinds.KINDS:
        for api_version in info.versions:
            group, _, version = api_version.rpartition("/")
            versions = groups.setdefault(group, [])
            if version not in versions:
                versions.append(version)
    return groups


# -- discovery documents ------------------------------------------------------------------
def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> dict[str, Any]:
    """``GET /apis``: every named group with its versions, preferred first."""
    groups = []
    for group, versions in group_versions().items():
        if not group:
            continue
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    """``GET /apis/{group}``, or None for a group that is not served."""
    versions = group_versions().get(group)
    if not group or versions is None:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/{group}/{version}``: the resources with their verbs,
    short names and categories, subresources as ``pods/log``; None if not served."""
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    entries: list[dict[str, Any]] = []
    for resource in served:
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(VERBS),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entries.append(entry)
        for sub in resource.subresources:
            verbs = {"log": ["get"], "token": ["create"]}.get(sub, ["get", "patch", "update"])
            sub_entry: dict[str, Any] = {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": verbs,
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            if sub == "token":
                group_, _, version_ = TOKEN_REQUEST_API_VERSION.partition("/")
                sub_entry.update(group=group_, version=version_, kind="TokenRequest")
            entries.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }
