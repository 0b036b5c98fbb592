"""Adopting a root kept elsewhere (the ``osm-ca-bundle`` Secret) into a CA directory: the
directory then signs with that root, opens again as it is, and refuses another CA's or a
broken PEM."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from osm.ca import builtin
from osm.ca.errors import CAError, CAFileError, RootExpired
from osm.ca.issuer import LeafRequest
from tests.unit.ca import catesting

T0 = catesting.T0


def _root(validity: timedelta = timedelta(days=365)) -> tuple[bytes, bytes]:
    cert, key = builtin.create_root(builtin.CAConfig().root_key, T0, validity)
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_an_adopted_root_signs_and_opens_again(tmp_path: Path) -> None:
    cert_pem, key_pem = _root()
    ca = builtin.BuiltinCA.adopt(tmp_path / "ca", cert_pem, key_pem, T0)
    assert ca.trust_bundle().pem == cert_pem
    leaf = ca.issue(LeafRequest.xds_server(("a.b.svc",)), T0)
    assert catesting.verifies(leaf.cert_pem, cert_pem, T0)
    reopened = builtin.BuiltinCA.open(tmp_path / "ca", T0, create=False)
    assert reopened.signing_root_fingerprint() == ca.signing_root_fingerprint()
    again = builtin.BuiltinCA.adopt(tmp_path / "ca", cert_pem, key_pem, T0)
    assert again.signing_root_fingerprint() == ca.signing_root_fingerprint()


def test_a_directory_with_another_ca_is_refused(tmp_path: Path) -> None:
    builtin.BuiltinCA.open(tmp_path / "ca", T0)
    with pytest.raises(CAFileError, match="holds another CA"):
        builtin.BuiltinCA.adopt(tmp_path / "ca", *_root(), T0)


BROKEN = [
    ("not PEM", lambda c, k: (b"garbage", k), "not a PEM certificate and key"),
    ("key not PEM", lambda c, k: (c, b"garbage"), "not a PEM certificate and key"),
    ("another root's key", lambda c, k: (c, _root()[1]), "does not match"),
]


@pytest.mark.parametrize(("swap", "says"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_root_is_refused(tmp_path: Path, swap: object, says: str) -> None:
    cert_pem, key_pem = swap(*_root())  # type: ignore[operator]
    with pytest.raises(CAError, match=says):
        builtin.BuiltinCA.adopt(tmp_path / "ca", cert_pem, key_pem, T0)


def test_an_expired_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RootExpired):
        builtin.BuiltinCA.adopt(tmp_path / "ca", *_root(timedelta(hours=1)), T0 + timedelta(days=1))
