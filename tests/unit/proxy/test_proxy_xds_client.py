"""The sidecar's ADS client core, without gRPC: requests out for responses in.

The resources are the outbound sidecar's of the loopback mesh (`proxymesh`): LDS names
RDS ``rds-outbound.80``, which routes to EDS clusters whose TLS names two SDS secrets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from osm.base import wellknown
from osm.proxy import bootstrap, model, translate, xds_client
from osm.proxy.xds_client import CDS, EDS, LDS, RDS, SDS, ClientCore, Step
from tests.integration import proxymesh

pytestmark = pytest.mark.timeout(30)

NODE = base_pb2.Node(id="bookbuyer-0.sidecar.bookbuyer.bookbuyer", cluster="bookbuyer")
CERT = (b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN PRIVATE KEY-----\n")
CA = b"-----BEGIN CERTIFICATE-----\n"
SECRETS = ["root-cert-for-mtls-outbound:bookstore/bookstore", "service-cert:bookbuyer/bookbuyer"]


def resources(**kwargs: Any) -> dict[str, dict[str, Any]]:
    return proxymesh.outbound_resources(15003, CERT, CA, **kwargs)


def pack(message: Any) -> any_pb2.Any:
    return proxymesh.pack(message)


_nonces = itertools.count(100)


def sotw(type_url: str, version: str, messages: Iterable[Any]) -> Any:
    return discovery_pb2.DiscoveryResponse(
        type_url=type_url,
        version_info=version,
        nonce=str(next(_nonces)),
        resources=[pack(m) for m in messages],
    )


def delta(
    type_url: str,
    version: str,
    messages: Mapping[str, Any],
    removed: Iterable[str] = (),
) -> Any:
    response = discovery_pb2.DeltaDiscoveryResponse(
        type_url=type_url, system_version_info=version, nonce=str(next(_nonces))
    )
    for name, message in messages.items():
        response.resources.add(name=name, version=f"{name}@{version}", resource=pack(message))
    response.removed_resources.extend(removed)
    return response


def full_delta(version: str, **kwargs: Any) -> dict[str, Any]:
    """One delta response per type carrying every resource of `resources(**kwargs)`."""
    return {t: delta(t, version, items) for t, items in resources(**kwargs).items()}


def short(request: Any) -> str:
    """A request in one line: type, nonce, subscription, ACK/NACK."""
    kind = wellknown.short_name(request.type_url)
    parts = [kind]
    if request.HasField("node"):
        parts.append("node")
    if request.response_nonce:
        parts.append(
            ("NACK " if request.HasField("error_detail") else "ACK ") + request.response_nonce
        )
    if isinstance(request, discovery_pb2.DeltaDiscoveryRequest):
        if request.resource_names_subscribe:
            parts.append("+" + ",".join(request.resource_names_subscribe))
        if request.resource_names_unsubscribe:
            parts.append("-" + ",".join(request.resource_names_unsubscribe))
        if request.initial_resource_versions:
            parts.append("have " + ",".join(sorted(request.initial_resource_versions)))
    else:
        parts.append(f"v={request.version_info!r}")
        parts.append("[" + ",".join(request.resource_names) + "]")
    return " ".join(parts)


def apply(core: ClientCore, step: Step) -> Step:
    """What the I/O loop does with a step whose config the proxy accepts."""
    assert step.config is not None
    return step.then(core.applied(step.config))


def deadline(core: ClientCore) -> float | None:
    """`core.deadline`, read through a call (it changes behind mypy's narrowing)."""
    return core.deadline


def started(protocol: xds_client.ProtocolName = "delta") -> tuple[ClientCore, list[Any]]:
    core = ClientCore(NODE, wait_timeout=10.0)
    return core, core.start_stream(protocol)


# -- stream start --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("delta", ["CDS node +*", "LDS +*"]),
        ("sotw", ["CDS node v='' []", "LDS v='' []"]),
    ],
)
def test_first_requests_are_wildcards_with_node_on_the_first_only(
    protocol: xds_client.ProtocolName, expected: list[str]
) -> None:
    _, requests = started(protocol)
    assert [short(r) for r in requests] == expected
    assert requests[0].node.id == NODE.id


# -- one consistent update ---------------------------------------------------------------------
ORDERS = [
    (CDS, EDS, LDS, RDS, SDS),  # the server's push order
    (LDS, RDS, CDS, EDS, SDS),
    (LDS, CDS, RDS, SDS, EDS),
    (CDS, LDS, SDS, RDS, EDS),
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: "-".join(map(wellknown.short_name, o)))
def test_config_is_applied_once_complete_and_then_every_response_is_acked(
    order: tuple[str, ...],
) -> None:
    core, _ = started()
    responses = full_delta("v1")
    for type_url in order[:-1]:
        step = core.receive(responses[type_url], now=0.0)
        assert step.config is None, f"applied before {order[-1]} arrived"
        assert not any(r.response_nonce for r in step.requests), "ACK before apply"
        assert not step.rejections
    step = core.receive(responses[order[-1]], now=1.0)
    assert step.config is not None
    assert sorted(step.config.listeners) == ["outbound-listener"]
    assert step.config.versions[CDS] == "v1"
    acks = core.applied(step.config).requests
    assert sorted(r.response_nonce for r in acks) == sorted(r.nonce for r in responses.values())
    assert not any(r.HasField("error_detail") for r in acks)
    assert core.accepted_versions() == dict.fromkeys((CDS, LDS, EDS, RDS, SDS), "v1")
    assert core.deadline is None


def test_names_not_subscribed_are_ignored_and_nothing_applies_before_lds_and_cds() -> None:
    core, _ = started()
    responses = full_delta("v1")
    step = core.receive(responses[EDS], now=0.0)  # not asked for
    assert step == Step()
    core.receive(responses[CDS], now=0.0)
    assert core.receive(responses[EDS], now=0.0).config is None  # waits for LDS
    assert core.deadline is None  # nothing is wrong yet: no timeout before the first LDS


def test_subscriptions_follow_the_names_resources_reference() -> None:
    core, _ = started()
    responses = full_delta("v1")
    step = core.receive(responses[CDS], now=0.0)
    assert [short(r) for r in step.requests] == [
        f"EDS +{proxymesh.CLUSTER}",
        "SDS +" + ",".join(SECRETS),
    ]
    step = core.receive(responses[LDS], now=0.0)
    assert [short(r) for r in step.requests] == ["RDS +rds-outbound.80"]
    assert core.subscriptions(RDS) == {"rds-outbound.80"}


def test_a_split_adds_a_cluster_and_its_endpoints_then_dropping_it_unsubscribes() -> None:
    core, _ = started()
    for response in full_delta("v1").values():
        step = core.receive(response, now=0.0)
    apply(core, step)
    split = resources(weights=(80, 20))
    cds = delta(CDS, "v2", split[CDS])
    core.receive(cds, now=0.0)
    assert core.subscriptions(EDS) == {proxymesh.CLUSTER, proxymesh.CLUSTER_V2}
    rds = delta(RDS, "v2", split[RDS])
    core.receive(rds, now=0.0)
    eds = delta(EDS, "v2", {proxymesh.CLUSTER_V2: split[EDS][proxymesh.CLUSTER_V2]})
    step = core.receive(eds, now=0.0)
    assert step.config is not None, core.waiting_for
    weights = [
        (t.cluster, t.weight)
        for t in step.config.route_configs["rds-outbound.80"]
        .virtual_hosts[0]
        .routes[0]
        .action.targets
    ]
    assert weights == [(proxymesh.CLUSTER, 80), (proxymesh.CLUSTER_V2, 20)]
    acks = [short(r) for r in core.applied(step.config).requests]
    assert sorted(acks) == [f"CDS ACK {cds.nonce}", f"EDS ACK {eds.nonce}", f"RDS ACK {rds.nonce}"]
    # back to one backend: the route first, then the cluster removal; then unsubscribe
    single = resources()
    core.receive(delta(RDS, "v3", single[RDS]), now=0.0)
    step = core.receive(delta(CDS, "v3", {}, removed=[proxymesh.CLUSTER_V2]), now=0.0)
    assert step.config is not None
    followups = [short(r) for r in core.applied(step.config).requests]
    assert f"EDS -{proxymesh.CLUSTER_V2}" in followups
    assert core.subscriptions(EDS) == {proxymesh.CLUSTER}


# -- NACKs ---------------------------------------------------------------------------------------
def test_unsupported_field_is_nacked_at_once_with_the_precise_message() -> None:
    core, _ = started("sotw")
    good = resources()
    for type_url in (CDS, LDS):
        core.receive(sotw(type_url, "v1", good[type_url].values()), now=0.0)
    for type_url in (EDS, RDS, SDS):
        step = core.receive(sotw(type_url, "v1", good[type_url].values()), now=0.0)
    apply(core, step)
    bad = cluster_pb2.Cluster()
    bad.CopyFrom(good[CDS][proxymesh.CLUSTER])
    bad.lb_policy = cluster_pb2.Cluster.MAGLEV
    response = sotw(CDS, "v2", [bad])
    step = core.receive(response, now=0.0)
    assert step.config is None
    [nack] = step.requests
    assert nack.response_nonce == response.nonce
    assert nack.version_info == "v1"  # the last accepted version
    assert nack.error_detail.code == 3
    assert nack.error_detail.message == (
        f"Cluster '{proxymesh.CLUSTER}': lb_policy: "
        "MAGLEV not supported (ROUND_ROBIN, LEAST_REQUEST)"
    )
    assert core.last_rejection is not None and core.last_rejection.type_url == CDS
    assert core.accepted_versions()[CDS] == "v1"
    assert core.applied_config is not None and core.applied_config.versions[CDS] == "v1"


def test_missing_reference_waits_then_is_nacked_after_the_timeout() -> None:
    core, _ = started()
    complete = full_delta("v1")
    for response in complete.values():
        step = core.receive(response, now=0.0)
    apply(core, step)
    listener = complete[LDS].resources[0]
    moved = resources()[LDS]["outbound-listener"]
    hcm = proxymesh.hcm("outbound_bookstore", "rds-elsewhere")
    moved.filter_chains[0].filters[0].typed_config.CopyFrom(pack(hcm))
    response = delta(LDS, "v2", {listener.name: moved})
    step = core.receive(response, now=100.0)
    assert [short(r) for r in step.requests] == ["RDS +rds-elsewhere"]
    assert core.deadline == 110.0
    assert core.expire(105.0) == Step()
    empty_rds = delta(RDS, "v2", {})
    step = core.receive(empty_rds, now=106.0)
    assert step.config is None  # still missing; RDS is ACKed so the server may send more
    assert [short(r) for r in step.requests] == [f"RDS ACK {empty_rds.nonce}"]
    step = core.expire(110.0)
    nacks = [r for r in step.requests if r.HasField("error_detail")]
    assert [r.response_nonce for r in nacks] == [response.nonce]
    assert nacks[0].error_detail.message == (
        "Listener 'outbound-listener': filter_chains['outbound_bookstore/bookstore_80_http']: "
        "route configuration 'rds-elsewhere' does not exist"
    )
    assert step.config is None  # the proxy keeps v1
    assert deadline(core) is None
    assert core.subscriptions(RDS) == {"rds-outbound.80"}  # back to what v1 references


def test_a_listener_that_cannot_bind_is_nacked_and_the_rest_applied() -> None:
    core, _ = started()
    responses = full_delta("v1")
    for response in responses.values():
        step = core.receive(response, now=0.0)
    assert step.config is not None
    error = translate.ConfigError("Listener", "outbound-listener", "address", "cannot listen")
    step = core.apply_failed(error, now=0.0)
    [nack] = [r for r in step.requests if r.HasField("error_detail")]
    assert nack.response_nonce == responses[LDS].nonce
    assert "cannot listen" in nack.error_detail.message
    assert step.config is not None  # CDS/EDS/RDS/SDS without the listener are consistent
    assert not step.config.listeners


def test_an_unknown_type_is_nacked() -> None:
    core, _ = started()
    response = discovery_pb2.DeltaDiscoveryResponse(type_url="type.googleapis.com/x.Y", nonce="7")
    [nack] = core.receive(response, now=0.0).requests
    assert nack.response_nonce == "7" and "not supported" in nack.error_detail.message


# -- reconnect -------------------------------------------------------------------------------------
def test_delta_reconnect_sends_initial_resource_versions_and_node_again() -> None:
    core, _ = started()
    for response in full_delta("v1").values():
        step = core.receive(response, now=0.0)
    apply(core, step)
    again = core.start_stream("delta")
    assert [short(r) for r in again] == [
        f"CDS node +* have {proxymesh.CLUSTER}",
        "LDS +* have outbound-listener",
        f"EDS +{proxymesh.CLUSTER} have {proxymesh.CLUSTER}",
        "RDS +rds-outbound.80 have rds-outbound.80",
        "SDS +" + ",".join(SECRETS) + " have " + ",".join(SECRETS),
    ]
    assert again[0].initial_resource_versions[proxymesh.CLUSTER] == f"{proxymesh.CLUSTER}@v1"
    # the server has nothing new: empty answers are ACKed, the config stays
    for type_url in (CDS, EDS, LDS, RDS, SDS):
        step = core.receive(delta(type_url, "v1", {}), now=0.0)
    assert step.config is not None
    assert sorted(step.config.clusters) == [proxymesh.CLUSTER]


def test_sotw_reconnect_resubscribes_with_the_accepted_versions() -> None:
    core, _ = started("sotw")
    good = resources()
    for type_url in (CDS, EDS, LDS, RDS, SDS):
        step = core.receive(sotw(type_url, "v1", good[type_url].values()), now=0.0)
    apply(core, step)
    again = core.start_stream("sotw")
    assert [short(r) for r in again] == [
        "CDS node v='v1' []",
        "LDS v='v1' []",
        f"EDS v='v1' [{proxymesh.CLUSTER}]",
        "RDS v='v1' [rds-outbound.80]",
        "SDS v='v1' [" + ",".join(SECRETS) + "]",
    ]


def test_a_held_response_lacking_a_referenced_name_is_acked_early() -> None:
    """The server sends no more SDS until SDS is answered: holding it would deadlock."""
    core, _ = started()
    responses = full_delta("v1")
    for type_url in (CDS, LDS, EDS):
        core.receive(responses[type_url], now=0.0)
    secrets = resources()[SDS]
    partial = delta(SDS, "v1", {SECRETS[1]: secrets[SECRETS[1]]})
    step = core.receive(partial, now=0.0)
    assert [short(r) for r in step.requests] == [f"SDS ACK {partial.nonce}"]
    assert core.held_types() == [CDS, LDS, EDS]
    rest = delta(SDS, "v1", {SECRETS[0]: secrets[SECRETS[0]]})
    for response in (responses[RDS], rest):
        step = core.receive(response, now=0.0)
    assert step.config is not None
    assert sorted(step.config.secrets) == SECRETS


def test_sotw_subscription_change_of_a_held_type_acks_it_early() -> None:
    core, _ = started("sotw")
    good = resources()
    core.receive(sotw(CDS, "v1", good[CDS].values()), now=0.0)
    eds = sotw(EDS, "v1", good[EDS].values())
    core.receive(eds, now=0.0)  # held: the listener has not come
    split = resources(weights=(50, 50))
    step = core.receive(sotw(CDS, "v2", split[CDS].values()), now=0.0)
    [eds_request] = [r for r in step.requests if r.type_url == EDS]
    assert eds_request.response_nonce == eds.nonce and not eds_request.HasField("error_detail")
    assert eds_request.version_info == "v1"
    assert list(eds_request.resource_names) == sorted([proxymesh.CLUSTER, proxymesh.CLUSTER_V2])


# -- the I/O loop with a fake transport ---------------------------------------------------
class FakeStream:
    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.written: list[Any] = []

    async def write(self, request: Any) -> None:
        self.written.append(request)

    async def read(self) -> Any:
        if not self.script:
            await asyncio.Event().wait()  # open until cancelled
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        pass


class FakeConnector:
    def __init__(self, scripts: list[list[Any]]) -> None:
        self.scripts = scripts
        self.opened: list[str] = []
        self.streams: list[FakeStream] = []

    async def open(self, protocol: xds_client.ProtocolName) -> FakeStream:
        self.opened.append(protocol)
        stream = FakeStream(self.scripts.pop(0) if self.scripts else [])
        self.streams.append(stream)
        return stream


def unavailable() -> xds_client.StreamError:
    return xds_client.StreamError("UNAVAILABLE", "connection refused")


@pytest.mark.parametrize(
    ("base", "cap", "draw", "expected"),
    [
        (0.5, 30.0, 1.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
        (0.5, 30.0, 0.0, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]),
        (1.0, 4.0, 0.5, [0.75, 1.5, 3.0, 3.0]),
    ],
)
def test_backoff_doubles_up_to_the_cap_with_jitter(
    base: float, cap: float, draw: float, expected: list[float]
) -> None:
    backoff = xds_client.Backoff(base, cap, lambda: draw)
    assert [backoff.next() for _ in expected] == expected
    backoff.reset()
    assert backoff.next() == expected[0]


async def run_client(
    connector: FakeConnector, sleeps: int, protocol: Any = "auto"
) -> tuple[xds_client.XdsClient, list[float], list[model.ProxyConfig]]:
    """Run the loop until it has slept `sleeps` times (fake sleep: no real waiting)."""
    delays: list[float] = []
    applied: list[model.ProxyConfig] = []
    done = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= sleeps:
            client.stop()
            done.set()

    async def apply_config(cfg: model.ProxyConfig) -> None:
        applied.append(cfg)

    client = xds_client.XdsClient(
        ClientCore(NODE),
        connector,
        apply_config,
        protocol=protocol,
        backoff=xds_client.Backoff(0.5, 30.0, lambda: 1.0),
        sleep=sleep,
    )
    task = asyncio.get_running_loop().create_task(client.run())
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.wait_for(task, 5)
    return client, delays, applied


async def test_reconnects_with_growing_backoff_and_falls_back_to_sotw(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connector = FakeConnector(
        [
            [xds_client.StreamError("UNIMPLEMENTED", "Method not found")],
            [unavailable()],
            [xds_client.StreamError("PERMISSION_DENIED", "node x claims identity y")],
            [unavailable()],
        ]
    )
    with caplog.at_level(logging.INFO, logger="osm.proxy.xds_client"):
        client, delays, _ = await run_client(connector, sleeps=3)
    assert connector.opened == ["delta", "sotw", "sotw", "sotw"]  # no wait before the fallback
    assert delays == [0.5, 1.0, 2.0]
    assert "refused this proxy (PERMISSION_DENIED): node x claims identity y" in caplog.text
    assert client.last_error == "UNAVAILABLE: connection refused"


async def test_a_stream_that_served_config_resets_the_backoff() -> None:
    responses = full_delta("v1")
    connector = FakeConnector(
        [[unavailable()], [unavailable()], [*responses.values(), unavailable()], [unavailable()]]
    )
    client, delays, applied = await run_client(connector, sleeps=4, protocol="delta")
    assert delays == [0.5, 1.0, 0.5, 1.0]
    assert len(applied) == 1
    acks = [r for r in connector.streams[2].written if r.response_nonce]
    assert len(acks) == 5
    # the next stream resumes from what was accepted
    assert connector.streams[3].written[0].initial_resource_versions
    assert not client.connected


# -- the bootstrap file --------------------------------------------------------------------------
GOOD_NODE = {"id": "bookbuyer-0.sidecar.bookbuyer.bookbuyer"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"xds": {"address": "h:1", "insecure": True}}, "b.yaml: node: required field is missing"),
        (
            {"node": {"id": "x"}, "xds": {"address": "h:1", "insecure": True}},
            "b.yaml: node.id: invalid node id 'x'",
        ),
        (
            {"node": GOOD_NODE, "xds": {"address": "h:1"}},
            "b.yaml: xds: needs tls: {cert, key, ca} (mTLS with the mesh CA), or insecure: true",
        ),
        (
            {"node": GOOD_NODE, "xds": {"address": "h", "insecure": True}},
            "b.yaml: xds.address: expected HOST:PORT (e.g. 127.0.0.1:15128), got 'h'",
        ),
        (
            {"node": GOOD_NODE, "xds": {"address": "h:1", "tls": {"cert": "c.pem"}}},
            "b.yaml: xds.tls.key: required field is missing",
        ),
        (
            {
                "node": GOOD_NODE,
                "xds": {"address": "h:1", "tls": {"cert": "c", "key": "k", "ca": "a"}},
            },
            "b.yaml: xds.tls.cert: file '/nowhere/c' does not exist (a PEM file path)",
        ),
        (
            {"node": GOOD_NODE, "xds": {"address": "h:1", "insecure": True}, "admin": {"prot": 1}},
            "b.yaml: admin.prot: unknown field; valid fields here: address, port",
        ),
        (
            {
                "node": GOOD_NODE,
                "xds": {"address": "h:1", "insecure": True, "protocol": "rest"},
            },
            "b.yaml: xds.protocol: expected one of auto, delta, sotw, got 'rest'",
        ),
        (
            {
                "node": GOOD_NODE,
                "xds": {"address": "h:1", "insecure": True, "max_receive_message_length": 0},
            },
            "b.yaml: xds.max_receive_message_length: expected a number of bytes 1-4294967295, "
            "got 0",
        ),
        (
            {
                "node": GOOD_NODE,
                "xds": {"address": "h:1", "insecure": True, "max_receive_message_length": "4Mi"},
            },
            "b.yaml: xds.max_receive_message_length: expected a number of bytes 1-4294967295, "
            "got '4Mi'",
        ),
        (
            {
                "node": GOOD_NODE,
                "xds": {"address": "h:1", "insecure": True},
                "listeners": {"outbound-listener": "127.0.0.1:99999"},
            },
            "b.yaml: listeners.outbound-listener: expected a port number 0-65535, got 99999",
        ),
    ],
)
def test_bootstrap_errors_name_the_file_the_field_and_what_is_valid(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(bootstrap.BootstrapError) as raised:
        bootstrap.parse(document, "b.yaml", Path("/nowhere"))
    assert str(raised.value).startswith(message)


def test_bootstrap_defaults_and_overrides() -> None:
    boot = bootstrap.parse(
        {
            "node": {**GOOD_NODE, "metadata": {"pod_ip": "10.0.0.1"}},
            "xds": {"address": "[::1]:15128", "insecure": True},
            "listeners": {"outbound-listener": "127.0.0.1:0"},
        },
        "b.yaml",
    )
    assert (boot.admin_host, boot.admin_port) == ("127.0.0.1", 15000)
    assert boot.xds.target == "[::1]:15128" and boot.xds.tls is None
    assert boot.node_cluster == "bookbuyer"
    assert boot.bind_overrides == {"outbound-listener": ("127.0.0.1", 0)}
    assert boot.xds.protocol == "auto"
    assert boot.xds.max_receive_message_length == 4 * 1024 * 1024  # grpcio's default
    xds = {"address": "h:1", "insecure": True, "max_receive_message_length": 2**24}
    raised = bootstrap.parse({"node": GOOD_NODE, "xds": xds})
    assert raised.xds.max_receive_message_length == 2**24
