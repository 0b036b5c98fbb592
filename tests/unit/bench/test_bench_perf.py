"""bench/_perf.py splits perf's cpu-clock samples into user, scheduling and kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import _perf

# `perf script -F pid,ip,sym` lines: a user address, kernel addresses inside and outside
# the scheduling set, a user address without a symbol, and a pid that was not asked for.
LINES = [
    "  4242      7f0e1bcfd163 _PyEval_EvalFrameDefault",
    "  4242  ffffffff813a2313 finish_task_switch.isra.0",
    "  4242  ffffffff81f0c5a0 _raw_spin_unlock_irqrestore",
    "  4242  ffffffff81b1c2d0 tcp_sendmsg_locked",
    "  4242      562d64953ca9",
    "  4343  ffffffff81b1c2d0 tcp_sendmsg_locked",
    "  9999      7f0e1bcfd163 _PyEval_EvalFrameDefault",
    "not a sample line",
]


def test_samples_are_split_by_address_and_symbol() -> None:
    shares = _perf.classify(LINES, [4242, 4343])
    assert shares[4242] == pytest.approx((2 / 5, 2 / 5, 1 / 5))
    assert shares[4343] == pytest.approx((0.0, 0.0, 1.0))
    assert set(shares) == {4242, 4343}


def test_a_pid_without_samples_has_no_share() -> None:
    assert _perf.classify([], [1]) == {1: (0.0, 0.0, 0.0)}
