"""Root rotation: the pure state machine, its persistence, and the safety property that no
valid peer is ever rejected while roots change."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from osm.base.identity import Identity
from osm.ca import builtin, manager, store
from osm.ca.errors import CAFileError, RotationInProgress
from osm.ca.issuer import IssuedCertificate, LeafRequest, TrustBundle
from osm.ca.rotation import RootRecord, RootSet, RootState
from tests.unit.ca import catesting

T0 = catesting.T0
A, B, C = "a" * 16, "b" * 16, "c" * 16
DELAY, GRACE = timedelta(minutes=5), timedelta(minutes=10)


def states(roots: RootSet) -> list[tuple[str, str]]:
    return [(root.root_id, root.state.value) for root in roots.roots]


def test_rotation_sequence_step_by_step() -> None:
    roots = RootSet.initial(A).extend_lease(T0 + timedelta(hours=24))
    assert roots.next_transition() is None

    roots = roots.begin_rotation(B, DELAY, GRACE)
    assert states(roots) == [(A, "active"), (B, "pending")]
    assert roots.next_transition() is None  # the delay starts when the bundle goes out
    assert roots.advance(T0 + timedelta(days=9)) == roots
    with pytest.raises(RotationInProgress, match="still pending"):
        roots.begin_rotation(C, DELAY, GRACE)

    roots = roots.mark_published(T0)
    assert roots.mark_published(T0 + timedelta(minutes=1)) == roots  # first publication wins
    assert roots.next_transition() == T0 + DELAY
    assert roots.advance(T0 + DELAY - timedelta(seconds=1)) == roots

    roots = roots.advance(T0 + DELAY)
    assert states(roots) == [(A, "retiring"), (B, "active")]
    assert roots.get(A).remove_at == T0 + timedelta(hours=24) + GRACE
    assert not roots.get(A).state.signs and roots.active.root_id == B

    roots = roots.begin_rotation(C, DELAY, GRACE)  # a retiring root does not block rotation
    assert states(roots) == [(A, "retiring"), (B, "active"), (C, "pending")]
    assert (
        roots.advance(T0 + timedelta(hours=24) + GRACE - timedelta(seconds=1)).roots[0].root_id == A
    )
    roots = roots.advance(T0 + timedelta(hours=24) + GRACE)
    assert states(roots) == [(B, "active"), (C, "pending")]


def test_overdue_transitions_all_apply_at_once() -> None:
    roots = RootSet.initial(A).begin_rotation(B, DELAY, GRACE).mark_published(T0)
    roots = roots.advance(T0 + timedelta(days=30))
    # A signed nothing that outlives `now`, so the grace counts from the activation itself;
    # removal is then due at the next advance.
    assert states(roots) == [(A, "retiring"), (B, "active")]
    assert roots.get(A).remove_at == T0 + timedelta(days=30) + GRACE
    assert states(roots.advance(T0 + timedelta(days=31))) == [(B, "active")]


def test_json_round_trip_and_validation() -> None:
    roots = (
        RootSet.initial(A)
        .extend_lease(T0)
        .begin_rotation(B, DELAY, GRACE)
        .mark_published(T0)
        .advance(T0 + DELAY)
        .begin_rotation(C, DELAY, GRACE)
    )
    assert RootSet.from_json(roots.to_json()) == roots
    bad_id = roots.to_json()
    bad_id["roots"][0]["id"] = "../../etc/passwd"
    two_active = {
        "version": 1,
        "roots": [{"id": A, "state": "active"}, {"id": B, "state": "active"}],
    }
    malformed: list[object] = [bad_id, two_active, {"version": 2, "roots": []}, [], {"version": 1}]
    for data in malformed:
        with pytest.raises((ValueError, KeyError, TypeError)):
            RootSet.from_json(data)
    with pytest.raises(ValueError):
        RootSet((RootRecord(A, RootState.PENDING),))


# --- the CA and the manager through a whole rotation ---------------------------------------


@dataclass
class Mesh:
    """A controller (CA + manager) driven by a fake clock, and a record of everything its
    peers may hold: every leaf ever issued, every bundle ever published."""

    ca_dir: Path
    now: datetime = T0
    leaves: list[IssuedCertificate] = field(default_factory=list)
    bundles: list[tuple[datetime, TrustBundle]] = field(default_factory=list)

    def start(self) -> None:
        config = builtin.CAConfig(propagation_delay=DELAY, retire_grace=GRACE)
        self.ca = builtin.BuiltinCA.open(self.ca_dir, self.now, config)
        self.manager = manager.CertificateManager(
            self.ca, lambda: self.now, validity=timedelta(hours=1), rng=random.Random(7)
        )
        self.manager.subscribe(self.record)
        self.bundles.append((self.now, self.ca.trust_bundle()))
        for identity in IDENTITIES:
            self.leaves.append(self.manager.get_or_issue(identity))

    def record(self, event: manager.Event) -> None:
        if isinstance(event, manager.CertificateRotated):
            self.leaves.append(event.new_cert)
        else:
            self.bundles.append((self.now, event.bundle))

    def leaves_in_use(self) -> list[IssuedCertificate]:
        """Replaced leaves stay in use (established connections) until they expire."""
        return [leaf for leaf in self.leaves if leaf.not_before <= self.now < leaf.not_after]

    def bundles_in_use(self) -> list[TrustBundle]:
        """A peer may still hold any bundle published within the propagation delay, or the
        one that was current when that window opened."""
        window = self.now - DELAY
        recent = [bundle for at, bundle in self.bundles if at > window]
        older = [bundle for at, bundle in self.bundles if at <= window]
        return recent + older[-1:]


IDENTITIES = [
    Identity("bookstore", "bookbuyer"),
    Identity("bookstore", "bookstore-v1"),
    Identity("bookwarehouse", "bookwarehouse"),
]


@pytest.mark.parametrize("restart_at_minute", [None, 3, 12, 40])
def test_no_valid_peer_is_ever_rejected_during_root_rotation(
    tmp_path: Path, restart_at_minute: int | None
) -> None:
    mesh = Mesh(tmp_path / "ca")
    mesh.start()
    first_root = mesh.ca.signing_root_fingerprint()
    step = timedelta(minutes=1)
    checked = 0
    for minute in range(1, 4 * 60):
        mesh.now = T0 + minute * step
        if minute == 2:  # the operator runs `osm ca rotate` from another process
            other = builtin.BuiltinCA.open(tmp_path / "ca", mesh.now, create=False)
            other.begin_rotation(mesh.now, DELAY, GRACE)
        if minute == restart_at_minute:  # the controller restarts mid-rotation
            mesh.start()
        mesh.manager.tick()
        bundles = mesh.bundles_in_use()
        for leaf in mesh.leaves_in_use():
            for bundle in bundles:
                assert catesting.verifies(leaf.cert_pem, bundle.pem, mesh.now), (
                    f"minute {minute}: leaf {leaf.serial:x} of {leaf.identity} rejected by "
                    f"bundle {bundle.version}"
                )
                checked += 1
    assert checked > 1000

    # the rotation finished: one root, the new one, signs every current leaf
    final = mesh.ca.roots()
    assert [root.record.state for root in final] == [RootState.ACTIVE]
    assert final[0].fingerprint != first_root
    assert mesh.ca.trust_bundle().fingerprints == (final[0].fingerprint,)
    for identity in IDENTITIES:
        assert mesh.manager.get_or_issue(identity).root_fingerprint == final[0].fingerprint
    assert sorted(path.name for path in (tmp_path / "ca" / "roots").iterdir()) == sorted(
        [f"{final[0].record.root_id}.crt", f"{final[0].record.root_id}.key"]
    )


def test_rotation_steps_are_published_in_order(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path / "ca")
    mesh.start()
    events: list[manager.Event] = []
    mesh.manager.subscribe(events.append)
    old_root = mesh.ca.signing_root_fingerprint()

    new = mesh.ca.begin_rotation(mesh.now)
    mesh.now += timedelta(seconds=5)
    (changed,) = mesh.manager.tick()
    assert isinstance(changed, manager.TrustBundleChanged)
    assert changed.bundle.fingerprints == (old_root, new.fingerprint)  # (a) trusted, not signing
    assert mesh.ca.signing_root_fingerprint() == old_root

    mesh.now += DELAY
    rotated = mesh.manager.tick()  # (b) the new root signs; every identity is re-issued
    assert {
        event.identity for event in rotated if isinstance(event, manager.CertificateRotated)
    } == set(IDENTITIES)
    assert all(
        isinstance(e, manager.CertificateRotated) and e.reason == "root-rotation" for e in rotated
    )
    assert mesh.ca.signing_root_fingerprint() == new.fingerprint
    assert mesh.manager.trust_bundle().fingerprints == (old_root, new.fingerprint)

    retiring = mesh.ca.roots()[0]
    assert retiring.record.state is RootState.RETIRING
    assert retiring.record.remove_at is not None
    assert (
        retiring.record.remove_at
        >= max(leaf.not_after for leaf in mesh.leaves if leaf.root_fingerprint == old_root) + GRACE
    )

    mesh.now = retiring.record.remove_at
    events.clear()
    mesh.manager.tick()  # (c) the old root leaves the bundle
    assert [type(event) for event in events][:1] == [manager.TrustBundleChanged]
    assert mesh.manager.trust_bundle().fingerprints == (new.fingerprint,)


def test_a_restarted_controller_continues_the_rotation_from_disk(tmp_path: Path) -> None:
    config = builtin.CAConfig(propagation_delay=DELAY, retire_grace=GRACE)
    ca = builtin.BuiltinCA.open(tmp_path / "ca", T0, config)
    new = ca.begin_rotation(T0)
    ca.refresh(T0)  # the controller publishes the bundle with the pending root
    restarted = builtin.BuiltinCA.open(tmp_path / "ca", T0 + timedelta(minutes=1), config)
    assert [r.record.state for r in restarted.roots()] == [RootState.ACTIVE, RootState.PENDING]
    assert restarted.roots()[1].record.activate_at == T0 + DELAY
    request = LeafRequest.workload(IDENTITIES[0])
    issued = restarted.issue(request, T0 + DELAY)  # issuing applies the due switch
    assert issued.root_fingerprint == new.fingerprint
    on_disk = store.CADirectory(tmp_path / "ca").read_state()
    assert [r.state for r in on_disk.roots] == [RootState.RETIRING, RootState.ACTIVE]


def test_a_second_rotation_is_refused_while_one_is_pending(ca: builtin.BuiltinCA) -> None:
    ca.begin_rotation(T0)
    with pytest.raises(RotationInProgress):
        ca.begin_rotation(T0)


def test_a_missing_pending_root_is_reported(ca: builtin.BuiltinCA, ca_dir: Path) -> None:
    new = ca.begin_rotation(T0)
    (ca_dir / "roots" / f"{new.record.root_id}.crt").unlink()
    with pytest.raises(CAFileError, match="missing"):
        builtin.BuiltinCA.open(ca_dir, T0)


def test_only_the_publisher_starts_the_propagation_delay(tmp_path: Path) -> None:
    """`osm ca issue` may apply due transitions but must never mark a pending root as
    published: peers only learn of it from the controller."""
    config = builtin.CAConfig(propagation_delay=DELAY, retire_grace=GRACE)
    controller = builtin.BuiltinCA.open(tmp_path / "ca", T0, config)
    controller.begin_rotation(T0)
    controller.refresh(T0)
    controller.refresh(T0 + DELAY)  # B signs, A retires
    remove_at = controller.roots()[0].record.remove_at
    assert remove_at is not None
    controller.begin_rotation(T0 + DELAY)  # C pending, not yet published

    cli = builtin.BuiltinCA.open(tmp_path / "ca", remove_at, config)
    cli.issue(LeafRequest.workload(IDENTITIES[0]), remove_at)  # A's removal is due
    on_disk = store.CADirectory(tmp_path / "ca").read_state()
    assert [r.state for r in on_disk.roots] == [RootState.ACTIVE, RootState.PENDING]
    assert on_disk.roots[1].published_at is None
