"""The runtime's journal of what it created, and `teardown`, which removes exactly that.

The one idea: before the runtime creates anything outside its own process (a network
namespace, a link, a hosts directory, a pod's mount namespaces and volume files, a child
process), it appends a ``create`` entry
to ``<state_dir>/runtime/journal.jsonl`` and fsyncs it; after removing it, a ``remove``
entry. So whatever state the runtime died in (kill -9 included), the journal names a
superset of what exists, and `teardown` can remove every such thing and nothing else.
Removing something already gone is not an error, so teardown is idempotent.

Known limit: a crash between the ``create`` entry and the creation leaves an entry for
something that was never made; teardown then removes a thing of that name if one
exists. Names carry the runtime's prefix so that such a collision needs a deliberate
clash. Processes are recorded right after they start (their pid is not known before);
they all live in recorded namespaces, and teardown kills every process in those.

A runtime that starts on a journal it did not write (its predecessor was killed) keeps
what belongs to the pods it adopts (`osm.runtime.adoption`): ``teardown(keep=...)``
removes the rest, and the adopted processes' entries become its own.

A journal is owned by one runtime at a time (an exclusive ``flock`` on ``lock``; the
kernel drops it when the owner dies, so teardown after a crash can take it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osm.runtime import cgroups, mounts

JOURNAL = "journal.jsonl"
LOCK = "lock"
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")

# Kinds of things the runtime creates, and their keys:
NETNS = "netns"  # key: namespace name
LINK = "link"  # key: "<netns>/<link>"; data: netns, name
HOSTS = "hosts"  # key: namespace name; the directory /etc/netns/<name>
ETC_DIR = "etc-dir"  # key: "/etc/netns", when the runtime had to create it
PROCESS = "process"  # key: "<pid>:<start time>"; data: pid, start_time, netns, name
SANDBOX_DIR = "sandbox-dir"  # key: a sandboxes' base dir; data: made, mount_id (its self-bind)
MOUNTNS = "mountns"  # key: a pod's sandbox directory; data: base, netns
ALLOCATIONS = "allocations"  # key: pool name; data: allocations (persisted, not torn down)
CGROUP = "cgroup"  # key: "<parent>/<namespace>_<pod>"; data: directories (one a hierarchy), netns


class JournalBusyError(RuntimeError):
    """Another live process owns the journal (a runtime is running on this state dir)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing the runtime created (or was about to create)."""

    kind: str
    key: str
    data: Mapping[str, Any] = field(default_factory=dict)


class Journal:
    """The append-only record of one state directory. Thread-safe; one owner at a time.

    Open it with `Journal.open`; it holds the lock until `close`.
    """

    def __init__(self, directory: Path, lock_fd: int) -> None:
        self.directory = directory
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()
        self._live: dict[tuple[str, str], Entry] = {}
        self._file: Any = None

    @classmethod
    def open(cls, state_dir: Path) -> Journal:
        """Opens (creating if needed) ``<state_dir>/runtime``, takes its lock, reads and
        compacts the journal. Raises `JournalBusyError` if a live process holds it."""
        directory = state_dir / "runtime"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(lock_fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JournalBusyError(
                    f"{directory} is in use by a running runtime; stop it first"
                ) from None
            raise
        journal = cls(directory, lock_fd)
        try:
            journal._load()
            journal._compact()
        except BaseException:
            journal.close()
            raise
        return journal

    def close(self) -> None:
        with self._mutex:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def created(self, kind: str, key: str, **data: Any) -> Entry:
        """Records (durably, before returning) that ``kind``/``key`` is about to exist."""
        entry = Entry(kind, key, dict(data))
        with self._mutex:
            self._append({"op": "create", "kind": kind, "key": key, "data": entry.data})
            self._live[(kind, key)] = entry
        return entry

    def removed(self, kind: str, key: str) -> None:
        """Records that ``kind``/``key`` no longer exists (or never came to exist)."""
        with self._mutex:
            if (kind, key) not in self._live:
                return
            self._append({"op": "remove", "kind": kind, "key": key})
            del self._live[(kind, key)]

    def live(self, kind: str | None = None) -> list[Entry]:
        """Entries created and not removed, oldest first; a new list the caller owns."""
        with self._mutex:
            return [e for e in self._live.values() if kind is None or e.kind == kind]

    def get(self, kind: str, key: str) -> Entry | None:
        with self._mutex:
            return self._live.get((kind, key))

    # -- file handling ---------------------------------------------------------------------
    def _path(self) -> Path:
        return self.directory / JOURNAL

    def _load(self) -> None:
        path = self._path()
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash mid-write
            key = (str(item["kind"]), str(item["key"]))
            if item["op"] == "create":
                self._live[key] = Entry(key[0], key[1], dict(item.get("data") or {}))
            else:
                self._live.pop(key, None)

    def _compact(self) -> None:
        """Rewrites the journal with only the live entries (atomically: tmp + rename)."""
        path = self._path()
        temporary = path.with_suffix(".tmp")
        with temporary.open("w") as out:
            for entry in self._live.values():
                out.write(
                    _line(
                        {"op": "create", "kind": entry.kind, "key": entry.key, "data": entry.data}
                    )
                )
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(path)
        _fsync_directory(self.directory)

    def _append(self, item: Mapping[str, Any]) -> None:
        if self._lock_fd < 0:
            raise RuntimeError("the journal is closed")
        if self._file is None:
            self._file = self._path().open("a")
        self._file.write(_line(item))
        self._file.flush()
        os.fsync(self._file.fileno())


def _line(item: Mapping[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- a file-backed allocation record for osm.base.ipam ---------------------------------
class JournalAllocations:
    """An `osm.base.ipam.AllocationRecord` kept in the journal under ``name``."""

    def __init__(self, journal: Journal, name: str) -> None:
        self._journal = journal
        self._name = name

    def load(self) -> Mapping[str, str]:
        entry = self._journal.get(ALLOCATIONS, self._name)
        return dict(entry.data.get("allocations", {})) if entry else {}

    def save(self, allocations: Mapping[str, str]) -> None:
        self._journal.created(ALLOCATIONS, self._name, allocations=dict(allocations))


# -- processes -----------------------------------------------------------------------------
def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field
    22), or None if there is no such process. With the pid it names a process uniquely."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def process_alive(pid: int, start_time: int) -> bool:
    """Whether the process ``pid`` that started at ``start_time`` still runs (a zombie,
    exited and waiting to be reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    rest = stat[stat.rindex(")") + 2 :].split()
    return rest[0] != "Z" and int(rest[19]) == start_time


def record_process(journal: Journal, pid: int, *, netns: str, name: str) -> Entry | None:
    """Records a started child process; None if it already exited."""
    start_time = process_start_time(pid)
    if start_time is None:
        return None
    return journal.created(
        PROCESS, f"{pid}:{start_time}", pid=pid, start_time=start_time, netns=netns, name=name
    )


def kill_process(pid: int, start_time: int, *, grace: float = 0.0) -> bool:
    """Kills the process group led by ``pid`` and ``pid`` itself if it is still the
    process that started at ``start_time``; True if it was found."""
    if process_start_time(pid) != start_time:
        return False
    if grace > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and process_start_time(pid) == start_time:
            time.sleep(0.02)
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
    return True


# -- teardown ------------------------------------------------------------------------------
@dataclass
class TeardownReport:
    """What `teardown` removed, and what it could not (with the reason)."""

    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def teardown(
    state_dir: Path, *, journal: Journal | None = None, keep: Collection[tuple[str, str]] = ()
) -> TeardownReport:
    """Removes everything the journal of ``state_dir`` names: processes (and every
    process in a recorded namespace), pod sandboxes (mount namespaces, volumes) and their
    base's mount, links, hosts directories, network namespaces; except the entries whose
    (kind, key) is in ``keep`` (what a restarted runtime adopts, `osm.runtime.adoption`).

    Idempotent; safe after a crash of the runtime. Pass ``journal`` when the caller
    owns it already (a runtime tearing itself down); otherwise it is opened here and
    `JournalBusyError` means a runtime is still running on ``state_dir``.
    """
    if journal is None:
        if not (state_dir / "runtime").exists():
            return TeardownReport()
        with Journal.open(state_dir) as opened:
            return teardown(state_dir, journal=opened, keep=keep)
    report = TeardownReport()
    entries = [e for e in journal.live() if (e.kind, e.key) not in keep]
    order = {PROCESS: 0, MOUNTNS: 1, SANDBOX_DIR: 2, LINK: 3, HOSTS: 4, ETC_DIR: 5, NETNS: 6}
    order[CGROUP] = 1  # once its recorded processes are killed; what else runs there too
    entries = sorted((e for e in reversed(entries) if e.kind in order), key=lambda e: order[e.kind])
    for entry in entries:
        try:
            what = teardown_entry(entry)
        except (OSError, subprocess.SubprocessError, RuntimeError) as error:
            report.failed.append(f"{entry.kind} {entry.key}: {error}")
            continue
        journal.removed(entry.kind, entry.key)
        if what:
            report.removed.append(what)
    return report


def teardown_entry(entry: Entry) -> str:
    """Removes one recorded thing; returns a description, or "" if it was already gone.

    Raises OSError, SubprocessError or RuntimeError when the thing exists but could not
    be removed."""
    if entry.kind == PROCESS:
        pid, start_time = int(entry.data["pid"]), int(entry.data["start_time"])
        return f"process {pid}" if kill_process(pid, start_time) else ""
    if entry.kind == LINK:
        netns, name = str(entry.data["netns"]), str(entry.data["name"])
        if not (NETNS_DIR / netns).exists():
            return ""
        result = _ip("-n", netns, "link", "del", name)
        return f"link {name} in {netns}" if result.returncode == 0 else ""
    if entry.kind == HOSTS:
        directory = ETC_NETNS / entry.key
        if not _is_child(directory, ETC_NETNS) or not directory.exists():
            return ""
        shutil.rmtree(directory)
        return f"hosts {directory}"
    if entry.kind == ETC_DIR:
        if Path(entry.key) != ETC_NETNS or not ETC_NETNS.exists():
            return ""
        with contextlib.suppress(OSError):  # only when empty: others may use it too
            ETC_NETNS.rmdir()
            return f"directory {ETC_NETNS}"
        return ""
    if entry.kind == CGROUP:
        return cgroups.remove_pod(Path(str(d)) for d in entry.data.get("directories", ()))
    if entry.kind == MOUNTNS:
        return _remove_sandbox(Path(entry.key), Path(str(entry.data.get("base", ""))))
    if entry.kind == SANDBOX_DIR:
        return _remove_sandbox_dir(Path(entry.key), entry.data)
    if entry.kind == NETNS:
        if not _is_child(NETNS_DIR / entry.key, NETNS_DIR):
            return ""
        if not (NETNS_DIR / entry.key).exists():
            return ""
        kill_namespace_processes(entry.key)
        result = _ip("netns", "delete", entry.key)
        if result.returncode != 0 and (NETNS_DIR / entry.key).exists():
            raise RuntimeError(result.stderr.strip())
        return f"netns {entry.key}"
    return ""


def kill_namespace_processes(netns: str, *, timeout: float = 5.0) -> list[int]:
    """SIGKILLs every process in network namespace ``netns`` and waits until they are
    gone (the namespace is the runtime's, so are its processes). Returns their pids."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        result = _ip("netns", "pids", netns)
        pids = [int(p) for p in result.stdout.split()] if result.returncode == 0 else []
        pids = [p for p in pids if p != os.getpid()]
        if not pids:
            return killed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in network namespace {netns} did not exit")
        time.sleep(0.02)


def _remove_sandbox(directory: Path, base: Path) -> str:
    """Unmounts whatever is mounted below a pod's sandbox directory in this namespace (its
    mount namespace files), deepest first, then removes the directory."""
    if not _is_child(directory, base) or not directory.exists():
        return ""
    for point in reversed(mounts.mounted_under(directory, mounts.table())):
        try:
            mounts.umount(point.mount_point)
        except OSError as error:  # gone with an unmounted parent, say
            if error.errno not in (errno.EINVAL, errno.ENOENT):
                raise
    shutil.rmtree(directory)
    return f"mount namespaces {directory}"


def _remove_sandbox_dir(base: Path, data: Mapping[str, Any]) -> str:
    """Unmounts the self-bind of a sandboxes' base directory: the one recorded, or, if the
    runtime died before recording it, the top of the stack when the runtime made the
    directory (nothing else was mounted there). Removes the directory if it made it and
    it is empty."""
    stack = mounts.mounted_at(base, mounts.table())
    mount_id = data.get("mount_id")
    top = stack[-1] if stack else None  # umount(2) takes the top of a stack
    ours = top is not None and (
        top.mount_id == mount_id if mount_id is not None else bool(data.get("made"))
    )
    if ours:
        mounts.umount(str(base))
    removed = ours
    if data.get("made") and base.exists():
        with contextlib.suppress(OSError):  # only when empty
            base.rmdir()
            removed = True
    return f"sandbox directory {base}" if removed else ""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


def _is_child(path: Path, parent: Path) -> bool:
    return path.parent == parent and path.name not in ("", ".", "..")


@contextlib.contextmanager
def creating(journal: Journal, kind: str, key: str, **data: Any) -> Iterator[Entry]:
    """Records ``kind``/``key`` before the body creates it; if the body fails, tries to
    remove whatever part of it exists and records it as removed."""
    entry = journal.created(kind, key, **data)
    try:
        yield entry
    except BaseException:
        with contextlib.suppress(OSError, subprocess.SubprocessError, RuntimeError):
            teardown_entry(entry)
            journal.removed(kind, key)
        raise
