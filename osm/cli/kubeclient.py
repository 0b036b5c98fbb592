"""`osm.kube.client.KubeClient` plus what the CLI asks of the API that it lacks: server
dry runs of writes, and a Pod's container log.

One idea: these are the same requests kubectl sends (``?dryRun=All`` on a create or a
replace; ``GET .../pods/NAME/log`` with ``container``, ``tailLines`` and ``follow``), made
through the same lightkube client and the same error translation as `KubeClient`, so a
command sees only `osm.kube.errors`. They lean on `osm.kube.client`'s internals (its
lightkube client and its module helpers) because they belong there; they move into
`KubeClient` when it next changes, and this module then goes away.

Logs are read as bytes, as the server sends them (a container may write anything), not
through lightkube's ``log``, which decodes lines and cannot read the Status of a
followed stream that fails.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx2

from osm.kube import client as kube_client
from osm.kube.client import KubeClient, Manifest
from osm.kube.errors import ApiError

LOG_CHUNK = 64 * 1024
FOLLOW_TIMEOUT = httpx2.Timeout(10.0, read=None)
"""A followed log waits for output as long as it takes; connecting does not."""


class CliKubeClient(KubeClient):
    """A `KubeClient` whose writes can be server dry runs and which reads container logs."""

    async def create(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Manifest:
        """Create `obj`; with `dry_run`, the server admits and validates it and answers
        what it would store, storing nothing."""
        resource = kube_client._resource(_text(obj, "kind"), _text(obj, "apiVersion"))
        call = self._client.create(resource.from_dict(copy.deepcopy(dict(obj))), dry_run=dry_run)
        return kube_client._plain(await self._call(call))

    async def replace(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Manifest:
        """Replace the object with `obj` (which carries the resourceVersion it was read at,
        see `KubeClient.replace`); with `dry_run`, nothing is stored."""
        if not dry_run:
            return await super().replace(obj)
        resource = kube_client._resource(_text(obj, "kind"), _text(obj, "apiVersion"))
        call = self._client.replace(resource.from_dict(copy.deepcopy(dict(obj))), dry_run=True)
        return kube_client._plain(await self._call(call))

    async def logs(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """The container's output (the Pod's only or default container when None), in
        chunks as the server sends them; with `follow`, until the Pod goes or the caller
        stops. A missing Pod or container raises `ApiError` before the first chunk."""
        http = self._http()
        params = {
            "container": container or None,
            "tailLines": tail_lines,
            "follow": "true" if follow else None,
        }
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/log"
        request = http.build_request(
            "GET",
            path,
            params={key: value for key, value in params.items() if value is not None},
            timeout=FOLLOW_TIMEOUT if follow else httpx2.USE_CLIENT_DEFAULT,
        )
        with kube_client._translated(self.server):
            response = await http.send(request, stream=True)
        try:
            if response.is_error:
                with kube_client._translated(self.server):
                    await response.aread()
                raise _log_error(response)
            with kube_client._translated(self.server):
                async for chunk in response.aiter_bytes(LOG_CHUNK):
                    yield chunk
        finally:
            await response.aclose()

    def _http(self) -> httpx2.AsyncClient:
        """The HTTP client under lightkube's: the kubeconfig's server, CA and credentials."""
        http = self._client._client._client
        assert isinstance(http, httpx2.AsyncClient)
        return http


def _text(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"the object has no {name}")
    return value


def _log_error(response: httpx2.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and body.get("kind") == "Status":
        return ApiError.from_status(body, response.status_code)
    try:
        reason = HTTPStatus(response.status_code).phrase
    except ValueError:
        reason = ""
    return ApiError(response.status_code, reason, response.text.strip())
