"""The certificate manager: one current leaf per workload identity, renewed before it expires.

One idea: time only enters through `tick(now)`, so renewal is a pure function of the clock the
caller passes. A leaf is renewed at half its lifetime, shifted by a deterministic jitter
(±`jitter` of the half-life, from an injectable `random.Random`) so that identities issued
together do not all renew together; and every leaf is re-issued as soon as the issuer signs
with another root (root rotation).

Contract with subscribers (the xDS server turns events into SDS secrets): rotation *replaces*
the current certificate and never revokes the old one. Established connections keep the
certificate they handshook with until they close; new handshakes use the new one. The old
leaf stays valid until its own expiry, and its root stays in the trust bundle at least that
long (see `rotation`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from osm.base.identity import TRUST_DOMAIN, Identity
from osm.ca.issuer import DEFAULT_LEAF_VALIDITY, IssuedCertificate, Issuer, LeafRequest, TrustBundle

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CertificateRotated:
    """`identity` has a new current certificate; `reason` is "renewal" or "root-rotation"."""

    identity: Identity
    old_serial: int
    new_cert: IssuedCertificate
    reason: str


@dataclass(frozen=True)
class TrustBundleChanged:
    """The set of trusted roots changed; peers must be given `bundle`."""

    bundle: TrustBundle


Event = CertificateRotated | TrustBundleChanged
Subscriber = Callable[[Event], None]


@dataclass(frozen=True)
class _Current:
    cert: IssuedCertificate
    renew_at: datetime


class CertificateManager:
    """Keeps one current certificate per identity. Not thread-safe: use it from one thread
    (or the event loop); subscribers are called synchronously, in subscription order, and an
    exception in one is logged and does not stop the others."""

    def __init__(
        self,
        issuer: Issuer,
        clock: Callable[[], datetime],
        *,
        validity: timedelta = DEFAULT_LEAF_VALIDITY,
        trust_domain: str = TRUST_DOMAIN,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self._issuer = issuer
        self._clock = clock
        self._validity = validity
        self._trust_domain = trust_domain
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._current: dict[Identity, _Current] = {}
        self._subscribers: list[Subscriber] = []
        self._bundle = issuer.trust_bundle()
        self.on_issued: Callable[[IssuedCertificate, float], None] | None = None
        """Called after each leaf this manager issues, with the seconds issuing took
        (the controller's ``osm_cert_issued_count`` and ``osm_cert_issued_time``)."""

    @property
    def validity(self) -> timedelta:
        return self._validity

    @validity.setter
    def validity(self, validity: timedelta) -> None:
        """Set the lifetime of leaves issued from now on (MeshConfig
        `certificate.serviceCertValidityDuration`); current leaves keep theirs."""
        if validity <= timedelta(0):
            raise ValueError(f"validity must be positive, got {validity}")
        self._validity = validity

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every future event; returns a function that unsubscribes."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def trust_bundle(self) -> TrustBundle:
        """The bundle as of the last `tick`; compare `.version` values for equality only."""
        return self._bundle

    def current(self, identity: Identity) -> IssuedCertificate | None:
        entry = self._current.get(identity)
        return entry.cert if entry is not None else None

    def renew_at(self, identity: Identity) -> datetime | None:
        entry = self._current.get(identity)
        return entry.renew_at if entry is not None else None

    def get_or_issue(self, identity: Identity) -> IssuedCertificate:
        """The current certificate of `identity`: issued on first use, and renewed here (with a
        `CertificateRotated` event) if a late `tick` left it past its renewal time."""
        now = self._clock()
        entry = self._current.get(identity)
        if entry is None:
            return self._issue(identity, now).cert
        if now >= entry.renew_at:
            self._rotate(identity, entry, now, "renewal")
            return self._current[identity].cert
        return entry.cert

    def forget(self, identity: Identity) -> None:
        """Stop managing `identity` (it left the mesh); its leaf simply expires."""
        self._current.pop(identity, None)

    def tick(self, now: datetime | None = None) -> list[Event]:
        """Advance to `now` (default: the clock): let the issuer apply root transitions,
        publish a changed bundle first, then renew every due leaf and re-issue every leaf
        signed by a root that no longer signs. Returns the events in publication order."""
        now = self._clock() if now is None else now
        events: list[Event] = []
        self._issuer.refresh(now)
        bundle = self._issuer.trust_bundle()
        if bundle.version != self._bundle.version:
            self._bundle = bundle
            events.append(self._publish(TrustBundleChanged(bundle)))
        signer = self._issuer.signing_root_fingerprint()
        for identity, entry in sorted(self._current.items()):
            if entry.cert.root_fingerprint != signer:
                events.append(self._rotate(identity, entry, now, "root-rotation"))
            elif now >= entry.renew_at:
                events.append(self._rotate(identity, entry, now, "renewal"))
        return events

    def next_deadline(self) -> datetime | None:
        """The earliest renewal time over all identities (for scheduling the next tick; root
        transitions are not included, so tick at least every few seconds anyway)."""
        return min((entry.renew_at for entry in self._current.values()), default=None)

    def _issue(self, identity: Identity, now: datetime) -> _Current:
        request = LeafRequest.workload(identity, self._validity, self._trust_domain)
        started = time.perf_counter()
        cert = self._issuer.issue(request, now)
        if self.on_issued is not None:
            self.on_issued(cert, time.perf_counter() - started)
        half_life = (cert.not_after - now) / 2
        shift = self._jitter * (2 * self._rng.random() - 1)
        entry = _Current(cert, now + half_life * (1 + shift))
        self._current[identity] = entry
        return entry

    def _rotate(
        self, identity: Identity, old: _Current, now: datetime, reason: str
    ) -> CertificateRotated:
        new = self._issue(identity, now)
        event = CertificateRotated(identity, old.cert.serial, new.cert, reason)
        self._publish(event)
        return event

    def _publish(self, event: Event) -> Event:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                _log.exception("certificate event subscriber %r failed on %r", subscriber, event)
        return event
