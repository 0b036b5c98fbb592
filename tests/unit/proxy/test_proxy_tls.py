"""Loading certificate chains for SSL contexts: from a memfd on Linux, else a temporary file."""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from osm.proxy import tls


def _pem_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(params=["memory", "temporary file"])
def path_kind(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if request.param == "temporary file":
        monkeypatch.setattr(tls, "_load_chain_from_memory", lambda context, pem: False)
    return str(request.param)


def test_a_chain_loads_and_leaves_no_file(path_kind: str, tmp_path: Path) -> None:
    chain, key = _pem_pair()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls._load_chain(context, chain, key)
    assert list(tmp_path.iterdir()) == []
    if path_kind == "memory":  # Linux: the memfd path is the one taken
        assert tls._load_chain_from_memory(context, chain + key)


def test_a_key_that_does_not_match_is_a_config_error(path_kind: str, tmp_path: Path) -> None:
    chain, _ = _pem_pair()
    _, other_key = _pem_pair()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(tls.TlsConfigError):
        tls._load_chain(context, chain, other_key)
    assert list(tmp_path.iterdir()) == []
