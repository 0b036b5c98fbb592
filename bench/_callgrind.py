"""Reading callgrind's output files: instructions (Ir) per function and per binary.

Only what bench/instructions.py needs of the format (valgrind's docs, "Callgrind Format
Specification"): `ob=`/`fn=` name the binary and function that the following cost lines
belong to, with `(id) name` compression; `cfn=`/`cob=`/`cfi=` name a call's target, and
the cost line after `calls=` is the call's inclusive cost, which belongs to the callee, so
it is skipped here. A cost line is positions then events; we ask for `Ir` alone.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_NAME = re.compile(r"^(ob|fn|fl|fi|fe|cob|cfn|cfi|cfl)=(?:\((\d+)\))?\s*(.*)$")
_SPACE = {"cob": "ob", "cfn": "fn", "cfi": "fl", "cfl": "fl", "fi": "fl", "fe": "fl"}

# Binaries grouped by what they do, first match wins (matched against the file name).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("compiled", ("__mypyc", "osm")),
    ("tls", ("libssl", "libcrypto", "_ssl.")),
    ("loop", ("loop.cpython", "libuv", "_asyncio")),
    ("http", ("parser.cpython", "url_parser")),
    ("interpreter", ("libpython", "python3")),
    ("libc", ("libc.so", "ld-linux", "libm.so", "libpthread")),
    ("haproxy", ("haproxy",)),
)


def group_of(binary: str) -> str:
    name = binary.rsplit("/", 1)[-1]
    for group, needles in GROUPS:
        if any(needle in name for needle in needles):
            return group
    return "other"


@dataclass
class Profile:
    """Exclusive instructions by function, and the binary each function is in."""

    by_function: Counter[str] = field(default_factory=Counter)
    binary_of: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_function.values())

    def by_group(self) -> Counter[str]:
        groups: Counter[str] = Counter()
        for function, cost in self.by_function.items():
            groups[group_of(self.binary_of.get(function, "?"))] += cost
        return groups


def read(path: Path) -> Profile:
    """The exclusive Ir of each function in one callgrind output file."""
    profile = Profile()
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}, "fl": {}}
    binary = "?"
    function = "?"
    after_call = False
    with path.open() as lines:
        for line in lines:
            match = _NAME.match(line)
            if match is not None:
                kind, ident, name = match.groups()
                space = _SPACE.get(kind, kind)
                if ident is not None:
                    if name:
                        names[space][ident] = name.rstrip("\n")
                    name = names[space].get(ident, "?")
                if kind == "ob":
                    binary = name
                elif kind == "fn":
                    function = name
                    profile.binary_of.setdefault(function, binary)
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    profile.by_function[function] += int(parts[1])
    return profile
