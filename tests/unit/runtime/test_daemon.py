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
from pathlib import Path

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
