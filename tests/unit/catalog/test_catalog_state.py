"""MeshState: lookups through indexes, and cheap, exact updates by events."""

from __future__ import annotations

from osm.base import wellknown
from osm.base.identity import Identity
from osm.catalog.ids import ServiceId
from osm.catalog.state import Changed, MeshState
from osm.model.core import Pod, Service
from osm.model.meta import ObjectRef
from tests.unit.catalog import meshes as m


def base() -> MeshState:
    return m.state(
        *m.two_tier(False),
        m.traffic_target("b", "t", "server", [("a", "client")], [("TCPRoute", "r", [])]),
        m.tcp_route("b", "r", []),
        m.traffic_split("b", "s", "server", [("server", 1)]),
    )


def test_lookups() -> None:
    state = base()
    assert [s.name for s in state.services_selecting("b", {"app": "server", "x": "y"})] == [
        "server"
    ]
    assert state.services_selecting("a", {"app": "server"}) == []
    service = state.service(ServiceId("b", "server"))
    assert isinstance(service, Service)
    assert [p.name for p in state.pods_selected_by(service)] == ["server-0", "server-1"]
    assert [p.name for p in state.pods_with_identity(Identity("b", "server"))] == [
        "server-0",
        "server-1",
    ]
    assert [t.name for t in state.targets_to(Identity("b", "server"))] == ["t"]
    assert [t.name for t in state.targets_from(Identity("a", "client"))] == ["t"]
    assert [t.name for t in state.targets_with_rule("b", "TCPRoute", "r")] == ["t"]
    assert [s.name for s in state.splits_for(ServiceId("b", "server"))] == ["s"]
    assert state.mesh_config.permissive is False
    assert state.mesh_config.name == wellknown.MESH_CONFIG_NAME


def test_default_mesh_config_without_one() -> None:
    state = m.state(m.namespace("a"))
    assert state.mesh_config.permissive is True


def test_with_changes_shares_untouched_tables_and_reports_changes() -> None:
    state = base()
    moved = m.parse(m.pod("b", "server-1", {"app": "other"}, "server", "10.0.1.2"))
    after, changed = state.with_changes(
        upserts=moved, deletes=[ObjectRef("TrafficSplit", "b", "s")]
    )
    assert changed.refs == {ObjectRef("Pod", "b", "server-1"), ObjectRef("TrafficSplit", "b", "s")}
    assert changed.kinds == {"Pod", "TrafficSplit"}
    assert ObjectRef("TrafficSplit", "b", "s") not in changed.after
    old_pod = changed.before[ObjectRef("Pod", "b", "server-1")]
    assert isinstance(old_pod, Pod) and old_pod.metadata.labels["app"] == "server"
    # Untouched kinds and indexes are the same objects; the old state is unchanged.
    assert after._objects["Service"] is state._objects["Service"]
    assert after._indexes["targets_by_destination"] is state._indexes["targets_by_destination"]
    service = after.service(ServiceId("b", "server"))
    assert service is not None
    assert [p.name for p in after.pods_selected_by(service)] == ["server-0"]
    assert [p.name for p in state.pods_selected_by(service)] == ["server-0", "server-1"]
    assert after.splits_for(ServiceId("b", "server")) == []


def test_identical_upsert_and_missing_delete_are_no_change() -> None:
    state = base()
    same = m.parse(m.service("b", "server", cluster_ip="10.96.0.10"))
    after, changed = state.with_changes(upserts=same, deletes=[ObjectRef("Pod", "b", "nope")])
    assert not changed
    assert after.all("Pod") == state.all("Pod")


def test_changes_merge_over_a_batch() -> None:
    state = base()
    step1, first = state.with_changes(deletes=[ObjectRef("Pod", "b", "server-0")])
    _step2, second = step1.with_changes(
        upserts=m.parse(m.pod("b", "server-9", {"app": "server"}, "server", "10.0.1.9"))
    )
    merged = first.merged(second)
    assert merged.refs == {ObjectRef("Pod", "b", "server-0"), ObjectRef("Pod", "b", "server-9")}
    assert ObjectRef("Pod", "b", "server-0") in merged.before
    assert ObjectRef("Pod", "b", "server-9") not in merged.before
    assert ObjectRef("Pod", "b", "server-9") in merged.after
    assert Changed.all().everything
