"""The snapshot cache: watches wake only for types whose version changed."""

from __future__ import annotations

from osm.ads import cache
from tests.unit.ads.adstesting import CDS, EDS, LDS, NODE_ID, snap

OTHER = "p2.sidecar.bookstore.bookstore"


def test_a_watch_wakes_on_a_changed_version_of_a_watched_type_only() -> None:
    store = cache.SnapshotCache()
    woken: list[str] = []
    watch = store.watch(NODE_ID, lambda: woken.append("w"), [CDS, EDS])
    assert store.set_snapshot(NODE_ID, snap("v1", CDS="a", EDS="a", LDS="l")) == {CDS, EDS}
    assert woken == ["w"]
    unchanged = snap(CDS=("v1", "a"), EDS=("v1", "a"), LDS=("v2", "l"))
    assert store.set_snapshot(NODE_ID, unchanged) == frozenset()
    assert woken == ["w"]
    assert store.set_snapshot(NODE_ID, snap(CDS=("v1", "a"), EDS=("v2", "a"))) == {EDS}
    assert woken == ["w", "w"]
    watch.set_types([LDS])
    store.set_snapshot(NODE_ID, snap(CDS=("v9", "a"), EDS=("v9", "a")))
    assert woken == ["w", "w"]


def test_watches_see_only_their_node_and_cancel_is_idempotent() -> None:
    store = cache.SnapshotCache()
    woken: list[str] = []
    mine = store.watch(NODE_ID, lambda: woken.append("mine"), [CDS])
    store.watch(OTHER, lambda: woken.append("other"), [CDS])
    store.set_snapshot(OTHER, snap("v1", CDS="a"))
    assert woken == ["other"]
    assert store.get(NODE_ID) is None
    mine.cancel()
    mine.cancel()
    assert store.watch_count(NODE_ID) == 0
    store.set_snapshot(NODE_ID, snap("v1", CDS="a"))
    assert woken == ["other"]
    assert store.node_ids() == [NODE_ID, OTHER]


def test_clear_forgets_and_the_next_set_wakes_every_watched_type() -> None:
    store = cache.SnapshotCache()
    woken: list[str] = []
    store.set_snapshot(NODE_ID, snap("v1", CDS="a"))
    store.watch(NODE_ID, lambda: woken.append("w"), [CDS])
    store.clear(NODE_ID)
    assert store.get(NODE_ID) is None and woken == []
    assert store.set_snapshot(NODE_ID, snap("v1", CDS="a")) == {CDS}
    assert woken == ["w"]
