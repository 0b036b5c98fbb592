"""Kubernetes `Status` objects: every error the API answers, as kubectl expects them.

kubectl prints ``Error from server (<reason>): <message>``; for 422 Invalid it rebuilds
the text from ``details.kind``, ``details.name`` and each cause's ``field`` and
``message``, so the model's field paths (`osm.model.errors.Problem.path`) become causes.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from osm.model.errors import Problem

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
    507: "InsufficientStorage",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Details:
    """What the failure is about: the object and the causes (field, message)."""

    kind: str = ""
    name: str = ""
    group: str = ""
    causes: tuple[tuple[str, str, str], ...] = ()
    """(reason, field, message) triples, e.g. ("FieldValueInvalid", "spec.x", "...")."""


class ApiError(Exception):
    """An error answer: HTTP ``code``, Kubernetes ``reason`` and a message for the user."""

    def __init__(
        self, code: int, message: str, *, reason: str = "", details: Details | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        return status(self.code, self.message, reason=self.reason, details=self.details)


def status(
    code: int, message: str, *, reason: str = "", details: Details | None = None
) -> dict[str, Any]:
    """A ``v1 Status`` (Failure unless the code is 2xx)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if 200 <= code < 300 else "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, ""),
        "code": code,
    }
    if details is not None:
        found: dict[str, Any] = {}
        if details.name:
            found["name"] = details.name
        if details.group:
            found["group"] = details.group
        if details.kind:
            found["kind"] = details.kind
        if details.causes:
            found["causes"] = [
                {"reason": reason_, "message": message_, "field": field}
                for reason_, field, message_ in details.causes
            ]
        body["details"] = found
    if body["reason"] == "":
        del body["reason"]
    return body


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        404,
        f'{resource} "{name}" not found',
        details=Details(kind=plural, name=name, group=group),
    )


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409,
        f'{resource} "{name}" already exists',
        reason="AlreadyExists",
        details=Details(kind=plural, name=name, group=group),
    )


def conflict(plural: str, name: str, group: str = "") -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details=Details(kind=plural, name=name, group=group),
    )


def invalid(kind: str, name: str, group: str, problems: Sequence[Problem]) -> ApiError:
    """422: each problem a cause with its field path, as kube-apiserver's validation. A
    problem of another object (a Pod refused for its Namespace's annotation) is named in
    the message: the field path is that object's."""

    def text_of(problem: Problem) -> str:
        where = f"{problem.path}: " if problem.path else ""
        other = problem.kind and (problem.kind, problem.name) != (kind, name)
        if other:
            scope = (
                f"{problem.namespace}/" if problem.namespace and problem.kind != "Namespace" else ""
            )
            where = f"{problem.kind} {scope}{problem.name}: {where}"
        return where + problem.message

    causes = tuple(("FieldValueInvalid", p.path, p.message) for p in problems)
    text = "; ".join(text_of(p) for p in problems)
    return ApiError(
        422,
        f'{kind}{"." + group if group else ""} "{name}" is invalid: {text}',
        details=Details(kind=kind, name=name, group=group, causes=causes),
    )


def insufficient_storage(verb: str, kind: str, namespace: str, name: str, full: str) -> ApiError:
    """507: a write refused because a filesystem it needs is full; ``full`` says which
    (``the store's filesystem is full (<db path>)``). Nothing of the write was stored, so
    the same request succeeds once space is freed. ``name`` empty: a collection."""
    where = f"{namespace}/{name or '*'}" if namespace else name or "*"
    return ApiError(
        507,
        f"{verb} {kind} {where}: {full}: nothing was written; free space and retry",
        details=Details(kind=kind, name=name),
    )
