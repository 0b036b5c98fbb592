"""The CLI's tests run against a real API (`local_api.running_api`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.cli.local_api import RunningApi, running_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningApi]:
    with running_api(tmp_path / "state") as running:
        yield running
