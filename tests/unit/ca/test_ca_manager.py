"""The certificate manager: renewal at half-life with jitter on a fake clock, and events."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

import pytest

from osm.base.identity import Identity
from osm.ca import builtin, manager
from tests.unit.ca import catesting

T0 = catesting.T0
BUYER = Identity("bookstore", "bookbuyer")
HOUR = timedelta(hours=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make(
    ca: builtin.BuiltinCA, clock: Clock, *, jitter: float = 0.1, seed: int = 1
) -> manager.CertificateManager:
    return manager.CertificateManager(
        ca, clock, validity=2 * HOUR, jitter=jitter, rng=random.Random(seed)
    )


def test_renews_at_half_life_within_jitter_and_not_before(ca: builtin.BuiltinCA) -> None:
    clock = Clock()
    certs = make(ca, clock)
    events: list[manager.Event] = []
    certs.subscribe(events.append)

    first = certs.get_or_issue(BUYER)
    assert certs.get_or_issue(BUYER) is first
    renew_at = certs.renew_at(BUYER)
    assert renew_at is not None
    assert T0 + 0.9 * HOUR <= renew_at <= T0 + 1.1 * HOUR  # half of 2h, ±10%

    assert certs.tick(T0 + 0.9 * HOUR - timedelta(seconds=1)) == []
    assert certs.tick(renew_at - timedelta(microseconds=1)) == []
    (event,) = certs.tick(renew_at)
    assert isinstance(event, manager.CertificateRotated)
    assert (event.identity, event.old_serial, event.reason) == (BUYER, first.serial, "renewal")
    assert event.new_cert.serial != first.serial
    assert event.new_cert.not_after == (renew_at + 2 * HOUR).replace(microsecond=0)
    assert events == [event]
    assert certs.current(BUYER) == event.new_cert


def test_jitter_is_deterministic_and_spreads_renewals(ca: builtin.BuiltinCA) -> None:
    identities = [Identity("ns", f"sa-{i}") for i in range(100)]
    one, two = make(ca, Clock(), seed=42), make(ca, Clock(), seed=42)
    for identity in identities:
        one.get_or_issue(identity)
        two.get_or_issue(identity)
    times = [one.renew_at(identity) for identity in identities]
    assert times == [two.renew_at(identity) for identity in identities]
    offsets = [(time - T0) / HOUR for time in times if time is not None]
    assert all(0.9 <= offset <= 1.1 for offset in offsets)
    assert max(offsets) - min(offsets) > 0.1  # actually spread, not all equal

    exact = make(ca, Clock(), jitter=0)
    exact.get_or_issue(BUYER)
    assert exact.renew_at(BUYER) == T0 + HOUR


def test_a_late_caller_gets_a_renewed_certificate(ca: builtin.BuiltinCA) -> None:
    clock = Clock()
    certs = make(ca, clock)
    events: list[manager.Event] = []
    certs.subscribe(events.append)
    first = certs.get_or_issue(BUYER)
    clock.now = T0 + 3 * HOUR  # no tick ran; the first leaf has expired
    second = certs.get_or_issue(BUYER)
    assert second.serial != first.serial and second.not_after > clock.now
    assert [e.old_serial for e in events if isinstance(e, manager.CertificateRotated)] == [
        first.serial
    ]


def test_subscribers(ca: builtin.BuiltinCA, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    certs = make(ca, clock)
    seen: list[manager.Event] = []

    def broken(event: manager.Event) -> None:
        raise RuntimeError("subscriber bug")

    certs.subscribe(broken)
    unsubscribe = certs.subscribe(seen.append)
    certs.get_or_issue(BUYER)
    with caplog.at_level(logging.ERROR):
        certs.tick(T0 + 2 * HOUR)
    assert len(seen) == 1 and "subscriber bug" in caplog.text
    unsubscribe()
    certs.tick(T0 + 4 * HOUR)
    assert len(seen) == 1


def test_validity_change_applies_to_new_certificates(ca: builtin.BuiltinCA) -> None:
    clock = Clock()
    certs = make(ca, clock)
    first = certs.get_or_issue(BUYER)
    certs.validity = 4 * HOUR
    assert certs.current(BUYER) == first
    (event,) = certs.tick(T0 + 2 * HOUR)
    assert isinstance(event, manager.CertificateRotated)
    assert event.new_cert.not_after == T0 + 6 * HOUR
    with pytest.raises(ValueError):
        certs.validity = timedelta(0)


def test_forget_and_next_deadline(ca: builtin.BuiltinCA) -> None:
    certs = make(ca, Clock(), jitter=0)
    assert certs.next_deadline() is None
    certs.get_or_issue(BUYER)
    assert certs.next_deadline() == T0 + HOUR
    certs.forget(BUYER)
    assert certs.current(BUYER) is None and certs.tick(T0 + 9 * HOUR) == []


def test_trust_bundle_version_changes_only_with_the_roots(ca: builtin.BuiltinCA) -> None:
    certs = make(ca, Clock())
    version = certs.trust_bundle().version
    certs.tick(T0 + timedelta(minutes=1))
    assert certs.trust_bundle().version == version
    ca.begin_rotation(T0)
    (event,) = certs.tick(T0 + timedelta(minutes=2))
    assert isinstance(event, manager.TrustBundleChanged)
    assert event.bundle.version != version
    assert event.bundle == certs.trust_bundle() and len(event.bundle.fingerprints) == 2
