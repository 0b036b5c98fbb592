"""The router's retries (osm.proxy.retry), table by table, as Envoy's retry policy reads.

Each table is one rule of Envoy's `RetryPolicy` (config.route.v3): which outcomes each
`retry_on` condition retries, how `num_retries` bounds the attempts, that the route's timeout
ends a request however many retries are left, the fully jittered exponential backoff, and
`per_try_timeout`. The module is pure, so each row is a call and its answer.
"""

from __future__ import annotations

import pytest

from osm.proxy import model, retry


def policy(
    retry_on: str,
    num_retries: int = 1,
    per_try_timeout: float | None = None,
    codes: tuple[int, ...] = (),
) -> model.RetryPolicy:
    conditions = frozenset(c for c in retry_on.split(",") if c)
    return model.RetryPolicy(conditions, num_retries, per_try_timeout, frozenset(codes))


# -- which responses each condition retries ---------------------------------------------------
@pytest.mark.parametrize(
    ("retry_on", "codes", "status", "retried"),
    [
        # 5xx: any 5xx response
        ("5xx", (), 500, True),
        ("5xx", (), 503, True),
        ("5xx", (), 599, True),
        ("5xx", (), 499, False),
        ("5xx", (), 200, False),
        # gateway-error: 502, 503 and 504 only
        ("gateway-error", (), 502, True),
        ("gateway-error", (), 503, True),
        ("gateway-error", (), 504, True),
        ("gateway-error", (), 500, False),
        ("gateway-error", (), 501, False),
        # retriable-status-codes: the listed statuses, any class
        ("retriable-status-codes", (409, 503), 409, True),
        ("retriable-status-codes", (409, 503), 503, True),
        ("retriable-status-codes", (409,), 410, False),
        ("retriable-status-codes", (), 503, False),
        ("5xx", (409,), 409, False),  # the codes count only with their condition
        ("5xx,retriable-status-codes", (409,), 409, True),
        ("5xx,retriable-status-codes", (409,), 502, True),
        # conditions about failures never retry a response
        ("reset", (), 503, False),
        ("connect-failure", (), 503, False),
        ("connect-failure,reset", (), 502, False),
        ("", (), 503, False),
        # a 101 starts a tunnel: never retried, even when listed
        ("retriable-status-codes", (101,), 101, False),
    ],
)
def test_responses_retried_by_condition(
    retry_on: str, codes: tuple[int, ...], status: int, retried: bool
) -> None:
    assert retry.after_response(policy(retry_on, codes=codes), 1, status) is retried


# -- which failures each condition retries ----------------------------------------------------
@pytest.mark.parametrize(
    ("retry_on", "failure", "retried"),
    [
        # 5xx and gateway-error: no response at all counts as a gateway error
        ("5xx", retry.CONNECT_FAILURE, True),
        ("5xx", retry.RESET, True),
        ("5xx", retry.TIMEOUT, True),
        ("gateway-error", retry.CONNECT_FAILURE, True),
        ("gateway-error", retry.RESET, True),
        ("gateway-error", retry.TIMEOUT, True),
        # connect-failure: only a failed connect
        ("connect-failure", retry.CONNECT_FAILURE, True),
        ("connect-failure", retry.RESET, False),
        ("connect-failure", retry.TIMEOUT, False),
        # reset: a connection that broke or closed before the response head
        ("reset", retry.RESET, True),
        ("reset", retry.CONNECT_FAILURE, False),
        ("reset", retry.TIMEOUT, False),
        # retriable-status-codes is about responses only
        ("retriable-status-codes", retry.CONNECT_FAILURE, False),
        ("retriable-status-codes", retry.RESET, False),
        ("retriable-status-codes", retry.TIMEOUT, False),
        # an overflow (a circuit breaker said no) is never retried: that would add load
        ("5xx", retry.OVERFLOW, False),
        ("gateway-error,connect-failure,reset", retry.OVERFLOW, False),
        ("", retry.RESET, False),
    ],
)
def test_failures_retried_by_condition(retry_on: str, failure: str, retried: bool) -> None:
    assert retry.after_failure(policy(retry_on), 1, failure, 0.0, None) is retried


# -- num_retries bounds the attempts ----------------------------------------------------------
@pytest.mark.parametrize(
    ("num_retries", "attempt", "retried"),
    [
        (0, 1, False),  # a policy with no retries: the first answer stands
        (1, 1, True),
        (1, 2, False),  # the one retry was attempt 2
        (3, 1, True),
        (3, 3, True),
        (3, 4, False),  # 1 try + 3 retries
    ],
)
def test_num_retries_bounds_the_attempts(num_retries: int, attempt: int, retried: bool) -> None:
    rule = policy("5xx", num_retries=num_retries)
    assert retry.after_response(rule, attempt, 503) is retried
    assert retry.after_failure(rule, attempt, retry.RESET, 0.0, None) is retried
    assert retry.after_failure(rule, attempt, retry.TIMEOUT, 0.0, None) is retried


def test_no_policy_never_retries() -> None:
    """No policy on the route, or a body too large to buffer (so it cannot be replayed)."""
    assert not retry.retriable_status(None, 503)
    assert not retry.retriable_failure(None, retry.RESET)
    assert not retry.after_response(None, 1, 503)
    for failure in (retry.CONNECT_FAILURE, retry.RESET, retry.TIMEOUT, retry.OVERFLOW):
        assert not retry.after_failure(None, 1, failure, 0.0, None)


# -- the route's timeout ends the request -----------------------------------------------------
@pytest.mark.parametrize(
    ("failure", "now", "deadline", "retried"),
    [
        (retry.TIMEOUT, 1.0, None, True),  # no route timeout: a per-try timeout fired
        (retry.TIMEOUT, 1.0, 2.0, True),  # the per-try timeout fired first
        (retry.TIMEOUT, 2.0, 2.0, False),  # the route's timeout: 504, no retry
        (retry.TIMEOUT, 3.0, 2.0, False),
        (retry.RESET, 3.0, 2.0, True),  # a failure is retried; its next try times out at once
        (retry.CONNECT_FAILURE, 3.0, 2.0, True),
    ],
)
def test_route_timeout_ends_the_request(
    failure: str, now: float, deadline: float | None, retried: bool
) -> None:
    assert retry.after_failure(policy("5xx", num_retries=5), 1, failure, now, deadline) is retried


# -- backoff: fully jittered, exponential, capped at 10 x the base interval -------------------
BASE = 0.025  # Envoy's default base interval


@pytest.mark.parametrize(
    ("attempt", "draw", "expected"),
    [
        (1, 0, 0.0),  # a draw of 0 retries at once
        (1, 500, 0.5 * 1 * BASE),  # before retry 1: uniform in [0, 1 x base)
        (1, 999, 0.999 * 1 * BASE),
        (2, 500, 0.5 * 3 * BASE),  # before retry 2: [0, 3 x base)
        (3, 500, 0.5 * 7 * BASE),  # before retry 3: [0, 7 x base)
        (4, 500, 0.5 * 10 * BASE),  # 15 x base, capped at 10 x base
        (9, 999, 0.999 * 10 * BASE),  # and stays there
    ],
)
def test_backoff(attempt: int, draw: int, expected: float) -> None:
    assert retry.backoff(attempt, BASE, draw) == pytest.approx(expected)


def test_backoff_scales_with_the_base_interval() -> None:
    assert retry.backoff(2, 1.0, 500) == pytest.approx(retry.backoff(2, BASE, 500) / BASE)


# -- per_try_timeout: each attempt's own deadline ----------------------------------------------
@pytest.mark.parametrize(
    ("per_try_timeout", "deadline", "sent_at", "expected"),
    [
        (None, None, 3.0, None),  # no timeout at all
        (None, 10.0, 3.0, 10.0),  # the route's timeout only
        (0.5, None, 3.0, 3.5),  # the per-try timeout only
        (0.5, 10.0, 3.0, 3.5),  # the per-try timeout comes first
        (0.5, 3.2, 3.0, 3.2),  # the route's timeout comes first
    ],
)
def test_try_deadline(
    per_try_timeout: float | None, deadline: float | None, sent_at: float, expected: float | None
) -> None:
    rule = policy("5xx", per_try_timeout=per_try_timeout)
    assert retry.try_deadline(deadline, rule, sent_at) == expected


def test_try_deadline_without_a_policy_is_the_routes() -> None:
    assert retry.try_deadline(10.0, None, 3.0) == 10.0
    assert retry.try_deadline(None, None, 3.0) is None
