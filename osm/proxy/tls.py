"""TLS for the sidecar: contexts from SDS secrets, peer identity, SAN checks, ClientHello sniffing.

The one idea: an `ssl.SSLContext` is built once per (role, secrets) and cached by the
secret objects themselves, so an SDS rotation yields new contexts for new handshakes while
established connections keep the SSL objects they already have. Identity checks happen
after the handshake: the chain is verified by OpenSSL against the trusted CA, then the
peer's SANs are matched here (Envoy's `match_subject_alt_names`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from osm.proxy import model


class TlsConfigError(Exception):
    """A secret cannot be turned into a context (bad PEM, key mismatch)."""


def _load_chain(context: ssl.SSLContext, chain: bytes, key: bytes) -> None:
    # The ssl module reads key material only from files. On Linux the file is an anonymous
    # memory file (the key never reaches a disk); elsewhere a private temporary file,
    # removed at once.
    pem = chain.rstrip(b"\n") + b"\n" + key
    try:
        if not _load_chain_from_memory(context, pem):
            _load_chain_from_temporary_file(context, pem)
    except ssl.SSLError as error:
        raise TlsConfigError(f"cannot load certificate and key: {error}") from None


def _load_chain_from_memory(context: ssl.SSLContext, pem: bytes) -> bool:
    """Load through a memfd; -> False when this system has none (not Linux, no /proc)."""
    if not hasattr(os, "memfd_create"):
        return False
    descriptor = os.memfd_create("osm-proxy-pem", os.MFD_CLOEXEC)
    try:
        view = memoryview(pem)
        while view:
            view = view[os.write(descriptor, view) :]
        path = f"/proc/self/fd/{descriptor}"
        if not os.path.exists(path):
            return False
        context.load_cert_chain(path)
    finally:
        os.close(descriptor)
    return True


def _load_chain_from_temporary_file(context: ssl.SSLContext, pem: bytes) -> None:
    import tempfile  # only here: it costs the sidecar ~0.4 MB (shutil, bz2, lzma)

    descriptor, path = tempfile.mkstemp(prefix="osm-proxy-", suffix=".pem")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


_VERSIONS = {"TLSv1_2": ssl.TLSVersion.TLSv1_2, "TLSv1_3": ssl.TLSVersion.TLSv1_3}


def _versions(context: ssl.SSLContext, low: str, high: str) -> None:
    context.minimum_version = _VERSIONS.get(low, ssl.TLSVersion.TLSv1_2)
    if high in _VERSIONS:
        context.maximum_version = _VERSIONS[high]


def _load_ca(context: ssl.SSLContext, ca: bytes) -> None:
    try:
        context.load_verify_locations(cadata=ca.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as error:
        raise TlsConfigError(f"cannot load trusted CA: {error}") from None


class ContextCache:
    """SSL contexts keyed by the secrets they were built from; safe to share per loop."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], ssl.SSLContext] = {}

    def server(
        self,
        tls: model.DownstreamTls,
        cert: model.Secret,
        validation: model.Secret | None,
    ) -> ssl.SSLContext:
        key = ("server", tls, cert, validation)
        context = self._cache.get(key)
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            _versions(context, tls.min_version, tls.max_version)
            _load_chain(context, cert.certificate_chain or b"", cert.private_key or b"")
            if validation is not None and validation.trusted_ca:
                _load_ca(context, validation.trusted_ca)
                context.verify_mode = (
                    ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
                )
            if tls.alpn:
                context.set_alpn_protocols(list(tls.alpn))
            self._cache[key] = context
        return context

    def client(
        self,
        tls: model.UpstreamTls,
        cert: model.Secret | None,
        validation: model.Secret,
    ) -> ssl.SSLContext:
        key = ("client", tls.alpn, tls.min_version, tls.max_version, cert, validation)
        context = self._cache.get(key)
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            _versions(context, tls.min_version, tls.max_version)
            context.check_hostname = False  # identity is checked by SAN matchers instead
            context.verify_mode = ssl.CERT_REQUIRED
            _load_ca(context, validation.trusted_ca or b"")
            if cert is not None:
                _load_chain(context, cert.certificate_chain or b"", cert.private_key or b"")
            if tls.alpn:
                context.set_alpn_protocols(list(tls.alpn))
            self._cache[key] = context
        return context

    def retain(self, secrets: Iterable[model.Secret]) -> None:
        """Forget contexts built from secrets that are no longer current."""
        live = set(secrets)
        self._cache = {
            key: value
            for key, value in self._cache.items()
            if all(part in live for part in key if isinstance(part, model.Secret))
        }


def peer_sans(certificate: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """(type, value) SANs of a verified peer certificate from `getpeercert()`."""
    if not certificate:
        return ()
    return tuple(
        (kind, value)
        for kind, value in certificate.get("subjectAltName", ())
        if kind in ("URI", "DNS")
    )


def principal_names(certificate: dict[str, Any] | None) -> tuple[str, ...]:
    """What RBAC's principal_name matches: URI SANs, then DNS SANs, then the subject CN."""
    sans = peer_sans(certificate)
    names = [value for kind, value in sans if kind == "URI"]
    names.extend(value for kind, value in sans if kind == "DNS")
    if not names and certificate:
        for rdn in certificate.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    names.append(value)
    return tuple(names)


def sans_match(matchers: tuple[model.SanMatcher, ...], certificate: dict[str, Any] | None) -> bool:
    """True when no matcher is configured or some SAN satisfies some matcher."""
    if not matchers:
        return True
    sans = peer_sans(certificate)
    for matcher in matchers:
        for kind, value in sans:
            if (matcher.san_type == "any" or matcher.san_type == kind) and matcher.matcher.matches(
                value
            ):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# ClientHello sniffing (Envoy's tls_inspector)


@dataclass(frozen=True, slots=True)
class ClientHello:
    server_name: str
    alpn: tuple[str, ...]


NEED_MORE = "need-more"
NOT_TLS = "not-tls"


def parse_client_hello(data: bytes) -> ClientHello | str:
    """-> ClientHello, NEED_MORE (a TLS record is incomplete) or NOT_TLS."""
    if not data:
        return NEED_MORE
    if data[0] != 0x16:
        return NOT_TLS
    if len(data) < 5:
        return NEED_MORE
    if data[1] != 0x03:
        return NOT_TLS
    record_length = int.from_bytes(data[3:5], "big")
    if len(data) < 5 + record_length:
        return NEED_MORE if record_length <= 16384 + 2048 else NOT_TLS
    body = data[5 : 5 + record_length]
    try:
        return _parse_handshake(body)
    except (IndexError, ValueError):
        return NOT_TLS


def _parse_handshake(body: bytes) -> ClientHello | str:
    if body[0] != 0x01:  # client_hello
        return NOT_TLS
    length = int.from_bytes(body[1:4], "big")
    hello = body[4 : 4 + length]
    if len(hello) < length:
        return NEED_MORE  # a ClientHello spanning several records: rare; ask for more
    position = 2 + 32  # version, random
    position += 1 + hello[position]  # session id
    position += 2 + int.from_bytes(hello[position : position + 2], "big")  # cipher suites
    position += 1 + hello[position]  # compression methods
    server_name = ""
    alpn: list[str] = []
    if position + 2 > len(hello):
        return ClientHello("", ())
    end = position + 2 + int.from_bytes(hello[position : position + 2], "big")
    position += 2
    while position + 4 <= end:
        kind = int.from_bytes(hello[position : position + 2], "big")
        size = int.from_bytes(hello[position + 2 : position + 4], "big")
        extension = hello[position + 4 : position + 4 + size]
        position += 4 + size
        if kind == 0:  # server_name
            cursor = 2
            while cursor + 3 <= len(extension):
                name_type = extension[cursor]
                name_length = int.from_bytes(extension[cursor + 1 : cursor + 3], "big")
                if name_type == 0:
                    server_name = extension[cursor + 3 : cursor + 3 + name_length].decode(
                        "ascii", "replace"
                    )
                cursor += 3 + name_length
        elif kind == 16:  # application_layer_protocol_negotiation
            cursor = 2
            while cursor < len(extension):
                size = extension[cursor]
                alpn.append(extension[cursor + 1 : cursor + 1 + size].decode("ascii", "replace"))
                cursor += 1 + size
    return ClientHello(server_name.lower(), tuple(alpn))
