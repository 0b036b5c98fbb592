"""Golden files: the bookstore demo's xDS, every proxy, in permissive and SMI mode.

Run with ``UPDATE_GOLDEN=1`` to rewrite the files after an intended change, then read
the diff: the golden files are the reviewed description of what proxies receive.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from osm.xds.snapshot import build_snapshots
from tests.unit.xds import xds_support

GOLDEN = xds_support.ROOT / "tests" / "golden" / "xds"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize(
    ("mode", "permissive", "egress"),
    [("bookstore-permissive", True, False), ("bookstore-smi", False, True)],
)
def test_bookstore_golden(mode: str, permissive: bool, egress: bool) -> None:
    built = build_snapshots(xds_support.bookstore(permissive=permissive, egress=egress))
    assert not built.errors
    directory = GOLDEN / mode
    expected_files = set()
    for proxy_id, snapshot in sorted(built.snapshots.items()):
        path = directory / f"{proxy_id.namespace}_{proxy_id.name}.json"
        expected_files.add(path)
        text = json.dumps(xds_support.as_json(snapshot), indent=1, sort_keys=True) + "\n"
        _compare(path, text)
    warnings = "".join(f"{w}\n" for w in built.warnings)
    _compare(directory / "warnings.txt", warnings)
    expected_files.add(directory / "warnings.txt")
    if UPDATE:
        for stale in set(directory.glob("*")) - expected_files:
            stale.unlink()
    assert set(directory.glob("*")) == expected_files


def _compare(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1"
    assert path.read_text() == text, f"{path} differs; run with UPDATE_GOLDEN=1 and review"
