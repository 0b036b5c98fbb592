"""The ADS server over real gRPC: a grpc.aio server on 127.0.0.1 with mTLS from `osm.ca`,
and grpc.aio stubs as proxies, speaking SotW and delta."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from envoy.service.discovery.v3 import ads_pb2_grpc
from prometheus_client import CollectorRegistry

from osm.ads import cache, resources, server
from osm.ads.protocol import Ack, Nack
from osm.ads.xds_snapshot import XdsSnapshot
from osm.base import wellknown
from osm.base.identity import Identity, NodeId
from osm.ca import builtin
from osm.ca.issuer import LeafRequest
from osm.xds import generator as xds_generator
from osm.xds import resources as xds_resources
from osm.xds import snapshot as xds_snapshot
from tests.unit.ads.adstesting import (
    NODE_ID,
    delta_request,
    request,
    show,
    show_delta,
    snap,
)
from tests.unit.xds import xds_support

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0
QUIET = 0.3
"""How long to listen for a response that must not come."""


@dataclass(frozen=True)
class Pki:
    server: server.TlsConfig
    bundle: bytes
    ca: builtin.BuiltinCA

    def client_credentials(self, identity: Identity) -> grpc.ChannelCredentials:
        leaf = self.ca.issue(LeafRequest.bootstrap(identity, uuid.uuid4()), datetime.now(UTC))
        return grpc.ssl_channel_credentials(
            root_certificates=self.bundle,
            private_key=leaf.key_pem,
            certificate_chain=leaf.cert_pem,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    now = datetime.now(UTC)
    ca = builtin.BuiltinCA.open(Path(tmp_path_factory.mktemp("ca")) / "ca", now)
    leaf = ca.issue(
        LeafRequest.xds_server(("localhost",), (ipaddress.IPv4Address("127.0.0.1"),)), now
    )
    bundle = ca.trust_bundle().pem
    return Pki(server.TlsConfig(leaf.cert_pem, leaf.key_pem, bundle), bundle, ca)


class Recorder(server.ProxyCallbacks):
    """Callbacks that log what happened and may build a snapshot on connect."""

    def __init__(self, snapshots: cache.SnapshotCache) -> None:
        self.snapshots = snapshots
        self.log: list[str] = []
        self.on_demand: Any = None

    def on_connect(self, proxy: server.ConnectedProxy) -> None:
        self.log.append(f"connect {proxy.node_id} {proxy.protocol}")
        if self.on_demand is not None and self.snapshots.get(str(proxy.node_id)) is None:
            self.snapshots.set_snapshot(str(proxy.node_id), self.on_demand)

    def on_disconnect(self, proxy: server.ConnectedProxy) -> None:
        self.log.append(f"disconnect {proxy.node_id}")

    def on_ack(self, proxy: server.ConnectedProxy, ack: Ack) -> None:
        self.log.append(f"ack {ack.version}")

    def on_nack(self, proxy: server.ConnectedProxy, nack: Nack) -> None:
        self.log.append(f"nack {nack.version}: {nack.message}")


@dataclass
class Harness:
    cache: cache.SnapshotCache
    server: server.AdsServer
    registry: CollectorRegistry
    callbacks: Recorder
    pki: Pki | None

    def channel(self, identity: Identity | None = None) -> grpc.aio.Channel:
        target = f"127.0.0.1:{self.server.port}"
        if self.pki is None:
            return grpc.aio.insecure_channel(target)
        who = identity or Identity("bookbuyer", "bookbuyer")
        return grpc.aio.secure_channel(target, self.pki.client_credentials(who))

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


async def _harness(tls: Pki | None) -> Harness:
    snapshots = cache.SnapshotCache()
    registry = CollectorRegistry()
    callbacks = Recorder(snapshots)
    config = server.ServerConfig(port=0, tls=tls.server if tls else None)
    ads = server.AdsServer(snapshots, registry, config, callbacks)
    await ads.start()
    return Harness(snapshots, ads, registry, callbacks, tls)


@pytest.fixture
async def ads(pki: Pki) -> AsyncIterator[Harness]:
    harness = await _harness(pki)
    yield harness
    await harness.server.stop(0)


@pytest.fixture
async def insecure_ads() -> AsyncIterator[Harness]:
    harness = await _harness(None)
    yield harness
    await harness.server.stop(0)


class Stream:
    """One ADS call with a background reader, so waiting for "no response" never
    cancels a read on the call itself."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                await self.inbox.put(response)
        except grpc.aio.AioRpcError as error:
            await self.inbox.put(error)

    async def send(self, message: Any) -> None:
        await self.call.write(message)

    async def receive(self) -> Any:
        item = await asyncio.wait_for(self.inbox.get(), TIMEOUT)
        if isinstance(item, grpc.aio.AioRpcError):
            raise item
        return item

    async def nothing(self) -> None:
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(self.inbox.get(), QUIET)
            raise AssertionError(f"unexpected response: {item}")

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self.reader


@contextlib.asynccontextmanager
async def sotw_stream(channel: grpc.aio.Channel) -> AsyncIterator[Stream]:
    stream = Stream(
        ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    )
    try:
        yield stream
    finally:
        await stream.close()


@contextlib.asynccontextmanager
async def delta_stream(channel: grpc.aio.Channel) -> AsyncIterator[Stream]:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    stream = Stream(stub.DeltaAggregatedResources())
    try:
        yield stream
    finally:
        await stream.close()


async def eventually(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_sotw_ack_flow_and_a_snapshot_update_wakes_the_stream(ads: Harness) -> None:
    ads.cache.set_snapshot(NODE_ID, snap("v1", CDS="a b", EDS="a b"))
    async with ads.channel() as channel, sotw_stream(channel) as stream:
        await stream.send(request("CDS"))
        first = await stream.receive()
        assert show(first) == "CDS v1 a,b #1"
        await stream.send(request("CDS", nonce=first.nonce, version="v1", node=None))
        await stream.send(request("EDS", ["a"], node=None))
        assert show(await stream.receive()) == "EDS v1 a #2"
        await stream.send(request("EDS", ["a"], nonce="2", version="v1", node=None))
        await stream.nothing()
        ads.cache.set_snapshot(NODE_ID, snap("v2", CDS="a b c", EDS="a@2 b"))
        assert show(await stream.receive()) == "CDS v2 a,b,c #3"
        assert show(await stream.receive()) == "EDS v2 a #4"
        await stream.send(request("CDS", nonce="3", version="v2", node=None))
        await eventually(
            lambda: ads.server.status()[0].acked_versions == {"CDS": "v2", "EDS": "v1"}
        )
        (status,) = ads.server.status()
        assert (status.node_id, status.identity, status.protocol) == (
            NODE_ID,
            "bookbuyer/bookbuyer",
            "sotw",
        )
        assert status.authenticated and status.last_nack is None
        assert ads.metric("osm_proxy_connect_count") == 1
        assert ads.metric("osm_proxy_response_send_success_count_total", type="CDS") == 2
        assert ads.metric("osm_proxy_xds_request_count_total", type="EDS") == 2
        assert (
            ads.metric("osm_proxy_config_update_time_count", resource_type="CDS", success="true")
            == 2
        )
    await eventually(lambda: not ads.server.status())
    assert ads.metric("osm_proxy_connect_count") == 0
    assert ads.callbacks.log == [
        f"connect {NODE_ID} sotw",
        "ack v1",
        "ack v1",
        "ack v2",
        f"disconnect {NODE_ID}",
    ]


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_a_response_over_the_clients_default_limit_is_warned_once_per_type(
    ads: Harness,
    protocol: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A proxy that keeps gRPC's default receive limit refuses such a response and
    reconnects, which the operator would otherwise see only as churn."""
    ads.cache.set_snapshot(NODE_ID, snap("v1", CDS="a b", EDS="a"))
    one = snap("v1", CDS="a b", EDS="a")
    sizes = {
        short: sum(len(one.packed(type_url, name).value) for name in names)
        for short, type_url, names in (
            ("CDS a", wellknown.CLUSTER_TYPE, ["a"]),
            ("CDS a b", wellknown.CLUSTER_TYPE, ["a", "b"]),
            ("EDS a", wellknown.ENDPOINT_TYPE, ["a"]),
        )
    }
    limit = max(sizes["CDS a"], sizes["EDS a"])
    assert sizes["CDS a b"] > limit  # the premise: only the CDS responses are over
    monkeypatch.setattr(server, "LARGE_RESPONSE_BYTES", limit)
    sotw = protocol == "sotw"
    with caplog.at_level("WARNING", logger=server.__name__):
        async with (
            ads.channel() as channel,
            sotw_stream(channel) if sotw else delta_stream(channel) as stream,
        ):
            for short, names in (("CDS", []), ("EDS", ["a"])):  # EDS: under the limit
                await stream.send(request(short, names) if sotw else delta_request(short, names))
                got = await stream.receive()
                await stream.send(
                    request(short, names, nonce=got.nonce, version="v1", node=None)
                    if sotw
                    else delta_request(short, nonce=got.nonce, node=None)
                )
            ads.cache.set_snapshot(NODE_ID, snap("v2", CDS="a b c d", EDS="a"))
            assert (await stream.receive()).type_url == wellknown.CLUSTER_TYPE  # over again
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, warnings
    assert f"proxy {NODE_ID}: a CDS response of" in warnings[0]
    assert "xds.max_receive_message_length" in warnings[0]


async def test_sotw_nack_keeps_the_last_good_version_and_is_not_resent(ads: Harness) -> None:
    ads.cache.set_snapshot(NODE_ID, snap("v1", CDS="a"))
    async with ads.channel() as channel, sotw_stream(channel) as stream:
        await stream.send(request("CDS"))
        assert show(await stream.receive()) == "CDS v1 a #1"
        await stream.send(request("CDS", nonce="1", version="v1", node=None))
        ads.cache.set_snapshot(NODE_ID, snap("v2", CDS="a bad"))
        assert show(await stream.receive()) == "CDS v2 a,bad #2"
        await stream.send(
            request("CDS", nonce="2", version="v1", error="cluster bad: no", node=None)
        )
        await stream.nothing()
        ads.cache.set_snapshot(NODE_ID, snap("v2", CDS="a bad"))
        await stream.nothing()
        (status,) = ads.server.status()
        assert status.acked_versions == {"CDS": "v1"}
        assert status.last_nack is not None
        assert (status.last_nack.type, status.last_nack.version, status.last_nack.message) == (
            "CDS",
            "v2",
            "cluster bad: no",
        )
        assert status.last_nack.resource_names == ("a", "bad")
        assert ads.metric("osm_proxy_nack_count_total", type="CDS") == 1
        ads.cache.set_snapshot(NODE_ID, snap("v3", CDS="a good"))
        assert show(await stream.receive()) == "CDS v3 a,good #3"
    assert "nack v2: cluster bad: no" in ads.callbacks.log


async def test_delta_reconnect_resumes_from_initial_resource_versions(ads: Harness) -> None:
    ads.cache.set_snapshot(NODE_ID, snap("v1", CDS="a b"))
    async with ads.channel() as channel:
        async with delta_stream(channel) as stream:
            await stream.send(delta_request("CDS"))
            first = await stream.receive()
            assert show_delta(first) == "CDS v1 +a,b - #1"
            await stream.send(delta_request("CDS", nonce="1", node=None))
            await eventually(lambda: ads.server.status()[0].acked_versions == {"CDS": "v1"})
        have = {r.name: r.version for r in first.resources}
        ads.cache.set_snapshot(NODE_ID, snap("v2", CDS="a b@2 c"))
        async with delta_stream(channel) as stream:
            await stream.send(delta_request("CDS", initial=have))
            assert show_delta(await stream.receive()) == "CDS v2 +b,c - #1"
            await stream.send(delta_request("CDS", nonce="1", node=None))
            ads.cache.set_snapshot(NODE_ID, snap("v3", CDS="b@2 c"))
            assert show_delta(await stream.receive()) == "CDS v3 + -a #2"
    assert ads.metric("osm_proxy_reconnect_count_total") == 1


async def test_delta_nack_is_recorded_and_not_resent(ads: Harness) -> None:
    ads.cache.set_snapshot(NODE_ID, snap("v1", CDS="a", EDS="a"))
    async with ads.channel() as channel, delta_stream(channel) as stream:
        await stream.send(delta_request("EDS", ["a"]))
        assert show_delta(await stream.receive()) == "EDS v1 +a - #1"
        await stream.send(delta_request("EDS", nonce="1", error="bad endpoints", node=None))
        await stream.nothing()
        ads.cache.set_snapshot(NODE_ID, snap("v2", CDS="a@2", EDS="a"))
        await stream.nothing()
        ads.cache.set_snapshot(NODE_ID, snap("v3", CDS="a@2", EDS="a@3"))
        assert show_delta(await stream.receive()) == "EDS v3 +a - #2"
        (status,) = ads.server.status()
        assert status.protocol == "delta"
        assert status.last_nack is not None and status.last_nack.message == "bad endpoints"


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_a_certificate_of_another_identity_is_refused(ads: Harness, protocol: str) -> None:
    ads.cache.set_snapshot(NODE_ID, snap("v1", CDS="a"))
    other = Identity("bookstore", "bookbuyer")
    async with ads.channel(other) as channel:
        opener = sotw_stream if protocol == "sotw" else delta_stream
        async with opener(channel) as stream:
            first = request("CDS") if protocol == "sotw" else delta_request("CDS")
            await stream.send(first)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stream.receive()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "spiffe://cluster.local/ns/bookstore/sa/bookbuyer" in str(caught.value.details())
    assert ads.metric("osm_proxy_auth_refused_count_total") == 1
    assert ads.metric("osm_proxy_connect_count") == 0
    assert ads.callbacks.log == []


async def test_a_client_without_a_certificate_cannot_connect(ads: Harness, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.bundle)
    target = f"127.0.0.1:{ads.server.port}"
    async with (
        grpc.aio.secure_channel(target, credentials) as channel,
        sotw_stream(channel) as stream,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.send(request("CDS"))
            await stream.receive()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_malformed_node_id_is_an_invalid_argument(ads: Harness) -> None:
    async with ads.channel() as channel, sotw_stream(channel) as stream:
        await stream.send(request("CDS", node="not-a-node-id"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.receive()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected <proxy-id>" in str(caught.value.details())


async def test_an_unknown_proxy_gets_its_snapshot_built_on_connect(ads: Harness) -> None:
    ads.callbacks.on_demand = snap("v7", CDS="x")
    async with ads.channel() as channel, sotw_stream(channel) as stream:
        await stream.send(request("CDS"))
        assert show(await stream.receive()) == "CDS v7 x #1"
    assert ads.cache.node_ids() == [NODE_ID]


async def test_a_proxy_only_gets_its_own_node_snapshot(ads: Harness) -> None:
    ads.cache.set_snapshot("p9.sidecar.bookstore.bookstore", snap("v1", CDS="secret-cluster"))
    async with ads.channel() as channel, sotw_stream(channel) as stream:
        await stream.send(request("CDS"))
        await stream.nothing()
        ads.cache.set_snapshot(NODE_ID, snap("v1", CDS="mine"))
        assert show(await stream.receive()) == "CDS v1 mine #1"


async def test_insecure_mode_trusts_the_node_id(insecure_ads: Harness) -> None:
    node_id = "p3.grpc.anything.elsewhere"
    insecure_ads.cache.set_snapshot(node_id, snap("v1", CDS="a", EDS="a"))
    async with insecure_ads.channel() as channel, sotw_stream(channel) as stream:
        await stream.send(request("CDS", node=node_id))
        assert show(await stream.receive()) == "CDS v1 a #1"
        (status,) = insecure_ads.server.status()
        assert (status.kind, status.authenticated) == ("grpc", False)


def test_the_default_port_is_osms() -> None:
    assert server.ServerConfig().port == 15128


async def test_update_tls_serves_the_new_certificate_on_new_handshakes(
    ads: Harness, pki: Pki, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    renewed = pki.ca.issue(
        LeafRequest.xds_server(("localhost",), (ipaddress.IPv4Address("127.0.0.1"),)), now
    )
    client = pki.ca.issue(LeafRequest.workload(Identity("bookbuyer", "bookbuyer")), now)
    (tmp_path / "c.pem").write_bytes(client.cert_pem)
    (tmp_path / "k.pem").write_bytes(client.key_pem)
    context = ssl.create_default_context(cadata=pki.bundle.decode())
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    context.set_alpn_protocols(["h2"])

    def served_serial() -> int:
        with (
            socket.create_connection(("127.0.0.1", ads.server.port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    before = await asyncio.to_thread(served_serial)
    assert before == x509.load_pem_x509_certificate(pki.server.cert_pem).serial_number
    ads.server.update_tls(server.TlsConfig(renewed.cert_pem, renewed.key_pem, pki.bundle))
    assert await asyncio.to_thread(served_serial) == renewed.serial


# -- real snapshots from osm.xds (the bookstore demo) ------------------------------------


@pytest.fixture(scope="module")
def bookbuyer() -> xds_snapshot.Snapshot:
    built = xds_generator.build_snapshots(xds_support.bookstore(permissive=False))
    (snapshot,) = [s for p, s in built.snapshots.items() if p.name == "bookbuyer-0"]
    return snapshot


def _node_of(snapshot: xds_snapshot.Snapshot) -> str:
    identity = snapshot.proxy.identity
    return str(
        NodeId.of(snapshot.proxy.id.name, Identity(identity.namespace, identity.service_account))
    )


def _serialized(snapshot: xds_snapshot.Snapshot, type_url: str) -> dict[str, bytes]:
    return {name: built.serialized for name, built in snapshot.of_type(type_url).items()}


def _name(packed: Any) -> str:
    message = xds_resources.unpack(packed)
    assert message is not None
    return str(getattr(message, "name", "") or getattr(message, "cluster_name", ""))


async def test_sotw_serves_a_built_snapshot_byte_for_byte(
    ads: Harness, bookbuyer: xds_snapshot.Snapshot
) -> None:
    key = _node_of(bookbuyer)
    ads.cache.set_snapshot(key, XdsSnapshot.of(bookbuyer))
    async with ads.channel() as channel, sotw_stream(channel) as stream:
        for short, type_url in [(wellknown.short_name(t), t) for t in wellknown.PUSH_ORDER]:
            wildcard = type_url in resources.WILDCARD_TYPES
            names = [] if wildcard else sorted(bookbuyer.of_type(type_url))
            await stream.send(request(short, names, node=key))
            response = await stream.receive()
            assert (response.type_url, response.version_info) == (
                type_url,
                bookbuyer.version(type_url),
            )
            got = {_name(packed): packed.value for packed in response.resources}
            assert got == _serialized(bookbuyer, type_url)
            ack = request(short, names, response.nonce, response.version_info, node=key)
            await stream.send(ack)
        await eventually(lambda: len(ads.server.status()[0].acked_versions) == 5)


async def test_delta_serves_a_built_snapshot_with_its_digests(
    ads: Harness, bookbuyer: xds_snapshot.Snapshot
) -> None:
    key = _node_of(bookbuyer)
    ads.cache.set_snapshot(key, XdsSnapshot.of(bookbuyer))
    async with ads.channel() as channel, delta_stream(channel) as stream:
        for type_url in wellknown.PUSH_ORDER:
            short = wellknown.short_name(type_url)
            await stream.send(delta_request(short, ["*"], node=key))
            response = await stream.receive()
            assert response.type_url == type_url
            assert {r.name: r.resource.value for r in response.resources} == _serialized(
                bookbuyer, type_url
            )
            assert {r.name: r.version for r in response.resources} == {
                name: built.digest for name, built in bookbuyer.of_type(type_url).items()
            }
            await stream.send(delta_request(short, nonce=response.nonce, node=key))
