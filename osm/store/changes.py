"""Planning a write batch: the server-side rules every store backend shares.

A backend asks `plan_apply` / `plan_delete` what a batch would do, given a way to look up
the current objects and the next free resourceVersion; the plan is pure (no I/O, nothing
is written), so a `Conflict`, `NotFound` or `InvalidObject` raised while planning leaves
the store untouched. The backend then commits the plan's records in one transaction.

Objects travel as compact JSON text (``body``): serializing once both checks that the
object is JSON-compatible and gives an immutable value that is safe to share between the
store, its history and its watchers; every caller gets its own ``json.loads`` copy.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from osm.store.api import SERVER_FIELDS, Conflict, InvalidObject, NotFound, Object, ObjectKey

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
SERVER_FIELDS_SET = frozenset(SERVER_FIELDS)

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def dump(obj: Any) -> str:
    """Compact JSON text; raises `InvalidObject` for data JSON cannot represent."""
    try:
        return _encoder.encode(obj)
    except (TypeError, ValueError) as error:
        raise InvalidObject(f"an object is not JSON-compatible: {error}") from error


def load(body: str) -> Object:
    """A fresh dict from stored JSON text."""
    obj: Object = json.loads(body)
    return obj


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """A stored object: its parsed form (read-only, never handed out) and its JSON text."""

    obj: Mapping[str, Any]
    body: str


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One committed change: what the history and the watchers carry."""

    resource_version: int
    type: ChangeType
    key: ObjectKey
    body: str


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a batch does: ``results`` are the bodies to return, in input order;
    ``records`` the changes to commit, with consecutive resource versions."""

    results: list[str]
    records: list[Record]
    written: dict[ObjectKey, Stored | None]
    """The final state of every key the batch changes (None: deleted)."""


Lookup = Callable[[Collection[ObjectKey]], Mapping[ObjectKey, Stored]]
"""Given every key a batch touches, the ones that exist (one call per batch, so a backend
can fetch them in a few queries)."""


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps (RFC 3339, UTC, seconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_OUTSIDE_SPEC = frozenset({"metadata", "status"})


def _same_spec(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal outside ``metadata`` and ``status`` (what ``generation`` counts)."""
    keys = a.keys() - _OUTSIDE_SPEC
    return keys == b.keys() - _OUTSIDE_SPEC and all(a[k] == b[k] for k in keys)


def _user_fields(metadata: Mapping[str, Any]) -> set[str]:
    """The metadata keys the user owns; an empty namespace counts as no namespace."""
    fields = metadata.keys() - SERVER_FIELDS_SET
    if metadata.get("namespace") == "":
        fields.discard("namespace")
    return fields


def _same_metadata(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal ignoring the server's fields."""
    fields = _user_fields(a)
    return fields == _user_fields(b) and all(a[k] == b[k] for k in fields)


def _same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (
        _same_spec(a, b)
        and ("status" in a) == ("status" in b)
        and a.get("status") == b.get("status")
        and _same_metadata(a["metadata"], b["metadata"])
    )


def plan_apply(
    objects: Sequence[Mapping[str, Any]],
    lookup: Lookup,
    next_rv: int,
    *,
    now: Callable[[], str] = now_rfc3339,
    new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> Plan:
    """Plan create-or-replace of ``objects`` (see `osm.store.api.Store.apply`)."""
    keys = [ObjectKey.of(obj) for obj in objects]
    existing = lookup(set(keys))
    results: list[str] = []
    records: list[Record] = []
    written: dict[ObjectKey, Stored | None] = {}
    rv = next_rv
    timestamp = now()
    for key, obj in zip(keys, objects, strict=True):
        current = written[key] if key in written else existing.get(key)
        expected = obj["metadata"].get("resourceVersion")
        if expected not in (None, ""):
            actual = None if current is None else current.obj["metadata"]["resourceVersion"]
            if str(expected) != actual:
                raise Conflict(key, str(expected), actual)
        if current is not None and _same_content(obj, current.obj):
            results.append(current.body)
            continue
        metadata = {k: v for k, v in obj["metadata"].items() if k not in SERVER_FIELDS_SET}
        if metadata.get("namespace") == "":
            del metadata["namespace"]
        if current is None:
            metadata["uid"] = new_uid()
            metadata["creationTimestamp"] = timestamp
            metadata["generation"] = 1
        else:
            old = current.obj["metadata"]
            metadata["uid"] = old["uid"]
            metadata["creationTimestamp"] = old["creationTimestamp"]
            changed = not _same_spec(obj, current.obj)
            metadata["generation"] = old["generation"] + (1 if changed else 0)
        metadata["resourceVersion"] = str(rv)
        content = {**obj, "metadata": metadata}
        body = dump(content)
        # ``content`` shares nested values with the caller's input; it is kept only to
        # compare against later objects of this batch, never stored or returned.
        written[key] = Stored(content, body)
        records.append(Record(rv, "ADDED" if current is None else "MODIFIED", key, body))
        results.append(body)
        rv += 1
    return Plan(results, records, written)


def plan_delete(keys: Sequence[ObjectKey], lookup: Lookup, next_rv: int) -> Plan:
    """Plan deleting ``keys`` (see `osm.store.api.Store.delete`); raises `NotFound`."""
    existing = lookup(set(keys))
    records: list[Record] = []
    written: dict[ObjectKey, Stored | None] = {}
    rv = next_rv
    for key in keys:
        current = written[key] if key in written else existing.get(key)
        if current is None:
            raise NotFound(key)
        last = dict(current.obj)
        last["metadata"] = {**current.obj["metadata"], "resourceVersion": str(rv)}
        records.append(Record(rv, "DELETED", key, dump(last)))
        written[key] = None
        rv += 1
    return Plan([record.body for record in records], records, written)
