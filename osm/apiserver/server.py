"""The Kubernetes REST API over the store, as kube-apiserver serves it to kubectl.

One idea: every request is a Kubernetes request (discovery, CRUD, list/watch with
resourceVersion, patch, the status and log subresources) on the paths kube-apiserver
uses, and every error is a `Status` (`osm.apiserver.status`). Clients authenticate with a
client certificate or a service account token (``authenticate``, once per request); a request
without either gets a 401 Status on an accepted connection. ``POST
.../serviceaccounts/{name}/token`` answers a TokenRequest, as kube-apiserver does.

Writes: decode, then admission before storage (`Admission`: the mutating injector, then
the model's validation, the same functions the cluster webhooks serve; an admission that
is also a `RequestAdmission`, as `osm.apiserver.webhooks`' dispatcher, is given the
request's `Attributes` too, and reviews deletions), then ONE store write. Writes are
serialized from admission's reads to the store write, so two creates of one Pod cannot
both be injected. ``fieldValidation`` (Strict, Warn the default, Ignore)
decides what unknown fields of our custom kinds do: refuse the object (400), or drop the
fields with a ``Warning`` header, or drop them silently.

A full filesystem: a write the store refuses for want of room (`osm.store.api.
InsufficientStorage`), or one that needed another file there (the CA's state, while
admission issues a Pod's certificate), is a 507 InsufficientStorage Status naming the
verb, the object and the full file; nothing of it was stored, so the same request succeeds
once space is freed.

Status: every kind's status is written only through ``/status`` (a main-resource write
keeps the stored status; a status write keeps everything else), as the status subresource
of kube-apiserver.

Deletion: a Namespace goes ``Terminating`` (deletionTimestamp, ``status.phase``) and
vanishes after its content; a server that stopped half-way finishes the job when it
starts. Deleting an object deletes the Pods it owns (ownerReferences; the garbage
collector's background propagation) and a Pod its bootstrap Secret (`Admission.deleting`).

Watch: ``?watch=true&resourceVersion=R``: events after R, one JSON line each; without R
(or "0") first an ADDED per current object. History the store no longer keeps, or a
watcher that fell too far behind, ends the watch with an ERROR event carrying a 410
Expired Status: the client lists again. BOOKMARKs (``allowWatchBookmarks``) carry the
last resourceVersion the watch delivered. Selector semantics: an object that stops
matching a selector is not reported (kube-apiserver sends DELETED; we do not keep the
previous state per watch).

Namespaces carry the label ``kubernetes.io/metadata.name: <name>``, set on every create
and update as kube-apiserver does, so that selectors (a webhook's ``namespaceSelector``)
can name namespaces.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import dataclasses
import datetime
import errno
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import osm
from osm.apiserver import auth, clusterip, patch, resources, selectors
from osm.apiserver.resources import Resource
from osm.apiserver.status import (
    ApiError,
    Details,
    already_exists,
    conflict,
    insufficient_storage,
    invalid,
    not_found,
)
from osm.base import wellknown
from osm.model import kinds, manifest
from osm.model.errors import Problem
from osm.store import api as store_api

log = logging.getLogger(__name__)

KUBERNETES_MINOR = "32"
"""The Kubernetes minor version `/version` reports; the machine's kubectl dispatcher runs
the kubectl of that minor."""
MAX_BODY = 3 * 1024 * 1024
"""kube-apiserver's request body limit (3 MiB)."""
JSON = "application/json"
TABLE_ACCEPT = "as=Table"
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
UNKNOWN_FIELD = "unknown field"
GENERATED_SUFFIX = 5
RESOURCE_KEY = web.RequestKey("resource", str)
"""Where a request notes the resource it names, for the metrics' ``resource`` label."""
LINE_CACHE = 4096
"""Encoded watch events kept for the other watchers of the same change."""
TRUE = frozenset({"1", "t", "T", "true", "True", "TRUE"})
FALSE = frozenset({"0", "f", "F", "false", "False", "FALSE"})
Authenticate = Callable[[web.Request], str | Awaitable[str | None] | None]
USER_KEY = web.RequestKey("user", str)
"""The authenticated user's name, set before any handler runs."""
Renderer = Callable[[Resource, Sequence[Mapping[str, Any]], str], dict[str, Any]]
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The errors of a write to a full filesystem (or a full quota)."""
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
FINALIZE_RETRY_MAX = 30.0
"""The longest wait before deleting a Terminating Namespace's content again, while the
store's filesystem is full."""


# -- what the server is given -------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Admitted:
    """Admission's answer for one write: the objects to store in one batch (the requested
    one and what admission adds, e.g. a Pod's bootstrap Secret before it) and every
    problem found (any error refuses the write)."""

    objects: list[dict[str, Any]]
    problems: list[Problem]


class AdmissionUnavailable(Exception):
    """Admission cannot decide now (a 500: the server's fault, not the request's)."""


class Admission(Protocol):
    """Admission control: what kube-apiserver's admission chain does for a write."""

    async def admit(
        self, store: store_api.Store, obj: Mapping[str, Any], *, creating: bool
    ) -> Admitted: ...

    async def deleting(
        self, store: store_api.Store, keys: Sequence[store_api.ObjectKey]
    ) -> list[store_api.ObjectKey]:
        """``keys`` and what goes with them (e.g. a Pod's bootstrap Secret)."""
        ...


Operation = Literal["CREATE", "UPDATE", "DELETE"]


@dataclasses.dataclass(frozen=True, slots=True)
class Attributes:
    """What the server knows of a write beyond the object (kube-apiserver's
    ``admission.Attributes``): the operation, the resource as the request named it, the
    object's old state (UPDATE, DELETE), whether it is a dry run, and who asks."""

    operation: Operation
    resource: Resource
    namespace: str
    name: str
    subresource: str = ""
    old: Mapping[str, Any] | None = None
    dry_run: bool = False
    user: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The request's ``CreateOptions``/``UpdateOptions``/``DeleteOptions``."""
    mutated: bool = False
    """Mutating admission already ran on the object (`MutatingAdmission.mutate`, outside
    the write lock); `RequestAdmission.admit_request` then does the rest only."""


@runtime_checkable
class RequestAdmission(Admission, Protocol):
    """An admission that wants the request's `Attributes` (the webhook dispatcher): the
    server calls `admit_request` instead of `Admission.admit`, and `review_delete` before
    each deletion it is asked for (its refusal, an `ApiError`, refuses the deletion)."""

    async def admit_request(
        self, store: store_api.Store, obj: Mapping[str, Any], attributes: Attributes
    ) -> Admitted: ...

    async def review_delete(self, store: store_api.Store, attributes: Attributes) -> list[str]:
        """The warnings to send; raises `ApiError` to refuse."""
        ...


@runtime_checkable
class MutatingAdmission(RequestAdmission, Protocol):
    """A `RequestAdmission` whose mutating step may call out (webhooks), so the server
    runs it on a CREATE before it takes the write lock: a webhook that writes through
    this API while it is called (OSM's injector creates the pod's bootstrap Secret)
    must not wait for the lock its own caller holds. kube-apiserver has no such lock;
    its admission chain runs before storage, concurrently with other requests. Updates
    still call their webhooks under the lock (they admit the stored object as changed):
    a webhook that writes through this API while it reviews an UPDATE waits out its
    timeout."""

    async def mutate(
        self, store: store_api.Store, obj: dict[str, Any], attributes: Attributes
    ) -> tuple[dict[str, Any], list[str]]:
        """The object after the mutating step, and the warnings to send."""
        ...


class ModelAdmission:
    """Validation by the resource model alone (no mutating admission)."""

    async def admit(
        self, store: store_api.Store, obj: Mapping[str, Any], *, creating: bool
    ) -> Admitted:
        loaded = manifest.load_objects([obj])
        return Admitted([item.resource.to_dict() for item in loaded.objects], loaded.problems)

    async def deleting(
        self, store: store_api.Store, keys: Sequence[store_api.ObjectKey]
    ) -> list[store_api.ObjectKey]:
        return list(keys)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """``logs_dir``: where container logs are (``<ns>/<pod>/<container>.log``), for
    ``pods/log``; ``bookmark_seconds``: how often an idle watch gets a BOOKMARK;
    ``namespace_finalize_seconds``: how long a Namespace stays Terminating, with its
    content, before its content is deleted (Kubernetes' namespace controller takes a
    moment too: ``kubectl delete -f`` of a file that lists its Namespace first deletes
    the rest meanwhile, without NotFound errors)."""

    logs_dir: Path | None = None
    bookmark_seconds: float = 10.0
    namespace_finalize_seconds: float = 2.0
    max_body: int = MAX_BODY
    server_address: str = ""


@dataclasses.dataclass(slots=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        registry = registry or CollectorRegistry()
        requests = Counter(
            "apiserver_request_total",
            "API requests, by verb, resource and HTTP code",
            ["verb", "resource", "code"],
            registry=registry,
        )
        latency = Histogram(
            "apiserver_request_duration_seconds",
            "API request latency (watches excluded), by verb",
            ["verb"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        return cls(registry, requests, latency)


# -- request targets ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What a resource path names: a collection (``name`` empty) or one object, maybe a
    subresource of it."""

    resource: Resource
    namespace: str
    name: str = ""
    subresource: str = ""

    def key(self) -> store_api.ObjectKey:
        return store_api.ObjectKey(self.resource.kind, self.namespace, self.name)


def _target(group: str, version: str, parts: Sequence[str]) -> Target:
    """Resolves ``parts`` (the path after ``/api/v1`` or ``/apis/g/v``); raises 404."""
    namespace = ""
    if len(parts) >= 3 and parts[0] == "namespaces":
        candidate = resources.find(group, version, parts[2])
        if candidate is not None and candidate.namespaced:
            namespace, parts = parts[1], parts[2:]
    resource = resources.find(group, version, parts[0]) if parts else None
    if resource is None or len(parts) > 3:
        raise _no_such_path()
    name = parts[1] if len(parts) > 1 else ""
    sub = parts[2] if len(parts) > 2 else ""
    if sub and sub not in resource.subresources:
        raise _no_such_path()
    if not resource.namespaced and namespace:
        raise _no_such_path()
    return Target(resource, namespace, name, sub)


# -- the server ---------------------------------------------------------------------------
class ApiServer:
    """The API over one store. ``authenticate`` names the user of a request (from its
    client certificate or its bearer token) or None: the request is refused with 401.
    ``tokens`` signs what TokenRequests ask for (without it, they are 404)."""

    def __init__(
        self,
        store: store_api.Store,
        authenticate: Authenticate,
        admission: Admission | None = None,
        settings: Settings | None = None,
        metrics: Metrics | None = None,
        tables: Renderer | None = None,
        openapi: Callable[[str], dict[str, Any] | None] | None = None,
        tokens: auth.ServiceAccountTokens | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.authenticate = authenticate
        self.admission: Admission = admission or ModelAdmission()
        self.settings = settings or Settings()
        self.metrics = metrics or Metrics.create()
        self.tables = tables
        self.openapi = openapi
        self.writes = asyncio.Lock()
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watches: set[asyncio.Task[Any]] = set()
        self._lines: dict[tuple[str, int, str, bool], bytes] = {}

    # -- lifecycle --------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body, middlewares=[self._middleware]
        )
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

        async def on_startup(app: web.Application) -> None:
            await self.finish_terminating_namespaces()

        async def on_shutdown(app: web.Application) -> None:
            self.stopping.set()
            for task in [*self._tasks, *self._watches]:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)
        return app

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        verb = request.method.lower()
        try:
            found = self.authenticate(request)
            user = found if found is None or isinstance(found, str) else await found
            if user is None:
                raise ApiError(401, "Unauthorized")
            request[USER_KEY] = user
            response = await handler(request)
        except ApiError as error:
            response = _status_response(error)
        except web.HTTPRequestEntityTooLarge:
            response = _status_response(
                ApiError(413, f"the request body is larger than {self.settings.max_body} bytes")
            )
        except web.HTTPException as error:
            response = _status_response(ApiError(error.status, error.reason))
        except store_api.StoreClosed:
            response = _status_response(ApiError(503, "the server is shutting down"))
        except store_api.InsufficientStorage as error:
            response = _status_response(_refused_at(request, error.full))
        except OSError as error:
            if error.errno not in NO_SPACE:
                log.exception("%s %s failed", request.method, request.path)
                response = _status_response(ApiError(500, "internal error; see the server's log"))
            else:
                response = _status_response(_refused_at(request, _full_filesystem(error)))
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = _status_response(ApiError(500, "internal error; see the server's log"))
        resource = request.get(RESOURCE_KEY, "")
        self.metrics.requests.labels(verb, resource, response.status).inc()
        if request.query.get("watch") not in TRUE:
            self.metrics.latency.labels(verb).observe(loop.time() - started)
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]})
        head = parts[0]
        if head == "version" and len(parts) == 1:
            return _json(version_info())
        if head in ("healthz", "livez", "readyz") and len(parts) == 1:
            return web.Response(text="ok")
        if head == "metrics" and len(parts) == 1:
            return web.Response(
                body=generate_latest(self.metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )
        if head == "openapi":
            return self._openapi(parts[1:])
        if head == "api":
            if len(parts) == 1:
                return _json(resources.api_versions(self.settings.server_address))
            if parts[1] != "v1":
                raise _no_such_path()
            group, version, rest = "", "v1", parts[2:]
        elif head == "apis":
            if len(parts) == 1:
                return _json(resources.api_group_list())
            if len(parts) == 2:
                found = resources.api_group(parts[1])
                if found is None:
                    raise _no_such_path()
                return _json(found)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _no_such_path()
        if not rest:
            listed = resources.api_resource_list(group, version)
            if listed is None:
                raise _no_such_path()
            return _json(listed)
        target = _target(group, version, rest)
        return await self._resource(request, method, target)

    def _openapi(self, parts: Sequence[str]) -> web.Response:
        if self.openapi is None or not parts or parts[0] != "v3":
            raise _no_such_path()
        found = self.openapi("/".join(parts[1:]))
        if found is None:
            raise _no_such_path()
        return _json(found)

    async def _resource(
        self, request: web.Request, method: str, target: Target
    ) -> web.StreamResponse:
        sub = f"/{target.subresource}" if target.subresource else ""
        request[RESOURCE_KEY] = target.resource.plural + sub
        if target.subresource == "log":
            if method != "GET":
                raise ApiError(405, f"{method} is not supported on pods/log")
            return await self.logs(request, target)
        if target.subresource == "scale":
            return await self.scale(request, method, target)
        if target.subresource == "token":
            return await self.token_request(request, method, target)
        if not target.name:
            if method == "GET":
                if request.query.get("watch", "") in TRUE:
                    return await self.watch(request, target)
                return await self.list_(request, target)
            if method == "POST":
                return await self.create(request, target)
            if method == "DELETE":
                return await self.delete_collection(request, target)
        else:
            if method == "GET":
                return await self.get(request, target)
            if method == "PUT":
                return await self.update(request, target)
            if method == "PATCH":
                return await self.patch(request, target)
            if method == "DELETE" and not target.subresource:
                return await self.delete(request, target)
        raise ApiError(405, f"{method} is not supported here")

    # -- reads ------------------------------------------------------------------------
    async def _stored(self, target: Target) -> dict[str, Any]:
        try:
            return await self.store.get(target.key())
        except store_api.NotFound:
            raise not_found(target.resource.plural, target.name, target.resource.group) from None

    async def get(self, request: web.Request, target: Target) -> web.Response:
        obj = _served(target.resource, await self._stored(target))
        if self.tables is not None and TABLE_ACCEPT in request.headers.get("Accept", ""):
            return _json(self.tables(target.resource, [obj], obj["metadata"]["resourceVersion"]))
        return _json(obj)

    async def list_(self, request: web.Request, target: Target) -> web.Response:
        resource = target.resource
        labels, fields = _selectors(request, resource)
        limit = _int_param(request, "limit", 0)
        token = request.query.get("continue", "")
        after, token_rv = _read_continue(token) if token else (None, 0)
        namespace = target.namespace or None
        # The store pages along (namespace, name): ask for one object more than the page
        # to learn whether another follows, and again while the field selector drops some.
        chunk = limit + 1 if limit > 0 else None
        found, rv = await self.store.list(
            resource.kind, namespace, labels, after=after, limit=chunk
        )
        if token:
            rv = token_rv
        items = [item for item in found if fields.matches(item)]
        while chunk is not None and len(found) == chunk and len(items) <= limit:
            after = _position(found[-1])
            found, _ = await self.store.list(
                resource.kind, namespace, labels, after=after, limit=chunk
            )
            items += (item for item in found if fields.matches(item))
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            metadata["continue"] = _continue_token(_position(items[-1]), rv)
        items = [_served(resource, item) for item in items]
        if self.tables is not None and TABLE_ACCEPT in request.headers.get("Accept", ""):
            table = self.tables(resource, items, metadata["resourceVersion"])
            table["metadata"] = metadata
            return _json(table)
        return _json(
            {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": metadata,
                "items": items,
            }
        )

    # -- writes -----------------------------------------------------------------------
    async def create(self, request: web.Request, target: Target) -> web.Response:
        resource = target.resource
        obj = _check_body(await _decode(request), resource)
        metadata = obj["metadata"]
        namespace = _body_namespace(metadata, target)
        if resource.namespaced:
            metadata["namespace"] = namespace
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = _generated(str(metadata["generateName"]))
        name = str(metadata.get("name") or "")
        if not name:
            raise ApiError(
                422,
                f"{resource.kind} in version {resource.version!r} cannot be handled: "
                "metadata.name: Required value: name or generateName is required",
                details=Details(
                    kind=resource.kind,
                    group=resource.group,
                    causes=(("FieldValueRequired", "metadata.name", "Required value"),),
                ),
            )
        for field in store_api.SERVER_FIELDS:
            metadata.pop(field, None)
        metadata.pop("deletionTimestamp", None)
        _label_namespace(obj)
        dry_run = _dry_run(request)
        key = store_api.ObjectKey(resource.kind, namespace if resource.namespaced else "", name)
        attributes = Attributes(
            "CREATE",
            resource,
            namespace if resource.namespaced else "",
            name,
            dry_run=dry_run,
            user=request.get(USER_KEY, ""),
            options=_options("CreateOptions", request),
        )
        early: list[str] = []
        if isinstance(self.admission, MutatingAdmission):
            # kube's order: the namespace's lifecycle first, then the mutating webhooks
            # (even for a create that storage will refuse as AlreadyExists).
            if resource.namespaced:
                await self._check_namespace(namespace)
            obj, early = await self.admission.mutate(self.store, obj, attributes)
            attributes = dataclasses.replace(attributes, mutated=True)
        async with self.writes, _storing("create", key):
            if await self._exists(key):
                raise already_exists(resource.plural, name, resource.group)
            if resource.namespaced:
                await self._check_namespace(namespace)
            objects, warnings = await self._admit(request, attributes, obj)
            stored = objects if dry_run else await self._write(resource, name, objects)
        created = next(o for o in stored if store_api.ObjectKey.of(o) == key)
        return _json(_served(resource, created), status=201, warnings=early + warnings)

    async def update(self, request: web.Request, target: Target) -> web.Response:
        resource = target.resource
        obj = _check_body(await _decode(request), resource)
        metadata = obj["metadata"]
        if metadata.get("name", target.name) != target.name:
            raise ApiError(
                400,
                f"the name of the object ({metadata.get('name')}) does not match the name on "
                f"the URL ({target.name})",
            )
        metadata["name"] = target.name
        if resource.namespaced:
            metadata["namespace"] = _body_namespace(metadata, target)
        return await self._replace(request, target, lambda stored: obj)

    async def patch(self, request: web.Request, target: Target) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        body = await _decode(request, allow_list=True)

        def patched(stored: dict[str, Any]) -> dict[str, Any]:
            try:
                result = patch.apply_patch(
                    content_type,
                    stored,
                    body,
                    kind=target.resource.kind,
                    builtin=target.resource.builtin,
                )
            except patch.UnsupportedPatch as error:
                raise ApiError(415, str(error)) from None
            except patch.PatchError as error:
                field = f"{error.field}: " if error.field else ""
                raise ApiError(422, f"{field}{error}", reason="Invalid") from None
            return dict(result)

        return await self._replace(request, target, patched)

    async def _replace(
        self,
        request: web.Request,
        target: Target,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> web.Response:
        """An update or a patch, answered with the object as stored."""
        result, warnings = await self._replaced(request, target, change)
        return _json(_served(target.resource, result), warnings=warnings)

    async def _replaced(
        self,
        request: web.Request,
        target: Target,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> tuple[dict[str, Any], list[str]]:
        """An update or a patch: ``change`` makes the new object from the stored one;
        the object as stored (or as it would be, on a dry run) and the warnings."""
        resource = target.resource
        dry_run = _dry_run(request)
        verb = "patch" if request.method == "PATCH" else "update"
        async with self.writes, _storing(verb, target.key()):
            stored = await self._stored(target)
            wanted = change(copy.deepcopy(stored))
            if not isinstance(wanted, dict) or not isinstance(wanted.get("metadata"), dict):
                raise ApiError(400, "the result is not an object with metadata")
            meta = wanted["metadata"]
            given_rv = str(meta.get("resourceVersion") or "")
            stored_rv = stored["metadata"]["resourceVersion"]
            if given_rv and given_rv != stored_rv:
                raise conflict(resource.plural, target.name, resource.group)
            if meta.get("name") != target.name or (
                resource.namespaced and meta.get("namespace", target.namespace) != target.namespace
            ):
                raise ApiError(
                    400, "metadata.name and metadata.namespace cannot be changed by an update"
                )
            new = _subresource_view(stored, wanted, target.subresource)
            new["apiVersion"] = stored.get("apiVersion", resource.api_version)
            new["kind"] = resource.kind
            for field in ("uid", "creationTimestamp", "deletionTimestamp"):
                if field in stored["metadata"]:
                    new["metadata"][field] = stored["metadata"][field]
                else:
                    new["metadata"].pop(field, None)
            new["metadata"]["resourceVersion"] = stored_rv
            _label_namespace(new)
            attributes = Attributes(
                "UPDATE",
                target.resource,
                target.namespace,
                target.name,
                target.subresource,
                old=stored,
                dry_run=dry_run,
                user=request.get(USER_KEY, ""),
                options=_options("UpdateOptions", request),
            )
            objects, warnings = await self._admit(request, attributes, new)
            for obj in objects:
                if store_api.ObjectKey.of(obj) == target.key():
                    obj["metadata"]["resourceVersion"] = stored_rv
            written = objects if dry_run else await self._write(resource, target.name, objects)
        result = next(o for o in written if store_api.ObjectKey.of(o) == target.key())
        return result, warnings

    async def _admit(
        self, request: web.Request, attributes: Attributes, obj: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Admission with the request's fieldValidation; the objects to store and the
        warnings to send. Unknown fields dropped (Warn, Ignore) mean a second admission of
        the pruned object: kube-apiserver drops them while decoding, before admission, so
        webhooks must see the object without them."""
        resource = attributes.resource
        validation = request.query.get("fieldValidation") or "Warn"
        if validation not in FIELD_VALIDATION:
            raise ApiError(
                400,
                f"fieldValidation must be one of {', '.join(FIELD_VALIDATION)}, not {validation!r}",
            )
        try:
            admitted = await self._admission(obj, attributes)
            unknown = [p for p in admitted.problems if p.message.startswith(UNKNOWN_FIELD)]
            warnings: list[str] = []
            if unknown and validation != "Strict":
                for problem in unknown:
                    _prune(obj, problem.path)
                if validation == "Warn":
                    warnings = [f'unknown field "{p.path}"' for p in unknown]
                admitted = await self._admission(obj, attributes)
        except AdmissionUnavailable as error:
            raise ApiError(500, f"admission is unavailable: {error}") from None
        errors = [p for p in admitted.problems if p.severity == "error"]
        warnings += [p.message for p in admitted.problems if p.severity == "warning"]
        name = str(obj["metadata"].get("name", ""))
        if (
            errors
            and validation == "Strict"
            and all(p.message.startswith(UNKNOWN_FIELD) for p in errors)
        ):
            fields = ", ".join(f'unknown field "{p.path}"' for p in errors)
            raise ApiError(
                400,
                f"{resource.kind} in version {resource.version!r} cannot be handled as a "
                f"{resource.kind}: strict decoding error: {fields}",
                details=Details(
                    kind=resource.kind,
                    name=name,
                    group=resource.group,
                    causes=tuple(("FieldValueInvalid", p.path, p.message) for p in errors),
                ),
            )
        if errors:
            raise invalid(resource.kind, name, resource.group, errors)
        objects = admitted.objects
        if any(o.get("kind") == "Service" for o in objects):
            problems = await clusterip.assign(self.store, objects)
            if problems:
                raise invalid(resource.kind, name, resource.group, problems)
        return objects, warnings

    async def _admission(self, obj: dict[str, Any], attributes: Attributes) -> Admitted:
        if isinstance(self.admission, RequestAdmission):
            return await self.admission.admit_request(self.store, obj, attributes)
        return await self.admission.admit(
            self.store, obj, creating=attributes.operation == "CREATE"
        )

    async def _review_delete(
        self, request: web.Request, target: Target, stored: Mapping[str, Any], dry_run: bool
    ) -> list[str]:
        """The admission's review of one deletion (webhooks): its warnings, or its
        refusal raised."""
        if not isinstance(self.admission, RequestAdmission):
            return []
        meta = stored.get("metadata") or {}
        attributes = Attributes(
            "DELETE",
            target.resource,
            str(meta.get("namespace") or "") if target.resource.namespaced else "",
            str(meta.get("name") or ""),
            old=stored,
            dry_run=dry_run,
            user=request.get(USER_KEY, ""),
            options=_options("DeleteOptions", request),
        )
        return await self.admission.review_delete(self.store, attributes)

    async def _write(
        self, resource: Resource, name: str, objects: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        try:
            return await self.store.apply(objects)
        except store_api.Conflict:
            raise conflict(resource.plural, name, resource.group) from None
        except store_api.InvalidObject as error:
            raise ApiError(400, str(error)) from None

    async def _exists(self, key: store_api.ObjectKey) -> bool:
        try:
            await self.store.get(key)
        except store_api.NotFound:
            return False
        return True

    async def _check_namespace(self, name: str) -> None:
        try:
            namespace = await self.store.get(store_api.ObjectKey("Namespace", "", name))
        except store_api.NotFound:
            raise not_found("namespaces", name) from None
        if namespace["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f"unable to create new content in namespace {name} because it is being terminated",
                details=Details(kind="namespaces", name=name),
            )

    # -- deployments/scale ------------------------------------------------------------
    async def scale(self, request: web.Request, method: str, target: Target) -> web.Response:
        """``autoscaling/v1 Scale`` of a Deployment (what ``kubectl scale`` reads and
        writes): GET it, or PUT/PATCH it to change ``spec.replicas``."""
        if method == "GET":
            return _json(_scale(await self._stored(target)))
        if method not in ("PUT", "PATCH"):
            raise ApiError(405, f"{method} is not supported on deployments/scale")
        content_type = request.headers.get("Content-Type", JSON)
        body = await _decode(request, allow_list=method == "PATCH")

        def scaled(stored: dict[str, Any]) -> dict[str, Any]:
            current = _scale(stored)
            if method == "PUT":
                wanted: Any = body
            else:
                try:
                    wanted = patch.apply_patch(
                        content_type, current, body, kind="Scale", builtin=False
                    )
                except patch.PatchError as error:
                    raise ApiError(422, str(error), reason="Invalid") from None
            replicas = (
                (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
            )
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError(
                    422,
                    f'Scale.autoscaling "{target.name}" is invalid: spec.replicas: Invalid '
                    f"value: {replicas!r}: must be a non-negative integer",
                    details=Details(
                        kind="Scale",
                        name=target.name,
                        group="autoscaling",
                        causes=(("FieldValueInvalid", "spec.replicas", "must be >= 0"),),
                    ),
                )
            rv = (wanted.get("metadata") or {}).get("resourceVersion")
            stored["spec"]["replicas"] = replicas
            stored["metadata"]["resourceVersion"] = rv or stored["metadata"]["resourceVersion"]
            return stored

        deployment, _ = await self._replaced(
            request, dataclasses.replace(target, subresource=""), scaled
        )
        return _json(_scale(deployment))

    # -- deletion ---------------------------------------------------------------------
    async def token_request(
        self, request: web.Request, method: str, target: Target
    ) -> web.Response:
        """``POST .../serviceaccounts/{name}/token``: a TokenRequest answered with a token
        bound to the ServiceAccount (404 if it does not exist), as kube-apiserver's."""
        if method != "POST":
            raise ApiError(405, f"{method} is not supported on serviceaccounts/token")
        if self.tokens is None:
            raise _no_such_path()
        if request.content_type == auth.PROTOBUF:  # kubectl create token's only encoding
            try:
                body = auth.token_request_from_protobuf(await request.read())
            except (ValueError, UnicodeDecodeError) as error:
                raise ApiError(400, f"the request body is not a TokenRequest: {error}") from None
        else:
            body = await _decode(request)
        api_version = body.get("apiVersion") or resources.TOKEN_REQUEST_API_VERSION
        if (body.get("kind") or "TokenRequest", api_version) != (
            "TokenRequest",
            resources.TOKEN_REQUEST_API_VERSION,
        ):
            raise ApiError(
                400,
                f"the body of a token request must be a {resources.TOKEN_REQUEST_API_VERSION} "
                f"TokenRequest, not a {api_version} {body.get('kind')}",
            )
        account = await self._stored(target)
        raw_spec = body.get("spec")
        spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
        audiences = spec.get("audiences") or list(self.tokens.audiences)
        seconds = spec.get("expirationSeconds") or int(auth.TOKEN_EXPIRATION.total_seconds())
        problem = _token_request_problem(audiences, seconds, spec.get("boundObjectRef"))
        if problem is not None:
            field, value, message = problem
            raise ApiError(
                422,
                f'TokenRequest.authentication.k8s.io "{target.name}" is invalid: '
                f"{field}: Invalid value: {json.dumps(value)}: {message}",
                details=Details(
                    kind="TokenRequest",
                    name=target.name,
                    group="authentication.k8s.io",
                    causes=(("FieldValueInvalid", field, f"Invalid value: {message}"),),
                ),
            )
        issued = self.tokens.issue(
            target.namespace,
            target.name,
            str(account["metadata"].get("uid", "")),
            audiences=audiences,
            expiration=datetime.timedelta(seconds=seconds),
        )
        answer = {
            "kind": "TokenRequest",
            "apiVersion": resources.TOKEN_REQUEST_API_VERSION,
            "metadata": {
                "name": target.name,
                "namespace": target.namespace,
                "creationTimestamp": _now(),
            },
            "spec": {
                "audiences": audiences,
                "expirationSeconds": seconds,
                "boundObjectRef": None,
            },
            "status": {
                "token": issued.token,
                "expirationTimestamp": issued.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }
        return _json(answer, status=201)

    async def delete(self, request: web.Request, target: Target) -> web.Response:
        options = await _delete_options(request)
        dry_run = _dry_run(request)
        async with self.writes, _storing("delete", target.key()):
            stored = await self._stored(target)
            _check_preconditions(stored, options, target)
            warnings = await self._review_delete(request, target, stored, dry_run)
            if target.resource.kind == "Namespace":
                return _json(await self._terminate(stored, dry_run), warnings=warnings)
            if dry_run:
                return _json(_served(target.resource, stored), warnings=warnings)
            orphan = options.get("propagationPolicy") == "Orphan"
            keys = [target.key()] + ([] if orphan else await self._owned([stored]))
            deleted = await self.store.delete(await self.admission.deleting(self.store, keys))
        return _json(_served(target.resource, deleted[0]), warnings=warnings)

    async def delete_collection(self, request: web.Request, target: Target) -> web.Response:
        resource = target.resource
        labels, fields = _selectors(request, resource)
        dry_run = _dry_run(request)
        collection = store_api.ObjectKey(resource.kind, target.namespace, "")
        async with self.writes, _storing("deletecollection", collection):
            items, _ = await self.store.list(resource.kind, target.namespace or None, labels)
            items = [item for item in items if fields.matches(item)]
            warnings: list[str] = []
            for item in items:
                warnings += await self._review_delete(request, target, item, dry_run)
            if resource.kind == "Namespace":
                done = [await self._terminate(item, dry_run) for item in items]
            elif dry_run or not items:
                done = items
            else:
                keys = [store_api.ObjectKey.of(item) for item in items]
                keys = list(dict.fromkeys(keys + await self._owned(items)))
                done = await self.store.delete(await self.admission.deleting(self.store, keys))
                done = [d for d in done if d.get("kind") == resource.kind]
        return _json(
            {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": {},
                "items": [_served(resource, d) for d in done],
            },
            warnings=warnings,
        )

    async def _owned(self, owners: Sequence[Mapping[str, Any]]) -> list[store_api.ObjectKey]:
        """The Pods whose ownerReferences name one of ``owners`` (what background
        propagation deletes with them): one listing of Pods for all of them."""
        uids = {
            owner["metadata"]["uid"]
            for owner in owners
            if owner.get("kind") != "Pod" and owner.get("metadata", {}).get("uid")
        }
        if not uids:
            return []
        namespaces = {owner.get("metadata", {}).get("namespace") or None for owner in owners}
        namespace = namespaces.pop() if len(namespaces) == 1 else None
        pods, _ = await self.store.list("Pod", namespace)
        return [
            store_api.ObjectKey.of(pod)
            for pod in pods
            if any(ref.get("uid") in uids for ref in pod["metadata"].get("ownerReferences") or ())
        ]

    async def _terminate(self, namespace: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """Marks a Namespace Terminating and deletes it after its content (in the
        background; the answer is the Terminating Namespace)."""
        metadata = namespace["metadata"]
        if not metadata.get("deletionTimestamp"):
            namespace = copy.deepcopy(namespace)
            namespace["metadata"]["deletionTimestamp"] = _now()
            namespace.setdefault("spec", {})["finalizers"] = ["kubernetes"]
            namespace.setdefault("status", {})["phase"] = "Terminating"
            if dry_run:
                return _served(resources.preferred("Namespace"), namespace)
            (namespace,) = await self.store.apply([namespace])
        if not dry_run:
            name = namespace["metadata"]["name"]
            self._spawn(
                self._finalize_namespace_until_done(name, self.settings.namespace_finalize_seconds)
            )
        return _served(resources.preferred("Namespace"), namespace)

    async def _finalize_namespace(self, name: str, delay: float = 0.0) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        async with self.writes:
            keys: list[store_api.ObjectKey] = []
            for info in kinds.KINDS:
                if info.namespaced:
                    items, _ = await self.store.list(info.kind, name)
                    keys += [store_api.ObjectKey.of(item) for item in items]
            keys = list(dict.fromkeys(await self.admission.deleting(self.store, keys)))
            if keys:
                await self.store.delete(keys)
            with contextlib.suppress(store_api.NotFound):
                await self.store.delete([store_api.ObjectKey("Namespace", "", name)])

    async def _finalize_namespace_until_done(self, name: str, delay: float) -> None:
        """`_finalize_namespace`, tried again while the store's filesystem is full (with
        a backoff up to `FINALIZE_RETRY_MAX` seconds), so that a Namespace refused its
        deletion then vanishes once there is room, without a restart."""
        retry = 1.0
        while True:
            try:
                await self._finalize_namespace(name, delay)
                return
            except store_api.InsufficientStorage as error:
                log.warning("namespace %s stays Terminating for now: %s", name, error)
            delay, retry = retry, min(2 * retry, FINALIZE_RETRY_MAX)

    async def finish_terminating_namespaces(self) -> None:
        """Namespaces left Terminating by a server that stopped: delete them now."""
        namespaces, _ = await self.store.list("Namespace")
        for namespace in namespaces:
            if namespace["metadata"].get("deletionTimestamp"):
                await self._finalize_namespace(namespace["metadata"]["name"])

    # -- watch ------------------------------------------------------------------------
    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        """A watch, known to the server from its first step, so that stopping the server
        ends it (cancels it) wherever it is."""
        if self.stopping.is_set():
            raise ApiError(503, "the server is shutting down")
        task = asyncio.current_task()
        if task is not None:
            self._watches.add(task)
        try:
            return await self._watch(request, target)
        finally:
            if task is not None:
                self._watches.discard(task)

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        resource = target.resource
        labels, fields = _selectors(request, resource)
        since_text = request.query.get("resourceVersion", "")
        try:
            since = int(since_text) if since_text not in ("", "0") else None
        except ValueError:
            raise ApiError(400, f"resourceVersion must be a number, not {since_text!r}") from None
        timeout = _int_param(request, "timeoutSeconds", 0)
        bookmarks = request.query.get("allowWatchBookmarks", "") in TRUE
        table = self.tables is not None and TABLE_ACCEPT in request.headers.get("Accept", "")
        namespace = target.namespace

        def wanted(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata", {})
            return (
                (not namespace or meta.get("namespace") == namespace)
                and labels.matches(store_api.labels_of(obj))
                and fields.matches(obj)
            )

        initial: list[dict[str, Any]] = []
        if since is None:
            items, since = await self.store.list(resource.kind, namespace or None, labels)
            initial = [item for item in items if fields.matches(item)]
        events = self.store.watch(since, [resource.kind], shared=True).__aiter__()
        response = web.StreamResponse(headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        writing = asyncio.Lock()
        last_rv = since
        sent = True  # since the last bookmark tick

        async def send(kind: str, obj: Mapping[str, Any], rv: int = 0) -> None:
            nonlocal sent
            line = self._line(kind, resource, obj, rv, table)
            async with writing:
                await response.write(line)
            sent = True

        async def bookmark() -> None:
            nonlocal sent
            while True:
                await asyncio.sleep(self.settings.bookmark_seconds)
                if not sent:
                    await send("BOOKMARK", _bookmark(resource, last_rv))
                sent = False

        bookmarker = asyncio.ensure_future(bookmark()) if bookmarks else None
        try:
            async with asyncio.timeout(timeout if timeout > 0 else None):
                for obj in initial:
                    await send("ADDED", obj)
                async for event in events:
                    if event.type == "RESYNC":
                        expired = ApiError(
                            410, f"too old resource version: {since} ({event.resource_version})"
                        )
                        await send("ERROR", expired.status())
                        break
                    last_rv = event.resource_version
                    changed = event.object
                    assert changed is not None
                    if wanted(changed):
                        await send(event.type, changed, event.resource_version)
        except TimeoutError:
            pass  # timeoutSeconds: the watch ends, the client watches again
        except ConnectionResetError:
            log.debug("watch ended: the client went away")
        # A cancellation (the server stops: `on_shutdown` cancels every watch) goes on up,
        # so that aiohttp closes the connection instead of waiting for its next request.
        finally:
            if bookmarker is not None:
                bookmarker.cancel()
                await asyncio.gather(bookmarker, return_exceptions=True)
            closer = getattr(events, "aclose", None)
            if closer is not None:
                await closer()
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            await response.write_eof()
        return response

    def _line(
        self, kind: str, resource: Resource, obj: Mapping[str, Any], rv: int, table: bool
    ) -> bytes:
        """One watch event as its JSON line, encoded once per event and served version
        (every watcher of a kind sends the same bytes for a change)."""
        key = (kind, rv, resource.api_version, table) if rv else None
        if key is not None:
            cached = self._lines.get(key)
            if cached is not None:
                return cached
        body: Any = obj
        if kind in ("ERROR", "BOOKMARK"):
            pass
        elif table and self.tables is not None:
            body = self.tables(resource, [_served(resource, obj)], "")
        else:
            body = _served(resource, obj)
        line = json.dumps({"type": kind, "object": body}, separators=(",", ":")).encode() + b"\n"
        if key is not None:
            if len(self._lines) >= LINE_CACHE:
                del self._lines[next(iter(self._lines))]
            self._lines[key] = line
        return line

    # -- pods/log ---------------------------------------------------------------------
    async def logs(self, request: web.Request, target: Target) -> web.StreamResponse:
        pod = await self._stored(target)
        spec = pod.get("spec", {})
        names = [c.get("name") for c in spec.get("containers") or ()]
        init_names = [c.get("name") for c in spec.get("initContainers") or ()]
        container = request.query.get("container", "")
        if not container:
            default = (
                pod["metadata"]
                .get("annotations", {})
                .get("kubectl.kubernetes.io/default-container")
            )
            if default:
                container = default
            elif len(names) == 1:
                container = str(names[0])
            else:
                choices = f"[{' '.join(map(str, names))}]"
                if init_names:
                    choices += f" or one of the init containers: [{' '.join(map(str, init_names))}]"
                raise ApiError(
                    400,
                    f"a container name must be specified for pod {target.name}, choose one of: "
                    + choices,
                )
        if container not in names and container not in init_names:
            raise ApiError(
                400,
                f"container {container} is not valid for pod {target.name}",
            )
        path = (
            self.settings.logs_dir / target.namespace / target.name / f"{container}.log"
            if self.settings.logs_dir is not None
            else None
        )
        if path is None or not path.exists():
            raise ApiError(
                400,
                f'container "{container}" in pod "{target.name}" is waiting to start: '
                "ContainerCreating",
            )
        tail = _int_param(request, "tailLines", -1)
        limit = _int_param(request, "limitBytes", 0)
        follow = request.query.get("follow", "") in TRUE
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        data = path.read_bytes()
        if tail >= 0:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail else b""
        sent = 0
        if limit > 0:
            data = data[:limit]
        await response.write(data)
        sent += len(data)
        position = path.stat().st_size
        try:
            while follow and not self.stopping.is_set() and (limit <= 0 or sent < limit):
                await asyncio.sleep(0.2)
                if not await self._exists(target.key()):
                    break
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    break
                if size < position:
                    position = 0
                if size > position:
                    with path.open("rb") as file:
                        file.seek(position)
                        chunk = file.read(size - position)
                    position = size
                    if limit > 0:
                        chunk = chunk[: limit - sent]
                    await response.write(chunk)
                    sent += len(chunk)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


# -- helpers ------------------------------------------------------------------------------
def version_info() -> dict[str, str]:
    return {
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": f"v1.{KUBERNETES_MINOR}.0-osm.{osm.__version__}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


@contextlib.asynccontextmanager
async def _storing(verb: str, key: store_api.ObjectKey) -> AsyncIterator[None]:
    """A write of ``key`` (name empty: a collection) refused for a full filesystem becomes
    the contract's 507 naming the verb, the object and the full file's path (the store's,
    or another file the write needed)."""
    try:
        yield
    except store_api.InsufficientStorage as error:
        full = error.full
    except OSError as error:  # say, the CA's state, written while admission issues
        if error.errno not in NO_SPACE:
            raise
        full = _full_filesystem(error)
    else:
        return
    log.warning("%s %s refused: %s", verb, key, full)
    raise insufficient_storage(verb, key.kind, key.namespace, key.name, full)


def _full_filesystem(error: OSError) -> str:
    return f"the filesystem of {error.filename or 'the state directory'} is full"


def _refused_at(request: web.Request, full: str) -> ApiError:
    """The 507 of a write refused for a full filesystem where the handler could not say
    which object it was writing: named by its path."""
    log.warning("%s %s refused: %s", request.method, request.path, full)
    verb = VERBS.get(request.method, request.method.lower())
    return ApiError(
        507, f"{verb} {request.path}: {full}: nothing was written; free space and retry"
    )


def _no_such_path() -> ApiError:
    return ApiError(404, "the server could not find the requested resource")


def _json(body: Any, status: int = 200, warnings: Sequence[str] = ()) -> web.Response:
    response = web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type=JSON,
    )
    for warning in warnings:
        response.headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(39))}"')
    return response


def _status_response(error: ApiError) -> web.Response:
    return _json(error.status(), status=error.code)


def _served(resource: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the requested group/version serves it."""
    served = dict(obj)
    served["apiVersion"] = resource.api_version
    served["kind"] = resource.kind
    return served


def _scale(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A Deployment's ``autoscaling/v1 Scale``."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": (deployment.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


def _bookmark(resource: Resource, rv: int) -> dict[str, Any]:
    return {
        "kind": resource.kind,
        "apiVersion": resource.api_version,
        "metadata": {"resourceVersion": str(rv)},
    }


async def _decode(request: web.Request, *, allow_list: bool = False) -> Any:
    """The request body, JSON or YAML; a 400 Status for anything else."""
    raw = await request.read()
    content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip()
    try:
        if content_type in ("application/yaml", "application/apply-patch+yaml"):
            body = yaml.safe_load(raw.decode())
        else:
            body = json.loads(raw)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:
        raise ApiError(400, f"the request body is not valid {content_type}: {error}") from None
    if isinstance(body, list) and allow_list:
        return body
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be an object")
    return body


def _check_body(body: dict[str, Any], resource: Resource) -> dict[str, Any]:
    """A create/update body: kind and apiVersion those of the path (or absent)."""
    kind = body.get("kind") or resource.kind
    api_version = body.get("apiVersion") or resource.api_version
    if kind != resource.kind:
        raise ApiError(
            400, f"the kind in the data ({kind}) does not match the URL's ({resource.kind})"
        )
    if api_version not in resource.info.versions:
        raise ApiError(
            400,
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({resource.api_version})",
        )
    if not isinstance(body.get("metadata", {}), dict):
        raise ApiError(400, "metadata must be an object")
    body = copy.deepcopy(body)
    body["kind"], body["apiVersion"] = kind, api_version
    body.setdefault("metadata", {})
    return body


def _body_namespace(metadata: Mapping[str, Any], target: Target) -> str:
    if not target.resource.namespaced:
        return ""
    given = metadata.get("namespace") or target.namespace
    if target.namespace and given != target.namespace:
        raise ApiError(
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        )
    if not given:
        raise ApiError(400, "a namespaced object needs a namespace")
    return str(given)


def _subresource_view(
    stored: Mapping[str, Any], wanted: dict[str, Any], subresource: str
) -> dict[str, Any]:
    """What an update writes: only the status (``/status``), or all but the status."""
    if subresource == "status":
        new = copy.deepcopy(dict(stored))
        if "status" in wanted:
            new["status"] = wanted["status"]
        else:
            new.pop("status", None)
        return new
    new = dict(wanted)
    if "status" in stored:
        new["status"] = copy.deepcopy(stored["status"])
    else:
        new.pop("status", None)
    return new


def _token_request_problem(audiences: Any, seconds: Any, bound: Any) -> tuple[str, Any, str] | None:
    """What is wrong with a TokenRequest's spec, as (field, value, message), or None.
    Tokens bound to a Pod or Secret are refused rather than issued unbound."""
    if bound:
        return "spec.boundObjectRef", bound, "binding to an object is not supported here"
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        return "spec.audiences", audiences, "must be a list of non-empty strings"
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        return "spec.expirationSeconds", seconds, "must be an integer"
    if seconds < auth.MIN_TOKEN_EXPIRATION.total_seconds():
        return "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"
    if seconds > auth.MAX_TOKEN_EXPIRATION.total_seconds():
        return (
            "spec.expirationSeconds",
            seconds,
            "may not specify a duration larger than 2^32 seconds",
        )
    return None


def _label_namespace(obj: dict[str, Any]) -> None:
    """A Namespace's ``kubernetes.io/metadata.name`` label, as kube-apiserver sets it."""
    if obj.get("kind") != "Namespace":
        return
    metadata = obj["metadata"]
    labels = metadata.get("labels")
    if labels is None:
        labels = metadata["labels"] = {}
    if isinstance(labels, dict):  # anything else is the model's to refuse
        labels[wellknown.NAMESPACE_NAME_LABEL] = metadata.get("name", "")


def _options(kind: str, request: web.Request) -> dict[str, Any]:
    """The request's options as an AdmissionReview carries them."""
    options: dict[str, Any] = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if request.query.getall("dryRun", []):
        options["dryRun"] = request.query.getall("dryRun")
    if request.query.get("fieldManager"):
        options["fieldManager"] = request.query["fieldManager"]
    return options


def _prune(obj: dict[str, Any], path: str) -> None:
    """Removes the field at a kubectl-style ``path`` (``spec.a[0].b``) if it is there."""
    parts: list[str | int] = []
    for piece in path.replace("]", "").split("."):
        name, *indices = piece.split("[")
        if name:
            parts.append(name)
        parts += [int(i) for i in indices if i.isdigit()]
    current: Any = obj
    for part in parts[:-1]:
        try:
            current = current[part]
        except (KeyError, IndexError, TypeError):
            return
    if parts and isinstance(current, dict):
        current.pop(parts[-1], None)


def _selectors(
    request: web.Request, resource: Resource
) -> tuple[store_api.LabelSelector, selectors.FieldSelector]:
    try:
        labels = store_api.parse_selector(request.query.get("labelSelector", ""))
    except store_api.SelectorError as error:
        raise ApiError(400, f"unable to parse requirement: {error}") from None
    try:
        fields = selectors.parse(request.query.get("fieldSelector", ""), resource.kind)
    except selectors.FieldSelectorError as error:
        raise ApiError(400, str(error)) from None
    return labels, fields


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {text!r}") from None
    if value < 0:
        raise ApiError(400, f"{name} must not be negative")
    return value


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise ApiError(400, f'dryRun must be "All", not {value!r}')
    return bool(values)


def _position(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _continue_token(after: tuple[str, str], rv: int) -> str:
    raw = json.dumps({"rv": rv, "after": list(after)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _read_continue(token: str) -> tuple[tuple[str, str], int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = data["after"]
        return (str(namespace), str(name)), int(data["rv"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, "the continue token is not one this server gave") from None


async def _delete_options(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        options: dict[str, Any] = {}
    else:
        raw = await request.read()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except ValueError as error:
            raise ApiError(400, f"the DeleteOptions are not JSON: {error}") from None
        if not isinstance(options, dict):
            raise ApiError(400, "the DeleteOptions must be an object")
    if "propagationPolicy" in request.query:
        options["propagationPolicy"] = request.query["propagationPolicy"]
    policy = options.get("propagationPolicy")
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise ApiError(400, f"propagationPolicy must be Orphan, Background or Foreground: {policy}")
    return options


def _check_preconditions(
    stored: Mapping[str, Any], options: Mapping[str, Any], target: Target
) -> None:
    preconditions = options.get("preconditions") or {}
    if not isinstance(preconditions, Mapping):
        raise ApiError(400, "preconditions must be an object")
    metadata = stored["metadata"]
    for field in ("uid", "resourceVersion"):
        wanted = preconditions.get(field)
        if wanted and wanted != metadata.get(field):
            raise ApiError(
                409,
                f"Precondition failed: {field} in precondition: {wanted}, {field} in object "
                f"meta: {metadata.get(field)}",
                details=Details(kind=target.resource.plural, name=target.name),
            )


def _generated(prefix: str) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # kube-apiserver's: no vowels, no 0/1/3
    return prefix + "".join(secrets.choice(alphabet) for _ in range(GENERATED_SUFFIX))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
