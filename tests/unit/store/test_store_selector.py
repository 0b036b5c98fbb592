"""Label selectors: Kubernetes syntax and semantics, errors with positions, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from osm.store import LabelSelector, Requirement, SelectorError, parse_selector
from osm.store.api import Operator

LABELS = {"app": "web", "tier": "front", "example.com/team": "shop", "empty": ""}

# selector, does it match LABELS
MATCHES = [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=api", False),
    ("app!=api", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app in (api,web)", True),
    ("app in (api)", False),
    ("missing in (x)", False),
    ("app notin (api)", True),
    ("app notin (web,api)", False),
    ("missing notin (x)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("example.com/team=shop", True),
    ("empty=", True),
    ("empty in (,x)", True),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("  app = web ,  tier in ( front , back ) , ! missing ", True),
    ("app in(web)", True),
]


@pytest.mark.parametrize(("text", "expected"), MATCHES)
def test_matches(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


# selector, canonical form
CANONICAL = [
    ("", ""),
    ("a==b", "a=b"),
    (" a = b ", "a=b"),
    ("a in (y, x, y)", "a in (x,y)"),
    ("a notin (x)", "a notin (x)"),
    ("! a", "!a"),
    ("a,b!=c", "a,b!=c"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical_text(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


def test_parsed_structure() -> None:
    assert parse_selector("a=b,!c,d in (f,e)") == LabelSelector(
        (
            Requirement("a", "=", ("b",)),
            Requirement("c", "!"),
            Requirement("d", "in", ("e", "f")),
        )
    )


# selector, position of the error, words of the message
ERRORS = [
    ("=b", 0, "expected a label key"),
    ("a=b,", 4, "expected a label key, found the end"),
    ("a,,b", 2, "expected a label key"),
    ("a b", 2, "expected one of"),
    ("a in x", 5, "expected '('"),
    ("a in (x", 7, "expected ',' or ')'"),
    ("a in ()", 6, "must not be empty"),
    ("a=b=c", 3, "expected ',' or the end"),
    ("a!b", 1, "expected '!='"),
    ("a=b c", 4, "expected ',' or the end"),
    ("-a=b", 0, "label key name"),
    ("a=-b", 2, "label value"),
    ("a=" + "x" * 64, 2, "label value"),
    ("Bad_Prefix/a", 0, "prefix"),
    ("/a", 0, "prefix"),
    ("a in (x,y z)", 10, "expected ',' or ')'"),
    ("a (", 2, "expected one of"),
]


@pytest.mark.parametrize(("text", "position", "words"), ERRORS)
def test_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert caught.value.position == position
    assert words in str(caught.value)
    assert f"at position {position}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- properties ---------------------------------------------------------------------------

_alnum = st.sampled_from("abcxyzABZ019")
_middle = st.text(alphabet="abcxyz019-_.", max_size=8)
label_names = st.builds(
    lambda first, middle, last: first + middle + last, _alnum, _middle, _alnum
) | _alnum.map(str)
prefixes = st.lists(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,4}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3
)
label_keys = label_names | st.builds(lambda p, n: ".".join(p) + "/" + n, prefixes, label_names)
label_values = st.just("") | label_names
requirements = st.one_of(
    st.builds(Requirement, label_keys, st.just("exists")),
    st.builds(Requirement, label_keys, st.just("!")),
    st.builds(Requirement, label_keys, st.sampled_from(["=", "!="]), st.tuples(label_values)),
    st.builds(
        lambda key, operator, values: Requirement(key, operator, tuple(sorted(values))),
        label_keys,
        st.sampled_from(["in", "notin"]),
        st.frozensets(label_values, min_size=1, max_size=4),
    ),
)
selectors = st.lists(requirements, max_size=5).map(lambda r: LabelSelector(tuple(r)))
label_sets = st.dictionaries(label_keys, label_values, max_size=5)


@given(selectors)
def test_canonical_text_round_trips(selector: LabelSelector) -> None:
    assert parse_selector(str(selector)) == selector


@given(selectors, st.sampled_from([" ", "  ", "\t"]))
def test_whitespace_around_tokens_does_not_matter(selector: LabelSelector, space: str) -> None:
    spaced = space + str(selector).replace(",", f"{space},{space}").replace("(", f"{space}(")
    assert parse_selector(spaced) == selector


@given(selectors, label_sets)
def test_a_selector_is_the_conjunction_of_its_requirements(
    selector: LabelSelector, labels: dict[str, str]
) -> None:
    expected = all(
        LabelSelector((requirement,)).matches(labels) for requirement in selector.requirements
    )
    assert selector.matches(labels) is expected


@given(requirements, label_sets)
def test_negated_operators_are_complements(
    requirement: Requirement, labels: dict[str, str]
) -> None:
    opposite: dict[Operator, Operator] = {
        "exists": "!",
        "!": "exists",
        "=": "!=",
        "!=": "=",
        "in": "notin",
        "notin": "in",
    }
    negated = Requirement(requirement.key, opposite[requirement.operator], requirement.values)
    assert negated.matches(labels) is not requirement.matches(labels)


@given(st.text(alphabet=st.sampled_from("ab=!(),/ .-_\tinot") | st.characters(), max_size=40))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    try:
        selector = parse_selector(text)
    except ValueError as error:
        assert isinstance(error, SelectorError)
        assert 0 <= error.position <= len(text)
    else:
        assert parse_selector(str(selector)) == selector
        selector.matches({"a": "b"})
