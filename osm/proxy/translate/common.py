"""Shapes several translators read: string, regex, header and SAN matchers, and the
common TLS context of listeners' and clusters' transport sockets.

The one idea: one function per recurring Envoy shape, so a message is accepted or refused
the same way wherever it appears (`osm.xds.common` writes these shapes, this reads them).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from envoy.extensions.transport_sockets.tls.v3 import common_pb2

from osm.proxy import model
from osm.proxy.translate.walker import Walker


def string_match(walker: Walker, message: Any, path: str) -> model.StringMatch:
    walker.check(
        message, path, ("exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
    )
    which = message.WhichOneof("match_pattern")
    ignore_case = bool(message.ignore_case)
    if which == "safe_regex":
        if ignore_case:
            raise walker.fail(f"{path}.ignore_case", "not supported with safe_regex")
        return model.StringMatch(
            "regex", "", False, regex_matcher(walker, message.safe_regex, path)
        )
    if which is None:
        raise walker.fail(path, "a match pattern is required (exact, prefix, suffix, ...)")
    kind: Literal["exact", "prefix", "suffix", "contains"] = which
    return model.StringMatch(kind, getattr(message, which), ignore_case)


def regex_matcher(walker: Walker, message: Any, path: str) -> re.Pattern[str]:
    walker.check(message, f"{path}.safe_regex", ("regex", "google_re2"))
    if message.HasField("google_re2"):
        walker.check(message.google_re2, f"{path}.safe_regex.google_re2", ())
    return walker.regex(message.regex, f"{path}.safe_regex.regex")


def header_match(walker: Walker, message: Any, path: str) -> model.HeaderMatch:
    walker.check(
        message,
        path,
        (
            "name",
            "exact_match",
            "safe_regex_match",
            "present_match",
            "string_match",
            "invert_match",
        ),
    )
    name = message.name.lower()
    invert = bool(message.invert_match)
    which = message.WhichOneof("header_match_specifier")
    if which == "exact_match":
        return model.HeaderMatch(
            name, "match", model.StringMatch("exact", message.exact_match), invert=invert
        )
    if which == "safe_regex_match":
        pattern = regex_matcher(walker, message.safe_regex_match, f"{path}.safe_regex_match")
        return model.HeaderMatch(
            name, "match", model.StringMatch("regex", "", False, pattern), invert=invert
        )
    if which == "string_match":
        matcher = string_match(walker, message.string_match, f"{path}.string_match")
        return model.HeaderMatch(name, "match", matcher, invert=invert)
    if which == "present_match":
        return model.HeaderMatch(name, "present", None, bool(message.present_match), invert)
    # Envoy: no specifier means "the header is present".
    return model.HeaderMatch(name, "present", None, True, invert)


def san_matchers(walker: Walker, context: Any, path: str) -> tuple[model.SanMatcher, ...]:
    matchers: list[model.SanMatcher] = []
    for index, matcher in enumerate(context.match_subject_alt_names):
        where = f"{path}.match_subject_alt_names[{index}]"
        matchers.append(model.SanMatcher("any", string_match(walker, matcher, where)))
    for index, typed in enumerate(context.match_typed_subject_alt_names):
        where = f"{path}.match_typed_subject_alt_names[{index}]"
        walker.check(typed, where, ("san_type", "matcher"))
        san_type = common_pb2.SubjectAltNameMatcher.SanType.Name(typed.san_type)
        if san_type not in ("URI", "DNS"):
            raise walker.fail(f"{where}.san_type", f"{san_type} not supported (URI, DNS)")
        matchers.append(
            model.SanMatcher(san_type, string_match(walker, typed.matcher, f"{where}.matcher"))
        )
    return tuple(matchers)


def tls_context(walker: Walker, message: Any, path: str) -> tuple[str | None, str | None, Any]:
    """-> (certificate secret, validation secret, default validation context or None)."""
    walker.check(
        message,
        path,
        (
            "tls_certificate_sds_secret_configs",
            "validation_context_sds_secret_config",
            "combined_validation_context",
            "alpn_protocols",
            "tls_params",
        ),
    )
    if message.HasField("tls_params"):
        walker.check(
            message.tls_params,
            f"{path}.tls_params",
            ("tls_minimum_protocol_version", "tls_maximum_protocol_version"),
        )
    cert: str | None = None
    configs = message.tls_certificate_sds_secret_configs
    if len(configs) > 1:
        raise walker.fail(f"{path}.tls_certificate_sds_secret_configs", "at most one is supported")
    for index, sds in enumerate(configs):
        where = f"{path}.tls_certificate_sds_secret_configs[{index}]"
        walker.check(sds, where, ("name", "sds_config"))
        walker.config_source(sds.sds_config, f"{where}.sds_config")
        cert = sds.name
    validation: str | None = None
    default_context: Any = None
    which = message.WhichOneof("validation_context_type")
    if which == "validation_context_sds_secret_config":
        sds = message.validation_context_sds_secret_config
        where = f"{path}.validation_context_sds_secret_config"
        walker.check(sds, where, ("name", "sds_config"))
        walker.config_source(sds.sds_config, f"{where}.sds_config")
        validation = sds.name
    elif which == "combined_validation_context":
        combined = message.combined_validation_context
        where = f"{path}.combined_validation_context"
        walker.check(
            combined, where, ("default_validation_context", "validation_context_sds_secret_config")
        )
        default_context = combined.default_validation_context
        walker.check(
            default_context,
            f"{where}.default_validation_context",
            ("match_subject_alt_names", "match_typed_subject_alt_names"),
        )
        sds = combined.validation_context_sds_secret_config
        walker.check(sds, f"{where}.validation_context_sds_secret_config", ("name", "sds_config"))
        walker.config_source(sds.sds_config, f"{where}.validation_context_sds_secret_config")
        validation = sds.name or None
    return cert, validation, default_context


_TLS_VERSIONS = {0: "", 1: "TLSv1_0", 2: "TLSv1_1", 3: "TLSv1_2", 4: "TLSv1_3"}


def tls_versions(walker: Walker, common: Any, path: str) -> tuple[str, str]:
    """(minimum, maximum) protocol versions; "" = the ssl module's default."""
    params = common.tls_params
    low = _TLS_VERSIONS.get(params.tls_minimum_protocol_version)
    high = _TLS_VERSIONS.get(params.tls_maximum_protocol_version)
    if low is None or high is None:
        raise walker.fail(f"{path}.tls_params", "unknown TLS protocol version")
    if low in ("TLSv1_0", "TLSv1_1"):
        raise walker.fail(
            f"{path}.tls_params.tls_minimum_protocol_version", "TLS 1.2 or later is required"
        )
    return low, high
