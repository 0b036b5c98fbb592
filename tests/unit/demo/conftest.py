"""Fixtures for the bookstore demo tests (defined in demotesting, shared here)."""

from tests.unit.demo.demotesting import apps, stub

__all__ = ["apps", "stub"]
