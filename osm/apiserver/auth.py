"""Who is calling the API: client certificates from the API's own CA, as kube-apiserver's x509
authenticator reads them (CN = user name, each O = a group), and service account tokens, as
its service account authenticator reads them.

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

Service account tokens (`ServiceAccountTokens`) are kube-apiserver's bound tokens: JWTs
signed ES256 with ``sa.key`` (kube's ``--service-account-signing-key-file``), carrying
``iss``, ``sub`` = ``system:serviceaccount:<ns>:<name>``, ``aud``, ``exp``, ``iat``,
``nbf``, ``jti`` and the ``kubernetes.io`` claim (namespace, serviceaccount name and uid).
`ServiceAccountTokens.verify` checks what a token carries (signature, issuer, audience,
times); the caller checks that the ServiceAccount still exists with that uid, as kube
checks the bound object. The signing key is not the CA's key: a key that signs
certificates signs nothing else, so a token can never be replayed as a certificate
signature or the reverse, and the token key can be rotated without reissuing every
kubeconfig.

Layout of the CA directory::

    <dir>/        0700
      ca.crt      0644  the API CA's certificate (PEM)
      ca.key      0600  its private key (PKCS#8 PEM, unencrypted)
      sa.key      0600  the service account tokens' signing key (PKCS#8 PEM, P-256)
      .lock             flock(2) held while the CA or the signing key is created, so two
                        processes make one of each
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import ipaddress
import os
import ssl
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from osm.ca import builtin
from osm.ca.store import write_atomic
from osm.ca.tls import load_cert_chain

CA_VALIDITY = timedelta(days=3650)
CLIENT_VALIDITY = timedelta(days=365)
SERVER_VALIDITY = timedelta(days=365)
BACKDATE = timedelta(minutes=1)
"""Certificates start a minute early, so peers whose clocks lag a little accept them."""

ISSUER = "https://kubernetes.default.svc.cluster.local"
"""The tokens' ``iss``, and the API's audience (kube-apiserver's ``--api-audiences`` default
to its ``--service-account-issuer``): a cluster's usual issuer."""
TOKEN_EXPIRATION = timedelta(hours=1)
"""A TokenRequest's default ``expirationSeconds``."""
MIN_TOKEN_EXPIRATION = timedelta(minutes=10)
MAX_TOKEN_EXPIRATION = timedelta(seconds=2**32)
NOT_BEFORE_LEEWAY = timedelta(minutes=1)
"""A token is accepted this long before its ``nbf``, for issuers whose clocks run ahead; its
``exp`` has no leeway."""
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
AUTHENTICATED_GROUP = "system:authenticated"
_ALGORITHM = "ES256"

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
        _make_private_dir(directory)
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


# -- service account tokens -----------------------------------------------------------------
class InvalidToken(Exception):
    """A bearer token that does not authenticate; the message says why, for the server's
    log (the client gets only 401 Unauthorized, as from kube-apiserver)."""


@dataclass(frozen=True, slots=True)
class ServiceAccountClaims:
    """What a verified token says: the ServiceAccount it is bound to and until when."""

    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    expires: datetime

    @property
    def user(self) -> User:
        """kube's identity of a service account: its user name and its three groups."""
        return User(
            service_account_user(self.namespace, self.name),
            (
                SERVICE_ACCOUNTS_GROUP,
                f"{SERVICE_ACCOUNTS_GROUP}:{self.namespace}",
                AUTHENTICATED_GROUP,
            ),
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed token and its expiry (a TokenRequest's ``status``)."""

    token: str = field(repr=False)
    expires: datetime


def service_account_user(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


class ServiceAccountTokens:
    """Signs and verifies service account tokens with one key. Create it with `open`.
    ``audiences``: what the API accepts as its own (a token for another audience, e.g. a
    vault's, does not authenticate to the API); a TokenRequest without audiences gets them.
    Safe to use from any number of tasks and processes: neither call touches a file."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        issuer: str = ISSUER,
        audiences: Sequence[str] = (),
    ) -> None:
        self._key = key
        self._public = key.public_key()
        self.issuer = issuer
        self.audiences = tuple(audiences) or (issuer,)
        der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # kube-apiserver's key id: the unpadded base64url SHA-256 of the public key's DER.
        self.key_id = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    @classmethod
    def open(
        cls, directory: Path, *, issuer: str = ISSUER, audiences: Sequence[str] = ()
    ) -> ServiceAccountTokens:
        """The signing key ``sa.key`` kept in `directory` (the API CA's), created 0600 if
        missing, under the directory's lock. Raise `ApiCAError` naming the file if it is
        readable by others or is no P-256 private key; a damaged key is never replaced."""
        path = directory / "sa.key"
        _make_private_dir(directory)
        with _locked(directory / ".lock"):
            if not os.path.lexists(path):
                key = ec.generate_private_key(ec.SECP256R1())
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                write_atomic(path, pem, 0o600)
                return cls(key, issuer=issuer, audiences=audiences)
            return cls(_read_signing_key(path), issuer=issuer, audiences=audiences)

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        *,
        audiences: Sequence[str] = (),
        expiration: timedelta = TOKEN_EXPIRATION,
        now: datetime | None = None,
    ) -> IssuedToken:
        """A token for the ServiceAccount ``namespace/name`` whose ``metadata.uid`` is
        ``uid``, for ``audiences`` (default: the API's), valid from ``now`` for
        ``expiration`` (whole seconds). Raise ValueError outside [10 minutes, 2^32 s]."""
        if not MIN_TOKEN_EXPIRATION <= expiration <= MAX_TOKEN_EXPIRATION:
            raise ValueError(
                f"the expiration {expiration} is outside "
                f"[{MIN_TOKEN_EXPIRATION}, {MAX_TOKEN_EXPIRATION}]"
            )
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = issued + timedelta(seconds=int(expiration.total_seconds()))
        claims = {
            "aud": list(audiences or self.audiences),
            "exp": int(expires.timestamp()),
            "iat": int(issued.timestamp()),
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": uid},
            },
            "nbf": int(issued.timestamp()),
            "sub": service_account_user(namespace, name),
        }
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self.key_id})
        return IssuedToken(token, expires)

    def verify(self, token: str, *, now: datetime | None = None) -> ServiceAccountClaims:
        """The claims of a token this key signed, for this issuer and one of the API's
        audiences, valid at ``now``; raise `InvalidToken` otherwise. Whether the
        ServiceAccount still exists with that uid is the caller's to check."""
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[_ALGORITHM],
                audience=list(self.audiences),
                issuer=self.issuer,
                options={
                    "require": ["aud", "exp", "iat", "iss", "nbf", "sub"],
                    # the times are checked below, against ``now``
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as error:
            raise InvalidToken(f"{type(error).__name__}: {error}") from None
        moment = now or datetime.now(UTC)
        expires, not_before = _time_claim(claims, "exp"), _time_claim(claims, "nbf")
        if moment >= expires:
            raise InvalidToken(f"expired at {expires.isoformat()}")
        if moment + NOT_BEFORE_LEEWAY < not_before:
            raise InvalidToken(f"not valid before {not_before.isoformat()}")
        bound = claims.get("kubernetes.io")
        account = bound.get("serviceaccount") if isinstance(bound, dict) else None
        if not isinstance(bound, dict) or not isinstance(account, dict):
            raise InvalidToken("no kubernetes.io service account claim")
        namespace = _text_claim(bound, "namespace")
        name, uid = _text_claim(account, "name"), _text_claim(account, "uid")
        if claims["sub"] != service_account_user(namespace, name):
            raise InvalidToken(f"sub {claims['sub']!r} is not the kubernetes.io claim's account")
        audiences = claims["aud"]
        return ServiceAccountClaims(
            namespace,
            name,
            uid,
            tuple(audiences) if isinstance(audiences, list) else (str(audiences),),
            expires,
        )


# -- a TokenRequest in protobuf -------------------------------------------------------------
PROTOBUF = "application/vnd.kubernetes.protobuf"
_PROTOBUF_MAGIC = b"k8s\x00"


def token_request_from_protobuf(data: bytes) -> dict[str, Any]:
    """A TokenRequest sent as Kubernetes protobuf, as a JSON-shaped dict (``apiVersion``,
    ``kind``, ``spec.audiences``, ``spec.expirationSeconds``, ``spec.boundObjectRef``).

    kubectl's typed client (``kubectl create token``) sends this body in protobuf only, and
    does not fall back to JSON on 415; the API speaks JSON everywhere else, so only this
    message is decoded: the ``k8s\\0`` magic, then ``runtime.Unknown`` {1 typeMeta
    {1 apiVersion, 2 kind}, 2 raw}, ``raw`` being ``TokenRequest`` {2 spec {1 audiences
    (repeated), 3 boundObjectRef {1 kind, 2 apiVersion, 3 name, 4 uid}, 4
    expirationSeconds}} (k8s.io/api/authentication/v1/generated.proto). Raise ValueError
    for anything else."""
    if not data.startswith(_PROTOBUF_MAGIC):
        raise ValueError("no Kubernetes protobuf magic (k8s\\0)")
    unknown = _fields(data[len(_PROTOBUF_MAGIC) :])
    type_meta = _fields(_one(unknown, 1, b""))
    request = _fields(_one(unknown, 2, b""))
    spec = _fields(_one(request, 2, b""))
    body: dict[str, Any] = {
        "apiVersion": _one(type_meta, 1, b"").decode(),
        "kind": _one(type_meta, 2, b"").decode(),
        "spec": {},
    }
    audiences = [value.decode() for value in spec.get(1, ()) if isinstance(value, bytes)]
    if audiences:
        body["spec"]["audiences"] = audiences
    seconds = _one(spec, 4, None)
    if seconds is not None:
        body["spec"]["expirationSeconds"] = seconds
    bound = _one(spec, 3, None)
    if bound is not None:
        ref = _fields(bound)
        names = ("kind", "apiVersion", "name", "uid")
        body["spec"]["boundObjectRef"] = {
            name: _one(ref, number, b"").decode() for number, name in enumerate(names, 1)
        }
    return body


def _one(fields: Mapping[int, list[Any]], number: int, default: Any) -> Any:
    values = fields.get(number)
    return values[-1] if values else default  # protobuf: the last value of a field wins


def _fields(data: bytes) -> dict[int, list[Any]]:
    """A protobuf message's fields: varints as ints, length-delimited ones as bytes."""
    found: dict[int, list[Any]] = {}
    position = 0
    while position < len(data):
        tag, position = _varint(data, position)
        number, wire_type = tag >> 3, tag & 7
        value: Any
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            size, position = _varint(data, position)
            value, position = data[position : position + size], position + size
            if position > len(data):
                raise ValueError("a length-delimited field runs past the end")
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
            continue
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        found.setdefault(number, []).append(value)
    return found


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("a truncated or overlong varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


def _text_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"the kubernetes.io claim has no {name}")
    return value


def _time_claim(claims: Mapping[str, Any], name: str) -> datetime:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} is not a NumericDate")
    return datetime.fromtimestamp(value, UTC)


# -- the CA's files ---------------------------------------------------------------------------
@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _make_private_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as error:
        raise ApiCAError(
            directory, f"cannot create ({error.strerror})", "check the path and its owner"
        ) from None


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


def _read_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    remedy = (
        "restore it from a backup; or remove it to create a new signing key, after which "
        "every service account token must be requested again"
    )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ApiCAError(path, f"unreadable ({error.strerror})", remedy) from None
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise ApiCAError(path, f"permissions {mode:04o} are too open", f"run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise ApiCAError(path, f"not a valid private key ({error})", remedy) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ApiCAError(path, "not a P-256 ECDSA key (ES256 needs one)", remedy)
    return key


def _check_name(what: str, name: str) -> None:
    if not name or not name.isascii() or not name.isprintable():
        raise ValueError(f"invalid {what} {name!r}: expected non-empty printable ASCII")
