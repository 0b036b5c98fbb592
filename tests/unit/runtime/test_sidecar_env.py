"""When the pod interpreter is (re)installed: a changed dependency list reaches a stale venv;
a venv built pure for want of gcc is compiled once gcc is there, and only then.

`ensure` runs ``pip install`` through `sidecar_env._run`; here that is faked (`FakeRun`:
it records the command; for ``-m venv`` it makes the interpreter file; it answers the
toolchain probe as told; a "compiling" pip install leaves a compiled module behind), so no
package is installed.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from osm.runtime import daemon, sidecar_env
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


FakeRunT = TypeVar("FakeRunT", bound=FakeRun)


def _installed(monkeypatch: pytest.MonkeyPatch, run: FakeRunT) -> FakeRunT:
    """`run` stands in for the commands `ensure` runs; OSM_PURE_PYTHON is unset."""
    monkeypatch.setattr(sidecar_env, "_run", run)
    monkeypatch.delenv("OSM_PURE_PYTHON", raising=False)
    return run


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    return _installed(monkeypatch, FakeRun())


@pytest.fixture
def commands(fake: FakeRun) -> list[list[str]]:
    return fake.ran


def pip_installs(ran: list[list[str]]) -> int:
    return sum(1 for argv in ran if "pip" in argv and "install" in argv)


def built(venv: Path) -> Path:
    """The build the venv symlink names."""
    assert venv.is_symlink(), venv
    return Path(os.path.realpath(venv))


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
    assert str(built(venv) / "bin" / "python3") in install  # pip runs there, or --python it
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


def test_a_failed_install_leaves_the_old_build_in_place_and_nothing_else(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    venv = tmp_path / "venv"
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    before = built(venv)
    main = project / "osm" / "proxy" / "main.py"
    original = main.read_text()
    main.write_text(original + "# edited\n")
    fake.pip_fails = True
    with pytest.raises(sidecar_env.SidecarEnvError, match="no space left"):
        sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert built(venv) == before and Build.read(venv / sidecar_env.STAMP) is not None
    assert list(sidecar_env.builds_dir(venv).iterdir()) == [before]
    main.write_text(original)  # back to the sources of the build it has: nothing to do
    fake.pip_fails = False
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 2 and built(venv) == before


def test_a_build_cut_off_halfway_does_not_count(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    """The machine went down while pip ran: the build's directory is there, without the
    stamp that is written last. It is built again, and only then linked to."""
    venv = tmp_path / "venv"
    name = f"{sidecar_env.source_hash(project)[:12]}-compiled"
    cut_off = sidecar_env.builds_dir(venv) / name
    (cut_off / "bin").mkdir(parents=True)
    (cut_off / "bin" / "python3").write_text("")
    (cut_off / "half-installed").write_text("")
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 1
    assert built(venv) == cut_off and not (cut_off / "half-installed").exists()
    assert Build.read(cut_off / sidecar_env.STAMP) is not None


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
    probe, create, install = fake.ran  # the toolchain probe, venv, pip
    assert probe[1] == "-c" and create[1:3] == ["-m", "venv"] and "--without-pip" in create
    assert install[:5] == [*lent, "--python", str(built(venv) / "bin" / "python3")]

    # Later run from an interpreter without a recent pip: the new build needs its own.
    monkeypatch.setattr(sidecar_env, "_lent_pip", lambda: None)
    (project / "osm" / "proxy" / "main.py").write_text("# changed\n")
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    create, install = fake.ran[-2], fake.ran[-1]
    assert create[1:3] == ["-m", "venv"] and "--without-pip" not in create, fake.ran
    assert install[:3] == [str(built(venv) / "bin" / "python3"), "-m", "pip"]


def test_the_running_interpreter_lends_its_pip_if_it_has_22_3_or_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for version, lends in (("26.3", True), ("22.3", True), ("22.2.2", False), ("9", False)):
        monkeypatch.setattr(sidecar_env.importlib.metadata, "version", lambda _, v=version: v)
        assert (sidecar_env._lent_pip() is not None) == lends, version


# -- one build at a time, switched in whole --------------------------------------------------
@dataclass
class SlowRun(FakeRun):
    """A pip install that takes ``seconds``, writing the build's files as it goes; counts
    how many installs run at once."""

    seconds: float = 0.3
    running: int = 0
    most: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        if "install" not in argv:
            return super().__call__(argv, timeout=timeout)
        with self.guard:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            python = Path(argv[argv.index("--python") + 1] if "--python" in argv else argv[0])
            site = python.parent.parent / "lib" / "python3.11" / "site-packages" / "osm"
            for part in range(5):
                (site / f"part{part}").mkdir(parents=True)
                time.sleep(self.seconds / 5)
            return super().__call__(argv, timeout=timeout)
        finally:
            with self.guard:
                self.running -= 1


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> SlowRun:
    return _installed(monkeypatch, SlowRun())


def in_threads(*calls: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # the first takes the lock
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def test_two_ensures_at_once_build_once_and_the_second_says_it_waits(
    tmp_path: Path, project: Path, slow: SlowRun
) -> None:
    """Threads stand in for processes: each ensure opens the lock file itself, and flock
    locks belong to the open file, so two in one process exclude each other as two
    processes do."""
    venv = tmp_path / "venv"
    said: tuple[list[str], list[str]] = ([], [])
    in_threads(
        *(
            functools.partial(
                sidecar_env.ensure,
                venv,
                root=project,
                system_python=SYSTEM_PYTHON,
                progress=said[n].append,
            )
            for n in (0, 1)
        )
    )
    assert pip_installs(slow.ran) == 1, "the second found what the first built"
    assert any("waiting for another osm" in line for line in said[1]), said[1]
    assert f"sources {project}" in said[1][0], said[1]
    assert any("checking it" in line for line in said[1]), said[1]
    assert Build.read(venv / sidecar_env.STAMP) == Build(
        sidecar_env.source_hash(project), compiled=True
    )


def test_builds_of_two_checkouts_do_not_overlap(
    tmp_path: Path, project: Path, slow: SlowRun
) -> None:
    """A CI clone and the work tree, with different sources, at the same time."""
    venv = tmp_path / "venv"
    clone = tmp_path / "ci"
    shutil.copytree(project, clone)
    (clone / "osm" / "proxy" / "main.py").write_text("# the CI's commit\n")
    in_threads(
        *(
            functools.partial(sidecar_env.ensure, venv, root=root, system_python=SYSTEM_PYTHON)
            for root in (project, clone)
        )
    )
    assert pip_installs(slow.ran) == 2 and slow.most == 1
    builds = sorted(p.name[:12] for p in sidecar_env.builds_dir(venv).iterdir())
    hashes = sorted(sidecar_env.source_hash(root)[:12] for root in (project, clone))
    assert builds == hashes, "the last one's build, and the previous one"


def test_ensure_names_the_build_of_its_sources_which_another_checkout_does_not_move(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    """What `osm up` gives its runtime: the build of its checkout. The shared symlink then
    follows the other checkout's `ensure`; the build named stays, and so does the runtime's
    command line (`daemon.runtime_argv`), on which it is named."""
    venv = tmp_path / "venv"
    clone = tmp_path / "ci"
    shutil.copytree(project, clone)
    (clone / "osm" / "proxy" / "main.py").write_text("# the CI's commit\n")
    ours = sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    theirs = sidecar_env.ensure(venv, root=clone, system_python=SYSTEM_PYTHON)
    assert ours.build is not None and theirs.build is not None
    assert ours.build.name.startswith(sidecar_env.source_hash(project)[:12])
    assert theirs.build == built(venv) != ours.build
    assert (ours.build / sidecar_env.STAMP).exists(), "the previous build is kept"
    settings = daemon.MeshSettings(tmp_path / "state", pod_python=venv)
    argv = daemon.runtime_argv(settings, ours.build)
    assert argv[argv.index("--pod-python") + 1] == str(ours.build)


def test_a_process_that_waits_for_the_lock_is_told_and_gives_up_in_time(
    tmp_path: Path, project: Path, fake: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()} /tmp/ci\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(30)\n",
            str(sidecar_env.lock_path(venv)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setattr(sidecar_env, "LOCK_TIMEOUT", 0.5)
        monkeypatch.setattr(sidecar_env, "WAIT_REPORT_EVERY", 0.2)
        said: list[str] = []
        with pytest.raises(sidecar_env.SidecarEnvError, match="if it is stuck"):
            sidecar_env.ensure(
                venv, root=project, system_python=SYSTEM_PYTHON, progress=said.append
            )
        assert f"pid {holder.pid}, sources /tmp/ci" in said[0], said
        assert any("still waiting" in line for line in said), said
        assert fake.ran == [], "nothing checked or built without the lock"
    finally:
        holder.kill()
        holder.communicate()
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)  # its holder died
    assert pip_installs(fake.ran) == 1


def test_who_resolves_the_venv_during_a_rebuild_sees_a_whole_build(
    tmp_path: Path, project: Path, slow: SlowRun
) -> None:
    """What a pod does when it starts: resolve the venv, run its interpreter."""
    venv = tmp_path / "venv"
    seen: set[Path] = set()
    partial: list[Path] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            if not os.path.lexists(venv):
                continue
            tree = Path(os.path.realpath(venv))
            parts = tree / "lib" / "python3.11" / "site-packages" / "osm"
            whole = (tree / sidecar_env.STAMP).exists() and all(
                (parts / f"part{n}").exists() for n in range(5)
            )
            if whole:
                seen.add(tree)
            else:
                partial.append(tree)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for edit in range(3):
            (project / "osm" / "proxy" / "main.py").write_text(f"# edit {edit}\n")
            sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    finally:
        done.set()
        reader.join()
    assert not partial, partial
    assert len(seen) == 3, seen


# -- the old layout, old builds -----------------------------------------------------------------
def old_layout(venv: Path, stamp: Build | None) -> None:
    """What the previous sidecar_env made: a venv right at ``venv``."""
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").write_text("")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    if stamp is not None:
        stamp.write(venv / sidecar_env.STAMP)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_venv_of_the_old_layout_becomes_a_symlink_to_a_build(
    tmp_path: Path,
    project: Path,
    fake: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    exchange: bool,
) -> None:
    venv = tmp_path / "venv"
    old_layout(venv, Build(sidecar_env.source_hash(project), compiled=True))
    if not exchange:  # an old kernel, or a filesystem without RENAME_EXCHANGE
        monkeypatch.setattr(sidecar_env, "_exchange", lambda a, b: False)
    said: list[str] = []
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON, progress=said.append)
    assert pip_installs(fake.ran) == 1, "current, but a venv is never moved: built anew"
    assert built(venv).parent == sidecar_env.builds_dir(venv)
    assert not os.path.isabs(os.readlink(venv)), "relative: venv -> venvs/<build>"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".venv.lock", "src", "venv", "venvs"]
    assert any("new layout" in line for line in said), said
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 1


def test_a_venv_made_by_hand_where_osm_keeps_its_link_is_kept_aside(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    venv = tmp_path / "venv"
    old_layout(venv, None)
    (venv / "mine").write_text("")
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    [kept] = tmp_path.glob("venv.before-osm-*")
    assert (kept / "mine").exists() and venv.is_symlink()


def test_a_directory_that_is_no_venv_is_left_alone(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    venv = tmp_path / "venv"
    (venv / "data").mkdir(parents=True)
    with pytest.raises(sidecar_env.SidecarEnvError, match="no virtualenv"):
        sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert (venv / "data").is_dir() and fake.ran == []


def test_old_builds_go_but_the_current_and_the_previous_one(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    venv = tmp_path / "venv"
    main = project / "osm" / "proxy" / "main.py"
    trees = []
    for edit in range(4):
        main.write_text(f"# edit {edit}\n")
        sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
        trees.append(built(venv))
    assert sorted(sidecar_env.builds_dir(venv).iterdir()) == sorted(trees[2:])

    main.write_text("# edit 2\n")  # back to the previous sources: it is linked again
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert pip_installs(fake.ran) == 4 and built(venv) == trees[2]
    assert sorted(sidecar_env.builds_dir(venv).iterdir()) == sorted(trees[2:])


def test_a_build_that_a_running_process_uses_is_kept(
    tmp_path: Path, project: Path, fake: FakeRun
) -> None:
    venv = tmp_path / "venv"
    main = project / "osm" / "proxy" / "main.py"
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    first = built(venv)
    # A sidecar started from it: the runtime runs the resolved interpreter path.
    sidecar = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", str(first / "bin" / "python3")]
    )
    try:
        for edit in range(3):
            main.write_text(f"# edit {edit}\n")
            sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
        assert first.exists()
        assert len(list(sidecar_env.builds_dir(venv).iterdir())) == 3
    finally:
        sidecar.kill()
        sidecar.wait()
    main.write_text("# edit 3\n")
    sidecar_env.ensure(venv, root=project, system_python=SYSTEM_PYTHON)
    assert not first.exists()
    assert len(list(sidecar_env.builds_dir(venv).iterdir())) == 2
