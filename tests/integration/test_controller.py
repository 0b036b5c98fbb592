"""The controller process: first start creates the CA; a damaged CA stops it, loudly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import controllers

ROOT = Path(__file__).resolve().parents[2]


async def test_first_start_creates_a_private_ca_and_a_restart_keeps_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with controllers.running(state):
        pass
    keys = sorted((state / "ca" / "roots").rglob("*key*"))
    assert keys, "the root key is persisted"
    assert all(key.stat().st_mode & 0o077 == 0 for key in keys), "keys are private"
    assert (state / "ca").stat().st_mode & 0o077 == 0
    before = {key: key.read_bytes() for key in keys}
    async with controllers.running(state):
        pass
    assert {key: key.read_bytes() for key in keys} == before, "no new root on restart"


async def test_a_corrupt_root_key_stops_the_controller_instead_of_minting_a_new_root(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with controllers.running(state):
        pass
    (key,) = sorted((state / "ca" / "roots").rglob("*key*"))
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "osm.cli",
            "controller",
            "--state-dir",
            str(state),
            "--port",
            "0",
            "--xds-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "error: the certificate authority cannot start:" in result.stderr
    assert str(key) in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted((state / "ca" / "roots").rglob("*key*")) == [key]
