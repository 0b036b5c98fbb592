"""Benchmark: leaf certificate issuances per second, ECDSA P-256 against OSM's RSA-2048.

One idea: every figure is measured in the same run as its baseline (RSA-2048 leaves, what
OSM's tresor issues) and printed as a ratio, so the table means something on any machine.
Run: ``.venv/bin/python bench/ca.py [--seconds 2]``. Not run by CI; never a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osm.base.identity import Identity
from osm.ca import builtin, der
from osm.ca.issuer import LeafRequest
from osm.ca.keys import KeySpec, PrivateKey

REPETITIONS = 3
REQUEST = LeafRequest.workload(Identity("bookstore", "bookbuyer"))


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second over at least `seconds` (and at least 3 operations)."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        operation()
        count += 1
        now = time.perf_counter()
        if now >= deadline and count >= 3:
            return count / (now - start)


def builder_issue(root: x509.Certificate, root_key: PrivateKey) -> Callable[[], object]:
    """The straightforward path: CertificateBuilder for every leaf (what the template replaces)."""
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key())
    now = builtin.utc_now()

    def issue() -> object:
        key = KeySpec().generate()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, REQUEST.common_name)]))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - builtin.BACKDATE)
            .not_valid_after(now + REQUEST.validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(REQUEST.uris[0]),
                        x509.DNSName(REQUEST.dns_names[0]),
                    ]
                ),
                critical=False,
            )
            .add_extension(aki, critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(root_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    return issue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per repetition")
    seconds = parser.parse_args().seconds

    cases: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        now = builtin.utc_now()
        authorities = {}
        for name in ("ecdsa", "rsa-2048"):
            spec = KeySpec.parse(name)
            config = builtin.CAConfig(root_key=spec, leaf_key=spec)
            authorities[name] = builtin.BuiltinCA.open(Path(workdir) / name, now, config)
        ecdsa_ca, rsa_ca = authorities["ecdsa"], authorities["rsa-2048"]
        cases["RSA-2048 leaf, RSA root (OSM baseline)"] = lambda: rsa_ca.issue(REQUEST, now)
        cases["ECDSA P-256 leaf, ECDSA root"] = lambda: ecdsa_ca.issue(REQUEST, now)

        root, root_key = builtin.create_root(KeySpec(), now, timedelta(days=365))
        cases["ECDSA via CertificateBuilder (reference)"] = builder_issue(root, root_key)
        signer, fixed_key = der.LeafSigner(root, root_key), KeySpec().generate()
        valid_to = now + timedelta(hours=24)
        cases["  part: ECDSA template sign only"] = lambda: signer.sign(
            REQUEST, fixed_key, x509.random_serial_number(), now, valid_to
        )
        cases["  part: ECDSA P-256 keygen only"] = KeySpec().generate
        cases["  part: RSA-2048 keygen only"] = KeySpec("rsa", 2048).generate

        results = {
            name: [rate(operation, seconds) for _ in range(REPETITIONS)]
            for name, operation in cases.items()
        }

    baseline = statistics.median(results["RSA-2048 leaf, RSA root (OSM baseline)"])
    print(f"Leaf issuance, {REPETITIONS} runs of {seconds:g}s each (ops/s; ratio = median / RSA)")
    print(f"{'case':42} {'min':>10} {'median':>10} {'max':>10} {'ratio':>9}")
    for name, runs in results.items():
        median = statistics.median(runs)
        print(
            f"{name:42} {min(runs):>10,.0f} {median:>10,.0f} {max(runs):>10,.0f} "
            f"{median / baseline:>8,.0f}x"
        )


if __name__ == "__main__":
    main()
