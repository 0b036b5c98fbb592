"""Retries: whether, and after how long, a request is tried again (Envoy's router retries).

The one idea: the decision is a pure function of the route's `model.RetryPolicy`, the
number of the attempt that just ended, what came of it (a response status, or a failure
named below) and, for a timeout, the time now and the route's deadline. The backoff takes
its random draw as an argument, so nothing here reads a clock, sleeps or does I/O: the HTTP
session sends, waits and asks here in between. What is not here is the cluster's retry
budget (Envoy's `max_retries` circuit breaker, `upstream.ClusterRuntime.try_retry`): it is
state shared by every request to the cluster, checked after this says yes.

Envoy's semantics, as far as the sidecar implements them (`retry_on` conditions):

==========================  =======================================================
condition                   an attempt is retried when it ended in
==========================  =======================================================
``5xx``                     a 5xx response, a connect failure, a reset, a timeout
``gateway-error``           a 502, 503 or 504 response, a connect failure, a reset,
                            a timeout
``connect-failure``         a connect failure
``reset``                   a reset (the upstream closed or broke the response)
``retriable-status-codes``  a response whose status is in `retriable_status_codes`
==========================  =======================================================

and always: at most `num_retries` retries (attempt n may be retried while n <=
num_retries); never once the route's deadline has passed, never a 101 (an upgrade), never
an overflow (a circuit breaker refused the request: retrying would add load). The wait
before retry n is fully jittered exponential backoff: uniform in [0, (2^n - 1) x base),
capped at 10 x base (Envoy's default max interval), in 1/1000 steps of that ceiling.
"""

from __future__ import annotations

from typing import Final

from osm.proxy import model

# What an attempt that got no response ended in (the session names its exceptions so).
CONNECT_FAILURE: Final = "connect-failure"  # no connection (or no TLS) to the host
RESET: Final = "reset"  # the connection closed or broke before the response head
OVERFLOW: Final = "overflow"  # a circuit breaker refused the request
TIMEOUT: Final = "timeout"  # no response head by the attempt's deadline

_GATEWAY_ERRORS: Final = (502, 503, 504)
_MAX_BACKOFF_DOUBLINGS: Final = 4  # 2^4 - 1 = 15 base intervals: above the cap already
_MAX_BACKOFF_INTERVALS: Final = 10  # Envoy's default max interval: 10 x the base


def _retries_left(policy: model.RetryPolicy, attempt: int) -> bool:
    """Attempt number `attempt` (1 for the first try) may be followed by another."""
    return attempt <= policy.num_retries


def retriable_status(policy: model.RetryPolicy | None, status: int) -> bool:
    """Whether `retry_on` asks to retry a response with `status` (retries left aside)."""
    if policy is None:
        return False
    on = policy.retry_on
    if status >= 500 and "5xx" in on:
        return True
    if status in _GATEWAY_ERRORS and "gateway-error" in on:
        return True
    return "retriable-status-codes" in on and status in policy.retriable_status_codes


def retriable_failure(policy: model.RetryPolicy | None, failure: str) -> bool:
    """Whether `retry_on` asks to retry an attempt that ended in `failure` (one of the
    constants above; retries left and deadlines aside)."""
    if policy is None:
        return False
    on = policy.retry_on
    if failure == CONNECT_FAILURE:
        return "connect-failure" in on or "5xx" in on or "gateway-error" in on
    if failure == RESET:
        return "reset" in on or "5xx" in on or "gateway-error" in on
    if failure == TIMEOUT:
        return "5xx" in on or "gateway-error" in on
    return False  # OVERFLOW


def after_response(policy: model.RetryPolicy | None, attempt: int, status: int) -> bool:
    """Retry after attempt number `attempt` got a response head with `status`?"""
    return (
        policy is not None
        and _retries_left(policy, attempt)
        and status != 101
        and retriable_status(policy, status)
    )


def after_failure(
    policy: model.RetryPolicy | None,
    attempt: int,
    failure: str,
    now: float,
    deadline: float | None,
) -> bool:
    """Retry after attempt number `attempt` ended in `failure` at time `now`, when the
    route's deadline (None: no timeout) is `deadline`?"""
    if policy is None or not _retries_left(policy, attempt):
        return False
    if failure == TIMEOUT and deadline is not None and now >= deadline:
        return False  # the route's timeout, not the attempt's: the request is over
    return retriable_failure(policy, failure)


def backoff(attempt: int, base_interval: float, draw: int) -> float:
    """Seconds to wait before retrying attempt number `attempt`, given a uniform random
    `draw` in [0, 1000)."""
    ceiling = ((1 << min(attempt, _MAX_BACKOFF_DOUBLINGS)) - 1) * base_interval
    ceiling = min(ceiling, _MAX_BACKOFF_INTERVALS * base_interval)
    return draw / 1000 * ceiling


def try_deadline(
    deadline: float | None, policy: model.RetryPolicy | None, sent_at: float
) -> float | None:
    """When one attempt sent at `sent_at` times out: the route's deadline or, sooner, the
    policy's per-try timeout."""
    if policy is not None and policy.per_try_timeout:
        per_try = sent_at + policy.per_try_timeout
        return per_try if deadline is None else min(deadline, per_try)
    return deadline
