"""The Kubernetes client and the informer against a third-party fake API server, kmock's
KubernetesEmulator, served over HTTPS with `auth.server_ssl_context` and a kubeconfig from
`config.write_kubeconfig`: every request carries a client certificate, or gets a 401.

kmock's emulator keeps objects (create, get, merge patch, delete, list, watch) but has no
resourceVersions, pagination, PUT or 410; those answers are scripted here with kmock's own
reactions (a function of the request), so the client is held to the wire protocol: ``limit``
and ``continue``, ``resourceVersion`` and ``allowWatchBookmarks`` on watches, Status errors.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import kmock
import pytest
import yaml

from osm.apiserver import auth, local
from osm.kube import config, informer
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError, ConnectionFailed

pytestmark = pytest.mark.timeout(60)

PODS = kmock.resource("", "v1", "pods")
SPLITS = kmock.resource("split.smi-spec.io", "v1alpha4", "trafficsplits")
ADMIN = auth.User("admin", ("system:masters",))
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "reason": "Unauthorized",
    "message": "a client certificate from the API CA is required",
    "code": 401,
}


class TLSServer(aiohttp.test_utils.RawTestServer):
    """kmock's server over TLS, authenticating as the API server will: the identity of the
    verified client certificate, or a 401 Status."""

    def __init__(
        self,
        handler: Callable[[aiohttp.web.BaseRequest], Awaitable[aiohttp.web.StreamResponse]],
        *,
        tls: ssl.SSLContext,
        seen: list[auth.User | None],
        **kwargs: Any,
    ) -> None:
        async def authenticated(request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
            assert request.transport is not None
            user = auth.identity_of(request.transport.get_extra_info("peercert"))
            seen.append(user)
            if user is None:
                body = json.dumps(UNAUTHORIZED).encode()
                return aiohttp.web.Response(status=401, body=body, content_type="application/json")
            return await handler(request)

        super().__init__(authenticated, **kwargs)
        self._tls = tls

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        await super().start_server(loop=loop, ssl=self._tls, **kwargs)


@dataclass
class Api:
    emulator: kmock.KubernetesEmulator
    server: str
    ca: auth.ApiCA
    directory: Path
    seen: list[auth.User | None] = field(default_factory=list)

    def kubeconfig(self, name: str, credentials: auth.Credentials, ca_pem: bytes = b"") -> Path:
        return config.write_kubeconfig(
            self.directory / f"{name}.kubeconfig",
            server=self.server,
            ca_pem=ca_pem or self.ca.cert_pem,
            cert_pem=credentials.cert_pem,
            key_pem=credentials.key_pem,
            user=name,
        )

    def requests(self, action: kmock.action) -> list[kmock.Request]:
        return [request for request in self.emulator if request.action == action]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    ca = auth.ApiCA.open(tmp_path / "api-ca")
    tls = auth.server_ssl_context(ca.issue_server(["localhost"], ["127.0.0.1"]))
    seen: list[auth.User | None] = []

    def server_cls(handler: Any, **kwargs: Any) -> TLSServer:
        return TLSServer(handler, tls=tls, seen=seen, **kwargs)

    async with (
        kmock.KubernetesEmulator() as emulator,
        kmock.Server(emulator, server_cls=server_cls) as running,  # type: ignore[arg-type]
    ):
        yield Api(emulator, f"https://127.0.0.1:{running.port}", ca, tmp_path, seen)


@pytest.fixture
async def client(api: Api) -> AsyncIterator[KubeClient]:
    path = api.kubeconfig("admin", api.ca.issue_client("admin", ["system:masters"]))
    async with KubeClient.from_kubeconfig(path) as kube:
        yield kube


def pod(name: str, version: str = "", **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ns"}
    if version:
        metadata["resourceVersion"] = version
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {}}


def split(name: str, version: str = "") -> dict[str, Any]:
    metadata = {"name": name, "namespace": "ns", "resourceVersion": version}
    return {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": metadata,
    }


async def stream(*events: dict[str, Any], hold: bool = True) -> AsyncIterator[dict[str, Any]]:
    """A watch response: the events, then (if `hold`) an open connection until cancelled."""
    for event in events:
        yield event
    if hold:
        await asyncio.Event().wait()


def expired(version: str) -> dict[str, Any]:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Expired",
        "message": f"too old resource version: {version} (40)",
        "code": 410,
    }
    return {"type": "ERROR", "object": status}


# -- one object at a time, as the admin -------------------------------------------------------
async def test_objects_round_trip_through_the_emulator(api: Api, client: KubeClient) -> None:
    created = await client.create(pod("a", app="web"))
    assert created["metadata"]["labels"] == {"app": "web"}
    await client.create(split("s"))
    assert await client.get("Pod", "ns", "a") == created
    patched = await client.patch("po", "ns", "a", {"metadata": {"labels": {"tier": "1"}}})
    assert patched["metadata"]["labels"] == {"app": "web", "tier": "1"}
    pods, _ = await client.list("Pod")
    splits, _ = await client.list("TrafficSplit", "ns")
    assert [(o["kind"], o["metadata"]["name"]) for o in pods + splits] == [
        ("Pod", "a"),
        ("TrafficSplit", "s"),
    ]
    assert all(type(o) is dict for o in [created, patched, *pods, *splits])
    await client.delete("Pod", "ns", "a")
    with pytest.raises(ApiError) as raised:
        await client.get("Pod", "ns", "a")
    assert (raised.value.code, raised.value.reason) == (404, "Object Not Found")
    assert set(api.seen) == {ADMIN}


def _without_certificate(api: Api) -> Path:
    path = api.kubeconfig("anonymous", api.ca.issue_client("anonymous"))
    document = yaml.safe_load(path.read_text())
    document["users"][0]["user"] = {}
    path.write_text(yaml.safe_dump(document))
    return path


CALLERS: list[tuple[str, Callable[[Api], Path], type[Exception], str, list[Any]]] = [
    (
        "no certificate",
        _without_certificate,
        ApiError,
        "Unauthorized: a client certificate from the API CA is required",
        [None],
    ),
    (
        "a certificate of another CA",
        lambda api: api.kubeconfig(
            "intruder", auth.ApiCA.open(api.directory / "x").issue_client("a")
        ),
        ConnectionFailed,
        "UNKNOWN_CA",  # the alert (osm.apiserver.local.send_handshake_alerts)
        [],
    ),
    (
        "a server of another CA",
        lambda api: api.kubeconfig(
            "admin", api.ca.issue_client("admin"), auth.ApiCA.open(api.directory / "y").cert_pem
        ),
        ConnectionFailed,
        "CERTIFICATE_VERIFY_FAILED",
        [],
    ),
]


@pytest.fixture
def alerts() -> None:
    """The TLS server sends its handshake alerts, as the local API server does."""
    local.send_handshake_alerts()


@pytest.mark.parametrize(
    ("kubeconfig", "error", "message", "seen"),
    [pytest.param(k, e, m, s, id=name) for name, k, e, m, s in CALLERS],
)
async def test_who_gets_in(
    api: Api,
    alerts: None,
    kubeconfig: Callable[[Api], Path],
    error: type[Exception],
    message: str,
    seen: list[Any],
) -> None:
    async with KubeClient.from_kubeconfig(kubeconfig(api)) as kube:
        with pytest.raises(error, match=message):
            await kube.get("Pod", "ns", "a")
    assert api.seen == seen


# -- lists and errors, scripted -------------------------------------------------------------------
async def test_a_list_is_fetched_in_pages(api: Api, client: KubeClient) -> None:
    everything = [{"metadata": {"name": f"p{i}", "namespace": "ns"}} for i in range(5)]

    def page(request: kmock.Request) -> dict[str, Any]:
        start = int(request.params.get("continue") or 0)
        end = start + int(request.params["limit"])
        metadata = {"resourceVersion": "42"}
        if end < len(everything):
            metadata["continue"] = str(end)
        return {"kind": "PodList", "metadata": metadata, "items": everything[start:end]}

    api.emulator[kmock.action.LIST, PODS] << page
    items, version = await client.list("Pod", label_selector="app=a,tier!=b", page_size=2)
    assert [item["metadata"]["name"] for item in items] == ["p0", "p1", "p2", "p3", "p4"]
    assert {(item["kind"], item["apiVersion"]) for item in items} == {("Pod", "v1")}
    assert version == "42"
    asked = [(r.params["limit"], r.params.get("continue")) for r in api.requests(kmock.action.LIST)]
    assert asked == [("2", None), ("2", "2"), ("2", "4")]
    assert {r.params["labelSelector"] for r in api.requests(kmock.action.LIST)} == {"app=a,tier!=b"}
    assert {r.url.path for r in api.requests(kmock.action.LIST)} == {"/api/v1/pods"}


INVALID = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "reason": "Invalid",
    "message": 'Pod "a" is invalid: spec.containers: Required value',
    "code": 422,
    "details": {
        "name": "a",
        "kind": "Pod",
        "causes": [
            {"reason": "FieldValueRequired", "field": "spec.containers", "message": "Required"}
        ],
    },
}
CONFLICT = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "reason": "Conflict",
    "message": 'Operation cannot be fulfilled on pods "a": the object has been modified',
    "code": 409,
}


@pytest.mark.parametrize(
    ("answer", "code", "reason", "fields"),
    [(CONFLICT, 409, "Conflict", []), (INVALID, 422, "Invalid", ["spec.containers"])],
)
async def test_replace_sends_its_version_and_a_status_comes_back_whole(
    api: Api,
    client: KubeClient,
    answer: dict[str, Any],
    code: int,
    reason: str,
    fields: list[str],
) -> None:
    api.emulator["put", re.compile("/api/v1/namespaces/ns/pods/a")] << code << answer
    with pytest.raises(ApiError) as raised:
        await client.replace(pod("a", version="5"))
    assert (raised.value.code, raised.value.reason) == (code, reason)
    assert raised.value.message == answer["message"]
    assert [cause.field for cause in raised.value.causes] == fields
    [put] = [request for request in api.emulator if request.method == kmock.method.PUT]
    assert put.data["metadata"]["resourceVersion"] == "5"


async def test_replace_without_a_version_is_refused_before_sending(
    api: Api, client: KubeClient
) -> None:
    with pytest.raises(ValueError, match="resourceVersion"):
        await client.replace(pod("a"))
    assert list(api.emulator) == []


# -- watches, scripted -----------------------------------------------------------------------------
async def test_a_watch_resumes_from_the_last_version_bookmarks_included(
    api: Api, client: KubeClient
) -> None:
    def watch(request: kmock.Request) -> AsyncIterator[dict[str, Any]]:
        if request.params.get("resourceVersion") == "5":
            return stream(
                {"type": "ADDED", "object": pod("b", "6")},
                {
                    "type": "BOOKMARK",
                    "object": {"kind": "Pod", "metadata": {"resourceVersion": "9"}},
                },
                hold=False,  # the server ends this watch
            )
        return stream({"type": "MODIFIED", "object": pod("b", "10")})

    api.emulator[kmock.action.WATCH, PODS] << watch
    events = client.watch("Pod", resource_version="5")
    seen = [await asyncio.wait_for(anext(events), 10) for _ in range(3)]
    await events.aclose()
    assert [(kind, obj["metadata"]["resourceVersion"]) for kind, obj in seen] == [
        ("ADDED", "6"),
        ("BOOKMARK", "9"),
        ("MODIFIED", "10"),
    ]
    asked = [dict(r.params) for r in api.requests(kmock.action.WATCH)]
    assert asked == [
        {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true"}
        for version in ("5", "9")
    ]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda request: stream(expired("5"), hold=False), id="an ERROR event"),
        pytest.param(410, id="an HTTP status"),
    ],
)
async def test_an_expired_watch_raises_410(api: Api, client: KubeClient, answer: Any) -> None:
    api.emulator[kmock.action.WATCH, PODS] << answer
    with pytest.raises(ApiError) as raised:
        async for _ in client.watch("Pod", resource_version="5"):
            pass
    assert raised.value.expired


# -- the informer --------------------------------------------------------------------------------
def summary(event: informer.Event) -> tuple[str, ...]:
    if isinstance(event, informer.Sync):
        return ("Sync", *sorted(o["metadata"]["name"] for o in event.objects))
    return (event.type, event.object["metadata"]["name"])


async def test_the_informer_lists_again_after_410_and_syncs(api: Api, client: KubeClient) -> None:
    lists = {
        "pods": [([pod("a", "4")], "5"), ([pod("a", "4"), pod("c", "19")], "20")],
        "trafficsplits": [([split("s", "6")], "7"), ([split("s", "6")], "21")],
    }

    def listing(request: kmock.Request) -> dict[str, Any]:
        assert request.resource is not None
        items, version = lists[str(request.resource.plural)].pop(0)
        return {"metadata": {"resourceVersion": version}, "items": items}

    splits_watched = asyncio.Event()

    async def expire_after_splits_are_watched() -> AsyncIterator[dict[str, Any]]:
        await splits_watched.wait()  # so that both kinds' first watches are on record
        async for event in stream(
            {"type": "ADDED", "object": pod("b", "6")}, expired("5"), hold=False
        ):
            yield event

    def watch(request: kmock.Request) -> AsyncIterator[dict[str, Any]]:
        if request.params.get("resourceVersion") == "7":
            splits_watched.set()
        if request.params.get("resourceVersion") == "5":
            return expire_after_splits_are_watched()
        return stream()

    for resource in (PODS, SPLITS):
        api.emulator[kmock.action.LIST, resource] << listing
        api.emulator[kmock.action.WATCH, resource] << watch
    async with informer.Informer(client, ["Pod", "TrafficSplit"]) as events:
        seen = [summary(await asyncio.wait_for(anext(events), 10)) for _ in range(3)]
        for _ in range(100):  # the new watches connect
            if len(api.requests(kmock.action.WATCH)) == 4:
                break
            await asyncio.sleep(0.05)
    assert seen == [("Sync", "a", "s"), ("ADDED", "b"), ("Sync", "a", "c", "s")]
    watched = [(r.url.path, r.params["resourceVersion"]) for r in api.requests(kmock.action.WATCH)]
    assert sorted(watched) == [
        ("/api/v1/pods", "20"),
        ("/api/v1/pods", "5"),
        ("/apis/split.smi-spec.io/v1alpha4/trafficsplits", "21"),
        ("/apis/split.smi-spec.io/v1alpha4/trafficsplits", "7"),
    ]


async def test_the_informer_follows_the_emulators_objects(api: Api, client: KubeClient) -> None:
    api.emulator.resources[PODS] = {}  # served, though empty
    async with informer.Informer(client, ["Pod"]) as events:

        async def next_event() -> tuple[str, ...]:
            return summary(await asyncio.wait_for(anext(events), 10))

        assert await next_event() == ("Sync",)
        await client.create(pod("a"))  # before the watch connects too: kmock replays it
        assert await next_event() == ("ADDED", "a")
        await client.patch("Pod", "ns", "a", {"metadata": {"labels": {"x": "y"}}})
        assert await next_event() == ("MODIFIED", "a")
        await client.delete("Pod", "ns", "a")
        assert await next_event() == ("DELETED", "a")
