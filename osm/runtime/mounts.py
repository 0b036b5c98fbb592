"""Mount system calls and the mount table, for the pod sandboxes and their teardown.

The one idea: thin, typed wrappers over the Linux calls that `osm.runtime.sandbox` makes
(``mount``, ``umount2``, ``unshare``, ``setns``, and the new mount API's ``open_tree`` and
``move_mount``), each raising `OSError` with the errno and the path, plus a parser for
``/proc/<task>/mountinfo``. They act on the *calling thread's* namespaces, so a caller that
changes its mount namespace must do so in a thread of its own (see `osm.runtime.sandbox`).
Nothing here keeps state; libc is loaded on first use.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

# <linux/mount.h>, <sched.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MNT_DETACH = 0x2
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

# open_tree(2) and move_mount(2): the same numbers on every architecture since Linux 5.2.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 0x1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_ESCAPE = re.compile(r"\\([0-7]{3})")


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.syscall.restype = ctypes.c_long
    return libc


def _check(result: int, call: str, *paths: str | None) -> int:
    if result < 0:
        error = ctypes.get_errno()
        detail = " ".join(p for p in paths if p)
        raise OSError(error, f"{call} {detail}: {os.strerror(error)}".replace("  ", " "))
    return result


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2) in the calling thread's mount namespace."""
    result = _libc().mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data))
    _check(result, "mount", source, target)


def umount(target: str, *, detach: bool = True) -> None:
    """umount2(2); lazily (``MNT_DETACH``) unless ``detach`` is false."""
    result = _libc().umount2(_bytes(target), MNT_DETACH if detach else 0)
    _check(result, "umount", target)


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread (``CLONE_NEWNS`` also unshares its fs struct)."""
    _check(_libc().unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """setns(2): moves the calling thread into the namespace ``fd`` names. Entering a mount
    namespace also sets the thread's root and working directory to that namespace's root,
    on top of whatever is mounted over it."""
    _check(_libc().setns(fd, nstype), "setns")


def open_tree(path: str) -> int:
    """A detached copy of the mount tree at ``path`` (with every mount below it), as an fd
    that keeps it alive until it is closed or moved into place with `move_mount`."""
    flags = _OPEN_TREE_CLONE | _AT_RECURSIVE | _OPEN_TREE_CLOEXEC
    libc = _libc()
    result = libc.syscall(
        ctypes.c_long(_SYS_OPEN_TREE),
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(_bytes(path)),
        ctypes.c_uint(flags),
    )
    return _check(int(result), "open_tree", path)


def move_mount(fd: int, target: str) -> None:
    """Attaches the detached tree ``fd`` (from `open_tree`) at ``target``."""
    libc = _libc()
    result = libc.syscall(
        ctypes.c_long(_SYS_MOVE_MOUNT),
        ctypes.c_int(fd),
        ctypes.c_char_p(b""),
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(_bytes(target)),
        ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
    )
    _check(int(result), "move_mount", target)


# -- the mount table ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MountPoint:
    """One line of ``mountinfo`` (proc(5)): where a mount is, what it shows, how it shares."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    options: str
    propagation: tuple[str, ...]
    fstype: str
    source: str

    @property
    def shared(self) -> bool:
        return any(tag.startswith("shared:") for tag in self.propagation)


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash as octal escapes (``\040``)."""
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountPoint]:
    """The mounts a ``mountinfo`` text lists, in its order (parents before children)."""
    table = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        table.append(
            MountPoint(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                options=fields[5],
                propagation=tuple(fields[6:separator]),
                fstype=fields[separator + 1],
                source=_unescape(fields[separator + 2]),
            )
        )
    return table


def table(task: str = "self") -> list[MountPoint]:
    """The mount table of ``/proc/<task>``: "self" (the process's main view) or
    "thread-self" (the calling thread's mount namespace)."""
    return parse_mountinfo(Path(f"/proc/{task}/mountinfo").read_text())


def mounted_at(path: Path | str, mounts: list[MountPoint]) -> list[MountPoint]:
    """The mounts whose mount point is ``path`` exactly (a stack, bottom first)."""
    where = os.path.normpath(str(path))
    return [m for m in mounts if m.mount_point == where]


def mounted_under(path: Path | str, mounts: list[MountPoint]) -> list[MountPoint]:
    """The mounts strictly below ``path``."""
    where = os.path.normpath(str(path))
    prefix = where.rstrip("/") + "/"
    return [m for m in mounts if m.mount_point.startswith(prefix) and m.mount_point != where]
