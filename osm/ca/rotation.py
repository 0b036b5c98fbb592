"""Root rotation as a pure state machine over the set of roots (no I/O, no clock).

One idea: a new root is trusted before it signs, and an old root stays trusted until every
leaf it signed has expired, so no peer ever meets a leaf its bundle cannot verify:

    rotate   : add NEW as PENDING (trusted, not signing)
    publish  : the controller starts handing out the bundle with NEW; the delay starts
    activate : published + propagation_delay -> NEW ACTIVE (signs), OLD RETIRING (trusted only;
               OSM's "passive"/validating state); remove_at = OLD's last leaf expiry + grace
    remove   : remove_at reached -> OLD leaves the set (and the bundle)

`leaves_valid_until` is a persisted high-water mark of the expiry of every leaf a root signed:
the issuer raises it *before* signing a leaf that would outlive it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from osm.ca.errors import RotationInProgress


class RootState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRING = "retiring"

    @property
    def signs(self) -> bool:
        return self is RootState.ACTIVE


@dataclass(frozen=True)
class RootRecord:
    """One root's place in the rotation. Every listed root is in the trust bundle.

    PENDING roots carry the rotation plan (`propagation_delay`, `retire_grace`) and, once the
    bundle containing them went out, `published_at`. RETIRING roots carry `remove_at`.
    """

    root_id: str
    state: RootState
    leaves_valid_until: datetime | None = None
    propagation_delay: timedelta = timedelta(0)
    retire_grace: timedelta = timedelta(0)
    published_at: datetime | None = None
    remove_at: datetime | None = None

    @property
    def activate_at(self) -> datetime | None:
        """When a PENDING root starts signing: None until its bundle is published."""
        if self.state is not RootState.PENDING or self.published_at is None:
            return None
        return self.published_at + self.propagation_delay


@dataclass(frozen=True)
class RootSet:
    """The trusted roots in bundle order (oldest first): exactly one ACTIVE, at most one PENDING.

    Every method returns a new value; `RootSet` is immutable.
    """

    roots: tuple[RootRecord, ...]

    def __post_init__(self) -> None:
        states = [root.state for root in self.roots]
        ids = [root.root_id for root in self.roots]
        if states.count(RootState.ACTIVE) != 1 or states.count(RootState.PENDING) > 1:
            raise ValueError(f"a root set needs one active and at most one pending root: {states}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate root ids: {ids}")

    @classmethod
    def initial(cls, root_id: str) -> RootSet:
        return cls((RootRecord(root_id, RootState.ACTIVE),))

    @property
    def active(self) -> RootRecord:
        return next(root for root in self.roots if root.state is RootState.ACTIVE)

    @property
    def pending(self) -> RootRecord | None:
        return next((root for root in self.roots if root.state is RootState.PENDING), None)

    def get(self, root_id: str) -> RootRecord:
        return next(root for root in self.roots if root.root_id == root_id)

    def next_transition(self) -> datetime | None:
        """The earliest moment at which `advance` would change something, if any."""
        moments = [root.activate_at or root.remove_at for root in self.roots]
        return min((moment for moment in moments if moment is not None), default=None)

    def begin_rotation(
        self, new_root_id: str, propagation_delay: timedelta, retire_grace: timedelta
    ) -> RootSet:
        """Add `new_root_id` as PENDING; raise `RotationInProgress` if one is pending already.

        Retiring roots do not block a new rotation: several roots may retire at once.
        """
        if self.pending is not None:
            raise RotationInProgress(
                f"root {self.pending.root_id} is still pending; wait until it is active"
            )
        new = RootRecord(
            new_root_id,
            RootState.PENDING,
            propagation_delay=propagation_delay,
            retire_grace=retire_grace,
        )
        return RootSet((*self.roots, new))

    def mark_published(self, now: datetime) -> RootSet:
        """Record that the bundle with the pending root went out at `now` (first call wins)."""
        pending = self.pending
        if pending is None or pending.published_at is not None:
            return self
        return self._replace(replace(pending, published_at=now))

    def extend_lease(self, until: datetime) -> RootSet:
        """Raise the active root's `leaves_valid_until` to at least `until`."""
        active = self.active
        if active.leaves_valid_until is not None and active.leaves_valid_until >= until:
            return self
        return self._replace(replace(active, leaves_valid_until=until))

    def advance(self, now: datetime) -> RootSet:
        """Apply every transition due at `now` (activation, then removals)."""
        current = self
        pending = current.pending
        activate_at = pending.activate_at if pending is not None else None
        if pending is not None and activate_at is not None and now >= activate_at:
            old = current.active
            last_leaf = max(old.leaves_valid_until or now, now)
            retiring = RootRecord(
                old.root_id,
                RootState.RETIRING,
                leaves_valid_until=old.leaves_valid_until,
                remove_at=last_leaf + pending.retire_grace,
            )
            current = current._replace(retiring, RootRecord(pending.root_id, RootState.ACTIVE))
        kept = tuple(
            root for root in current.roots if root.remove_at is None or now < root.remove_at
        )
        return current if len(kept) == len(current.roots) else RootSet(kept)

    def _replace(self, *records: RootRecord) -> RootSet:
        by_id = {record.root_id: record for record in records}
        return RootSet(tuple(by_id.get(root.root_id, root) for root in self.roots))

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "roots": [_record_to_json(root) for root in self.roots]}

    @classmethod
    def from_json(cls, data: Any) -> RootSet:
        """Parse `to_json` output; raise ValueError, KeyError or TypeError if malformed."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 root set")
        return cls(tuple(_record_from_json(item) for item in data["roots"]))


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"time without a timezone: {value!r}")
    return moment


def _record_to_json(root: RootRecord) -> dict[str, Any]:
    return {
        "id": root.root_id,
        "state": root.state.value,
        "leaves_valid_until": _time(root.leaves_valid_until),
        "propagation_delay_seconds": root.propagation_delay.total_seconds(),
        "retire_grace_seconds": root.retire_grace.total_seconds(),
        "published_at": _time(root.published_at),
        "remove_at": _time(root.remove_at),
    }


def _record_from_json(item: Any) -> RootRecord:
    if not isinstance(item, dict) or not re.fullmatch(r"[0-9a-f]{16,64}", str(item["id"])):
        raise TypeError(f"bad root record {item!r}")  # ids name files: hex only
    return RootRecord(
        root_id=item["id"],
        state=RootState(item["state"]),
        leaves_valid_until=_parse_time(item.get("leaves_valid_until")),
        propagation_delay=timedelta(seconds=float(item.get("propagation_delay_seconds", 0))),
        retire_grace=timedelta(seconds=float(item.get("retire_grace_seconds", 0))),
        published_at=_parse_time(item.get("published_at")),
        remove_at=_parse_time(item.get("remove_at")),
    )
