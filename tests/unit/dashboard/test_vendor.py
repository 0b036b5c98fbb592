"""The dashboard page's vendored libraries are exactly what osm/dashboard/web pins.

`make dashboard-vendor` copies the files package.json's `osmVendor` names from the packages
that `npm ci` installed into osm/dashboard/static/vendor, with MANIFEST.json recording each
file's package, version and sha256. Pods and pip installs serve the committed copies, so
these tests hold the copies to the pins: every vendored file is in the manifest with its
real digest, every manifest entry's version is the one package.json and its lock file pin,
and the page loads nothing from /static that is not there.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from osm import dashboard

PACKAGE = Path(dashboard.__file__).resolve().parent
STATIC = PACKAGE / "static"
VENDOR = STATIC / "vendor"
WEB = PACKAGE / "web"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


MANIFEST: dict[str, dict[str, str]] = _json(VENDOR / "MANIFEST.json")["files"]
PINS: dict[str, str] = _json(WEB / "package.json")["dependencies"]
WANTED: dict[str, str] = _json(WEB / "package.json")["osmVendor"]
LOCKED: dict[str, dict[str, Any]] = _json(WEB / "package-lock.json")["packages"]


def test_the_vendor_directory_holds_exactly_the_files_package_json_names() -> None:
    present = {path.name for path in VENDOR.iterdir()} - {"MANIFEST.json"}
    assert present == set(WANTED) == set(MANIFEST)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_a_vendored_file_is_the_pinned_packages_file_with_its_recorded_digest(name: str) -> None:
    entry = MANIFEST[name]
    digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
    assert digest == entry["sha256"], f"{name} changed since make dashboard-vendor"
    assert f"{entry['package']}/{entry['source']}" == WANTED[name]
    assert entry["version"] == PINS[entry["package"]]
    assert LOCKED[f"node_modules/{entry['package']}"]["version"] == entry["version"]


@pytest.mark.parametrize("package", sorted(PINS))
def test_every_pin_is_exact_and_locked(package: str) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", PINS[package]), f"{package}: not an exact version"
    assert LOCKED[""]["dependencies"][package] == PINS[package]
    assert LOCKED[f"node_modules/{package}"]["version"] == PINS[package]
    assert any(entry["package"] == package for entry in MANIFEST.values()), f"{package} unused"


def test_the_page_loads_only_files_that_are_there() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    referenced = re.findall(r'(?:src|href)="/static/([^"]+)"', page)
    assert any(name.startswith("vendor/") for name in referenced)
    missing = [name for name in referenced if not (STATIC / name).is_file()]
    assert missing == []


def test_static_files_stay_within_the_package_data_globs() -> None:
    """pyproject's package data for osm.dashboard is `static/*` and `static/*/*`."""
    too_deep = [
        str(path.relative_to(STATIC))
        for path in STATIC.rglob("*")
        if path.is_file() and len(path.relative_to(STATIC).parts) > 2
    ]
    assert too_deep == []
