"""The CA's state directory: roots and rotation state on disk, written atomically under a lock.

One idea: ``state.json`` is the commit record. Root files are written first and
``state.json`` last, each as temp file + fsync + rename + directory fsync, so a crash leaves
the old state or the new one, never half a key; root files that ``state.json`` does not name
are leftovers and are never trusted. Layout::

    <dir>/              0700
      state.json        0600  the `rotation.RootSet`
      roots/<id>.crt    0644  root certificate (PEM)
      roots/<id>.key    0600  root private key (PKCS#8 PEM, unencrypted)
      .lock                   flock(2) held by whoever reads-modifies-writes (controller, CLI)
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from osm.ca.errors import CAError, CAFileError, InvalidKeySpec, RootKeyMismatch
from osm.ca.keys import KeySpec, PrivateKey
from osm.ca.rotation import RootSet

_RESTORE = (
    "restore it from a backup; deleting the CA directory would create a new root and every "
    "workload would need new certificates"
)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` (permissions `mode`) so that readers see old or new, never
    a mix, even across a crash: temp file, fsync, rename, fsync of the directory."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)  # the umask may have narrowed it; never widen beyond `mode`
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CAFileError(path, "missing", _RESTORE) from None
    except OSError as error:
        raise CAFileError(path, f"unreadable ({error.strerror})", _RESTORE) from None


class CADirectory:
    """One CA state directory. Methods do no locking themselves: wrap read-modify-write
    sequences in `locked()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_path = path / "state.json"
        self.roots_path = path / "roots"

    def cert_path(self, root_id: str) -> Path:
        return self.roots_path / f"{root_id}.crt"

    def key_path(self, root_id: str) -> Path:
        return self.roots_path / f"{root_id}.key"

    def initialized(self) -> bool:
        return os.path.lexists(self.state_path)

    def create(self) -> None:
        """Create the directory tree (mode 0700; an existing directory is narrowed to 0700)."""
        for directory in (self.path, self.roots_path):
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(directory, 0o700)
            except OSError as error:
                raise CAFileError(
                    directory, f"cannot create ({error.strerror})", "check the path and owner"
                ) from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's exclusive lock (blocks until other processes release it)."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def stamp(self) -> tuple[int, int, int] | None:
        """A cheap change marker for ``state.json`` (inode, mtime, size), None if absent."""
        try:
            stat = self.state_path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def check_no_leftovers(self) -> None:
        """Before creating the first root: refuse if root files exist without ``state.json``."""
        leftovers = sorted(self.roots_path.glob("*.key")) + sorted(self.roots_path.glob("*.crt"))
        if leftovers:
            raise CAFileError(
                self.state_path,
                f"missing, but {len(leftovers)} root file(s) exist in {self.roots_path}",
                "restore state.json from a backup; or, if no workload ever got a certificate "
                "from this CA (an interrupted first start), remove the directory to start over",
            )

    def read_state(self) -> RootSet:
        data = _read(self.state_path)
        try:
            return RootSet.from_json(json.loads(data))
        except (ValueError, KeyError, TypeError) as error:
            raise CAFileError(self.state_path, f"corrupt ({error})", _RESTORE) from None

    def write_state(self, roots: RootSet) -> None:
        text = json.dumps(roots.to_json(), indent=2) + "\n"
        write_atomic(self.state_path, text.encode(), 0o600)

    def write_root(self, root_id: str, cert: x509.Certificate, key: PrivateKey) -> None:
        """Write the key, then the certificate; neither is trusted until ``state.json`` says so."""
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(self.key_path(root_id), key_pem, 0o600)
        write_atomic(self.cert_path(root_id), cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def delete_root(self, root_id: str) -> None:
        self.key_path(root_id).unlink(missing_ok=True)
        self.cert_path(root_id).unlink(missing_ok=True)

    def read_root(self, root_id: str) -> tuple[x509.Certificate, PrivateKey]:
        """Load and check one root: a parseable CA certificate, a private key with safe
        permissions, and the two belonging together. Raise `CAFileError` naming the file."""
        cert_path, key_path = self.cert_path(root_id), self.key_path(root_id)
        try:
            cert = x509.load_pem_x509_certificate(_read(cert_path))
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except CAError:
            raise
        except (ValueError, x509.ExtensionNotFound) as error:
            raise CAFileError(cert_path, f"not a valid certificate ({error})", _RESTORE) from None
        if not constraints.ca:
            raise CAFileError(cert_path, "not a CA certificate (CA=false)", _RESTORE)
        key_data = _read(key_path)
        mode = os.stat(key_path).st_mode & 0o777
        if mode & 0o077:
            raise CAFileError(
                key_path, f"permissions {mode:04o} are too open", f"run: chmod 600 {key_path}"
            )
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError) as error:
            raise CAFileError(key_path, f"not a valid private key ({error})", _RESTORE) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CAFileError(key_path, "neither an ECDSA nor an RSA key", _RESTORE)
        try:
            KeySpec.of(key)
        except InvalidKeySpec as error:
            raise CAFileError(key_path, str(error), _RESTORE) from None
        if _public_der(key) != cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise RootKeyMismatch(
                key_path,
                f"does not match the certificate {cert_path.name}",
                "restore the matching key (or certificate) from a backup",
            )
        return cert, key


def _public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
