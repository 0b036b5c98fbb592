"""Field selectors (``?fieldSelector=metadata.name=web,status.phase!=Running``).

Kubernetes supports a few fields per kind: ``metadata.name`` and ``metadata.namespace``
everywhere, and some more for some kinds; any other field is refused with the message
kube-apiserver gives (``field label not supported: X``). Label selectors are the store's
(`osm.store.api.parse_selector`); `label_selector` reads the structured form objects carry
(``matchLabels`` and ``matchExpressions``, as a webhook's ``namespaceSelector``) into one.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from osm.store import api as store_api

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


EXPRESSION_OPERATORS: Mapping[str, store_api.Operator] = {
    "In": "in",
    "NotIn": "notin",
    "Exists": "exists",
    "DoesNotExist": "!",
}


def label_selector(spec: object) -> store_api.LabelSelector:
    """A ``metav1.LabelSelector`` (``matchLabels`` ANDed with ``matchExpressions``) as the
    store's selector; absent or ``{}`` selects everything. Raises ValueError with
    kube-apiserver's wording for what its validation refuses (an unknown operator, values
    with Exists, none with In)."""
    if spec is None:
        return store_api.LabelSelector()
    if not isinstance(spec, Mapping):
        raise ValueError("a label selector must be an object")
    requirements: list[store_api.Requirement] = []
    match_labels = spec.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise ValueError("matchLabels must be an object")
    for key, value in sorted(match_labels.items()):
        _check_label(str(key), str(value))
        requirements.append(store_api.Requirement(str(key), "=", (str(value),)))
    expressions = spec.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise ValueError("matchExpressions must be a list")
    for expression in expressions:
        if not isinstance(expression, Mapping):
            raise ValueError("each of matchExpressions must be an object")
        key = str(expression.get("key") or "")
        operator = str(expression.get("operator") or "")
        values = expression.get("values") or []
        if not isinstance(values, list):
            raise ValueError(f"the values of {key!r} must be a list")
        found = EXPRESSION_OPERATORS.get(operator)
        if found is None:
            raise ValueError(f"{operator!r} is not a valid label selector operator")
        if found in ("in", "notin") and not values:
            raise ValueError(f"for 'in', 'notin' operators, values set can't be empty ({key})")
        if found in ("exists", "!") and values:
            raise ValueError(f"values set must be empty for exists and does not exist ({key})")
        for value in values:
            _check_label(key, str(value))
        _check_label(key, "")
        requirements.append(
            store_api.Requirement(key, found, tuple(sorted({str(v) for v in values})))
        )
    return store_api.LabelSelector(tuple(requirements))


def _check_label(key: str, value: str) -> None:
    problem = store_api.label_key_problem(key) or store_api.label_value_problem(value)
    if problem is not None:
        raise ValueError(f"{key}: {problem}")


def _value(obj: Mapping[str, Any], field: str) -> str:
    current: Any = obj
    for part in field.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    return "" if current is None else str(current)
