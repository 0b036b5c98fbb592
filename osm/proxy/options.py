"""The command-line options of the sidecar's lean entry points (``python -m osm.proxy``,
``python -m osm.proxy.healthcheck``), parsed without argparse or click: their imports are
part of every pod's start.

One idea: each option takes a value, as ``--name value`` or ``--name=value``; ``-h`` or
``--help`` anywhere asks for help. What the values mean is the caller's business.
"""

from __future__ import annotations

from collections.abc import Sequence


class UsageError(Exception):
    """The command line is wrong; the message says what is valid."""


def parse(argv: Sequence[str], names: Sequence[str]) -> dict[str, str] | None:
    """The value of each option of `names` given in `argv` (the last one wins); None for
    ``--help``. Raises `UsageError` for an unknown option or a missing value."""
    values: dict[str, str] = {}
    items = list(argv)
    while items:
        item = items.pop(0)
        if item in ("-h", "--help"):
            return None
        name, equals, value = item.partition("=")
        if name not in names:
            valid = ", ".join((*names, "--help"))
            raise UsageError(f"unknown argument {item!r}; valid: {valid}")
        if not equals:
            if not items:
                raise UsageError(f"{name} needs a value")
            value = items.pop(0)
        values[name] = value
    return values
