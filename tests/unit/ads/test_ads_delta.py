"""Delta (incremental) ADS as tables: each step is a request or a new snapshot, followed by
the responses sent at once, rendered ``"CDS <system-version> +<updated> -<removed> #<nonce>"``,
and optionally the events the request produced."""

from __future__ import annotations

from typing import Any

import pytest

from osm.ads import delta
from osm.ads.protocol import ProtocolError
from osm.ads.resources import MappingSnapshot
from tests.unit.ads.adstesting import (
    CDS,
    delta_request,
    show_delta,
    show_event,
    snap,
    version_of,
)

S1 = snap("v1", CDS="a b", EDS="a b c", LDS="l", RDS="r")

CASES: dict[str, list[tuple[Any, ...]]] = {
    "wildcard CDS: the first request gets every cluster": [
        (S1, []),
        (delta_request("CDS"), ["CDS v1 +a,b - #1"]),
        (delta_request("CDS", nonce="1"), [], ["ACK CDS v1"]),
    ],
    "only changed and new resources are sent, removed ones are named": [
        (S1, []),
        (delta_request("CDS"), ["CDS v1 +a,b - #1"]),
        (delta_request("CDS", nonce="1"), []),
        (snap("v2", CDS="a@2 b c"), ["CDS v2 +a,c - #2"]),
        (delta_request("CDS", nonce="2"), []),
        (snap("v3", CDS="a@2 c"), ["CDS v3 + -b #3"]),
    ],
    "a change while a response is in flight waits for its ACK": [
        (S1, []),
        (delta_request("CDS"), ["CDS v1 +a,b - #1"]),
        (snap("v2", CDS="a@2 b"), []),
        (delta_request("CDS", nonce="1"), ["CDS v2 +a - #2"]),
    ],
    "the first request is answered even when there is nothing": [
        (snap(CDS=("v0", "")), []),
        (delta_request("CDS"), ["CDS v0 + - #1"]),
        (delta_request("CDS", nonce="1"), []),
        (snap("v1", CDS="a"), ["CDS v1 +a - #2"]),
    ],
    "resume: initial_resource_versions at the current version are not resent": [
        (S1, []),
        (
            delta_request("CDS", initial={"a": version_of(CDS, "a"), "b": "old", "gone": "x"}),
            ["CDS v1 +b -gone #1"],
        ),
    ],
    "resume with everything current: an empty first answer": [
        (S1, []),
        (
            delta_request("CDS", initial={"a": version_of(CDS, "a"), "b": version_of(CDS, "b")}),
            ["CDS v1 + - #1"],
        ),
    ],
    "named EDS: subscribe and unsubscribe are diffs": [
        (S1, []),
        (delta_request("EDS", ["a"]), ["EDS v1 +a - #1"]),
        (delta_request("EDS", nonce="1"), [], ["ACK EDS v1"]),
        (delta_request("EDS", ["b"]), ["EDS v1 +b - #2"]),
        (delta_request("EDS", nonce="2"), []),
        (delta_request("EDS", unsubscribe=["a"]), []),
        (snap("v2", EDS="a@2 b c"), []),
        (snap("v3", EDS="a@2 b@3 c"), ["EDS v3 +b - #3"]),
    ],
    "an empty first request for EDS subscribes to nothing": [
        (S1, []),
        (delta_request("EDS"), []),
        (snap("v2", EDS="a@2"), []),
    ],
    "NACK: the rejected versions are not resent; newer versions are": [
        (S1, []),
        (delta_request("CDS"), ["CDS v1 +a,b - #1"]),
        (delta_request("CDS", nonce="1", error="bad b"), [], ["NACK CDS v1 a,b: bad b"]),
        (snap("v1", CDS="a b"), []),
        (snap("v2", CDS="a@2 b"), ["CDS v2 +a - #2"]),
        (delta_request("CDS", nonce="2"), [], ["ACK CDS v2"]),
        (snap("v3", CDS="a@2 b@3"), ["CDS v3 +b - #3"]),
    ],
    "a stale nonce's ACK is ignored but its subscription applies": [
        (S1, []),
        (delta_request("EDS", ["a"]), ["EDS v1 +a - #1"]),
        (delta_request("EDS", ["b"], nonce="7"), [], ["STALE EDS #7"]),
        (delta_request("EDS", nonce="1"), ["EDS v1 +b - #2"], ["ACK EDS v1"]),
    ],
    "explicit * subscribes to all; unsubscribing * keeps only named resources": [
        (S1, []),
        (delta_request("EDS", ["*", "a"]), ["EDS v1 +a,b,c - #1"]),
        (delta_request("EDS", nonce="1"), []),
        (delta_request("EDS", unsubscribe=["*"]), []),
        (snap("v2", EDS="a@2 b@2 c@2"), ["EDS v2 +a - #2"]),
    ],
    "several types at once go out CDS, EDS, LDS, RDS": [
        (delta_request("RDS", ["r"]), []),
        (delta_request("LDS"), []),
        (delta_request("EDS", ["a"]), []),
        (delta_request("CDS"), []),
        (S1, ["CDS v1 +a,b - #1", "EDS v1 +a - #2", "LDS v1 +l - #3", "RDS v1 +r - #4"]),
    ],
    "removals last: a cluster is removed after the route update is ACKed": [
        (S1, []),
        (delta_request("CDS"), ["CDS v1 +a,b - #1"]),
        (delta_request("CDS", nonce="1"), []),
        (delta_request("RDS", ["r"]), ["RDS v1 +r - #2"]),
        (delta_request("RDS", nonce="2"), []),
        (snap("v2", CDS="a c", RDS="r@2"), ["CDS v2 +c - #3", "RDS v2 +r - #4"]),
        (delta_request("CDS", nonce="3"), []),
        (delta_request("RDS", nonce="4"), ["CDS v2 + -b #5"]),
    ],
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_delta_table(steps: list[tuple[Any, ...]]) -> None:
    stream = delta.DeltaStream()
    current: MappingSnapshot | None = None
    for number, step in enumerate(steps, 1):
        action, expected = step[0], step[1]
        events = []
        if isinstance(action, MappingSnapshot):
            current = action
        else:
            events = stream.receive(action)
        sent = [show_delta(r) for r in stream.respond(current)]
        assert (number, sent) == (number, expected)
        if len(step) > 2:
            assert (number, [show_event(e) for e in events]) == (number, step[2])


def test_resource_versions_are_the_snapshot_ones_and_acked_ones_are_remembered() -> None:
    stream = delta.DeltaStream()
    stream.receive(delta_request("CDS"))
    (response,) = stream.respond(S1)
    assert {r.name: r.version for r in response.resources} == dict(S1.resource_versions(CDS))
    assert stream.client_versions(CDS) == {}
    stream.receive(delta_request("CDS", nonce=response.nonce))
    assert stream.client_versions(CDS) == dict(S1.resource_versions(CDS))
    assert stream.acked_versions() == {CDS: "v1"}


def test_first_request_without_node_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="node"):
        delta.DeltaStream().receive(delta_request("CDS", node=None))
