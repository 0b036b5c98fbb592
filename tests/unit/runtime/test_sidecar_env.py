"""When the pod interpreter is (re)installed: a changed dependency list reaches a stale venv.

`ensure` runs ``pip install`` through `sidecar_env._run`; here that is faked (it records
the command and, for ``-m venv``, makes the interpreter file), so no package is installed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from osm.runtime import sidecar_env

PYPROJECT = """[project]
name = "osm-py"
dependencies = [
    "grpcio>=1.60,<2",
]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "osm" / "proxy").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "osm" / "__init__.py").write_text("")
    (root / "osm" / "proxy" / "main.py").write_text('"""The sidecar."""\n')
    return root


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    ran: list[list[str]] = []

    def run(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        if argv[1:3] == ["-m", "venv"]:
            python = Path(argv[3]) / "bin" / "python3"
            python.parent.mkdir(parents=True)
            python.write_text("")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(sidecar_env, "_run", run)
    return ran


def pip_installs(ran: list[list[str]]) -> int:
    return sum(1 for argv in ran if argv[1:4] == ["-m", "pip", "install"])


def test_a_new_dependency_reinstalls_a_venv_whose_sources_were_current(
    tmp_path: Path, project: Path, commands: list[list[str]]
) -> None:
    venv = tmp_path / "venv"
    system_python = Path(subprocess.__file__)  # any existing file
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    assert pip_installs(commands) == 1
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    assert pip_installs(commands) == 1, "unchanged sources must not reinstall"

    # The sidecar now needs grpclib: only pyproject.toml changes, no source file does.
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("]\n", '    "grpclib>=0.4.7,<0.5",\n]\n'))
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    assert pip_installs(commands) == 2
    install = commands[-1]
    assert install[0] == str(venv / "bin" / "python3")
    copied = Path(install[-1])  # pip resolves the dependencies of this copy of the project
    assert copied.name == "src" and copied != project
    assert (venv / sidecar_env.STAMP).read_text().strip() == sidecar_env.source_hash(project)
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    assert pip_installs(commands) == 2


def test_the_project_declares_the_sidecars_transport() -> None:
    """What the pod venv gets is pyproject's dependency list: grpclib must be on it."""
    text = (sidecar_env.project_root() / "pyproject.toml").read_text()
    assert '"grpclib>=' in text


def test_setup_py_and_the_pure_python_switch_rebuild_the_venv(
    tmp_path: Path,
    project: Path,
    commands: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """setup.py decides what is compiled, OSM_PURE_PYTHON whether: both are in the hash."""
    venv = tmp_path / "venv"
    system_python = Path(subprocess.__file__)
    monkeypatch.delenv("OSM_PURE_PYTHON", raising=False)
    (project / "setup.py").write_text("COMPILED = ('osm/proxy/main.py',)\n")
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    (project / "setup.py").write_text("COMPILED = ()\n")
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    assert pip_installs(commands) == 2
    monkeypatch.setenv("OSM_PURE_PYTHON", "1")
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    assert pip_installs(commands) == 3
    sidecar_env.ensure(venv, root=project, system_python=system_python)
    assert pip_installs(commands) == 3


def test_compiled_files_in_the_source_tree_are_neither_hashed_nor_shipped(
    project: Path,
) -> None:
    before = sidecar_env.source_hash(project)
    (project / "osm" / "proxy" / "main.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    assert sidecar_env.source_hash(project) == before
