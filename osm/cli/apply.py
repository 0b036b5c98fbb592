"""``osm apply`` and ``osm delete`` of manifests, one object at a time through the API, as
kubectl does them.

One idea: apply is read-then-write per object: GET it; absent, create it (POST);
present, replace it (PUT) carrying the resourceVersion just read, so a concurrent writer
makes the PUT fail with 409 (then read again, up to `CONFLICT_ATTEMPTS` times) instead
of being overwritten. The server keeps an object's resourceVersion when a write changes
nothing, so "unchanged" is exactly "the server kept the resourceVersion". Namespaces are
applied first and deleted last, so a file that lists its namespace works both ways.

A replace writes the whole object as the file has it: labels or annotations others added
(``osm namespace add``, the runtime) are replaced by the file's. kubectl's client-side
apply keeps them (a three-way merge against the last applied state); this does not.

Objects are written one by one, not in one transaction: an error leaves the objects
before it written, reports the error, and goes on with the next (kubectl's behaviour).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from osm.cli.client import Api
from osm.kube.client import Manifest
from osm.kube.errors import ApiError, KubeError
from osm.model import kinds

CONFLICT_ATTEMPTS = 3
"""Reads and writes of one object before a 409 Conflict is reported: another writer won
that many times in a row."""
SERVER_FIELDS = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
)
"""Metadata the server owns: dropped from a manifest before it is written (a manifest
exported with ``osm get -o yaml`` carries them)."""
NAMESPACE_POLL = 0.1
"""Seconds between reads of a deleted Namespace while waiting for it to go."""


@dataclass(frozen=True, slots=True)
class Ref:
    """An object's address: its kind (as the model names it), namespace and name."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Ref:
        metadata = obj.get("metadata") or {}
        info = kinds.lookup(str(obj.get("kind", "")))
        namespace = str(metadata.get("namespace") or "") if info.namespaced else ""
        return cls(info.kind, namespace, str(metadata.get("name") or ""))

    @property
    def scope(self) -> str | None:
        return self.namespace or None

    def __str__(self) -> str:
        return f"{type_name(self.kind)}/{self.name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one object: ``action`` (created, configured, unchanged, deleted)
    or the `error` that stopped it."""

    ref: Ref
    action: str = ""
    error: KubeError | None = None


def type_name(kind: str) -> str:
    """The kind as kubectl names it in messages: ``trafficsplit.split.smi-spec.io``,
    ``deployment.apps``, ``service``."""
    info = kinds.lookup(kind)
    return f"{info.kind.lower()}.{info.group}" if info.group else info.kind.lower()


def namespaces_first(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The objects with the Namespaces first, each group in the given order."""
    listed = list(objects)
    return [o for o in listed if o.get("kind") == "Namespace"] + [
        o for o in listed if o.get("kind") != "Namespace"
    ]


def desired(obj: Mapping[str, Any]) -> Manifest:
    """The manifest to send: without the metadata the server owns, and without status
    (written only through the status subresource)."""
    body = copy.deepcopy(dict(obj))
    body.pop("status", None)
    metadata = dict(body.get("metadata") or {})
    for field in SERVER_FIELDS:
        metadata.pop(field, None)
    body["metadata"] = metadata
    return body


def apply(
    api: Api,
    objects: Sequence[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    report: Callable[[Outcome], None] = lambda _: None,
) -> list[Outcome]:
    """Create or replace each object (Namespaces first); every outcome, also passed to
    `report` as it happens."""
    outcomes = []
    for obj in namespaces_first(objects):
        ref = Ref.of(obj)
        try:
            outcome = Outcome(ref, apply_one(api, obj, dry_run=dry_run))
        except (KubeError, ValueError) as error:
            outcome = Outcome(ref, error=_kube_error(error))
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def apply_one(api: Api, obj: Mapping[str, Any], *, dry_run: bool = False) -> str:
    """Create or replace one object: ``created``, ``configured`` or ``unchanged``."""
    ref = Ref.of(obj)
    body = desired(obj)
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            current = api.get(ref.kind, ref.scope, ref.name, api_version=body.get("apiVersion"))
        except ApiError as error:
            if error.code != HTTPStatus.NOT_FOUND:
                raise
            try:
                api.create(body, dry_run=dry_run)
            except ApiError as create_error:
                if create_error.reason == "AlreadyExists" and attempt < CONFLICT_ATTEMPTS:
                    continue  # created meanwhile: read it and replace it
                raise
            return "created"
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            result = api.replace(body, dry_run=dry_run)
        except ApiError as error:
            if error.code == HTTPStatus.CONFLICT and attempt < CONFLICT_ATTEMPTS:
                continue  # written meanwhile: read it again
            raise
        return "unchanged" if _unchanged(current, result, dry_run=dry_run) else "configured"
    raise AssertionError("unreachable: the last attempt returns or raises")


def _unchanged(current: Manifest, result: Manifest, *, dry_run: bool) -> bool:
    """The write changed nothing: the server kept the resourceVersion. A dry run always
    answers with the stored resourceVersion, so there the objects are compared (without
    the generation, which only a stored write counts)."""
    if not dry_run:
        return bool(result["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"])
    return _comparable(current) == _comparable(result)


def _comparable(obj: Manifest) -> Manifest:
    copied = copy.deepcopy(obj)
    metadata = copied.get("metadata") or {}
    metadata.pop("generation", None)
    metadata.pop("managedFields", None)
    return copied


def delete(
    api: Api,
    refs: Sequence[Ref],
    *,
    ignore_not_found: bool = False,
    report: Callable[[Outcome], None] = lambda _: None,
) -> list[Outcome]:
    """Delete each object in the given order; a missing one is an error unless
    `ignore_not_found` (then it is skipped without an outcome)."""
    outcomes = []
    for ref in refs:
        try:
            api.delete(ref.kind, ref.scope, ref.name)
        except ApiError as error:
            if error.code == HTTPStatus.NOT_FOUND and ignore_not_found:
                continue
            outcome = Outcome(ref, error=error)
        except (KubeError, ValueError) as error:
            outcome = Outcome(ref, error=_kube_error(error))
        else:
            outcome = Outcome(ref, "deleted")
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def deletion_order(refs: Iterable[Ref]) -> list[Ref]:
    """The objects of a file in reverse order, Namespaces last (their content goes
    with them anyway, and a Namespace deleted first would make the rest 404)."""
    backwards = list(refs)[::-1]
    return [r for r in backwards if r.kind != "Namespace"] + [
        r for r in backwards if r.kind == "Namespace"
    ]


def wait_until_gone(
    api: Api,
    refs: Sequence[Ref],
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Ref]:
    """Wait until each object reads 404 (a Namespace lingers Terminating while its
    content goes); the ones still there after `timeout` seconds."""
    deadline = clock() + timeout
    waiting = list(refs)
    while waiting:
        still = []
        for ref in waiting:
            try:
                api.get(ref.kind, ref.scope, ref.name)
            except ApiError as error:
                if error.code == HTTPStatus.NOT_FOUND:
                    continue
                raise
            still.append(ref)
        waiting = still
        if not waiting or clock() >= deadline:
            break
        sleep(NAMESPACE_POLL)
    return waiting


def _kube_error(error: KubeError | ValueError) -> KubeError:
    """A ValueError (a kind the client cannot send) as the client's own error type."""
    return error if isinstance(error, KubeError) else KubeError(str(error))
