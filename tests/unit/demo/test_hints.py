"""The view's footer hints are shell lines a user will paste; run them against a controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osm.demo.bookstore import view
from tests.conftest import ROOT, RunningController

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def shell(command: str, controller: RunningController) -> str:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "OSM_SERVER": controller.url, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
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


def test_the_split_and_mode_one_liners_work(controller: RunningController) -> None:
    shell("osm apply -f demo/bookstore/manifests", controller)

    shell(view.SPLIT_ALL_TO_V2, controller)
    shell(view.SMI_MODE, controller)

    split = yaml.safe_load(shell("osm get ts bookstore-split -n bookstore -o yaml", controller))
    mesh = yaml.safe_load(shell("osm get mc osm-mesh-config -n osm-system -o yaml", controller))
    weights = {b["service"]: b["weight"] for b in split["spec"]["backends"]}
    assert weights == {"bookstore-v1": 0, "bookstore-v2": 100}
    assert mesh["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] is False
