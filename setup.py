"""Builds osm-py with the sidecar's data-plane hot modules compiled by mypyc, when it can.

The one idea: the pure Python sources stay the truth (the dev venv, the tests and every
fallback run them); a wheel or a ``pip install .`` adds, next to each module listed in
`COMPILED`, a C extension that mypyc generated from it (and one shared ``*__mypyc`` library
at the top level), which the import system prefers to the ``.py`` beside it. The metadata is
in ``pyproject.toml``; this file only adds the extensions.

Compilation is optional. The wheel is pure Python (with a warning) when

- ``OSM_PURE_PYTHON=1`` asks for it;
- the build is editable or in place (``pip install -e``): compiled files must never land
  in the source tree, where they would shadow the sources that tests and edits change;
- the interpreter has no ``Python.h`` or there is no C compiler (Debian: ``apt-get install
  gcc python3-dev``), mypyc is missing, or mypyc or the compiler fails.

``OSM_REQUIRE_COMPILED=1`` turns every such fallback into an error (``make test-compiled``
uses it, so a module that stops compiling fails CI instead of quietly testing Python).
mypyc type-checks with the ``[tool.mypy]`` configuration; in pip's isolated build
environment only the ``build-system.requires`` packages are importable, which is why
``httptools`` (the one third-party library the hot modules' types come from) is there.
The C is generated once, in the process that builds the wheel; pip's metadata steps
(separate processes, which finalize build_ext too) keep the placeholder.

Build time is gcc's: mypyc's analysis and C generation take ~5 s, but one translation unit
of the nine modules it compiled then (mypyc's default) took gcc ~50 s of one core at -O3. mypyc's
``multi_file`` mode writes one C file per module (and its runtime's as separate files):
~35 s of CPU in total, which `OptionalMypycBuildExt` spreads over every core the build may
use (~20 s on two). gcc then cannot inline a call from one compiled module into another;
paired data-plane benchmarks showed no cost beyond noise (docs/decisions.md).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The sidecar's per-request path. Modules outside it stay interpreted (and may import these).
COMPILED = (
    "osm/proxy/http1.py",
    "osm/proxy/transport.py",
    "osm/proxy/router.py",
    "osm/proxy/rbac.py",
    "osm/proxy/listeners.py",  # accept, filter-chain match, TLS, network RBAC, TCP proxy
    "osm/proxy/filter_chain.py",
    "osm/proxy/tcp_relay.py",
    "osm/proxy/http_session.py",
    "osm/proxy/http_rewrite.py",
    "osm/proxy/retry.py",
    "osm/proxy/inbox.py",
    "osm/proxy/upstream.py",
    "osm/proxy/stats.py",
    "osm/proxy/model.py",  # the model every request reads (routes, matchers, clusters)
    "osm/proxy/runtime.py",
    "osm/proxy/tracing.py",  # the spans of a traced HCM's requests
    "osm/proxy/rate_limit.py",  # the token buckets a limited request or connection takes from
)
# A stand-in until build_ext is finalized for a build: it makes the wheel a platform wheel
# and build_ext run. pip's metadata steps (separate processes) finalize build_ext too.
PLACEHOLDER = Extension("osm._mypyc_placeholder", sources=[])
METADATA_ONLY = {"egg_info", "dist_info", "sdist"}
IN_PLACE = {"editable_wheel", "develop"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _obstacle() -> str | None:
    """Why this machine cannot compile the hot modules, or None if it can try."""
    if _flag("OSM_PURE_PYTHON"):
        return "OSM_PURE_PYTHON is set"
    if sys.implementation.name != "cpython":
        return f"mypyc needs CPython, not {sys.implementation.name}"
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").exists():
        return f"no Python.h in {include} (Debian: apt-get install python3-dev)"
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler {compiler!r} on PATH (Debian: apt-get install gcc)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed (pip install 'mypy[mypyc]')"
    return None


class OptionalMypycBuildExt(build_ext):
    """build_ext that compiles `COMPILED` with mypyc, or builds nothing (pure Python)."""

    def finalize_options(self) -> None:
        self.distribution.ext_modules = self._extensions()
        super().finalize_options()

    def _extensions(self) -> list[Extension]:
        commands = set(self.distribution.commands)
        if commands <= METADATA_ONLY:
            return [PLACEHOLDER]  # nothing is built: no need to generate C
        if self.inplace or getattr(self, "editable_mode", False) or commands & IN_PLACE:
            return self._pure("an editable or in-place build keeps the source tree pure")
        obstacle = _obstacle()
        if obstacle is not None:
            return self._pure(obstacle)
        from mypyc.build import mypycify

        try:
            extensions: list[Extension] = mypycify(list(COMPILED), opt_level="3", multi_file=True)
        except SystemExit as error:  # mypyc reports type errors and exits
            return self._pure(f"mypyc failed ({error.code}); see the messages above")
        return extensions

    def build_extension(self, ext: Extension) -> None:
        compile_serially = self.compiler.compile
        if not getattr(compile_serially, "osm_parallel", False):
            self.compiler.compile = _in_parallel(compile_serially, _cores())
        super().build_extension(ext)

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # the compiler or linker failed: CCompilerError & co.
            for extension in self.extensions:
                built = Path(self.get_ext_fullpath(extension.name))
                built.unlink(missing_ok=True)
            self.extensions = []
            self._pure(f"compiling failed: {error}")

    def _pure(self, reason: str) -> list[Extension]:
        message = f"osm-py: building pure Python, not compiling with mypyc: {reason}"
        if _flag("OSM_REQUIRE_COMPILED"):
            raise SystemExit(message + " (OSM_REQUIRE_COMPILED is set)")
        print("WARNING: " + message, file=sys.stderr)
        return []


def _cores() -> int:
    """The cores this build may use (its CPU affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _in_parallel(compile_serially: Callable[..., list[str]], jobs: int) -> Any:
    """``CCompiler.compile`` compiling each source in its own gcc, ``jobs`` at a time, largest
    first (mypyc's two ~2 MB module files take most of the time). setuptools' own ``--parallel``
    works per extension, and the whole of mypyc's output is one extension."""

    def compile_all(sources: list[str], *args: Any, **kwargs: Any) -> list[str]:
        if jobs < 2 or len(sources) < 2:
            return compile_serially(sources, *args, **kwargs)
        largest_first = sorted(sources, key=lambda s: Path(s).stat().st_size, reverse=True)
        with ThreadPoolExecutor(jobs) as pool:
            objects = dict(
                zip(
                    largest_first,
                    pool.map(lambda s: compile_serially([s], *args, **kwargs), largest_first),
                    strict=True,
                )
            )
        return [built for source in sources for built in objects[source]]

    compile_all.osm_parallel = True  # type: ignore[attr-defined]
    return compile_all


cmdclass: dict[str, Any] = {"build_ext": OptionalMypycBuildExt}
setup(ext_modules=[PLACEHOLDER], cmdclass=cmdclass)
