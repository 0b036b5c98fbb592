"""Admission: what the API does to a write before it is stored, as kube-apiserver does.

One idea: a batch is admitted in two steps before ONE store write: mutating (OSM's
sidecar injector, on Pod CREATE only, as OSM's webhook) and then validating (the model,
on the objects as they will be stored). So what ``osm get po -o yaml`` shows is exactly
what runs, and an injection that cannot be done refuses the Pod and with it the batch
(fail closed, OSM's ``failurePolicy: Fail``): no pod is stored unmeshed by accident.

The rules are plain functions that a Kubernetes admission webhook can serve as well:
`mutate_pod` (CREATE), `check_pod_update` (UPDATE) and `bootstrap_secret_of` (what a
DELETE takes along). `PodAdmission.admit` runs them over a write batch against the store
(it reads each new Pod's Namespace, the MeshConfig and the stored Pods), and
`with_bootstrap_secrets` extends a deletion. Nothing here knows HTTP.

- CREATE (no stored Pod has the key): a Pod that OSM's decision selects gets a uuid4, a
  bootstrap certificate from the mesh CA for its identity, the injector's additions, and
  its bootstrap Secret ``envoy-bootstrap-config-<uuid>``, placed right before it in the
  batch, so that watchers see the Secret's event before the Pod's.
- UPDATE: never injected again. As kube-apiserver, the spec is immutable apart from
  ``spec.containers[*].image``, ``spec.initContainers[*].image`` (not of the containers
  the injector added) and ``spec.activeDeadlineSeconds``; the ``osm-proxy-uuid`` label,
  and on an injected pod the ``osm-py.io/sidecar`` annotation (which sidecar it runs),
  can be neither changed, added nor removed. Other metadata and the status may change:
  the local kubelet writes a pod's status by applying the whole Pod.
- DELETE of a Pod takes its bootstrap Secret along (named by the pod's label, and
  mounted by its spec, so a label alone cannot aim a deletion at another Secret).
  Deleting the Secret alone is allowed, as in Kubernetes.

Concurrency: admission reads the store and the write comes later; the caller keeps the
two together (the API holds one lock from admission to the store write), or two creates
of one Pod could both be injected and leave an orphan Secret.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from osm.apiserver import server
from osm.base import identity, wellknown
from osm.base.identity import DataPlane, Identity
from osm.ca.errors import CAError
from osm.ca.issuer import Issuer, LeafRequest
from osm.injector import patch
from osm.injector.decision import Scope, decide
from osm.injector.values import (
    BootstrapCertificate,
    InjectionError,
    XdsServer,
    annotation_path,
    label_path,
    metadata,
    string_map,
)
from osm.model import kinds, manifest
from osm.model.config import MeshConfig, default_mesh_config
from osm.model.errors import Problem, ValidationFailed
from osm.model.meta import Resource
from osm.store import api as store_api

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
LOOKUP_ONE_BY_ONE = 8
"""Up to this many keys of a kind are read one by one; more with one list."""

MUTABLE_POD_FIELDS = (
    "spec.containers[*].image, spec.initContainers[*].image and spec.activeDeadlineSeconds"
)
_SPEC_IMMUTABLE = (
    f"pod updates may not change fields other than {MUTABLE_POD_FIELDS} (Kubernetes keeps "
    "a pod's spec as it was created); delete the pod and create it again to change it, "
    "or apply the Pod as it is stored to change its metadata or status"
)
_INJECTED_LISTS = ("containers", "initContainers", "volumes")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Issue = Callable[[Identity, uuid.UUID], BootstrapCertificate]
"""Issues a proxy's bootstrap certificate for its identity and UUID."""


class AdmissionUnavailable(Exception):
    """Admission cannot decide (the CA cannot issue): the write is refused, and it is
    the server's fault, not the request's."""


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    """The injector's side of the mesh: its name, and where sidecars find the ADS server
    (`xds_host`, an IP address or a DNS name, and `xds_port`)."""

    mesh_name: str = DEFAULT_MESH_NAME
    xds_host: str = CONTROLLER_HOST
    xds_port: int = wellknown.XDS_PORT

    @property
    def scope(self) -> Scope:
        return Scope(self.mesh_name, wellknown.CONTROL_PLANE_NAMESPACE)

    @property
    def xds(self) -> XdsServer:
        return XdsServer(self.xds_host, wellknown.XDS_SERVER_NAME, self.xds_port)


def issuing(
    issuer: Issuer, clock: Callable[[], datetime], trust_domain: str = identity.TRUST_DOMAIN
) -> Issue:
    """`Issue` from a CA: `LeafRequest.bootstrap` (URI SAN: the identity's SPIFFE ID, by
    which the ADS server authenticates the proxy). A CA that cannot issue raises
    `AdmissionUnavailable`."""

    def issue(workload: Identity, proxy_uuid: uuid.UUID) -> BootstrapCertificate:
        request = LeafRequest.bootstrap(workload, proxy_uuid, trust_domain=trust_domain)
        try:
            issued = issuer.issue(request, clock())
        except CAError as error:
            raise AdmissionUnavailable(
                f"the CA cannot issue the bootstrap certificate of {workload}: {error}"
            ) from error
        return BootstrapCertificate(issued.cert_pem, issued.key_pem, issued.trust_bundle_pem)

    return issue


# -- the rules, one object at a time --------------------------------------------------------
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
        refuse(_path(parts), _SPEC_IMMUTABLE)
        if len(parts) == 2 and parts[1] in _INJECTED_LISTS:
            kept = _names(new_spec, str(parts[1]))
            for (key, index), what in sorted(injected.items()):
                if key == parts[1] and what not in kept:
                    refuse(
                        f"spec.{key}[{index}]",
                        f'"{what}" was added by the sidecar injector; it cannot be removed',
                    )
    return problems


def bootstrap_secret_of(pod: Mapping[str, Any]) -> store_api.ObjectKey | None:
    """The key of the bootstrap Secret an injected Pod owns: named after its
    ``osm-proxy-uuid`` label and mounted by its spec's bootstrap volume; None for a pod
    that was not injected."""
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
            return store_api.ObjectKey("Secret", str(metadata(pod).get("namespace") or ""), name)
    return None


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
    owned = {key: bootstrap_secret_of(pod) for key, pod in pods.items()}
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
            self._mesh_config = default_mesh_config()
            key = store_api.ObjectKey(
                "MeshConfig", wellknown.CONTROL_PLANE_NAMESPACE, wellknown.MESH_CONFIG_NAME
            )
            try:
                decoded = kinds.decode(await self.store.get(key))
            except store_api.NotFound:
                decoded = None
            except ValidationFailed as error:
                log.error(
                    "the stored MeshConfig cannot be read; injecting with defaults: %s", error
                )
                decoded = None
            if isinstance(decoded, MeshConfig):
                self._mesh_config = decoded
        return self._mesh_config


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
