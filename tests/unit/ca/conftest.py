"""Fixtures for the CA tests: a CA in a temporary directory, opened at `catesting.T0`."""

from __future__ import annotations

from pathlib import Path

import pytest

from osm.ca import builtin
from tests.unit.ca import catesting


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ca"


@pytest.fixture
def ca(ca_dir: Path) -> builtin.BuiltinCA:
    return builtin.BuiltinCA.open(ca_dir, catesting.T0)
