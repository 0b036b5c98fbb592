"""Which pods a restarted runtime adopts (`adoption.decide`): one row per rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from osm.base import wellknown
from osm.model import kinds
from osm.model.core import Pod
from osm.runtime import adoption, network, pods, record
from osm.runtime.network import MeshNetworkConfig
from osm.runtime.record import HOSTS, LINK, MOUNTNS, NETNS, PROCESS, Entry

PREFIX = "osm"
MESH = MeshNetworkConfig(netns="osm-mesh")
NETNS_NAME = pods.netns_name(PREFIX, "shop", "web-1")
IP = "10.233.0.2"
BASE = "/state/pods"


def stored_pod(
    *,
    annotated: bool = True,
    ip: str = IP,
    phase: str = "Running",
    init: bool = False,
    name: str = "web-1",
) -> Pod:
    annotations = {wellknown.NETNS_ANNOTATION: NETNS_NAME} if annotated else {}
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "command": ["app"]}, {"name": "proxy", "command": ["p"]}]
    }
    if init:
        spec["initContainers"] = [{"name": "osm-init", "command": ["init"]}]
    pod = kinds.decode(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
            "spec": spec,
            "status": {"phase": phase, "podIP": ip},
        }
    )
    assert isinstance(pod, Pod)
    return pod


def process_entry(name: str, pid: int, netns: str = NETNS_NAME) -> Entry:
    return Entry(PROCESS, f"{pid}:7", {"pid": pid, "start_time": 7, "netns": netns, "name": name})


def pod_entries(netns: str) -> list[Entry]:
    """What a pod's start journals before its processes."""
    veth = network.veth_name(netns)
    return [
        Entry(NETNS, netns),
        Entry(LINK, f"{MESH.netns}/{veth}", {"netns": MESH.netns, "name": veth}),
        Entry(HOSTS, netns),
        Entry(MOUNTNS, f"{BASE}/{netns}", {"base": BASE, "netns": netns}),
    ]


LINK_KEY = f"{MESH.netns}/{network.veth_name(NETNS_NAME)}"
SANDBOX_KEY = f"{BASE}/{NETNS_NAME}"
POD_ENTRIES = pod_entries(NETNS_NAME)
APP, PROXY = process_entry("app", 100), process_entry("proxy", 101)
SHARED = [
    Entry(NETNS, MESH.netns),
    Entry(record.ETC_DIR, "/etc/netns"),
    Entry(record.SANDBOX_DIR, BASE, {"made": True}),
]


class World:
    """What a previous runtime left: journal entries, the API's Pods, its allocations,
    and what exists (everything the entries name, every process alive, by default)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = [*SHARED, *POD_ENTRIES, APP, PROXY]
        self.stored: list[Pod] = [stored_pod()]
        self.allocations = {adoption.owner("shop", "web-1"): IP}
        self.dead: set[str] = set()
        self.gone: set[tuple[str, str]] = set()

    def decide(self) -> adoption.Decision:
        facts = adoption.Facts(
            alive=frozenset(e.key for e in self.entries if e.kind == PROCESS) - self.dead,
            present=frozenset((e.kind, e.key) for e in self.entries) - self.gone,
        )
        return adoption.decide(
            self.entries, self.stored, self.allocations, facts, prefix=PREFIX, mesh=MESH
        )


def unchanged(world: World) -> None:
    pass


def pod_deleted(world: World) -> None:
    world.stored = []


def pod_succeeded(world: World) -> None:
    world.stored = [stored_pod(phase="Succeeded")]


def namesake(world: World) -> None:  # deleted and created again while no runtime ran
    world.stored = [stored_pod(annotated=False, ip="")]


def other_ip(world: World) -> None:
    world.allocations = {adoption.owner("shop", "web-1"): "10.233.0.9"}


def no_allocation(world: World) -> None:
    world.allocations = {}


def ip_outside_the_subnet(world: World) -> None:
    world.stored = [stored_pod(ip="10.99.0.2")]
    world.allocations = {adoption.owner("shop", "web-1"): "10.99.0.2"}


def every_process_dead(world: World) -> None:
    world.dead = {APP.key, PROXY.key}


def namespace_gone(world: World) -> None:
    world.gone = {(NETNS, NETNS_NAME)}


def veth_gone(world: World) -> None:
    world.gone = {(LINK, LINK_KEY)}


def hosts_gone(world: World) -> None:
    world.gone = {(HOSTS, NETNS_NAME)}


def sandbox_gone(world: World) -> None:
    world.gone = {(MOUNTNS, SANDBOX_KEY)}


def no_sandbox_entry(world: World) -> None:
    world.entries = [e for e in world.entries if e.kind != MOUNTNS]


def init_container_running(world: World) -> None:  # the runtime died while starting it
    world.stored = [stored_pod(init=True)]
    world.entries = [*SHARED, *POD_ENTRIES, process_entry("osm-init", 99)]


def stranger_running(world: World) -> None:
    world.entries.append(process_entry("removed-since", 102))


def one_container_dead(world: World) -> None:
    world.dead = {PROXY.key}


def init_completed(world: World) -> None:  # its entry was removed when it exited
    world.stored = [stored_pod(init=True)]


ADOPTED = {"app": APP, "proxy": PROXY}

RULES: list[tuple[str, Callable[[World], None], dict[str, Entry] | None, str]] = [
    # (case, what happened, adopted processes or None, why not adopted)
    ("everything still runs", unchanged, ADOPTED, ""),
    ("its init container completed", init_completed, ADOPTED, ""),
    ("one container died: restarted in place", one_container_dead, {"app": APP}, ""),
    ("the Pod was deleted", pod_deleted, None, "its Pod is gone from the API"),
    ("the Pod has ended", pod_succeeded, None, "it has ended (Succeeded)"),
    ("a namesake Pod was created", namesake, None, "not the one that ran there"),
    ("its IP is not its allocation", other_ip, None, "is not its allocation"),
    ("no allocation", no_allocation, None, "is not its allocation"),
    ("an IP outside the mesh", ip_outside_the_subnet, None, "is not a pod address"),
    ("every container died", every_process_dead, None, "none of its containers runs"),
    ("its namespace is gone", namespace_gone, None, f"gone: netns {NETNS_NAME}"),
    ("its veth is gone", veth_gone, None, f"gone: link {LINK_KEY}"),
    ("its hosts file is gone", hosts_gone, None, f"gone: hosts {NETNS_NAME}"),
    ("its sandbox is gone", sandbox_gone, None, f"gone: mountns {SANDBOX_KEY}"),
    ("it never had a sandbox", no_sandbox_entry, None, "it has no sandbox"),
    ("it was still initializing", init_container_running, None, "still starting (osm-init"),
    ("a process of no container runs", stranger_running, None, "still starting"),
]


@pytest.mark.parametrize(
    ("happened", "processes", "why"),
    [pytest.param(h, p, w, id=case) for case, h, p, w in RULES],
)
def test_a_pod_is_adopted_only_as_it_ran(
    happened: Callable[[World], None], processes: dict[str, Entry] | None, why: str
) -> None:
    world = World()
    happened(world)
    decided = world.decide()
    shared = {(e.kind, e.key) for e in SHARED}
    if processes is None:
        assert decided.adopt == ()
        assert why in decided.reasons[NETNS_NAME]
        assert decided.keep == shared  # torn down: all of it, the dead processes too
        assert decided.allocations == {}
        return
    (adopted,) = decided.adopt
    assert adopted == adoption.Adoption("shop", "web-1", NETNS_NAME, IP, adopted.sandbox, processes)
    assert str(adopted.sandbox) == SANDBOX_KEY
    assert decided.keep == shared | {(e.kind, e.key) for e in [*POD_ENTRIES, *processes.values()]}
    assert decided.allocations == {adoption.owner("shop", "web-1"): IP}
    assert decided.reasons == {}


def test_the_mesh_of_this_prefix_stays_and_that_of_another_goes() -> None:
    world = World()
    world.entries.append(Entry(NETNS, "other-mesh"))
    decided = world.decide()
    assert (NETNS, MESH.netns) in decided.keep
    assert (NETNS, "other-mesh") not in decided.keep


def test_pods_are_decided_one_by_one() -> None:
    world = World()
    second = pods.netns_name(PREFIX, "shop", "web-2")
    world.entries += [*pod_entries(second), process_entry("app", 200, second)]
    world.allocations[adoption.owner("shop", "web-2")] = "10.233.0.3"
    world.stored.append(stored_pod(name="web-2"))  # annotated with web-1's namespace
    decided = world.decide()
    assert [a.name for a in decided.adopt] == ["web-1"]
    assert "not the one that ran there" in decided.reasons[second]


def test_an_adopted_pods_cgroups_stay_and_those_of_a_pod_torn_down_go() -> None:
    """Removing a pod's cgroups kills what runs in them: an adopted pod keeps its own."""
    world = World()
    second = pods.netns_name(PREFIX, "shop", "web-2")
    cgroup = Entry(record.CGROUP, "osm-pods/shop_web-1", {"directories": [], "netns": NETNS_NAME})
    gone = Entry(record.CGROUP, "osm-pods/shop_web-2", {"directories": [], "netns": second})
    world.entries += [cgroup, gone]
    decided = world.decide()
    assert (record.CGROUP, cgroup.key) in decided.keep
    assert (record.CGROUP, gone.key) not in decided.keep
