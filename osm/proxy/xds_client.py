"""The sidecar's ADS client: a sans-IO core (`ClientCore`) and a thin asyncio loop (`XdsClient`).

The one idea: every response is held, not applied, until the whole set (listeners, routes,
clusters, load assignments, secrets) assembles into one consistent `model.ProxyConfig`;
then the proxy switches to it and every held response is ACKed at once. A resource the
sidecar cannot implement is NACKed at once with `translate.ConfigError`'s message; a missing
reference is waited for (the client subscribes to what the new resources name) and NACKed
only after `wait_timeout`. The proxy keeps its last good configuration through NACKs and
while the control plane is away.

Protocol rules the core follows (the server side is `osm.ads.sotw` / `osm.ads.delta`):

- LDS and CDS are wildcard subscriptions; RDS, EDS and SDS follow the names that the
  current and the candidate configuration reference (subscribe new names at once,
  unsubscribe names nothing references once a configuration without them is applied).
- `node` is sent on the first request of a stream only.
- Delta: subscriptions are diffs sent without a nonce; a reconnect sends
  `initial_resource_versions` (what was accepted), so unchanged resources are not resent.
- SotW: LDS/CDS responses are the full state, RDS/EDS/SDS responses update the names they
  carry. Every request with the latest nonce answers that response, so a subscription change
  of a type with a held response ACKs it early. A NACK carries the last accepted version.
- Early ACKs (both protocols): the server sends nothing more of a type until its last
  response is answered, so a held response of a type that lacks a referenced name is ACKed
  at once - "accepted", valid one by one, not applied yet - and the server can send the
  missing names. The responses that introduced the references stay held, and they are what
  a timeout NACKs.
- At most one response per type is unanswered (the server waits for the answer); a newer
  one of the same type supersedes the held one.

`XdsClient` reconnects with exponential backoff and jitter; its transport (`Connector`) is
injected, so the loop is tested without gRPC. This module does no gRPC itself: the
sidecar's transport is `osm.proxy.ads_transport` (grpclib, not grpcio), which translates
its library's errors into `StreamError` at the boundary.

Why one module of ~800 lines: the rules above cross resource types (a held response of one
type is ACKed early for the sake of another), so the core is one state machine that reads
best whole; the loop around it is thin and shares its vocabulary.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2  # type: ignore[import-untyped]

from osm.base import wellknown
from osm.proxy import assembly, model, translate

log = logging.getLogger(__name__)

CDS, EDS, LDS, RDS, SDS = (
    wellknown.CLUSTER_TYPE,
    wellknown.ENDPOINT_TYPE,
    wellknown.LISTENER_TYPE,
    wellknown.ROUTE_TYPE,
    wellknown.SECRET_TYPE,
)
WILDCARD_TYPES = (CDS, LDS)
"""Subscribed as a whole, in this order (Envoy's: clusters before listeners)."""
NAMED_TYPES = (EDS, RDS, SDS)
"""Subscribed by the names the configuration references."""
INVALID_ARGUMENT = 3  # google.rpc.Code, what Envoy and gRPC put in a NACK's error_detail
DEFAULT_WAIT_TIMEOUT = 15.0
"""How long a response waits for the resources it references (Envoy's initial fetch timeout)."""

ProtocolName = Literal["delta", "sotw"]
Request: TypeAlias = Any
"""A DiscoveryRequest (SotW) or DeltaDiscoveryRequest (the protos are untyped)."""
Response: TypeAlias = Any
"""A DiscoveryResponse or DeltaDiscoveryResponse."""


# ---------------------------------------------------------------------------------------------
# The sans-IO core


@dataclass(frozen=True, slots=True)
class Item:
    """One resource: its proto, its translated model, and (delta) its resource version."""

    message: Any
    model: Any
    version: str = ""


@dataclass(slots=True)
class _Held:
    """A response not answered yet: its changes to the type's accepted resources."""

    nonce: str
    version: str
    updates: dict[str, Item]
    removals: set[str]
    replace: bool  # SotW LDS/CDS: `updates` is the complete new state


@dataclass(slots=True)
class _TypeState:
    accepted: dict[str, Item] = field(default_factory=dict)
    version: str = ""  # version_info / system_version_info of the last accepted response
    subscribed: frozenset[str] = frozenset()  # named types only
    requested: bool = False  # a request of this type went out on this stream
    nonce: str = ""  # the latest response's nonce on this stream
    held: _Held | None = None
    received: bool = False  # a response of this type was held at least once (any stream)

    def candidate(self) -> dict[str, Item]:
        held = self.held
        if held is None:
            return self.accepted
        if held.replace:
            return dict(held.updates)
        merged = {n: i for n, i in self.accepted.items() if n not in held.removals}
        merged.update(held.updates)
        return merged


@dataclass(frozen=True, slots=True)
class Rejection:
    """A NACK the core sent: which type, and the message the server gets."""

    type_url: str
    message: str


@dataclass(frozen=True, slots=True)
class Step:
    """What the I/O loop does next: send `requests` in order, then, if `config` is set,
    apply it to the proxy and report with `ClientCore.applied` / `apply_failed`.
    `rejections` are for logs and stats (already in `requests`)."""

    requests: tuple[Request, ...] = ()
    config: model.ProxyConfig | None = None
    rejections: tuple[Rejection, ...] = ()

    def then(self, other: Step) -> Step:
        return Step(
            self.requests + other.requests, other.config, self.rejections + other.rejections
        )


def cluster_references(
    listeners: Iterable[model.Listener], route_configs: Iterable[model.RouteConfig]
) -> set[str]:
    """The clusters that listeners (TCP proxies, inline routes) and route configs name."""
    found: set[str] = set()
    tables = list(route_configs)
    for listener in listeners:
        chains = list(listener.filter_chains)
        if listener.default_filter_chain is not None:
            chains.append(listener.default_filter_chain)
        for chain in chains:
            terminal = chain.terminal
            if isinstance(terminal, model.TcpProxy):
                found.update(target.cluster for target in terminal.targets)
            elif terminal.route_config is not None:
                tables.append(terminal.route_config)
    for table in tables:
        for vhost in table.virtual_hosts:
            for route in vhost.routes:
                found.update(target.cluster for target in route.action.targets)
    return found


def references(
    listeners: Iterable[model.Listener], clusters: Iterable[model.Cluster]
) -> dict[str, set[str]]:
    """The RDS, EDS and SDS names that listeners and clusters refer to, by type URL."""
    names: dict[str, set[str]] = {EDS: set(), RDS: set(), SDS: set()}
    for listener in listeners:
        chains = list(listener.filter_chains)
        if listener.default_filter_chain is not None:
            chains.append(listener.default_filter_chain)
        for chain in chains:
            if chain.tls is not None:
                names[SDS].add(chain.tls.cert_secret)
                if chain.tls.validation_secret:
                    names[SDS].add(chain.tls.validation_secret)
            terminal = chain.terminal
            if isinstance(terminal, model.HttpConnectionManager) and terminal.rds_name:
                names[RDS].add(terminal.rds_name)
    for cluster in clusters:
        if cluster.kind == "EDS":
            names[EDS].add(cluster.eds_service_name or cluster.name)
        if cluster.tls is not None:
            for secret in (cluster.tls.cert_secret, cluster.tls.validation_secret):
                if secret:
                    names[SDS].add(secret)
    return names


class ClientCore:
    """The protocol state of the client across streams. Not thread-safe; no I/O.

    Use: `start_stream(protocol)` for each new stream (send what it returns), then feed every
    response to `receive(response, now)` and carry out the returned `Step`; when `deadline`
    passes without a response, call `expire(now)`. Accepted resources survive a reconnect,
    unanswered responses do not.
    """

    def __init__(self, node: base_pb2.Node, wait_timeout: float = DEFAULT_WAIT_TIMEOUT) -> None:
        self.node = node
        self.wait_timeout = wait_timeout
        self.protocol: ProtocolName = "delta"
        self.deadline: float | None = None
        """When the held responses stop waiting for references (None: nothing waits)."""
        self.waiting_for: translate.MissingReference | None = None
        self.applied_config: model.ProxyConfig | None = None
        self.last_rejection: Rejection | None = None
        self._types = {t: _TypeState() for t in (*WILDCARD_TYPES, *NAMED_TYPES)}
        self._node_sent = False
        self._pending: dict[str, str] = {}  # type -> nonce of held responses in the config

    # -- inspection (tests, admin) ---------------------------------------------------------
    def accepted_versions(self) -> dict[str, str]:
        """The last accepted version per type URL (types never accepted are left out)."""
        return {t: s.version for t, s in self._types.items() if s.version}

    def subscriptions(self, type_url: str) -> frozenset[str]:
        """The names subscribed for a named type (RDS/EDS/SDS)."""
        return self._types[type_url].subscribed

    def held_types(self) -> list[str]:
        return [t for t, s in self._types.items() if s.held is not None]

    # -- stream lifecycle --------------------------------------------------------------------
    def start_stream(self, protocol: ProtocolName) -> list[Request]:
        """Forget the previous stream's nonces and held responses; -> the first requests:
        LDS and CDS wildcards, and the named types the accepted configuration references."""
        self.protocol = protocol
        self._node_sent = False
        self.deadline = None
        self.waiting_for = None
        self._pending = {}
        for state in self._types.values():
            state.requested = False
            state.nonce = ""
            state.held = None
        requests: list[Request] = []
        for type_url in WILDCARD_TYPES:
            state = self._types[type_url]
            if protocol == "delta":
                request = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, resource_names_subscribe=["*"]
                )
                for name, item in sorted(state.accepted.items()):
                    if item.version:
                        request.initial_resource_versions[name] = item.version
            else:
                request = discovery_pb2.DiscoveryRequest(
                    type_url=type_url, version_info=state.version
                )
            state.requested = True
            requests.append(self._with_node(request))
        requests.extend(self._sync_subscriptions())
        return requests

    def _with_node(self, request: Any) -> Any:
        if not self._node_sent:
            request.node.CopyFrom(self.node)
            self._node_sent = True
        return request

    # -- responses ----------------------------------------------------------------------------
    def receive(self, response: Response, now: float) -> Step:
        """Fold one response in: NACK it if it cannot be implemented, else hold it and try
        to assemble the candidate configuration."""
        type_url = response.type_url
        state = self._types.get(type_url)
        delta = isinstance(response, discovery_pb2.DeltaDiscoveryResponse)
        version = response.system_version_info if delta else response.version_info
        if state is None:
            message = f"resource type {type_url} is not supported (only LDS, RDS, CDS, EDS, SDS)"
            return self._reject_unheld(type_url, response.nonce, message, delta)
        state.nonce = response.nonce
        previous = state.held
        state.held = None
        try:
            held = self._parse(type_url, state, response, version)
        except translate.ConfigError as error:
            return self._reject_unheld(type_url, response.nonce, str(error), delta)
        if previous is not None and not held.replace:
            previous.updates.update(held.updates)
            for name in held.removals:
                previous.updates.pop(name, None)
            held.updates, held.removals = previous.updates, previous.removals | held.removals
        state.held = held
        state.received = True
        return self._evaluate(now)

    def _parse(self, type_url: str, state: _TypeState, response: Any, version: str) -> _Held:
        updates: dict[str, Item] = {}
        removals: set[str] = set()
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            for resource in response.resources:
                if not resource.HasField("resource"):
                    removals.add(resource.name)
                    continue
                message = assembly.unpack_resource(type_url, resource.resource)
                name = assembly.resource_name(type_url, message)
                if resource.name and resource.name != name:
                    raise translate.ConfigError(
                        type_url, resource.name, "name", f"does not match the resource ({name!r})"
                    )
                if type_url in NAMED_TYPES and name not in state.subscribed:
                    continue  # not asked for (any more): ignored, as Envoy does
                self._add(updates, type_url, name, message, resource.version)
            removals.update(response.removed_resources)
            replace = False
        else:
            for packed in response.resources:
                message = assembly.unpack_resource(type_url, packed)
                name = assembly.resource_name(type_url, message)
                if type_url in NAMED_TYPES and name not in state.subscribed:
                    continue  # not asked for (any more): ignored, as Envoy does
                self._add(updates, type_url, name, message, "")
            replace = type_url in WILDCARD_TYPES
        return _Held(response.nonce, version, updates, removals, replace)

    @staticmethod
    def _add(
        updates: dict[str, Item], type_url: str, name: str, message: Any, version: str
    ) -> None:
        if name in updates:
            raise translate.ConfigError(type_url, name, "", "the response holds it twice")
        updates[name] = Item(message, assembly.translate(type_url, message), version)

    def _reject_unheld(self, type_url: str, nonce: str, message: str, delta: bool) -> Step:
        """NACK a response that was never held (it could not be read)."""
        state = self._types.get(type_url)
        rejection = Rejection(type_url, message)
        self.last_rejection = rejection
        detail = status_pb2.Status(code=INVALID_ARGUMENT, message=message)
        request: Request
        if delta:
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=nonce, error_detail=detail
            )
        else:
            request = discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                response_nonce=nonce,
                version_info=state.version if state else "",
                resource_names=self._sotw_names(type_url),
                error_detail=detail,
            )
        requests: list[Request] = [self._with_node(request)]
        return Step(tuple(requests), None, (rejection,))

    # -- the candidate ---------------------------------------------------------------------------
    def _candidate(self) -> dict[str, dict[str, Item]]:
        return {t: s.candidate() for t, s in self._types.items()}

    def _evaluate(self, now: float) -> Step:
        """Sync subscriptions, then assemble the candidate; NACK what is wrong in it."""
        step = Step(tuple(self._sync_subscriptions()))
        while True:
            held = {t: s.held.nonce for t, s in self._types.items() if s.held is not None}
            candidate = self._candidate()
            if not held and self._is_applied(candidate):
                self.deadline, self.waiting_for = None, None
                return step
            if not all(self._types[t].received for t in WILDCARD_TYPES):
                return step  # the first configuration has both listeners and clusters
            versions = {
                t: (s.held.version if s.held is not None else s.version)
                for t, s in self._types.items()
            }
            try:
                assembled = assembly.assemble(
                    {t: {n: i.message for n, i in items.items()} for t, items in candidate.items()},
                    versions,
                    {t: {n: i.model for n, i in items.items()} for t, items in candidate.items()},
                )
            except translate.MissingReference as error:
                self.waiting_for = error
                step = step.then(Step(tuple(self._unblock(candidate))))
                if any(s.held is not None for s in self._types.values()):
                    if self.deadline is None:
                        self.deadline = now + self.wait_timeout
                else:
                    self.deadline = None
                return step
            except translate.ConfigError as error:
                if not held:  # the accepted set itself: nothing to NACK, keep what runs
                    self.waiting_for, self.deadline = None, None
                    return step
                step = step.then(self._nack(self._culprits(error, held), str(error)))
                continue
            self.deadline, self.waiting_for = None, None
            self._pending = held
            return step.then(Step(config=assembled))

    def _unblock(self, candidate: Mapping[str, Mapping[str, Item]]) -> list[Request]:
        """ACK early the held responses of types that lack a referenced name: the server
        sends nothing more of a type until its last response is answered, so holding it
        would wait for the timeout. Their resources were valid one by one; the responses
        that introduced the references stay held (and are NACKed if the wait times out)."""
        wanted = references(
            (i.model for i in candidate[LDS].values()), (i.model for i in candidate[CDS].values())
        )
        wanted[CDS] = cluster_references(
            (i.model for i in candidate[LDS].values()), (i.model for i in candidate[RDS].values())
        )
        requests: list[Request] = []
        for type_url, names in wanted.items():
            state = self._types[type_url]
            if state.held is not None and names - candidate[type_url].keys():
                requests.append(self._ack(type_url, state, state.held))
                self._pending.pop(type_url, None)
        return requests

    def _is_applied(self, candidate: Mapping[str, Mapping[str, Item]]) -> bool:
        applied = self.applied_config
        if applied is None:
            return not any(candidate.values())
        for type_url, items in candidate.items():
            raw = applied.raw.get(type_url, {})
            if raw.keys() != items.keys():
                return False
            if any(raw[name] is not item.message for name, item in items.items()):
                return False
        return True

    def _culprits(self, error: translate.ConfigError, held: Mapping[str, str]) -> list[str]:
        guilty = wellknown.TYPES_BY_MESSAGE.get(error.type_name, error.type_name)
        return [guilty] if guilty in held else list(held)

    # -- outcomes ----------------------------------------------------------------------------------
    def applied(self, applied: model.ProxyConfig) -> Step:
        """The proxy runs `applied`, the config of the last Step: ACK the responses it
        included, and drop subscriptions nothing references any more."""
        self.applied_config = applied
        requests: list[Request] = []
        for type_url, nonce in self._pending.items():
            state = self._types[type_url]
            held = state.held
            if held is None or held.nonce != nonce:
                continue
            requests.append(self._ack(type_url, state, held))
        self._pending = {}
        return Step(tuple(requests) + tuple(self._sync_subscriptions()))

    def apply_failed(self, error: translate.ConfigError, now: float) -> Step:
        """The proxy refused the config (a listener could not bind): NACK the responses
        that caused it and try the rest."""
        pending, self._pending = self._pending, {}
        return self._nack(self._culprits(error, pending), str(error)).then(self._evaluate(now))

    def expire(self, now: float) -> Step:
        """Called when `deadline` has passed: NACK the held responses with the missing
        reference, then carry on with what was accepted."""
        if self.deadline is None or now < self.deadline:
            return Step()
        error = self.waiting_for
        message = str(error) if error is not None else "timed out waiting for references"
        held = [t for t, s in self._types.items() if s.held is not None]
        self.deadline = None
        return self._nack(held, message).then(self._evaluate(now))

    def _ack(self, type_url: str, state: _TypeState, held: _Held) -> Request:
        state.accepted = state.candidate()
        state.version = held.version
        state.held = None
        request: Request
        if self.protocol == "delta":
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=held.nonce
            )
        else:
            request = discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                version_info=held.version,
                response_nonce=held.nonce,
                resource_names=self._sotw_names(type_url),
            )
        return self._with_node(request)

    def _nack(self, type_urls: Iterable[str], message: str) -> Step:
        requests: list[Request] = []
        rejections: list[Rejection] = []
        detail = status_pb2.Status(code=INVALID_ARGUMENT, message=message)
        for type_url in type_urls:
            state = self._types[type_url]
            held = state.held
            if held is None:
                continue
            state.held = None
            request: Request
            if self.protocol == "delta":
                request = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, response_nonce=held.nonce, error_detail=detail
                )
            else:
                request = discovery_pb2.DiscoveryRequest(
                    type_url=type_url,
                    version_info=state.version,
                    response_nonce=held.nonce,
                    resource_names=self._sotw_names(type_url),
                    error_detail=detail,
                )
            requests.append(self._with_node(request))
            rejections.append(Rejection(type_url, message))
        if rejections:
            self.last_rejection = rejections[-1]
        return Step(tuple(requests), None, tuple(rejections))

    # -- subscriptions -----------------------------------------------------------------------------
    def _sotw_names(self, type_url: str) -> list[str]:
        if type_url in NAMED_TYPES:
            return sorted(self._types[type_url].subscribed)
        return []  # LDS/CDS: the (legacy) wildcard

    def _wanted(self) -> dict[str, set[str]]:
        candidate = self._candidate()
        wanted = references(
            (i.model for i in candidate[LDS].values()), (i.model for i in candidate[CDS].values())
        )
        applied = self.applied_config
        if applied is not None:
            for type_url, names in references(
                applied.listeners.values(), applied.clusters.values()
            ).items():
                wanted[type_url] |= names
        return wanted

    def _sync_subscriptions(self) -> list[Request]:
        """Requests that bring the RDS/EDS/SDS subscriptions in line with the references."""
        requests: list[Request] = []
        wanted = self._wanted()
        for type_url in NAMED_TYPES:
            state = self._types[type_url]
            names = frozenset(wanted[type_url])
            if names == state.subscribed and (state.requested or not names):
                continue
            request: Request
            if self.protocol == "delta":
                request = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url)
                if state.requested:
                    request.resource_names_subscribe.extend(sorted(names - state.subscribed))
                    request.resource_names_unsubscribe.extend(sorted(state.subscribed - names))
                else:
                    request.resource_names_subscribe.extend(sorted(names))
                    for name, item in sorted(state.accepted.items()):
                        if name in names and item.version:
                            request.initial_resource_versions[name] = item.version
            else:
                version, nonce = state.version, state.nonce
                if state.held is not None:  # this request answers it: an early ACK
                    version, nonce = state.held.version, state.held.nonce
                    state.accepted, state.version = state.candidate(), version
                    state.held = None
                    self._pending.pop(type_url, None)
                request = discovery_pb2.DiscoveryRequest(
                    type_url=type_url,
                    version_info=version,
                    response_nonce=nonce,
                    resource_names=sorted(names),
                )
            state.subscribed = names
            state.requested = True
            state.accepted = {n: i for n, i in state.accepted.items() if n in names}
            if state.held is not None:
                state.held.updates = {n: i for n, i in state.held.updates.items() if n in names}
            requests.append(self._with_node(request))
        return requests


# ---------------------------------------------------------------------------------------------
# The I/O loop


class StreamError(Exception):
    """The stream ended with a gRPC status (`code` is its name, e.g. ``UNAVAILABLE``)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class Stream(Protocol):
    """One ADS stream. `read` returns None when the server ends the stream cleanly and
    raises `StreamError` when it ends with an error status."""

    async def write(self, request: Request) -> None: ...

    async def read(self) -> Response | None: ...

    async def close(self) -> None: ...


class Connector(Protocol):
    """Opens ADS streams (a fresh connection per stream is fine)."""

    async def open(self, protocol: ProtocolName) -> Stream: ...


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits uniformly in [d/2, d] with
    d = min(cap, base * 2**n); `reset` after a healthy stream."""

    base: float = 0.5
    cap: float = 30.0
    random: Callable[[], float] = field(default_factory=lambda: random.Random().random)
    attempts: int = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2.0**self.attempts)
        self.attempts += 1
        return ceiling / 2 + self.random() * ceiling / 2

    def reset(self) -> None:
        self.attempts = 0


Apply = Callable[[model.ProxyConfig], Awaitable[None]]


class XdsClient:
    """Runs ADS streams until `stop()`; `apply` switches the proxy (raising ConfigError
    leaves it unchanged). `protocol` "auto" tries delta and falls back to SotW for good
    when the server answers UNIMPLEMENTED. Event-loop only."""

    def __init__(
        self,
        core: ClientCore,
        connector: Connector,
        apply: Apply,
        *,
        protocol: Literal["auto", "delta", "sotw"] = "auto",
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.connector = connector
        self.apply = apply
        self.protocol: ProtocolName = "sotw" if protocol == "sotw" else "delta"
        self._fallback = protocol == "auto"
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.clock = clock
        self.connected = False
        self.streams = 0
        self.last_error = ""
        self.on_state: Callable[[XdsClient], None] = lambda client: None
        self._stopping = False
        self._healthy = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """End `run` at its next await (cancel the task for an immediate stop)."""
        self._stopping = True

    async def run(self) -> None:
        """Connect, serve, reconnect; returns only after `stop()`."""
        while not self._stopping:
            healthy = False
            try:
                healthy = await self._stream()
                self.last_error = "the xDS server closed the stream"
                log.warning("%s; reconnecting", self.last_error)
            except StreamError as error:
                healthy = self._healthy
                if error.code == "UNIMPLEMENTED" and self.protocol == "delta" and self._fallback:
                    log.info("the xDS server does not offer delta ADS; using state-of-the-world")
                    self.protocol = "sotw"
                    self._fallback = False
                    continue
                self.last_error = f"{error.code}: {error.details}"
                if error.code == "PERMISSION_DENIED":
                    log.error(
                        "the xDS server refused this proxy (PERMISSION_DENIED): %s - check that "
                        "the bootstrap certificate's identity matches node.id",
                        error.details,
                    )
                else:
                    log.warning("xDS stream failed: %s", self.last_error)
            finally:
                self._set_connected(False)
            if healthy:
                self.backoff.reset()
            if self.stopping:
                break
            delay = self.backoff.next()
            log.info("reconnecting to the xDS server in %.2fs", delay)
            await self.sleep(delay)

    def _set_connected(self, connected: bool) -> None:
        if self.connected != connected:
            self.connected = connected
            self.on_state(self)

    async def _stream(self) -> bool:
        """One stream to its end; -> whether it received any response. Raises StreamError."""
        self._healthy = False
        self.streams += 1
        stream = await self.connector.open(self.protocol)
        inbox: asyncio.Queue[Response | BaseException | None] = asyncio.Queue()

        async def read() -> None:
            try:
                while True:
                    response = await stream.read()
                    await inbox.put(response)
                    if response is None:
                        return
            except BaseException as error:
                await inbox.put(error)
                raise

        reader = asyncio.get_running_loop().create_task(read())
        try:
            for request in self.core.start_stream(self.protocol):
                await stream.write(request)
            while not self._stopping:
                deadline = self.core.deadline
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                try:
                    item = await asyncio.wait_for(inbox.get(), timeout)
                except TimeoutError:
                    await self._carry_out(stream, self.core.expire(self.clock()))
                    continue
                if item is None:
                    return self._healthy
                if isinstance(item, BaseException):
                    raise item
                if not self._healthy:
                    self._healthy = True
                    self._set_connected(True)
                    log.info("connected to the xDS server (%s)", self.protocol)
                log.debug("xDS response: %s", _describe(item))
                await self._carry_out(stream, self.core.receive(item, self.clock()))
            return self._healthy
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await stream.close()

    async def _carry_out(self, stream: Stream, step: Step) -> None:
        while True:
            for rejection in step.rejections:
                log.warning(
                    "rejected %s: %s", wellknown.short_name(rejection.type_url), rejection.message
                )
            for request in step.requests:
                log.debug("xDS request: %s", _describe(request))
                await stream.write(request)
            applied = step.config
            if applied is None:
                return
            try:
                await self.apply(applied)
            except translate.ConfigError as error:
                step = self.core.apply_failed(error, self.clock())
                continue
            versions = ", ".join(
                f"{wellknown.short_name(t)} {v}" for t, v in sorted(applied.versions.items()) if v
            )
            log.info("applied configuration (%s)", versions or "no versions")
            step = self.core.applied(applied)


def _describe(message: Any) -> str:
    """One line for debug logs: type, nonce, versions, names (never resource contents)."""
    parts = [wellknown.short_name(message.type_url)]
    for name in (
        "version_info",
        "system_version_info",
        "nonce",
        "response_nonce",
        "resource_names",
        "resource_names_subscribe",
        "resource_names_unsubscribe",
        "removed_resources",
    ):
        value = getattr(message, name, None)
        if value:
            shown = ",".join(value) if not isinstance(value, str) else value
            parts.append(f"{name}={shown}")
    resources = getattr(message, "resources", None)
    if resources:
        names = [getattr(r, "name", "") for r in resources]
        parts.append(f"resources={len(resources)}" + (f"({','.join(names)})" if any(names) else ""))
    if message.HasField("error_detail") if hasattr(message, "error_detail") else False:
        parts.append(f"NACK {message.error_detail.message}")
    return " ".join(parts)
