"""The errors of the Kubernetes client, each saying whose fault it is.

One idea: lightkube and its HTTP library raise many kinds of exceptions; `osm.kube` turns
every one into one of these, at its boundary: the server answered with an error
(`ApiError`, with the Status it sent) or with something unreadable (`BadResponse`), the
server could not be reached or the connection broke (`ConnectionFailed`), or the local
configuration is unusable (`KubeConfigError`). A call that the API would refuse anyway (an
unknown kind, a namespaced kind without a namespace) raises ValueError before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any


class KubeError(Exception):
    """Base class of the client's errors; the message is one line, fit for a user."""


class KubeConfigError(KubeError):
    """No usable kubeconfig or in-cluster configuration (the local side's fault)."""


class BadResponse(KubeError):
    """The server answered with something that is not the shape the API promises (the
    server's fault): a list without ``items``, an object that is not JSON."""


class ConnectionFailed(KubeError):
    """The API server could not be reached, refused the TLS handshake, or the connection
    broke mid-request (the network's or the server's fault; worth retrying)."""


@dataclass(frozen=True, slots=True)
class Cause:
    """One entry of a Status' ``details.causes``: which field, and what is wrong with it."""

    field: str
    message: str
    reason: str = ""


class ApiError(KubeError):
    """The API server answered with an error: the HTTP code, the Status' reason (``NotFound``,
    ``Conflict``, ``Expired``, ...), its message and its causes."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        causes: tuple[Cause, ...] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{reason or code}: {message}" if message else f"{reason or code}")
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes
        self.details: Mapping[str, Any] = details or {}

    @classmethod
    def from_status(cls, status: Mapping[str, Any], code: int = 0) -> ApiError:
        """From a Status object (``code`` stands in when the Status has none)."""
        raw_details = status.get("details")
        details: Mapping[str, Any] = raw_details if isinstance(raw_details, Mapping) else {}
        causes = tuple(
            Cause(
                field=str(cause.get("field") or ""),
                message=str(cause.get("message") or ""),
                reason=str(cause.get("reason") or ""),
            )
            for cause in details.get("causes") or ()
            if isinstance(cause, Mapping)
        )
        return cls(
            code=int(status.get("code") or code),
            reason=str(status.get("reason") or ""),
            message=str(status.get("message") or ""),
            causes=causes,
            details=details,
        )

    @property
    def expired(self) -> bool:
        """410 Gone: the resourceVersion asked for is older than the server keeps; re-list."""
        return self.code == HTTPStatus.GONE
