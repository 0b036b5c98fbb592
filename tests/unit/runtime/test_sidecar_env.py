"""When the pod interpreter is (re)installed: a changed dependency list reaches a stale venv;
a venv built pure for want of gcc is compiled once gcc is there, and only then.

`ensure` runs ``pip install`` through `sidecar_env._run`; here that is faked (`FakeRun`:
it records the command; for ``-m venv`` it makes the interpreter file; it answers the
toolchain probe as told; a "compiling" pip install leaves a compiled module behind), so no
package is installed.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from osm.runtime import sidecar_env
from osm.runtime.sidecar_env import Build

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


@dataclass
class FakeRun:
    ran: list[list[str]] = field(default_factory=list)
    missing: str = ""  # what the toolchain probe prints: "" when gcc and Python.h are there
    pip_fails: bool = False

    def __call__(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        self.ran.append(argv)
        if argv[1:3] == ["-m", "venv"]:
            python = Path(argv[-1]) / "bin" / "python3"
            python.parent.mkdir(parents=True, exist_ok=True)
            python.write_text("")
            if "--without-pip" not in argv:
                pip = python.parent.parent / "lib" / "python3.11" / "site-packages" / "pip"
                pip.mkdir(parents=True)
                (pip / "__init__.py").write_text("")
        elif argv[1] == "-c":
            return subprocess.CompletedProcess(argv, 0, self.missing + "\n", "")
        elif "install" in argv:
            if self.pip_fails:
                return subprocess.CompletedProcess(argv, 1, "", "ERROR: no space left")
            if not self.missing:  # setup.py compiles
                python = Path(argv[argv.index("--python") + 1] if "--python" in argv else argv[0])
                proxy = python.parent.parent / "lib" / "python3.11" / "site-packages" / "osm"
                (proxy / "proxy").mkdir(parents=True, exist_ok=True)
                (proxy / "proxy" / "http1.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
        return subprocess.CompletedProcess(argv, 0, "", "")

    def probes(self) -> int:
        return sum(1 for argv in self.ran if argv[1] == "-c")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    run = FakeRun()
    monkeypatch.setattr(sidecar_env, "_run", run)
    monkeypatch.delenv("OSM_PURE_PYTHON", raising=False)
    return run


@pytest.fixture
def commands(fake: FakeRun) -> list[list[str]]:
    return fake.ran


def pip_installs(ran: list[list[str]]) -> int:
    return sum(1 for argv in ran if "pip" in argv and "install" in argv)


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
    assert str(venv / "bin" / "python3") in install  # pip runs there, or --python it
    copied = Path(install[-1])  # pip resolves the dependencies of this copy of the project
    assert copied.name == "src" and copied != project
    build = Build.read(venv / sidecar_env.STAMP)
    assert build is not None and build.source == sidecar_env.source_hash(project)
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


SYSTEM_PYTHON = Path(subprocess.__file__)  # any existing file


def test_a_venv_built_pure_for_want_of_gcc_is_compiled_once_gcc_is_there(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    venv = tmp_path / "venv"
    fake.missing = "no C compiler 'gcc' on PATH (Debian: apt-get install gcc)"
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert Build.read(venv / sidecar_env.STAMP) == Build(
        sidecar_env.source_hash(project), compiled=False, missing=fake.missing
    )
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 1, "still no gcc: the pure build stands"

    fake.missing = ""  # apt-get install gcc
    said: list[str] = []
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON, progress=said.append)
    assert pip_installs(fake.ran) == 2
    assert "the C toolchain is there now" in said[0], said
    assert "compiled by mypyc" in said[-1], said
    assert Build.read(venv / sidecar_env.STAMP) == Build(
        sidecar_env.source_hash(project), compiled=True
    )
    probes = fake.probes()
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 2 and fake.probes() == probes, "compiled: no probe"


def test_pure_on_purpose_or_after_a_failed_compile_is_not_retried(
    tmp_path: Path, project: Path, fake: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a missing toolchain is worth a rebuild when it appears: a build that stayed
    pure with gcc there (mypyc or gcc failed) would fail again, at every osm up."""
    venv = tmp_path / "venv"
    monkeypatch.setattr(sidecar_env, "_missing_toolchain", lambda _: None)
    fake.missing = "x"  # makes the fake pip install pure although the probe saw gcc
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert Build.read(venv / sidecar_env.STAMP) == Build(
        sidecar_env.source_hash(project), compiled=False, missing=None
    )
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 1

    monkeypatch.undo()
    monkeypatch.setattr(sidecar_env, "_run", fake)
    monkeypatch.setenv("OSM_PURE_PYTHON", "1")
    fake.missing = "no C compiler"
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 2  # OSM_PURE_PYTHON is in the hash
    fake.missing = ""
    probes = fake.probes()
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 2 and fake.probes() == probes


@pytest.mark.parametrize(
    ("build", "missing_now", "rebuild"),
    [
        (None, None, True),
        (Build("old", compiled=True), None, True),
        (Build("new", compiled=True), "no gcc", False),
        (Build("new", compiled=False, missing=None), None, False),
        (Build("new", compiled=False, missing="no gcc"), "no gcc", False),
        (Build("new", compiled=False, missing="no gcc"), "no Python.h", False),
        (Build("new", compiled=False, missing="no gcc"), None, True),
    ],
)
def test_rebuild_reason(build: Build | None, missing_now: str | None, rebuild: bool) -> None:
    asked: list[bool] = []

    def probe() -> str | None:
        asked.append(True)
        return missing_now

    reason = sidecar_env.rebuild_reason(build, "new", probe)
    assert (reason is not None) == rebuild, reason
    # The probe is a subprocess: asked only of a pure build that lacked the toolchain.
    assert bool(asked) == (build is not None and build.source == "new" and bool(build.missing))


def test_an_install_cut_off_halfway_does_not_pass_for_the_old_one(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    venv = tmp_path / "venv"
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    main = project / "osm" / "proxy" / "main.py"
    original = main.read_text()
    main.write_text(original + "# edited\n")
    fake.pip_fails = True  # or the machine went down while pip replaced files
    with pytest.raises(sidecar_env.SidecarEnvError, match="no space left"):
        sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    main.write_text(original)  # back to the sources of the stamp it had
    fake.pip_fails = False
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 3


def test_an_old_or_unreadable_stamp_means_install(tmp_path: Path) -> None:
    stamp = tmp_path / sidecar_env.STAMP
    assert Build.read(stamp) is None
    stamp.write_text("575dad6408d0e82f12c9e01ffee56ff3ba259fd0e05c5c59b3ca17f3040b216e\n")
    assert Build.read(stamp) is None
    Build("abc", compiled=False, missing="no gcc").write(stamp)
    assert Build.read(stamp) == Build("abc", compiled=False, missing="no gcc")


def test_pip_comes_from_the_running_interpreter_when_it_can_lend_it(
    tmp_path: Path, project: Path, fake: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    lent = [sys.executable, "-m", "pip"]
    monkeypatch.setattr(sidecar_env, "_lent_pip", lambda: lent)
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    create, install = fake.ran[0], fake.ran[-1]
    assert create[1:3] == ["-m", "venv"] and "--without-pip" in create
    assert install[:5] == [*lent, "--python", str(venv / "bin" / "python3")]

    # Later run from an interpreter without a recent pip: the venv needs its own.
    monkeypatch.setattr(sidecar_env, "_lent_pip", lambda: None)
    (project / "osm" / "proxy" / "main.py").write_text("# changed\n")
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    create, install = fake.ran[-3], fake.ran[-1]  # venv, toolchain probe, pip
    assert create[1:3] == ["-m", "venv"] and "--without-pip" not in create, fake.ran
    assert install[:3] == [str(venv / "bin" / "python3"), "-m", "pip"]
    (project / "osm" / "proxy" / "main.py").write_text("# changed again\n")
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert sum(1 for argv in fake.ran if argv[1:3] == ["-m", "venv"]) == 2


def test_the_running_interpreter_lends_its_pip_if_it_has_22_3_or_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for version, lends in (("26.3", True), ("22.3", True), ("22.2.2", False), ("9", False)):
        monkeypatch.setattr(sidecar_env.importlib.metadata, "version", lambda _, v=version: v)
        assert (sidecar_env._lent_pip() is not None) == lends, version
