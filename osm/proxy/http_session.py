"""The HTTP session: one downstream HTTP/1.1 connection (Envoy's HTTP connection manager
and router filter).

The one idea: requests are parsed sans-IO from the connection's data callbacks and served in
order, either from those callbacks (the fast path: a whole small request, an idle pooled
upstream connection, a whole response) or by the session's one coroutine (the general
path: everything else, and whatever the fast path cannot finish), with the same observable
behaviour; see `HttpSession`. What each step decides lives beside it: routing and RBAC
(`router`, `rbac`), header and framing rules (`http_rewrite`), retries (`retry`), pools and
circuit breakers (`upstream`), the event queue and its back-pressure (`inbox`).

Why this module is over ~600 lines: `HttpSession` is ~790 of them, and it is one state
machine. Its two paths read and hand over the same per-connection state (the parked
coroutine, the request in flight, the hand-over between them, the one timer, the inbox),
and tests/integration/test_proxy_fast_path.py pins that they behave as one; cut in two, each
half would reach into the other's state at every step of every request. What has an idea of
its own has left it (the modules named above).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import TYPE_CHECKING, Final

from osm.proxy import (
    http1,
    http_rewrite,
    inbox,
    model,
    rbac,
    retry,
    router,
    tcp_relay,
    tracing,
    transport,
    upstream,
)
from osm.proxy.runtime import Runtime

if TYPE_CHECKING:
    from osm.proxy.listeners import ListenerRuntime

log = logging.getLogger(__name__)

RATE_LIMITED_BODY: Final = "local_rate_limited"  # Envoy's local rate limit reply
_BODY_BUFFER_LIMIT: Final = 64 * 1024  # bodies up to this are buffered, so retries can replay them
OVERLOADED: Final = (("x-envoy-overloaded", "true"),)
"""Envoy's router marks a local reply to a request a circuit breaker dropped (UO) so."""


class _Reply(Exception):
    """Answer the current request locally (Envoy's local reply) and maybe close."""

    def __init__(
        self,
        status: int,
        body: str,
        flag: str,
        close: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
    ):
        super().__init__(body)
        self.status = status
        self.body = body
        self.flag = flag
        self.close = close
        self.headers = headers


class _DownstreamGone(Exception):
    pass


class _Resume:
    """A request the fast path began and the general path finishes.

    Everything up to and including the first attempt's host choice is done: the request
    was counted, routed, authorised, its cluster chosen, `host` picked and counted against
    the circuit breakers. When `upstream_conn` is set, the request was written on it (a
    pooled connection) at `sent_at` and its response, if any, is queued there.

    A plain class with its own `__init__`: mypyc compiles it, where a dataclass's generated
    `__init__` stays interpreted (one per request on the fast path).
    """

    __slots__ = (
        "cluster",
        "deadline",
        "head",
        "headers",
        "host",
        "payload",
        "route",
        "sent_at",
        "started",
        "target",
        "try_deadline",
        "upstream_conn",
    )

    def __init__(
        self,
        head: http1.RequestHead,
        route: model.Route,
        cluster: upstream.ClusterRuntime,
        started: float,
        headers: list[tuple[str, str]],
        target: str,
        payload: bytes,
        deadline: float | None,
        host: upstream.Host,
    ):
        self.head = head
        self.route = route
        self.cluster = cluster
        self.started = started
        self.headers = headers
        self.target = target
        self.payload = payload
        self.deadline = deadline
        self.host = host
        self.upstream_conn: upstream.UpstreamHttp | None = None
        self.sent_at = 0.0
        self.try_deadline: float | None = None


def _failure(error: upstream.UpstreamError) -> str:
    """What an attempt that raised `error` ended in, as the retry policy names it."""
    if isinstance(error, upstream.ConnectFailure):
        return retry.CONNECT_FAILURE
    if isinstance(error, upstream.Overflow):
        return retry.OVERFLOW
    return retry.RESET  # UpstreamReset, and a broken response (a protocol error)


def _reset_text(reason: str) -> str:
    """The body of the local reply when a request could not be forwarded (Envoy's)."""
    return f"upstream connect error or disconnect/reset before headers. reset reason: {reason}"


class HttpSession:
    """One downstream HTTP/1.1 connection (the HTTP connection manager + router).

    Two paths serve a request, with the same observable behaviour (bytes on both sides,
    stats, access log, circuit breakers, outlier detection):

    * The general path: the `run` coroutine takes parsed events from a queue and awaits
      each step (body, connection pool, response, back-pressure). It does everything:
      streaming and chunked bodies, `Expect: 100-continue`, upgrades, retries, timeouts.
    * The fast path, from the `data_received` callback itself, with no task switch: taken
      when the session is idle (`run` parked with nothing queued) and one read brought one
      whole request without upgrade or `Expect`, body-less or with a Content-Length body.
      It routes, authorises and picks a host exactly as the general path does, and sends
      on an idle pooled connection; when the upstream's response then arrives whole in its
      callback (head, Content-Length / chunked body and end) and needs no retry, it answers
      downstream from that callback. At the first step that would wait (no idle
      connection, a response in pieces, an upstream error, 101, a retriable status, the
      timeout), it hands the request to `run` as a `_Resume`, and the general path carries
      on from exactly that step. While a fast request is in flight, further downstream
      events are queued for `run`, so responses stay in request order.
    """

    _HIGH_WATER: Final = 256 * 1024

    def __init__(
        self,
        runtime: Runtime,
        listener: ListenerRuntime,
        manager: model.HttpConnectionManager,
        connection: transport.Connection,
        peer: rbac.Peer,
        destination: tuple[str, int],
    ):
        self.runtime = runtime
        self.listener = listener
        self.generation = listener.generation
        self.manager = manager
        self.connection = connection
        self.peer = peer
        self.destination = destination
        remote = connection.extra("peername")
        self.remote = str(remote[0]) if remote else ""
        self.remote_label = f"{remote[0]}:{remote[1]}" if remote else ""
        self.stats = runtime.http_stats_for(manager.stat_prefix)
        self.parser = http1.RequestParser(manager.max_request_headers_bytes)
        self._loop = asyncio.get_running_loop()
        self._inbox = inbox.EventInbox(connection, self._HIGH_WATER)
        self._waiter: asyncio.Future[None] | None = None
        self._error: http1.ProtocolError | None = None
        self._eof = False
        self._lost = False
        self._request_ended = True  # the current request's end was taken from the queue
        self.scheme = "https" if connection.is_tls else "http"
        self._log_enabled = runtime.access_log.enabled
        # fast path state
        self._fast = runtime.options.http_fast_path
        self._parked = False  # `run` waits for the next request
        self._exchange: _Resume | None = None  # a fast request in flight
        self._handoff: _Resume | None = None  # a fast request for `run` to finish
        self._finished = False  # a fast request closed the session
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # tracing (`osm.proxy.tracing`): None unless this HCM traces
        self._tracer = runtime.tracer if manager.tracing is not None else None
        self._span: tracing.Span | None = None  # the span of the request in flight

    # -- consumer callbacks ---------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.parser.upgraded:
            self.parser.trailing += data
            return
        if self._error is not None:
            return
        try:
            events = self.parser.feed(data)
        except http1.ProtocolError as error:
            self._error = error
            self.connection.pause_reading()
            self._wake()
            return
        if events:
            if (
                self._parked
                and self._exchange is None
                and self._handoff is None
                and not self._inbox.events
                and not self._finished
                and self._fast
                and self._serve_fast(events)
            ):
                return
            self._inbox.push(events)
            self._wake()

    def eof_received(self) -> None:
        self._eof = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake()

    def _wake(self) -> None:
        if self._exchange is not None:
            return  # the fast request wakes `run` when it is done
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> http1.Event | None:
        """The next request event; None when the downstream finished (EOF) or is gone.
        Raises ProtocolError for a malformed request (queued events come first)."""
        while not self._inbox.events:
            if self._error is not None:
                raise self._error
            if self._eof or self._lost:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = self._inbox.pop()
        if event is http1.END:
            self._request_ended = True
        return event

    async def _next_request(self) -> http1.Event | _Resume | None:
        """What `run` serves next: a queued event, a fast request handed over, or None when
        the session is over. While parked here the fast path may serve requests."""
        while True:
            if self._exchange is None:
                handoff = self._handoff
                if handoff is not None:
                    self._handoff = None
                    return handoff
                if self._finished:
                    return None
                if self._inbox.events or self._error is not None or self._eof or self._lost:
                    return await self._next()
            self._waiter = self._loop.create_future()
            self._parked = True
            try:
                await self._waiter
            finally:
                self._parked = False
                self._waiter = None

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        self.stats.downstream_cx_total.value += 1
        self.stats.downstream_cx_active.value += 1
        tunnel = False
        try:
            while not self._lost or self._exchange is not None or self._handoff is not None:
                try:
                    event = await self._next_request()
                except http1.ProtocolError as error:
                    self.stats.downstream_cx_protocol_error.value += 1
                    self._local_reply(error.status, error.message, "DPE", keep_alive=False)
                    self.connection.write_eof()
                    break
                if event is None:
                    break
                if type(event) is _Resume:
                    keep_alive, tunnel = await self._handle(event.head, event)
                elif event is http1.END:
                    continue  # the end of a body-less request
                elif not isinstance(event, http1.RequestHead):  # a body nobody consumed
                    break
                else:
                    keep_alive, tunnel = await self._handle(event)
                if tunnel or not keep_alive:
                    break
        except _DownstreamGone:
            pass
        except Exception:  # a bug must not take the proxy down: log it, drop this connection
            log.exception("HTTP session failed")
        finally:
            self._fast = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.stats.downstream_cx_active.value -= 1
            if not tunnel:
                self.connection.close()

    def _local_reply(
        self,
        status: int,
        body: str,
        flag: str,
        keep_alive: bool,
        head: http1.RequestHead | None = None,
        started: float = 0.0,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.stats.response(status)
        extra = list(headers) if headers else None
        self.connection.write(http1.local_reply(status, body, keep_alive, extra))
        if head is not None:
            self._log(head, status, flag, started, 0, len(body), None, None, "")

    async def _drain_request_body(self, head: http1.RequestHead) -> bool:
        """Discard the rest of the current request body if it has already arrived.
        -> True when the connection can carry another request."""
        if head.framing == "none" or self._request_ended:
            return True
        while self._inbox.events:
            event = await self._next()
            if event is http1.END:
                return True
        return False

    def _start_request(self, head: http1.RequestHead) -> float:
        """Count a new request; -> its start time for the access log (0 when disabled)."""
        self.stats.downstream_rq_total.value += 1
        self.stats.downstream_rq_http1_total.value += 1
        if self._tracer is not None and self.manager.tracing is not None:
            self._span = self._tracer.start(self.manager.tracing, head, self.scheme)
        return time.time() if self._log_enabled else 0.0

    def _route(self, head: http1.RequestHead) -> tuple[model.Route, upstream.ClusterRuntime]:
        """Route, authorise (HTTP RBAC) and choose the cluster; raises _Reply."""
        runtime = self.runtime
        manager = self.manager
        authority = head.authority
        table = runtime.route_table(manager)
        route = table.route(head, authority) if table is not None else None
        if route is None:
            self.stats.no_route.value += 1
            raise _Reply(404, "", "NR")
        rules = rbac.http_rules(manager.rbac, route)
        if rules is not None:
            if rbac.evaluate(rules, self.peer, self.destination[1], head, authority):
                self.stats.rbac_allowed.value += 1
            else:
                self.stats.rbac_denied.value += 1
                raise _Reply(403, rbac.DENIED_BODY, "RBAC")
        limit = route.rate_limit
        if limit is not None and manager.local_rate_limit and not runtime.admits(limit):
            raise _Reply(limit.status, RATE_LIMITED_BODY, "RL", headers=limit.response_headers)
        action = route.action
        cluster_name = router.choose(action.targets, action.total_weight, runtime.options.randrange)
        cluster = runtime.clusters.get(cluster_name)
        if cluster is None:
            raise _Reply(503, "", "NC")
        return route, cluster

    async def _handle(
        self, head: http1.RequestHead, resume: _Resume | None = None
    ) -> tuple[bool, bool]:
        """Serve one request (or finish a fast one). -> (keep the connection alive, became
        a tunnel)."""
        if resume is None:
            started = self._start_request(head)
            self._request_ended = head.framing == "none"
        else:
            started = resume.started
            self._request_ended = True  # the fast path took the whole request
        try:
            if resume is not None:
                return await self._forward(head, resume.route, resume.cluster, started, resume)
            if head.upgrade is not None and (
                not self.manager.websocket or head.upgrade.lower() != "websocket"
            ):
                raise _Reply(403, "", "UPE", close=True)
            route, cluster = self._route(head)
            return await self._forward(head, route, cluster, started)
        except _Reply as reply:
            keep = (
                head.keep_alive
                and not reply.close
                and head.upgrade is None
                and await self._drain_request_body(head)
                and not self._draining()
            )
            self._local_reply(
                reply.status, reply.body, reply.flag, keep, head, started, reply.headers
            )
            return keep, False

    def _draining(self) -> bool:
        return self.listener.draining or self.listener.generation != self.generation

    async def _read_body(self, head: http1.RequestHead) -> tuple[list[bytes], bool]:
        """Buffer the body up to the replay limit. -> (chunks, complete)."""
        if head.framing == "none":
            return [], True
        chunks: list[bytes] = []
        size = 0
        while size <= _BODY_BUFFER_LIMIT:
            event = await self._next()
            if event is None:
                raise _DownstreamGone()
            if event is http1.END:
                return chunks, True
            assert isinstance(event, http1.Data)
            chunks.append(event.data)
            size += len(event.data)
        return chunks, False

    # -- the fast path (callbacks only) -------------------------------------------------
    def _serve_fast(self, events: list[http1.Event]) -> bool:
        """Serve a whole request that arrived in one read while the session was idle,
        from this callback. -> False (nothing done) when it is not the common case."""
        head = events[0]
        if (
            not isinstance(head, http1.RequestHead)
            or events[-1] is not http1.END
            or head.upgrade is not None
            or head.expect_continue
        ):
            return False
        if head.framing == "none":
            if len(events) != 2:
                return False
            body = b""
        elif head.framing == "length":
            parts: list[bytes] = []
            for event in events[1:-1]:
                if not isinstance(event, http1.Data):
                    return False
                parts.append(event.data)
            body = b"".join(parts)
        else:
            return False  # chunked: the general path re-frames it
        started = self._start_request(head)
        try:
            route, cluster = self._route(head)
            headers = http_rewrite.upstream_headers(
                head, False, self.scheme, self.remote, self.manager
            )
            if self._span is not None and self._tracer is not None:
                self._tracer.inject(self._span, headers)
            target = http_rewrite.upstream_target(head, route)
            payload = http1.request_head(head.method, target, headers) + body
            action = route.action
            clock = self.runtime.options.clock
            now = clock()
            deadline = now + action.timeout if action.timeout else None
            host = cluster.pick(self.destination)
            if host is None:
                raise _Reply(503, "no healthy upstream", "UH")
            try:
                cluster.start_request()
            except upstream.Overflow as overflow:
                raise _Reply(503, _reset_text(overflow.reason), "UO", False, OVERLOADED) from None
        except _Reply as reply:
            keep = head.keep_alive and not reply.close and not self._draining()
            self._local_reply(
                reply.status, reply.body, reply.flag, keep, head, started, reply.headers
            )
            if not keep:
                self._finish()
            return True
        host.active_requests += 1
        resume = _Resume(head, route, cluster, started, headers, target, payload, deadline, host)
        upstream_conn = cluster.take_idle(host)
        if upstream_conn is None:
            self._hand_off(resume)  # connecting (or waiting for a slot) needs the coroutine
            return True
        upstream_conn.requests += 1
        upstream_conn.parser.expect(head.method)
        upstream_conn.connection.write(payload)
        resume.upstream_conn = upstream_conn
        resume.sent_at = now
        resume.try_deadline = retry.try_deadline(deadline, action.retry, now)
        self._exchange = resume
        upstream_conn.notify = self._upstream_ready
        if resume.try_deadline is not None:
            self._arm_timer(resume.try_deadline)
        if not upstream_conn.waiting:
            self._upstream_ready()
        return True

    def _upstream_ready(self) -> None:
        """The fast request's upstream connection has news: answer if the whole response
        is there and needs nothing else, else hand the request to the general path."""
        resume = self._exchange
        assert resume is not None and resume.upstream_conn is not None
        upstream_conn = resume.upstream_conn
        events = upstream_conn.pending_events
        if not events:
            if upstream_conn.waiting:
                return  # the response head is still incomplete
            self._hand_off(resume)  # an error or a reset: the general path decides
            return
        response = events[0]
        if not isinstance(response, http1.ResponseHead) or events[-1] is not http1.END:
            self._hand_off(resume)  # streaming (or a broken response): the general path
            return
        if response.status == 101 or retry.after_response(
            resume.route.action.retry, 1, response.status
        ):
            self._hand_off(resume)  # an upgrade, or the first try of a retried request
            return
        chunks: list[bytes] = []
        for index in range(1, len(events) - 1):
            event = events[index]
            if not isinstance(event, http1.Data):
                self._hand_off(resume)  # more than one response: the general path decides
                return
            chunks.append(event.data)
        self._exchange = None
        upstream_conn.notify = None
        upstream_conn.take_events()
        head, cluster, host = resume.head, resume.cluster, resume.host
        cluster.stats.response(response.status)
        cluster.stats.upstream_rq_time.record(
            (self.runtime.options.clock() - resume.sent_at) * 1000.0
        )
        cluster.record(host, response.status >= 500)
        start, keep_alive, chunk_down = self._response_start(head, response, False)
        out = [start]
        sent = 0
        for data in chunks:
            sent += len(data)
            out.append(http1.chunk(data) if chunk_down else data)
        if chunk_down:
            out.append(http1.LAST_CHUNK)
        self.connection.write(b"".join(out))
        cluster.release_http(upstream_conn, response.keep_alive)
        span = self._span  # an unsampled span has nothing to finish: `start` replaces it
        if self._log_enabled or (span is not None and span.sampled):
            self._log(
                head,
                response.status,
                "-",
                resume.started,
                0,
                sent,
                host.label,
                cluster.cluster.name,
                "",
            )
        host.active_requests -= 1
        cluster.end_request()
        if not keep_alive:
            self._finish()
        elif self._inbox.events or self._error is not None or self._eof or self._lost:
            self._wake()

    def _finish(self) -> None:
        """A fast request ends the session: `run` closes the connection."""
        self._finished = True
        self._wake()

    def _hand_off(self, resume: _Resume) -> None:
        self._exchange = None
        if resume.upstream_conn is not None:
            resume.upstream_conn.notify = None
        self._handoff = resume
        self._wake()

    def _arm_timer(self, deadline: float) -> None:
        """One timer per session: re-armed only when a deadline comes sooner than the one
        it is set for (a route's timeout is seconds; a request takes a millisecond)."""
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        delay = deadline - self.runtime.options.clock()
        self._timer = self._loop.call_later(max(delay, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        resume = self._exchange
        if resume is None or resume.try_deadline is None:
            return
        if resume.try_deadline - self.runtime.options.clock() > 0:
            self._arm_timer(resume.try_deadline)
        else:
            self._hand_off(resume)  # the general path finds the deadline passed: 504 or retry

    # -- the general path ---------------------------------------------------------------
    async def _forward(
        self,
        head: http1.RequestHead,
        route: model.Route,
        cluster: upstream.ClusterRuntime,
        started: float,
        resume: _Resume | None = None,
    ) -> tuple[bool, bool]:
        tunnel = head.upgrade is not None
        action = route.action
        options = self.runtime.options
        clock = options.clock
        if resume is None:
            headers = http_rewrite.upstream_headers(
                head, tunnel, self.scheme, self.remote, self.manager
            )
            if self._span is not None and self._tracer is not None:
                self._tracer.inject(self._span, headers)
            target = http_rewrite.upstream_target(head, route)
            if head.expect_continue:
                self.connection.write(http1.CONTINUE)
            chunks, complete = await self._read_body(head)
            body = b"".join(chunks)
            if complete:
                if head.framing == "chunked":
                    headers = [(n, v) for n, v in headers if n != "content-length"]
                    headers.append(("content-length", str(len(body))))
                payload: bytes | None = http1.request_head(head.method, target, headers) + body
            else:
                payload = None
                if head.framing == "chunked":
                    headers.append(("transfer-encoding", "chunked"))
            deadline = clock() + action.timeout if action.timeout else None
            request_done = clock()  # upstream_rq_time counts from here, as Envoy's
        else:
            headers, target, payload = resume.headers, resume.target, resume.payload
            chunks, complete = [], True
            deadline = resume.deadline
            # Sent by the fast path, or (0.0) handed over before it could be sent: the
            # request ended just now, when the fast path took all of it.
            request_done = resume.sent_at or clock()
        policy = action.retry if complete else None  # a body not buffered cannot be replayed
        attempt = 0
        in_retry = False
        upstream_conn: upstream.UpstreamHttp | None = None
        try:
            while True:
                attempt += 1
                if resume is not None and attempt == 1:
                    host = resume.host  # picked and counted by the fast path
                else:
                    picked = cluster.pick(self.destination)
                    if picked is None:
                        raise _Reply(503, "no healthy upstream", "UH")
                    host = picked
                    try:
                        cluster.start_request()
                    except upstream.Overflow as overflow:
                        raise _Reply(
                            503, _reset_text(overflow.reason), "UO", False, OVERLOADED
                        ) from None
                    host.active_requests += 1
                try:
                    try:
                        upstream_conn, response = await self._attempt(
                            cluster,
                            host,
                            head,
                            target,
                            headers,
                            payload,
                            chunks,
                            deadline,
                            policy,
                            resume if attempt == 1 else None,
                        )
                    except upstream.UpstreamError as error:
                        cluster.record(host, True)
                        if isinstance(error, upstream.UpstreamReset):
                            cluster.stats.upstream_rq_rx_reset.value += 1
                            cluster.stats.upstream_cx_destroy_remote_with_active_rq.value += 1
                        failure = _failure(error)
                        if not retry.after_failure(policy, attempt, failure, clock(), deadline):
                            dropped = OVERLOADED if failure == retry.OVERFLOW else ()
                            raise _Reply(
                                503, _reset_text(error.reason), error.flag, False, dropped
                            ) from None
                    except TimeoutError:
                        cluster.stats.upstream_rq_timeout.value += 1
                        cluster.stats.upstream_cx_destroy_local_with_active_rq.value += 1
                        cluster.record(host, True)
                        if not retry.after_failure(
                            policy, attempt, retry.TIMEOUT, clock(), deadline
                        ):
                            raise _Reply(504, "upstream request timeout", "UT") from None
                    else:
                        cluster.stats.response(response.status)
                        cluster.stats.upstream_rq_time.record((clock() - request_done) * 1000.0)
                        cluster.record(host, response.status >= 500)
                        if retry.after_response(policy, attempt, response.status):
                            await self._discard_response(cluster, upstream_conn)
                            upstream_conn = None
                        else:
                            return await self._respond(
                                head, response, upstream_conn, cluster, started, tunnel
                            )
                finally:
                    host.active_requests -= 1
                    cluster.end_request()
                # retry, if the cluster's retry budget (a circuit breaker) allows one more
                if in_retry:
                    cluster.end_retry()
                    in_retry = False
                if not cluster.try_retry():
                    raise _Reply(503, _reset_text("overflow"), "URX")
                in_retry = True
                draw = options.randrange(1000)
                base = options.retry_base_interval
                if policy is not None and policy.base_interval is not None:
                    base = policy.base_interval
                await options.sleep(retry.backoff(attempt, base, draw))
        finally:
            if in_retry:
                cluster.end_retry()

    async def _attempt(
        self,
        cluster: upstream.ClusterRuntime,
        host: upstream.Host,
        head: http1.RequestHead,
        target: str,
        headers: list[tuple[str, str]],
        payload: bytes | None,
        chunks: list[bytes],
        deadline: float | None,
        policy: model.RetryPolicy | None,
        resume: _Resume | None = None,
    ) -> tuple[upstream.UpstreamHttp, http1.ResponseHead]:
        """Send the request on a pooled connection; -> the response head. With a `resume`
        that has a connection, the request was already sent on it: await its response.
        Raises UpstreamError or TimeoutError; the connection is released on failure."""
        clock = self.runtime.options.clock
        for fresh_retry in (False, True):
            if resume is not None and resume.upstream_conn is not None and not fresh_retry:
                upstream_conn = resume.upstream_conn
                reused = True  # the fast path only sends on pooled connections
                sent_at = resume.sent_at
            else:
                upstream_conn = await cluster.acquire_http(host)
                reused = upstream_conn.requests > 0
                upstream_conn.requests += 1
                upstream_conn.parser.expect(head.method)
                sent_at = -1.0
            connection = upstream_conn.connection
            try:
                if sent_at < 0:
                    if payload is not None:
                        connection.write(payload)
                    else:
                        await self._stream_body(head, target, headers, chunks, connection)
                    sent_at = clock()
                try_deadline = retry.try_deadline(deadline, policy, sent_at)
                timeout = try_deadline - clock() if try_deadline is not None else None
                if timeout is not None and timeout <= 0:
                    raise TimeoutError()
                event = await upstream_conn.next_event(timeout)
            except upstream.UpstreamReset:
                cluster.release_http(upstream_conn, False)
                if (
                    reused
                    and not upstream_conn.got_bytes
                    and payload is not None
                    and not fresh_retry
                ):
                    continue  # a pooled connection the server had closed: try a fresh one
                raise
            except http1.ProtocolError as error:
                cluster.release_http(upstream_conn, False)
                raise upstream.UpstreamReset(f"protocol error: {error.message}") from None
            except BaseException:
                cluster.release_http(upstream_conn, False)
                raise
            assert isinstance(event, http1.ResponseHead)
            return upstream_conn, event
        raise upstream.UpstreamReset()  # unreachable: the loop returns or raises

    async def _stream_body(
        self,
        head: http1.RequestHead,
        target: str,
        headers: list[tuple[str, str]],
        chunks: list[bytes],
        connection: transport.Connection,
    ) -> None:
        chunked = head.framing == "chunked"
        first = [http1.request_head(head.method, target, headers)]
        first.extend(http1.chunk(data) for data in chunks) if chunked else first.extend(chunks)
        connection.write(b"".join(first))
        while True:
            event = await self._next()
            if event is None:
                raise _DownstreamGone()
            if event is http1.END:
                if chunked:
                    connection.write(http1.LAST_CHUNK)
                return
            assert isinstance(event, http1.Data)
            connection.write(http1.chunk(event.data) if chunked else event.data)
            if connection.write_paused:
                await connection.drain()
            if connection.closed:
                raise upstream.UpstreamReset()

    async def _discard_response(
        self, cluster: upstream.ClusterRuntime, upstream_conn: upstream.UpstreamHttp
    ) -> None:
        try:
            while True:
                event = await upstream_conn.next_event(1.0)
                if event is http1.END:
                    cluster.release_http(upstream_conn, True)
                    return
        except (upstream.UpstreamError, http1.ProtocolError, TimeoutError):
            cluster.release_http(upstream_conn, False)

    def _response_start(
        self, head: http1.RequestHead, response: http1.ResponseHead, tunnel: bool
    ) -> tuple[bytes, bool, bool]:
        """Count the response and serialise its head for downstream; -> (head bytes, keep
        the connection alive, re-frame the body as chunked). Both paths use this."""
        keep_alive = head.keep_alive and not tunnel and not self._draining()
        self.stats.response(response.status)
        return http_rewrite.response_start(head, response, keep_alive)

    async def _respond(
        self,
        head: http1.RequestHead,
        response: http1.ResponseHead,
        upstream_conn: upstream.UpstreamHttp,
        cluster: upstream.ClusterRuntime,
        started: float,
        tunnel: bool,
    ) -> tuple[bool, bool]:
        """Stream the response downstream; -> (keep alive, tunnel)."""
        if tunnel and response.status == 101:
            return await self._tunnel(head, response, upstream_conn, cluster, started)
        downstream = self.connection
        start, keep_alive, chunk_down = self._response_start(head, response, tunnel)
        out = [start]
        sent = 0
        complete = False
        try:
            while True:
                event = await upstream_conn.next_event()
                if event is http1.END:
                    if chunk_down:
                        out.append(http1.LAST_CHUNK)
                    complete = True
                    break
                assert isinstance(event, http1.Data)
                sent += len(event.data)
                out.append(http1.chunk(event.data) if chunk_down else event.data)
                if not upstream_conn.pending_events:  # nothing more ready: flush what we have
                    downstream.write(b"".join(out))
                    out = []
                    if downstream.write_paused:
                        await downstream.drain()
                    if downstream.closed:
                        raise _DownstreamGone()
        except (upstream.UpstreamError, http1.ProtocolError):
            keep_alive = False  # the response is truncated: close so the client notices
        finally:
            if out:
                downstream.write(b"".join(out))
            cluster.release_http(upstream_conn, complete and response.keep_alive)
            self._log(
                head,
                response.status,
                "-" if complete else "UPE",
                started,
                0,
                sent,
                upstream_conn.host.label,
                cluster.cluster.name,
                "",
            )
        if keep_alive and head.framing != "none":
            keep_alive = await self._drain_request_body(head)
        if not complete:
            downstream.abort()
            return False, False
        return keep_alive, False

    async def _tunnel(
        self,
        head: http1.RequestHead,
        response: http1.ResponseHead,
        upstream_conn: upstream.UpstreamHttp,
        cluster: upstream.ClusterRuntime,
        started: float,
    ) -> tuple[bool, bool]:
        headers = http1.strip_hop_by_hop(response.headers, keep_upgrade=True)
        self.stats.response(101)
        self.connection.write(http1.response_head(101, headers, response.reason, "1.1"))
        release = cluster.adopt_tunnel(upstream_conn)
        relay = tcp_relay.TcpRelay(
            self.connection, upstream_conn.connection, None, self.runtime.options.clock
        )
        self._log(head, 101, "-", started, 0, 0, upstream_conn.host.label, cluster.cluster.name, "")
        down_initial = self.parser.trailing
        up_initial = upstream_conn.parser.trailing
        relay.start(down_initial, up_initial, self._eof)
        self.listener.track(relay.finished)
        relay.finished.add_done_callback(lambda _: release())
        return False, True

    def _log(
        self,
        head: http1.RequestHead,
        status: int,
        flag: str,
        started: float,
        received: int,
        sent: int,
        upstream_host: str | None,
        cluster: str | None,
        route: str,
    ) -> None:
        """Ends the request: its access log line, and its span if it is traced."""
        span = self._span
        if span is not None and self._tracer is not None:
            self._span = None
            self._tracer.finish(span, status, flag, cluster, self.remote, received, sent)
        access_log = self.runtime.access_log
        if not access_log.enabled:
            return
        access_log.write(
            {
                "start_time": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
                "method": head.method,
                "path": head.target,
                "protocol": f"HTTP/{head.version}",
                "response_code": status,
                "response_flags": flag,
                "bytes_received": received,
                "bytes_sent": sent,
                "duration": int((time.time() - started) * 1000),
                "upstream_host": upstream_host,
                "upstream_cluster": cluster,
                "x_request_id": head.header("x-request-id"),
                "authority": head.authority,
                "user_agent": head.header("user-agent"),
                "downstream_remote_address": self.remote_label,
            }
        )
