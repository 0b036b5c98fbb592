"""The interpreter that pods run: a virtualenv every user can read, with the project in it.

The one idea: the sidecar (UID 1500) and the apps (``nobody``) cannot read a virtualenv
or pyenv under ``/root``, so local mode keeps its own: ``/opt/osm/venv``, made with the
system's ``/usr/bin/python3 -m venv`` and the project ``pip install``-ed into it
(non-editable, from a copy of the source so the work tree stays clean). A stamp file
holds a hash of the project's sources; while it matches, `ensure` returns at once, so
only the first ``osm up`` (or the first after a code change) pays for the install.
Containers' ``python3`` resolves to this venv because its ``bin`` leads their PATH.

That install is where the sidecar's hot modules get compiled by mypyc (``setup.py``; it
needs gcc and python3-dev, and falls back to pure Python without them or with
``OSM_PURE_PYTHON=1``, which is part of the hash). `ensure` says which one it built, and the
stamp remembers it: a venv that was built pure only because the C toolchain was missing is
rebuilt, compiled, by the first `ensure` that finds the toolchain there.

Several checkouts (a CI clone, the work tree) share that one path, and pods keep running
while a new build is made, so:

- ``/opt/osm/venv`` is a symlink to one complete build, ``/opt/osm/venvs/<hash>-<kind>``
  (``kind``: compiled or pure, as intended when it was begun). A build is made in its own
  directory, at that final path (a venv's scripts and ``pyvenv.cfg`` name the path they were
  made at, so a venv is never moved), stamped once pip succeeded, and only then does the
  symlink switch to it: a temporary symlink renamed over the old one, which is atomic. Who
  resolves the path sees the whole old build or the whole new one, never half of one; the
  runtime starts each pod from the resolved path, so running pods keep their build. A
  directory without a stamp was cut off: it never counts, and is removed.
- One `ensure` at a time: an exclusive ``flock`` on ``/opt/osm/.venv.lock`` is held while
  it checks whether the venv is current and while it builds; who finds it held says so,
  waits, and checks again (the other build may be just what it needs). The kernel drops
  the lock when its holder dies, so none is ever stale.
- After a switch, old builds are removed except the previous one and any that a running
  process still names (command line, environment or mapped files, in ``/proc``).
- A real directory at ``/opt/osm/venv`` (the layout before this one) is replaced by the
  symlink in one atomic exchange (``renameat2(RENAME_EXCHANGE)``) once a new build is ready;
  it is deleted if osm built it (it has a stamp), else kept beside it.

From nothing a build takes 40-50 s on two busy cores (gcc ~20-30 s of it, over both cores;
pip's resolving, build environment and installing ~15 s; mypyc ~5 s). pip is the one
of the interpreter running this code when it can install into another (``--python``, pip
22.3+, as ``make`` installs it): the venv then needs no pip of its own (``ensurepip`` took
4 s) and a current pip installs faster than Debian's 23.0.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import osm

DEFAULT_VENV = Path("/opt/osm/venv")
SYSTEM_PYTHON = Path("/usr/bin/python3")
STAMP = ".osm-build.json"  # a `Build`, written once the install has succeeded
BUILD_FILES = ("pyproject.toml", "setup.py")  # what pip reads besides the osm package
INSTALL_TIMEOUT = 900.0
LOCK_TIMEOUT = INSTALL_TIMEOUT + 300.0  # how long to wait for another `ensure`'s build
WAIT_REPORT_EVERY = 15.0  # seconds between "still waiting" lines
PROC = Path("/proc")

Progress = Callable[[str], None]
# setup.py's test (`_obstacle`) of whether the interpreter it runs in can compile, less
# mypyc's presence (pip's build environment brings it): prints what is missing, if anything.
TOOLCHAIN_PROBE = """
import os, shutil, sysconfig
include = sysconfig.get_paths()["include"]
compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
if not os.path.exists(os.path.join(include, "Python.h")):
    print("no Python.h in " + include + " (Debian: apt-get install python3-dev)")
elif shutil.which(compiler) is None:
    print("no C compiler " + repr(compiler) + " on PATH (Debian: apt-get install gcc)")
"""


class SidecarEnvError(RuntimeError):
    """The shared interpreter cannot be made; the message says what to install or fix."""


@dataclass(frozen=True, slots=True)
class PodPython:
    """Where pods find Python: the venv and its interpreter; from `ensure`, also the
    build the venv linked to then (``build``), which another checkout's `ensure` may
    switch the venv away from at any time."""

    venv: Path
    build: Path | None = None

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python3"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


@dataclass(frozen=True, slots=True)
class Build:
    """What the stamp says of an install: its sources, whether the hot modules came out
    compiled, and, if not, what the toolchain lacked then (None: nothing, or not asked)."""

    source: str
    compiled: bool
    missing: str | None = None

    @classmethod
    def read(cls, stamp: Path) -> Build | None:
        try:
            data = json.loads(stamp.read_text())
            return cls(str(data["source"]), bool(data["compiled"]), data.get("missing"))
        except (OSError, ValueError, TypeError, KeyError):
            return None  # none yet, or an older stamp: install

    def write(self, stamp: Path) -> None:
        stamp.write_text(json.dumps(asdict(self)) + "\n")


def rebuild_reason(
    build: Build | None, wanted: str, missing_now: Callable[[], str | None]
) -> str | None:
    """Why the venv must be (re)installed, or None if it is current. ``missing_now`` runs
    the toolchain probe; it is asked only of a pure build that lacked a toolchain."""
    if build is None:
        return "not installed"
    if build.source != wanted:
        return "the sources changed"
    if build.compiled or build.missing is None:
        # Compiled; or pure on purpose (OSM_PURE_PYTHON), or pure though the toolchain was
        # there (mypyc or gcc failed): rebuilding would fail the same way until a change.
        return None
    if missing_now() is None:
        return f"it was built pure Python ({build.missing}); the C toolchain is there now"
    return None


def project_root() -> Path:
    """The source tree this ``osm`` package was imported from (holds pyproject.toml)."""
    root = Path(osm.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").exists():
        raise SidecarEnvError(
            f"{root} has no pyproject.toml: osm is not running from its source tree, so the "
            "pod interpreter cannot be built; pass --pod-python with a venv that has osm"
        )
    return root


def source_hash(root: Path) -> str:
    """A hash of everything that goes into the installed project: its files, and whether
    the build is asked to stay pure Python (``OSM_PURE_PYTHON``, read by ``setup.py``)."""
    digest = hashlib.sha256()
    digest.update(b"OSM_PURE_PYTHON=" + os.environ.get("OSM_PURE_PYTHON", "").encode() + b"\0")
    files = [root / name for name in BUILD_FILES if (root / name).exists()]
    files += sorted(p for p in (root / "osm").rglob("*") if p.is_file() and _shipped(p))
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _shipped(path: Path) -> bool:
    # Compiled files in the source tree (an in-place mypyc build) are not the sources.
    return "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo", ".so")


def builds_dir(venv: Path) -> Path:
    """Where the builds that ``venv`` links to live: ``/opt/osm/venvs`` for ``/opt/osm/venv``."""
    return venv.with_name(venv.name + "s")


def lock_path(venv: Path) -> Path:
    return venv.with_name(f".{venv.name}.lock")


def ensure(
    venv: Path = DEFAULT_VENV,
    *,
    progress: Progress = lambda _: None,
    root: Path | None = None,
    system_python: Path = SYSTEM_PYTHON,
) -> PodPython:
    """Makes ``venv`` (if needed): a symlink to a build of the project (a new one if its
    sources changed, or if it could compile now what it installed pure); returns it, with
    the build of these sources it links to (resolved under the lock). Blocks; from nothing
    it takes well under a minute, plus any wait for another `ensure`."""
    root = root or project_root()
    wanted = source_hash(root)
    venv = Path(os.path.abspath(venv))
    venv.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with _locked(venv, root, progress):
        made = _ensure_locked(venv, wanted, root, progress, system_python)
        return PodPython(made.venv, Path(os.path.realpath(venv)))


def _ensure_locked(
    venv: Path, wanted: str, root: Path, progress: Progress, system_python: Path
) -> PodPython:
    pod_python = PodPython(venv)
    reason = (
        rebuild_reason(
            Build.read(venv / STAMP), wanted, lambda: _missing_toolchain(pod_python.python)
        )
        if pod_python.python.exists()
        else "not installed"
    )
    if os.path.lexists(venv) and not venv.is_symlink():
        _check_legacy(venv)
        if reason is None:
            reason = (
                f"it is a directory; osm now keeps it a symlink to a build in {builds_dir(venv)}"
            )
    if reason is None:
        return pod_python
    if reason != "not installed":
        progress(f"rebuilding {venv}: {reason}")
    if not system_python.exists():
        raise SidecarEnvError(
            f"{system_python} is missing: pods need a Python every user can read "
            "(Debian: apt-get install python3 python3-venv)"
        )
    started = time.monotonic()
    pure_requested = _pure_requested()
    missing = None if pure_requested else _missing_toolchain(system_python)
    builds = builds_dir(venv)
    builds.mkdir(exist_ok=True, mode=0o755)
    os.chmod(builds, os.stat(builds).st_mode | 0o755)
    previous = _target(venv)
    tree, ready = _place(
        builds, wanted, "pure" if pure_requested or missing else "compiled", previous
    )
    if ready:
        progress(f"switching {venv} to {tree} (built before from these sources)")
    else:
        _build(tree, root, wanted, system_python, missing, pure_requested, progress)
    old = _switch(venv, tree)
    if old is not None:
        _dispose_legacy(venv, old, progress)
    _prune(venv, keep=(tree, previous), progress=progress)
    if ready:
        return pod_python
    build = Build.read(tree / STAMP)
    what = f"{venv} -> {tree.name} is ready in {time.monotonic() - started:.0f}s"
    if build is not None and build.compiled:
        progress(f"{what} (the sidecar's hot modules compiled by mypyc)")
    elif pure_requested:
        progress(f"{what} (pure Python: OSM_PURE_PYTHON is set)")
    elif missing:
        progress(
            f"{what} (pure Python: {missing}; the next osm up after that compiles the "
            "sidecar's hot modules)"
        )
    else:
        progress(
            f"{what} (pure Python: compiling failed; `make compiled` in the source tree shows why)"
        )
    return pod_python


def _link_envoy(tree: Path) -> None:
    """Points the venv's ``envoy`` at the wheel's binary: its console script is a Python
    program that only execs that binary, which cost every Envoy sidecar ~70 ms (40 ms of
    CPU) of interpreter start. The binary resolves nothing relative to argv[0]."""
    binaries = sorted(tree.glob("lib/python3*/site-packages/envoy/_bin/envoy"))
    script = tree / "bin" / "envoy"
    if binaries and script.exists():
        temporary = script.with_name(".envoy.link")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(os.path.relpath(binaries[0], script.parent))
        temporary.replace(script)


def _build(
    tree: Path,
    root: Path,
    wanted: str,
    system_python: Path,
    missing: str | None,
    pure_requested: bool,
    progress: Progress,
) -> None:
    """Creates the venv ``tree`` and installs the project into it; stamps it once that
    succeeded. Removes it if anything fails (it was never linked to, so no pod uses it)."""
    try:
        lent_pip = _lent_pip()
        python = PodPython(tree).python
        _create(tree, system_python, with_pip=lent_pip is None, progress=progress)
        progress(
            f"installing osm {osm.__version__} and its dependencies into {tree}"
            + (
                ", pure Python (OSM_PURE_PYTHON is set)"
                if pure_requested
                else f", pure Python: {missing}"
                if missing
                else ", compiling the sidecar's per-request modules with mypyc and gcc "
                f"on {_cores()} core(s) (under a minute, once per source change)"
            )
        )
        pip = (
            [*lent_pip, "--python", str(python)]
            if lent_pip is not None
            else [str(python), "-m", "pip"]
        )
        with tempfile.TemporaryDirectory(prefix="osm-src-") as temporary:
            # pip builds in the source tree; build from a copy so the work tree stays clean.
            copy = Path(temporary) / "src"
            copy.mkdir()
            for name in (*BUILD_FILES, "README.md", "LICENSE"):
                if (root / name).exists():
                    shutil.copy2(root / name, copy / name)
            shutil.copytree(
                root / "osm",
                copy / "osm",
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"),
            )
            result = _run(
                [*pip, "install", "--quiet", "--no-input", str(copy)], timeout=INSTALL_TIMEOUT
            )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise SidecarEnvError(f"pip install into {tree} failed:\n" + "\n".join(detail))
        _readable_by_all(tree)
        _link_envoy(tree)
        compiled = any(tree.glob("lib/python3*/site-packages/osm/proxy/*.so"))
        # Last: a build without its stamp (failed, or cut off) never counts.
        Build(wanted, compiled, None if compiled else missing).write(tree / STAMP)
    except BaseException:
        shutil.rmtree(tree, ignore_errors=True)
        raise


def _target(venv: Path) -> Path | None:
    """The build ``venv`` links to now, resolved; None if it is no symlink."""
    return Path(os.path.realpath(venv)) if venv.is_symlink() else None


def _place(builds: Path, wanted: str, kind: str, current: Path | None) -> tuple[Path, bool]:
    """Where the build of ``wanted`` goes, and whether it is there already (complete and
    current: going back to sources built before costs nothing). A directory there without
    a stamp was cut off before anything linked to it: it is removed. One with a stamp that
    is not current, or the one linked to now, is never built over: the next name is taken."""
    base = f"{wanted[:12]}-{kind}"
    for attempt in range(1, 100):
        tree = builds / (base if attempt == 1 else f"{base}-{attempt}")
        if not os.path.lexists(tree):
            return tree, False
        build = Build.read(tree / STAMP)
        if (
            build is not None
            and PodPython(tree).python.exists()
            and rebuild_reason(build, wanted, lambda: "not asked") is None
        ):
            return tree, True
        if build is None and tree.is_dir() and not tree.is_symlink() and not _same(tree, current):
            shutil.rmtree(tree)
            return tree, False
    raise SidecarEnvError(f"{builds} has no free name for a build of {base}: clean it up")


def _same(path: Path, other: Path | None) -> bool:
    return other is not None and os.path.realpath(path) == os.path.realpath(other)


def _switch(venv: Path, tree: Path) -> Path | None:
    """Points ``venv`` at ``tree`` in one atomic step. A real directory at ``venv`` (the
    layout before builds had directories of their own) is exchanged for the symlink;
    returns where it is then, for `_dispose_legacy`."""
    link = venv.with_name(f".{venv.name}.new-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    os.symlink(os.path.relpath(tree, venv.parent), link)
    if venv.is_symlink() or not os.path.lexists(venv):
        os.replace(link, venv)  # rename(2) replaces the old symlink itself, atomically
        return None
    if _exchange(link, venv):
        return link  # now the old directory
    # No RENAME_EXCHANGE (an old kernel, or a filesystem without it): for a moment there
    # is nothing at ``venv``; a pod that starts just then fails and is restarted.
    aside = venv.with_name(f".{venv.name}.old-{os.getpid()}")
    os.rename(venv, aside)
    os.replace(link, venv)
    return aside


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(a, b, RENAME_EXCHANGE); False if the C library, kernel or filesystem
    cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # glibc before 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(b))


def _check_legacy(venv: Path) -> None:
    """A real directory at ``venv`` is replaced only if it is a venv (osm's old layout, or
    one made by hand, into which osm used to install); anything else is left to the user."""
    if not venv.is_dir() or not (venv / "pyvenv.cfg").exists():
        raise SidecarEnvError(
            f"{venv} is there but is no virtualenv, and osm keeps a symlink to its build "
            "there: move it away, or pass another --pod-python"
        )


def _dispose_legacy(venv: Path, old: Path, progress: Progress) -> None:
    if Build.read(old / STAMP) is not None:  # osm built it: nothing in it to keep
        shutil.rmtree(old, ignore_errors=True)
        progress(f"moved {venv} to the new layout (removed the directory that was there)")
        return
    kept = venv.with_name(f"{venv.name}.before-osm-{time.strftime('%Y%m%d-%H%M%S')}")
    os.rename(old, kept)
    progress(f"moved {venv} to the new layout; the venv that was there is now {kept}")


def _prune(venv: Path, *, keep: Iterable[Path | None], progress: Progress) -> None:
    """Removes old builds: all but the one ``venv`` links to, those in ``keep`` (the
    previous one) and those a running process names; and what a cut-off `_switch` left.
    Runs under the lock, so no other `ensure` is building."""
    for pattern in (f".{venv.name}.new-*", f".{venv.name}.old-*"):
        for leftover in venv.parent.glob(pattern):
            if leftover.is_symlink() or not leftover.is_dir():
                with contextlib.suppress(OSError):
                    leftover.unlink()
            elif Build.read(leftover / STAMP) is not None:  # osm's, replaced by a build
                shutil.rmtree(leftover, ignore_errors=True)
    kept = {os.path.realpath(path) for path in (venv, *keep) if path is not None}
    builds = builds_dir(venv)
    old = [
        entry
        for entry in sorted(builds.iterdir())
        if os.path.realpath(entry) not in kept and entry.is_dir() and not entry.is_symlink()
    ]
    if not old:
        return
    used = _in_use(old)
    removed = [entry for entry in old if entry not in used]
    for entry in removed:
        shutil.rmtree(entry, ignore_errors=True)
    if removed:
        progress(
            f"removed {len(removed)} old build(s) from {builds}"
            + (f"; kept {len(used)} that running processes use" if used else "")
        )


def _in_use(trees: list[Path]) -> set[Path]:
    """Those of ``trees`` that a process names in its command line, environment (PATH) or
    mapped files. Best effort: what this process may not read, it does not see."""
    patterns: dict[Path, re.Pattern[bytes]] = {}
    for tree in trees:
        names = sorted({str(tree), os.path.realpath(tree)})
        alternatives = b"|".join(re.escape(os.fsencode(name)) for name in names)
        patterns[tree] = re.compile(b"(?:" + alternatives + rb")(?![\w.+-])")
    used: set[Path] = set()
    try:
        pids = [entry for entry in PROC.iterdir() if entry.name.isdigit()]
    except OSError:
        return used
    for pid in pids:
        for name in ("cmdline", "environ", "maps"):
            try:
                data = (pid / name).read_bytes()
            except OSError:
                continue
            used.update(tree for tree, pattern in patterns.items() if pattern.search(data))
        if len(used) == len(trees):
            break
    return used


@contextlib.contextmanager
def _locked(venv: Path, root: Path, progress: Progress) -> Iterator[None]:
    """Holds the exclusive flock beside ``venv``; says so while it waits for another."""
    path = lock_path(venv)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise SidecarEnvError(
            f"cannot open {path}, the lock that checks and builds of {venv} take: "
            f"{error.strerror} (osm up runs as root)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait_for_lock(fd, venv, progress)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {root}\n".encode(), 0)  # for who waits
        yield
    finally:
        os.close(fd)  # and with it the lock


def _wait_for_lock(fd: int, venv: Path, progress: Progress) -> None:
    holder = os.pread(fd, 4096, 0).decode(errors="replace").split(maxsplit=1)
    who = f"pid {holder[0]}, sources {holder[1].strip()}" if len(holder) == 2 else "unknown"
    progress(f"waiting for another osm ({who}) that is checking or building {venv}")
    started = time.monotonic()
    report = started + WAIT_REPORT_EVERY
    while True:
        time.sleep(0.1)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            progress(f"the other osm is done with {venv} after {_since(started)}; checking it")
            return
        now = time.monotonic()
        if now - started > LOCK_TIMEOUT:
            raise SidecarEnvError(
                f"another osm ({who}) has held {lock_path(venv)} for {_since(started)}; "
                "if it is stuck, stop it"
            )
        if now >= report:
            progress(f"still waiting for the other osm's build of {venv} ({_since(started)})")
            report += WAIT_REPORT_EVERY


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.0f}s"


def _create(venv: Path, system_python: Path, *, with_pip: bool, progress: Progress) -> None:
    progress(f"creating {venv} (the interpreter pods run, readable by every user)")
    options = ["--clear"] if with_pip else ["--clear", "--without-pip"]
    result = _run([str(system_python), "-m", "venv", *options, str(venv)], timeout=120)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        hint = (
            " (Debian: apt-get install python3-venv)"
            if "ensurepip" in result.stdout + result.stderr
            else ""
        )
        raise SidecarEnvError(
            f"cannot create {venv}{hint}: {detail[-1] if detail else result.returncode}"
        )


def _lent_pip() -> list[str] | None:
    """The running interpreter's pip, if it can install into another one (``--python``)."""
    try:
        major, minor = (int(part) for part in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    return [sys.executable, "-m", "pip"] if (major, minor) >= (22, 3) else None


def _pure_requested() -> bool:
    # setup.py's reading of OSM_PURE_PYTHON.
    return os.environ.get("OSM_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no")


def _missing_toolchain(python: Path) -> str | None:
    """What the pod interpreter lacks to compile the hot modules (TOOLCHAIN_PROBE), or None."""
    result = _run([str(python), "-c", TOOLCHAIN_PROBE], timeout=30)
    if result.returncode != 0:
        return f"cannot tell: {python} -c failed"
    return result.stdout.strip() or None


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _run(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired:
        raise SidecarEnvError(f"{' '.join(argv)} did not finish in {timeout:g}s") from None


def _readable_by_all(venv: Path) -> None:
    """umask may have made parts private; pods run as other users."""
    for directory, _, files in os.walk(venv):
        os.chmod(directory, os.stat(directory).st_mode | 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
