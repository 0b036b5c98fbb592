"""Which pods a restarted runtime adopts: the decision over its journal and the API's Pods.

The one idea: a runtime that was killed (``kill -9``) leaves its pods running, as a
kubelet's restart leaves its containers: their network namespaces, veths, IPs, hosts
files, sandboxes and container processes are all still there, and the journal
(`osm.runtime.record`) names them. The next runtime keeps every pod it can take over
and tears down the rest. `decide` says which, from what the journal names, the Pods the
API lists (after the first sync), the IPs the previous runtime allocated and what
`observe` saw of the host; it is a pure function so that each rule is a table row.

A stored Pod is adopted when all of these hold (its namespace N is
`osm.runtime.pods.netns_name` of the runtime's prefix):

- it has not ended (phase neither ``Succeeded`` nor ``Failed``);
- it is the Pod the previous runtime ran, not a namesake made since: its
  `wellknown.NETNS_ANNOTATION` names N and its ``status.podIP`` is the IP the journal's
  allocations give it (an address of the mesh subnet, not the gateway);
- the journal names N's namespace, its veth on the bridge, its hosts directory and its
  sandbox, and each exists;
- at least one of its containers' recorded processes still runs (pid and start time
  match, not a zombie), and no recorded process of its init containers (or of a name
  the Pod does not have) does: a start cut short is not taken over.

Its containers whose processes died meanwhile are restarted in the existing sandbox.
A Pod whose recorded processes are all dead is not adopted: it is torn down and started
again from scratch (the whole-tree kill: every pod recreated), which is the same path as a
new Pod and needs no partial state. Everything the journal names that no adopted pod
keeps is torn down (an adopted pod keeps its cgroups too: removing them kills what runs
in them), except the mesh network of the runtime's prefix (its namespace and
bridge stay, so adopted pods keep their links) and the shared directories
(``/etc/netns``, the sandboxes' base mount), which a later teardown removes.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from osm.base import wellknown
from osm.model.core import Pod
from osm.runtime import network, pods, record

EntryKey = tuple[str, str]
"""A journal entry's (kind, key)."""


def owner(namespace: str, name: str) -> str:
    """A pod's key in the IP pool (`osm.base.ipam`)."""
    return f"pod:{namespace}/{name}"


@dataclass(frozen=True, slots=True)
class Facts:
    """What `observe` saw of the journal's things: the PROCESS entries (by key) whose
    process still runs, and the other entries (kind, key) whose thing exists."""

    alive: frozenset[str] = frozenset()
    present: frozenset[EntryKey] = frozenset()


@dataclass(frozen=True, slots=True)
class Adoption:
    """One pod to take over as it runs."""

    namespace: str
    name: str
    netns: str
    ip: str
    sandbox: Path
    """Its sandbox directory (the MOUNTNS entry's key)."""
    processes: Mapping[str, record.Entry]
    """Container name -> the PROCESS entry of its running process (the others died)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What a starting runtime does with what the previous one left."""

    adopt: tuple[Adoption, ...] = ()
    keep: frozenset[EntryKey] = frozenset()
    """Entries not to tear down: the adopted pods' and the shared ones (the mesh)."""
    allocations: Mapping[str, str] = field(default_factory=dict)
    """The IP allocations that stay (the adopted pods'); every other is freed."""
    reasons: Mapping[str, str] = field(default_factory=dict)
    """Pod namespace -> why the pod that had it is not adopted (for the log)."""


SHARED = (record.ETC_DIR, record.SANDBOX_DIR)


def shared(entries: Iterable[record.Entry], mesh: network.MeshNetworkConfig) -> frozenset[EntryKey]:
    """What stays whatever is adopted: the mesh network of this runtime's prefix, and the
    shared directories (``/etc/netns``, the sandboxes' base mount)."""
    kept = {(e.kind, e.key) for e in entries if e.kind in SHARED}
    return frozenset({*kept, (record.NETNS, mesh.netns)})


def decide(
    entries: Sequence[record.Entry],
    stored: Iterable[Pod],
    allocations: Mapping[str, str],
    facts: Facts,
    *,
    prefix: str,
    mesh: network.MeshNetworkConfig,
) -> Decision:
    """Which of the pods the journal names are adopted (see the module's rules)."""
    keep = set(shared(entries, mesh))
    by_kind: dict[str, dict[str, record.Entry]] = {}
    for entry in entries:
        by_kind.setdefault(entry.kind, {})[entry.key] = entry
    sandboxes = {str(e.data.get("netns")): e for e in by_kind.get(record.MOUNTNS, {}).values()}
    processes: dict[str, list[record.Entry]] = {}
    for entry in by_kind.get(record.PROCESS, {}).values():
        processes.setdefault(str(entry.data.get("netns")), []).append(entry)
    journaled = set(by_kind.get(record.NETNS, {})) - {mesh.netns}
    adopted: list[Adoption] = []
    kept: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for pod in sorted(stored, key=lambda p: (p.namespace, p.name)):
        netns = pods.netns_name(prefix, pod.namespace, pod.name)
        if netns not in journaled:
            continue
        ip = allocations.get(owner(pod.namespace, pod.name), "")
        link = (record.LINK, f"{mesh.netns}/{network.veth_name(netns)}")
        box = sandboxes.get(netns)
        needed = [(record.NETNS, netns), link, (record.HOSTS, netns)]
        if box is not None:
            needed.append((record.MOUNTNS, box.key))
        live = [e for e in processes.get(netns, []) if e.key in facts.alive]
        containers = {c.name for c in pod.spec.containers}
        why = _refusal(pod, netns, ip, mesh, box, needed, facts, live, containers)
        if why:
            reasons[netns] = why
            continue
        assert box is not None
        keep.update(needed)
        keep.update((e.kind, e.key) for e in live)
        kept[owner(pod.namespace, pod.name)] = ip
        adopted.append(
            Adoption(
                pod.namespace,
                pod.name,
                netns,
                ip,
                Path(box.key),
                {str(e.data["name"]): e for e in live},
            )
        )
    taken = {a.netns for a in adopted}
    keep.update(
        (e.kind, e.key)
        for e in by_kind.get(record.CGROUP, {}).values()
        if str(e.data.get("netns")) in taken
    )
    for netns in sorted(journaled - taken):
        reasons.setdefault(netns, "its Pod is gone from the API")
    return Decision(tuple(adopted), frozenset(keep), kept, reasons)


def _refusal(
    pod: Pod,
    netns: str,
    ip: str,
    mesh: network.MeshNetworkConfig,
    box: record.Entry | None,
    needed: Sequence[EntryKey],
    facts: Facts,
    live: Sequence[record.Entry],
    containers: set[str],
) -> str:
    """Why ``pod`` is not adopted; "" when it is."""
    if pod.phase in ("Succeeded", "Failed"):
        return f"it has ended ({pod.phase})"
    if pod.metadata.annotations.get(wellknown.NETNS_ANNOTATION) != netns:
        return "the stored Pod is not the one that ran there (no netns annotation)"
    status = pod.manifest.get("status") or {}
    if not ip or status.get("podIP") != ip:
        return f"its stored IP {status.get('podIP')!r} is not its allocation {ip!r}"
    address = ipaddress.IPv4Address(ip)
    if address not in mesh.subnet or address == mesh.gateway:
        return f"its IP {ip} is not a pod address of {mesh.subnet}"
    if box is None:
        return "it has no sandbox"
    missing = [f"{kind} {key}" for kind, key in needed if (kind, key) not in facts.present]
    if missing:
        return "gone: " + ", ".join(missing)
    strangers = sorted({str(e.data.get("name")) for e in live} - containers)
    if strangers:
        return f"it was still starting ({', '.join(strangers)} running)"
    if not any(str(e.data.get("name")) in containers for e in live):
        return "none of its containers runs"
    return ""


# -- what is there (not pure) ------------------------------------------------------------------
def observe(entries: Sequence[record.Entry], mesh_netns: str) -> Facts:
    """Looks at the host: which recorded processes run, and which recorded namespaces,
    veths (in ``mesh_netns``), hosts directories and sandboxes exist. Blocks (``ip``)."""
    alive = frozenset(
        e.key
        for e in entries
        if e.kind == record.PROCESS
        and record.process_alive(int(e.data["pid"]), int(e.data["start_time"]))
    )
    links: set[str] = set()
    if network.netns_exists(mesh_netns):
        result = subprocess.run(
            ["ip", "-n", mesh_netns, "-o", "link", "show"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        for line in result.stdout.splitlines():
            parts = line.split(": ")
            if len(parts) > 1:
                links.add(parts[1].split("@")[0])
    present: set[EntryKey] = set()
    for entry in entries:
        if entry.kind == record.NETNS:
            exists = network.netns_exists(entry.key)
        elif entry.kind == record.LINK:
            exists = entry.data.get("netns") == mesh_netns and entry.data.get("name") in links
        elif entry.kind == record.HOSTS:
            exists = (record.ETC_NETNS / entry.key / "hosts").is_file()
        elif entry.kind == record.MOUNTNS:
            exists = Path(entry.key).is_dir()
        else:
            continue
        if exists:
            present.add((entry.kind, entry.key))
    return Facts(alive, frozenset(present))
