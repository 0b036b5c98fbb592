"""OSM's ports and the proxy's UID are written once, in `osm.base.wellknown`.

A port that two processes must agree on (the sidecar's listener and the iptables rule that
redirects to it) drifts apart when each writes its own literal; this test finds any such
literal outside the one module (in osm and bench), in code and in strings, but not in
docstrings, which may name the values they document.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

from osm.base import wellknown

REPOSITORY = Path(__file__).resolve().parents[3]
ROOT = REPOSITORY / "osm"
HOME = ROOT / "base" / "wellknown.py"
SCANNED = (ROOT, REPOSITORY / "bench")
VALUES = {
    wellknown.PROXY_UID,
    wellknown.PROXY_ADMIN_PORT,
    wellknown.PROXY_OUTBOUND_PORT,
    wellknown.PROXY_INBOUND_PORT,
    wellknown.PROXY_PROMETHEUS_PORT,
    wellknown.LIVENESS_PROBE_PORT,
    wellknown.READINESS_PROBE_PORT,
    wellknown.STARTUP_PROBE_PORT,
    wellknown.HEALTHCHECK_PORT,
    wellknown.XDS_PORT,
    wellknown.API_PORT,
    wellknown.CONTROLLER_HTTP_PORT,
    wellknown.INJECTOR_WEBHOOK_PORT,
    wellknown.VALIDATING_WEBHOOK_PORT,
}
IN_TEXT = re.compile(r"(?<![\d.])(" + "|".join(str(v) for v in sorted(VALUES)) + r")(?![\d.])")


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        # An attribute's docstring: a string statement right after an assignment.
        for field in ("body", "orelse"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue
            for before, after in itertools.pairwise(statements):
                if (
                    isinstance(before, ast.Assign | ast.AnnAssign)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                ):
                    found.add(id(after.value))
    return found


def _literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in skip:
            continue
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool) and value in VALUES:
            found.append(f"{path.relative_to(REPOSITORY)}:{node.lineno}: {value}")
        elif isinstance(value, str) and IN_TEXT.search(value):
            found.append(f"{path.relative_to(REPOSITORY)}:{node.lineno}: {value!r}")
    return found


def test_no_module_but_wellknown_writes_osms_ports_or_the_proxy_uid() -> None:
    paths = sorted(path for tree in SCANNED for path in tree.rglob("*.py") if path != HOME)
    found = [hit for path in paths for hit in _literals(path)]
    assert found == [], "use osm.base.wellknown instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("127.0.0.1:15128", True),
        ("port 15000", True),
        ("150001", False),
        ("10.15000.0.1", False),
        ("8080,9090", True),
    ],
)
def test_the_text_check_finds_whole_numbers_only(text: str, hit: bool) -> None:
    assert bool(IN_TEXT.search(text)) is hit
