"""Admission: what the API does to a write before it is stored, as kube-apiserver does.

One idea: a batch is admitted in two steps before ONE store write: mutating (OSM's
sidecar injector, on Pod CREATE only, as OSM's webhook) and then validating (the model,
on the objects as they will be stored). So what ``osm get po -o yaml`` shows is exactly
what runs, and an injection that cannot be done refuses the Pod and with it the batch
(fail closed, OSM's ``failurePolicy: Fail``): no pod is stored unmeshed by accident.

The rules, one object at a time, are `osm.injector.admission`'s (which the webhooks of
`osm.webhook` serve as well): `mutate_pod` (CREATE), `check_pod_update` (UPDATE) and
`bootstrap_secret_of` (what a DELETE takes along). Here they run over a write batch
against the store: `PodAdmission.admit` reads each new Pod's Namespace, the MeshConfig
and the stored Pods, and `with_bootstrap_secrets` extends a deletion. Nothing here knows
HTTP.

- CREATE (no stored Pod has the key): a Pod that OSM's decision selects gets a uuid4, a
  bootstrap certificate from the mesh CA for its identity, the injector's additions, and
  its bootstrap Secret ``envoy-bootstrap-config-<uuid>``, placed right before it in the
  batch, so that watchers see the Secret's event before the Pod's.
- UPDATE: never injected again (`check_pod_update`); the local kubelet writes a pod's
  status by applying the whole Pod, which the rules let through.
- DELETE of a Pod takes its bootstrap Secret along. Deleting the Secret alone is
  allowed, as in Kubernetes.

Concurrency: admission reads the store and the write comes later; the caller keeps the
two together (the API holds one lock from admission to the store write), or two creates
of one Pod could both be injected and leave an orphan Secret.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from osm.apiserver import server
from osm.base import wellknown
from osm.injector.admission import (
    AdmissionSettings,
    AdmissionUnavailable,
    Issue,
    bootstrap_secret_of,
    check_pod_update,
    mesh_config_for_injection,
    mutate_pod,
)
from osm.injector.values import InjectionError
from osm.model import kinds, manifest
from osm.model.config import MeshConfig
from osm.model.errors import Problem
from osm.model.meta import Resource
from osm.store import api as store_api

log = logging.getLogger(__name__)

LOOKUP_ONE_BY_ONE = 8
"""Up to this many keys of a kind are read one by one; more with one list."""


# -- a batch against the store -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Admitted:
    """A batch after admission: `resources` are what to store, in order (each bootstrap
    Secret right before its Pod); `added` the keys of the Secrets admission made; every
    problem found (refuse the batch if there is any error)."""

    resources: list[Resource]
    problems: list[Problem]
    added: frozenset[store_api.ObjectKey] = field(default_factory=frozenset)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


class PodAdmission:
    """Admits write batches: the model's validation of what the user sent, the injector
    on each Pod created, the update rules on each Pod replaced, and the model's
    validation of what the injector made. `issue` None: no injector (pods are stored as
    sent; for tests of the API alone)."""

    def __init__(
        self,
        settings: AdmissionSettings,
        issue: Issue | None,
        new_uuid: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self.settings = settings
        self.issue = issue
        self.new_uuid = new_uuid

    async def admit(
        self, store: store_api.Store, items: Sequence[Any], *, source: str = "<request>"
    ) -> Admitted:
        """Admits `items` (manifests as sent) against what `store` holds now. Raises
        `AdmissionUnavailable` when the CA cannot issue."""
        loaded = manifest.load_objects(items, source=source)
        problems = list(loaded.problems)
        pods = [item for item in loaded.objects if item.resource.kind == "Pod"]
        if not pods:
            return Admitted(loaded.resources, problems)
        stored = await _lookup(store, "Pod", [_key(item.resource) for item in pods])
        context = _Context(store, loaded.resources)
        resources: list[Resource] = []
        added: set[store_api.ObjectKey] = set()
        for item in loaded.objects:
            resource = item.resource
            if resource.kind != "Pod":
                resources.append(resource)
                continue
            admitted, found = await self._pod(resource, stored.get(_key(resource)), context)
            resources.extend(admitted)
            added.update(_key(r) for r in admitted if r.kind == "Secret")
            problems.extend(p.located(source=item.source, document=item.document) for p in found)
        return Admitted(resources, problems, frozenset(added))

    async def _pod(
        self, pod: Resource, stored: Mapping[str, Any] | None, context: _Context
    ) -> tuple[list[Resource], list[Problem]]:
        """What to store for one valid Pod (its bootstrap Secret first), and the problems."""
        if stored is not None:
            return [pod], check_pod_update(stored, pod.manifest)
        namespace = await context.namespace(pod.namespace)
        if namespace is None or self.issue is None:  # a missing namespace is the API's
            return [pod], []
        try:
            injection = mutate_pod(
                pod.to_dict(),
                namespace,
                await context.mesh_config(),
                self.settings,
                proxy_uuid=self.new_uuid(),
                issue=self.issue,
            )
        except InjectionError as error:
            return [], [_injection_problem(error, pod)]
        if injection.secret is None:
            return [pod], []
        secret, secret_problems = kinds.parse(injection.secret)
        mutated, pod_problems = kinds.parse(injection.pod)
        if secret is None or mutated is None:
            return [], [*secret_problems, *pod_problems]
        return [secret, mutated], [*secret_problems, *pod_problems]


async def with_bootstrap_secrets(
    store: store_api.Store, keys: Sequence[store_api.ObjectKey]
) -> list[store_api.ObjectKey]:
    """`keys` with each stored Pod's bootstrap Secret right after the Pod (when the
    Secret exists and is not in `keys` already)."""
    pods = await _lookup(store, "Pod", [key for key in keys if key.kind == "Pod"])
    owned = {key: _secret_key(pod) for key, pod in pods.items()}
    candidates = [secret for secret in owned.values() if secret is not None]
    present = set(await _lookup(store, "Secret", candidates))
    taken = set(keys)
    result: list[store_api.ObjectKey] = []
    for key in keys:
        result.append(key)
        secret = owned.get(key)
        if secret is not None and secret in present and secret not in taken:
            taken.add(secret)
            result.append(secret)
    return result


class _Context:
    """What a new Pod's injection reads, from the batch first, then from the store, each
    read once per batch."""

    def __init__(self, store: store_api.Store, batch: Sequence[Resource]) -> None:
        self.store = store
        self.namespaces: dict[str, Mapping[str, Any] | None] = {
            r.name: r.to_dict() for r in batch if r.kind == "Namespace"
        }
        mesh_configs = [r for r in batch if isinstance(r, MeshConfig) and _is_the_mesh_config(r)]
        self._mesh_config: MeshConfig | None = mesh_configs[0] if mesh_configs else None

    async def namespace(self, name: str) -> Mapping[str, Any] | None:
        if name not in self.namespaces:
            try:
                found: Mapping[str, Any] | None = await self.store.get(
                    store_api.ObjectKey("Namespace", "", name)
                )
            except store_api.NotFound:
                found = None
            self.namespaces[name] = found
        return self.namespaces[name]

    async def mesh_config(self) -> MeshConfig:
        if self._mesh_config is None:
            key = store_api.ObjectKey(
                "MeshConfig", wellknown.CONTROL_PLANE_NAMESPACE, wellknown.MESH_CONFIG_NAME
            )
            try:
                stored: Mapping[str, Any] | None = await self.store.get(key)
            except store_api.NotFound:
                stored = None
            self._mesh_config = mesh_config_for_injection(stored)
        return self._mesh_config


def _secret_key(pod: Mapping[str, Any]) -> store_api.ObjectKey | None:
    """The key of the bootstrap Secret `pod` owns (`bootstrap_secret_of`), or None."""
    name = bootstrap_secret_of(pod)
    if name is None:
        return None
    metadata = pod.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    return store_api.ObjectKey("Secret", str(namespace or ""), name)


def _is_the_mesh_config(resource: Resource) -> bool:
    return (resource.namespace, resource.name) == (
        wellknown.CONTROL_PLANE_NAMESPACE,
        wellknown.MESH_CONFIG_NAME,
    )


def _key(resource: Resource) -> store_api.ObjectKey:
    return store_api.ObjectKey(resource.kind, resource.namespace, resource.name)


async def _lookup(
    store: store_api.Store, kind: str, keys: Sequence[store_api.ObjectKey]
) -> dict[store_api.ObjectKey, dict[str, Any]]:
    """The stored objects among `keys` (all of `kind`)."""
    wanted = set(keys)
    if len(wanted) > LOOKUP_ONE_BY_ONE:
        items, _ = await store.list(kind)
        return {key: item for item in items if (key := store_api.ObjectKey.of(item)) in wanted}
    found = {}
    for key in wanted:
        with contextlib.suppress(store_api.NotFound):
            found[key] = await store.get(key)
    return found


def _injection_problem(error: InjectionError, pod: Resource) -> Problem:
    """The refusal as a Problem of the object at fault (the Pod, or the Namespace or
    MeshConfig whose field it is), saying that the Pod is refused."""
    kind, _, who = error.object_ref.partition(" ")
    namespace, _, name = who.rpartition("/")
    message = error.message
    if kind != "Pod":
        message += f"; so Pod {pod.namespace}/{pod.name} cannot be injected and is refused"
    return Problem(message, error.path, kind=kind, namespace=namespace, name=name)


class ServerAdmission:
    """`PodAdmission` as the API server's admission chain (`osm.apiserver.server`): the
    injector on Pod creates, the update rules, the model's validation; a Pod's deletion
    takes its bootstrap Secret along."""

    def __init__(self, pods: PodAdmission) -> None:
        self.pods = pods

    async def admit(
        self, store: store_api.Store, obj: Mapping[str, Any], *, creating: bool
    ) -> server.Admitted:
        try:
            admitted = await self.pods.admit(store, [obj])
        except AdmissionUnavailable as error:
            raise server.AdmissionUnavailable(str(error)) from error
        return server.Admitted([r.to_dict() for r in admitted.resources], admitted.problems)

    async def deleting(
        self, store: store_api.Store, keys: Sequence[store_api.ObjectKey]
    ) -> list[store_api.ObjectKey]:
        return await with_bootstrap_secrets(store, keys)
