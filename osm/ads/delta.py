"""Incremental (delta) ADS, sans-IO: one `DeltaStream` per gRPC stream.

One idea: per type URL the stream knows which resource versions the client has (from
`initial_resource_versions` on reconnect, then from every ACKed response) and what it is
subscribed to; `respond` sends exactly the resources whose snapshot version differs from
the client's, and names the ones the client has but the snapshot lacks in
`removed_resources`. No grpc, no asyncio.

Rules implemented (xDS protocol, incremental variant):

- Subscriptions are diffs (`resource_names_subscribe` / `_unsubscribe`) and are applied
  from every request, whatever its nonce; only the ACK/NACK meaning of a stale nonce is
  ignored. ``*`` subscribes to everything; for LDS and CDS an empty first subscription is
  the legacy wildcard. Explicit names do not end a wildcard; unsubscribing ``*`` does.
- Resume: on a new stream the client's `initial_resource_versions` count as delivered,
  so a resource at the same version is not sent again.
- At most one response per type in flight; its resources count as delivered only once
  ACKed. A NACKed resource version is not sent again, a newer version of it is; a NACKed
  removal is repeated only once the type's snapshot version has changed.
- Updates go out in the order CDS, EDS, LDS, RDS, SDS; removals of a type wait until the
  types that reference it (`resources.REFERRERS`) have nothing due or in flight.
- The first request of each subscribed type is always answered, possibly empty, so a
  client waiting for its initial fetch does not time out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from osm.ads import resources
from osm.ads.protocol import Ack, Event, Nack, NodeTracker, Stale, require_type_url
from osm.ads.resources import AdsSnapshot


@dataclass(frozen=True, slots=True)
class _Sent:
    nonce: str
    system_version: str
    updates: Mapping[str, str]
    removals: frozenset[str]


@dataclass(slots=True)
class _TypeState:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    client: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    rejected_removals: dict[str, str] = field(default_factory=dict)
    in_flight: _Sent | None = None
    answered: bool = False
    acked_version: str | None = None

    @property
    def subscribed(self) -> bool:
        return self.wildcard or bool(self.names)

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


@dataclass(frozen=True, slots=True)
class _Diff:
    updates: Mapping[str, str]
    removals: frozenset[str]


class DeltaStream:
    """The protocol state of one delta ADS stream. Not thread-safe; one per stream."""

    def __init__(self) -> None:
        self._node = NodeTracker()
        self._types: dict[str, _TypeState] = {}
        self._nonces = itertools.count(1)

    @property
    def node(self) -> base_pb2.Node | None:
        """The node of the first request (None before it); owned by the stream."""
        return self._node.node

    @property
    def type_urls(self) -> frozenset[str]:
        return frozenset(self._types)

    def acked_versions(self) -> dict[str, str]:
        """Snapshot (system) version of the last ACKed response per type URL; a new dict."""
        return {t: s.acked_version for t, s in self._types.items() if s.acked_version}

    def client_versions(self, type_url: str) -> dict[str, str]:
        """The resource versions the client is known to have; a new dict."""
        state = self._types.get(type_url)
        return dict(state.client) if state is not None else {}

    def receive(self, request: discovery_pb2.DeltaDiscoveryRequest) -> list[Event]:
        """Fold `request` into the stream state; raises `ProtocolError` like
        `SotwStream.receive`."""
        self._node.observe(request.node, request.HasField("node"))
        type_url = require_type_url(request.type_url)
        state = self._types.get(type_url)
        events: list[Event] = []
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        if state is None:
            state = self._types[type_url] = _TypeState()
            state.client.update(request.initial_resource_versions)
            if type_url in resources.WILDCARD_TYPES and not subscribe:
                state.wildcard = True
        nonce = request.response_nonce
        if nonce:
            sent = state.in_flight
            if sent is None or nonce != sent.nonce:
                events.append(Stale(type_url, nonce))
            else:
                state.in_flight = None
                events.append(self._answer(type_url, state, sent, request))
        if resources.WILDCARD in subscribe:
            state.wildcard = True
        state.names |= subscribe - {resources.WILDCARD}
        state.names -= unsubscribe
        if resources.WILDCARD in unsubscribe:
            state.wildcard = False
        for name in [n for n in state.client if not state.wants(n)]:
            del state.client[name]
        for rejected in (state.rejected, state.rejected_removals):
            for name in [n for n in rejected if not state.wants(n)]:
                del rejected[name]
        return events

    def respond(self, snapshot: AdsSnapshot | None) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """The responses to send now, in push order; each is recorded as in flight."""
        if snapshot is None:
            return []
        diffs = {t: self._diff(t, s, snapshot) for t, s in self._types.items()}
        responses = []
        for type_url in sorted(self._types, key=resources.order_key):
            state = self._types[type_url]
            diff = diffs[type_url]
            if diff is None:
                continue
            removals = diff.removals
            referrers = resources.REFERRERS.get(type_url, ())
            if removals and not all(self._settled(r, diffs) for r in referrers):
                removals = frozenset()
            if not diff.updates and not removals and state.answered:
                continue
            responses.append(self._send(type_url, state, snapshot, diff.updates, removals))
        return responses

    def _answer(
        self,
        type_url: str,
        state: _TypeState,
        sent: _Sent,
        request: discovery_pb2.DeltaDiscoveryRequest,
    ) -> Event:
        names = tuple(sorted({*sent.updates, *sent.removals}))
        if request.HasField("error_detail"):
            state.rejected.update(sent.updates)
            state.rejected_removals.update(dict.fromkeys(sent.removals, sent.system_version))
            detail = request.error_detail
            return Nack(
                type_url, sent.system_version, sent.nonce, names, detail.message, detail.code
            )
        state.client.update(sent.updates)
        for name in sent.removals:
            state.client.pop(name, None)
        for name in names:
            state.rejected.pop(name, None)
            state.rejected_removals.pop(name, None)
        state.acked_version = sent.system_version
        return Ack(type_url, sent.system_version, sent.nonce)

    def _diff(self, type_url: str, state: _TypeState, snapshot: AdsSnapshot) -> _Diff | None:
        if state.in_flight is not None or not state.subscribed:
            return None
        versions = snapshot.resource_versions(type_url)
        wanted = (
            versions if state.wildcard else {n: versions[n] for n in state.names & set(versions)}
        )
        updates = {
            name: version
            for name, version in wanted.items()
            if state.client.get(name) != version and state.rejected.get(name) != version
        }
        system_version = snapshot.version(type_url)
        removals = frozenset(
            name
            for name in state.client
            if name not in versions and state.rejected_removals.get(name) != system_version
        )
        return _Diff(updates, removals)

    def _settled(self, type_url: str, diffs: Mapping[str, _Diff | None]) -> bool:
        state = self._types.get(type_url)
        if state is None or not state.subscribed:
            return True
        diff = diffs[type_url]
        return (
            state.in_flight is None and diff is not None and not diff.updates and not diff.removals
        )

    def _send(
        self,
        type_url: str,
        state: _TypeState,
        snapshot: AdsSnapshot,
        updates: Mapping[str, str],
        removals: frozenset[str],
    ) -> discovery_pb2.DeltaDiscoveryResponse:
        nonce = str(next(self._nonces))
        system_version = snapshot.version(type_url)
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=system_version, type_url=type_url, nonce=nonce
        )
        for name in sorted(updates):
            resource = response.resources.add(name=name, version=updates[name])
            resource.resource.CopyFrom(snapshot.packed(type_url, name))
        response.removed_resources.extend(sorted(removals))
        state.in_flight = _Sent(nonce, system_version, dict(updates), removals)
        state.answered = True
        return response
