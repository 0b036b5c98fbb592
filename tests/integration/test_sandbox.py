"""Pod sandboxes for real (root): volumes at their mountPaths for one pod's containers only,
never on the host; modes, users, read-only mounts, the pod's hosts file and network; and
nothing left after `remove` or after a crash and `record.teardown`.

Each test makes its own network namespaces (``osmtest-sbx-<random>``) and removes them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from osm.base import wellknown
from osm.runtime import mounts, process, record
from osm.runtime.sandbox import Mount, PodSandbox, SandboxError, VolumeFile

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount and network namespaces)"),
    pytest.mark.timeout(60),
]

NOBODY = process.APP_UID


@dataclass(frozen=True)
class PodNetns:
    name: str
    address: str
    hosts: Path


@pytest.fixture
def make_netns() -> Iterator[Callable[[], PodNetns]]:
    """Network namespaces with ``lo`` up, an address only they have, and a hosts file in
    /etc/netns/<name>/ (as `osm.runtime.network` writes it); all removed afterwards."""
    made: list[PodNetns] = []
    etc_existed = record.ETC_NETNS.exists()

    def make() -> PodNetns:
        name = f"osmtest-sbx-{secrets.token_hex(4)}"
        address = f"10.254.{len(made) + 1}.{secrets.randbelow(250) + 2}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        netns = PodNetns(name, address, record.ETC_NETNS / name / "hosts")
        made.append(netns)
        subprocess.run(
            ["ip", "-n", name, "-batch", "-"],
            input=f"link set lo up\naddr add {address}/32 dev lo\n",
            text=True,
            check=True,
        )
        netns.hosts.parent.mkdir(parents=True)
        netns.hosts.write_text(f"127.0.0.1\tlocalhost\n{address}\t{name}.pod\n")
        (netns.hosts.parent / "resolv.conf").write_text("# test\n")
        return netns

    yield make
    for netns in made:
        subprocess.run(["ip", "netns", "delete", netns.name], check=False)
        shutil.rmtree(netns.hosts.parent, ignore_errors=True)
    if not etc_existed:
        with contextlib.suppress(OSError):  # others may use it meanwhile
            record.ETC_NETNS.rmdir()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[tuple[record.Journal, Path]]:
    """A journal and a sandboxes base dir; whatever a test leaves is torn down."""
    journal = record.Journal.open(tmp_path / "state")
    try:
        yield journal, tmp_path / "state" / "sandboxes"
    finally:
        record.teardown(tmp_path / "state", journal=journal)
        journal.close()


@pytest.fixture
def missing_dir() -> Iterator[str]:
    """A directory below /etc that does not exist on the host (and must never)."""
    path = f"/etc/osm-sbx-test-{secrets.token_hex(4)}"
    assert not os.path.exists(path)
    yield path
    assert not os.path.exists(path), f"{path} appeared on the host"


def run(
    sandbox: PodSandbox, container: str, script: str, *, uid: int = 0, working_dir: str = ""
) -> subprocess.CompletedProcess[str]:
    argv = sandbox.command(
        container, ["sh", "-c", script], uid=uid, gid=uid, working_dir=working_dir
    )
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def mounts_below(path: Path) -> list[str]:
    where = os.path.realpath(path)
    return [m.mount_point for m in mounts.table() if m.mount_point.startswith(where)]


CONFIG = [
    VolumeFile("bootstrap.yaml", b"node: sidecar\n", 0o644),
    VolumeFile("key.pem", b"private\n", 0o600),
    VolumeFile("certs/ca.pem", b"ca\n", 0o444),
]


# -- visibility -------------------------------------------------------------------------------
def test_a_volume_is_seen_at_its_mount_path_by_its_container_only(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    journal, base = state
    conf = f"{missing_dir}/conf"
    pod_a = PodSandbox.create(
        journal,
        base,
        "pod-a",
        make_netns().name,
        {"config": CONFIG},
        {"proxy": [Mount("config", conf, read_only=True)], "app": []},
    )
    pod_b = PodSandbox.create(journal, base, "pod-b", make_netns().name, {}, {"app": []})

    seen = run(pod_a, "proxy", f"cat {conf}/bootstrap.yaml {conf}/certs/ca.pem")
    assert (seen.returncode, seen.stdout) == (0, "node: sidecar\nca\n"), seen.stderr
    for sandbox, container in ((pod_a, "app"), (pod_b, "app")):
        assert run(sandbox, container, f"test -e {missing_dir}").returncode == 1
    relative = run(pod_a, "proxy", "cat bootstrap.yaml", working_dir=conf, uid=NOBODY)
    assert relative.stdout == "node: sidecar\n", relative.stderr


def test_a_mount_path_missing_on_the_host_is_made_in_the_pod_only(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    journal, base = state
    top = f"/osm-sbx-test-{secrets.token_hex(4)}"  # below /: the whole root is overlaid
    netns = make_netns()
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        netns.name,
        {"config": CONFIG},
        {
            "deep": [Mount("config", f"{missing_dir}/a/b/conf")],
            "top": [Mount("config", f"{top}/conf", read_only=True)],
        },
    )
    try:
        deep = run(sandbox, "deep", f"cat {missing_dir}/a/b/conf/bootstrap.yaml")
        assert deep.stdout == "node: sidecar\n", deep.stderr
        # Below an overlaid root, the mounts that were there are still there.
        script = (
            f"cat {top}/conf/bootstrap.yaml && test -e /proc/self/mountinfo && "
            f"test -e /run/netns/{netns.name} && cat /etc/hosts"
        )
        overlaid = run(sandbox, "top", script)
        assert overlaid.stdout == "node: sidecar\n" + netns.hosts.read_text(), overlaid.stderr
        assert not os.path.exists(missing_dir) and not os.path.exists(top)
    finally:
        sandbox.remove()
    assert not os.path.exists(top)


# -- files, modes, users ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "mode"),
    [("bootstrap.yaml", "644"), ("key.pem", "600"), ("certs/ca.pem", "444"), ("run.sh", "755")],
)
def test_files_have_their_modes_and_belong_to_root(
    state: tuple[record.Journal, Path],
    make_netns: Callable[[], PodNetns],
    missing_dir: str,
    path: str,
    mode: str,
) -> None:
    journal, base = state
    files = [*CONFIG, VolumeFile("run.sh", b"#!/bin/sh\n", 0o755)]
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        make_netns().name,
        {"config": files},
        {"app": [Mount("config", missing_dir)]},
    )
    seen = run(sandbox, "app", f"stat -L -c '%a %u %g' {missing_dir}/{path}")
    assert seen.stdout.split() == [mode, "0", "0"], seen.stderr


@pytest.mark.parametrize(
    ("uid", "path", "readable"),
    [
        (wellknown.PROXY_UID, "bootstrap.yaml", True),
        (wellknown.PROXY_UID, "key.pem", False),
        (NOBODY, "certs/ca.pem", True),
        (NOBODY, "key.pem", False),
    ],
)
def test_pod_users_read_what_the_mode_allows(
    state: tuple[record.Journal, Path],
    make_netns: Callable[[], PodNetns],
    missing_dir: str,
    uid: int,
    path: str,
    readable: bool,
) -> None:
    journal, base = state
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        make_netns().name,
        {"config": CONFIG},
        {"proxy": [Mount("config", missing_dir, read_only=True)]},
    )
    seen = run(sandbox, "proxy", f"cat {missing_dir}/{path}", uid=uid)
    assert (seen.returncode == 0) == readable, seen.stderr
    if not readable:
        assert "Permission denied" in seen.stderr


@pytest.mark.parametrize(("read_only", "refused"), [(True, True), (False, False)])
def test_read_only_mounts_refuse_writes_even_to_root(
    state: tuple[record.Journal, Path],
    make_netns: Callable[[], PodNetns],
    missing_dir: str,
    read_only: bool,
    refused: bool,
) -> None:
    journal, base = state
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        make_netns().name,
        {"config": CONFIG},
        {"app": [Mount("config", missing_dir, read_only=read_only)]},
    )
    seen = run(sandbox, "app", f"touch {missing_dir}/new")
    assert (seen.returncode != 0) == refused, seen.stderr
    if refused:
        assert "Read-only file system" in seen.stderr


def test_a_sub_path_binds_one_file_and_keeps_it_through_updates(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    journal, base = state
    single = f"{missing_dir}/single.yaml"
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        make_netns().name,
        {"config": CONFIG},
        {
            "app": [
                Mount("config", single, sub_path="bootstrap.yaml"),
                Mount("config", f"{missing_dir}/whole"),
            ]
        },
    )
    sandbox.update_volume("config", [VolumeFile("bootstrap.yaml", b"node: v2\n")])
    seen = run(sandbox, "app", f"cat {single} {missing_dir}/whole/bootstrap.yaml")
    assert seen.stdout == "node: sidecar\nnode: v2\n", seen.stderr


# -- updates ----------------------------------------------------------------------------------
def test_an_updated_volume_shows_in_a_running_container_all_at_once(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    journal, base = state
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        make_netns().name,
        {"config": CONFIG},
        {"app": [Mount("config", missing_dir, read_only=True)]},
    )
    # One process lists the volume before and after the update, through the same mount.
    script = f"ls {missing_dir}; read line; ls {missing_dir}; cat {missing_dir}/added.txt"
    argv = sandbox.command("app", ["sh", "-c", script], uid=NOBODY, gid=NOBODY)
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        before = [child.stdout.readline().strip() for _ in range(3)]
        sandbox.update_volume(
            "config", [VolumeFile("bootstrap.yaml", b"v2\n"), VolumeFile("added.txt", b"new\n")]
        )
        output, _ = child.communicate("go\n", timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
    assert before == ["bootstrap.yaml", "certs", "key.pem"]
    assert output.split() == ["added.txt", "bootstrap.yaml", "new"]
    volume = sandbox.directory / "volumes" / "config"
    payloads = [p for p in os.listdir(volume) if p.startswith("..") and p != "..data"]
    assert len(payloads) == 1, "the previous payload is removed"


# -- the pod's network and hosts file -----------------------------------------------------------
def test_the_network_namespace_is_the_pods(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns]
) -> None:
    journal, base = state
    netns = make_netns()
    sandbox = PodSandbox.create(journal, base, "pod", netns.name, {}, {"app": []})
    bind = f"import socket; socket.socket().bind(('{netns.address}', 0)); print('bound')"
    inside = subprocess.run(
        sandbox.command("app", ["/usr/bin/python3", "-c", bind], uid=NOBODY, gid=NOBODY),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert inside.stdout == "bound\n", inside.stderr
    outside = subprocess.run(["/usr/bin/python3", "-c", bind], capture_output=True, check=False)
    assert outside.returncode != 0, "the address is the pod's only"
    interfaces = run(sandbox, "app", "ls /sys/class/net")
    assert interfaces.stdout.split() == ["lo"], "/sys describes the pod's network"


def test_etc_hosts_is_the_pods_and_shows_in_place_rewrites(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns]
) -> None:
    journal, base = state
    netns = make_netns()
    sandbox = PodSandbox.create(journal, base, "pod", netns.name, {}, {"app": []})
    assert run(sandbox, "app", "cat /etc/hosts", uid=NOBODY).stdout == netns.hosts.read_text()
    with netns.hosts.open("w") as out:  # in place, as osm.runtime.network rewrites it
        out.write("10.254.0.9\tnew-service\n")
    assert run(sandbox, "app", "cat /etc/hosts", uid=NOBODY).stdout == "10.254.0.9\tnew-service\n"
    assert Path("/etc/hosts").read_text() != netns.hosts.read_text()


# -- nothing left -----------------------------------------------------------------------------
def test_remove_leaves_no_mount_and_no_file(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    journal, base = state
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        make_netns().name,
        {"config": CONFIG},
        {"proxy": [Mount("config", missing_dir)], "app": []},
    )
    assert len(mounts_below(sandbox.directory)) == 2  # one namespace file per container
    sandbox.remove()
    sandbox.remove()  # idempotent
    assert mounts_below(sandbox.directory) == []
    assert not sandbox.directory.exists()
    assert journal.live(record.MOUNTNS) == []
    with pytest.raises(SandboxError, match="removed"):
        sandbox.update_volume("config", CONFIG)


def test_after_a_crash_teardown_leaves_nothing(
    tmp_path: Path, make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    state_dir = tmp_path / "state"
    base = state_dir / "sandboxes"
    journal = record.Journal.open(state_dir)
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        make_netns().name,
        {"config": CONFIG},
        {"proxy": [Mount("config", missing_dir)]},
    )
    # A container still runs when the runtime dies (kill -9: no remove, the journal's lock
    # is dropped by the kernel).
    sleeper = subprocess.Popen(sandbox.command("proxy", ["sleep", "60"], uid=NOBODY, gid=NOBODY))
    journal.close()
    del sandbox
    try:
        report = record.teardown(state_dir)
        assert report.ok, report.failed
        assert mounts_below(base) == []
        assert not base.exists()
        assert record.teardown(state_dir).removed == []  # idempotent
    finally:
        sleeper.kill()
        sleeper.wait()
    with record.Journal.open(state_dir) as reopened:
        assert reopened.live() == []


def test_a_failed_create_leaves_nothing(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    journal, base = state
    # /etc/hostname is a file: a directory cannot be mounted over it. The first container
    # is made before the second fails.
    with pytest.raises(SandboxError, match="is not a directory"):
        PodSandbox.create(
            journal,
            base,
            "pod",
            make_netns().name,
            {"config": CONFIG},
            {"ok": [Mount("config", missing_dir)], "bad": [Mount("config", "/etc/hostname")]},
        )
    assert mounts_below(base / "pod") == []
    assert not (base / "pod").exists()
    assert journal.live(record.MOUNTNS) == []


def test_an_empty_dir_is_writable_by_any_user_of_the_pod_and_a_payload_is_not(
    state: tuple[record.Journal, Path], make_netns: Callable[[], PodNetns], missing_dir: str
) -> None:
    """Kubernetes makes an emptyDir 0777 (Prometheus, as nobody, writes its TSDB there)."""
    journal, base = state
    netns = make_netns()
    sandbox = PodSandbox.create(
        journal,
        base,
        "pod",
        netns.name,
        {"data": [], "config": CONFIG},
        {"app": [Mount("data", f"{missing_dir}/data"), Mount("config", f"{missing_dir}/conf")]},
        frozenset({"data"}),
    )
    nobody = 65534
    try:
        wrote = run(sandbox, "app", f"echo x > {missing_dir}/data/wal", uid=nobody)
        assert wrote.returncode == 0, wrote.stderr
        refused = run(sandbox, "app", f"echo x > {missing_dir}/conf/new", uid=nobody)
        assert refused.returncode != 0
    finally:
        sandbox.remove()
