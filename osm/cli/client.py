"""A small synchronous client for the controller's HTTP API (stdlib only).

Errors come back as `ApiError` carrying the server's reason and problems, or a message
that says how to reach a controller when none answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from osm.model.errors import Problem


class ApiError(Exception):
    def __init__(
        self, message: str, *, status: int = 0, reason: str = "", problems: Sequence[Problem] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.problems = tuple(problems)


class Client:
    def __init__(self, server: str, *, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout

    # -- calls ---------------------------------------------------------------------------
    def apply(
        self, objects: Sequence[dict[str, Any]], *, dry_run: bool = False, source: str = ""
    ) -> dict[str, Any]:
        return self._call(
            "POST", "/api/v1/apply", {"objects": list(objects), "dryRun": dry_run, "source": source}
        )

    def delete(
        self, refs: Sequence[dict[str, str]], *, ignore_not_found: bool = False
    ) -> dict[str, Any]:
        return self._call(
            "POST", "/api/v1/delete", {"objects": list(refs), "ignoreNotFound": ignore_not_found}
        )

    def list(
        self, kind: str, *, namespace: str | None = None, selector: str | None = None
    ) -> dict[str, Any]:
        query = {k: v for k, v in (("namespace", namespace), ("labelSelector", selector)) if v}
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._call("GET", f"/api/v1/objects/{urllib.parse.quote(kind)}{suffix}")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        parts = (kind, namespace or "_", name)
        return self._call(
            "GET", "/api/v1/objects/" + "/".join(urllib.parse.quote(p) for p in parts)
        )

    def watch(
        self, *, since: int | None = None, kinds: Sequence[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """Yields events until the server closes the stream (BOOKMARKs included)."""
        query = {}
        if since is not None:
            query["since"] = str(since)
        if kinds:
            query["kinds"] = ",".join(kinds)
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        with self._open("GET", f"/api/v1/watch{suffix}", None, timeout=None) as response:
            for line in response:
                if line.strip():
                    yield json.loads(line)

    def proxies(self) -> Sequence[dict[str, Any]]:
        """The proxies connected to the controller's xDS server (`/api/v1/proxies`)."""
        found = self._call("GET", "/api/v1/proxies").get("proxies", [])
        return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    # -- plumbing ------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        with self._open(method, path, body, timeout=self.timeout) as response:
            data = json.loads(response.read() or b"{}")
        assert isinstance(data, dict)
        return data

    def _open(self, method: str, path: str, body: Any, *, timeout: float | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            raise _api_error(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(
                f"cannot reach the controller at {self.server}: {reason} (is `osm controller`"
                " running? point at another one with --server or OSM_SERVER)"
            ) from None


def _api_error(error: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(error.read() or b"{}")
    except json.JSONDecodeError:
        body = {}
    problems = [
        Problem(**{k: v for k, v in p.items() if k in Problem.__slots__})
        for p in body.get("problems", [])
    ]
    return ApiError(
        body.get("error") or f"HTTP {error.code}",
        status=error.code,
        reason=body.get("reason", ""),
        problems=problems,
    )
