"""AdmissionReview v1, the protocol between an API server and its admission webhooks, as
values: bytes in, a typed `Request` out; a `Response` in, bytes out.

One idea: decoding never fails with an exception the server would turn into a 500. A body
that is not an AdmissionReview v1 request (not JSON, another apiVersion or kind, no uid,
a field of the wrong type) is `Malformed`, which carries the uid when it could be read,
and `malformed` answers it as an AdmissionReview with ``allowed: false`` and the reason:
the API server then refuses the object with that message (the request's fault, said so)
instead of a connection error. Nothing here does I/O.

The wire format (``k8s.io/api/admission/v1``): the request's ``kind`` and ``resource``
are group/version/kind and group/version/resource objects; ``object`` and ``oldObject``
are the objects (null on DELETE and CREATE respectively); ``dryRun`` is true when the API
stores nothing (a webhook with ``sideEffects: NoneOnDryRun`` must then make none). The
response echoes the uid; a mutation is an RFC 6902 patch, base64-encoded, with
``patchType: JSONPatch``; a refusal is ``allowed: false`` with a Status (code, message).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")

FORBIDDEN = 403
INVALID = 422
BAD_REQUEST = 400
INTERNAL_ERROR = 500
REASONS = {
    BAD_REQUEST: "BadRequest",
    FORBIDDEN: "Forbidden",
    INVALID: "Invalid",
    INTERNAL_ERROR: "InternalError",
}
"""The Status reason kube-apiserver gives each code."""


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    group: str
    version: str
    resource: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Who sent the write the API server is admitting."""

    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """One admission request. `object` and `old_object` are the JSON objects as sent (None
    where the operation has none); `namespace` is the request's (a Pod created from a
    Deployment has no ``metadata.namespace`` yet; this has it)."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    operation: str
    namespace: str = ""
    name: str = ""
    sub_resource: str = ""
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    dry_run: bool = False
    user_info: UserInfo = field(default_factory=UserInfo)


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to the request `uid`: allowed or not; a refusal's `code` and `message`;
    an allowed mutation's RFC 6902 `patch` (None: no mutation); `warnings` for the client
    (kubectl prints them)."""

    uid: str
    allowed: bool
    code: int = 0
    message: str = ""
    patch: list[dict[str, Any]] | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The AdmissionReview v1 that carries this response."""
        response: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if not self.allowed or self.message:
            code = self.code or FORBIDDEN
            status: dict[str, Any] = {"code": code, "message": self.message}
            if code in REASONS:
                status["reason"] = REASONS[code]
            response["status"] = status
        if self.patch is not None:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(self.patch).encode()).decode()
        if self.warnings:
            response["warnings"] = list(self.warnings)
        return {"apiVersion": API_VERSION, "kind": KIND, "response": response}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


class Malformed(ValueError):
    """A body that is not an AdmissionReview v1 request (the sender's fault); `uid` is the
    request's uid when it could be read, else ""."""

    def __init__(self, message: str, uid: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.uid = uid


# -- responses ------------------------------------------------------------------------------
def allowed(request: Request, warnings: Sequence[str] = ()) -> Response:
    return Response(request.uid, True, warnings=tuple(warnings))


def patched(
    request: Request, operations: Sequence[Mapping[str, Any]], warnings: Sequence[str] = ()
) -> Response:
    """Allowed with the mutation `operations` (an empty patch is no mutation)."""
    patch = [dict(operation) for operation in operations]
    return Response(request.uid, True, patch=patch or None, warnings=tuple(warnings))


def denied(
    request: Request, message: str, code: int = FORBIDDEN, warnings: Sequence[str] = ()
) -> Response:
    return Response(request.uid, False, code, message, warnings=tuple(warnings))


def malformed(error: Malformed) -> Response:
    """The answer to a body that could not be decoded: refused, the request's fault."""
    return Response(
        error.uid, False, BAD_REQUEST, f"not an AdmissionReview v1 request: {error.message}"
    )


# -- decoding -------------------------------------------------------------------------------
def decode(body: bytes) -> Request:
    """The request in an AdmissionReview v1 body; raises `Malformed` saying what is wrong."""
    if not body.strip():
        raise Malformed("the body is empty")
    try:
        review = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise Malformed(f"the body is not JSON ({error})") from None
    if not isinstance(review, dict):
        raise Malformed(f"the body is a JSON {_type(review)}, not an object")
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    uid = uid if isinstance(uid, str) else ""
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise Malformed(
            f"apiVersion {review.get('apiVersion')!r} kind {review.get('kind')!r}; this "
            f"webhook speaks {API_VERSION} {KIND} (admissionReviewVersions: [v1])",
            uid,
        )
    if not isinstance(request, dict):
        raise Malformed("request: missing or not an object", uid)
    fields = _Fields(request, uid)
    if not uid:
        raise Malformed("request.uid: missing or empty (the response must echo it)")
    operation = fields.string("operation", required=True)
    if operation not in OPERATIONS:
        raise Malformed(f"request.operation: {operation!r} is not one of {OPERATIONS}", uid)
    kind = _Fields(fields.mapping("kind", required=True), uid, "kind")
    resource = _Fields(fields.mapping("resource", required=True), uid, "resource")
    user = _Fields(fields.mapping("userInfo"), uid, "userInfo")
    groups = user.data.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise Malformed("request.userInfo.groups: not a list of strings", uid)
    return Request(
        uid=uid,
        kind=GroupVersionKind(
            kind.string("group"),
            kind.string("version", required=True),
            kind.string("kind", required=True),
        ),
        resource=GroupVersionResource(
            resource.string("group"),
            resource.string("version", required=True),
            resource.string("resource", required=True),
        ),
        operation=operation,
        namespace=fields.string("namespace"),
        name=fields.string("name"),
        sub_resource=fields.string("subResource"),
        object=fields.optional_object("object"),
        old_object=fields.optional_object("oldObject"),
        dry_run=fields.boolean("dryRun"),
        user_info=UserInfo(user.string("username"), user.string("uid"), tuple(groups)),
    )


class _Fields:
    """Typed reads of one object of the request; a wrong type is `Malformed`, by path."""

    def __init__(self, data: dict[str, Any], uid: str, path: str = "") -> None:
        self.data, self.uid = data, uid
        self.prefix = f"request.{path}." if path else "request."

    def _fail(self, key: str, what: str) -> Malformed:
        return Malformed(f"{self.prefix}{key}: {what}", self.uid)

    def string(self, key: str, *, required: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._fail(key, "missing")
            return ""
        if not isinstance(value, str):
            raise self._fail(key, f"a {_type(value)}, expected a string")
        if required and not value:
            raise self._fail(key, "empty")
        return value

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._fail(key, f"a {_type(value)}, expected true or false")
        return value

    def mapping(self, key: str, *, required: bool = False) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self._fail(key, "missing" if value is None else f"a {_type(value)}")
        return value

    def optional_object(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._fail(key, f"a {_type(value)}, expected an object or null")
        return value


def _type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__
    )
