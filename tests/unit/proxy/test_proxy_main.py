"""The sidecar's lean entry point: its arguments, its import closure, its heap freezing."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from osm.proxy import bootstrap, main, options

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--bootstrap", "b.json"], main.Arguments(Path("b.json"))),
        (["--bootstrap=b.json", "--log-level=debug"], main.Arguments(Path("b.json"), "debug")),
        (["--log-level", "error", "--bootstrap", "b"], main.Arguments(Path("b"), "error")),
        (["--bootstrap", "b", "--help"], None),
    ],
)
def test_arguments_are_parsed(argv: list[str], expected: main.Arguments | None) -> None:
    assert main.parse_arguments(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--bootstrap FILE is required"),
        (["--bootstrap"], "--bootstrap needs a value"),
        (["--bootstrap", "b", "-v"], "unknown argument '-v'; valid: --bootstrap, --log-level"),
        (["--bootstrap", "b", "--log-level", "loud"], "--log-level must be one of debug"),
    ],
)
def test_usage_errors_say_what_is_valid(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(options.UsageError, match=re.escape(message)):
        main.parse_arguments(argv)
    assert main.command(argv) == 2
    assert message in capsys.readouterr().err


def test_a_missing_bootstrap_is_an_error_for_the_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.command(["--bootstrap", str(tmp_path / "none.json")]) == 1
    assert "none.json: cannot read" in capsys.readouterr().err


def test_the_entry_point_imports_neither_the_cli_nor_cryptography_nor_yaml_nor_grpcio() -> None:
    probe = (
        "import sys, osm.proxy.main; "
        "print([m for m in ('click', 'osm.cli', 'cryptography', 'yaml', 'grpc') "
        "if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_python_m_osm_proxy_prints_its_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "osm.proxy", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m osm.proxy --bootstrap FILE")


def test_bootstraps_load_from_json_and_from_yaml(tmp_path: Path) -> None:
    document: dict[str, Any] = {
        "node": {"id": "bookbuyer-0.sidecar.bookbuyer.bookbuyer"},
        "xds": {"address": "127.0.0.1:15128", "insecure": True},
    }
    (tmp_path / "b.json").write_text(json.dumps(document))
    (tmp_path / "b.yaml").write_text(
        "node: {id: bookbuyer-0.sidecar.bookbuyer.bookbuyer}\n"
        "xds:\n  address: 127.0.0.1:15128\n  insecure: true\n"
    )
    from_json = bootstrap.load(tmp_path / "b.json")
    from_yaml = bootstrap.load(tmp_path / "b.yaml")
    assert from_json.node_id == from_yaml.node_id == "bookbuyer-0.sidecar.bookbuyer.bookbuyer"
    assert from_json.xds == from_yaml.xds
    (tmp_path / "bad.yaml").write_text("{node: [")
    with pytest.raises(bootstrap.BootstrapError, match=r"bad\.yaml: not valid YAML or JSON"):
        bootstrap.load(tmp_path / "bad.yaml")


def _config(resources: int) -> Any:
    return SimpleNamespace(raw={"t": {str(i): None for i in range(resources)}})


def test_the_heap_is_frozen_on_the_first_config_and_on_large_updates() -> None:
    heap = main.HeapFreezer(growth=1.25)
    try:
        assert heap.applied(_config(100))
        assert gc.get_freeze_count() > 0
        assert not heap.applied(_config(110))  # a small update
        assert not heap.applied(_config(81))
        assert heap.applied(_config(130))  # large: grew by more than 25%
        assert heap.applied(_config(100))  # large: shrank by more than 25%
        assert heap.frozen_resources == 100
    finally:
        gc.unfreeze()
