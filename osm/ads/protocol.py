"""What the SotW and delta stream machines share: their events, errors and node rule.

One idea: a stream machine reports what a request meant as plain events (`Ack`, `Nack`,
`Stale`), so the I/O edge can count and record them without knowing the protocol, and it
raises `ProtocolError` (the peer's fault) for requests no correct client sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

from osm.base import wellknown


class ProtocolError(Exception):
    """The remote peer broke the xDS protocol; the stream should end (INVALID_ARGUMENT)."""


@dataclass(frozen=True, slots=True)
class Ack:
    """The proxy applied the response `nonce`, which carried `version` of `type_url`."""

    type_url: str
    version: str
    nonce: str


@dataclass(frozen=True, slots=True)
class Nack:
    """The proxy rejected the response `nonce` (version `version`, resources
    `resource_names`) with `message`; it keeps running its last accepted configuration."""

    type_url: str
    version: str
    nonce: str
    resource_names: tuple[str, ...]
    message: str
    code: int

    def describe(self) -> str:
        names = ", ".join(self.resource_names) or "no resources"
        return (
            f"{wellknown.short_name(self.type_url)} version {self.version} ({names}) "
            f"rejected: {self.message}"
        )


@dataclass(frozen=True, slots=True)
class Stale:
    """A request answered a response that is no longer the latest (or none): its
    ACK/NACK meaning is ignored."""

    type_url: str
    nonce: str


Event = Ack | Nack | Stale


class NodeTracker:
    """Remembers the node of a stream's first request; later requests may omit it (Envoy's
    ``set_node_on_first_message_only``, gRPC always) but must not change its id."""

    __slots__ = ("node",)

    def __init__(self) -> None:
        self.node: base_pb2.Node | None = None

    def observe(self, request_node: base_pb2.Node, has_node: bool) -> None:
        if self.node is None:
            if not has_node or not request_node.id:
                raise ProtocolError("the first request of a stream must carry node.id")
            node = base_pb2.Node()
            node.CopyFrom(request_node)
            self.node = node
        elif has_node and request_node.id and request_node.id != self.node.id:
            raise ProtocolError(
                f"node id changed within a stream: {self.node.id!r} then {request_node.id!r}"
            )


def require_type_url(type_url: str) -> str:
    if not type_url:
        raise ProtocolError("an ADS request must carry type_url")
    return type_url
