"""The view's footer hints are shell lines a user will paste; run them against a real API
(`osm` finds it through ``KUBECONFIG``, as after ``export KUBECONFIG=...``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from osm.demo.bookstore import view
from tests.conftest import ROOT
from tests.unit.cli.local_api import RunningApi, running_api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningApi]:
    with running_api(tmp_path / "state") as running:
        yield running


def shell(command: str, api: RunningApi) -> str:
    """Run `command` in bash with the venv's `osm` (importing this source tree) first."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "KUBECONFIG": str(api.kubeconfig),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_split_and_mode_one_liners_work(api: RunningApi) -> None:
    shell("osm apply -f demo/bookstore/manifests", api)

    shell(view.SPLIT_ALL_TO_V2, api)
    shell(view.SMI_MODE, api)

    split = yaml.safe_load(shell("osm get ts bookstore-split -n bookstore -o yaml", api))
    mesh = yaml.safe_load(shell("osm get mc osm-mesh-config -n osm-system -o yaml", api))
    weights = {b["service"]: b["weight"] for b in split["spec"]["backends"]}
    assert weights == {"bookstore-v1": 0, "bookstore-v2": 100}
    assert mesh["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] is False
