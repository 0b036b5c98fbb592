"""The DER template must produce exactly what cryptography's CertificateBuilder produces."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from osm.base.identity import Identity
from osm.ca import builtin, der
from osm.ca.issuer import LeafRequest
from osm.ca.keys import KeySpec, PrivateKey
from tests.unit.ca import catesting


def reference_leaf(
    root: x509.Certificate,
    root_key: PrivateKey,
    request: LeafRequest,
    leaf_key: PrivateKey,
    serial: int,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """The leaf profile written with CertificateBuilder, the obvious way."""
    is_rsa = KeySpec.of(leaf_key).algorithm == "rsa"
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in request.uris]
    names += [x509.DNSName(d) for d in request.dns_names]
    names += [x509.IPAddress(ip) for ip in request.ip_addresses]
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.common_name)]))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, is_rsa, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )


REQUESTS = [
    LeafRequest.workload(Identity("bookstore", "bookbuyer")),
    LeafRequest.workload(Identity("ns", "a.b-c"), trust_domain="example.org"),
    LeafRequest.xds_server(
        ("osm-controller.osm-system.svc", "localhost"),
        (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")),
    ),
]


@pytest.mark.parametrize("root_spec", ["ecdsa", "rsa-2048"])
@pytest.mark.parametrize("leaf_spec", ["ecdsa", "rsa-2048"])
@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.common_name)
@pytest.mark.parametrize(
    ("serial", "not_after"),
    [
        (1, catesting.T0 + timedelta(hours=24)),
        (x509.random_serial_number(), datetime(2051, 6, 1, tzinfo=UTC)),  # GeneralizedTime
        ((1 << 159) - 1, catesting.T0 + timedelta(seconds=1)),
    ],
)
def test_template_matches_certificate_builder(
    root_spec: str, leaf_spec: str, request_: LeafRequest, serial: int, not_after: datetime
) -> None:
    root, root_key = builtin.create_root(
        KeySpec.parse(root_spec), catesting.T0, timedelta(days=365 * 30)
    )
    leaf_key = KeySpec.parse(leaf_spec).generate()
    not_before = catesting.T0 - timedelta(minutes=1)

    ours = x509.load_der_x509_certificate(
        der.LeafSigner(root, root_key).sign(request_, leaf_key, serial, not_before, not_after)
    )
    reference = reference_leaf(root, root_key, request_, leaf_key, serial, not_before, not_after)

    assert ours.tbs_certificate_bytes == reference.tbs_certificate_bytes
    assert ours.signature_algorithm_oid == reference.signature_algorithm_oid
    ours.verify_directly_issued_by(root)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "020100"), (127, "02017f"), (128, "02020080"), (256, "02020100"), (65535, "020300ffff")],
)
def test_integer(value: int, encoded: str) -> None:
    assert der.integer(value).hex() == encoded


@pytest.mark.parametrize(
    ("size", "header"),
    [(0, "0400"), (127, "047f"), (128, "048180"), (255, "0481ff"), (256, "04820100")],
)
def test_lengths_and_read_back(size: int, header: str) -> None:
    element = der.tlv(0x04, bytes(size))
    assert element[: len(header) // 2].hex() == header
    assert der.read_tlv(element, 0) == (0x04, len(header) // 2, len(element))


def test_time_switches_to_generalized_time_in_2050() -> None:
    assert der.time(datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)) == b"\x17\x0d491231235959Z"
    assert der.time(datetime(2050, 1, 1, tzinfo=UTC)) == b"\x18\x0f20500101000000Z"


def test_pem_has_64_character_lines() -> None:
    body = der.pem(bytes(range(256)) * 3).decode().splitlines()
    assert body[0] == "-----BEGIN CERTIFICATE-----" and body[-1] == "-----END CERTIFICATE-----"
    assert all(len(line) == 64 for line in body[1:-2]) and 0 < len(body[-2]) <= 64
