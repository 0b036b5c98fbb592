"""Kubernetes quantities: the grammar's cases by example, and as properties: a value
written by `format_quantity` reads back exactly, and suffixes scale without changing
the order of numbers.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osm.model import quantity

EXAMPLES = [
    ("128Mi", Fraction(128 * 2**20)),
    ("1G", Fraction(10**9)),
    ("1Gi", Fraction(2**30)),
    ("500m", Fraction(1, 2)),
    ("0.5", Fraction(1, 2)),
    (".5", Fraction(1, 2)),
    ("5.", Fraction(5)),
    ("1e3", Fraction(1000)),
    ("1E3", Fraction(1000)),
    ("1E", Fraction(10**18)),  # Exa, not an exponent
    ("1e-3", Fraction(1, 1000)),
    ("+2k", Fraction(2000)),
    ("-0", Fraction(0)),
    (64, Fraction(64)),
    (0.1, Fraction(1, 10)),  # a YAML float, as written, not as the binary double
]


@pytest.mark.parametrize(("text", "value"), EXAMPLES)
def test_a_quantity_reads_as_kubernetes_reads_it(text: str | int | float, value: Fraction) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is not a quantity"),
        ("64MB", "is not a quantity"),
        ("1 Mi", "is not a quantity"),
        ("Mi", "is not a quantity"),
        ("1.2.3", "is not a quantity"),
        ("-1", "must be 0 or more"),
        ("0." + "0" * 300 + "1x", "is not a quantity"),
        ("1e31", "exponent is out of range"),
        (float("inf"), "is not a quantity"),
        (True, "must be a quantity"),
    ],
)
def test_what_is_not_a_quantity_says_what_is(text: object, fragment: str) -> None:
    with pytest.raises(quantity.QuantityError, match=fragment):
        quantity.parse(text)  # type: ignore[arg-type]


SUFFIXES = [*quantity.BINARY_SUFFIXES, *quantity.DECIMAL_SUFFIXES, "e3", "e-2", "E5"]
numbers = st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False)


def written(number: Decimal, suffix: str) -> str:
    return f"{number:f}{suffix}"


@settings(max_examples=300, deadline=None, database=None)
@given(numbers, st.sampled_from(SUFFIXES))
def test_a_formatted_quantity_reads_back_exactly(number: Decimal, suffix: str) -> None:
    value = quantity.parse(written(number, suffix))
    assert quantity.parse(quantity.format_quantity(value)) == value


@settings(max_examples=300, deadline=None, database=None)
@given(numbers, numbers, st.sampled_from(SUFFIXES))
def test_a_suffix_keeps_the_order_of_numbers(a: Decimal, b: Decimal, suffix: str) -> None:
    left, right = quantity.parse(written(a, suffix)), quantity.parse(written(b, suffix))
    assert (left < right, left == right) == (a < b, a == b)


@settings(max_examples=200, deadline=None, database=None)
@given(numbers, st.sampled_from(SUFFIXES))
def test_a_suffix_scales_by_its_power(number: Decimal, suffix: str) -> None:
    unit = quantity.parse(f"1{suffix}")
    assert quantity.parse(written(number, suffix)) == Fraction(number) * unit


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=12))
def test_any_text_is_a_quantity_or_an_error_saying_why(text: str) -> None:
    try:
        value = quantity.parse(text)
    except quantity.QuantityError as error:
        assert str(error)
    else:
        assert quantity.parse(quantity.format_quantity(value)) == value


@settings(max_examples=200, deadline=None, database=None)
@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False) | st.integers(0, 2**70))
def test_a_yaml_number_is_the_quantity_it_reads_as(number: float | int) -> None:
    value = quantity.parse(number)
    assert value == Fraction(Decimal(repr(number)))
    assert quantity.parse(quantity.format_quantity(value)) == value  # 5e-324 too


@pytest.mark.parametrize(
    ("text", "millicores", "whole"),
    [("0.0001", 1, 1), ("1.5", 1500, 2), ("250m", 250, 1), ("2", 2000, 2)],
)
def test_whole_units_round_up(text: str, millicores: int, whole: int) -> None:
    value = quantity.parse(text)
    assert (quantity.millicores(value), quantity.whole(value)) == (millicores, whole)
