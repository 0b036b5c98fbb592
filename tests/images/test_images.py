"""The container images (``make images``) build, and each starts and answers its health check.

Runs only with ``OSM_TEST_IMAGES=1``: building takes minutes (mmdebstrap, a mypyc build) and
needs root and Debian's mmdebstrap, buildah, podman, skopeo and runc (``make images``
installs them). It builds into a temporary directory with `images/build.py` and runs
`images/check.py` against the OCI archives, which is what ``make images images-check`` does;
every container runs with ``--network none``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("osm-controller", "osm-injector", "init", "sidecar")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(
        os.environ.get("OSM_TEST_IMAGES") != "1",
        reason="set OSM_TEST_IMAGES=1 to build and run the images (minutes; root; apt "
        "packages mmdebstrap buildah podman skopeo runc)",
    ),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("images")
    work = ROOT / "build" / "images"  # the Debian roots are cached there
    subprocess.run(
        [sys.executable, "images/build.py", "--out", str(out), "--work", str(work)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    report = out / "results.json"
    subprocess.run(
        [
            sys.executable,
            "images/check.py",
            "--out",
            str(out),
            "--work",
            str(work / "check"),
            "--json",
            str(report),
        ],
        cwd=ROOT,
        check=False,
        timeout=900,
    )
    return {entry["name"]: entry for entry in json.loads(report.read_text())}


@pytest.mark.timeout(2700)
@pytest.mark.parametrize("name", IMAGES)
def test_image_starts_and_is_healthy(results: dict[str, dict[str, Any]], name: str) -> None:
    result = results[name]
    assert result["ok"], "\n".join(result["detail"])
