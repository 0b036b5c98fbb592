"""`osm ca issue|status|rotate` through click's CliRunner."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from osm import paths
from osm.ca import builtin
from osm.ca.keys import KeySpec
from osm.ca.rotation import RootRecord, RootState
from osm.cli import ca as ca_cli
from tests.unit.ca import catesting


def run(state: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(ca_cli.ca, [*args, "--state-dir", str(state)], input=input)


def test_issue_writes_a_verifiable_certificate(tmp_path: Path) -> None:
    state, out = tmp_path / "state", tmp_path / "out"
    result = run(state, "issue", "bookstore/bookbuyer", "--out", str(out), "--validity", "90m")
    assert result.exit_code == 0, result.output
    assert "created a new root CA" in result.stderr
    assert "spiffe://cluster.local/ns/bookstore/sa/bookbuyer" in result.stdout
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(minutes=91)
    verified = catesting.openssl_verify(
        tmp_path, (out / "cert.pem").read_bytes(), (out / "ca.pem").read_bytes(), "sslclient", None
    )
    assert verified.returncode == 0, verified.stderr

    again = run(state, "issue", "bookstore/bookbuyer", "--out", str(out))
    assert again.exit_code == 0 and "created" not in again.stderr
    assert (out / "ca.pem").read_bytes() == (state / "ca" / "roots").joinpath(
        next(p.name for p in (state / "ca" / "roots").glob("*.crt"))
    ).read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["issue", "bookstore", "--out", "x"], "expected NAMESPACE/SERVICEACCOUNT"),
        (["issue", "ns/sa", "--out", "x", "--validity", "1day"], "invalid duration '1day'"),
        (["issue", "ns/sa", "--out", "x", "--validity", "0s"], "longer than zero"),
        (["issue", "ns/sa", "--out", "x", "--key-type", "dsa"], "unknown key type"),
        (["status"], "no CA in"),
        (["rotate", "--yes"], "no CA in"),
        (["rotate", "--yes", "--grace", "soon"], "invalid duration 'soon'"),
    ],
)
def test_errors_are_one_line_with_exit_code_1(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(tmp_path / "state", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_damaged_ca_is_reported_not_replaced(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert run(state, "issue", "ns/sa", "--out", str(tmp_path / "out")).exit_code == 0
    (key,) = (state / "ca" / "roots").glob("*.key")
    key.write_text("garbage")
    for args in (["status"], ["issue", "ns/sa", "--out", str(tmp_path / "out")]):
        result = run(state, *args)
        assert result.exit_code == 1 and str(key) in result.stderr
    assert len(list((state / "ca" / "roots").glob("*.key"))) == 1


def test_status_and_rotate(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert run(state, "issue", "ns/sa", "--out", str(tmp_path / "out")).exit_code == 0
    status = run(state, "status")
    assert status.exit_code == 0
    header, row = status.stdout.splitlines()
    assert header.split() == ["ROOT", "STATE", "NOT", "BEFORE", "NOT", "AFTER", "KEY", "NEXT"]
    assert row.split()[1] == "active" and "ecdsa-p256" in row

    refused = run(state, "rotate", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.stderr
    assert len(run(state, "status").stdout.splitlines()) == 2

    rotated = run(state, "rotate", "--yes", "--propagation-delay", "1m")
    assert rotated.exit_code == 0 and "pending" in rotated.stdout
    lines = run(state, "status").stdout.splitlines()
    assert [line.split()[1] for line in lines[1:]] == ["active", "pending"]
    assert lines[2].endswith("waits for the controller to publish it")

    again = run(state, "rotate", "--yes")
    assert again.exit_code == 1 and "still pending" in again.stderr


def test_status_table_format() -> None:
    t0 = catesting.T0
    roots = (
        builtin.RootInfo(
            RootRecord("0123456789abcdef", RootState.RETIRING, remove_at=t0 + timedelta(days=1)),
            "0123456789abcdef" + "0" * 48,
            t0,
            t0 + timedelta(days=3650),
            KeySpec("rsa", 2048),
        ),
        builtin.RootInfo(
            RootRecord("fedcba9876543210", RootState.ACTIVE),
            "fedcba9876543210" + "f" * 48,
            t0,
            t0 + timedelta(days=3650),
            KeySpec(),
        ),
    )
    assert ca_cli.format_roots(roots).splitlines() == [
        "ROOT               STATE      NOT BEFORE             NOT AFTER              "
        "KEY          NEXT",
        "0123456789abcdef   retiring   2030-01-01 12:00:00Z   2039-12-30 12:00:00Z   rsa-2048     "
        "leaves the bundle at 2030-01-02 12:00:00Z",
        "fedcba9876543210   active     2030-01-01 12:00:00Z   2039-12-30 12:00:00Z   "
        "ecdsa-p256   -",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("30s", timedelta(seconds=30)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert ca_cli.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "24", "1d", "-5m", "0s", "1h 30m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        ca_cli.parse_duration(text)


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.default_state_dir({"OSM_STATE_DIR": "/srv/osm"}) == Path("/srv/osm")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert paths.default_state_dir({}) == Path("/var/lib/osm")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert paths.default_state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/osm")
    assert paths.default_state_dir({}) == Path.home() / ".local" / "state" / "osm"


def test_status_still_shows_an_expired_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    assert run(state, "issue", "ns/sa", "--out", str(tmp_path / "out")).exit_code == 0
    monkeypatch.setattr(ca_cli, "_now", lambda: builtin.utc_now() + timedelta(days=3651))
    status = run(state, "status")
    assert status.exit_code == 0 and "active" in status.stdout
    issue = run(state, "issue", "ns/sa", "--out", str(tmp_path / "out"))
    assert issue.exit_code == 1 and "signing root expired at" in issue.stderr
