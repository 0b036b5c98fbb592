"""A pod's mount namespaces: its Secret and ConfigMap volumes at their mountPaths, seen by
that pod's containers only, and its hosts file over ``/etc/hosts``.

The one idea: each container of a pod gets a mount namespace of its own, made once when
the pod starts and kept by bind-mounting it to a file (as ``ip netns`` keeps network
namespaces); every process of that container enters it and the pod's network namespace:
``nsenter --mount=<file> --net=/run/netns/<netns> -- setpriv ... -- argv``. Both programs
exec, so the pid the runtime gets is the container's own. Inside, as ``ip netns exec``
would have it, ``/sys`` describes the pod's network (and, as in a Kubernetes pod, ``/dev/shm``
is a tmpfs of its own) and each file of
``/etc/netns/<netns>/`` (the hosts file, resolv.conf) is bound over its ``/etc`` namesake;
the runtime rewrites those in place, so running containers see the changes. Then each of
the container's ``volumeMounts`` is a bind mount of the volume's staging directory (or, with
``subPath``, of one file or directory in it) at ``mountPath``, read-only when asked.

Mount sets are per container, as in Kubernetes: the sidecar's bootstrap Secret at
``/etc/envoy`` is visible to the sidecar, not to the app next to it.

Volumes are written by the runtime as Kubernetes' AtomicWriter lays them out, under a
root-only directory (``<base>/<pod>/`` is 0700, so is ``volumes/``)::

    <base>/<pod>/volumes/<volume>/        0755 (an emptyDir: 0777), bound at mountPath
        ..2024_05_01_12_00_00.Xy12ab/     0755, the payload: files with their modes
        ..data -> ..2024_...              swapped in one rename by `PodSandbox.update_volume`
        bootstrap.yaml -> ..data/bootstrap.yaml
    <base>/<pod>/ns/<container>           the container's mount namespace (an nsfs bind mount)
    <base>/<pod>/scratch/                 empty on the host; a tmpfs in each namespace

Files are root's; a pod's processes (UID 1500, 65534) read them through the mount as their
mode allows (Kubernetes' default 0644). A ``subPath`` mount binds what the path names when
the pod starts and, as in Kubernetes, does not follow later updates.

A mountPath that does not exist on the host (``/etc/envoy``) is made inside the namespace
only: its nearest existing ancestor gets an overlayfs whose lower layer is the ancestor
itself and whose upper layer is on the namespace's scratch tmpfs; the mounts that were
below the ancestor are moved back on top (``open_tree`` + ``move_mount``); then the missing
directories are made in the overlay. Nothing is created on the host's filesystem outside
``<base>``. Writes by root inside the pod below such an ancestor land in that tmpfs (at most
`SCRATCH_SIZE`), not on the host; pods run as non-root users, so this rarely shows.

How a namespace is made: a short-lived thread of the runtime unshares its mount namespace
(the rest of the process is untouched), builds it with mount(2) calls, and opens it; the
caller binds that to the namespace file, which must live on a private mount: ``<base>`` is
made a private bind mount of itself once (as iproute2 does for /run/netns). No helper
process runs, so a namespace costs a few milliseconds.

A restarted runtime takes a running pod's sandbox over (`PodSandbox.attach`): the
journal names its directory, the directory holds its volumes and namespace files.

Everything is journaled first (`osm.runtime.record`): ``<base>`` as ``SANDBOX_DIR``, each
pod's directory as ``MOUNTNS``, whose teardown unmounts the namespace files and removes the
directory. A namespace lives on while a process is in it, and its mounts with it; they are
gone when its last process is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from osm.runtime import mounts, process, record

DATA = "..data"
"""The symlink naming a volume's current payload directory (Kubernetes' AtomicWriter)."""
VOLUMES = "volumes"
NAMESPACES = "ns"
SCRATCH = "scratch"
SCRATCH_SIZE = "64m"
"""The size limit of each namespace's tmpfs (overlay upper layers)."""
SHM_SIZE = 64 * 1024 * 1024
"""Each namespace's /dev/shm, Kubernetes' default size."""
DEFAULT_MODE = 0o644
"""Kubernetes' defaultMode for Secret and ConfigMap volumes."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
_OVERLAY_UNSAFE = re.compile(r"[,:\\]")


class SandboxError(RuntimeError):
    """A volume or mount cannot be set up as specified, or a mount call failed."""


class VolumeFileLike(Protocol):
    """One file of a volume: a path relative to the volume, its bytes and its mode. Any
    object with these three attributes will do (e.g. `osm.runtime.podspec.VolumeFile`)."""

    @property
    def path(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def mode(self) -> int: ...


@dataclass(frozen=True, slots=True)
class VolumeFile:
    """A file of a Secret or ConfigMap volume (``items[].path``, the value, ``mode``)."""

    path: str
    data: bytes
    mode: int = DEFAULT_MODE


@dataclass(frozen=True, slots=True)
class Mount:
    """One of a container's ``volumeMounts``."""

    volume: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""


# -- validation (the user's errors, all before anything is made) --------------------------
def file_problems(files: Iterable[VolumeFileLike]) -> list[str]:
    """What is wrong with a volume's files, as Kubernetes' AtomicWriter checks them: a path
    is relative, has no ``..`` element and does not start with ``..``; no path is another's
    directory; modes are 0 to 0777."""
    problems = []
    paths: set[str] = set()
    for item in files:
        path = item.path
        parts = path.split("/")
        if not path or path.startswith("/"):
            problems.append(f'file path "{path}" must be relative and not empty')
        elif path.startswith("..") or ".." in parts or "" in parts or "." in parts:
            problems.append(f'file path "{path}" must not contain "..", "." or "//" elements')
        elif path in paths:
            problems.append(f'file path "{path}" appears twice')
        if not 0 <= item.mode <= 0o777:
            problems.append(f'file "{path}": mode {item.mode:#o} is not between 0 and 0777')
        paths.add(path)
    for path in sorted(paths):
        for other in paths:
            if other.startswith(path + "/"):
                problems.append(f'file path "{path}" is also the directory of "{other}"')
                break
    return problems


def mount_problems(
    volumes: Iterable[str], container: str, container_mounts: Sequence[Mount]
) -> list[str]:
    """What is wrong with one container's mounts: unknown volumes, mountPaths that are not
    absolute and normalized (or are ``/``), a mountPath twice, a subPath that is absolute
    or has ``..``."""
    known = set(volumes)
    problems = []
    seen: set[str] = set()
    for index, item in enumerate(container_mounts):
        where = f"container {container}: volumeMounts[{index}]"
        if item.volume not in known:
            problems.append(f'{where}: there is no volume "{item.volume}"')
        path = item.mount_path
        if not path.startswith("/") or os.path.normpath(path) != path or path == "/":
            problems.append(
                f'{where}: mountPath "{path}" must be an absolute, normalized path other than /'
            )
        elif path in seen:
            problems.append(f'{where}: mountPath "{path}" is mounted twice')
        seen.add(path)
        sub = item.sub_path
        if sub and (sub.startswith("/") or ".." in sub.split("/")):
            problems.append(f'{where}: subPath "{sub}" must be relative and without ".."')
    return problems


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise SandboxError(f'{kind} name "{name}" must be letters, digits and "_.-"')


# -- the sandbox ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Bind:
    """One bind mount to make in a namespace."""

    source: str
    target: str
    directory: bool
    read_only: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one container's namespace holds."""

    netns: str
    scratch: str
    etc: tuple[tuple[str, str], ...]
    binds: tuple[_Bind, ...]


@dataclass
class PodSandbox:
    """One pod's mount namespaces and volumes. `create` makes them; `command` runs a
    container's process in them; `remove` undoes everything. Methods block (mount calls,
    file writes): call them from a worker thread in asyncio code. Thread-safe."""

    journal: record.Journal
    directory: Path
    name: str
    netns: str
    volumes: tuple[str, ...]
    containers: tuple[str, ...]
    pinned: frozenset[str] = frozenset()
    """Volumes that a ``subPath`` mount binds into: their old payloads are kept."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(
        cls,
        journal: record.Journal,
        base_dir: Path,
        name: str,
        netns: str,
        volumes: Mapping[str, Sequence[VolumeFileLike]],
        containers: Mapping[str, Sequence[Mount]],
        writable: Collection[str] = (),
    ) -> PodSandbox:
        """Writes ``volumes`` (name -> files) and makes one mount namespace for each of
        ``containers`` (name -> its mounts; list every container, also those without
        mounts: each gets the pod's hosts file and network); the ``writable`` volumes (the
        emptyDirs) are mode 0777, the others 0755. Call it after the pod's
        network namespace and hosts directory exist. Journaled; on failure whatever was
        made is removed again.

        Raises `SandboxError` for invalid names, paths or mounts (all problems at once),
        an existing sandbox of that name, or a mount call that failed."""
        _check_name("pod", name)
        problems = []
        for volume, files in volumes.items():
            if not _NAME.match(volume):
                problems.append(f'volume name "{volume}" must be letters, digits and "_.-"')
            problems += [f"volume {volume}: {problem}" for problem in file_problems(files)]
        for container, container_mounts in containers.items():
            if not _NAME.match(container):
                problems.append(f'container name "{container}" must be letters, digits and "_.-"')
            problems += mount_problems(volumes, container, container_mounts)
        if problems:
            raise SandboxError(f"pod {name}: " + "; ".join(problems))
        if not (record.NETNS_DIR / netns).exists():
            raise SandboxError(f'pod {name}: network namespace "{netns}" does not exist')
        base = Path(os.path.realpath(base_dir))
        prepare_base(journal, base)
        directory = base / name
        if journal.get(record.MOUNTNS, str(directory)) is not None or directory.exists():
            raise SandboxError(f"pod {name}: {directory} exists already")
        with record.creating(journal, record.MOUNTNS, str(directory), base=str(base), netns=netns):
            for part in (directory, directory / VOLUMES, directory / NAMESPACES):
                part.mkdir(mode=0o700)
                os.chmod(part, 0o700)
            (directory / SCRATCH).mkdir(mode=0o700)
            for volume, files in volumes.items():
                volume_dir = directory / VOLUMES / volume
                volume_dir.mkdir()
                # An emptyDir is world-writable, as Kubernetes makes it (0777): any user of
                # the pod writes there; payload volumes are the runtime's, 0755.
                os.chmod(volume_dir, 0o777 if volume in writable else 0o755)
                write_payload(volume_dir, files)
            etc = _etc_binds(netns)
            for container, container_mounts in containers.items():
                binds = tuple(_bind(directory, name, container, m) for m in container_mounts)
                plan = _Plan(netns, str(directory / SCRATCH), etc, binds)
                _attach(
                    _in_new_namespace(plan, f"{name}/{container}"),
                    directory / NAMESPACES / container,
                )
        pinned = frozenset(m.volume for ms in containers.values() for m in ms if m.sub_path)
        return cls(journal, directory, name, netns, tuple(volumes), tuple(containers), pinned)

    @classmethod
    def attach(
        cls,
        journal: record.Journal,
        directory: Path,
        netns: str,
        containers: Sequence[str],
        pinned: Collection[str] = (),
    ) -> PodSandbox:
        """The sandbox an earlier runtime made at ``directory`` for pod namespace
        ``netns`` (a restarted runtime adopting the pod): its volumes are what it holds.
        Raises `SandboxError` if the journal does not name it or one of ``containers``
        has no mount namespace there."""
        if journal.get(record.MOUNTNS, str(directory)) is None:
            raise SandboxError(f"{directory} is not a sandbox of this journal")
        table = mounts.table()
        missing = [
            c for c in containers if not mounts.mounted_at(directory / NAMESPACES / c, table)
        ]
        if missing:
            raise SandboxError(f"{directory}: no mount namespace for {', '.join(missing)}")
        volumes = tuple(sorted(p.name for p in (directory / VOLUMES).iterdir()))
        return cls(
            journal, directory, directory.name, netns, volumes, tuple(containers), frozenset(pinned)
        )

    def namespace_file(self, container: str) -> Path:
        """The file that holds ``container``'s mount namespace."""
        if container not in self.containers:
            raise SandboxError(f'pod {self.name} has no container "{container}"')
        return self.directory / NAMESPACES / container

    def command(
        self,
        container: str,
        argv: Sequence[str],
        *,
        uid: int,
        gid: int,
        working_dir: str = "",
    ) -> list[str]:
        """The argv that runs ``argv`` as ``uid``/``gid`` in ``container``'s mount
        namespace and the pod's network namespace, in ``working_dir`` (as the container
        sees it; default ``/``). Both namespace files are opened by ``nsenter`` on the
        host before it enters either."""
        namespace = self.namespace_file(container)
        if working_dir and working_dir != "/":
            if not working_dir.startswith("/"):
                raise SandboxError(f'workingDir "{working_dir}" must be an absolute path')
            if argv and "=" in argv[0]:  # env would take it for a variable
                raise SandboxError(f'with a workingDir the command "{argv[0]}" must not have "="')
            argv = ["env", f"--chdir={working_dir}", "--", *argv]
        return [
            "nsenter",
            f"--mount={namespace}",
            f"--net={record.NETNS_DIR / self.netns}",
            "--",
            *process.as_user(argv, uid=uid, gid=gid),
        ]

    def update_volume(self, volume: str, files: Sequence[VolumeFileLike]) -> None:
        """Replaces ``volume``'s files in one step: containers see either the old set or
        the new one (the ``..data`` symlink is renamed over), never a mix. ``subPath``
        mounts keep what they had (as in Kubernetes)."""
        problems = file_problems(files)
        if volume not in self.volumes:
            problems.insert(0, f'there is no volume "{volume}"')
        if problems:
            raise SandboxError(f"pod {self.name}: volume {volume}: " + "; ".join(problems))
        with self._lock:
            if self.journal.get(record.MOUNTNS, str(self.directory)) is None:
                raise SandboxError(f"pod {self.name}: the sandbox was removed")
            keep = volume in self.pinned
            write_payload(self.directory / VOLUMES / volume, files, keep_previous=keep)

    def remove(self) -> None:
        """Unmounts the namespace files and removes the pod's directory. Idempotent.
        Processes still in a namespace keep it (and its mounts) until they end."""
        with self._lock:
            entry = self.journal.get(record.MOUNTNS, str(self.directory))
            if entry is None:
                return
            record.teardown_entry(entry)
            self.journal.removed(record.MOUNTNS, str(self.directory))


def prepare_base(journal: record.Journal, base: Path) -> None:
    """Makes ``base`` (an absolute, resolved path) a private bind mount of itself, once:
    namespace files may only be bound on a private mount, or they would propagate into
    the namespaces they hold. Idempotent; serialized across threads and processes."""
    lock = os.open(journal.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entry = journal.get(record.SANDBOX_DIR, str(base))
        mount_id = entry.data.get("mount_id") if entry else None
        if mount_id is not None and any(
            m.mount_id == mount_id for m in mounts.mounted_at(base, mounts.table())
        ):
            return
        made = bool(entry.data.get("made")) if entry else not base.exists()
        with record.creating(journal, record.SANDBOX_DIR, str(base), made=made):
            base.mkdir(mode=0o700, parents=True, exist_ok=True)
            if made:
                os.chmod(base, 0o700)
            mounts.mount(str(base), str(base), None, mounts.MS_BIND)
            mounts.mount(None, str(base), None, mounts.MS_PRIVATE)
            stack = mounts.mounted_at(base, mounts.table())
            journal.created(record.SANDBOX_DIR, str(base), made=made, mount_id=stack[-1].mount_id)
    finally:
        os.close(lock)


# -- volumes on disk -----------------------------------------------------------------------
def write_payload(
    volume_dir: Path, files: Iterable[VolumeFileLike], *, keep_previous: bool = False
) -> None:
    """Writes ``files`` into a new payload directory of ``volume_dir`` and makes it the
    current one (Kubernetes' AtomicWriter): the ``..data`` symlink is replaced by a rename,
    each top-level name is a symlink through ``..data``, names no longer in the payload are
    removed, and so is the previous payload unless ``keep_previous`` (a ``subPath`` mount
    holds a file or directory of it, which must not change under the container)."""
    files = list(files)
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    payload = Path(tempfile.mkdtemp(prefix=f"..{stamp}.", dir=volume_dir))
    try:
        os.chmod(payload, 0o755)
        for item in files:
            target = payload / item.path
            _make_directories(payload, target.parent)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(item.data)
                os.fchmod(out.fileno(), item.mode)
        data = volume_dir / DATA
        previous = os.readlink(data) if data.is_symlink() else None
        staged = volume_dir / (DATA + "_tmp")
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        staged.symlink_to(payload.name)
        staged.rename(data)
    except BaseException:
        shutil.rmtree(payload, ignore_errors=True)
        raise
    names = {item.path.split("/", 1)[0] for item in files}
    for name in sorted(names):
        link = volume_dir / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{name}")
    for entry in os.listdir(volume_dir):
        if not entry.startswith("..") and entry not in names:
            (volume_dir / entry).unlink()
    if keep_previous or previous is None:
        return
    if previous.startswith("..") and "/" not in previous:
        shutil.rmtree(volume_dir / previous, ignore_errors=True)


def _make_directories(root: Path, directory: Path) -> None:
    """Makes ``directory`` and its parents up to ``root`` with mode 0755 (not the umask's)."""
    missing = []
    while directory != root and not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
        os.chmod(path, 0o755)


def _bind(directory: Path, pod: str, container: str, item: Mount) -> _Bind:
    volume_dir = directory / VOLUMES / item.volume
    source = str(volume_dir)
    if item.sub_path:
        source = os.path.realpath(volume_dir / item.sub_path)
        if not source.startswith(str(volume_dir) + "/") or not os.path.lexists(source):
            raise SandboxError(
                f'pod {pod}: container {container}: subPath "{item.sub_path}" is not in '
                f'volume "{item.volume}"'
            )
    return _Bind(source, item.mount_path, os.path.isdir(source), item.read_only)


def _etc_binds(netns: str) -> tuple[tuple[str, str], ...]:
    """``/etc/netns/<netns>/<name>`` -> ``/etc/<name>`` for each file there, as ``ip netns
    exec`` binds them."""
    directory = record.ETC_NETNS / netns
    if not directory.is_dir():
        return ()
    return tuple((str(directory / n), f"/etc/{n}") for n in sorted(os.listdir(directory)))


# -- making a namespace (in a thread of its own) -------------------------------------------
def _in_new_namespace(plan: _Plan, what: str) -> int:
    """Builds a namespace per ``plan`` in a short-lived thread; an fd that holds it."""
    made: list[int] = []
    failed: list[BaseException] = []

    def build() -> None:
        try:
            made.append(_build(plan))
        except BaseException as error:  # handed to the caller's thread
            failed.append(error)

    thread = threading.Thread(target=build, name=f"mountns-{what}")
    thread.start()
    thread.join()
    if failed:
        error = failed[0]
        if isinstance(error, SandboxError):
            raise SandboxError(f"{what}: {error}") from error
        raise SandboxError(f"{what}: cannot make the mount namespace: {error}") from error
    return made[0]


def _attach(fd: int, namespace_file: Path) -> None:
    """Binds the namespace ``fd`` holds to ``namespace_file`` (on the private base)."""
    try:
        os.close(os.open(namespace_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        mounts.mount(f"/proc/self/fd/{fd}", str(namespace_file), None, mounts.MS_BIND)
    finally:
        os.close(fd)


def _build(plan: _Plan) -> int:
    """Runs in its own thread: unshares the thread's mount namespace, builds it, and
    returns an fd of it. The thread ends afterwards, so nothing else runs in there."""
    mounts.unshare(mounts.CLONE_NEWNS)
    mounts.mount(None, "/", None, mounts.MS_REC | mounts.MS_SLAVE)
    netns = os.open(record.NETNS_DIR / plan.netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        mounts.setns(netns, mounts.CLONE_NEWNET)
    finally:
        os.close(netns)
    _remount_sysfs()
    # A /dev/shm of its own, as every Kubernetes pod has (64 MiB): Envoy's hot-restart
    # shared memory (``envoy_shared_memory_0``) of one pod must not collide with another's.
    mounts.mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC,
        f"mode=1777,size={SHM_SIZE}",
    )
    mounts.mount(
        "tmpfs",
        plan.scratch,
        "tmpfs",
        mounts.MS_NOSUID | mounts.MS_NODEV,
        f"mode=0700,size={SCRATCH_SIZE}",
    )
    for source, target in plan.etc:
        if os.path.exists(target):
            mounts.mount(source, target, None, mounts.MS_BIND)
    overlays = _Overlays(plan.scratch)
    for bind in sorted(plan.binds, key=lambda b: (b.target.count("/"), b.target)):
        target = overlays.make(bind.target, directory=bind.directory)
        mounts.mount(bind.source, target, None, mounts.MS_BIND)
        flags = mounts.MS_REMOUNT | mounts.MS_BIND | mounts.MS_NOSUID | mounts.MS_NODEV
        mounts.mount(None, target, None, flags | (mounts.MS_RDONLY if bind.read_only else 0))
    return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


def _remount_sysfs() -> None:
    """A /sys that describes the pod's network namespace (what ``ip netns exec`` does)."""
    flags = 0
    try:
        mounts.umount("/sys")
    except OSError:
        if os.statvfs("/sys").f_flag & os.ST_RDONLY:
            flags = mounts.MS_RDONLY
    mounts.mount("sysfs", "/sys", "sysfs", flags)


class _Overlays:
    """Makes paths exist inside the calling thread's namespace only."""

    def __init__(self, scratch: str) -> None:
        self._scratch = scratch
        self._writable: set[int] = set()  # st_dev of the overlays made here
        self._layers = 0

    def make(self, path: str, *, directory: bool) -> str:
        """``path`` resolved, made (as a directory or an empty file) if it does not exist:
        below an overlay of its nearest existing ancestor, never on the host."""
        target = os.path.realpath(path)
        if os.path.exists(target):
            if os.path.isdir(target) != directory:
                kind = "a directory" if directory else "a file"
                raise SandboxError(f'mountPath "{path}" exists and is not {kind}')
            return target
        ancestor = os.path.dirname(target)
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise SandboxError(f'mountPath "{path}": {ancestor} is not a directory')
        if os.stat(ancestor).st_dev not in self._writable:
            self._overlay(ancestor)
        os.makedirs(target if directory else os.path.dirname(target), mode=0o755, exist_ok=True)
        if not directory:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return target

    def _overlay(self, ancestor: str) -> None:
        if _OVERLAY_UNSAFE.search(ancestor + self._scratch):
            raise SandboxError(f'cannot overlay "{ancestor}": "," ":" or "\\" in a path')
        layer = os.path.join(self._scratch, str(self._layers))
        self._layers += 1
        upper, work = os.path.join(layer, "upper"), os.path.join(layer, "work")
        os.makedirs(upper)
        os.makedirs(work)
        below = sorted(
            {m.mount_point for m in mounts.mounted_under(ancestor, mounts.table("thread-self"))}
        )
        tops = [p for p in below if not any(p.startswith(o + "/") for o in below)]
        clones: list[tuple[str, int]] = []
        try:
            for point in tops:
                clones.append((point, mounts.open_tree(point)))
            options = f"lowerdir={ancestor},upperdir={upper},workdir={work}"
            mounts.mount("overlay", ancestor, "overlay", 0, options)
            if ancestor == "/":
                # This thread's root is the mount below the overlay; entering its own
                # namespace again puts it on top (setns follows mounts over the root).
                own = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    mounts.setns(own, mounts.CLONE_NEWNS)
                finally:
                    os.close(own)
            for point, fd in clones:
                mounts.move_mount(fd, point)
        finally:
            for _, fd in clones:
                os.close(fd)
        self._writable.add(os.stat(ancestor).st_dev)
