"""Field selectors (``?fieldSelector=metadata.name=web,status.phase!=Running``).

Kubernetes supports a few fields per kind: ``metadata.name`` and ``metadata.namespace``
everywhere, and some more for some kinds; any other field is refused with the message
kube-apiserver gives (``field label not supported: X``). Label selectors are the store's
(`osm.store.api.parse_selector`). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

COMMON = ("metadata.name", "metadata.namespace")
BY_KIND: Mapping[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
    ),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
}


class FieldSelectorError(ValueError):
    """A field selector that is malformed or names a field the kind does not support."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSelector:
    """ANDed ``field=value`` / ``field!=value`` terms."""

    terms: tuple[tuple[str, bool, str], ...] = ()
    """(field, equal, value): ``equal`` False for ``!=``."""

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((_value(obj, field) == value) == equal for field, equal, value in self.terms)

    def value_of(self, field: str) -> str | None:
        """The value a ``field=value`` term requires, if there is one (for lookups)."""
        for name, equal, value in self.terms:
            if name == field and equal:
                return value
        return None


def parse(text: str, kind: str) -> FieldSelector:
    """Parses a field selector for ``kind``; raises `FieldSelectorError`."""
    terms = []
    supported = COMMON + BY_KIND.get(kind, ())
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            field, _, value = part.partition("!=")
            equal = False
        elif "==" in part:
            field, _, value = part.partition("==")
            equal = True
        elif "=" in part:
            field, _, value = part.partition("=")
            equal = True
        else:
            raise FieldSelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field = field.strip()
        if field not in supported:
            raise FieldSelectorError(
                f'"{field}" is not a known field selector: only "{", ".join(supported)}"'
                if kind
                else f"field label not supported: {field}"
            )
        terms.append((field, equal, value.strip()))
    return FieldSelector(tuple(terms))


def _value(obj: Mapping[str, Any], field: str) -> str:
    current: Any = obj
    for part in field.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    return "" if current is None else str(current)
