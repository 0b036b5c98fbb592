"""The built-in CA: root persistence, the leaf profile, chains checked by two verifiers, and
refusal to start (without writing a new root) when its files cannot be trusted."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import stat
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from osm.base.identity import Identity
from osm.ca import builtin, store
from osm.ca.errors import CAFileError, NoCA, RootExpired, RootKeyMismatch
from osm.ca.issuer import LeafRequest
from osm.ca.keys import KeySpec
from tests.unit.ca import catesting

T0 = catesting.T0
BOOKBUYER = LeafRequest.workload(Identity("bookstore", "bookbuyer"))


def the_root(ca: builtin.BuiltinCA) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.trust_bundle().pem)


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under `directory` with a hash of its content (the lock file excluded)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def test_first_start_creates_a_root_with_restrictive_permissions(
    ca: builtin.BuiltinCA, ca_dir: Path
) -> None:
    (info,) = ca.roots()
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / "roots").stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / "state.json").stat().st_mode) == 0o600
    key_file = ca_dir / "roots" / f"{info.record.root_id}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(ca_dir.rglob("*.tmp"))

    root = the_root(ca)
    root.verify_directly_issued_by(root)
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.not_valid_before_utc == T0 - builtin.BACKDATE
    assert info.key == KeySpec("ecdsa") and info.record.state == "active"


def test_reopening_keeps_the_root(ca: builtin.BuiltinCA, ca_dir: Path) -> None:
    before = snapshot(ca_dir)
    again = builtin.BuiltinCA.open(ca_dir, T0 + timedelta(days=1))
    assert again.signing_root_fingerprint() == ca.signing_root_fingerprint()
    assert snapshot(ca_dir) == before


def test_workload_leaf_profile(ca: builtin.BuiltinCA) -> None:
    issued = ca.issue(BOOKBUYER, T0)
    cert = issued.certificate()
    root = the_root(ca)

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "bookbuyer.bookstore.cluster.local"
    )
    assert cert.issuer == root.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/bookstore/sa/bookbuyer"
    ]
    assert san.value.get_values_for_type(x509.DNSName) == ["bookbuyer.bookstore.cluster.local"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())

    # validity: backdated by one minute, 24h from issuance, whole seconds
    assert timedelta(0) < builtin.BACKDATE <= timedelta(minutes=5)
    assert cert.not_valid_before_utc == issued.not_before == T0 - builtin.BACKDATE
    assert cert.not_valid_after_utc == issued.not_after == T0 + timedelta(hours=24)

    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert key.public_key() == cert.public_key()
    assert issued.serial == cert.serial_number > 0
    assert issued.identity == Identity("bookstore", "bookbuyer")
    assert issued.root_fingerprint == ca.signing_root_fingerprint()
    assert issued.trust_bundle_pem == ca.trust_bundle().pem
    assert b"PRIVATE" not in repr(issued).encode()


@pytest.mark.parametrize(
    ("root_key", "leaf_key"),
    [("ecdsa", "ecdsa"), ("rsa-2048", "ecdsa"), ("ecdsa", "rsa-2048"), ("rsa-3072", "rsa-2048")],
)
def test_chains_verify_with_cryptography_and_openssl(
    tmp_path: Path, root_key: str, leaf_key: str
) -> None:
    config = builtin.CAConfig(root_key=KeySpec.parse(root_key), leaf_key=KeySpec.parse(leaf_key))
    ca = builtin.BuiltinCA.open(tmp_path / "ca", T0, config)
    issued = ca.issue(BOOKBUYER, T0)
    cert = issued.certificate()
    cert.verify_directly_issued_by(the_root(ca))
    assert catesting.verifies(issued.cert_pem, issued.trust_bundle_pem, T0)
    for purpose in ("sslclient", "sslserver"):
        result = catesting.openssl_verify(
            tmp_path, issued.cert_pem, issued.trust_bundle_pem, purpose
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(": OK")
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment == leaf_key.startswith("rsa")
    assert ca.roots()[0].key == KeySpec.parse(root_key)


def test_openssl_rejects_expired_leaves_and_foreign_roots(
    tmp_path: Path, ca: builtin.BuiltinCA
) -> None:
    issued = ca.issue(BOOKBUYER, T0)
    late = T0 + timedelta(hours=25)
    assert (
        catesting.openssl_verify(
            tmp_path, issued.cert_pem, issued.trust_bundle_pem, "sslclient", late
        ).returncode
        != 0
    )
    assert not catesting.verifies(issued.cert_pem, issued.trust_bundle_pem, late)
    foreign = builtin.BuiltinCA.open(tmp_path / "foreign", T0)
    assert (
        catesting.openssl_verify(
            tmp_path, issued.cert_pem, foreign.trust_bundle().pem, "sslclient"
        ).returncode
        != 0
    )
    assert not catesting.verifies(issued.cert_pem, foreign.trust_bundle().pem, T0)


def test_serials_are_unique(ca: builtin.BuiltinCA) -> None:
    serials = {ca.issue(BOOKBUYER, T0).serial for _ in range(3000)}
    assert len(serials) == 3000
    assert all(0 < serial < 1 << 159 for serial in serials)


def test_leaves_never_outlive_the_root(tmp_path: Path) -> None:
    config = builtin.CAConfig(root_validity=timedelta(days=2))
    ca = builtin.BuiltinCA.open(tmp_path / "ca", T0, config)
    issued = ca.issue(BOOKBUYER, T0 + timedelta(days=1, hours=12))
    assert issued.not_after == the_root(ca).not_valid_after_utc


def test_control_plane_certificates(tmp_path: Path, ca: builtin.BuiltinCA) -> None:
    loopback = ipaddress.IPv4Address("127.0.0.1")
    server = ca.issue(
        LeafRequest.xds_server(("osm-controller.osm-system.svc", "localhost"), (loopback,)), T0
    )
    san = server.certificate().extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [
        "osm-controller.osm-system.svc",
        "localhost",
    ]
    assert san.value.get_values_for_type(x509.IPAddress) == [loopback]
    assert server.identity is None
    result = catesting.openssl_verify(
        tmp_path, server.cert_pem, server.trust_bundle_pem, "sslserver"
    )
    assert result.returncode == 0, result.stderr

    proxy = uuid.uuid4()
    bootstrap = ca.issue(LeafRequest.bootstrap(Identity("bookstore", "bookbuyer"), proxy), T0)
    cert = bootstrap.certificate()
    # OSM's CN form exceeds X.520's 64-character bound; cryptography warns, OpenSSL accepts.
    with pytest.warns(UserWarning, match="length must be"):
        subject = cert.subject.rfc4514_string()
    assert subject == f"CN={proxy}.sidecar.bookbuyer.bookstore.cluster.local"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/bookstore/sa/bookbuyer"
    ]
    result = catesting.openssl_verify(
        tmp_path, bootstrap.cert_pem, bootstrap.trust_bundle_pem, "sslclient"
    )
    assert result.returncode == 0, result.stderr


def test_persisted_lease_covers_every_issued_leaf(ca: builtin.BuiltinCA, ca_dir: Path) -> None:
    last = max(ca.issue(BOOKBUYER, T0 + timedelta(minutes=m)).not_after for m in range(0, 300, 7))
    reopened = store.CADirectory(ca_dir).read_state()
    lease = reopened.active.leaves_valid_until
    assert lease is not None and last <= lease <= last + builtin.LEASE_SLACK


# --- refusing to start -------------------------------------------------------------------


def root_files(ca: builtin.BuiltinCA, ca_dir: Path) -> tuple[Path, Path]:
    root_id = ca.roots()[0].record.root_id
    return ca_dir / "roots" / f"{root_id}.crt", ca_dir / "roots" / f"{root_id}.key"


def corrupt_key(cert: Path, key: Path) -> Path:
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n")
    return key


def key_is_a_directory(cert: Path, key: Path) -> Path:
    key.unlink()
    key.mkdir(mode=0o700)
    return key


def mismatched_key(cert: Path, key: Path) -> Path:
    other = KeySpec().generate()
    key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def corrupt_cert(cert: Path, key: Path) -> Path:
    cert.write_bytes(cert.read_bytes()[:200])
    return cert


def missing_cert(cert: Path, key: Path) -> Path:
    cert.unlink()
    return cert


def open_key_permissions(cert: Path, key: Path) -> Path:
    key.chmod(0o644)
    return key


def corrupt_state(cert: Path, key: Path) -> Path:
    state = cert.parent.parent / "state.json"
    state.write_text('{"version": 1, "roots": [')
    return state


def lost_state(cert: Path, key: Path) -> Path:
    state = cert.parent.parent / "state.json"
    state.unlink()
    return state


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (corrupt_key, CAFileError, "not a valid private key"),
        (key_is_a_directory, CAFileError, "unreadable"),
        (mismatched_key, RootKeyMismatch, "does not match"),
        (corrupt_cert, CAFileError, "not a valid certificate"),
        (missing_cert, CAFileError, "missing"),
        (open_key_permissions, CAFileError, "chmod 600"),
        (corrupt_state, CAFileError, "corrupt"),
        (lost_state, CAFileError, "root file"),
    ],
)
def test_refuses_to_start_on_damaged_files_and_writes_no_root(
    ca: builtin.BuiltinCA, ca_dir: Path, damage: object, error: type[Exception], message: str
) -> None:
    assert callable(damage)
    path = damage(*root_files(ca, ca_dir))
    before = snapshot(ca_dir)
    with pytest.raises(error, match=message) as raised:
        builtin.BuiltinCA.open(ca_dir, T0)
    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)
    assert snapshot(ca_dir) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_refuses_an_unreadable_key(ca: builtin.BuiltinCA, ca_dir: Path) -> None:
    _, key = root_files(ca, ca_dir)
    key.chmod(0o000)
    with pytest.raises(CAFileError, match="unreadable"):
        builtin.BuiltinCA.open(ca_dir, T0)


def test_refuses_a_key_it_may_not_read(
    ca: builtin.BuiltinCA, ca_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod 000 does not stop root, so the permission error is simulated for the key file."""
    _, key = root_files(ca, ca_dir)
    before = snapshot(ca_dir)
    read_bytes = Path.read_bytes

    def denied(path: Path) -> bytes:
        if path == key:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(CAFileError, match=r"unreadable \(Permission denied\)"):
        builtin.BuiltinCA.open(ca_dir, T0)
    monkeypatch.undo()
    assert snapshot(ca_dir) == before


def test_refuses_an_expired_root(ca: builtin.BuiltinCA, ca_dir: Path) -> None:
    before = snapshot(ca_dir)
    later = T0 + timedelta(days=3651)
    with pytest.raises(RootExpired, match="expired at"):
        builtin.BuiltinCA.open(ca_dir, later)
    with pytest.raises(RootExpired, match="expired at"):
        ca.issue(BOOKBUYER, later)
    with pytest.raises(RootExpired, match="not valid before"):
        builtin.BuiltinCA.open(ca_dir, T0 - timedelta(days=1))
    assert snapshot(ca_dir) == before


def test_no_ca_without_create(tmp_path: Path) -> None:
    with pytest.raises(NoCA, match="no CA in"):
        builtin.BuiltinCA.open(tmp_path / "nothing", T0, create=False)
    assert not (tmp_path / "nothing").exists()


def test_atomic_write_keeps_the_old_file_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "key.pem"
    store.write_atomic(target, b"old", 0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    def crash(source: object, destination: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        store.write_atomic(target, b"new", 0o600)
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["key.pem"]
