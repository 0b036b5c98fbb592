"""The controller's HTTP API: apply, get, list, delete and watch over the store.

Every write is admitted first (`osm.controller.admission`): Pods being created get their
sidecar and bootstrap Secret from the injector, Pods being replaced keep their spec, and
everything is validated with the resource model, so the store only ever holds objects
the mesh understands, as they run. A batch that has any error is refused whole and the
answer lists every error; a batch is one store write. Deleting a Pod deletes its
bootstrap Secret with it. Paths (JSON in and out):

    POST /api/v1/apply          {"objects": [manifest...], "dryRun": bool}
    POST /api/v1/delete         {"objects": [{kind, namespace, name}...], "ignoreNotFound"}
    GET  /api/v1/objects/{kind}                   ?namespace=NS&labelSelector=SEL
    GET  /api/v1/objects/{kind}/{namespace}/{name}   (namespace "_" for cluster-scoped)
    GET  /api/v1/watch          ?since=RV&kinds=K1,K2   (newline-delimited JSON events)
    GET  /healthz, /version, /metrics

Errors are ``{"error": message, "reason": NotFound|Conflict|Invalid|BadRequest|
InternalError, "problems": [...]}`` with the matching HTTP status (InternalError, 500:
the CA could not issue a bootstrap certificate). Applies and deletes are serialized from
admission's reads to their write.

ClusterIPs are allocated here, as the Kubernetes API server does: a Service applied
without ``spec.clusterIP`` gets the lowest free address of the service range
(10.234.0.0/16) and keeps the one it has on later applies that omit it, so a re-apply
is "unchanged". The allocation lives in the stored Services themselves (derived from
them on each apply), so it survives restarts without a record of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import osm
from osm.base import ipam
from osm.controller import admission
from osm.model import kinds
from osm.model.errors import Problem
from osm.store import api as store_api

log = logging.getLogger(__name__)

STORE_KEY = web.AppKey("store", store_api.Store)
HEARTBEAT_SECONDS = 15.0
CLUSTER_SCOPED = "_"
SHUTDOWN_KEY = web.AppKey("shutdown", asyncio.Event)
WRITES_KEY = web.AppKey("writes", asyncio.Lock)
ADMISSION_KEY = web.AppKey("admission", admission.PodAdmission)
NO_CLUSTER_IP = ("None",)  # headless
ProxyStatusSource = Callable[[], list[dict[str, Any]]]
PROXIES_KEY: web.AppKey[ProxyStatusSource] = web.AppKey("proxies")


@dataclasses.dataclass(slots=True)
class ApiMetrics:
    registry: CollectorRegistry
    writes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ApiMetrics:
        registry = registry or CollectorRegistry()
        writes = Counter(
            "osm_api_write_count",
            "Objects written through the API, by action",
            ["action"],
            registry=registry,
        )
        return cls(registry, writes)


METRICS_KEY = web.AppKey("metrics", ApiMetrics)


def make_app(
    store: store_api.Store,
    metrics: ApiMetrics | None = None,
    pod_admission: admission.PodAdmission | None = None,
) -> web.Application:
    """The aiohttp application serving `store`. The caller owns and closes the store.
    Without `pod_admission`, pods are stored as sent (no injector; the update and
    deletion rules of `osm.controller.admission` hold all the same)."""
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[STORE_KEY] = store
    app[METRICS_KEY] = metrics or ApiMetrics.create()
    app[SHUTDOWN_KEY] = asyncio.Event()
    app[WRITES_KEY] = asyncio.Lock()
    app[ADMISSION_KEY] = pod_admission or admission.PodAdmission(
        admission.AdmissionSettings(), None
    )

    async def on_shutdown(app: web.Application) -> None:
        app[SHUTDOWN_KEY].set()

    app.on_shutdown.append(on_shutdown)
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/version", version),
            web.get("/metrics", prometheus),
            web.post("/api/v1/apply", apply),
            web.post("/api/v1/delete", delete),
            web.get("/api/v1/objects/{kind}", list_objects),
            web.get("/api/v1/objects/{kind}/{namespace}/{name}", get_object),
            web.get("/api/v1/watch", watch),
            web.get("/api/v1/proxies", proxies),
        ]
    )
    return app


def problem_json(problem: Problem) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(problem).items() if v not in ("", None)}


def failure(
    status: int, reason: str, message: str, problems: Sequence[Problem] = ()
) -> web.Response:
    body = {"error": message, "reason": reason, "problems": [problem_json(p) for p in problems]}
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> Mapping[str, Any] | web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return failure(400, "BadRequest", f"the request body is not JSON: {error}")
    if not isinstance(body, Mapping):
        return failure(400, "BadRequest", "the request body must be a JSON object")
    return body


def _kind(name: str) -> kinds.KindInfo | web.Response:
    try:
        return kinds.lookup(name)
    except KeyError as error:
        return failure(400, "BadRequest", str(error.args[0]))


# -- handlers ------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response(
        {"status": "ok", "resourceVersion": request.app[STORE_KEY].resource_version}
    )


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": osm.__version__})


async def prometheus(request: web.Request) -> web.Response:
    metrics: ApiMetrics = request.app[METRICS_KEY]
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def apply(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    items = body.get("objects")
    if not isinstance(items, list):
        return failure(400, "BadRequest", '"objects" must be a list of manifests')
    source = str(body.get("source") or "<request>")
    store = request.app[STORE_KEY]
    # One batch at a time from admission's reads (stored Pods, Namespaces, the
    # MeshConfig, taken ClusterIPs) to its write.
    async with request.app[WRITES_KEY]:
        try:
            admitted = await request.app[ADMISSION_KEY].admit(store, items, source=source)
        except admission.AdmissionUnavailable as error:
            return failure(500, "InternalError", f"{error}; nothing was applied")
        if admitted.errors:
            return failure(
                422,
                "Invalid",
                f"{len(admitted.errors)} error(s); nothing was applied",
                admitted.errors,
            )
        resources = admitted.resources
        missing = await _missing_namespaces(store, resources)
        if missing:
            return failure(422, "Invalid", "nothing was applied", missing)
        keys = [store_api.ObjectKey(r.kind, r.namespace, r.name) for r in resources]
        before = await _existing(store, keys)
        if body.get("dryRun"):
            results = [
                _result(key, "configured (dry run)" if key in before else "created (dry run)", None)
                for key in keys
                if key not in admitted.added
            ]
            return web.json_response({"results": results, "dryRun": True})
        objects = [r.to_dict() for r in resources]
        rv_before = store.resource_version
        try:
            if any(obj.get("kind") == "Service" for obj in objects):
                problems = await assign_cluster_ips(store, objects)
                if problems:
                    return failure(422, "Invalid", "nothing was applied", problems)
            stored = await store.apply(objects)
        except store_api.Conflict as error:
            return failure(
                409, "Conflict", f"{error}; nothing was applied (get the object again and retry)"
            )
        except store_api.StoreError as error:
            return failure(400, "BadRequest", str(error))
    results = []
    metrics: ApiMetrics = request.app[METRICS_KEY]
    for key, obj in zip(keys, stored, strict=True):
        if key in admitted.added:
            continue
        rv = int(obj["metadata"]["resourceVersion"])
        action = "unchanged" if rv <= rv_before else "configured" if key in before else "created"
        metrics.writes.labels(action).inc()
        results.append(_result(key, action, obj["metadata"]["resourceVersion"]))
    return web.json_response({"results": results, "resourceVersion": store.resource_version})


async def assign_cluster_ips(
    store: store_api.Store,
    objects: Sequence[dict[str, Any]],
    network: ipaddress.IPv4Network = ipam.DEFAULT_SERVICE_SUBNET,
) -> list[Problem]:
    """Fills in ``spec.clusterIP`` of the Services in ``objects`` (in place): the stored
    one if the Service has one, else the lowest free address of ``network``. A given
    clusterIP must be free and may not change once set (Kubernetes: immutable).
    ExternalName and headless Services get none. Returns problems; changes nothing then."""
    stored_items, _ = await store.list("Service")
    stored = {store_api.ObjectKey.of(item): _cluster_ip(item) for item in stored_items}
    owners = {ip: key for key, ip in stored.items() if ip and ip not in NO_CLUSTER_IP}
    pool = ipam.service_pool(
        ipam.MemoryRecord({f"{key}": ip for ip, key in owners.items() if _in_network(ip, network)}),
        network,
    )
    problems: list[Problem] = []
    needing: list[tuple[store_api.ObjectKey, dict[str, Any]]] = []
    for obj in objects:
        if obj.get("kind") != "Service":
            continue
        key = store_api.ObjectKey.of(obj)
        spec = obj.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            continue
        given = str(spec.get("clusterIP") or "")
        previous = stored.get(key, "")
        if given and previous and given != previous:
            problems.append(
                Problem(
                    f'field is immutable: the Service has clusterIP "{previous}"; delete and '
                    "re-create it to change the address, or omit spec.clusterIP",
                    "spec.clusterIP",
                    kind=key.kind,
                    namespace=key.namespace,
                    name=key.name,
                )
            )
            continue
        if given in NO_CLUSTER_IP:
            continue
        if given:
            owner = owners.get(given)
            if owner is not None and owner != key:
                problems.append(
                    Problem(
                        f'clusterIP "{given}" is already allocated to {owner}; omit '
                        "spec.clusterIP to get a free address",
                        "spec.clusterIP",
                        kind=key.kind,
                        namespace=key.namespace,
                        name=key.name,
                    )
                )
            owners[given] = key
            if _in_network(given, network) and pool.get(str(key)) is None:
                try:
                    pool.allocate(str(key), given)
                except ipam.AllocationError as error:
                    problems.append(
                        Problem(
                            str(error),
                            "spec.clusterIP",
                            kind=key.kind,
                            namespace=key.namespace,
                            name=key.name,
                        )
                    )
            continue
        if previous:
            spec["clusterIP"] = previous
        else:
            needing.append((key, spec))
    for key, spec in needing:  # after the given ones, so that none is handed out twice
        address = str(pool.allocate(str(key)))
        spec["clusterIP"] = address
        owners[address] = key
    return problems


def _cluster_ip(item: Mapping[str, Any]) -> str:
    spec = item.get("spec")
    return str(spec.get("clusterIP") or "") if isinstance(spec, Mapping) else ""


def _in_network(text: str, network: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False


def _result(key: store_api.ObjectKey, action: str, rv: str | None) -> dict[str, Any]:
    result = {"kind": key.kind, "namespace": key.namespace, "name": key.name, "action": action}
    if rv is not None:
        result["resourceVersion"] = rv
    return result


async def _existing(
    store: store_api.Store, keys: Sequence[store_api.ObjectKey]
) -> set[store_api.ObjectKey]:
    """Which of `keys` exist now (for reporting created vs configured)."""
    by_kind: dict[str, set[store_api.ObjectKey]] = {}
    for key in keys:
        by_kind.setdefault(key.kind, set()).add(key)
    existing: set[store_api.ObjectKey] = set()
    for kind, wanted in by_kind.items():
        if len(wanted) <= 8:
            for key in wanted:
                try:
                    await store.get(key)
                    existing.add(key)
                except store_api.NotFound:
                    pass
        else:
            items, _ = await store.list(kind)
            existing |= {store_api.ObjectKey.of(item) for item in items} & wanted
    return existing


async def _missing_namespaces(store: store_api.Store, resources: Sequence[Any]) -> list[Problem]:
    """Namespaced objects need their namespace to exist, or to be in the same batch."""
    wanted = {r.namespace for r in resources if r.namespace}
    if not wanted:
        return []
    present = {r.name for r in resources if r.kind == "Namespace"}
    stored, _ = await store.list("Namespace")
    present |= {obj["metadata"]["name"] for obj in stored}
    problems = []
    reported: set[str] = set()
    for resource in resources:
        ns = resource.namespace
        if ns and ns not in present and ns not in reported:
            reported.add(ns)
            problems.append(
                Problem(
                    f'namespace "{ns}" not found; create it first (apiVersion: v1, kind: '
                    "Namespace) or apply it in the same batch",
                    "metadata.namespace",
                    kind=resource.kind,
                    namespace=ns,
                    name=resource.name,
                )
            )
    return problems


async def delete(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    store = request.app[STORE_KEY]
    keys: list[store_api.ObjectKey] = []
    for item in body.get("objects") or []:
        info = _kind(str(item.get("kind", ""))) if isinstance(item, Mapping) else None
        if not isinstance(info, kinds.KindInfo):
            return (
                info
                if isinstance(info, web.Response)
                else failure(400, "BadRequest", "each object needs kind, namespace and name")
            )
        namespace = str(item.get("namespace") or "default") if info.namespaced else ""
        keys.append(store_api.ObjectKey(info.kind, namespace, str(item.get("name", ""))))
    async with request.app[WRITES_KEY]:
        if body.get("ignoreNotFound"):
            keys = sorted(await _existing(store, keys), key=keys.index)
        keys = await _with_namespace_contents(store, keys)
        keys = await admission.with_bootstrap_secrets(store, keys)
        try:
            deleted = await store.delete(keys)
        except store_api.NotFound as error:
            return failure(404, "NotFound", f"{error}; nothing was deleted")
    return web.json_response(
        {
            "results": [_result(store_api.ObjectKey.of(obj), "deleted", None) for obj in deleted],
            "resourceVersion": store.resource_version,
        }
    )


async def _with_namespace_contents(
    store: store_api.Store, keys: list[store_api.ObjectKey]
) -> list[store_api.ObjectKey]:
    """Deleting a Namespace deletes what is in it, as in Kubernetes (contents first)."""
    doomed = [key.name for key in keys if key.kind == "Namespace"]
    if not doomed:
        return keys
    contents: list[store_api.ObjectKey] = []
    for info in kinds.KINDS:
        if not info.namespaced:
            continue
        for namespace in doomed:
            items, _ = await store.list(info.kind, namespace)
            contents.extend(store_api.ObjectKey.of(item) for item in items)
    explicit = set(keys)
    return [key for key in contents if key not in explicit] + keys


async def list_objects(request: web.Request) -> web.Response:
    info = _kind(request.match_info["kind"])
    if isinstance(info, web.Response):
        return info
    namespace = request.query.get("namespace") or None
    selector = None
    if text := request.query.get("labelSelector"):
        try:
            selector = store_api.parse_selector(text)
        except ValueError as error:
            return failure(400, "BadRequest", str(error))
    items, rv = await request.app[STORE_KEY].list(
        info.kind, namespace if info.namespaced else None, selector
    )
    return web.json_response({"kind": info.kind, "items": items, "resourceVersion": rv})


async def get_object(request: web.Request) -> web.Response:
    info = _kind(request.match_info["kind"])
    if isinstance(info, web.Response):
        return info
    namespace = request.match_info["namespace"]
    namespace = "" if namespace == CLUSTER_SCOPED or not info.namespaced else namespace
    key = store_api.ObjectKey(info.kind, namespace, request.match_info["name"])
    try:
        return web.json_response(await request.app[STORE_KEY].get(key))
    except store_api.NotFound:
        where = f' in namespace "{namespace}"' if namespace else ""
        return failure(404, "NotFound", f'{info.plural} "{key.name}" not found{where}')


async def watch(request: web.Request) -> web.StreamResponse:
    """Streams events as JSON lines; a BOOKMARK line every few seconds keeps it alive."""
    since_text = request.query.get("since")
    try:
        since = int(since_text) if since_text else None
    except ValueError:
        return failure(400, "BadRequest", f'"since" must be a resourceVersion, not {since_text!r}')
    wanted: list[str] | None = None
    if text := request.query.get("kinds"):
        wanted = []
        for name in text.split(","):
            info = _kind(name)
            if isinstance(info, web.Response):
                return info
            wanted.append(info.kind)
    store = request.app[STORE_KEY]
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    events = store.watch(since, wanted).__aiter__()
    last_rv = since if since is not None else store.resource_version
    pending: asyncio.Future[Any] | None = None
    shutdown = request.app[SHUTDOWN_KEY]
    stopping: asyncio.Future[Any] = asyncio.ensure_future(shutdown.wait())
    try:
        while not shutdown.is_set():
            if pending is None:
                pending = asyncio.ensure_future(events.__anext__())
            done, _ = await asyncio.wait(
                {pending, stopping}, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                break
            if not done:
                line: dict[str, Any] = {"type": "BOOKMARK", "resourceVersion": last_rv}
            else:
                finished, pending = pending, None
                try:
                    event = finished.result()
                except StopAsyncIteration:
                    break
                last_rv = event.resource_version
                line = {"type": event.type, "resourceVersion": event.resource_version}
                if event.type == "RESYNC":
                    line["objects"] = list(event.objects)
                else:
                    line["object"] = event.object
            await response.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
    except ConnectionResetError:
        log.debug("watch client went away")
    finally:
        stopping.cancel()
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
    return response


async def proxies(request: web.Request) -> web.Response:
    """The connected proxies: identity, ACKed versions per type, the last NACK."""
    source = request.app.get(PROXIES_KEY)
    return web.json_response({"proxies": source() if source is not None else []})


def jsonable(value: Any) -> Any:
    """Dataclass dicts with datetimes and mappings, made JSON-ready."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
