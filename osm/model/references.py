"""References between objects, checked over a whole set of them.

Objects arrive in any order (a TrafficTarget may be applied before the HTTPRouteGroup
it names), so a dangling reference is a warning for `osm validate`, never a parse
error. The catalog tolerates the same gaps at run time.
"""

from __future__ import annotations

from collections.abc import Sequence

from osm.base import wellknown
from osm.model.config import MeshConfig
from osm.model.core import Deployment, Namespace, Service, ServiceAccount
from osm.model.errors import Problem
from osm.model.meta import ObjectRef, Resource
from osm.model.policy import (
    Egress,
    IngressBackend,
    PolicyMatch,
    Retry,
    UpstreamTrafficSetting,
)
from osm.model.smi import HTTPRouteGroup, IdentityRef, TrafficSplit, TrafficTarget

CLUSTER_DOMAIN_SUFFIX = ".svc.cluster.local"


def check(resources: Sequence[Resource]) -> list[Problem]:
    """Returns warnings (each naming the referring object) for the references in
    `resources` that `resources` itself does not satisfy."""
    return _Checker(resources).run()


class _Checker:
    def __init__(self, resources: Sequence[Resource]) -> None:
        self.resources = resources
        self.by_ref = {resource.ref: resource for resource in resources}
        self.namespaces = {r.name for r in resources if r.kind == Namespace.KIND}
        self.problems: list[Problem] = []

    def warn(self, resource: Resource, path: str, message: str) -> None:
        self.problems.append(
            Problem(
                message,
                path,
                kind=resource.kind,
                namespace=resource.namespace,
                name=resource.name,
                severity="warning",
            )
        )

    def find(self, kind: str, namespace: str, name: str) -> Resource | None:
        return self.by_ref.get(ObjectRef(kind, namespace, name))

    def run(self) -> list[Problem]:
        reported: set[str] = set()
        for resource in self.resources:
            namespace = resource.namespace
            if namespace and namespace != "default" and namespace not in self.namespaces | reported:
                reported.add(namespace)
                self.warn(
                    resource,
                    "metadata.namespace",
                    f'namespace "{namespace}" is not defined in these files; it must '
                    "exist before this object takes effect",
                )
            if isinstance(resource, TrafficTarget):
                self.traffic_target(resource)
            elif isinstance(resource, TrafficSplit):
                self.traffic_split(resource)
            elif isinstance(resource, Egress):
                self.egress(resource)
            elif isinstance(resource, IngressBackend):
                self.ingress_backend(resource)
            elif isinstance(resource, Retry):
                self.retry(resource)
            elif isinstance(resource, UpstreamTrafficSetting):
                self.upstream_traffic_setting(resource)
            elif isinstance(resource, Deployment):
                account = resource.template.spec.service_account_name
                if account != "default" and not self.find(ServiceAccount.KIND, namespace, account):
                    self.warn(
                        resource,
                        "spec.template.spec.serviceAccountName",
                        f'ServiceAccount "{account}" is not defined in these files',
                    )
            elif isinstance(resource, MeshConfig) and resource.name != wellknown.MESH_CONFIG_NAME:
                self.warn(
                    resource,
                    "metadata.name",
                    f"the control plane reads only the MeshConfig named "
                    f'"{wellknown.MESH_CONFIG_NAME}"; this one is ignored',
                )
        return self.problems

    def traffic_target(self, target: TrafficTarget) -> None:
        identities = [(f"spec.sources[{i}]", s) for i, s in enumerate(target.sources)]
        identities.append(("spec.destination", target.destination))
        for path, identity in identities:
            if not self.find(ServiceAccount.KIND, identity.namespace, identity.name):
                self.warn(
                    target, path, f'ServiceAccount "{identity}" is not defined in these files'
                )
        for index, rule in enumerate(target.rules):
            group = self.find(rule.kind, target.namespace, rule.name)
            if group is None:
                self.warn(
                    target,
                    f"spec.rules[{index}].name",
                    f'{rule.kind} "{target.namespace}/{rule.name}" is not defined in '
                    "these files; until it exists this rule allows nothing",
                )
            elif isinstance(group, HTTPRouteGroup):
                for match_index, match in enumerate(rule.matches):
                    if group.match(match) is None:
                        valid = ", ".join(m.name for m in group.matches)
                        self.warn(
                            target,
                            f"spec.rules[{index}].matches[{match_index}]",
                            f'HTTPRouteGroup "{rule.name}" has no match named '
                            f'"{match}"; its matches: {valid}',
                        )

    def traffic_split(self, split: TrafficSplit) -> None:
        apex = self.find(Service.KIND, split.namespace, split.service)
        if apex is None:
            self.warn(
                split,
                "spec.service",
                f'Service "{split.namespace}/{split.service}" is not defined in these files',
            )
        for index, backend in enumerate(split.backends):
            service = self.find(Service.KIND, split.namespace, backend.service)
            path = f"spec.backends[{index}].service"
            if service is None:
                self.warn(
                    split,
                    path,
                    f'Service "{split.namespace}/{backend.service}" is not defined in these files',
                )
            elif isinstance(apex, Service) and isinstance(service, Service):
                missing = [str(p.port) for p in apex.ports if service.port_named(p.port) is None]
                if missing:
                    self.warn(
                        split,
                        path,
                        f'Service "{backend.service}" lacks the apex port(s) '
                        f"{', '.join(missing)}; it gets no traffic on them",
                    )
        for index, group in enumerate(split.matches):
            if not self.find(HTTPRouteGroup.KIND, split.namespace, group):
                self.warn(
                    split,
                    f"spec.matches[{index}].name",
                    f'HTTPRouteGroup "{split.namespace}/{group}" is not defined in these files',
                )

    # -- OSM's policy kinds: a dangling reference makes the policy do nothing for it ------
    def service_account(self, policy: Resource, path: str, identity: IdentityRef) -> None:
        if not self.find(ServiceAccount.KIND, identity.namespace, identity.name):
            self.warn(
                policy,
                path,
                f'ServiceAccount "{identity}" is not defined in these files; until it exists '
                "this policy does nothing for it",
            )

    def service(self, policy: Resource, path: str, namespace: str, name: str) -> None:
        if not self.find(Service.KIND, namespace, name):
            self.warn(
                policy,
                path,
                f'Service "{namespace}/{name}" is not defined in these files; until it '
                "exists this policy does nothing for it",
            )

    def policy_matches(self, policy: Resource, matches: tuple[PolicyMatch, ...]) -> None:
        for index, match in enumerate(matches):
            if match.kind and not self.find(match.kind, policy.namespace, match.name):
                self.warn(
                    policy,
                    f"spec.matches[{index}].name",
                    f'{match.kind} "{policy.namespace}/{match.name}" is not defined in these '
                    "files; until it exists this match matches nothing",
                )

    def egress(self, egress: Egress) -> None:
        for index, source in enumerate(egress.sources):
            self.service_account(egress, f"spec.sources[{index}]", source)
        self.policy_matches(egress, egress.matches)

    def ingress_backend(self, ingress: IngressBackend) -> None:
        for index, backend in enumerate(ingress.backends):
            self.service(ingress, f"spec.backends[{index}].name", ingress.namespace, backend.name)
        for index, source in enumerate(ingress.sources):
            if source.kind == "Service":
                self.service(ingress, f"spec.sources[{index}]", source.namespace, source.name)
        self.policy_matches(ingress, ingress.matches)

    def retry(self, retry: Retry) -> None:
        self.service_account(retry, "spec.source", retry.source)
        for index, destination in enumerate(retry.destinations):
            self.service(
                retry, f"spec.destinations[{index}]", destination.namespace, destination.name
            )

    def upstream_traffic_setting(self, setting: UpstreamTrafficSetting) -> None:
        """A host in the cluster's form (``name.namespace.svc.cluster.local``) names a
        Service; any other host is outside the mesh (an Egress's) and not checked."""
        if setting.host.endswith(CLUSTER_DOMAIN_SUFFIX):
            parts = setting.host.removesuffix(CLUSTER_DOMAIN_SUFFIX).split(".")
            if len(parts) == 2:
                self.service(setting, "spec.host", parts[1], parts[0])
