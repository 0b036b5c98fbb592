"""Built xDS resources: a proto plus what every consumer needs of it, computed once.

The one idea: a `Built` wraps one Envoy message with its deterministic serialization,
a content digest and the names it references (clusters, route configurations,
secrets, load assignments, found by walking the message with every ``Any`` unpacked).
Builders return `Built` values from a `Memo`, so a resource needed by many proxies is
one object, serialized and hashed once, and the consistency check compares name sets
instead of walking protos again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"
LISTENER = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
TYPE_URLS = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
"""Every type a snapshot holds, in the order a server pushes them (CDS, EDS, LDS, RDS, SDS)."""

SHORT_NAMES = {"cds": CLUSTER, "eds": ENDPOINT, "lds": LISTENER, "rds": ROUTE, "sds": SECRET}

Reference = tuple[str, str]
"""(type URL, resource name) that one resource needs another to provide."""


@dataclass(frozen=True, slots=True, eq=False)
class Built:
    """One resource as built: immutable by contract (never modify ``message``).

    ``digest`` is the hex SHA-256 of ``serialized`` (deterministic serialization), so
    equal digests mean equal resources. ``references`` are what it names.
    """

    type_url: str
    name: str
    message: Message
    serialized: bytes
    digest: str
    references: frozenset[Reference]


def build(type_url: str, name: str, message: Message) -> Built:
    """Wraps a finished message: serializes, hashes and collects its references."""
    serialized = message.SerializeToString(deterministic=True)
    return Built(
        type_url,
        name,
        message,
        serialized,
        hashlib.sha256(serialized).hexdigest(),
        frozenset(references(message)),
    )


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
        yield (CLUSTER, message.cluster)


def _cluster_weight(message: Any) -> Iterator[Reference]:
    yield (CLUSTER, message.name)


def _tcp_proxy(message: Any) -> Iterator[Reference]:
    if message.cluster:
        yield (CLUSTER, message.cluster)


def _rds(message: Any) -> Iterator[Reference]:
    yield (ROUTE, message.route_config_name)


def _sds(message: Any) -> Iterator[Reference]:
    yield (SECRET, message.name)


def _cluster(message: Any) -> Iterator[Reference]:
    if message.HasField("eds_cluster_config"):
        yield (ENDPOINT, message.eds_cluster_config.service_name or message.name)


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
    configurations (RDS), secrets (SDS), load assignments (EDS clusters)."""
    found: set[Reference] = set()
    for inner in walk(message):
        finder = _REFERENCES.get(inner.DESCRIPTOR.full_name)
        if finder is not None:
            found.update(finder(inner))
    return found


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
