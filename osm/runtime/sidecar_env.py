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

From nothing it takes 40-50 s on two busy cores (gcc ~20-30 s of it, over both cores;
pip's resolving, build environment and installing ~15 s; mypyc ~5 s). pip is the one
of the interpreter running this code when it can install into another (``--python``, pip
22.3+, as ``make`` installs it): the venv then needs no pip of its own (``ensurepip`` took
4 s) and a current pip installs faster than Debian's 23.0.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import osm

DEFAULT_VENV = Path("/opt/osm/venv")
SYSTEM_PYTHON = Path("/usr/bin/python3")
STAMP = ".osm-build.json"  # a `Build`, written once the install has succeeded
BUILD_FILES = ("pyproject.toml", "setup.py")  # what pip reads besides the osm package
INSTALL_TIMEOUT = 900.0

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
    """Where pods find Python: the venv and its interpreter."""

    venv: Path

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


def ensure(
    venv: Path = DEFAULT_VENV,
    *,
    progress: Progress = lambda _: None,
    root: Path | None = None,
    system_python: Path = SYSTEM_PYTHON,
) -> PodPython:
    """Makes ``venv`` (if needed) and installs the project into it (if its sources
    changed, or if it could compile now what it installed pure); returns it. Blocks; from
    nothing it takes well under a minute."""
    root = root or project_root()
    wanted = source_hash(root)
    pod_python = PodPython(venv)
    stamp = venv / STAMP
    pure_requested = _pure_requested()
    reason = (
        rebuild_reason(Build.read(stamp), wanted, lambda: _missing_toolchain(pod_python.python))
        if pod_python.python.exists()
        else "not installed"
    )
    if reason is None:
        return pod_python
    started = time.monotonic()
    lent_pip = _lent_pip()
    if not pod_python.python.exists() or (lent_pip is None and not _has_pip(pod_python)):
        _create(venv, system_python, with_pip=lent_pip is None, progress=progress)
    # An install that fails or is cut off halfway must not pass for the old one.
    stamp.unlink(missing_ok=True)
    missing = None if pure_requested else _missing_toolchain(pod_python.python)
    if reason != "not installed":
        progress(f"reinstalling osm into {venv}: {reason}")
    progress(
        f"installing osm {osm.__version__} and its dependencies into {venv}"
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
        [*lent_pip, "--python", str(pod_python.python)]
        if lent_pip is not None
        else [str(pod_python.python), "-m", "pip"]
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
        raise SidecarEnvError(f"pip install into {venv} failed:\n" + "\n".join(detail))
    _readable_by_all(venv)
    compiled = any(venv.glob("lib/python3*/site-packages/osm/proxy/*.so"))
    Build(wanted, compiled, None if compiled else missing).write(stamp)
    took = f"{time.monotonic() - started:.0f}s"
    if compiled:
        progress(f"{venv} is ready in {took} (the sidecar's hot modules compiled by mypyc)")
    elif pure_requested:
        progress(f"{venv} is ready in {took} (pure Python: OSM_PURE_PYTHON is set)")
    elif missing:
        progress(
            f"{venv} is ready in {took} (pure Python: {missing}; the next osm up after "
            "that compiles the sidecar's hot modules)"
        )
    else:
        progress(
            f"{venv} is ready in {took} (pure Python: compiling failed; `make compiled` "
            "in the source tree shows why)"
        )
    return pod_python


def _create(venv: Path, system_python: Path, *, with_pip: bool, progress: Progress) -> None:
    if not system_python.exists():
        raise SidecarEnvError(
            f"{system_python} is missing: pods need a Python every user can read "
            "(Debian: apt-get install python3 python3-venv)"
        )
    progress(f"creating {venv} (the interpreter pods run, readable by every user)")
    venv.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    options = ["--clear"] if with_pip else ["--clear", "--without-pip"]
    result = _run([str(system_python), "-m", "venv", *options, str(venv)], timeout=120)
    if result.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
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


def _has_pip(pod_python: PodPython) -> bool:
    return any(pod_python.venv.glob("lib/python3*/site-packages/pip/__init__.py"))


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
