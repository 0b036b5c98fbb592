"""Secrets and ConfigMaps as the API server stores them: data decoded from base64,
stringData merged over data, keys that can be file names, at most 1 MiB.

Valid rows are (manifest, the part looked at, its value); invalid rows are (manifest,
field path, fragment of the message), each with one mistake and one error.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.model import model_examples as ex

Getter = Callable[[Any], object]

SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop}\n"
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n"
MIB = 1024 * 1024


def row(manifest: str, get: Getter, expected: object, id: str) -> Any:
    return pytest.param(manifest, get, expected, id=id)


VALID = [
    row(
        ex.SECRET,
        lambda r: (r.type, dict(r.data), r.immutable),
        ("Opaque", {"token": b"plain", "tls.crt": b"-----BEGIN", "mode": b"debug"}, False),
        "data is decoded and stringData is merged over it",
    ),
    row(
        SECRET,
        lambda r: (r.type, dict(r.data)),
        ("Opaque", {}),
        "a Secret without data is Opaque and empty",
    ),
    row(
        SECRET + 'type: kubernetes.io/tls\nimmutable: true\ndata: {a: "aGVs\\nbG8="}',
        lambda r: (r.type, dict(r.data), r.immutable),
        ("kubernetes.io/tls", {"a": b"hello"}, True),
        "base64 may be broken into lines, as Go decodes it",
    ),
    row(
        SECRET + f"data: {{big: {base64.b64encode(bytes(MIB)).decode()}}}",
        lambda r: len(r.data["big"]),
        MIB,
        "a Secret holds up to 1 MiB",
    ),
    row(
        ex.CONFIG_MAP,
        lambda r: (dict(r.data), dict(r.binary_data)),
        ({"web.yaml": "port: 8080\n", "mode": "fast"}, {"logo.png": b"\x89PNG\r\n"}),
        "a ConfigMap keeps text and binary data apart",
    ),
    row(
        ex.CONFIG_MAP,
        lambda r: r.files(),
        {"web.yaml": b"port: 8080\n", "mode": b"fast", "logo.png": b"\x89PNG\r\n"},
        "a ConfigMap's files are its text as UTF-8 and its bytes",
    ),
]


@pytest.mark.parametrize(("manifest", "get", "expected"), VALID)
def test_a_valid_object_parses_to(manifest: str, get: Getter, expected: object) -> None:
    assert get(ex.parse_valid(manifest)) == expected


def bad(manifest: str, path: str, fragment: str, id: str) -> Any:
    return pytest.param(manifest, path, fragment, id=id)


INVALID = [
    bad(
        SECRET + "data: {token: s3cr3t!}",
        "data.token",
        "is not valid base64",
        "data is base64",
    ),
    bad(
        SECRET + "data: {token: czNjcjN0}\nstringData: {token: 7}",
        "stringData.token",
        "must be a string, not an integer",
        "stringData is text",
    ),
    bad(
        SECRET + "data: {token: 7}",
        "data.token",
        "must be a base64 string, not an integer",
        "a data value is a string",
    ),
    bad(
        SECRET + "data: [a]",
        "data",
        "must be an object of base64 strings, not a list",
        "data is an object",
    ),
    bad(
        SECRET + "data: {a/b: czNjcjN0}",
        "data.a/b",
        '"a/b" is not a valid key: use at most 253 letters, digits, "-", "_" and "."',
        "a key is a file name",
    ),
    bad(
        SECRET + "stringData: {..data: x}",
        "stringData...data",
        "is not a valid key",
        "a key does not start with ..",
    ),
    bad(
        SECRET + "stringData: {.: x}",
        "stringData..",
        "is not a valid key",
        "a key is not .",
    ),
    bad(
        SECRET + f"data: {{big: {base64.b64encode(bytes(MIB)).decode()}}}\nstringData: {{a: b}}",
        "data",
        f"the values add up to {MIB + 1} bytes; a Secret holds at most 1 MiB",
        "a Secret holds at most 1 MiB, stringData included",
    ),
    bad(
        CONFIG_MAP + "data: {a: x}\nbinaryData: {a: eA==}",
        "data.a",
        "is in binaryData too; a key is in one of them",
        "a ConfigMap key is text or binary",
    ),
    bad(
        CONFIG_MAP + "data: {port: 8080}",
        "data.port",
        "must be a string, not an integer (quote numbers and booleans)",
        "ConfigMap data is text",
    ),
    bad(
        CONFIG_MAP + "binaryData: {logo: '***'}",
        "binaryData.logo",
        "is not valid base64",
        "binaryData is base64",
    ),
    bad(
        CONFIG_MAP + "data: {a b: x}",
        "data.a b",
        '"a b" is not a valid key',
        "a ConfigMap key is a file name",
    ),
    bad(
        CONFIG_MAP + f"data: {{big: {'x' * MIB}}}\nbinaryData: {{small: eA==}}",
        "data",
        "a ConfigMap holds at most 1 MiB",
        "a ConfigMap holds at most 1 MiB, binaryData included",
    ),
]


@pytest.mark.parametrize(("manifest", "path", "fragment"), INVALID)
def test_an_invalid_object_gives_one_error(manifest: str, path: str, fragment: str) -> None:
    resource, problems = ex.parse(manifest)
    assert resource is None
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.path, fragment in p.message) for p in errors] == [(path, True)], "\n".join(
        f"{p.path!r}: {p.message}" for p in errors
    )
