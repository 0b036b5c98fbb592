"""SDS: a Secret -> `model.Secret`: a certificate chain with its key, or a trusted CA with
SAN matchers.

The one idea: data sources are read here (inline bytes or strings, or a file), so the
runtime gets PEM bytes and never touches the file system to build a TLS context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from osm.proxy import model
from osm.proxy.translate import common
from osm.proxy.translate.walker import Walker


def _data_source(walker: Walker, message: Any, path: str) -> bytes:
    walker.check(message, path, ("inline_bytes", "inline_string", "filename"))
    which = message.WhichOneof("specifier")
    if which == "inline_bytes":
        return bytes(message.inline_bytes)
    if which == "inline_string":
        return str(message.inline_string).encode()
    if which == "filename":
        try:
            return Path(message.filename).read_bytes()
        except OSError as error:
            raise walker.fail(f"{path}.filename", f"cannot read: {error}") from None
    raise walker.fail(path, "empty data source")


def translate(message: secret_pb2.Secret) -> model.Secret:
    """Secret -> Secret model (tls_certificate or validation_context); raises ConfigError."""
    walker = Walker("Secret", message.name)
    walker.check(message, "", ("name", "tls_certificate", "validation_context"))
    which = message.WhichOneof("type")
    if which == "tls_certificate":
        cert = message.tls_certificate
        walker.check(cert, "tls_certificate", ("certificate_chain", "private_key"))
        if not cert.HasField("certificate_chain") or not cert.HasField("private_key"):
            raise walker.fail("tls_certificate", "certificate_chain and private_key are required")
        return model.Secret(
            message.name,
            certificate_chain=_data_source(
                walker, cert.certificate_chain, "tls_certificate.certificate_chain"
            ),
            private_key=_data_source(walker, cert.private_key, "tls_certificate.private_key"),
        )
    if which == "validation_context":
        context = message.validation_context
        walker.check(
            context,
            "validation_context",
            ("trusted_ca", "match_subject_alt_names", "match_typed_subject_alt_names"),
        )
        if not context.HasField("trusted_ca"):
            raise walker.fail("validation_context.trusted_ca", "a trusted CA is required")
        return model.Secret(
            message.name,
            trusted_ca=_data_source(walker, context.trusted_ca, "validation_context.trusted_ca"),
            san_matchers=common.san_matchers(walker, context, "validation_context"),
        )
    raise walker.fail("", "a secret type is required (tls_certificate, validation_context)")
