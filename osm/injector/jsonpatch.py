"""RFC 6902 JSON patches: the difference between two JSON documents, as operations.

One idea: an AdmissionReview response carries the mutation as a patch against the pod the
API server sent, so the injector builds the mutated pod first and derives the patch by
diffing (as OSM does with ``PatchResponseFromRaw``): what the patch says can never drift
from the pod it describes. Objects are diffed key by key; a list as long or longer is
diffed item by item and its new items appended with ``add``; a shorter one is replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Operation = dict[str, Any]


def diff(original: Any, mutated: Any) -> list[Operation]:
    """Operations that turn `original` into `mutated` (both JSON values)."""
    operations: list[Operation] = []
    _diff(original, mutated, "", operations)
    return operations


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer: ``pointer("metadata", "labels", "a/b")`` is
    ``/metadata/labels/a~1b``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _diff(original: Any, mutated: Any, path: str, operations: list[Operation]) -> None:
    if _same(original, mutated):
        return
    if isinstance(original, Mapping) and isinstance(mutated, Mapping):
        for key in original:
            if key not in mutated:
                operations.append({"op": "remove", "path": path + pointer(key)})
        for key, value in mutated.items():
            if key not in original:
                operations.append({"op": "add", "path": path + pointer(key), "value": value})
            else:
                _diff(original[key], value, path + pointer(key), operations)
        return
    if isinstance(original, list) and isinstance(mutated, list) and len(mutated) >= len(original):
        for index, item in enumerate(mutated):
            if index < len(original):
                _diff(original[index], item, path + pointer(index), operations)
            else:
                operations.append({"op": "add", "path": path + pointer(index), "value": item})
        return
    operations.append({"op": "replace", "path": path, "value": mutated})


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1`` is not ``True`` (Python's ``==`` says they are equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
