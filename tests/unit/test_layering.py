"""Every package of osm is in at least one import-linter contract.

A package in no contract can import anything, and nothing in CI would notice; so a new
package is not done until a contract in pyproject.toml says what it may not import.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _covered() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    covered: set[str] = set()
    for contract in config["contracts"]:
        for key in ("source_modules", "modules"):
            covered.update(contract.get(key, ()))
        for layer in contract.get("layers", ()):
            covered.update(part.strip() for part in layer.replace(":", "|").split("|"))
    return covered


def _packages() -> set[str]:
    osm = ROOT / "osm"
    found = {f"osm.{path.parent.name}" for path in osm.glob("*/__init__.py")}
    found |= {f"osm.{path.stem}" for path in osm.glob("*.py") if path.stem != "__init__"}
    return found


def test_every_package_is_in_a_contract() -> None:
    covered = _covered()
    missing = sorted(
        package
        for package in _packages()
        if not any(package == c or package.startswith(c + ".") for c in covered)
    )
    assert missing == [], f"add these to an import-linter contract in pyproject.toml: {missing}"
