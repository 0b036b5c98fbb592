"""kubectl's printing of a server-side Table, for tests: which columns, in which layout.

kubectl 1.32 prints a ``meta.k8s.io/v1`` Table with Go's tabwriter (minimum width 6,
padding 3, the last column unpadded), headers upper-cased, columns of priority > 0 only
with ``-o wide``, and a NAMESPACE column first with ``--all-namespaces``, read from each
row's object. The kubectl test checks this against the real binary; the unit tests use it
to write golden files that read like a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIN_WIDTH = 6
PADDING = 3


def layout(rows: list[list[str]]) -> str:
    """Go's ``tabwriter.NewWriter(out, 6, 4, 3, ' ', 0)`` over tab-separated cells."""
    if not rows:
        return ""
    count = max(len(row) for row in rows)
    widths = [
        max(MIN_WIDTH, max(len(row[i]) for row in rows if i < len(row)) + PADDING)
        for i in range(count - 1)
    ]
    lines = []
    for row in rows:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("".join(padded) + row[-1])
    return "\n".join(lines) + "\n"


def cell(value: Any) -> str:
    return "<none>" if value is None else str(value)


def kubectl_get(
    table: Mapping[str, Any], *, wide: bool = False, all_namespaces: bool = False
) -> str:
    """What ``kubectl get`` prints for ``table``."""
    shown = [i for i, c in enumerate(table["columnDefinitions"]) if wide or c["priority"] == 0]
    header = [table["columnDefinitions"][i]["name"].upper() for i in shown]
    rows = [[cell(row["cells"][i]) for i in shown] for row in table["rows"]]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
        for row, source in zip(rows, table["rows"], strict=True):
            row.insert(0, source["object"]["metadata"].get("namespace", ""))
    return layout([header, *rows])
