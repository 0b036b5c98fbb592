"""setup.py's parallel compile: every source compiled once, objects in the sources' order.

mypyc's multi-file C is one extension of ~28 files; `_in_parallel` gives each its own gcc
(largest first) on every core. setup.py is loaded with `setuptools.setup` stubbed out.
"""

from __future__ import annotations

import runpy
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import setuptools

SETUP_PY = Path(__file__).resolve().parents[2] / "setup.py"


@pytest.fixture
def setup_py(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(setuptools, "setup", lambda **_: None)
    return runpy.run_path(str(SETUP_PY))


def test_sources_compile_concurrently_largest_first_into_objects_in_order(
    setup_py: dict[str, Any], tmp_path: Path
) -> None:
    sizes = {"small.c": 1, "big.c": 300, "mid.c": 20, "bigger.c": 400}
    sources = []
    for name, size in sizes.items():
        (tmp_path / name).write_text("x" * size)
        sources.append(str(tmp_path / name))
    started: list[str] = []
    running, most = 0, 0
    lock = threading.Lock()

    def compile_serially(batch: list[str], output_dir: str, **kwargs: Any) -> list[str]:
        nonlocal running, most
        assert len(batch) == 1 and output_dir == "build/temp" and kwargs == {"debug": 0}
        with lock:
            started.append(Path(batch[0]).name)
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return [batch[0][:-2] + ".o"]

    compile_all = setup_py["_in_parallel"](compile_serially, 2)
    objects = compile_all(sources, "build/temp", debug=0)
    assert objects == [source[:-2] + ".o" for source in sources]
    assert started[:2] == ["bigger.c", "big.c"] and most == 2


def test_one_core_or_one_source_compiles_as_setuptools_does(setup_py: dict[str, Any]) -> None:
    calls: list[list[str]] = []

    def compile_serially(batch: list[str], *args: Any, **kwargs: Any) -> list[str]:
        calls.append(batch)
        return [b + ".o" for b in batch]

    assert setup_py["_in_parallel"](compile_serially, 1)(["a.c", "b.c"]) == ["a.c.o", "b.c.o"]
    assert setup_py["_in_parallel"](compile_serially, 4)(["a.c"]) == ["a.c.o"]
    assert calls == [["a.c", "b.c"], ["a.c"]]
