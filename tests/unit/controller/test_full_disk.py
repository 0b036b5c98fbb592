"""The push loop when the CA cannot write its state for want of room: the proxy whose
certificate cannot be issued keeps its last configuration (`MissingCredentials`, which
the generator turns into a per-proxy build error) rather than the build failing."""

from __future__ import annotations

import datetime
import errno
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from osm.ads import cache as ads_cache
from osm.base.identity import Identity
from osm.ca import builtin
from osm.ca import manager as ca_manager
from osm.ca.store import CADirectory
from osm.controller import mesh
from osm.xds.context import MissingCredentials

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_a_certificate_the_ca_cannot_write_for_is_missing_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = ca_manager.CertificateManager(builtin.BuiltinCA.open(tmp_path / "ca", T0), lambda: T0)
    pusher = mesh.MeshPusher(
        lambda: pytest.fail("no informer here"),
        ads_cache.SnapshotCache(),
        manager,
        CollectorRegistry(),
    )

    def full(self: CADirectory, roots: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.state_path))

    monkeypatch.setattr(CADirectory, "write_state", full)
    with pytest.raises(MissingCredentials, match="No space left on device"):
        pusher._credentials(Identity("bookbuyer", "bookbuyer"))

    monkeypatch.undo()  # room again: the next build gets the certificate
    assert pusher._credentials(Identity("bookbuyer", "bookbuyer")).cert_chain
