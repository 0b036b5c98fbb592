"""Properties: bad input only ever yields problems, and valid objects survive a round trip.

The mutations start from each valid example manifest and break it the ways users and
scripts do: a key deleted, a value of the wrong type, keys added, a value wrapped in a
list, or a value buried under deep nesting.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osm.model import kinds, manifest
from osm.model.errors import Problem
from tests.unit.model import model_examples as ex

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

EXAMPLES = {name: ex.load(text) for name, text in ex.VALID.items()}


def _all_keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _all_keys(v)}
    return set()


# Keys the model knows, so that inserted keys often land on a real field.
KNOWN_KEYS = sorted({key for example in EXAMPLES.values() for key in _all_keys(example)})

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "²", "80", "None", "TCP", "GET", "24h", "(", "a{99999999999}"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8)

Path = tuple[str | int, ...]


def _containers(value: object, path: Path = ()) -> list[Path]:
    """Paths of every dict and list inside `value`, the root included."""
    found: list[Path] = []
    if isinstance(value, dict):
        found.append(path)
        for key, item in value.items():
            found.extend(_containers(item, (*path, key)))
    elif isinstance(value, list):
        found.append(path)
        for index, item in enumerate(value):
            found.extend(_containers(item, (*path, index)))
    return found


def _at(value: Any, path: Path) -> Any:
    for step in path:
        value = value[step]
    return value


def _nest(value: object, depth: int, in_lists: bool) -> object:
    for _ in range(depth):
        value = [value] if in_lists else {"spec": value}
    return value


@st.composite
def mutated(draw: st.DrawFn, example: dict[str, Any]) -> Any:
    """The example with one to three random mutations applied."""
    document: Any = copy.deepcopy(example)
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(document, dict | list):
            break
        container = _at(document, draw(st.sampled_from(_containers(document))))
        slots: list[Any] = (
            list(container) if isinstance(container, dict) else list(range(len(container)))
        )
        operation = draw(st.sampled_from(["delete", "replace", "insert", "wrap", "nest"]))
        if operation == "insert" or not slots:
            if isinstance(container, dict):
                container[draw(keys)] = draw(json_values)
            else:
                container.append(draw(json_values))
            continue
        slot = draw(st.sampled_from(slots))
        if operation == "delete":
            del container[slot]
        elif operation == "replace":
            container[slot] = draw(json_values)
        elif operation == "wrap":
            container[slot] = [container[slot]]
        else:
            depth = draw(st.integers(1, 60))
            container[slot] = _nest(container[slot], depth, draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:  # sometimes the whole document is replaced
        document = draw(json_values)
    return document


def _check_outcome(document: object) -> None:
    outcome = kinds.parse(document)
    assert isinstance(outcome, tuple) and len(outcome) == 2
    resource, problems = outcome
    assert all(isinstance(p, Problem) for p in problems)
    assert all(p.message and str(p) for p in problems)
    errors = [p for p in problems if p.severity == "error"]
    if resource is None:
        assert errors, "an object was refused without an error"
    else:
        assert errors == [], "an object was accepted despite errors"
        assert kinds.parse(resource.to_dict())[0] == resource


def _property(name: str) -> Callable[[], None]:
    @PROPERTY_SETTINGS
    @given(document=mutated(EXAMPLES[name]))
    def check(document: object) -> None:
        _check_outcome(document)

    return check


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_a_mutated_manifest_only_ever_yields_problems(name: str) -> None:
    _property(name)()


@PROPERTY_SETTINGS
@given(document=json_values)
def test_any_json_value_only_ever_yields_problems(document: object) -> None:
    _check_outcome(document)


@settings(max_examples=60, deadline=None, database=None)
@given(text=st.text(max_size=200) | st.sampled_from(["{", "[", "---\n---", "- [", "{a: [}"]))
def test_any_text_loads_into_objects_and_problems(text: str) -> None:
    result = manifest.load_text(text, source="fuzz.yaml")
    assert all(isinstance(p, Problem) and str(p) for p in result.problems)


def test_deeply_nested_yaml_is_a_problem_not_a_crash() -> None:
    result = manifest.load_text("a: " + "[" * 5000 + "]" * 5000, source="deep.yaml")
    assert len(result.errors) == 1
    assert result.errors[0].message.startswith("invalid YAML")


@PROPERTY_SETTINGS
@given(data=st.data())
def test_mutations_survive_a_yaml_round_trip_through_the_loader(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(list(EXAMPLES)))
    document = data.draw(mutated(EXAMPLES[name]))
    try:
        text = yaml.safe_dump(document)
    except (yaml.YAMLError, RecursionError):
        return
    result = manifest.load_text(text, source="mutated.yaml")
    assert all(isinstance(p, Problem) and str(p) for p in result.problems)


@pytest.mark.parametrize("name", list(ex.VALID))
def test_a_valid_object_survives_a_round_trip(name: str) -> None:
    resource = ex.parse_valid(ex.VALID[name])
    again, problems = kinds.parse(resource.to_dict())
    assert problems == []
    assert again == resource
    assert again is not None and again.to_dict() == resource.to_dict()
