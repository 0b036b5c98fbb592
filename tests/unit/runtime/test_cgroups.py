"""Per-container cgroups: which hierarchies, what is written for which limits, how a
process joins its cgroup before it execs, OOM kills seen as OOMKilled, and removal.

Tables pin the pure parts (mountinfo, layout, limit files). Tests marked ``cgroup`` use
this machine's memory controller (skipped where none is writable): a 64Mi container that
allocates 300 MB is OOM-killed, and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osm.runtime import cgroups, kubelet, process, record
from tests.unit.runtime import test_kubelet as fakes

# The kubelet's fixtures (a runtime over a fake API, network and containers).
journal = fakes.journal
network = fakes.network
runtime = fakes.runtime

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
DEBIAN_V1 = """\
30 23 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
31 23 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
"""
PURE_V2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n"
NESTED = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [
        (
            HYBRID,
            [
                cgroups.Hierarchy(1, Path("/sys/fs/cgroup/cpu"), frozenset({"cpu"})),
                cgroups.Hierarchy(1, Path("/sys/fs/cgroup/memory"), frozenset({"memory"})),
                cgroups.Hierarchy(1, Path("/sys/fs/cgroup/pids"), frozenset()),
                cgroups.Hierarchy(2, Path("/sys/fs/cgroup/unified"), frozenset()),
            ],
        ),
        (
            DEBIAN_V1,
            [
                cgroups.Hierarchy(1, Path("/sys/fs/cgroup/cpu,cpuacct"), frozenset({"cpu"})),
                cgroups.Hierarchy(1, Path("/sys/fs/cgroup/memory"), frozenset({"memory"})),
            ],
        ),
        (PURE_V2, [cgroups.Hierarchy(2, Path("/sys/fs/cgroup"), frozenset())]),
        (NESTED, []),  # a sub-cgroup mounted as a root (a container's view): not ours
        ("", []),
    ],
)
def test_the_hierarchies_come_from_mountinfo(
    mountinfo: str, expected: list[cgroups.Hierarchy]
) -> None:
    assert cgroups.mounted(mountinfo) == expected


def v2(tmp_path: Path, controllers: str) -> cgroups.Hierarchy:
    (tmp_path / "cgroup.controllers").write_text(controllers + "\n")
    return cgroups.Hierarchy(2, tmp_path, frozenset())


def test_v2_is_used_where_its_root_offers_memory(tmp_path: Path) -> None:
    hierarchies = [v2(tmp_path, "cpuset cpu io memory pids"), *cgroups.mounted(DEBIAN_V1)]
    assert cgroups.layout(hierarchies) == cgroups.Layout(2, {"memory": tmp_path, "cpu": tmp_path})


def test_a_hybrid_hosts_empty_cgroup2_gives_way_to_v1(tmp_path: Path) -> None:
    hierarchies = [v2(tmp_path, ""), *cgroups.mounted(HYBRID)]
    assert cgroups.layout(hierarchies) == cgroups.Layout(
        1, {"memory": Path("/sys/fs/cgroup/memory"), "cpu": Path("/sys/fs/cgroup/cpu")}
    )


def test_without_a_memory_controller_there_is_no_layout(tmp_path: Path) -> None:
    cpu_only = "30 23 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    assert cgroups.layout([v2(tmp_path, "cpu pids"), *cgroups.mounted(cpu_only)]) is None


MI = 2**20
V2_MEMORY_EXTRAS = [("memory", "memory.oom.group", "1"), ("memory", "memory.swap.max", "0")]


@pytest.mark.parametrize(
    ("version", "memory", "cpu", "files"),
    [
        (
            2,
            64 * MI,
            500,
            [
                ("memory", "memory.max", "67108864"),
                ("memory", "memory.oom.group", "1"),
                ("memory", "memory.swap.max", "0"),
                ("cpu", "cpu.max", "50000 100000"),
            ],
        ),
        (
            1,
            64 * MI,
            1500,
            [
                ("memory", "memory.limit_in_bytes", "67108864"),
                ("memory", "memory.memsw.limit_in_bytes", "67108864"),
                ("cpu", "cpu.cfs_period_us", "100000"),
                ("cpu", "cpu.cfs_quota_us", "150000"),
            ],
        ),
        (1, None, 1, [("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "1000")]),
        (
            2,
            MI,
            None,
            [
                ("memory", "memory.max", "1048576"),
                ("memory", "memory.oom.group", "1"),
                ("memory", "memory.swap.max", "0"),
            ],
        ),
        (2, None, None, []),
        (2, 2**70, None, [("memory", "memory.max", str(cgroups.MAX_MEMORY)), *V2_MEMORY_EXTRAS]),
    ],
)
def test_what_is_written_for_which_limits(
    version: int, memory: int | None, cpu: int | None, files: list[tuple[str, str, str]]
) -> None:
    assert cgroups.limit_files(version, memory=memory, cpu=cpu) == files


def test_limits_are_written_into_each_hierarchys_cgroup(tmp_path: Path) -> None:
    memory, cpu = tmp_path / "memory", tmp_path / "cpu"
    memory.mkdir(), cpu.mkdir()
    made = cgroups.Cgroups("t-pods", cgroups.Layout(1, {"memory": memory, "cpu": cpu}))
    cgroup = made.container("shop", "web-1", "app", memory=64 * MI, cpu=250)
    assert cgroup is not None
    where = Path("t-pods/shop_web-1/app")
    assert cgroup.procs == (memory / where / "cgroup.procs", cpu / where / "cgroup.procs")
    assert (memory / where / "memory.limit_in_bytes").read_text() == str(64 * MI)
    assert not (memory / where / "memory.memsw.limit_in_bytes").exists()  # no swap accounting
    assert (cpu / where / "cpu.cfs_quota_us").read_text() == "25000"
    assert made.pod_directories("shop", "web-1") == (
        memory / "t-pods/shop_web-1",
        cpu / "t-pods/shop_web-1",
    )


def test_on_v2_controllers_are_enabled_down_to_the_pod_and_limits_set_in_the_leaf(
    tmp_path: Path,
) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    made = cgroups.Cgroups("t-pods", cgroups.Layout(2, {"memory": tmp_path, "cpu": tmp_path}))
    cgroup = made.container("shop", "web-1", "app", memory=64 * MI, cpu=500)
    assert cgroup is not None
    leaf = tmp_path / "t-pods/shop_web-1/app"
    assert cgroup.procs == (leaf / "cgroup.procs",)
    for parent in (tmp_path, tmp_path / "t-pods", tmp_path / "t-pods/shop_web-1"):
        assert (parent / "cgroup.subtree_control").exists()  # written "+memory", "+cpu"
    assert not (leaf / "cgroup.subtree_control").exists()  # the leaf holds the process
    assert (leaf / "memory.max").read_text() == str(64 * MI)
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cgroup.oom_kills() == 1


def test_detection_reads_the_mounts(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(DEBIAN_V1)
    found = cgroups.Cgroups.detect("t-pods", mountinfo)
    assert found.layout == cgroups.Layout(
        1, {"memory": Path("/sys/fs/cgroup/memory"), "cpu": Path("/sys/fs/cgroup/cpu,cpuacct")}
    )
    mountinfo.write_text("")
    assert cgroups.Cgroups.detect("t-pods", mountinfo).unavailable


def test_without_cgroups_a_container_runs_unlimited_and_that_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    none = cgroups.Cgroups("t-pods", None)
    assert none.container("shop", "web-1", "app", memory=MI, cpu=None) is None
    assert none.pod_directories("shop", "web-1") == ()
    with caplog.at_level(logging.WARNING, logger=cgroups.__name__):
        first = none.warn_unlimited("pod shop/web-1")
        second = none.warn_unlimited("pod shop/web-2")
    assert "pod shop/web-2 runs without resource limits: no cgroup memory controller" in second
    assert first != second and len(caplog.records) == 1


def test_a_hierarchy_that_refuses_new_cgroups_makes_them_unavailable(tmp_path: Path) -> None:
    read_only = tmp_path / "memory"
    read_only.write_text("")  # not a directory: mkdir below it fails as on a read-only mount
    made = cgroups.Cgroups("t-pods", cgroups.Layout(1, {"memory": read_only}))
    assert made.container("shop", "web-1", "app", memory=MI, cpu=None) is None
    assert "cannot make cgroups" in made.unavailable


def test_a_confined_process_joins_its_cgroups_and_gets_the_open_files_limit_then_execs(
    tmp_path: Path,
) -> None:
    procs = [tmp_path / "memory.procs", tmp_path / "cpu.procs"]
    report = "echo $$; ulimit -Sn; ulimit -Hn"
    argv = cgroups.confine(["sh", "-c", report], procs, nofile=4096)
    child = subprocess.run(argv, capture_output=True, text=True, check=True)
    pid, soft, hard = child.stdout.split()
    assert [p.read_text().strip() for p in procs] == [pid, pid]  # its own pid: it exec'd
    assert (soft, hard) == ("4096", "4096")


def test_a_process_that_cannot_join_its_cgroup_does_not_run(tmp_path: Path) -> None:
    argv = cgroups.confine(["touch", str(tmp_path / "ran")], [tmp_path / "missing" / "procs"])
    assert subprocess.run(argv, capture_output=True, check=False).returncode == 125
    assert not (tmp_path / "ran").exists()


async def test_the_runtimes_reason_for_an_exit_replaces_error(tmp_path: Path) -> None:
    with record.Journal.open(tmp_path) as opened:
        spec = process.ProcessSpec(
            name="app",
            netns="",
            argv=("sh", "-c", "kill -9 $$"),
            env={"PATH": process.DEFAULT_PATH},
            log=tmp_path / "app.log",
            restart_policy="Never",
            launcher=lambda argv, uid, gid: list(argv),
            exit_reason=lambda: "OOMKilled",
        )
        container = process.ContainerProcess(spec, opened)
        await container.start()
        assert await container.wait() == 137
        assert container.last_termination == "OOMKilled"


# -- the kubelet ---------------------------------------------------------------------------------
def limited_pod(name: str, memory: str = "64Mi") -> dict[str, Any]:
    return fakes.bare_pod(
        name,
        containers=[
            {
                "name": "main",
                "command": ["python3", "-m", "app"],
                "resources": {"limits": {"memory": memory, "cpu": "500m"}},
            }
        ],
    )


async def test_a_pod_whose_limits_cannot_be_enforced_runs_and_says_so(
    runtime: kubelet.Kubelet, network: fakes.FakeNetwork
) -> None:
    network.gate.set()
    runtime.cgroups = cgroups.Cgroups("t-pods", None)
    api: Any = runtime.api
    await api.apply([limited_pod("solo")])

    def message() -> str:
        pod = api.objects.get(("Pod", "shop", "solo"), {})
        status = pod.get("status", {})
        return str(status.get("message", "")) if status.get("phase") == "Running" else ""

    await fakes.until(lambda: "without resource limits" in message(), "a Running pod that says so")
    (started,) = [c for c in fakes.FakeContainer.started_names if c == "main"]
    assert started


# -- this machine's cgroups ----------------------------------------------------------------------
def _real_parent() -> str:
    return f"osm-unit-{os.getpid()}-{secrets.token_hex(3)}-pods"


WHY = cgroups.why_unavailable(_real_parent()) if sys.platform == "linux" else "not Linux"
needs_cgroups = pytest.mark.skipif(bool(WHY), reason=f"no writable memory controller: {WHY}")


@pytest.fixture
def real() -> Iterator[cgroups.Cgroups]:
    made = cgroups.Cgroups.detect(_real_parent())
    yield made
    assert made.layout is not None
    for root in made.layout.roots.values():
        leftover = root / made.parent
        if leftover.exists():
            cgroups.remove_pod([d for d in leftover.iterdir() if d.is_dir()])
        with contextlib.suppress(FileNotFoundError):
            leftover.rmdir()


@needs_cgroups
def test_a_container_over_its_memory_limit_is_oom_killed_and_seen_so(
    real: cgroups.Cgroups,
) -> None:
    cgroup = real.container("shop", "hog-1", "app", memory=64 * MI, cpu=None)
    assert cgroup is not None
    cgroup.mark()
    hog = [sys.executable, "-c", "b = bytearray(300 * 2**20); print('survived')"]
    child = subprocess.run(cgroups.confine(hog, cgroup.procs), capture_output=True, check=False)
    assert (child.returncode, child.stdout) == (-9, b"")
    assert cgroup.oom_killed()
    cgroup.mark()  # the next run starts clean
    assert not cgroup.oom_killed()


@needs_cgroups
def test_removing_a_pods_cgroups_kills_what_runs_there_and_leaves_nothing(
    real: cgroups.Cgroups, tmp_path: Path
) -> None:
    cgroup = real.container("shop", "web-1", "app", memory=64 * MI, cpu=100)
    assert cgroup is not None and real.layout is not None
    straggler = subprocess.Popen(cgroups.confine(["sleep", "60"], cgroup.procs))
    reaper = threading.Thread(target=straggler.wait)  # a zombie would keep its cgroup busy
    reaper.start()
    joined = cgroup.procs[0]
    while str(straggler.pid) not in joined.read_text().split():
        time.sleep(0.01)
    directories = real.pod_directories("shop", "web-1")
    with record.Journal.open(tmp_path) as opened:  # as after a crash: teardown by the journal
        opened.created(record.CGROUP, "k", directories=[str(d) for d in directories])
        report = record.teardown(tmp_path, journal=opened)
    assert report.ok, report.failed
    reaper.join(timeout=5)
    assert straggler.returncode == -9
    assert not any(d.exists() for d in directories)
    assert not any((root / real.parent).exists() for root in real.layout.roots.values())


@needs_cgroups
def test_teardown_refuses_a_directory_that_is_not_a_pods_cgroup(tmp_path: Path) -> None:
    with pytest.raises(cgroups.CgroupError, match="not a pod's cgroup"):
        cgroups.remove_pod([tmp_path])


@needs_cgroups
async def test_the_kubelet_makes_a_pods_cgroups_and_removes_them_with_it(
    runtime: kubelet.Kubelet, network: fakes.FakeNetwork, real: cgroups.Cgroups
) -> None:
    network.gate.set()
    runtime.cgroups = real
    api: Any = runtime.api
    await api.apply([limited_pod("solo")])
    await fakes.until(lambda: ("shop", "solo") in runtime.pods, "the pod")
    await fakes.until(lambda: runtime.pods[("shop", "solo")].ready, "the pod to be ready")
    directories = real.pod_directories("shop", "solo")
    assert (directories[0] / "main" / "memory.limit_in_bytes").exists() or (
        directories[0] / "main" / "memory.max"
    ).exists()
    assert runtime._journal().get(record.CGROUP, real.pod_path("shop", "solo")) is not None
    await runtime._remove_pod(runtime.pods[("shop", "solo")])
    assert not any(d.exists() for d in directories)
    assert runtime._journal().live(record.CGROUP) == []
    await asyncio.sleep(0)
