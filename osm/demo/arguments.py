"""Argument types the demo apps' command lines share (argparse ``type=`` converters)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number(kind: Callable[[str], float], low: float, what: str) -> Callable[[str], float]:
    """A converter to ``kind`` that refuses text below ``low``, saying it is not ``what``."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return convert
