"""``python3 -m osm.tracing``: bad arguments are refused saying what is valid; the process
logs where it serves, answers, and stops cleanly on SIGTERM with its spans on disk."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BAD = [
    # (arguments, what stderr says)
    ([], "the following arguments are required: --db"),
    (["--db", "x.db", "--retention", "1x"], "'1x' is not a duration; valid:"),
    (["--db", "x.db", "--retention", "0.0h"], "valid: a positive number with a unit"),
    (["--db", "x.db", "--max-spans", "0"], "'0'; valid: a positive whole number"),
    (["--db", "x.db", "--port", "70000"], "'70000'; valid: a port 0-65535"),
    (["--db", "/nonexistent/dir/x.db", "--port", "0"], "no directory /nonexistent/dir"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD)
def test_bad_arguments_are_refused(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "osm.tracing", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path.cwd(),
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr


def test_it_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    db, log_path = tmp_path / "traces.db", tmp_path / "log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "osm.tracing", "--db", str(db), "--port", "0",
             "--host", "127.0.0.1", "--retention", "1h", "--max-spans", "1000"],
            stdout=log,
            stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (
            found := re.search(r"serving Zipkin v2 on 127\.0\.0\.1:(\d+)", log_path.read_text())
        ):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"no startup line: {log_path.read_text()}"
            time.sleep(0.05)
        assert "max spans 1000, retention 3600s" in log_path.read_text()
        base = f"http://127.0.0.1:{found[1]}"
        body = json.dumps([{"traceId": "abc", "id": "1", "timestamp": 1}]).encode()
        request = urllib.request.Request(
            f"{base}/api/v2/spans", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        with urllib.request.urlopen(f"{base}/api/v2/trace/abc", timeout=10) as response:
            assert json.load(response)[0]["traceId"] == "0000000000000abc"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log_path.read_text()
        assert "osm.tracing: stopping" in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
