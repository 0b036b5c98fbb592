"""The mesh's objects through the Kubernetes API, as integration tests and benchmarks write
and read them.

One idea: the API takes one object per request, so `apply` does what ``kubectl apply`` does
with whole objects: create each one, or replace it when it exists (at the resourceVersion
just read; again after a 409 Conflict), in the order given, so a Namespace goes before what
it holds. A refusal is `osm.kube.errors.ApiError`, with the Status' reason and causes.

Beside the client: `https` opens an aiohttp session with a kubeconfig's client certificate
for what `KubeClient` does not do (raw Status bodies, the ``status`` subresource, raw
watches); `proxies` and `metric` read the controller's own plain-HTTP endpoint
(`osm.controller.api`). `Blocking` and `run` are for synchronous callers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from osm.ca import tls
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError
from osm.model import kinds

Manifest = dict[str, Any]
T = TypeVar("T")
ATTEMPTS = 5
"""Create-or-replace rounds before `apply` gives up on an object others keep changing."""


def ref(obj: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """(kind, namespace or None for a cluster-scoped kind, name)."""
    metadata = obj["metadata"]
    namespaced = kinds.lookup(obj["kind"]).namespaced
    return obj["kind"], metadata.get("namespace") if namespaced else None, metadata["name"]


async def apply(client: KubeClient, *objects: Mapping[str, Any]) -> list[Manifest]:
    """Creates or replaces each object, one request after the other; the objects as stored.
    The first refusal raises and stops there (what came before it is stored)."""
    return [await apply_one(client, obj) for obj in objects]


async def apply_one(client: KubeClient, obj: Mapping[str, Any]) -> Manifest:
    kind, namespace, name = ref(obj)
    for _ in range(ATTEMPTS):
        try:
            return await client.create(obj)
        except ApiError as error:
            if error.reason != "AlreadyExists":
                raise
        try:
            stored = await client.get(kind, namespace, name, api_version=obj["apiVersion"])
            wanted = copy.deepcopy(dict(obj))
            wanted["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
            return await client.replace(wanted)
        except ApiError as error:
            if error.code not in (404, 409):  # deleted or changed meanwhile: start again
                raise
    raise AssertionError(f"{kind} {namespace}/{name} kept changing under {ATTEMPTS} applies")


async def apply_concurrently(
    client: KubeClient, objects: Sequence[Mapping[str, Any]], requests: int = 16
) -> None:
    """`apply` with up to `requests` requests in flight: the cluster-scoped objects first, in
    order (a Namespace before its content), then the others in any order."""
    cluster = [obj for obj in objects if ref(obj)[1] is None]
    await apply(client, *cluster)
    limit = asyncio.Semaphore(requests)

    async def one(obj: Mapping[str, Any]) -> None:
        async with limit:
            await apply_one(client, obj)

    async with asyncio.TaskGroup() as group:
        for obj in objects:
            if ref(obj)[1] is not None:
                group.create_task(one(obj))


async def delete(client: KubeClient, *objects: Mapping[str, Any]) -> None:
    """Deletes each object (kind, namespace and name are read from it)."""
    for obj in objects:
        kind, namespace, name = ref(obj)
        await client.delete(kind, namespace, name)


class Blocking:
    """A `KubeClient` for synchronous code: ``api(use)`` runs ``use(client)`` to the end in
    an event loop of its own, kept (with the client's connections) between calls; `close`
    it, or use it as a context manager."""

    def __init__(self, kubeconfig: Path, timeout: float = 120.0) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = KubeClient.from_kubeconfig(kubeconfig, timeout=timeout)

    def __call__(self, use: Callable[[KubeClient], Awaitable[T]]) -> T:
        return self.loop.run_until_complete(use(self.client))

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.client.close())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run(kubeconfig: Path, use: Callable[[KubeClient], Awaitable[T]]) -> T:
    """``use(client)`` with a client of its own, for one synchronous call."""
    with Blocking(kubeconfig) as api:
        return api(use)


# -- raw HTTPS ------------------------------------------------------------------------------
def path_of(obj: Mapping[str, Any], subresource: str = "") -> str:
    """The object's REST path (``/api/v1/namespaces/shop/pods/web``), maybe a subresource's."""
    kind, namespace, name = ref(obj)
    info = kinds.lookup(kind)
    version = obj.get("apiVersion") or info.versions[0]
    root = f"/apis/{version}" if "/" in version else f"/api/{version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{root}{scope}/{info.plural}/{name}" + (f"/{subresource}" if subresource else "")


def ssl_context(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    """The server URL and a TLS context with the client certificate of a kubeconfig
    (the self-contained kind `osm.kube.config.write_kubeconfig` writes)."""
    document = yaml.safe_load(kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    tls.load_cert_chain(
        context,
        base64.b64decode(user["client-certificate-data"]),
        base64.b64decode(user["client-key-data"]),
    )
    return str(cluster["server"]), context


@contextlib.asynccontextmanager
async def https(kubeconfig: Path) -> AsyncIterator[aiohttp.ClientSession]:
    """A session on the kubeconfig's server (paths relative to it), authenticated by its
    client certificate."""
    server, context = ssl_context(kubeconfig)
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(server, connector=connector) as session:
        yield session


async def replace_status(session: aiohttp.ClientSession, obj: Mapping[str, Any]) -> Manifest:
    """PUT to the object's ``status`` subresource (how a kubelet writes a pod's status)."""
    async with session.put(path_of(obj, "status"), json=obj) as response:
        body: Manifest = await response.json()
        if response.status != 200:
            raise ApiError.from_status(body, response.status)
        return body


# -- the controller's own endpoint ------------------------------------------------------------
async def proxies(http_port: int) -> list[dict[str, Any]]:
    """The connected proxies (``/debug/proxies`` of the controller's HTTP endpoint)."""
    url = f"http://127.0.0.1:{http_port}/debug/proxies"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        found: list[dict[str, Any]] = (await response.json())["proxies"]
        return found


def metric(text: str, name: str, **labels: str) -> float:
    """The sample of `name` with exactly `labels` in a Prometheus exposition `text`; without
    labels, the sum of every sample of `name`."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name) or (
            not labels and sample.startswith(name + "{")
        ):
            total += float(value)
    return total
