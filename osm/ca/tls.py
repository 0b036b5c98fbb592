"""TLS contexts from certificates held in memory.

One idea: Python's ssl loads a certificate chain and its key from files only, so
`load_cert_chain` passes them through a private temporary directory (0700, the key file
0600 from its creation) that is removed as soon as OpenSSL has read them. Servers whose
certificates come from a CA in process (the API server, the webhooks) use it, also to
renew: loading a new chain into a live context changes what new handshakes present.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path


def load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """`ssl.SSLContext.load_cert_chain` from memory."""
    with tempfile.TemporaryDirectory(prefix="osm-tls-") as private:
        cert_path, key_path = Path(private) / "tls.crt", Path(private) / "tls.key"
        cert_path.write_bytes(cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(key_pem)
        context.load_cert_chain(cert_path, key_path)
