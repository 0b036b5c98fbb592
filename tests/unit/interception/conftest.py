"""Tests marked ``root`` are skipped unless the run has root (namespaces, iptables)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, iptables)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
