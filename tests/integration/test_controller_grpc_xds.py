"""grpcio's own xDS client (proxyless gRPC) against a real `osm controller` process.

The mesh is applied through the controller's Kubernetes API as a user would (one object
per request, with the controller's admin kubeconfig): an apex Service
``greeter`` (appProtocol grpc) with backends ``greeter-v1``/``greeter-v2`` split 80/20,
Pods with status (IP, Ready) and Endpoints naming two real gRPC servers on 127.0.0.1.
The client is a Pod annotated ``osm-py.io/proxy-kind: grpc``; a subprocess runs grpcio's
xDS client with that pod's node id (``<pod>.grpc.<sa>.<ns>``) and the target name the
controller emits as an api_listener. Everything is checked from the outside: call counts
(binomial tolerance), and the controller's own ``/debug/proxies`` and ``/metrics``. The
first test covers a weight change on the same channel, a route regex RE2 (gRPC's engine)
would reject, refused by the API before any proxy sees it, a client restart and a
controller restart;
the second, with mTLS, a client certificate of another service account (refused with
PERMISSION_DENIED, for a plain ADS stub and for grpcio's xDS client with gRFC A65 "tls"
channel creds) and the right one.

The xDS client runs in a subprocess because ``GRPC_XDS_BOOTSTRAP`` is read once per
process and the xDS client is process-global.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from osm.base import wellknown
from osm.base.identity import Identity
from osm.ca import builtin
from osm.ca.issuer import LeafRequest
from osm.kube.errors import ApiError
from tests import kubeapi
from tests.controllers import ROOT, ControllerProcess
from tests.integration import grpcxds_app
from tests.unit.catalog import meshes

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

NS = "greet"
PORT = 50051
CALLS = 1000
SIGMAS = 4.0
CLIENT_POD = "client-0"
NODE_ID = f"{CLIENT_POD}.grpc.client.{NS}"
TARGET = f"greeter.{NS}.svc.cluster.local:{PORT}"
STEP_TIMEOUT = 30.0


# -- the mesh, as manifests ------------------------------------------------------------
def service_account(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": NS},
    }


def split(weights: tuple[int, int], matches: str = "") -> dict[str, Any]:
    """The greeter split; with ``matches`` a v1alpha4 split on that HTTPRouteGroup."""
    manifest = meshes.traffic_split(
        NS, "greeter-split", "greeter", [("greeter-v1", weights[0]), ("greeter-v2", weights[1])]
    )
    if matches:
        manifest["apiVersion"] = "split.smi-spec.io/v1alpha4"
        manifest["spec"]["matches"] = [{"kind": "HTTPRouteGroup", "name": matches}]
    return manifest


def lookahead_route_group() -> dict[str, Any]:
    return {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "lookahead", "namespace": NS},
        "spec": {"matches": [{"name": "not-x", "pathRegex": "/(?!x).*"}]},
    }


def mesh(ports: dict[str, int]) -> list[dict[str, Any]]:
    grpc_port = ((PORT, PORT, "grpc"),)
    return [
        meshes.namespace(NS),
        service_account("client"),
        service_account("greeter"),
        meshes.service(NS, "greeter", {"app": "greeter"}, grpc_port),
        meshes.service(NS, "greeter-v1", {"app": "greeter", "version": "v1"}, grpc_port),
        meshes.service(NS, "greeter-v2", {"app": "greeter", "version": "v2"}, grpc_port),
        meshes.pod(NS, "greeter-v1-0", {"app": "greeter", "version": "v1"}, "greeter", "127.0.0.1"),
        meshes.pod(NS, "greeter-v2-0", {"app": "greeter", "version": "v2"}, "greeter", "127.0.0.1"),
        meshes.pod(
            NS,
            CLIENT_POD,
            {"app": "client"},
            "client",
            "127.0.0.1",
            annotations={"osm-py.io/proxy-kind": "grpc"},
        ),
        endpoints("greeter-v1", [ports["greeter-v1"]]),
        endpoints("greeter-v2", [ports["greeter-v2"]]),
        endpoints("greeter", [ports["greeter-v1"], ports["greeter-v2"]]),
        split((80, 20)),
    ]


def endpoints(name: str, ports: list[int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": NS},
        "subsets": [
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": f"p{PORT}", "port": port}]}
            for port in ports
        ],
    }


# -- the client subprocess -------------------------------------------------------------
class XdsClient:
    """``python -m tests.integration.grpcxds_app`` with a bootstrap; commands with timeouts."""

    def __init__(self, bootstrap: Path, log: Path) -> None:
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.grpcxds_app", TARGET],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def command(self, text: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the xDS client did not answer {text!r} in {timeout}s") from None
        assert line, "the xDS client exited"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def calls(self, count: int = CALLS, mode: str = "") -> dict[str, Any]:
        return self.command(f"calls {count} {mode}".strip())

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def bootstrap(path: Path, xds_port: int, tls: dict[str, str] | None = None) -> Path:
    """A gRPC xDS bootstrap for the client pod. With ``tls`` (PEM file paths:
    ``ca_certificate_file``, ``certificate_file``, ``private_key_file``) the xDS channel is
    mTLS (gRFC A65 "tls" channel creds) and the same files back the certificate provider
    instances the controller's clusters name."""
    server: dict[str, Any] = {
        "server_uri": f"localhost:{xds_port}",
        "channel_creds": [{"type": "insecure"}],
        "server_features": ["xds_v3"],
    }
    document: dict[str, Any] = {
        "xds_servers": [server],
        "node": {"id": NODE_ID, "cluster": "client", "locality": {"zone": "local"}},
    }
    if tls is not None:
        server["channel_creds"] = [{"type": "tls", "config": tls}]
        provider = {"plugin_name": "file_watcher", "config": tls}
        document["certificate_providers"] = {"osm-identity": provider, "osm-root": provider}
    path.write_text(json.dumps(document))
    return path


# -- observing the controller ----------------------------------------------------------
def apply(controller: ControllerProcess, *objects: dict[str, Any]) -> None:
    kubeapi.run(controller.kubeconfig, lambda client: kubeapi.apply(client, *objects))


def proxy_status(controller: ControllerProcess, node_id: str = NODE_ID) -> dict[str, Any] | None:
    with urllib.request.urlopen(controller.http_url + "/debug/proxies", timeout=5) as response:
        body = json.loads(response.read())
    for entry in body["proxies"]:
        if entry["node_id"] == node_id:
            status: dict[str, Any] = entry
            return status
    return None


def metric(controller: ControllerProcess, name: str, **labels: str) -> float:
    """The sample with exactly ``labels``; without labels, the sum over all of them."""
    with urllib.request.urlopen(controller.http_url + "/metrics", timeout=5) as response:
        return kubeapi.metric(response.read().decode(), name, **labels)


def wait_for(what: str, check: Callable[[], Any], timeout: float = STEP_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def acked(
    controller: ControllerProcess, previous: str | None = None, *, nacks: int = 0
) -> Callable[[], Any]:
    """A check: the client's status once it has ACKed an RDS version other than
    ``previous``, with CDS, EDS and LDS ACKed too. A NACK from this stream fails at once
    unless ``nacks`` allows that many (NACKs are counted by the controller's metric)."""

    def check() -> Any:
        status = proxy_status(controller)
        if status is None:
            return None
        if status["last_nack"] and metric(controller, "osm_proxy_nack_count") > nacks:
            raise AssertionError(f"grpc NACKed the controller's config: {status['last_nack']}")
        versions = status["acked_versions"]
        if {"LDS", "RDS", "CDS", "EDS"} <= set(versions) and versions["RDS"] != previous:
            return status
        return None

    return check


def assert_split(counts: dict[str, Any], share_v1: float, calls: int = CALLS) -> None:
    """No errors, and greeter-v1's share within SIGMAS standard deviations."""
    assert sum(counts.values()) == calls and set(counts) <= {"greeter-v1", "greeter-v2"}, counts
    mean = calls * share_v1
    deviation = math.sqrt(calls * share_v1 * (1 - share_v1))
    assert abs(counts.get("greeter-v1", 0) - mean) <= SIGMAS * deviation, (counts, share_v1)


# -- fixtures --------------------------------------------------------------------------
@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    started = [grpcxds_app.Backend("greeter-v1"), grpcxds_app.Backend("greeter-v2")]
    try:
        yield {backend.name: backend.port for backend in started}
    finally:
        for backend in started:
            backend.stop()


@pytest.fixture
def insecure_controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    running = ControllerProcess.start(tmp_path / "state", "--xds-insecure")
    try:
        yield running
    finally:
        running.stop()


# -- tests -----------------------------------------------------------------------------
def test_grpc_xds_client_follows_traffic_split_nacks_and_reconnects(
    insecure_controller: ControllerProcess, backends: dict[str, int], tmp_path: Path
) -> None:
    controller = insecure_controller
    apply(controller, *mesh(backends))
    path = bootstrap(tmp_path / "bootstrap.json", controller.xds_port)
    clients: list[XdsClient] = []
    try:
        client = XdsClient(path, tmp_path / "client.log")
        clients.append(client)

        # 80/20 from the controller's own LDS/RDS/CDS/EDS, which grpc must accept.
        first = wait_for("the first ACKs", acked(controller))
        assert_split(client.calls(), 0.8)
        assert first["kind"] == "grpc" and first["last_nack"] is None, first

        # New weights through the API; same channel, no reconnect.
        apply(controller, split((20, 80)))
        second = wait_for("the new RDS ACK", acked(controller, first["acked_versions"]["RDS"]))
        time.sleep(0.2)  # the channel swaps its picker just after the ACK
        assert_split(client.calls(), 0.2)
        assert second["connected_since"] == first["connected_since"], "the client reconnected"

        # A route regex that RE2 (gRPC's engine, and Envoy's) rejects: a lookahead, in an
        # HTTPRouteGroup a v1alpha4 split matches on. The API refuses the group with the
        # field path and stores nothing (it once reached the client, which NACKed it), so
        # the split that would match on it is not applied either; the client stays on 20/80.
        with pytest.raises(ApiError) as refused:
            apply(controller, lookahead_route_group(), split((50, 50), matches="lookahead"))
        assert (refused.value.code, refused.value.details["kind"]) == (422, "HTTPRouteGroup")
        (cause,) = refused.value.causes
        assert cause.field == "spec.matches[0].pathRegex", cause
        assert "invalid perl operator" in cause.message, cause
        with pytest.raises(ApiError) as missing:
            kubeapi.run(
                controller.kubeconfig,
                lambda client: client.get("HTTPRouteGroup", NS, "lookahead"),
            )
        assert missing.value.code == 404
        time.sleep(0.5)
        status = proxy_status(controller)
        assert status is not None and status["last_nack"] is None, status
        assert status["acked_versions"]["RDS"] == second["acked_versions"]["RDS"]
        assert_split(client.calls(), 0.2)
        nacks = metric(controller, "osm_proxy_nack_count", type="RDS")

        # A valid split again: the client ACKs and follows it.
        apply(controller, split((50, 50)))
        third = wait_for(
            "the recovery ACK",
            acked(controller, second["acked_versions"]["RDS"], nacks=int(nacks)),
        )
        time.sleep(0.2)
        assert_split(client.calls(), 0.5)

        # Restart the client: a new stream, a new process, the same configuration.
        client.close()
        client = XdsClient(path, tmp_path / "client-2.log")
        clients.append(client)
        assert_split(client.calls(), 0.5)
        fourth = wait_for("the new client's ACKs", acked(controller))
        assert fourth["connected_since"] != third["connected_since"]
        assert fourth["acked_versions"]["RDS"] == third["acked_versions"]["RDS"]

        # Restart the controller on the same ports and state: the client keeps serving
        # calls from its last configuration meanwhile, then reconnects and follows again.
        controller.stop()
        assert_split(client.calls(200), 0.5, calls=200)
        controller = controller.restart()
        insecure_controller.process = controller.process  # so the fixture stops it
        wait_for("the reconnect", acked(controller))
        apply(controller, split((90, 10)))
        wait_for(
            "the RDS ACK after the restart", acked(controller, fourth["acked_versions"]["RDS"])
        )
        time.sleep(0.2)
        assert_split(client.calls(), 0.9)
    finally:
        for running in clients:
            running.close()


def test_xds_refuses_a_certificate_of_another_identity(
    tmp_path: Path, backends: dict[str, int]
) -> None:
    """With mTLS (the default), a stream whose node id names the client's service account
    but whose certificate is another's ends with PERMISSION_DENIED; the right one is
    served."""
    state = tmp_path / "state"
    controller = ControllerProcess.start(state)
    try:
        apply(controller, *mesh(backends))
        now = datetime.now(UTC)
        ca = builtin.BuiltinCA.open(state / "ca", now)
        bundle = ca.trust_bundle().pem

        def credentials(identity: Identity) -> grpc.ChannelCredentials:
            leaf = ca.issue(LeafRequest.bootstrap(identity, uuid.uuid4()), now)
            return grpc.ssl_channel_credentials(bundle, leaf.key_pem, leaf.cert_pem)

        async def first_response(identity: Identity) -> Any:
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{controller.xds_port}", credentials(identity)
            ) as channel:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                call = stub.StreamAggregatedResources()
                request = discovery_pb2.DiscoveryRequest(type_url=wellknown.CLUSTER_TYPE)
                request.node.id = NODE_ID
                await call.write(request)
                try:
                    return await asyncio.wait_for(call.read(), 10)
                finally:
                    call.cancel()

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            asyncio.run(first_response(Identity(NS, "greeter")))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"spiffe://cluster.local/ns/{NS}/sa/greeter" in (refused.value.details() or "")
        assert metric(controller, "osm_proxy_auth_refused_count") == 1

        served = asyncio.run(first_response(Identity(NS, "client")))
        assert served.type_url == wellknown.CLUSTER_TYPE
        assert {r.type_url for r in served.resources} == {wellknown.CLUSTER_TYPE}
        assert len(served.resources) == 2  # greeter-v1, greeter-v2 (the split's backends)

        # The same with grpcio's own xDS client over mTLS: refused, then served (its
        # clusters name the bootstrap's certificate providers; no calls, since the
        # backends here are plaintext).
        def files(identity: Identity) -> dict[str, str]:
            leaf = ca.issue(LeafRequest.bootstrap(identity, uuid.uuid4()), now)
            folder = tmp_path / identity.service_account
            folder.mkdir()
            paths = {
                "ca_certificate_file": (folder / "ca.pem", bundle),
                "certificate_file": (folder / "cert.pem", leaf.cert_pem),
                "private_key_file": (folder / "key.pem", leaf.key_pem),
            }
            for path, content in paths.values():
                path.write_bytes(content)
            return {key: str(path) for key, (path, _) in paths.items()}

        wrong = bootstrap(
            tmp_path / "wrong.json", controller.xds_port, files(Identity(NS, "greeter"))
        )
        client = XdsClient(wrong, tmp_path / "wrong.log")
        try:
            answer = client.calls(1, "fail-fast")
        finally:
            client.close()
        assert answer.get("!UNAVAILABLE") == 1, answer
        assert "PERMISSION_DENIED" in answer["!details"]["!UNAVAILABLE"], answer
        assert metric(controller, "osm_proxy_auth_refused_count") >= 2

        right = bootstrap(
            tmp_path / "right.json", controller.xds_port, files(Identity(NS, "client"))
        )
        client = XdsClient(right, tmp_path / "right.log")
        try:
            status = wait_for("the mTLS client's ACKs", acked(controller))
        finally:
            client.close()
        assert status["authenticated"] is True and status["last_nack"] is None, status
    finally:
        controller.stop()
