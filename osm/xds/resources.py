"""Built xDS resources: a proto plus what every consumer needs of it, computed once.

The one idea: a `Built` wraps one Envoy message with its deterministic serialization,
a content digest and the names it references (clusters, route configurations,
secrets, load assignments, found by walking the message with every ``Any`` unpacked).
Builders return `Built` values from a `Memo`, so a resource needed by many proxies is
one object, serialized and hashed once, and the consistency check compares name sets
instead of walking protos again. The walk for references descends only into fields
whose type can contain a naming message (decided once per type from the
descriptors); a resource assembled from serialized parts (`from_serialized`) parses
its message only when someone reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from osm.base.wellknown import CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, SECRET_TYPE

Reference = tuple[str, str]
"""(type URL, resource name) that one resource needs another to provide."""


class Built:
    """One resource as built: immutable by contract (never modify ``message``).

    ``digest`` is the hex SHA-256 of ``serialized`` (deterministic serialization), so
    equal digests mean equal resources. ``references`` are what it names.

    A resource assembled from already-serialized parts (`from_serialized`) parses its
    ``message`` from ``serialized`` on first access: the ADS server only ever sends
    the bytes, so a large route configuration rebuilt for a change is never parsed
    unless someone (a dump, a test) reads it. Attributes are read-only.
    """

    __slots__ = (
        "_message",
        "_message_type",
        "digest",
        "name",
        "references",
        "serialized",
        "type_url",
    )

    type_url: str
    name: str
    serialized: bytes
    digest: str
    references: frozenset[Reference]
    _message: Message | None
    _message_type: type[Message] | None

    def __init__(
        self,
        type_url: str,
        name: str,
        message: Message | None,
        serialized: bytes,
        digest: str,
        references: frozenset[Reference],
        message_type: type[Message] | None = None,
    ) -> None:
        assert message is not None or message_type is not None
        set_ = object.__setattr__
        set_(self, "type_url", type_url)
        set_(self, "name", name)
        set_(self, "_message", message)
        set_(self, "_message_type", message_type)
        set_(self, "serialized", serialized)
        set_(self, "digest", digest)
        set_(self, "references", references)

    @property
    def message(self) -> Message:
        message = self._message
        if message is None:
            assert self._message_type is not None
            message = self._message_type.FromString(self.serialized)
            object.__setattr__(self, "_message", message)
        return message

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Built is immutable (cannot set {name})")

    def __repr__(self) -> str:
        return f"Built({self.type_url.rpartition('.')[2]} {self.name!r} {self.digest[:12]})"


def build(
    type_url: str, name: str, message: Message, names: frozenset[Reference] | None = None
) -> Built:
    """Wraps a finished message: serializes, hashes and collects its references.

    ``names``, when given, must be exactly what `references` would find (a builder
    that assembles a message from memoized parts passes the union of the parts'
    references, each found by `references` once)."""
    serialized = message.SerializeToString(deterministic=True)
    return Built(
        type_url,
        name,
        message,
        serialized,
        hashlib.sha256(serialized).hexdigest(),
        frozenset(references(message)) if names is None else names,
    )


def from_serialized(
    type_url: str,
    name: str,
    message_type: type[Message],
    serialized: bytes,
    names: frozenset[Reference],
) -> Built:
    """A resource whose deterministic serialization (``serialized``) and references
    (``names``) the caller already has, exactly as `build` would find them; its
    message is parsed when first read."""
    digest = hashlib.sha256(serialized).hexdigest()
    return Built(type_url, name, None, serialized, digest, names, message_type)


def pack(message: Message) -> any_pb2.Any:
    """``message`` in an ``Any`` with its ``type.googleapis.com/`` URL."""
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_classes: dict[str, type[Message]] = {}


def unpack(packed: any_pb2.Any) -> Message | None:
    """The message inside ``packed``, or None when its type is not registered."""
    full_name = packed.type_url.rpartition("/")[2]
    cls = _classes.get(full_name)
    if cls is None:
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
        except KeyError:
            return None
        cls = message_factory.GetMessageClass(descriptor)
        _classes[full_name] = cls
    inner = cls()
    inner.ParseFromString(packed.value)
    return inner


def walk(message: Message) -> Iterator[Message]:
    """Every message inside ``message`` (itself included), with ``Any`` unpacked."""
    stack: list[Message] = [message]
    while stack:
        current = stack.pop()
        yield current
        if current.DESCRIPTOR.full_name == "google.protobuf.Any":
            assert isinstance(current, any_pb2.Any)
            inner = unpack(current)
            if inner is not None:
                stack.append(inner)
            continue
        for field, value in current.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.type == value_field.TYPE_MESSAGE:
                    stack.extend(value.values())
            elif field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)


def _route_action(message: Any) -> Iterator[Reference]:
    if message.cluster:
        yield (CLUSTER_TYPE, message.cluster)


def _cluster_weight(message: Any) -> Iterator[Reference]:
    yield (CLUSTER_TYPE, message.name)


def _tcp_proxy(message: Any) -> Iterator[Reference]:
    if message.cluster:
        yield (CLUSTER_TYPE, message.cluster)


def _rds(message: Any) -> Iterator[Reference]:
    yield (ROUTE_TYPE, message.route_config_name)


def _sds(message: Any) -> Iterator[Reference]:
    yield (SECRET_TYPE, message.name)


def _cluster(message: Any) -> Iterator[Reference]:
    if message.HasField("eds_cluster_config"):
        yield (ENDPOINT_TYPE, message.eds_cluster_config.service_name or message.name)


_REFERENCES: dict[str, Callable[[Any], Iterator[Reference]]] = {
    "envoy.config.route.v3.RouteAction": _route_action,
    "envoy.config.route.v3.WeightedCluster.ClusterWeight": _cluster_weight,
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": _tcp_proxy,
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight": (
        _cluster_weight
    ),
    "envoy.extensions.filters.network.http_connection_manager.v3.Rds": _rds,
    "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig": _sds,
    "envoy.config.cluster.v3.Cluster": _cluster,
}


def references(message: Message) -> set[Reference]:
    """The resources ``message`` names: clusters (routes, tcp_proxy), route
    configurations (RDS), secrets (SDS), load assignments (EDS clusters).

    Walks the message like `walk`, but only into fields (and ``Any`` payloads) whose
    type can contain a naming message at all (`_may_reference`, computed once per
    type from the descriptors), so matches, addresses and durations are skipped."""
    found: set[Reference] = set()
    stack: list[Message] = [message]
    while stack:
        current = stack.pop()
        descriptor = current.DESCRIPTOR
        name = descriptor.full_name
        if name == _ANY:
            assert isinstance(current, any_pb2.Any)
            if _any_may_reference(current.type_url):
                inner = unpack(current)
                if inner is not None:
                    stack.append(inner)
            continue
        finder = _REFERENCES.get(name)
        if finder is not None:
            found.update(finder(current))
        for field, value in current.ListFields():
            target = _field_target(field)
            if target is None:
                continue
            if target == "map":
                stack.extend(value.values())
            elif field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)
    return found


_ANY = "google.protobuf.Any"
_may: dict[str, bool] = {}
_fields: dict[str, str | None] = {}
_any_types: dict[str, bool] = {}


def _may_reference(descriptor: Any) -> bool:
    """Whether a message of this type can hold, at any depth, a message that names
    a resource (or an ``Any``, which might). Cycles in the type graph are fine: it is
    a plain reachability search from ``descriptor``."""
    cached = _may.get(descriptor.full_name)
    if cached is not None:
        return cached
    seen = {descriptor.full_name}
    stack = [descriptor]
    result = False
    while stack and not result:
        current = stack.pop()
        if current.full_name in _REFERENCES or current.full_name == _ANY:
            result = True
            break
        for field in current.fields:
            if field.type == field.TYPE_MESSAGE and field.message_type.full_name not in seen:
                seen.add(field.message_type.full_name)
                stack.append(field.message_type)
    _may[descriptor.full_name] = result
    return result


def _field_target(field: Any) -> str | None:
    """How `references` descends into ``field``: None (it cannot name anything),
    "map" (a map whose message values may) or "message"."""
    key = field.full_name
    if key in _fields:
        return _fields[key]
    target: str | None = None
    if field.type == field.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type == value_field.TYPE_MESSAGE and _may_reference(
                value_field.message_type
            ):
                target = "map"
        elif _may_reference(field.message_type):
            target = "message"
    _fields[key] = target
    return target


def _any_may_reference(type_url: str) -> bool:
    cached = _any_types.get(type_url)
    if cached is None:
        full_name = type_url.rpartition("/")[2]
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
        except KeyError:
            cached = False
        else:
            cached = _may_reference(descriptor)
        _any_types[type_url] = cached
    return cached


class Memo:
    """Builds each distinct resource once: ``get(key, make)`` calls ``make`` only for a
    key it has not seen. Keys must be hashable values that determine the resource.

    Counters: ``built`` (misses) and ``reused`` (hits). Not thread-safe.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, Built] = {}
        self.built = 0
        self.reused = 0

    def get(self, key: Hashable, make: Callable[[], Built]) -> Built:
        found = self._entries.get(key)
        if found is not None:
            self.reused += 1
            return found
        made = make()
        self._entries[key] = made
        self.built += 1
        return made

    def __len__(self) -> int:
        return len(self._entries)

    def retain(self, live: set[int]) -> None:
        """Drops entries whose resource (by ``id``) is not in ``live``."""
        self._entries = {k: v for k, v in self._entries.items() if id(v) in live}
