"""Key algorithms for roots and leaves: ECDSA P-256 (the default) or RSA 2048..4096.

One idea: a `KeySpec` is a small value parsed from text ("ecdsa-p256", "rsa-2048") that knows
how to generate a key and how that key signs; nothing else in the CA branches on key types.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from osm.ca.errors import InvalidKeySpec

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 4096


@dataclass(frozen=True)
class KeySpec:
    """A key algorithm: ``KeySpec("ecdsa")`` (P-256) or ``KeySpec("rsa", bits)``."""

    algorithm: str = "ecdsa"
    rsa_bits: int = 2048

    def __post_init__(self) -> None:
        if self.algorithm not in ("ecdsa", "rsa"):
            raise InvalidKeySpec(f"unknown key algorithm {self.algorithm!r}: use ecdsa or rsa")
        if self.algorithm == "rsa" and not RSA_MIN_BITS <= self.rsa_bits <= RSA_MAX_BITS:
            raise InvalidKeySpec(
                f"RSA key size {self.rsa_bits} out of range {RSA_MIN_BITS}..{RSA_MAX_BITS}"
            )

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        """Parse ``ecdsa``, ``ecdsa-p256``, ``rsa`` or ``rsa-<bits>``."""
        name = text.strip().lower()
        if name in ("ecdsa", "ecdsa-p256", "p256", "ec"):
            return cls("ecdsa")
        if name == "rsa":
            return cls("rsa")
        if name.startswith("rsa-") and name[4:].isdigit():
            return cls("rsa", int(name[4:]))
        raise InvalidKeySpec(f"unknown key type {text!r}: use ecdsa-p256 or rsa-<2048..4096>")

    @classmethod
    def of(cls, key: PrivateKey) -> KeySpec:
        """The spec of an existing key; raise `InvalidKeySpec` for other curves or sizes."""
        if isinstance(key, rsa.RSAPrivateKey):
            return cls("rsa", key.key_size)
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKeySpec(f"unsupported curve {key.curve.name}: only P-256 is supported")
        return cls("ecdsa")

    def generate(self) -> PrivateKey:
        """A fresh private key of this spec."""
        if self.algorithm == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=self.rsa_bits)
        return ec.generate_private_key(ec.SECP256R1())

    def __str__(self) -> str:
        return "ecdsa-p256" if self.algorithm == "ecdsa" else f"rsa-{self.rsa_bits}"


def signer_sha256(key: PrivateKey) -> Callable[[bytes], bytes]:
    """A function signing bytes with `key` and SHA-256 as X.509 expects: ECDSA (DER-encoded
    signature) or RSA PKCS#1 v1.5. Resolved once, so the per-signature cost is the key's."""
    if isinstance(key, rsa.RSAPrivateKey):
        return functools.partial(key.sign, padding=padding.PKCS1v15(), algorithm=hashes.SHA256())
    return functools.partial(key.sign, signature_algorithm=ec.ECDSA(hashes.SHA256()))
