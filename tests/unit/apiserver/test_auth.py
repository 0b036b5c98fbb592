"""The API CA and client-certificate authentication: the CA's directory (created, reopened,
refused when damaged), certificates that OpenSSL's own `openssl verify` accepts for their
purpose only, and real TLS handshakes with the server's context: a client certificate is an
identity, no certificate is an anonymous connection, a foreign certificate is refused."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from osm.apiserver import auth
from osm.ca import tls


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "api-ca"


@pytest.fixture
def ca(ca_dir: Path) -> auth.ApiCA:
    return auth.ApiCA.open(ca_dir)


# -- the CA's directory ---------------------------------------------------------------------
def test_first_open_creates_a_private_directory(ca: auth.ApiCA, ca_dir: Path) -> None:
    modes = {path.name: path.stat().st_mode & 0o777 for path in (ca_dir, *ca_dir.iterdir())}
    assert modes == {"api-ca": 0o700, "ca.crt": 0o644, "ca.key": 0o600, ".lock": 0o600}
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_reopening_gives_the_same_ca(ca: auth.ApiCA, ca_dir: Path) -> None:
    again = auth.ApiCA.open(ca_dir)
    assert again.cert_pem == ca.cert_pem
    issued = again.issue_client("alice")
    assert issued.ca_pem == ca.cert_pem


def _other_key(ca_dir: Path) -> None:
    other = auth.ApiCA.open(ca_dir.parent / "other")
    (ca_dir / "ca.key").write_bytes((other.directory / "ca.key").read_bytes())


def _leaf_as_ca(ca_dir: Path) -> None:
    leaf = auth.ApiCA.open(ca_dir).issue_client("alice")
    (ca_dir / "ca.crt").write_bytes(leaf.cert_pem)


DAMAGES: list[tuple[str, Callable[[Path], Any], str, str]] = [
    ("no certificate", lambda d: (d / "ca.crt").unlink(), "ca.crt", "missing, but ca.key"),
    ("no key", lambda d: (d / "ca.key").unlink(), "ca.key", "missing, but ca.crt"),
    ("garbled certificate", lambda d: (d / "ca.crt").write_text("x"), "ca.crt", "not a valid"),
    ("garbled key", lambda d: (d / "ca.key").write_text("x"), "ca.key", "not a valid private"),
    ("key readable by all", lambda d: (d / "ca.key").chmod(0o644), "ca.key", "too open"),
    ("key of another CA", _other_key, "ca.key", "does not match the certificate"),
    ("a leaf as the CA", _leaf_as_ca, "ca.crt", "CA=false"),
]


@pytest.mark.parametrize(
    ("damage", "file", "problem"),
    [pytest.param(d, f, p, id=name) for name, d, f, p in DAMAGES],
)
def test_a_damaged_ca_is_refused_never_replaced(
    ca: auth.ApiCA, ca_dir: Path, damage: Callable[[Path], Any], file: str, problem: str
) -> None:
    damage(ca_dir)
    before = {path.name: path.read_bytes() for path in ca_dir.iterdir()}
    with pytest.raises(auth.ApiCAError) as raised:
        auth.ApiCA.open(ca_dir)
    assert raised.value.path == ca_dir / file
    assert problem in raised.value.problem
    assert str(ca_dir / file) in str(raised.value)
    assert {path.name: path.read_bytes() for path in ca_dir.iterdir()} == before


def test_an_expired_ca_is_refused(ca: auth.ApiCA, ca_dir: Path) -> None:
    with pytest.raises(auth.ApiCAError, match="not now"):
        auth.ApiCA.open(ca_dir, now=datetime.now(UTC) + timedelta(days=3660))


# -- issued certificates ----------------------------------------------------------------------
def _verify(ca: auth.ApiCA, cert_pem: bytes, tmp_path: Path, *options: str) -> bool:
    """`openssl verify` as an independent peer: the chain, the purpose, the names."""
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert_pem)
    result = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", tmp_path / "ca.pem", *options, leaf],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("which", "options", "accepted"),
    [
        ("client", ["-purpose", "sslclient"], True),
        ("client", ["-purpose", "sslserver"], False),
        ("server", ["-purpose", "sslserver", "-verify_hostname", "localhost"], True),
        ("server", ["-purpose", "sslserver", "-verify_hostname", "api.osm.local"], True),
        ("server", ["-purpose", "sslserver", "-verify_ip", "127.0.0.1"], True),
        ("server", ["-purpose", "sslserver", "-verify_ip", "::1"], True),
        ("server", ["-purpose", "sslserver", "-verify_hostname", "example.com"], False),
        ("server", ["-purpose", "sslserver", "-verify_ip", "127.0.0.2"], False),
        ("server", ["-purpose", "sslclient"], False),
    ],
)
def test_openssl_accepts_each_certificate_for_its_purpose_only(
    ca: auth.ApiCA, tmp_path: Path, which: str, options: list[str], accepted: bool
) -> None:
    issued = (
        ca.issue_client("alice", ["system:masters"])
        if which == "client"
        else ca.issue_server(["localhost", "api.osm.local"], ["127.0.0.1", "::1"])
    )
    assert _verify(ca, issued.cert_pem, tmp_path, *options) is accepted


def test_openssl_refuses_a_certificate_of_another_ca(ca: auth.ApiCA, tmp_path: Path) -> None:
    foreign = auth.ApiCA.open(tmp_path / "foreign").issue_client("alice")
    assert not _verify(ca, foreign.cert_pem, tmp_path, "-purpose", "sslclient")


def test_a_client_certificate_names_the_user_and_groups_for_a_year(ca: auth.ApiCA) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    cert = x509.load_pem_x509_certificate(
        ca.issue_client("alice", ["system:masters", "dev"], now=now).cert_pem
    )
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["alice"]
    organizations = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in organizations] == ["system:masters", "dev"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - now == timedelta(days=365)


@pytest.mark.parametrize(
    ("hosts", "ips", "error"),
    [
        ([], [], "at least one host name or IP address"),
        (["localhost"], ["127.0.0.300"], "invalid IP address"),
        ([""], [], "invalid host name"),
    ],
)
def test_a_server_certificate_needs_valid_names(
    ca: auth.ApiCA, hosts: list[str], ips: list[str], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        ca.issue_server(hosts, ips)


@pytest.mark.parametrize(("user", "groups"), [("", ()), ("alice", ("",)), ("al\nice", ())])
def test_a_client_certificate_needs_printable_names(
    ca: auth.ApiCA, user: str, groups: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        ca.issue_client(user, groups)


def test_credentials_do_not_show_their_key(ca: auth.ApiCA) -> None:
    issued = ca.issue_client("alice")
    assert b"PRIVATE KEY" in issued.key_pem
    assert "PRIVATE" not in repr(issued)


# -- identities ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peercert", "user"),
    [
        (None, None),  # no certificate sent (CERT_OPTIONAL)
        ({}, None),  # a certificate that was not verified (CERT_NONE)
        (
            {"subject": ((("organizationName", "system:masters"),), (("commonName", "admin"),))},
            auth.User("admin", ("system:masters",)),
        ),
        ({"subject": ((("commonName", "kubelet"),),)}, auth.User("kubelet", ())),
        (
            {
                "subject": (
                    (("organizationName", "a"),),
                    (("organizationName", "b"),),
                    (("commonName", "bob"),),
                )
            },
            auth.User("bob", ("a", "b")),
        ),
        ({"subject": ((("organizationName", "system:masters"),),)}, None),  # no CN
        ({"subject": ((("commonName", "a"),), (("commonName", "b"),))}, None),  # two CNs
    ],
)
def test_identity_of_a_peer_certificate(
    peercert: dict[str, Any] | None, user: auth.User | None
) -> None:
    assert auth.identity_of(peercert) == user


# -- handshakes ---------------------------------------------------------------------------------
Seen = dict[str, Any] | None | BaseException


def _handshake(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> tuple[Seen, Seen]:
    """One exchange over loopback: (what the client read, or its exception; the client's
    certificate as the server saw it, or the server's exception)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    server_saw: list[Seen] = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server_tls.wrap_socket(connection, server_side=True) as tls:
                server_saw.append(tls.getpeercert())
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as error:
            server_saw.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    client_saw: Seen
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client_tls.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            if tls.recv(2) != b"ok":  # TLS 1.3: a refused client learns it here
                raise ConnectionError("the server closed the connection")
            client_saw = {}
    except (ssl.SSLError, OSError) as error:
        client_saw = error
    finally:
        thread.join(10)
        listener.close()
    return client_saw, server_saw[0]


def _client(ca_pem: bytes, credentials: auth.Credentials | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    if credentials is not None:
        tls.load_cert_chain(context, credentials.cert_pem, credentials.key_pem)
    return context


@pytest.mark.parametrize("tls_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize(
    ("presented", "identity"),
    [
        ("admin", auth.User("admin", ("system:masters",))),
        ("nothing", None),
        ("a certificate of another CA", "refused"),
        ("the server's certificate", "refused"),
    ],
)
def test_handshake_with_the_server_context(
    ca: auth.ApiCA,
    tmp_path: Path,
    presented: str,
    identity: auth.User | str | None,
    tls_version: ssl.TLSVersion,
) -> None:
    server = ca.issue_server(["localhost"], ["127.0.0.1"])
    credentials = {
        "admin": ca.issue_client("admin", ["system:masters"]),
        "nothing": None,
        "a certificate of another CA": auth.ApiCA.open(tmp_path / "x").issue_client("admin"),
        "the server's certificate": server,
    }[presented]
    client_tls = _client(ca.cert_pem, credentials)
    client_tls.maximum_version = tls_version
    client_saw, server_saw = _handshake(auth.server_ssl_context(server), client_tls)
    if identity == "refused":
        assert isinstance(server_saw, ssl.SSLCertVerificationError)
        assert isinstance(client_saw, ssl.SSLError | ConnectionError)
    else:
        assert client_saw == {}, client_saw
        assert not isinstance(server_saw, BaseException), server_saw
        assert auth.identity_of(server_saw) == identity


def test_the_server_context_trusts_the_api_ca_alone(ca: auth.ApiCA) -> None:
    context = auth.server_ssl_context(ca.issue_server(["localhost"], []))
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("organizationName", auth.CA_ORGANIZATION),), (("commonName", auth.CA_COMMON_NAME),))
    ]


def test_loading_a_chain_leaves_no_key_on_disk(ca: auth.ApiCA, tmp_path: Path) -> None:
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("osm-tls-*"))
    auth.server_ssl_context(ca.issue_server(["localhost"], []))
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("osm-tls-*")) == before
