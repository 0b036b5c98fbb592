"""The Kubernetes client of every process: lightkube's AsyncClient, speaking plain dicts.

One idea: callers name a kind the model knows (``"Pod"``, ``"TrafficSplit"``; any name
`osm.model.kinds.lookup` accepts) and get and give plain ``dict`` manifests, never
lightkube's typed models; every lightkube or HTTP exception leaves this module as one of
`osm.kube.errors`.

How the dicts are kept plain: each kind is a lightkube *generic* resource (a ``dict``
subclass), made once per process per apiVersion and kind through
``create_namespaced_resource``/``create_global_resource``, and found again in lightkube's
registry afterwards (lightkube refuses to create a core-group kind twice). If something else
registered a typed model for the kind first (``lightkube.codecs`` does, on first use), that
class is used and its objects are converted with ``to_dict()``, so callers see dicts either
way.

Where this leans on lightkube's internals: ``list`` and ``watch`` build their request with
``AsyncClient._client.prepare_request``, because lightkube's public methods take selectors
only as mappings (``-l`` strings such as ``app=a,tier!=b`` are what callers have) and its
``watch`` cannot ask for bookmarks (``allowWatchBookmarks``). Both then run through
lightkube's own pagination (``limit``/``continue``) and watch loop, which reconnects from the
last resourceVersion seen (bookmarks included) when the server ends a watch normally.

Concurrency: one `KubeClient` may serve any number of tasks at once (one HTTP connection
pool). Environment proxies (``HTTPS_PROXY``) are ignored: local mode's API is on loopback.
"""

from __future__ import annotations

import copy
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx2
import lightkube
import msgspec
import yaml
from lightkube.core.exceptions import NotReadyError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.types import PatchType, on_error_raise

from osm.kube.errors import ApiError, BadResponse, ConnectionFailed, KubeConfigError, KubeError
from osm.model import kinds

Manifest = dict[str, Any]
PatchKind = Literal["merge", "json", "strategic"]
PATCH_TYPES: Mapping[str, PatchType] = {
    "merge": PatchType.MERGE,
    "json": PatchType.JSON,
    "strategic": PatchType.STRATEGIC,
}
DEFAULT_PAGE_SIZE = 500
"""Objects per list request, as kubectl asks."""
LOG_CHUNK = 64 * 1024
FOLLOW_TIMEOUT = httpx2.Timeout(10.0, read=None)
"""A followed log waits for output as long as it takes; connecting does not."""


class KubeClient:
    """An API client for the kinds of `osm.model.kinds`. Create it with `from_kubeconfig`
    (or around a configured ``lightkube.AsyncClient``); `close` it when done."""

    def __init__(self, client: lightkube.AsyncClient) -> None:
        self._client = client

    @classmethod
    def from_kubeconfig(
        cls, path: Path | None = None, *, context: str | None = None, timeout: float = 10.0
    ) -> KubeClient:
        """A client configured by the kubeconfig at `path` (its current context, or
        `context`), or by the in-cluster service account when `path` is None (see
        `osm.kube.config.find_kubeconfig`). Raise `KubeConfigError` if neither works."""
        where = str(path) if path is not None else "the in-cluster configuration"
        try:
            if path is not None:
                config = lightkube.KubeConfig.from_file(path)
            else:
                config = lightkube.KubeConfig.from_service_account()
            single = config.get(context)
        except lightkube.ConfigError as error:
            raise KubeConfigError(f"{where}: {error}") from None
        except (
            yaml.YAMLError,
            OSError,
            ValueError,
            LookupError,
            TypeError,
            AttributeError,
        ) as error:
            # Not YAML, not shaped like a kubeconfig, or a missing KUBERNETES_SERVICE_HOST.
            raise KubeConfigError(
                f"{where}: not usable ({type(error).__name__}: {error})"
            ) from None
        if single is None or single.user is None:  # lightkube asserts that a user is set
            raise KubeConfigError(f"{where}: the context names no user (no credentials)")
        try:
            return cls(
                lightkube.AsyncClient(
                    config=single, timeout=httpx2.Timeout(timeout), trust_env=False
                )
            )
        except lightkube.ConfigError as error:
            problem = str(error)
        except (OSError, ValueError) as error:  # unreadable embedded certificates or keys
            problem = f"unusable credentials ({error})"
            # lightkube's frames hold the temporary files it wrote the embedded key to:
            # let them go now, not whenever the garbage collector finds this traceback.
            error.__traceback__ = None
        raise KubeConfigError(f"{where}: {problem}")

    @property
    def server(self) -> str:
        """The API server's URL."""
        return str(self._client.config.cluster.server)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- one object ------------------------------------------------------------------------
    async def get(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> Manifest:
        """The object; `ApiError` 404 if it does not exist."""
        resource, scope = _resource(kind, api_version), _scope(kind, namespace)
        return _plain(await self._call(self._client.get(resource, name, namespace=scope)))

    async def create(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Manifest:
        """Create `obj` (its kind and apiVersion say where); the object as stored. With
        `dry_run` (``?dryRun=All``) the server admits and validates it and answers what it
        would store, storing nothing."""
        resource = _resource(_field(obj, "kind"), _field(obj, "apiVersion"))
        call = self._client.create(resource.from_dict(_copy(obj)), dry_run=dry_run)
        return _plain(await self._call(call))

    async def replace(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Manifest:
        """Replace the object with `obj`, which must carry the ``metadata.resourceVersion`` it
        was read at: a concurrent write makes this fail with `ApiError` 409 Conflict. With
        `dry_run`, nothing is stored."""
        metadata = obj.get("metadata")
        if not isinstance(metadata, Mapping) or not metadata.get("resourceVersion"):
            raise ValueError(
                "replace needs metadata.resourceVersion (as read): it is the precondition "
                "that turns a concurrent write into 409 Conflict instead of a lost update"
            )
        resource = _resource(_field(obj, "kind"), _field(obj, "apiVersion"))
        call = self._client.replace(resource.from_dict(_copy(obj)), dry_run=dry_run)
        return _plain(await self._call(call))

    async def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        patch_type: PatchKind = "merge",
        *,
        api_version: str | None = None,
    ) -> Manifest:
        """Patch the object: an RFC 7386 merge patch (a dict), an RFC 6902 JSON patch (a list
        of operations) or a strategic merge patch (built-in kinds only; custom kinds answer
        415); the object as stored."""
        resource, scope = _resource(kind, api_version), _scope(kind, namespace)
        body = copy.deepcopy(patch if isinstance(patch, Mapping) else list(patch))
        call = self._client.patch(
            resource, name, body, namespace=scope, patch_type=PATCH_TYPES[patch_type]
        )
        return _plain(await self._call(call))

    async def patch_status(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        api_version: str | None = None,
    ) -> Manifest:
        """Merge-patch the object's ``status`` subresource (``patch`` is the patch of the
        whole object, e.g. ``{"status": {...}}``); the object as stored."""
        resource, scope = _resource(kind, api_version), _scope(kind, namespace)
        call = self._client.patch(
            resource.Status,
            name,
            copy.deepcopy(dict(patch)),
            namespace=scope,
            patch_type=PATCH_TYPES["merge"],
        )
        return _plain(await self._call(call))

    async def delete(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> None:
        """Delete the object; `ApiError` 404 if it does not exist."""
        resource, scope = _resource(kind, api_version), _scope(kind, namespace)
        await self._call(self._client.delete(resource, name, namespace=scope))

    async def logs(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """A container's output (``GET .../pods/NAME/log``; the Pod's only or default
        container when None), in chunks as the server sends them, as bytes (a container may
        write anything; lightkube's ``log`` decodes lines and cannot read the Status of a
        followed stream that fails); with `follow`, until the Pod goes or the caller stops.
        A missing Pod or container raises `ApiError` before the first chunk."""
        http = self._client._client._client  # the kubeconfig's server, CA and credentials
        assert isinstance(http, httpx2.AsyncClient)
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
        with _translated(self.server):
            response = await http.send(request, stream=True)
        try:
            if response.is_error:
                with _translated(self.server):
                    await response.aread()
                raise _status_error(response)
            with _translated(self.server):
                async for chunk in response.aiter_bytes(LOG_CHUNK):
                    yield chunk
        finally:
            await response.aclose()

    async def create_token(
        self,
        namespace: str,
        name: str,
        expiration_seconds: int | None = None,
        audiences: Sequence[str] = (),
    ) -> tuple[str, str]:
        """A token for the ServiceAccount ``namespace/name`` (``POST
        .../serviceaccounts/NAME/token``, a TokenRequest; the server's default expiration
        and audiences where not given): the token and its ``expirationTimestamp``
        (RFC 3339). `ApiError` 404 if the ServiceAccount does not exist."""
        http = self._client._client._client  # the kubeconfig's server, CA and credentials
        assert isinstance(http, httpx2.AsyncClient)
        spec: dict[str, Any] = {"audiences": list(audiences) or None}
        if expiration_seconds is not None:
            spec["expirationSeconds"] = expiration_seconds
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        path = (
            f"/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/serviceaccounts/{quote(name, safe='')}/token"
        )
        with _translated(self.server):
            response = await http.post(path, json=body)
        if response.is_error:
            raise _status_error(response)
        try:
            status = response.json()["status"]
            return str(status["token"]), str(status["expirationTimestamp"])
        except (ValueError, KeyError, TypeError) as error:
            raise BadResponse(f"{self.server}: a TokenRequest answer without a token") from error

    # -- collections -----------------------------------------------------------------------
    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        api_version: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[Manifest], str]:
        """Every object of `kind` (in `namespace`, or in all namespaces when None) and the
        resourceVersion of the list, to watch from. Fetched in pages of `page_size`; each
        item gets the ``kind`` and ``apiVersion`` a server leaves out of list items."""
        resource = _resource(kind, api_version)
        request = self._collection_request(
            resource,
            namespace,
            watch=False,
            params={
                "limit": page_size,
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
            },
        )
        pages = self._client._client.list(request)
        items: list[Manifest] = []
        with _translated(self.server):
            async for item in pages:
                items.append(_with_type(_plain(item), resource))
        try:
            version = pages.resourceVersion
        except NotReadyError:
            version = ""  # the server sent no resourceVersion
        return items, version

    async def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        api_version: str | None = None,
        bookmarks: bool = True,
        timeout_seconds: int | None = None,
    ) -> AsyncGenerator[tuple[str, Manifest], None]:
        """Events ``(type, object)`` of `kind` after `resource_version` (all current objects
        as ADDED first when None), types ADDED, MODIFIED, DELETED and, when `bookmarks`,
        BOOKMARK (an object with only ``metadata.resourceVersion``). Runs until cancelled or
        closed: a watch the server ends is resumed from the last resourceVersion seen. An
        ERROR event raises `ApiError` (410 Expired: the version is too old; list again)."""
        resource = _resource(kind, api_version)
        request = self._collection_request(
            resource,
            namespace,
            watch=True,
            params={
                "resourceVersion": resource_version or None,
                "allowWatchBookmarks": "true" if bookmarks else None,
                "timeoutSeconds": timeout_seconds,
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
            },
        )
        stream = self._client._client.watch(request, on_error=on_error_raise)
        try:
            with _translated(self.server):
                async for event_type, obj in stream:
                    yield event_type, _with_type(_plain(obj), resource)
        finally:
            await stream.aclose()  # closes the HTTP response, also when cancelled

    def _collection_request(
        self, resource: type[Any], namespace: str | None, *, watch: bool, params: dict[str, Any]
    ) -> Any:
        info = kinds.BY_KIND[resource._api_info.resource.kind]
        scope = (namespace or lightkube.ALL_NS) if info.namespaced else None
        return self._client._client.prepare_request(
            "list", res=resource, namespace=scope, watch=watch, params=params
        )

    async def _call(self, call: Awaitable[Any]) -> Any:
        with _translated(self.server):
            return await call


# -- kinds as lightkube resources ---------------------------------------------------------
def _resource(kind: str, api_version: str | None) -> type[Any]:
    """lightkube's resource class for `kind` at `api_version` (default: the preferred one)."""
    try:
        info = kinds.lookup(kind)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    version = api_version or info.versions[0]
    if version not in info.versions:
        raise ValueError(
            f"{info.kind} is not served at {version}; served: {', '.join(info.versions)}"
        )
    registered = resource_registry.get(version, info.kind)
    if registered is not None:
        return registered
    group, _, short_version = version.rpartition("/")
    create = create_namespaced_resource if info.namespaced else create_global_resource
    return create(group, short_version, info.kind, info.plural)


def _scope(kind: str, namespace: str | None) -> str | None:
    """The namespace to send: required for namespaced kinds, none for cluster-scoped ones."""
    info = kinds.lookup(kind)
    if not info.namespaced:
        return None
    if not namespace:
        raise ValueError(f"{info.kind} is namespaced: give a namespace")
    return namespace


def _field(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"the object has no {name}")
    return value


def _copy(obj: Mapping[str, Any]) -> Manifest:
    return copy.deepcopy(dict(obj))


def _plain(obj: Any) -> Manifest:
    """A lightkube object as a plain dict (generic resources are dicts; typed models are not)."""
    if obj is None:
        return {}
    plain = obj.to_dict()
    assert isinstance(plain, dict)
    return plain


def _with_type(obj: Manifest, resource: type[Any]) -> Manifest:
    api = resource._api_info.resource
    obj.setdefault("kind", api.kind)
    obj.setdefault("apiVersion", api.api_version)
    return obj


# -- errors ---------------------------------------------------------------------------------
@contextmanager
def _translated(server: str) -> Iterator[None]:
    """Turn lightkube's and httpx2's exceptions into `osm.kube.errors`."""
    try:
        yield
    except KubeError:
        raise
    except lightkube.ApiError as error:
        code = error.response.status_code if error.response is not None else 0
        raise ApiError.from_status(error.status.to_dict(), code) from None
    except httpx2.HTTPStatusError as error:
        raise _status_error(error.response) from None
    except httpx2.HTTPError as error:
        hint = ""
        if str(error).startswith("Server disconnected without sending a response"):
            hint = " (a TLS 1.3 server that refuses the client certificate does this)"
        raise ConnectionFailed(f"{server}: {type(error).__name__}: {error}{hint}") from None
    except ssl.SSLError as error:  # a TLS alert read after the handshake (TLS 1.3)
        raise ConnectionFailed(f"{server}: TLS: {error}") from None
    except lightkube.ConfigError as error:
        raise KubeConfigError(str(error)) from None
    except msgspec.MsgspecError as error:  # lightkube decodes answers with msgspec
        raise BadResponse(f"{server}: an answer not in the API's shape: {error}") from None


def _status_error(response: httpx2.Response) -> ApiError:
    """An error answer that lightkube did not decode: its Content-Type was not exactly
    ``application/json`` (a charset parameter is enough), or it ended a watch request."""
    try:
        body = response.json()
    except (httpx2.ResponseNotRead, httpx2.StreamError, ValueError):
        body = None
    if isinstance(body, Mapping) and body.get("kind") == "Status":
        return ApiError.from_status(body, response.status_code)
    return ApiError(response.status_code, response.reason_phrase, f"{response.request.url}")
