"""Golden files: compare a test's output with the reviewed file, or rewrite it.

``UPDATE_GOLDEN=1`` rewrites the files after an intended change; the diff is then read
like code, since the golden files are the reviewed description of what is produced.
"""

from __future__ import annotations

import os
from pathlib import Path

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def compare(path: Path, text: str) -> None:
    """Assert that `path` holds `text` (or, with ``UPDATE_GOLDEN=1``, write it there)."""
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1"
    assert path.read_text() == text, f"{path} differs; run with UPDATE_GOLDEN=1 and review"
