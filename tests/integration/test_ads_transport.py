"""The sidecar's grpclib ADS transport against real gRPC peers on loopback.

Peers: a real controller process (`tests.controllers.ControllerProcess`: grpcio, mTLS,
both protocols, the mesh written through its Kubernetes API) and a grpcio server that
offers only state-of-the-world ADS (so a delta stream ends UNIMPLEMENTED), refuses every
stream, or answers with a response as large as a test wants (the receive limit). The last
test runs the sidecar entry point as a process until it is ready and checks that grpcio
was never imported there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from osm.base import wellknown
from osm.base.identity import Identity
from osm.ca import builtin
from osm.proxy import ads_transport, bootstrap, main, model, xds_client
from osm.runtime import bootstrap as bootstrap_writer
from tests import kubeapi
from tests.conftest import free_port
from tests.controllers import ROOT, ControllerProcess
from tests.integration.test_sidecar_controller import mesh, ready_status

pytestmark = pytest.mark.timeout(90)

BUYER = Identity("bookbuyer", "bookbuyer")
NODE_ID = "bookbuyer-0.sidecar.bookbuyer.bookbuyer"
SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
WAIT = 20.0


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    running = ControllerProcess.start(tmp_path_factory.mktemp("transport") / "state")
    try:
        objects = mesh(free_port())
        kubeapi.run(running.kubeconfig, lambda client: kubeapi.apply(client, *objects))
        yield running
    finally:
        running.stop()


def issue(
    controller: ControllerProcess, directory: Path, server_name: str | None = None
) -> bootstrap.Bootstrap:
    """A bootstrap for bookbuyer-0 from the controller's CA, listeners on loopback."""
    written = bootstrap_writer.write(
        directory,
        proxy_id="bookbuyer-0",
        identity=BUYER,
        xds_address=f"127.0.0.1:{controller.xds_port}",
        issuer=builtin.BuiltinCA.open(controller.state_dir / "ca", builtin.utc_now()),
        now=builtin.utc_now(),
        admin=("127.0.0.1", free_port()),
        server_name=server_name,
        listeners={
            "outbound-listener": ("127.0.0.1", 0),
            "inbound-listener": ("127.0.0.1", 0),
            "inbound-prometheus-listener": ("127.0.0.1", 0),
        },
    )
    return bootstrap.load(written.path)


def open_sockets() -> int:
    """How many sockets this process has open."""
    count = 0
    for descriptor in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            count += descriptor.readlink().name.startswith("socket:")
    return count


async def first_responses(
    boot: bootstrap.Bootstrap, protocol: xds_client.ProtocolName
) -> list[Any]:
    """Open a stream, send the first requests, read until both LDS and CDS came."""
    core = xds_client.ClientCore(main.node_of(boot))
    stream = await ads_transport.GrpclibConnector.of(boot.xds).open(protocol)
    received: list[Any] = []
    try:
        for request in core.start_stream(protocol):
            await stream.write(request)
        async with asyncio.timeout(WAIT):
            while {r.type_url for r in received} < {
                wellknown.LISTENER_TYPE,
                wellknown.CLUSTER_TYPE,
            }:
                response = await stream.read()
                assert response is not None, "the server ended the stream"
                received.append(response)
    finally:
        await stream.close()
    return received


@pytest.mark.parametrize(
    ("protocol", "response_type"),
    [
        ("delta", discovery_pb2.DeltaDiscoveryResponse),
        ("sotw", discovery_pb2.DiscoveryResponse),
    ],
)
async def test_both_protocols_stream_from_the_controller_over_mtls_with_a_server_name(
    controller: ControllerProcess, tmp_path: Path, protocol: Any, response_type: type
) -> None:
    # Connect to 127.0.0.1 but check the certificate against one of its DNS names.
    boot = issue(controller, tmp_path, server_name="osm-controller")
    sockets = open_sockets()
    responses = await first_responses(boot, protocol)
    assert all(isinstance(r, response_type) for r in responses)
    clusters = [r for r in responses if r.type_url == wellknown.CLUSTER_TYPE]
    assert clusters[0].resources, "the controller sent no clusters"
    # Closed means closed: no socket waits for the server's TLS close_notify.
    await asyncio.sleep(0.05)
    assert open_sockets() == sockets


async def test_the_certificate_is_checked_against_the_server_name(
    controller: ControllerProcess, tmp_path: Path
) -> None:
    boot = issue(controller, tmp_path, server_name="not-the-controller.example")
    with pytest.raises(xds_client.StreamError) as caught:
        await ads_transport.GrpclibConnector.of(boot.xds).open("delta")
    assert caught.value.code == "UNAVAILABLE"
    assert "not-the-controller.example" in caught.value.details
    assert "certificate verify failed" in caught.value.details


async def test_a_server_certificate_from_another_ca_is_refused(
    controller: ControllerProcess, tmp_path: Path
) -> None:
    boot = issue(controller, tmp_path / "boot")
    stranger = builtin.BuiltinCA.open(tmp_path / "stranger-ca", builtin.utc_now())
    assert boot.xds.tls is not None
    boot.xds.tls.ca.write_bytes(stranger.trust_bundle().pem)
    with pytest.raises(xds_client.StreamError) as caught:
        await ads_transport.GrpclibConnector.of(boot.xds).open("delta")
    assert caught.value.code == "UNAVAILABLE"
    assert "certificate verify failed" in caught.value.details


async def test_unreadable_bootstrap_tls_files_are_unauthenticated(
    controller: ControllerProcess, tmp_path: Path
) -> None:
    boot = issue(controller, tmp_path)
    assert boot.xds.tls is not None
    boot.xds.tls.key.unlink()
    with pytest.raises(xds_client.StreamError) as caught:
        await ads_transport.GrpclibConnector.of(boot.xds).open("delta")
    assert caught.value.code == "UNAUTHENTICATED"
    assert "key.pem" in caught.value.details


async def test_nothing_listening_is_unavailable() -> None:
    connector = ads_transport.GrpclibConnector("127.0.0.1", free_port(), None)
    with pytest.raises(xds_client.StreamError) as caught:
        await connector.open("sotw")
    assert caught.value.code == "UNAVAILABLE"
    assert caught.value.details.startswith(f"cannot reach {connector.target}")


# ---------------------------------------------------------------------------------------------
# A grpcio peer without delta ADS: refusing, falling back, oversized responses


def cds_response(size: int = 0) -> discovery_pb2.DiscoveryResponse:
    """A CDS response; with `size`, one of exactly that many bytes on the wire."""
    response = discovery_pb2.DiscoveryResponse(
        type_url=wellknown.CLUSTER_TYPE, version_info="1", nonce="1"
    )
    if size:
        padding = response.resources.add(type_url=wellknown.CLUSTER_TYPE)
        # The padding's length prefix grows with it: settle on the length that fits.
        for _ in range(3):
            padding.value = bytes(max(0, len(padding.value) + size - response.ByteSize()))
        assert response.ByteSize() == size
    return response


@dataclasses.dataclass
class SotwOnlyServer:
    """State-of-the-world ADS only. Answers the first CDS request with `response` (an
    empty CDS response unless a test sets another); `refuse` ends every stream
    PERMISSION_DENIED after its first request."""

    refuse: bool = False
    response: discovery_pb2.DiscoveryResponse = dataclasses.field(default_factory=cds_response)
    requests: list[discovery_pb2.DiscoveryRequest] = dataclasses.field(default_factory=list)
    streams_ended: int = 0
    port: int = 0

    async def stream(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        try:
            async for request in requests:
                self.requests.append(request)
                if self.refuse:
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")
                if request.type_url == wellknown.CLUSTER_TYPE and not request.response_nonce:
                    yield self.response
        finally:
            self.streams_ended += 1


@pytest.fixture
async def sotw_server() -> AsyncIterator[SotwOnlyServer]:
    peer = SotwOnlyServer()
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(
        peer.stream,
        request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
        response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"StreamAggregatedResources": handler}),)
    )
    peer.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield peer
    finally:
        await server.stop(0)


async def eventually(predicate: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_delta_is_unimplemented_there_so_the_client_falls_back_to_sotw(
    sotw_server: SotwOnlyServer,
) -> None:
    connector = ads_transport.GrpclibConnector("127.0.0.1", sotw_server.port, None)
    stream = await connector.open("delta")
    try:
        with pytest.raises(xds_client.StreamError) as caught:
            await stream.read()
        assert caught.value.code == "UNIMPLEMENTED"
    finally:
        await stream.close()

    node = main.node_of(
        bootstrap.Bootstrap(NODE_ID, bootstrap.XdsServer("127.0.0.1", sotw_server.port, None))
    )

    async def apply(new: model.ProxyConfig) -> None:
        pass

    client = xds_client.XdsClient(
        xds_client.ClientCore(node),
        connector,
        apply,
        backoff=xds_client.Backoff(0.01, 0.05),
    )
    task = asyncio.get_running_loop().create_task(client.run())
    try:
        await eventually(lambda: client.connected, "a response on the SotW stream")
        assert client.protocol == "sotw"
        assert client.streams == 2  # delta (UNIMPLEMENTED), then SotW
        first = sotw_server.requests[0]
        assert first.node.id == NODE_ID
        assert {r.type_url for r in sotw_server.requests} >= {
            wellknown.CLUSTER_TYPE,
            wellknown.LISTENER_TYPE,
        }
    finally:
        client.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Closing the stream ends the call on the server at once (no lingering connection).
    await eventually(lambda: sotw_server.streams_ended == 1, "the server to see the end", 5.0)


async def test_the_servers_status_is_the_stream_error_for_reads_and_writes(
    sotw_server: SotwOnlyServer,
) -> None:
    sotw_server.refuse = True
    stream = await ads_transport.GrpclibConnector("127.0.0.1", sotw_server.port, None).open("sotw")
    request = discovery_pb2.DiscoveryRequest(type_url=wellknown.CLUSTER_TYPE)
    try:
        await stream.write(request)
        with pytest.raises(xds_client.StreamError) as caught:
            await stream.read()
        assert (caught.value.code, caught.value.details) == ("PERMISSION_DENIED", "not you")
        with pytest.raises(xds_client.StreamError) as again:
            await stream.write(request)
        assert again.value.code == "PERMISSION_DENIED"
    finally:
        await stream.close()


async def first_cds_response(connector: ads_transport.GrpclibConnector) -> Any:
    """Ask `connector`'s server for CDS on a SotW stream; its first response."""
    stream = await connector.open("sotw")
    try:
        await stream.write(discovery_pb2.DiscoveryRequest(type_url=wellknown.CLUSTER_TYPE))
        async with asyncio.timeout(WAIT):
            return await stream.read()
    finally:
        await stream.close()


async def test_a_response_over_4_mib_ends_the_stream_resource_exhausted_as_in_grpcio(
    sotw_server: SotwOnlyServer,
) -> None:
    size = 4 * 1024 * 1024 + 1
    sotw_server.response = cds_response(size)
    connector = ads_transport.GrpclibConnector("127.0.0.1", sotw_server.port, None)
    with pytest.raises(xds_client.StreamError) as caught:
        await first_cds_response(connector)
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    assert f"larger than max ({size} vs. 4194304)" in caught.value.details
    assert "xds.max_receive_message_length" in caught.value.details
    # The sidecar left the call: the server sees it end.
    await eventually(lambda: sotw_server.streams_ended == 1, "the server to see the end", 5.0)


@pytest.mark.parametrize(("limit", "accepted"), [(1000, True), (999, False)])
async def test_the_bootstraps_max_receive_message_length_is_the_limit(
    sotw_server: SotwOnlyServer, limit: int, accepted: bool
) -> None:
    sotw_server.response = cds_response(1000)
    boot = bootstrap.parse(
        {
            "node": {"id": NODE_ID},
            "xds": {
                "address": f"127.0.0.1:{sotw_server.port}",
                "insecure": True,
                "max_receive_message_length": limit,
            },
        }
    )
    connector = ads_transport.GrpclibConnector.of(boot.xds)
    if accepted:
        assert await first_cds_response(connector) == sotw_server.response
        return
    with pytest.raises(xds_client.StreamError) as caught:
        await first_cds_response(connector)
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    assert "larger than max (1000 vs. 999)" in caught.value.details


# ---------------------------------------------------------------------------------------------
# The process

PROBE = """
import sys
from osm.proxy import main
status = main.command(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("grpc", "grpclib"))
print("GRPC-MODULES", [m for m in loaded if m.split(".")[0] == "grpc"], flush=True)
print("GRPCLIB", "grpclib.client" in loaded, flush=True)
sys.exit(status)
"""


def test_the_sidecar_process_gets_ready_without_importing_grpcio(
    controller: ControllerProcess, tmp_path: Path
) -> None:
    boot = issue(controller, tmp_path / "boot")
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, "--bootstrap", str(boot.source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + WAIT
        while ready_status(boot.admin_port) != 200:
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "the sidecar did not get ready"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
        assert process.returncode == 0, output
        assert "GRPC-MODULES []" in output, output
        assert "GRPCLIB True" in output, output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
