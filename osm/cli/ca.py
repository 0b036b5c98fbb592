"""`osm ca`: issue a leaf, show the roots, start a root rotation.

One idea: the commands work on the CA's state directory directly, under the same lock as the
controller, so they need no running control plane; a running controller notices the change
on its next tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import click

from osm import paths
from osm.base.identity import TRUST_DOMAIN, Identity
from osm.ca import builtin, rotation, store
from osm.ca.errors import CAError
from osm.ca.issuer import LeafRequest
from osm.ca.keys import KeySpec
from osm.model import fields


def parse_duration(text: str) -> timedelta:
    """A positive Go duration (``24h``, ``90m``, ``1h30m``, ``30s``), parsed as MeshConfig
    parses them; raise ValueError with a message fit for a user otherwise."""
    seconds = fields.parse_duration(text)
    if seconds is None:
        raise ValueError(f"invalid duration {text!r}: use e.g. 24h, 90m, 1h30m or 30s")
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    return timedelta(seconds=seconds)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn expected failures into one line on stderr and exit code 1 (no traceback)."""
    try:
        yield
    except (CAError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        raise click.ClickException(f"{where}{error.strerror or error}") from None


def _ca_dir(state_dir: Path | None) -> Path:
    return (state_dir or paths.default_state_dir()) / "ca"


def _now() -> datetime:
    return builtin.utc_now()


_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default: $OSM_STATE_DIR, /var/lib/osm as root, "
    "else $XDG_STATE_HOME/osm). The CA lives in its ca/ subdirectory.",
)


@click.group("ca")
def ca() -> None:
    """The mesh's certificate authority: issue certificates, show and rotate roots."""


@ca.command("issue")
@click.argument("identity", metavar="NAMESPACE/SERVICEACCOUNT")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for cert.pem, key.pem and ca.pem (created if missing).",
)
@click.option("--validity", default="24h", show_default=True, help="e.g. 24h, 90m, 1h30m.")
@click.option("--trust-domain", default=TRUST_DOMAIN, show_default=True)
@click.option("--key-type", default="ecdsa-p256", show_default=True, help="or rsa-2048..4096")
@_state_dir_option
def issue(
    identity: str,
    out_dir: Path,
    validity: str,
    trust_domain: str,
    key_type: str,
    state_dir: Path | None,
) -> None:
    """Issue a workload certificate: writes cert.pem, key.pem (mode 0600) and ca.pem (the
    trust bundle) into --out. Creates the CA if the state directory has none."""
    with _user_errors():
        request = LeafRequest.workload(
            Identity.parse(identity), parse_duration(validity), trust_domain
        )
        directory = _ca_dir(state_dir)
        fresh = not store.CADirectory(directory).initialized()
        config = builtin.CAConfig(leaf_key=KeySpec.parse(key_type))
        authority = builtin.BuiltinCA.open(directory, _now(), config)
        if fresh:
            click.echo(f"created a new root CA in {directory}", err=True)
        cert = authority.issue(request, _now())
        out_dir.mkdir(parents=True, exist_ok=True)
        store.write_atomic(out_dir / "key.pem", cert.key_pem, 0o600)
        store.write_atomic(out_dir / "cert.pem", cert.cert_pem, 0o644)
        store.write_atomic(out_dir / "ca.pem", cert.trust_bundle_pem, 0o644)
    click.echo(
        f"wrote {out_dir}/cert.pem, key.pem, ca.pem for {request.uris[0]} "
        f"(serial {cert.serial:x}, expires {cert.not_after:%Y-%m-%d %H:%M:%S}Z)"
    )


@ca.command("status")
@_state_dir_option
def status(state_dir: Path | None) -> None:
    """Show the trusted roots, their rotation state and validity."""
    with _user_errors():
        authority = builtin.BuiltinCA.open(
            _ca_dir(state_dir), _now(), create=False, require_valid=False
        )
        roots = authority.roots()
    click.echo(format_roots(roots))


def format_roots(roots: tuple[builtin.RootInfo, ...]) -> str:
    """The `osm ca status` table: plain text, columns aligned, one root per line."""
    rows = [("ROOT", "STATE", "NOT BEFORE", "NOT AFTER", "KEY", "NEXT")]
    for root in roots:
        record = root.record
        if record.state is rotation.RootState.PENDING:
            at = record.activate_at
            step = f"signs from {_time(at)}" if at else "waits for the controller to publish it"
        elif record.remove_at is not None:
            step = f"leaves the bundle at {_time(record.remove_at)}"
        else:
            step = "-"
        rows.append(
            (
                root.fingerprint[:16],
                record.state.value,
                _time(root.not_before),
                _time(root.not_after),
                str(root.key),
                step,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _time(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


@ca.command("rotate")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--propagation-delay", default="5m", show_default=True)
@click.option("--grace", default="10m", show_default=True)
@_state_dir_option
def rotate(yes: bool, propagation_delay: str, grace: str, state_dir: Path | None) -> None:
    """Start a root rotation. Writes a new root to the state directory as *pending*; the
    running controller picks it up on its next tick and puts it in every trust bundle, makes
    it the signing root after --propagation-delay (re-issuing every workload certificate),
    and drops the old root once the last leaf it signed has expired plus --grace. Nothing
    happens to the mesh until a controller runs; `osm ca status` shows the progress."""
    with _user_errors():
        delay, retire_grace = parse_duration(propagation_delay), parse_duration(grace)
        authority = builtin.BuiltinCA.open(_ca_dir(state_dir), _now(), create=False)
    if not yes:
        click.confirm("Create a new root and start rotating to it?", abort=True)
    with _user_errors():
        root = authority.begin_rotation(_now(), delay, retire_grace)
    click.echo(f"root {root.fingerprint[:16]} is pending; the controller will activate it")
