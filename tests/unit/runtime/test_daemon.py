"""The daemons' processes: started, stopped or killed, and reaped by their Popen.

Python (3.11) warns "subprocess N is still running" when it collects a Popen whose exit
status it never read, even if someone else reaped the child; `_SPAWNED` keeps the Popens
to the end of the process, so a daemon reaped behind its Popen's back printed that
warning when a run that used `osm up` (the e2e tests) ended. Checked in a child
interpreter in development mode (ResourceWarnings shown), as that end.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from osm.runtime import daemon
from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from osm.runtime import daemon

    state = Path(sys.argv[1])
    stopped = daemon.Daemon("stopped", state)
    stopped.spawn(["sleep", "60"])
    killed = daemon.Daemon("killed", state)
    pid = killed.spawn(["sleep", "60"])
    assert stopped.stop(grace=10), "it was running"
    os.kill(pid, signal.SIGKILL)  # as the e2e test kills the controller
    deadline = time.monotonic() + 10
    while killed.pid() is not None:  # what `osm up` asks before starting it again
        assert time.monotonic() < deadline, "the killed daemon still counts as running"
        time.sleep(0.02)
    # A daemon with threads (as the runtime has): its leader is a zombie while the others
    # still exit, and cannot be reaped until they have.
    threaded = daemon.Daemon("threaded", state)
    threads = "[threading.Thread(target=time.sleep, args=(60,)).start() for _ in range(64)]"
    pid = threaded.spawn(
        [sys.executable, "-c", f"import threading, time; {threads}; time.sleep(60)"]
    )
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while threaded.pid() is not None:
        assert time.monotonic() < deadline, "the killed daemon still counts as running"
        time.sleep(0.001)
    print("done", flush=True)
    """
)


def test_stopped_and_killed_daemons_leave_no_popen_unreaped(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "ResourceWarning" not in result.stderr, result.stderr


SOURCE = str(ROOT)  # the tests import osm from this tree (pytest's pythonpath)


@pytest.mark.parametrize(
    ("pythonpath", "expected"),
    [
        pytest.param(None, SOURCE, id="none"),
        pytest.param("/opt/lib", f"{SOURCE}:/opt/lib", id="kept after"),
        pytest.param(f"/opt/lib:{SOURCE}:", f"{SOURCE}:/opt/lib", id="moved first, once"),
    ],
)
def test_daemons_import_the_osm_that_started_them_first(
    pythonpath: str | None, expected: str
) -> None:
    environ = {"HOME": "/root"} if pythonpath is None else {"PYTHONPATH": pythonpath}
    env = daemon.daemon_env(environ)
    assert env["PYTHONPATH"] == expected
    assert env["PYTHONUNBUFFERED"] == "1"
    assert {k: v for k, v in env.items() if k in environ and k != "PYTHONPATH"} == {
        k: v for k, v in environ.items() if k != "PYTHONPATH"
    }


def test_a_daemon_started_from_the_root_directory_runs_this_osm(tmp_path: Path) -> None:
    """From a second checkout, `python -m osm...` in ``/`` would import the interpreter's
    installed osm, not this tree's."""
    started = daemon.Daemon("which-osm", tmp_path)
    pid = started.spawn([sys.executable, "-c", "import osm; print(osm.__file__)"])
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and "osm" not in started.log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started.stop(grace=5)
    assert started.log.read_text().strip() == str(ROOT / "osm" / "__init__.py")
