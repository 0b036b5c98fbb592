"""The built-in CA (OSM's "tresor"): roots persisted on disk, leaves signed in process.

One idea: the CA mirrors its state directory (`store.CADirectory`) in memory and treats the
disk as the truth: it re-reads it when another process (the `osm ca` CLI) changed it, applies
root transitions from `rotation` under the directory lock, and creates a root only in a
directory that has none. Anything unreadable, corrupt or expired raises a `CAError` instead.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from osm.ca import der
from osm.ca.errors import CAError, CAFileError, NoCA, RootExpired, RotationInProgress
from osm.ca.issuer import IssuedCertificate, LeafRequest, TrustBundle
from osm.ca.keys import KeySpec, PrivateKey
from osm.ca.rotation import RootRecord, RootSet
from osm.ca.store import CADirectory

BACKDATE = timedelta(minutes=1)
"""Leaves and roots start one minute before issuance, so peers whose clocks lag by up to a
minute accept them. Short on purpose: backdating lengthens the life of a leaked key."""

LEASE_SLACK = timedelta(hours=1)
"""When a leaf outlives the persisted `leaves_valid_until` mark, the mark is raised to the
leaf's expiry plus this slack: at most one state write per hour of issuance, and a retiring
root stays trusted at most this much longer than strictly needed."""

ROOT_COMMON_NAME = "osm-ca.openservicemesh.io"
ROOT_ORGANIZATION = "Open Service Mesh"


@dataclass(frozen=True)
class CAConfig:
    """Settings of the built-in CA; `propagation_delay` and `retire_grace` are the defaults
    for `BuiltinCA.begin_rotation`."""

    root_key: KeySpec = field(default_factory=KeySpec)
    leaf_key: KeySpec = field(default_factory=KeySpec)
    root_validity: timedelta = timedelta(days=3650)
    propagation_delay: timedelta = timedelta(minutes=5)
    retire_grace: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class RootInfo:
    """A root as `osm ca status` shows it."""

    record: RootRecord
    fingerprint: str
    not_before: datetime
    not_after: datetime
    key: KeySpec


@dataclass(frozen=True)
class _Root:
    """A loaded root with what the hot path needs precomputed."""

    cert: x509.Certificate
    pem: bytes
    fingerprint: str
    not_before: datetime
    not_after: datetime
    key_spec: KeySpec
    signer: der.LeafSigner

    @classmethod
    def load(cls, cert: x509.Certificate, key: PrivateKey) -> _Root:
        return cls(
            cert=cert,
            pem=cert.public_bytes(serialization.Encoding.PEM),
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            key_spec=KeySpec.of(key),
            signer=der.LeafSigner(cert, key),
        )


def create_root(
    spec: KeySpec, now: datetime, validity: timedelta
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed root: CA=true pathlen 0 (it signs leaves only), keyCertSign+cRLSign.

    Each root's subject carries a random serialNumber so that roots in one bundle never share
    a subject name and chain building cannot confuse them.
    """
    key = spec.generate()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ROOT_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, ROOT_COMMON_NAME),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8)),
        ]
    )
    cert = self_signed(key, name, now, validity)
    return cert, key


def self_signed(
    key: PrivateKey, name: x509.Name, now: datetime, validity: timedelta
) -> x509.Certificate:
    """A self-signed CA certificate for ``key``: CA=true pathlen 0 (it signs leaves only),
    keyCertSign+cRLSign, subject and authority key identifiers; valid from a minute
    before ``now`` (`BACKDATE`) for ``validity``. The mesh's roots and the API's CA
    (`osm.apiserver.auth`) are made with it."""
    start = (now - BACKDATE).replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


class BuiltinCA:
    """The in-process `issuer.Issuer`. Create it with `open`; not thread-safe.

    Several processes may open one directory (the controller and the CLI): every
    read-modify-write of the directory happens under its lock, and each process re-reads the
    state when the file changed. Only the process that publishes the trust bundle (the
    controller, through `manager.CertificateManager.tick`) calls `refresh`.
    """

    def __init__(self, directory: CADirectory, config: CAConfig) -> None:
        self._directory = directory
        self._config = config
        self._roots: RootSet | None = None
        self._loaded: dict[str, _Root] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._bundle = TrustBundle(b"", ())
        self._next_transition: datetime | None = None
        self._lease: datetime | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        now: datetime,
        config: CAConfig | None = None,
        *,
        create: bool = True,
        require_valid: bool = True,
    ) -> BuiltinCA:
        """Open the CA in `path`, creating its first root if the directory holds no CA and
        `create` is true (else raise `NoCA`). Raise a `CAError` naming the file if anything
        on disk is unreadable, corrupt or inconsistent, or (unless `require_valid` is false,
        for read-only use such as `osm ca status`) if the signing root is not valid at `now`.
        Never replaces a root that exists."""
        directory = CADirectory(path)
        ca = cls(directory, config or CAConfig())
        if not directory.initialized():
            if not create:
                raise NoCA(f"no CA in {path}: start the controller or run `osm ca issue` first")
            directory.create()
        with directory.locked():
            if directory.initialized():
                ca._reload()
            else:
                directory.check_no_leftovers()
                root_id = ca._write_new_root(now)
                ca._commit(RootSet.initial(root_id))
        if require_valid:
            ca._signing_root(now)
        return ca

    @classmethod
    def adopt(
        cls,
        path: Path,
        cert_pem: bytes,
        key_pem: bytes,
        now: datetime,
        config: CAConfig | None = None,
    ) -> BuiltinCA:
        """Open the CA in `path` with the root `cert_pem`/`key_pem` (PEM, kept elsewhere:
        a Kubernetes Secret) as its only root, writing it there if the directory holds no
        CA; a directory that holds this root already is opened as it is. Raise a `CAError`
        if the PEM is not a CA certificate and its key, if the directory holds another
        CA, or if the root is not valid at `now`."""
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as error:
            raise CAError(f"the root to adopt is not a PEM certificate and key: {error}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CAError("the root to adopt has neither an ECDSA nor an RSA key")
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise CAError("the root to adopt: the key does not match the certificate")
        root_id = _root_id(cert)
        directory = CADirectory(path)
        ca = cls(directory, config or CAConfig())
        directory.create()
        with directory.locked():
            if directory.initialized():
                ca._reload()
                if root_id not in {record.root_id for record in ca._state().roots}:
                    raise CAFileError(
                        directory.state_path,
                        f"holds another CA than the root {root_id} to adopt",
                        "give an empty directory (the root's home is where it came from)",
                    )
            else:
                directory.check_no_leftovers()
                directory.write_root(root_id, cert, key)
                # Read back through the checks every root passes (CA=true, key matches).
                ca._loaded[root_id] = _Root.load(*directory.read_root(root_id))
                ca._commit(RootSet.initial(root_id))
        ca._signing_root(now)
        return ca

    # --- Issuer -------------------------------------------------------------------------

    def issue(self, request: LeafRequest, now: datetime) -> IssuedCertificate:
        """Sign a new key for `request`: not_before = now - `BACKDATE`, not_after = now +
        validity, cut to the root's own expiry. Raise `RootExpired` if the signing root is
        not valid at `now`."""
        if self._next_transition is not None and now >= self._next_transition:
            self._apply(now, publish=False)  # never publish: only the controller does that
        root = self._signing_root(now)
        not_after = min(now + request.validity, root.not_after)
        if self._lease is None or not_after > self._lease:
            with self._directory.locked():
                self._reload()
                root = self._signing_root(now)  # another process may have switched roots
                not_after = min(now + request.validity, root.not_after)
                self._commit(self._state().extend_lease(not_after + LEASE_SLACK))
        key = self._config.leaf_key.generate()
        serial = x509.random_serial_number()
        not_before = (now - BACKDATE).replace(microsecond=0)
        not_after = not_after.replace(microsecond=0)
        cert_der = root.signer.sign(request, key, serial, not_before, not_after)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return IssuedCertificate(
            cert_pem=der.pem(cert_der),
            key_pem=key_pem,
            trust_bundle_pem=self._bundle.pem,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            identity=request.identity,
            root_fingerprint=root.fingerprint,
        )

    def trust_bundle(self) -> TrustBundle:
        return self._bundle

    def signing_root_fingerprint(self) -> str:
        return self._loaded[self._state().active.root_id].fingerprint

    def refresh(self, now: datetime) -> bool:
        """Re-read the directory if it changed, mark a pending root as published (the caller
        is about to hand out the new bundle) and apply due transitions; persist them and
        delete the files of removed roots. True if this call changed the bundle or the
        signing root. On a `CAError` (the directory became unreadable) nothing changes."""
        before = (self._bundle.version, self.signing_root_fingerprint())
        self._apply(now, publish=True)
        return (self._bundle.version, self.signing_root_fingerprint()) != before

    # --- rotation and status ------------------------------------------------------------

    def begin_rotation(
        self,
        now: datetime,
        propagation_delay: timedelta | None = None,
        retire_grace: timedelta | None = None,
    ) -> RootInfo:
        """Create a new root and add it as PENDING (trusted, not yet signing); see
        `rotation`. Raise `RotationInProgress` if a root is pending already."""
        with self._directory.locked():
            self._reload()
            pending = self._state().pending
            if pending is not None:
                raise RotationInProgress(
                    f"root {pending.root_id} is still pending; wait until it is active"
                )
            root_id = self._write_new_root(now)
            self._commit(
                self._state().begin_rotation(
                    root_id,
                    self._config.propagation_delay
                    if propagation_delay is None
                    else propagation_delay,
                    self._config.retire_grace if retire_grace is None else retire_grace,
                )
            )
        return next(info for info in self.roots() if info.record.root_id == root_id)

    def roots(self) -> tuple[RootInfo, ...]:
        """Every trusted root, oldest first, with its rotation record."""
        infos = []
        for record in self._state().roots:
            root = self._loaded[record.root_id]
            infos.append(
                RootInfo(record, root.fingerprint, root.not_before, root.not_after, root.key_spec)
            )
        return tuple(infos)

    # --- internals ------------------------------------------------------------------------

    def _state(self) -> RootSet:
        assert self._roots is not None, "BuiltinCA used before open()"
        return self._roots

    def _signing_root(self, now: datetime) -> _Root:
        root_id = self._state().active.root_id
        root = self._loaded[root_id]
        start, end = root.not_before, root.not_after
        if not start <= now < end:
            problem = (
                f"expired at {end:%Y-%m-%d %H:%M}Z"
                if now >= end
                else (f"not valid before {start:%Y-%m-%d %H:%M}Z")
            )
            raise RootExpired(
                self._directory.cert_path(root_id),
                f"the signing root {problem}",
                "check the system clock; if the root really expired, move the CA directory "
                "away to create a new root and restart every proxy (rotate before expiry)",
            )
        return root

    def _apply(self, now: datetime, *, publish: bool) -> None:
        roots = self._state()
        due = roots.next_transition()
        unpublished = roots.pending is not None and roots.pending.published_at is None
        changed_on_disk = self._directory.stamp() != self._stamp
        if not (changed_on_disk or (publish and unpublished) or (due and now >= due)):
            return
        with self._directory.locked():
            self._reload()
            current = self._state()
            updated = current.mark_published(now) if publish else current
            updated = updated.advance(now)
            if updated != current:
                self._commit(updated)
                kept = {root.root_id for root in updated.roots}
                for root_id in {root.root_id for root in current.roots} - kept:
                    self._directory.delete_root(root_id)

    def _write_new_root(self, now: datetime) -> str:
        cert, key = create_root(self._config.root_key, now, self._config.root_validity)
        root_id = _root_id(cert)
        self._directory.write_root(root_id, cert, key)
        self._loaded[root_id] = _Root.load(cert, key)
        return root_id

    def _reload(self) -> None:
        """Re-read ``state.json`` if it changed on disk (call with the lock held)."""
        stamp = self._directory.stamp()
        if self._roots is not None and stamp == self._stamp:
            return
        roots = self._directory.read_state()
        for record in roots.roots:
            if record.root_id not in self._loaded:
                self._loaded[record.root_id] = _Root.load(
                    *self._directory.read_root(record.root_id)
                )
        self._set(roots, stamp)

    def _commit(self, roots: RootSet) -> None:
        """Write `roots` to disk and adopt it (call with the lock held)."""
        self._directory.write_state(roots)
        self._set(roots, self._directory.stamp())

    def _set(self, roots: RootSet, stamp: tuple[int, int, int] | None) -> None:
        self._roots, self._stamp = roots, stamp
        self._next_transition = roots.next_transition()
        self._lease = roots.active.leaves_valid_until
        trusted = [self._loaded[record.root_id] for record in roots.roots]
        for root_id in set(self._loaded) - {record.root_id for record in roots.roots}:
            del self._loaded[root_id]
        self._bundle = TrustBundle(
            b"".join(root.pem for root in trusted), tuple(root.fingerprint for root in trusted)
        )


def _root_id(cert: x509.Certificate) -> str:
    """A root's name in the state directory: its fingerprint's first 16 hex digits."""
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def utc_now() -> datetime:
    """The real clock (timezone-aware UTC); inject something else in tests."""
    return datetime.now(UTC)
