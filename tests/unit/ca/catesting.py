"""Helpers for the CA tests: a fixed start time and two independent verifiers,
cryptography's RFC 5280 path validation and `openssl verify`."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509 import verification

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def verifies(leaf_pem: bytes, bundle_pem: bytes, at: datetime) -> bool:
    """True if cryptography's client-path validation accepts the leaf at `at`."""
    store = verification.Store(x509.load_pem_x509_certificates(bundle_pem))
    verifier = verification.PolicyBuilder().store(store).time(at).build_client_verifier()
    try:
        verifier.verify(x509.load_pem_x509_certificate(leaf_pem), [])
    except verification.VerificationError:
        return False
    return True


def openssl_verify(
    workdir: Path, leaf_pem: bytes, bundle_pem: bytes, purpose: str, at: datetime | None = T0
) -> subprocess.CompletedProcess[str]:
    """`openssl verify -x509_strict -purpose <purpose> -CAfile <bundle> [-attime] <leaf>`."""
    leaf, bundle = workdir / "verify-leaf.pem", workdir / "verify-bundle.pem"
    leaf.write_bytes(leaf_pem)
    bundle.write_bytes(bundle_pem)
    command = ["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(bundle)]
    if at is not None:
        command += ["-attime", str(int(at.timestamp()))]
    return subprocess.run([*command, str(leaf)], capture_output=True, text=True, check=False)
