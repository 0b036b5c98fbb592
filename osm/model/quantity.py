"""Kubernetes resource quantities (``128Mi``, ``1G``, ``500m``, ``0.5``, ``1e3``), exactly.

The one idea: a quantity is a non-negative rational number, kept as a `Fraction`, so that
``0.1`` and ``100m`` are the same value and comparisons (requests against limits) are
exact, as Kubernetes' ``resource.Quantity`` compares them. The grammar is Kubernetes':

    quantity  ::= sign? number suffix
    number    ::= digits | digits "." digits? | "." digits
    suffix    ::= "" | binarySI | decimalSI | ("e" | "E") sign? digits
    binarySI  ::= Ki | Mi | Gi | Ti | Pi | Ei          (powers of 1024)
    decimalSI ::= m | k | M | G | T | P | E             (powers of 1000; m is 1/1000)

A manifest may also give a quantity as a YAML number (``cpu: 0.5``, ``memory: 1000``).
What a resource needs as a whole number is rounded up, as the kubelet rounds: CPU to
millicores (`millicores`), memory and the rest to units (`whole`).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL_SUFFIXES = {"m": -1, "": 0, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
MAX_EXPONENT = 30
"""Largest decimal exponent written with ``e`` (Kubernetes' own limit is the int64 range
of its scaled value; no resource of a pod comes near 10^30)."""

_SYNTAX = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[mkMGTPE]?))"
)
VALID = (
    "a number with an optional suffix: Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024), m, k, M, G, "
    "T, P, E (powers of 1000) or an exponent (e3), e.g. 128Mi, 1G, 500m, 0.5"
)


class QuantityError(ValueError):
    """Text that is not a quantity; the message says what would be valid."""


def parse(value: str | int | float) -> Fraction:
    """The exact value of a quantity (a string as Kubernetes writes it, or a YAML number).

    Raises `QuantityError` for anything else, including a negative quantity: no resource of
    a container can be negative."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QuantityError(f"must be a quantity ({VALID})")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise QuantityError(f"{value} is not a quantity; expected {VALID}")
        amount = Fraction(Decimal(repr(value))) if isinstance(value, float) else Fraction(value)
        text = repr(value)
    else:
        text = value
        match = _SYNTAX.fullmatch(text)
        if match is None:
            raise QuantityError(f'"{text}" is not a quantity; expected {VALID}')
        amount = Fraction(Decimal(match["number"]))
        if match["binary"]:
            amount *= 1024 ** BINARY_SUFFIXES[match["binary"]]
        elif match["exponent"] is not None:
            exponent = int(match["exponent"])
            if abs(exponent) > MAX_EXPONENT:
                raise QuantityError(
                    f'"{text}": the exponent is out of range (at most {MAX_EXPONENT} either way)'
                )
            amount *= Fraction(10) ** exponent
        else:
            amount *= Fraction(1000) ** DECIMAL_SUFFIXES[match["decimal"]]
        if match["sign"] == "-":
            amount = -amount
    if amount < 0:
        raise QuantityError(f'"{text}" is negative; a resource quantity must be 0 or more')
    return amount


def format_quantity(amount: Fraction) -> str:
    """A quantity's value written so that `parse` reads it back exactly, in its shortest
    form (``64Mi``, ``1G``, ``1m``, ``0.5``). Every parsed quantity is a finite decimal,
    so this never rounds."""
    if amount < 0:
        raise QuantityError(f"{amount} is negative")
    forms = [_decimal(amount)]
    for suffixes, base in ((BINARY_SUFFIXES, 1024), (DECIMAL_SUFFIXES, 1000)):
        for suffix, power in suffixes.items():
            scaled = amount / Fraction(base) ** power
            if suffix and scaled.denominator == 1 and scaled:
                forms.append(f"{scaled.numerator}{suffix}")
    return min(forms, key=len)


def _decimal(amount: Fraction) -> str:
    """``amount`` as an exact decimal: its denominator is 2^a 5^b (no parsed quantity has
    another prime factor), so it has max(a, b) decimal places."""
    denominator, twos, fives = amount.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator != 1:
        raise QuantityError(f"{amount} has no finite decimal expansion")
    places = max(twos, fives)
    digits = str(amount.numerator * 10**places // amount.denominator).rjust(places + 1, "0")
    if not places:
        return digits
    return f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")


def millicores(amount: Fraction) -> int:
    """A CPU quantity in thousandths of a CPU, rounded up (``0.0001`` -> 1)."""
    return math.ceil(amount * 1000)


def whole(amount: Fraction) -> int:
    """A quantity in whole units (bytes, for memory), rounded up."""
    return math.ceil(amount)
