"""Leaf certificates assembled from a fixed DER layout and signed with the root's key.

One idea: cryptography's CertificateBuilder re-encodes every constant (issuer, algorithm,
extensions) for every leaf, which caps issuance near 6,000/s. Here the constant parts are
encoded once per root and each leaf only patches in its serial, validity, names, public key
and key identifier, then the TBSCertificate bytes are signed directly. The output is byte for
byte what CertificateBuilder produces for the same inputs (a unit test holds it to that).
"""

from __future__ import annotations

import binascii
import hashlib
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from osm.ca.issuer import LeafRequest
from osm.ca.keys import PrivateKey, signer_sha256

_VERSION_3 = bytes.fromhex("a003020102")
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
_OID_COMMON_NAME = bytes.fromhex("0603550403")
_OID_BASIC_CONSTRAINTS = bytes.fromhex("0603551d13")
_OID_KEY_USAGE = bytes.fromhex("0603551d0f")
_OID_EXTENDED_KEY_USAGE = bytes.fromhex("0603551d25")
_OID_SUBJECT_ALT_NAME = bytes.fromhex("0603551d11")
_OID_AUTHORITY_KEY_ID = bytes.fromhex("0603551d23")
_SUBJECT_KEY_ID_PREFIX = bytes.fromhex("301d0603551d0e04160414")  # extension around 20 bytes
_NAMES_CACHE_SIZE = 4096


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(body))) + body + content


def integer(value: int) -> bytes:
    """A DER INTEGER for a non-negative `value`, minimally encoded."""
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def time(moment: datetime) -> bytes:
    """UTCTime for 1950..2049 and GeneralizedTime otherwise, as RFC 5280 requires."""
    if 1950 <= moment.year < 2050:
        return tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def read_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """Parse the element at `offset`: (tag, content start, content end)."""
    tag, first = data[offset], data[offset + 1]
    start = offset + 2
    if first < 0x80:
        return tag, start, start + first
    count = first & 0x7F
    length = int.from_bytes(data[start : start + count], "big")
    return tag, start + count, start + count + length


def _extension(oid: bytes, value: bytes, critical: bool = False) -> bytes:
    flag = b"\x01\x01\xff" if critical else b""  # DER omits the DEFAULT FALSE
    return tlv(0x30, oid + flag + tlv(0x04, value))


def _subject_key_id(spki: bytes) -> bytes:
    """SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1, as cryptography does)."""
    _, start, _ = read_tlv(spki, 0)
    _, _, algorithm_end = read_tlv(spki, start)
    _, bits_start, bits_end = read_tlv(spki, algorithm_end)
    return hashlib.sha1(spki[bits_start + 1 : bits_end]).digest()


def _general_names(request: LeafRequest) -> bytes:
    names = [tlv(0x86, uri.encode("ascii")) for uri in request.uris]
    names += [tlv(0x82, dns.encode("ascii")) for dns in request.dns_names]
    names += [tlv(0x87, ip.packed) for ip in request.ip_addresses]
    return tlv(0x30, b"".join(names))


def pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    """PEM armour with 64-character lines (48 bytes of DER per line)."""
    body = b"".join(binascii.b2a_base64(der[i : i + 48]) for i in range(0, len(der), 48))
    return b"-----BEGIN %s-----\n%s-----END %s-----\n" % (label.encode(), body, label.encode())


class LeafSigner:
    """Signs leaves under one root. Build once per root; `sign` is the hot path.

    Leaf profile: v3, subject CN only, extensions in this order: BasicConstraints CA=false
    (critical), KeyUsage digitalSignature (+keyEncipherment for RSA keys; critical), EKU
    serverAuth+clientAuth, SAN (URIs, DNS names, IPs), AKI (the root's key id), SKI.
    """

    def __init__(self, root_cert: x509.Certificate, root_key: PrivateKey) -> None:
        self._sign_with_root = signer_sha256(root_key)
        is_rsa_root = isinstance(root_key, rsa.RSAPrivateKey)
        self._algorithm = _SHA256_WITH_RSA if is_rsa_root else _ECDSA_WITH_SHA256
        tbs = root_cert.tbs_certificate_bytes
        _, offset, _ = read_tlv(tbs, 0)
        for _ in range(5):  # version, serial, signature, issuer, validity -> subject
            _, _, offset = read_tlv(tbs, offset)
        _, _, subject_end = read_tlv(tbs, offset)
        self._algorithm_and_issuer = self._algorithm + tbs[offset:subject_end]
        try:
            root_ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski.value)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key())
        eku = x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        self._prefix_extensions = {
            is_rsa_leaf: _extension(
                _OID_BASIC_CONSTRAINTS, x509.BasicConstraints(False, None).public_bytes(), True
            )
            + _extension(_OID_KEY_USAGE, _key_usage(is_rsa_leaf).public_bytes(), True)
            + _extension(_OID_EXTENDED_KEY_USAGE, eku.public_bytes())
            for is_rsa_leaf in (False, True)
        }
        self._aki_extension = _extension(_OID_AUTHORITY_KEY_ID, aki.public_bytes())
        self._names: dict[LeafRequest, tuple[bytes, bytes]] = {}
        self._validity: tuple[datetime, datetime, bytes] | None = None

    def _encoded_names(self, request: LeafRequest) -> tuple[bytes, bytes]:
        """(subject Name, SAN extension) for `request`, cached: a mesh re-issues the same
        requests all day. The cache is simply emptied when it reaches its bound."""
        names = self._names.get(request)
        if names is None:
            if len(self._names) >= _NAMES_CACHE_SIZE:
                self._names.clear()
            common_name = tlv(0x0C, request.common_name.encode())
            subject = tlv(0x30, tlv(0x31, tlv(0x30, _OID_COMMON_NAME + common_name)))
            names = subject, _extension(_OID_SUBJECT_ALT_NAME, _general_names(request))
            self._names[request] = names
        return names

    def _encoded_validity(self, not_before: datetime, not_after: datetime) -> bytes:
        """The Validity SEQUENCE, remembered for the last pair (bursts share one second)."""
        last = self._validity
        if last is not None and last[0] == not_before and last[1] == not_after:
            return last[2]
        validity = tlv(0x30, time(not_before) + time(not_after))
        self._validity = (not_before, not_after, validity)
        return validity

    def sign(
        self,
        request: LeafRequest,
        leaf_key: PrivateKey,
        serial: int,
        not_before: datetime,
        not_after: datetime,
    ) -> bytes:
        """The DER certificate for `request` with the public half of `leaf_key`.

        Times must be whole seconds (they are encoded without fractions).
        """
        spki = leaf_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        is_rsa_leaf = isinstance(leaf_key, rsa.RSAPrivateKey)
        subject, subject_alt_name = self._encoded_names(request)
        extensions = (
            self._prefix_extensions[is_rsa_leaf]
            + subject_alt_name
            + self._aki_extension
            + _SUBJECT_KEY_ID_PREFIX
            + _subject_key_id(spki)
        )
        tbs = tlv(
            0x30,
            _VERSION_3
            + integer(serial)
            + self._algorithm_and_issuer
            + self._encoded_validity(not_before, not_after)
            + subject
            + spki
            + tlv(0xA3, tlv(0x30, extensions)),
        )
        signature = self._sign_with_root(tbs)
        return tlv(0x30, tbs + self._algorithm + tlv(0x03, b"\x00" + signature))


def _key_usage(is_rsa: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
