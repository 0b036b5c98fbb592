"""State-of-the-world ADS, sans-IO: one `SotwStream` per gRPC stream.

One idea: the stream keeps, per type URL, the client's subscription, the one response in
flight and the last one the client accepted; `receive` folds a DiscoveryRequest into that
state and `respond` compares it with the current snapshot to say what to send now. No
grpc, no asyncio: tests drive it with tables of requests and snapshots.

Rules implemented (xDS protocol, gRFC A46):

- A request answers the response whose nonce it carries: with `error_detail` it is a NACK,
  otherwise an ACK. Requests carrying any other nonce once a response was sent are stale
  and ignored entirely (the client repeats its subscription when it answers the latest).
- A request carrying the nonce of a response already ACKed is no ACK but a request
  again, answered with the type's current resources even if nothing changed: Envoy sends
  one for unchanged EDS names when CDS changes a cluster, and warms the new cluster only
  on a ClusterLoadAssignment response ("Resource warming"), holding the CDS ACK until
  then. A NACKed nonce repeated is not answered (the rejected version stays unsent).
- At most one response per type is in flight; a newer snapshot is sent after the answer.
- After a NACK the rejected version is not sent again; only a new snapshot version (or a
  subscription to new names) produces the next response of that type.
- LDS and CDS: an empty first request is a (legacy) wildcard, and so is ``*``; once the
  client names resources, an empty list means "nothing", not "everything". Other types
  only ever get the names asked for.
- Several types due at once go out in the order CDS, EDS, LDS, RDS, SDS. LDS and CDS
  responses are full state, so dropping a cluster from one would remove it at once: while
  a listener or route update is still on its way, a cluster the client has and the new
  snapshot lacks is kept in an interim response (version ``<v>+retained``), and removed
  by the next one, after its referrers are acknowledged ("removals last").
- The first request of each type on a stream is always answered (also on reconnect).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from osm.ads import resources
from osm.ads.protocol import Ack, Event, Nack, NodeTracker, Stale, require_type_url
from osm.ads.resources import AdsSnapshot

RETAINED_SUFFIX = "+retained"


@dataclass(frozen=True, slots=True)
class _Sent:
    nonce: str
    version: str
    base_version: str
    retained: bool
    resources: Mapping[str, any_pb2.Any]


@dataclass(slots=True)
class _TypeState:
    legacy_wildcard: bool = False
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    answered_wildcard: bool = False
    answered_names: frozenset[str] = frozenset()
    in_flight: _Sent | None = None
    last_sent: _Sent | None = None
    acked: _Sent | None = None
    asked_again: bool = False
    requests: int = field(default=0)

    @property
    def subscribed(self) -> bool:
        return self.wildcard or bool(self.names)


@dataclass(frozen=True, slots=True)
class _Plan:
    version: str
    base_version: str
    retained: bool
    resources: Mapping[str, any_pb2.Any]


class SotwStream:
    """The protocol state of one SotW ADS stream. Not thread-safe; one per stream."""

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
        """Type URLs the client has asked for on this stream (what to watch)."""
        return frozenset(self._types)

    def acked_versions(self) -> dict[str, str]:
        """Last version the client accepted per type URL; a new dict."""
        return {t: s.acked.version for t, s in self._types.items() if s.acked is not None}

    def receive(self, request: discovery_pb2.DiscoveryRequest) -> list[Event]:
        """Fold `request` into the stream state. Raises `ProtocolError` for a request no
        correct client sends (no node on the first request, a changed node id, no type)."""
        self._node.observe(request.node, request.HasField("node"))
        type_url = require_type_url(request.type_url)
        state = self._types.setdefault(type_url, _TypeState())
        events: list[Event] = []
        nonce = request.response_nonce
        if state.last_sent is not None:
            if nonce != state.last_sent.nonce:
                return [Stale(type_url, nonce)]
            sent = state.in_flight
            if sent is not None:
                state.in_flight = None
                if request.HasField("error_detail"):
                    events.append(
                        Nack(
                            type_url,
                            sent.version,
                            sent.nonce,
                            tuple(sorted(sent.resources)),
                            request.error_detail.message,
                            request.error_detail.code,
                        )
                    )
                else:
                    state.acked = sent
                    events.append(Ack(type_url, sent.version, sent.nonce))
            elif state.acked is state.last_sent and not request.HasField("error_detail"):
                state.asked_again = True
        self._subscribe(type_url, state, request.resource_names)
        return events

    def respond(self, snapshot: AdsSnapshot | None) -> list[discovery_pb2.DiscoveryResponse]:
        """The responses to send now, in push order, given the node's current snapshot
        (None: nothing to send yet). Each returned response is recorded as in flight."""
        if snapshot is None:
            return []
        due = {t: self._due(t, s, snapshot) for t, s in self._types.items()}
        responses = []
        for type_url in sorted(self._types, key=resources.order_key):
            state = self._types[type_url]
            plan = self._plan(type_url, state, snapshot, due)
            if plan is None:
                continue
            responses.append(self._send(type_url, state, plan))
        return responses

    def _subscribe(self, type_url: str, state: _TypeState, names: Iterable[str]) -> None:
        requested = frozenset(names)
        state.requests += 1
        if state.requests == 1 and type_url in resources.WILDCARD_TYPES and not requested:
            state.legacy_wildcard = True
        if state.legacy_wildcard and not requested:
            state.wildcard, state.names = True, frozenset()
            return
        state.legacy_wildcard = False
        state.wildcard = resources.WILDCARD in requested
        state.names = requested - {resources.WILDCARD}

    def _due(self, type_url: str, state: _TypeState, snapshot: AdsSnapshot) -> bool:
        """Whether the type needs a response for reasons other than a deferred removal."""
        if state.in_flight is not None or not state.subscribed:
            return False
        last = state.last_sent
        if state.asked_again or last is None or last.base_version != snapshot.version(type_url):
            return True
        if state.answered_wildcard:
            return False  # the last response held every resource this version has
        return state.wildcard or bool(state.names - state.answered_names)

    def _settled(self, type_url: str, due: Mapping[str, bool]) -> bool:
        state = self._types.get(type_url)
        if state is None or not state.subscribed:
            return True
        return state.in_flight is None and not due[type_url]

    def _plan(
        self, type_url: str, state: _TypeState, snapshot: AdsSnapshot, due: Mapping[str, bool]
    ) -> _Plan | None:
        if state.in_flight is not None or not state.subscribed:
            return None
        available = snapshot.resource_versions(type_url)
        wanted = available.keys() if state.wildcard else state.names & available.keys()
        selected = {n: snapshot.packed(type_url, n) for n in wanted}
        version = snapshot.version(type_url)
        retained: dict[str, any_pb2.Any] = {}
        if type_url in resources.WILDCARD_TYPES and state.acked is not None:
            referrers_settled = all(
                self._settled(r, due) for r in resources.REFERRERS.get(type_url, ())
            )
            if not referrers_settled:
                retained = {
                    n: m
                    for n, m in state.acked.resources.items()
                    if n not in selected and (state.wildcard or n in state.names)
                }
        last = state.last_sent
        if retained:
            if (
                last is not None
                and last.retained
                and last.base_version == version
                and not due[type_url]
            ):
                return None
            selected.update(retained)
            return _Plan(version + RETAINED_SUFFIX, version, True, selected)
        if due[type_url] or (last is not None and last.retained):
            return _Plan(version, version, False, selected)
        return None

    def _send(
        self, type_url: str, state: _TypeState, plan: _Plan
    ) -> discovery_pb2.DiscoveryResponse:
        nonce = str(next(self._nonces))
        response = discovery_pb2.DiscoveryResponse(
            version_info=plan.version, type_url=type_url, nonce=nonce
        )
        response.resources.extend(plan.resources[name] for name in sorted(plan.resources))
        sent = _Sent(nonce, plan.version, plan.base_version, plan.retained, plan.resources)
        state.in_flight = state.last_sent = sent
        state.asked_again = False
        state.answered_wildcard = state.wildcard
        state.answered_names = state.names
        return response
