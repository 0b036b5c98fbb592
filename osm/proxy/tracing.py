"""Tracing: the sidecar's Zipkin tracer, as Envoy's ``envoy.tracers.zipkin`` behaves in an
HTTP connection manager with B3 propagation.

The one idea: a traced HCM makes one `Span` per request (`Tracer.start` when the request
head arrives, `Tracer.inject` into the upstream request's headers, `Tracer.finish` when
the response or the local reply is done), and finished sampled spans go into a bounded
buffer that a `Reporter` posts as Zipkin v2 JSON to the collector cluster, once a second
or every `FLUSH_SPANS` spans. Reporting never touches a request: the buffer drops spans
when full, a report is a background task with a timeout, and an unreachable collector
only counts in Envoy's stats (``tracing.zipkin.reports_sent``, ``reports_dropped`` (an
answer other than 2xx), ``reports_failed`` (no answer), ``spans_sent``,
``timer_flushed``, ``reports_skipped_no_cluster``).

What Envoy (1.40) does, and so this module (tests/integration/test_proxy_tracing.py
compares the two):
* context: the single ``b3`` header if present (``{trace}-{span}[-{flag}[-{parent}]]``,
  or a flag alone: ``0``, ``1``, ``d``), else ``x-b3-traceid`` and ``x-b3-spanid`` (both,
  or a new trace starts) with ``x-b3-parentspanid``. A context that does not parse (an id
  that is not 16 hex digits, 32 for a trace id; an unknown flag in ``b3``) makes no span:
  nothing is reported or written, the request's headers go upstream as they came.
* sampling: the caller's decision if it sent one (``b3``'s flag: ``1`` and ``d`` (debug)
  sample, ``0`` does not; ``x-b3-sampled``: ``1`` or ``true`` sample, anything else does
  not; ``x-b3-flags`` is not read), else random at the HCM's ``random_sampling``.
  Unsampled requests still propagate their context (sampled ``0``).
* ids: 64-bit, 16 hex digits; a root span's trace id is its span id. Inbound (SERVER)
  spans share the caller's span id and parent, and are marked ``shared`` (roots too, as
  Envoy's); outbound (CLIENT) spans get a new id, child of the caller's span.
* upstream headers, in the format the request used: ``b3`` alone (the ``x-b3-*`` fields
  a request carried beside it go on untouched) or ``x-b3-traceid``, ``x-b3-spanid``,
  ``x-b3-parentspanid`` (when the span has a parent), ``x-b3-sampled``, each replacing
  the request's field of that name (others, e.g. ``x-b3-flags``, go on untouched).
  ``x-request-id`` is the HTTP session's (generated when absent).
* a span: named by the request's authority (Envoy 1.40's span name without a route
  decorator); ``localEndpoint.serviceName`` the bootstrap's ``node.cluster``; verbose
  annotations (the byte events, then ``ss`` or ``cr``) at the times the session knows
  (the request's head, and the end: a whole-message proxy has no finer ones); tags
  ``component``, ``node_id``, ``guid:x-request-id``, ``http.url``, ``http.method``,
  ``http.protocol``, ``downstream_cluster``, ``user_agent``, ``peer.address``,
  ``request_size``, ``response_size``, ``upstream_cluster``, ``upstream_cluster.name``,
  ``http.status_code``, ``response_flags`` and ``error`` (5xx or no response).

Not the hot path of an untraced HCM: the HTTP session calls in only when its HCM has
``tracing``. Per traced request this module runs compiled (mypyc, `setup.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Final

from osm.proxy import http1, model, stats

log = logging.getLogger(__name__)

FLUSH_INTERVAL: Final = 1.0
"""Seconds between reports while spans wait (Envoy's default is 5 s; we report sooner)."""
FLUSH_SPANS: Final = 100
"""A report goes out as soon as this many spans wait."""
MAX_BUFFERED: Final = 10_000
"""Spans beyond this wait nowhere: they are dropped (Envoy's span buffer is bounded)."""
REPORT_TIMEOUT: Final = 5.0
"""A report that has no answer after this long has failed."""
MAX_IN_FLIGHT: Final = 2
"""Reports on the wire at once; a flush beyond this leaves the spans for the next one."""

B3: Final = "b3"
TRACE_ID: Final = "x-b3-traceid"
SPAN_ID: Final = "x-b3-spanid"
PARENT_SPAN_ID: Final = "x-b3-parentspanid"
SAMPLED: Final = "x-b3-sampled"
FLAGS: Final = "x-b3-flags"
REQUEST_ID: Final = "x-request-id"
B3_HEADERS: Final = frozenset((B3, TRACE_ID, SPAN_ID, PARENT_SPAN_ID, SAMPLED, FLAGS))
_WRITTEN: Final = frozenset((TRACE_ID, SPAN_ID, SAMPLED))
_WRITTEN_WITH_PARENT: Final = frozenset((TRACE_ID, SPAN_ID, SAMPLED, PARENT_SPAN_ID))

Resolver = Callable[[str], "tuple[str, int] | None"]
"""A cluster's name -> the (host, port) a report goes to, or None: no such cluster."""


_HEX_DIGITS: Final = "0123456789abcdefABCDEF"


def _hex_id(value: str, sizes: tuple[int, ...] = (16,)) -> str | None:
    """A B3 id (hex digits, as many as one of `sizes`) in lower case, or None."""
    if len(value) not in sizes or value.strip(_HEX_DIGITS):
        return None
    return value.lower()


class Context:
    """What a request's B3 headers say: ids None when it carried none (a new trace
    starts), ``sampled`` None when it left the decision to this proxy, ``single`` when it
    used the single ``b3`` header."""

    __slots__ = ("parent_id", "sampled", "single", "span_id", "trace_id")

    def __init__(
        self,
        trace_id: str | None,
        span_id: str | None,
        parent_id: str | None,
        sampled: bool | None,
        single: bool,
    ):
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.single = single


_B3_FLAGS: Final[dict[str, bool]] = {"0": False, "1": True, "d": True}


def extract(headers: list[tuple[str, str]]) -> Context | None:
    """The B3 context of a request's headers (the module docstring's rules), or None
    when it does not parse: Envoy makes no span then."""
    single: str | None = None
    trace = span = parent = sampled = None
    for name, value in headers:
        if name == B3:
            single = value
        elif name == TRACE_ID:
            trace = value
        elif name == SPAN_ID:
            span = value
        elif name == PARENT_SPAN_ID:
            parent = value
        elif name == SAMPLED:
            sampled = value
    if single is not None:
        parts = single.split("-")
        if len(parts) == 1:
            flag = _B3_FLAGS.get(single)
            return None if flag is None else Context(None, None, None, flag, True)
        if len(parts) > 4:
            return None
        trace_id, span_id = _hex_id(parts[0], (16, 32)), _hex_id(parts[1])
        decision = _B3_FLAGS.get(parts[2]) if len(parts) > 2 else None
        parent_id = _hex_id(parts[3]) if len(parts) > 3 else None
        if (
            trace_id is None
            or span_id is None
            or (len(parts) > 2 and decision is None)
            or (len(parts) > 3 and parent_id is None)
        ):
            return None
        return Context(trace_id, span_id, parent_id, decision, True)
    decision = None if sampled is None else sampled in ("1", "true")
    if trace is None or span is None:
        return Context(None, None, None, decision, False)
    trace_id, span_id = _hex_id(trace, (16, 32)), _hex_id(span)
    parent_id = _hex_id(parent) if parent is not None else None
    if trace_id is None or span_id is None or (parent is not None and parent_id is None):
        return None
    return Context(trace_id, span_id, parent_id, decision, False)


_LOW_HEX: Final = tuple(f"{low:02x}" for low in range(256))
_ID_MASK: Final = (1 << 64) - 1
_HIGH_MASK: Final = (1 << 56) - 1


class SpanIds:
    """New span (and root trace) ids: 64 bits as 16 hex digits, never zero, unique within
    the process for 2^64 spans and, by a random start, across processes.

    A counter from a random start, not a random draw each: its text changes in the last two
    digits for 255 ids of 256, so an id is one concatenation of kept text and one of 256
    two-digit strings, where drawing 64 bits and formatting them cost ~5,000 instructions a
    request (bench/tracing.py --instructions). Ids are correlation tokens, not secrets
    (Envoy's come from a non-cryptographic generator too)."""

    __slots__ = ("head", "high", "low")

    def __init__(self, start: int):
        start &= _ID_MASK
        self.high = start >> 8  # 56 bits: a machine word for mypyc, where 64 would not be
        self.low = start & 0xFF
        self.head = f"{self.high:014x}"

    def next(self) -> str:
        low = self.low + 1
        if low == 256:
            low = 0
            self.high = high = (self.high + 1) & _HIGH_MASK
            self.head = f"{high:014x}"
            if high == 0:
                low = 1  # B3: an all-zero id means no id
        self.low = low
        return self.head + _LOW_HEX[low]


class Span:
    """One request's span on one HCM, from its head to its end.

    ``carried``: the request had B3 fields (`Tracer.inject` replaces those it writes);
    ``single``: one was the ``b3`` header (`Tracer.inject` writes that format)."""

    __slots__ = (
        "carried",
        "head",
        "parent_id",
        "request_id",
        "sampled",
        "scheme",
        "shared",
        "single",
        "span_id",
        "start_us",
        "started",
        "trace_id",
        "tracing",
    )

    def __init__(
        self,
        tracing: model.Tracing,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        sampled: bool,
        shared: bool,
        head: http1.RequestHead,
        scheme: str,
        carried: bool,
        single: bool,
    ):
        self.tracing = tracing
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.shared = shared
        self.carried = carried
        self.single = single
        self.head = head  # read at the end, and only if sampled
        self.scheme = scheme
        if sampled:
            self.start_us = int(time.time() * 1_000_000)
            self.started = time.monotonic()
        else:
            self.start_us = 0
            self.started = 0.0
        self.request_id = ""


class Tracer:
    """The sidecar's tracer: spans of every traced HCM, reported by one `Reporter`.

    ``node_id`` and ``service_name`` (the bootstrap's ``node.id`` and ``node.cluster``)
    are set by whoever knows them (`osm.proxy.main`). Owned by the proxy's event loop.

    Per request the cost is one pass over the request's headers (`start`) and four header
    fields appended (`inject`); a request without B3 fields whose dice say "not sampled"
    builds nothing else (no `Context`, no random draw for its id, no span record)."""

    def __init__(
        self,
        registry: stats.Stats,
        resolve: Resolver,
        *,
        randbits: Callable[[int], int] | None = None,
        sample: Callable[[], float] | None = None,
    ):
        generator = random.Random()
        self._ids = SpanIds((randbits or generator.getrandbits)(64))
        self._sample = sample or generator.random
        self.node_id = ""
        self.service_name = ""
        self.reporter = Reporter(registry, resolve)

    def _dice(self, percentage: float) -> bool:
        """Random sampling at ``percentage`` (no draw at 0 or 100)."""
        if percentage >= 100.0:
            return True
        if percentage <= 0.0:
            return False
        return self._sample() * 100.0 < percentage

    def start(self, tracing: model.Tracing, head: http1.RequestHead, scheme: str) -> Span | None:
        """The span of a request whose head just arrived on an HCM with ``tracing``, or
        None when its B3 context does not parse (no span: nothing to inject or report)."""
        headers = head.headers
        carried = False
        for name, _ in headers:
            if name in B3_HEADERS:
                carried = True
                break
        if not carried:  # the common case: a new root, the dice decide (`_dice`, inlined)
            root = self._ids.next()
            sampling = tracing.sampling
            decision = sampling >= 100.0 or (sampling > 0.0 and self._sample() * 100.0 < sampling)
            return Span(
                tracing, root, root, None, decision, tracing.server, head, scheme, False, False
            )
        context = extract(headers)
        if context is None:
            return None
        told = context.sampled
        decision = self._dice(tracing.sampling) if told is None else told
        single = context.single
        trace_id = context.trace_id
        if trace_id is None or context.span_id is None:
            root = self._ids.next()
            return Span(
                tracing, root, root, None, decision, tracing.server, head, scheme, True, single
            )
        if tracing.server:  # shared span context: the caller's client span's id
            return Span(
                tracing,
                trace_id,
                context.span_id,
                context.parent_id,
                decision,
                True,
                head,
                scheme,
                True,
                single,
            )
        return Span(
            tracing,
            trace_id,
            self._ids.next(),
            context.span_id,
            decision,
            False,
            head,
            scheme,
            True,
            single,
        )

    def inject(self, span: Span, headers: list[tuple[str, str]]) -> None:
        """Writes the span's context into the upstream request's ``headers`` (the format
        the request used, replacing its fields of the names written) and notes its
        request id.

        ``headers`` are the request's own (`http_rewrite.upstream_headers`: some dropped,
        none of them B3 added), so only a span whose request ``carried`` B3 fields can
        have any to replace."""
        if span.sampled:
            sampled = "1"
            for name, value in headers:
                if name == REQUEST_ID:
                    span.request_id = value
        else:
            sampled = "0"
        parent_id = span.parent_id
        if span.single:
            value = f"{span.trace_id}-{span.span_id}-{sampled}"
            if parent_id is not None:
                value = f"{value}-{parent_id}"
            kept = [field for field in headers if field[0] != B3]
            kept.append((B3, value))
            headers[:] = kept
            return
        if span.carried:
            written = _WRITTEN_WITH_PARENT if parent_id is not None else _WRITTEN
            kept = [field for field in headers if field[0] not in written]
            headers[:] = kept
        headers.append((TRACE_ID, span.trace_id))
        headers.append((SPAN_ID, span.span_id))
        if parent_id is not None:
            headers.append((PARENT_SPAN_ID, parent_id))
        headers.append((SAMPLED, sampled))

    def finish(
        self,
        span: Span,
        status: int,
        flag: str,
        cluster: str | None,
        peer: str,
        received: int,
        sent: int,
    ) -> None:
        """The request is done: a sampled span goes to the reporter."""
        if not span.sampled:
            return
        duration = max(1, int((time.monotonic() - span.started) * 1_000_000))
        start, end = span.start_us, span.start_us + duration
        head = span.head
        authority = head.authority or ""
        proto = head.header("x-forwarded-proto") or span.scheme
        request_id = span.request_id or head.header(REQUEST_ID) or ""
        tags = {
            "component": "proxy",
            "node_id": self.node_id,
            "http.url": f"{proto}://{authority}{head.target}",
            "http.method": head.method,
            "http.protocol": "HTTP/1.1",
            "downstream_cluster": head.header("x-envoy-downstream-service-cluster") or "-",
            "user_agent": head.header("user-agent") or "-",
            "peer.address": peer,
            "request_size": str(received),
            "response_size": str(sent),
            "http.status_code": str(status),
            "response_flags": flag,
        }
        if request_id:
            tags["guid:x-request-id"] = request_id
        if cluster:
            tags["upstream_cluster"] = cluster
            tags["upstream_cluster.name"] = cluster
        if status == 0 or status >= 500:
            tags["error"] = "true"
        record: dict[str, object] = {
            "traceId": span.trace_id,
            "id": span.span_id,
            "kind": "SERVER" if span.tracing.server else "CLIENT",
            "name": authority,
            "timestamp": span.start_us,
            "duration": duration,
            "localEndpoint": {"serviceName": self.service_name},
            "tags": tags,
            "annotations": [
                {"timestamp": start, "value": "last_downstream_rx_byte_received"},
                {"timestamp": start, "value": "first_upstream_tx_byte_sent"},
                {"timestamp": start, "value": "last_upstream_tx_byte_sent"},
                {"timestamp": end, "value": "first_upstream_rx_byte_received"},
                {"timestamp": end, "value": "last_upstream_rx_byte_received"},
                {"timestamp": end, "value": "first_downstream_tx_byte_sent"},
                {"timestamp": end, "value": "last_downstream_tx_byte_sent"},
                {"timestamp": end, "value": "ss" if span.tracing.server else "cr"},
            ],
        }
        if span.parent_id is not None:
            record["parentId"] = span.parent_id
        if span.shared:
            record["shared"] = True
        self.reporter.add(span.tracing, record)


class Reporter:
    """Buffers finished spans per collector (cluster, endpoint) and posts them in
    batches (see the module docstring). Never raises into its caller."""

    def __init__(self, registry: stats.Stats, resolve: Resolver):
        self._resolve = resolve
        self._buffers: dict[tuple[str, str], list[dict[str, object]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.reports_sent = registry.counter("tracing.zipkin.reports_sent")
        self.reports_dropped = registry.counter("tracing.zipkin.reports_dropped")
        self.reports_failed = registry.counter("tracing.zipkin.reports_failed")
        self.reports_skipped = registry.counter("tracing.zipkin.reports_skipped_no_cluster")
        self.spans_sent = registry.counter("tracing.zipkin.spans_sent")
        self.timer_flushed = registry.counter("tracing.zipkin.timer_flushed")

    def add(self, tracing: model.Tracing, record: dict[str, object]) -> None:
        key = (tracing.collector_cluster, tracing.collector_endpoint)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = []
        if len(buffer) >= MAX_BUFFERED:
            return  # full: the collector is slower than the traffic
        buffer.append(record)
        if len(buffer) >= FLUSH_SPANS:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.timer_flushed.value += 1
        self.flush()

    def flush(self) -> None:
        """Sends what waits, as far as reports in flight allow (the rest waits)."""
        for key, buffer in list(self._buffers.items()):
            if not buffer:
                continue
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                break
            self._buffers[key] = []
            target = self._resolve(key[0])
            if target is None:
                self.reports_skipped.value += 1
                continue
            self.spans_sent.value += len(buffer)
            body = json.dumps(buffer, separators=(",", ":")).encode()
            task = asyncio.get_running_loop().create_task(self._post(target, key[1], body))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if any(self._buffers.values()) and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._on_timer)

    async def _post(self, target: tuple[str, int], path: str, body: bytes) -> None:
        host, port = target
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(REPORT_TIMEOUT):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(
                    f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
                    "connection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                status_line = await reader.readline()
            parts = status_line.split(b" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if 200 <= status < 300:
                self.reports_sent.value += 1
            else:
                self.reports_dropped.value += 1
        except (OSError, TimeoutError, ValueError) as error:
            self.reports_failed.value += 1
            log.debug("tracing: report to %s:%d failed: %s", host, port, error)
        finally:
            if writer is not None:
                writer.close()

    async def close(self) -> None:
        """Sends what waits and lets the reports in flight finish (each has a timeout)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            self.flush()
