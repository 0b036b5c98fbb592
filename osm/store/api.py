"""The resource store's contract: keys, errors, watch events, label selectors and `Store`.

The store keeps Kubernetes-style objects as plain JSON-compatible dicts and knows nothing
about their schema beyond ``kind`` and ``metadata.{name, namespace, labels,
resourceVersion}``; validation happens before the store. Every implementation
(`osm.store.memory`, `osm.store.sqlite`) passes the same contract test suite.

The one idea: a single store-wide, monotonic ``resourceVersion`` counter (like etcd's
revision). Each object written consumes the next number and produces exactly one
`WatchEvent` carrying that number, so "list at rv R, then watch since R" never misses or
repeats a change, and a watcher that falls behind or asks for compacted history gets a
``RESYNC`` (the full state at some rv) instead of a silent gap.

Ownership: every dict a store returns (from ``apply``, ``get``, ``list``, ``delete`` and in
watch events) is a fresh deep copy owned by the caller, who may mutate it freely; the one
exception is an opted-in ``watch(shared=True)``, whose events' objects are read-only.
Input dicts are never mutated, but the caller must not mutate them while the call is
running.

Concurrency: a store belongs to the asyncio event loop that created it. Any number of
coroutines on that loop may call it concurrently; writes are serialized and each
``apply``/``delete`` batch is atomic (all or nothing, and watchers see a batch only after
it is committed, all of it at once). Stores are not thread-safe.

A write refused because the store's filesystem is full raises `InsufficientStorage` and
leaves no trace (no object, no resourceVersion, no event); reads go on, and writes succeed
again once there is room.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, Literal, Protocol

Object = dict[str, Any]
"""A Kubernetes-style manifest: JSON-compatible, with ``kind`` and ``metadata.name``."""

EventType = Literal["ADDED", "MODIFIED", "DELETED", "RESYNC"]

SERVER_FIELDS = ("resourceVersion", "generation", "uid", "creationTimestamp")
"""The ``metadata`` fields the store owns. In input they are ignored, except that a
non-empty ``resourceVersion`` is an optimistic-concurrency precondition."""


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """Identifies one stored object. Cluster-scoped kinds have ``namespace == ""``."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectKey:
        """The key of a manifest; raises `InvalidObject` if kind or name is missing."""
        if not isinstance(obj, Mapping):
            raise InvalidObject(f"an object must be a mapping, not {type(obj).__name__}")
        kind = obj.get("kind")
        if not isinstance(kind, str) or not kind:
            raise InvalidObject("an object needs a non-empty string 'kind'")
        metadata = obj.get("metadata")
        if not isinstance(metadata, Mapping):
            raise InvalidObject(f"{kind}: an object needs a 'metadata' mapping")
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidObject(f"{kind}: metadata.name must be a non-empty string")
        namespace = metadata.get("namespace") or ""
        if not isinstance(namespace, str):
            raise InvalidObject(f"{kind} {name}: metadata.namespace must be a string")
        return cls(kind, namespace, name)

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


# --- errors -------------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of every error a store raises (backend errors are wrapped in it)."""


class InvalidObject(StoreError, ValueError):
    """The caller passed something that is not a storable object (no kind/name, not JSON)."""


class NotFound(StoreError, LookupError):
    """The object does not exist."""

    def __init__(self, key: ObjectKey) -> None:
        super().__init__(f"{key} not found")
        self.key = key


class Conflict(StoreError):
    """Optimistic concurrency failed: the caller's resourceVersion is not the stored one.

    ``actual_rv`` is None when the object does not exist. Nothing of the batch was written.
    """

    def __init__(self, key: ObjectKey, expected_rv: str, actual_rv: str | None) -> None:
        actual = "the object does not exist" if actual_rv is None else f"it is at {actual_rv}"
        super().__init__(f"{key}: expected resourceVersion {expected_rv}, but {actual}")
        self.key = key
        self.expected_rv = expected_rv
        self.actual_rv = actual_rv


class InsufficientStorage(StoreError):
    """The store's filesystem is full: the write was refused and NOTHING of it was
    written (no object, no resourceVersion, no watch event). Reads keep working; the same
    write succeeds once space is freed, without reopening the store. ``path`` is the
    store's file."""

    def __init__(self, path: str) -> None:
        self.full = f"the store's filesystem is full ({path})"
        super().__init__(self.full)
        self.path = path


class StoreClosed(StoreError):
    """The store was closed; no further calls are accepted."""

    def __init__(self) -> None:
        super().__init__("the store is closed")


# --- watch events -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change, or a RESYNC that replaces everything the watcher knew.

    ``object`` is the object after the change (for DELETED: its last state, with
    ``metadata.resourceVersion`` set to the deletion's rv); None for RESYNC.
    ``objects`` is only set for RESYNC: the full current state of the watched kinds at
    ``resource_version``, sorted by (kind, namespace, name); the events that follow have
    resource versions greater than it.
    """

    type: EventType
    resource_version: int
    object: Object | None = None
    objects: tuple[Object, ...] = ()


# --- label selectors ----------------------------------------------------------------------


class Selector(Protocol):
    """Anything that can filter objects by their labels."""

    def matches(self, labels: Mapping[str, str]) -> bool: ...


class SelectorError(ValueError):
    """A label selector string is malformed; ``position`` is the 0-based offending index."""

    def __init__(self, text: str, position: int, problem: str) -> None:
        super().__init__(f"invalid label selector {text!r} at position {position}: {problem}")
        self.text = text
        self.position = position
        self.problem = problem


Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label key, or None if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"label key prefix {prefix!r} must be a DNS subdomain of at most 253 chars"
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        return (
            f"label key name {name!r} must be 1-63 characters of [A-Za-z0-9-_.], "
            "starting and ending with an alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid Kubernetes label value, or None if it is."""
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        return (
            f"label value {value!r} must be empty or 1-63 characters of [A-Za-z0-9-_.], "
            "starting and ending with an alphanumeric"
        )
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    """One ANDed term of a selector. ``values`` is sorted and unique for in/notin."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=":
                return present and labels[self.key] == self.values[0]
            case "!=":
                return not present or labels[self.key] != self.values[0]
            case "in":
                return present and labels[self.key] in self.values
            case "notin":
                return not present or labels[self.key] not in self.values

    def __str__(self) -> str:
        match self.operator:
            case "exists":
                return self.key
            case "!":
                return f"!{self.key}"
            case "=" | "!=":
                return f"{self.key}{self.operator}{self.values[0]}"
            case "in" | "notin":
                # "()" would read as an empty list (an error); "(,)" is the set {""}.
                values = ",".join(self.values) if self.values != ("",) else ","
                return f"{self.key} {self.operator} ({values})"


@dataclasses.dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes equality/set-based label selector: all requirements must match.

    ``str()`` gives the canonical text, which `parse_selector` parses back to an equal
    selector. The empty selector matches everything.
    """

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


_SPECIAL = frozenset("=!(),")


class _SelectorParser:
    """Recursive-descent parser over the selector text; tracks the position for errors."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def fail(self, problem: str, position: int | None = None) -> SelectorError:
        return SelectorError(self.text, self.position if position is None else position, problem)

    def skip_space(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.position] if self.position < len(self.text) else ""

    def word(self) -> tuple[str, int]:
        """The next run of non-special, non-space characters (maybe empty) and its start."""
        self.skip_space()
        start = self.position
        while self.position < len(self.text):
            char = self.text[self.position]
            if char.isspace() or char in _SPECIAL:
                break
            self.position += 1
        return self.text[start : self.position], start

    def key(self) -> str:
        key, start = self.word()
        if not key:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected a label key, found {found}")
        problem = label_key_problem(key)
        if problem:
            raise self.fail(problem, start)
        return key

    def value(self) -> str:
        value, start = self.word()
        problem = label_value_problem(value)
        if problem:
            raise self.fail(problem, start)
        return value

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.position += 1
            return Requirement(self.key(), "!")
        key = self.key()
        next_char = self.peek()
        if next_char in ("", ","):
            return Requirement(key, "exists")
        if next_char == "=":
            self.position += 2 if self.text.startswith("==", self.position) else 1
            return Requirement(key, "=", (self.value(),))
        if next_char == "!":
            if not self.text.startswith("!=", self.position):
                raise self.fail("expected '!=' after a label key")
            self.position += 2
            return Requirement(key, "!=", (self.value(),))
        operator, start = self.word()
        if operator not in ("in", "notin"):
            raise self.fail(
                "expected one of '=', '==', '!=', 'in', 'notin', ',' or the end "
                f"after label key {key!r}",
                start,
            )
        if self.peek() != "(":
            raise self.fail(f"expected '(' after {operator!r}")
        self.position += 1
        if self.peek() == ")":
            raise self.fail(f"the value list of {operator!r} must not be empty")
        values = [self.value()]
        while self.peek() == ",":
            self.position += 1
            values.append(self.value())
        if self.peek() != ")":
            raise self.fail("expected ',' or ')' in a value list")
        self.position += 1
        return Requirement(key, "in" if operator == "in" else "notin", tuple(sorted(set(values))))

    def selector(self) -> LabelSelector:
        if not self.peek():
            return LabelSelector()
        requirements = [self.requirement()]
        while self.peek() == ",":
            self.position += 1
            requirements.append(self.requirement())
        if self.peek():
            raise self.fail(f"expected ',' or the end, found {self.peek()!r}")
        return LabelSelector(tuple(requirements))


def parse_selector(text: str) -> LabelSelector:
    """Parse a Kubernetes label selector such as ``app=web,tier in (a,b),!canary``.

    Supports ``k=v``, ``k==v``, ``k!=v``, ``k in (v1,v2)``, ``k notin (v)``, ``k`` and
    ``!k``, comma-separated and ANDed; whitespace between tokens is ignored; keys and
    values follow Kubernetes label syntax. Raises `SelectorError` (a ValueError) naming
    the position of the first problem.
    """
    return _SelectorParser(text).selector()


def check_limit(limit: int | None) -> None:
    """Raises ValueError unless ``limit`` is None or a positive page size (`Store.list`)."""
    if limit is not None and limit < 1:
        raise ValueError(f"a page holds at least one object; limit must be >= 1, not {limit}")


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """``metadata.labels`` of a stored object, or an empty mapping."""
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


# --- the store ----------------------------------------------------------------------------


class Store(Protocol):
    """The control plane's resource store (see the module docstring for the contract)."""

    @property
    def resource_version(self) -> int:
        """The rv of the last committed change (0 for an empty, never-written store)."""
        ...

    async def apply(self, objects: Sequence[Object]) -> builtins.list[Object]:
        """Create or replace (PUT semantics) all ``objects`` in one all-or-nothing batch.

        Server-set metadata: ``resourceVersion`` (the next store-wide rv, as a string, for
        each object written), ``generation`` (1 on create, +1 when anything outside
        ``metadata`` and ``status`` changes), ``uid`` and ``creationTimestamp`` (set on
        create, kept afterwards). An object whose content is unchanged (ignoring those
        fields) is a no-op: no new rv, no event. If an input carries a non-empty
        ``metadata.resourceVersion`` that is not the stored one (or the object does not
        exist), `Conflict` is raised and nothing is written. Objects later in a batch see
        the effect of earlier ones with the same key. Returns the stored objects, in input
        order (copies). Raises `InvalidObject` for a missing kind/name or non-JSON data.
        """
        ...

    async def get(self, key: ObjectKey) -> Object:
        """The stored object (a copy); raises `NotFound`."""
        ...

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: Selector | None = None,
        *,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> tuple[builtins.list[Object], int]:
        """Objects of ``kind`` (all namespaces if ``namespace`` is None) matching
        ``selector``, sorted by (namespace, name), with the rv they reflect, from which a
        watch continues without a gap. Copies.

        A page: only the objects strictly after ``after`` (a (namespace, name) position,
        which need not exist), and at most ``limit`` of them (a positive number, counted
        after the selector; ValueError otherwise). The cost is that of the page, not of
        the kind: the next page is asked for with ``after`` = the last object's position.
        The rv is still that of the whole list at the time it was read; pages read at
        different times are not one snapshot."""
        ...

    async def delete(self, keys: Sequence[ObjectKey]) -> builtins.list[Object]:
        """Delete all ``keys`` in one all-or-nothing batch; `NotFound` if any is missing.

        Each deletion consumes an rv and emits DELETED. Returns the last states (copies),
        with ``metadata.resourceVersion`` set to the deletion's rv.
        """
        ...

    def watch(
        self,
        since: int | None = None,
        kinds: Collection[str] | None = None,
        *,
        shared: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """Events with rv > ``since`` (None: from now), in rv order, never with a gap.

        The subscription starts when ``watch`` is called, not at the first iteration. If
        the history after ``since`` was compacted, or the watcher's bounded queue
        overflows, the watcher's pending events are dropped and it receives a RESYNC with
        the full state of ``kinds`` (all kinds if None) instead. Iteration ends when the
        store is closed; raises `StoreClosed` if it already is.

        ``shared=True`` is a promise to mutate no event's ``object`` (nor anything in it):
        the store may then hand the same dict to every shared watcher of that change,
        decoding it once instead of once per watcher.
        """
        ...

    async def close(self) -> None:
        """Finish in-flight writes, end all watches and release resources. Idempotent."""
        ...
