"""Who is calling the API: client certificates from the API's own CA, as kube-apiserver's x509
authenticator reads them (CN = user name, each O = a group).

One idea: identity is a certificate chain that ends at the API CA, checked by OpenSSL during
the handshake; `identity_of` only reads the subject of a certificate that OpenSSL already
verified. The API CA is not the mesh's CA (`osm.ca`): a workload's mesh certificate must
never authenticate to the API, so the two CAs share no key and no directory.

What Python's ssl can do with an optional client certificate (measured, OpenSSL 3): with
``verify_mode = CERT_OPTIONAL`` the server asks for a certificate and a client may send none
(``getpeercert()`` then returns None, so the server can answer a readable 401 Status, as
kube-apiserver does). A certificate that is sent is verified, and one that fails (another
CA, expired, a serverAuth-only certificate) fails the handshake: OpenSSL has no "ignore a bad
certificate" mode and Python exposes no verify callback to build one. So a foreign
certificate never reaches the application as "no identity"; the client sees a TLS alert
(``unknown ca`` / ``unsupported certificate``; in TLS 1.3 on its first read) and the server
logs the handshake error. kube-apiserver (Go's VerifyClientCertIfGiven) behaves the same.
Under asyncio the alert is only sent with `osm.apiserver.local.send_handshake_alerts`.

Layout of the CA directory::

    <dir>/        0700
      ca.crt      0644  the API CA's certificate (PEM)
      ca.key      0600  its private key (PKCS#8 PEM, unencrypted)
      .lock             flock(2) held while the CA is created, so two processes make one CA
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from osm.ca import builtin
from osm.ca.store import write_atomic

CA_VALIDITY = timedelta(days=3650)
CLIENT_VALIDITY = timedelta(days=365)
SERVER_VALIDITY = timedelta(days=365)
BACKDATE = timedelta(minutes=1)
"""Certificates start a minute early, so peers whose clocks lag a little accept them."""

CA_COMMON_NAME = "osm-apiserver-ca"
CA_ORGANIZATION = "Open Service Mesh (local API)"

_REMEDY = (
    "restore the directory from a backup; or remove it to create a new API CA, after which "
    "every kubeconfig and the server certificate must be issued again"
)


class ApiCAError(Exception):
    """The API CA's directory is unusable; the message names the file and what to do."""

    def __init__(self, path: Path, problem: str, remedy: str = _REMEDY) -> None:
        super().__init__(f"{path}: {problem}; {remedy}")
        self.path = path
        self.problem = problem
        self.remedy = remedy


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated caller: the certificate's CN and its O values, in certificate order."""

    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A certificate, its private key and the API CA's certificate, all PEM."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes


class ApiCA:
    """The API's certificate authority. Create it with `open`. Issuing does not touch the
    directory, so any number of processes may issue from one CA at once."""

    def __init__(self, directory: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.directory = directory
        self._cert = cert
        self._key = key
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def open(cls, directory: Path, *, now: datetime | None = None) -> ApiCA:
        """The CA kept in `directory`, created (directory 0700, key 0600) if it holds none.

        Raise `ApiCAError` naming the file if the directory holds a damaged CA: one file
        without the other, a file that does not parse, a key readable by others, a key that
        does not match the certificate, a certificate that is no CA or is expired. A damaged
        CA is never replaced: clients trust the old one.
        """
        now = now or datetime.now(UTC)
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        except OSError as error:
            raise ApiCAError(
                directory, f"cannot create ({error.strerror})", "check the path and its owner"
            ) from None
        with _locked(directory / ".lock"):
            if not os.path.lexists(cert_path) and not os.path.lexists(key_path):
                cert, key = _create_ca(now)
                key_pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                write_atomic(key_path, key_pem, 0o600)  # the key first: the cert commits
                write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
                return cls(directory, cert, key)
            cert = _read_cert(cert_path, key_path, now)
            key = _read_key(key_path, cert_path, cert)
        return cls(directory, cert, key)

    def issue_client(
        self,
        user: str,
        groups: Sequence[str] = (),
        *,
        validity: timedelta = CLIENT_VALIDITY,
        now: datetime | None = None,
    ) -> Credentials:
        """A client certificate for `user` (CN) in `groups` (one O each), clientAuth only."""
        _check_name("user name", user)
        for group in groups:
            _check_name("group", group)
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(x509.Name(subject), ExtendedKeyUsageOID.CLIENT_AUTH, None, validity, now)

    def issue_server(
        self,
        hosts: Sequence[str],
        ips: Sequence[str],
        *,
        validity: timedelta = SERVER_VALIDITY,
        now: datetime | None = None,
    ) -> Credentials:
        """The API server's certificate: serverAuth only, every host and IP as a SAN, CN the
        first of them. Raise ValueError without any name or with an invalid IP address."""
        if not hosts and not ips:
            raise ValueError("a server certificate needs at least one host name or IP address")
        for host in hosts:
            _check_name("host name", host)
        try:
            addresses = [ipaddress.ip_address(ip) for ip in ips]
        except ValueError as error:
            raise ValueError(f"invalid IP address for the server certificate: {error}") from None
        names: list[x509.GeneralName] = [x509.DNSName(host) for host in hosts]
        names += [x509.IPAddress(address) for address in addresses]
        common_name = hosts[0] if hosts else str(addresses[0])
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(
            subject,
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(names),
            validity,
            now,
        )

    def _issue(
        self,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        alt_names: x509.SubjectAlternativeName | None,
        validity: timedelta,
        now: datetime | None,
    ) -> Credentials:
        now = now or datetime.now(UTC)
        start = (now - BACKDATE).replace(microsecond=0)
        key = ec.generate_private_key(ec.SECP256R1())
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(min(now + validity, self._cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )
        if alt_names is not None:
            builder = builder.add_extension(alt_names, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Credentials(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            ca_pem=self.cert_pem,
        )


def server_ssl_context(server: Credentials) -> ssl.SSLContext:
    """The API server's TLS context: TLS 1.2 or later, `server`'s certificate, and client
    certificates optional but verified against the API CA alone (see the module docstring
    for what a certificate from another CA does)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=server.ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    load_cert_chain(context, server.cert_pem, server.key_pem)
    return context


def load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """`ssl.SSLContext.load_cert_chain` from memory: Python's ssl reads keys from files only,
    so the key goes through a private temporary directory (0700) that is removed at once."""
    with tempfile.TemporaryDirectory(prefix="osm-tls-") as private:
        cert_path, key_path = Path(private) / "tls.crt", Path(private) / "tls.key"
        cert_path.write_bytes(cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(key_pem)
        context.load_cert_chain(cert_path, key_path)


def identity_of(peercert: Mapping[str, Any] | None) -> User | None:
    """The user that a peer certificate names, from ``SSLObject.getpeercert()`` of a context
    made by `server_ssl_context`: None when the client sent no certificate (``getpeercert``
    gives None, or ``{}`` if verification was off) or the certificate has no CN."""
    if not peercert:
        return None
    common_names: list[str] = []
    groups: list[str] = []
    for rdn in peercert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName":
                common_names.append(value)
            elif attribute == "organizationName":
                groups.append(value)
    if len(common_names) != 1 or not common_names[0]:
        return None
    return User(common_names[0], tuple(groups))


# -- the CA's files ---------------------------------------------------------------------------
@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _create_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
        ]
    )
    cert = builtin.self_signed(key, name, now, CA_VALIDITY)
    return cert, key


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _read_bytes(path: Path, other: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ApiCAError(
            path,
            f"missing, but {other.name} exists",
            "restore it from a backup; or, if no kubeconfig was ever issued from this CA (an "
            "interrupted first start), remove the directory to start over",
        ) from None
    except OSError as error:
        raise ApiCAError(path, f"unreadable ({error.strerror})") from None


def _read_cert(path: Path, key_path: Path, now: datetime) -> x509.Certificate:
    data = _read_bytes(path, key_path)
    try:
        cert = x509.load_pem_x509_certificate(data)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (ValueError, x509.ExtensionNotFound) as error:
        raise ApiCAError(path, f"not a valid CA certificate ({error})") from None
    if not constraints.ca:
        raise ApiCAError(path, "not a CA certificate (CA=false)")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ApiCAError(
            path,
            f"valid from {cert.not_valid_before_utc} to {cert.not_valid_after_utc}, not now",
        )
    return cert


def _read_key(path: Path, cert_path: Path, cert: x509.Certificate) -> ec.EllipticCurvePrivateKey:
    data = _read_bytes(path, cert_path)
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise ApiCAError(path, f"permissions {mode:04o} are too open", f"run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise ApiCAError(path, f"not a valid private key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ApiCAError(path, "not an ECDSA key")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != (
        cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    ):
        raise ApiCAError(path, f"does not match the certificate {cert_path.name}")
    return key


def _check_name(what: str, name: str) -> None:
    if not name or not name.isascii() or not name.isprintable():
        raise ValueError(f"invalid {what} {name!r}: expected non-empty printable ASCII")
