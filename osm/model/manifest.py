"""Loading manifests: YAML or JSON text, multi-document files, directories recursively.

The result holds every object that parsed cleanly and every problem found anywhere,
each located by file, document, object and field path. Loading reads files (the caller
names them); it does not touch the network or the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from osm.model import kinds, policy, references
from osm.model.errors import Problem
from osm.model.meta import ObjectRef, Resource

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Loaded:
    """One valid object and where it came from."""

    resource: Resource
    source: str
    document: int


@dataclass(slots=True)
class LoadResult:
    objects: list[Loaded] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def resources(self) -> list[Resource]:
        return [loaded.resource for loaded in self.objects]


def manifest_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Expands files and directories (recursively, YAML and JSON files, sorted)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            if not found:
                problems.append(
                    Problem(f"no {', '.join(SUFFIXES)} files in this directory", source=str(path))
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem("no such file or directory", source=str(path)))
    return files, problems


def load_paths(
    paths: Iterable[str | Path],
    *,
    default_namespace: str = "default",
    stdin: Callable[[], str] | None = None,
) -> LoadResult:
    """Loads files and directories; the path ``-`` reads the text `stdin` returns.

    Objects defined twice anywhere in the set (across files and stdin) are errors, and so
    are UpstreamTrafficSettings that set a host an earlier one sets (`policy.upstream_conflicts`).
    """
    paths = list(paths)
    use_stdin = stdin is not None and "-" in [str(p) for p in paths]
    files, problems = manifest_files(p for p in paths if str(p) != "-" or stdin is None)
    result = LoadResult(problems=problems)
    if use_stdin and stdin is not None:
        _add(result, load_text(stdin(), source="<stdin>", default_namespace=default_namespace))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            result.problems.append(Problem(f"cannot read: {error}", source=str(path)))
            continue
        _add(result, load_text(text, source=str(path), default_namespace=default_namespace))
    _check_duplicates(result)
    return result


def load_text(
    text: str, *, source: str = "<stdin>", default_namespace: str = "default"
) -> LoadResult:
    """Parses YAML (one or more documents) or JSON text."""
    result = LoadResult()
    for document, data in _documents(text, source, result.problems):
        for item_path, item in _expand_lists(data):
            resource, problems = kinds.parse(item, default_namespace=default_namespace)
            for problem in problems:
                path = (
                    f"{item_path}.{problem.path}"
                    if item_path and problem.path
                    else (item_path or problem.path)
                )
                result.problems.append(
                    Problem(
                        problem.message,
                        path,
                        source,
                        document,
                        problem.kind,
                        problem.namespace,
                        problem.name,
                        problem.severity,
                    )
                )
            if resource is not None:
                result.objects.append(Loaded(resource, source, document))
    _check_duplicates(result)
    return result


def load_objects(
    items: Sequence[Mapping[str, Any]],
    *,
    source: str = "<request>",
    default_namespace: str = "default",
) -> LoadResult:
    """Validates already-decoded manifests (e.g. a request body), one document each."""
    result = LoadResult()
    for document, item in enumerate(items):
        resource, problems = kinds.parse(item, default_namespace=default_namespace)
        result.problems.extend(p.located(source=source, document=document) for p in problems)
        if resource is not None:
            result.objects.append(Loaded(resource, source, document))
    _check_duplicates(result)
    return result


def _documents(text: str, source: str, problems: list[Problem]) -> Iterator[tuple[int, Any]]:
    """Yields (document index, data); empty documents are skipped but keep their number.

    Text that starts with ``{`` or ``[`` is read as JSON (a list holds one document per
    item). A ``.json`` file must be JSON; other text that is not JSON is read as YAML,
    since YAML in flow style starts the same way.
    """
    if text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            if source.endswith(".json"):
                where = (
                    f" at line {error.lineno}, column {error.colno}: {error.msg}"
                    if isinstance(error, json.JSONDecodeError)
                    else ": nested too deeply"
                )
                problems.append(Problem(f"invalid JSON{where}", source=source, document=0))
                return
        else:
            items = data if isinstance(data, list) else [data]
            yield from enumerate(items)
            return
    index = 0
    try:
        for data in yaml.safe_load_all(text):
            if data is not None:
                yield index, data
            index += 1
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        problems.append(Problem(f"invalid YAML{where}: {problem}", source=source, document=index))
    except RecursionError:
        problems.append(Problem("invalid YAML: nested too deeply", source=source, document=index))


def _expand_lists(data: Any) -> Iterator[tuple[str, Any]]:
    """A ``kind: List`` document stands for its items, as with kubectl."""
    if (
        isinstance(data, Mapping)
        and data.get("kind") == "List"
        and isinstance(data.get("items"), list)
    ):
        for index, item in enumerate(data["items"]):
            yield f"items[{index}]", item
    else:
        yield "", data


def _add(result: LoadResult, other: LoadResult) -> None:
    result.objects.extend(other.objects)
    result.problems.extend(other.problems)


def _check_duplicates(result: LoadResult) -> None:
    """The same object twice in one set is an error; the first definition is kept. Then
    conflicts between objects, likewise."""
    first: dict[ObjectRef, Loaded] = {}
    for loaded in result.objects:
        ref = loaded.resource.ref
        if ref in first:
            earlier = first[ref]
            result.problems.append(
                Problem(
                    f"defined more than once; first in {earlier.source} document "
                    f"{earlier.document + 1}",
                    source=loaded.source,
                    document=loaded.document,
                    kind=ref.kind,
                    namespace=ref.namespace,
                    name=ref.name,
                )
            )
        else:
            first[ref] = loaded
    result.objects = list(first.values())
    _check_conflicts(result)


def _check_conflicts(result: LoadResult) -> None:
    """Objects that contradict an earlier one (two UpstreamTrafficSettings for one host)
    are errors, as OSM's webhook refuses the later; the earlier is kept."""
    where = {loaded.resource.ref: loaded for loaded in result.objects}
    refused: set[ObjectRef] = set()
    for problem in policy.upstream_conflicts(result.resources):
        ref = ObjectRef(problem.kind, problem.namespace, problem.name)
        refused.add(ref)
        result.problems.append(
            problem.located(source=where[ref].source, document=where[ref].document)
        )
    result.objects = [loaded for loaded in result.objects if loaded.resource.ref not in refused]


def reference_warnings(result: LoadResult) -> list[Problem]:
    """Warnings for references that the loaded set does not satisfy, located by file."""
    where = {loaded.resource.ref: loaded for loaded in result.objects}
    located: list[Problem] = []
    for problem in references.check(result.resources):
        loaded = where.get(ObjectRef(problem.kind, problem.namespace, problem.name))
        located.append(
            problem.located(
                source=loaded.source if loaded else None,
                document=loaded.document if loaded else None,
            )
        )
    return located
