"""A cgroup per container: the kernel enforces a container's ``resources.limits``.

The one idea: a container with ``limits.memory`` or ``limits.cpu`` runs in its own cgroup,
``<parent>/<namespace>_<pod>/<container>`` (``parent`` names the runtime: its prefix), and
its process joins that cgroup itself before it execs the container's command: the
launcher is prefixed with `confine`, a ``sh -c`` that writes its own pid into the cgroups'
``cgroup.procs``, sets the open-files limit and execs the rest (so the pid the runtime
supervises stays the container's, and nothing it runs escapes the limit).

- **Which cgroups**: a pure cgroup v2 hierarchy whose root offers the memory controller
  (``memory.max``, ``memory.swap.max`` 0, ``memory.oom.group`` 1 as the kubelet sets it
  since 1.28, ``cpu.max``), else the v1 hierarchies mounted for memory and cpu (hybrid
  hosts: a cgroup2 without controllers is no use) with ``memory.limit_in_bytes``,
  ``memory.memsw.limit_in_bytes`` where swap is accounted, and ``cpu.cfs_quota_us`` over
  ``cpu.cfs_period_us``. Found from ``/proc/self/mountinfo``.
- **OOMKilled**: the kernel counts the OOM kills in a cgroup (v2 ``memory.events``, v1
  ``memory.oom_control``: ``oom_kill``). `ContainerCgroup.mark` reads it when the
  container starts; a run that ends with the count above the mark was OOM-killed, which
  the kubelet reports as Kubernetes does (reason ``OOMKilled``, exit code 137).
- **Removal**: `remove_pod` kills whatever still runs in a pod's cgroups, removes them
  deepest first, and the runtime's parent once it is empty. The kubelet journals a pod's
  cgroups (`osm.runtime.record`, kind ``cgroup``) before creating them, and teardown calls
  `remove_pod`, so a crash leaves none behind.
- **Nowhere to write**: no memory controller mounted, or its root not writable (a
  container without delegation): pods run without limits, and `Cgroups` says why once.

Open files: every container gets ``RLIMIT_NOFILE`` soft = hard = `NOFILE_LIMIT` (65536)
instead of whatever the runtime inherited (capped at the runtime's hard limit where it
may not raise it: without CAP_SYS_RESOURCE). containerd 1.x gave 1048576, containerd 2.0 and
Docker 25 give 1024 (hard 524288, for programs that raise it themselves, which Envoy and
Python do not). 65536 is above what the sidecars need under the benchmarks' load and
bounds what one runaway process holds of the host's file table; a process that exhausts
it gets EMFILE alone, and the kernel memory of its files is charged to its memory cgroup.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
CFS_PERIOD_US = 100_000
"""The CFS period the kubelet uses (100ms); the quota is the limit's share of it."""
MIN_CFS_QUOTA_US = 1_000
"""The kernel's (and the kubelet's) smallest quota: 1ms per period."""
MAX_MEMORY = 2**63 - 2**12
"""The largest memory limit the kernel takes (v1 reads it as unlimited, like v2's max);
a larger quantity (``1E``, say) is written as this."""
NOFILE_LIMIT = 65536
"""Every container's RLIMIT_NOFILE, soft and hard (see the module docstring)."""
CONTROLLERS = ("memory", "cpu")
OOM_KILLED_EXIT_CODE = 137
"""What Kubernetes reports for a container the kernel OOM-killed (128 + SIGKILL)."""


class CgroupError(RuntimeError):
    """A cgroup could not be made or set up (the message says which file refused)."""


# -- finding the hierarchies -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy: v1 with its controllers, or v2 with those its root
    offers (``cgroup.controllers``)."""

    version: int
    mount: Path
    controllers: frozenset[str]


def mounted(mountinfo: str) -> list[Hierarchy]:
    """The cgroup hierarchies of ``/proc/self/mountinfo`` whose root is the hierarchy's
    own (a mount of a sub-cgroup, as a container sees, is no place to make ours). v2
    controllers are left empty: `layout` reads them from the mount."""
    found: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3 or fields[3] != "/":
            continue
        fstype, options = after[0], after[2].split(",")
        mount = Path(fields[4].replace("\\040", " "))
        if fstype == "cgroup2":
            found.append(Hierarchy(2, mount, frozenset()))
        elif fstype == "cgroup":
            found.append(Hierarchy(1, mount, frozenset(options) & frozenset(CONTROLLERS)))
    return found


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the runtime makes cgroups: the hierarchy root of each controller it uses
    (v2: one root for all)."""

    version: int
    roots: Mapping[str, Path]

    def directories(self, relative: str) -> tuple[Path, ...]:
        """``relative`` in every hierarchy used, memory's first, each once."""
        return tuple(dict.fromkeys(root / relative for root in self.roots.values()))


def layout(hierarchies: Iterable[Hierarchy]) -> Layout | None:
    """The hierarchies to use: v2 where its root offers memory, else v1's memory (and
    cpu, where mounted); None without a memory controller."""
    hierarchies = list(hierarchies)
    for hierarchy in hierarchies:
        if hierarchy.version == 2:
            offered = _read(hierarchy.mount / "cgroup.controllers").split()
            if "memory" in offered:
                used = [c for c in CONTROLLERS if c in offered]
                return Layout(2, dict.fromkeys(used, hierarchy.mount))
    roots: dict[str, Path] = {}
    for controller in CONTROLLERS:
        for hierarchy in hierarchies:
            if hierarchy.version == 1 and controller in hierarchy.controllers:
                roots.setdefault(controller, hierarchy.mount)
    return Layout(1, roots) if "memory" in roots else None


# -- what to write -----------------------------------------------------------------------------
def limit_files(version: int, *, memory: int | None, cpu: int | None) -> list[tuple[str, str, str]]:
    """``(controller, file, value)`` in the order to write them, for a container limited
    to ``memory`` bytes and ``cpu`` millicores (None: no limit). Files that only some
    kernels have (swap accounting) come last; `ContainerCgroup` skips them where absent."""
    files: list[tuple[str, str, str]] = []
    if memory is not None and memory > MAX_MEMORY:
        memory = MAX_MEMORY  # what the kernel takes for no limit (v1 rounds it to pages)
    quota = None if cpu is None else max(MIN_CFS_QUOTA_US, cpu * CFS_PERIOD_US // 1000)
    if version == 2:
        if memory is not None:
            files.append(("memory", "memory.max", str(memory)))
            files.append(("memory", "memory.oom.group", "1"))
            files.append(("memory", "memory.swap.max", "0"))
        if quota is not None:
            files.append(("cpu", "cpu.max", f"{quota} {CFS_PERIOD_US}"))
        return files
    if memory is not None:
        files.append(("memory", "memory.limit_in_bytes", str(memory)))
        files.append(("memory", "memory.memsw.limit_in_bytes", str(memory)))
    if quota is not None:
        files.append(("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)))
        files.append(("cpu", "cpu.cfs_quota_us", str(quota)))
    return files


OPTIONAL_FILES = frozenset({"memory.memsw.limit_in_bytes", "memory.swap.max", "memory.oom.group"})


def confine(argv: Sequence[str], procs: Sequence[Path], *, nofile: int = NOFILE_LIMIT) -> list[str]:
    """``argv`` run by a shell that first joins the cgroups whose ``cgroup.procs`` files
    are ``procs`` and sets RLIMIT_NOFILE to ``nofile`` (soft and hard; where the runtime
    may not raise its own hard limit, as without CAP_SYS_RESOURCE, soft and hard to that
    hard limit), then execs it: the pid stays the same. If a cgroup cannot be joined it
    exits 125 without running ``argv`` (a container never runs outside its limits)."""
    script = (
        f'ulimit -n {int(nofile)} 2>/dev/null || ulimit -n "$(ulimit -H -n)" || exit 125; '
        'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
    )
    return ["sh", "-c", script, "sh", *(str(p) for p in procs), "--", *argv]


# -- one container -----------------------------------------------------------------------------
@dataclass
class ContainerCgroup:
    """A container's cgroup, one directory per hierarchy (memory's first)."""

    directories: tuple[Path, ...]
    version: int
    _mark: int = field(default=0, init=False)

    @property
    def procs(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self.directories)

    def oom_kills(self) -> int:
        """How many processes the kernel has OOM-killed in this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in _read(self.directories[0] / name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def mark(self) -> None:
        """Called as the container starts: later OOM kills are this run's."""
        self._mark = self.oom_kills()

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed a process of this run (since `mark`)."""
        return self.oom_kills() > self._mark


# -- the runtime's cgroups ---------------------------------------------------------------------
class Cgroups:
    """The cgroups of one runtime, under ``parent`` in each hierarchy of ``layout``.

    `container` makes a container's cgroup (and its pod's) with its limits; the caller
    journals ``pod_directories`` first. Without a usable layout, or once making one failed
    because the hierarchy is not writable, `container` returns None and `unavailable`
    says why (logged once)."""

    def __init__(self, parent: str, layout_: Layout | None) -> None:
        if not parent or "/" in parent or parent in (".", ".."):
            raise ValueError(f"cgroup parent {parent!r} must be a plain directory name")
        self.parent = parent
        self.layout = layout_
        self.unavailable = "" if layout_ else "no cgroup memory controller is mounted"
        self._warned = False

    @classmethod
    def detect(cls, parent: str, mountinfo: Path = MOUNTINFO) -> Cgroups:
        return cls(parent, layout(mounted(_read(mountinfo))))

    def pod_path(self, namespace: str, pod: str) -> str:
        return f"{self.parent}/{namespace}_{pod}"

    def pod_directories(self, namespace: str, pod: str) -> tuple[Path, ...]:
        """The pod's cgroup in each hierarchy (what the journal records); () if none."""
        if self.layout is None or self.unavailable:
            return ()
        return self.layout.directories(self.pod_path(namespace, pod))

    def warn_unlimited(self, what: str) -> str:
        """The message saying that ``what`` runs without limits; logged the first time."""
        message = f"{what} runs without resource limits: {self.unavailable}"
        if not self._warned:
            self._warned = True
            log.warning("%s (said once; every pod with limits runs without them)", message)
        return message

    def container(
        self, namespace: str, pod: str, container: str, *, memory: int | None, cpu: int | None
    ) -> ContainerCgroup | None:
        """Makes (or keeps) the container's cgroup with these limits; None where cgroups
        are unavailable. Raises `CgroupError` when a limit cannot be set."""
        if self.layout is None or self.unavailable:
            return None
        layout_ = self.layout
        relative = f"{self.pod_path(namespace, pod)}/{container}"
        try:
            if layout_.version == 2:
                self._delegate(layout_, self.pod_path(namespace, pod))
            for directory in layout_.directories(relative):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # not delegated to us, read-only, ...: say so, run anyway
            self.unavailable = f"cannot make cgroups ({error})"
            return None
        layout_ = self.layout  # `_delegate` may have dropped a controller
        for controller, name, value in limit_files(layout_.version, memory=memory, cpu=cpu):
            root = layout_.roots.get(controller)
            if root is None:  # v1 without a cpu hierarchy: memory is what matters
                continue
            path = root / relative / name
            if name in OPTIONAL_FILES and not path.exists():
                continue
            try:
                path.write_text(value)
            except OSError as error:
                raise CgroupError(f"cannot write {value} to {path}: {error}") from error
        return ContainerCgroup(layout_.directories(relative), layout_.version)

    def _delegate(self, layout_: Layout, pod_path: str) -> None:
        """v2: the controllers are enabled from the root down to the pod's cgroup, whose
        children (the containers) hold the processes (v2 allows processes only in
        leaves below the root). A controller other than memory that cannot be enabled
        (cpu, with a real-time process outside the root, say) is dropped with a warning:
        its limits are not enforced."""
        root = next(iter(layout_.roots.values()))
        directory = root
        for part in ("", *pod_path.split("/")):
            directory = directory / part if part else directory
            directory.mkdir(exist_ok=True)
            control = directory / "cgroup.subtree_control"
            for controller in list(layout_.roots):
                if controller in _read(control).split():
                    continue
                try:
                    control.write_text(f"+{controller}")
                except OSError as error:
                    if controller == "memory":
                        raise
                    log.warning("%s limits are not enforced: %s: %s", controller, control, error)
                    roots = {c: p for c, p in layout_.roots.items() if c != controller}
                    self.layout = layout_ = Layout(2, roots)


def node_capacity() -> dict[str, Fraction]:
    """What this node has, for the downward API's unset limits: its CPUs, its memory and
    the size of its root filesystem."""
    return {
        "cpu": Fraction(os.cpu_count() or 1),
        "memory": Fraction(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")),
        "ephemeral-storage": Fraction(shutil.disk_usage("/").total),
    }


def why_unavailable(probe: str, mountinfo: Path = MOUNTINFO) -> str:
    """Why pods here would run without limits ("" when a memory controller is writable):
    tries to make (and removes) the cgroup ``probe`` below the memory hierarchy's root."""
    found = layout(mounted(_read(mountinfo)))
    if found is None:
        return "no cgroup memory controller is mounted (v2 with memory, or v1 memory)"
    directory = found.roots["memory"] / probe
    try:
        directory.mkdir()
    except OSError as error:
        return f"the memory controller at {found.roots['memory']} is not writable: {error}"
    finally:
        with contextlib.suppress(OSError):
            directory.rmdir()
    return ""


def remove_pod(directories: Iterable[Path], *, timeout: float = 5.0) -> str:
    """Removes a pod's cgroups (each a ``<parent>/<namespace>_<pod>`` directory below a
    hierarchy's root), killing what still runs in them, and their parent if it is then
    empty. Returns what it removed, "" if nothing was there. Raises `CgroupError` if a
    cgroup keeps processes past ``timeout``."""
    removed: list[str] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        _check_pod_directory(directory)
        for cgroup in sorted(_tree(directory), key=lambda p: len(p.parts), reverse=True):
            _remove(cgroup, timeout)
        removed.append(str(directory))
        with contextlib.suppress(OSError):  # another pod's cgroups may be there
            directory.parent.rmdir()
    return f"cgroups {', '.join(removed)}" if removed else ""


def _check_pod_directory(directory: Path) -> None:
    """A journal names only ``<hierarchy root>/<parent>/<namespace>_<pod>``: refuse anything
    else, so that a damaged journal cannot have teardown remove another's cgroups."""
    hierarchy = directory.parent.parent
    if (
        not directory.is_absolute()
        or ".." in directory.parts
        or "_" not in directory.name
        or not os.path.ismount(hierarchy)
        or not (hierarchy / "cgroup.procs").exists()
    ):
        raise CgroupError(f"{directory} is not a pod's cgroup (two levels below a hierarchy)")


def _tree(directory: Path) -> list[Path]:
    found = [directory]
    for path in directory.iterdir():
        if path.is_dir() and not path.is_symlink():
            found.extend(_tree(path))
    return found


def _remove(cgroup: Path, timeout: float) -> None:
    """Kills every process in ``cgroup`` and removes it; a process that joined meanwhile,
    or one that has exited but not yet been reaped, keeps it busy a moment longer."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in _read(cgroup / "cgroup.procs").split() if p.isdigit()]
        for pid in pids:
            if pid != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                left = f" (processes {pids} in it)" if pids else ""
                raise CgroupError(f"cannot remove {cgroup}{left}: {error}") from error
        time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
