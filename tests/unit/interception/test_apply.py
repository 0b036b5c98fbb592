"""Applying rules: every golden file is accepted by the real iptables-restore inside a
namespace the test creates (and deletes); failures are reported clearly."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from osm.interception import apply
from osm.interception.rules import InterceptionConfig, render

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"osmtest-apply-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=10)


@pytest.mark.root
@pytest.mark.timeout(30)
@pytest.mark.parametrize("golden", sorted(p.name for p in GOLDEN.glob("*.rules")))
def test_iptables_accepts_every_golden_file(netns: str, golden: str) -> None:
    text = (GOLDEN / golden).read_text()
    apply.apply_rules(netns, text)
    saved = apply.saved_rules(netns)
    assert ":OSM_PROXY_OUTBOUND" in saved
    rule_lines = [line for line in text.splitlines() if line.startswith(("-A", "-I"))]
    assert sum(line.startswith(("-A", "-I")) for line in saved.splitlines()) == len(rule_lines)


@pytest.mark.root
@pytest.mark.timeout(30)
def test_iptables_refusal_is_reported_with_its_message(netns: str) -> None:
    with pytest.raises(apply.InterceptionError, match=f'"{netns}" failed'):
        apply.apply_rules(netns, "*nat\n-A NO_SUCH_CHAIN -j RETURN\nCOMMIT\n")


def test_missing_iptables_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apply, "iptables_restore_path", lambda: None)
    with pytest.raises(apply.InterceptionError, match="apt-get install -y iptables"):
        apply.apply_rules("any", render(InterceptionConfig()))


def test_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(apply.InterceptionError, match="does not exist"):
        apply.apply_rules(f"osmtest-none-{uuid.uuid4().hex[:8]}", render(InterceptionConfig()))


def test_pod_ip_placeholder_is_refused() -> None:
    with pytest.raises(apply.InterceptionError, match="pod_ip"):
        apply.apply_rules("any", render(InterceptionConfig(local_proxy_mode="PodIP")))


def test_namespace_names_cannot_be_paths() -> None:
    with pytest.raises(apply.InterceptionError, match="not a network namespace name"):
        apply.apply_rules("../x", render(InterceptionConfig()))
