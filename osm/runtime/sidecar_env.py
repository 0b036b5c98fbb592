"""The interpreter that pods run: a virtualenv every user can read, with the project in it.

The one idea: the sidecar (UID 1500) and the apps (``nobody``) cannot read a virtualenv
or pyenv under ``/root``, so local mode keeps its own: ``/opt/osm/venv``, made with the
system's ``/usr/bin/python3 -m venv`` and the project ``pip install``-ed into it
(non-editable, from a copy of the source so the work tree stays clean). A stamp file
holds a hash of the project's sources; while it matches, `ensure` returns at once, so
only the first ``osm up`` (or the first after a code change) pays for the install.
Containers' ``python3`` resolves to this venv because its ``bin`` leads their PATH.

That install is where the sidecar's hot modules get compiled by mypyc (``setup.py``; it
needs gcc and python3-dev, adds about 50 s, and falls back to pure Python without them or
with ``OSM_PURE_PYTHON=1``, which is part of the hash). `ensure` says which one it built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import osm

DEFAULT_VENV = Path("/opt/osm/venv")
SYSTEM_PYTHON = Path("/usr/bin/python3")
STAMP = ".osm-source-hash"
BUILD_FILES = ("pyproject.toml", "setup.py")  # what pip reads besides the osm package
INSTALL_TIMEOUT = 900.0

Progress = Callable[[str], None]


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
    changed); returns it. Blocks; the first run takes about a minute."""
    root = root or project_root()
    wanted = source_hash(root)
    pod_python = PodPython(venv)
    stamp = venv / STAMP
    if stamp.exists() and stamp.read_text().strip() == wanted and pod_python.python.exists():
        return pod_python
    if not pod_python.python.exists():
        if not system_python.exists():
            raise SidecarEnvError(
                f"{system_python} is missing: pods need a Python every user can read "
                "(Debian: apt-get install python3 python3-venv)"
            )
        progress(f"creating {venv} (the interpreter pods run, readable by every user)")
        venv.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        result = _run([str(system_python), "-m", "venv", str(venv)], timeout=120)
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
    progress(
        f"installing osm {osm.__version__} and its dependencies into {venv}, compiling the "
        "sidecar's per-request modules with mypyc (about a minute, once per source change)"
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
            [str(pod_python.python), "-m", "pip", "install", "--quiet", "--no-input", str(copy)],
            timeout=INSTALL_TIMEOUT,
        )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise SidecarEnvError(f"pip install into {venv} failed:\n" + "\n".join(detail))
    _readable_by_all(venv)
    stamp.write_text(wanted + "\n")
    if any(venv.glob("lib/python3*/site-packages/osm/proxy/*.so")):
        progress(f"{venv} is ready (the sidecar's hot modules compiled by mypyc)")
    else:
        progress(
            f"{venv} is ready (pure Python: the sidecar's hot modules were not compiled; "
            f"unless OSM_PURE_PYTHON is set: apt-get install gcc python3-dev, rm -r {venv})"
        )
    return pod_python


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
