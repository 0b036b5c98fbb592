"""State-of-the-world ADS as tables: each step is a request or a new snapshot, followed by
the responses the stream sends at once (and the events the request produced)."""

from __future__ import annotations

from typing import Any

import pytest

from osm.ads import sotw
from osm.ads.protocol import ProtocolError
from osm.ads.resources import MappingSnapshot
from tests.unit.ads.adstesting import request, show, show_event, snap

S1 = snap("v1", CDS="a b", EDS="a b c", LDS="l", RDS="r", SDS="s")

CASES: dict[str, list[tuple[Any, ...]]] = {
    "wildcard CDS: an empty first request gets every cluster, the ACK nothing": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (request("CDS", nonce="1", version="v1"), [], ["ACK CDS v1"]),
    ],
    "a new snapshot version after the ACK is pushed; the legacy wildcard persists": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (request("CDS", nonce="1", version="v1"), []),
        (snap("v2", CDS="a b c"), ["CDS v2 a,b,c #2"]),
    ],
    "an unchanged version is not pushed again": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (request("CDS", nonce="1", version="v1"), []),
        (snap("v1", CDS="a b"), []),
    ],
    "no snapshot yet: the request waits for one": [
        (request("CDS"), []),
        (S1, ["CDS v1 a,b #1"]),
    ],
    "a change while a response is in flight waits for its ACK": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (snap("v2", CDS="a"), []),
        (request("CDS", nonce="1", version="v1"), ["CDS v2 a #2"], ["ACK CDS v1"]),
    ],
    "NACK: recorded, the rejected version is not resent, the next version is": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (request("CDS", nonce="1", version="v1"), []),
        (snap("v2", CDS="a b@2"), ["CDS v2 a,b #2"]),
        (
            request("CDS", nonce="2", version="v1", error="bad cluster b"),
            [],
            ["NACK CDS v2 a,b: bad cluster b"],
        ),
        (request("CDS", nonce="2", version="v1"), [], []),
        (snap("v2", CDS="a b@2"), []),
        (snap("v3", CDS="a b@3"), ["CDS v3 a,b #3"]),
        (request("CDS", nonce="3", version="v3"), [], ["ACK CDS v3"]),
    ],
    "a stale nonce is ignored, subscription included": [
        (snap("v1", EDS="a b"), []),
        (request("EDS", ["a"]), ["EDS v1 a #1"]),
        (snap("v2", EDS="a@2 b"), []),
        (request("EDS", ["a"], nonce="1", version="v1"), ["EDS v2 a #2"]),
        (request("EDS", ["a", "b"], nonce="1", version="v1"), [], ["STALE EDS #1"]),
        (request("EDS", ["a", "b"], nonce="", version="v1"), [], ["STALE EDS #"]),
        (request("EDS", ["a", "b"], nonce="2", version="v2"), ["EDS v2 a,b #3"], ["ACK EDS v2"]),
    ],
    "EDS is named: only the names asked for; new names get a response at once": [
        (S1, []),
        (request("EDS", ["a", "b"]), ["EDS v1 a,b #1"]),
        (request("EDS", ["a", "b", "c"], nonce="1", version="v1"), ["EDS v1 a,b,c #2"]),
        (request("EDS", ["a"], nonce="2", version="v1"), []),
        (snap("v2", EDS="a b c@2"), ["EDS v2 a #3"]),
    ],
    "a name the snapshot lacks gets an empty response, then the resource when it exists": [
        (S1, []),
        (request("EDS", ["x"]), ["EDS v1 - #1"]),
        (request("EDS", ["x"], nonce="1", version="v1"), []),
        (snap("v2", EDS="a x"), ["EDS v2 x #2"]),
    ],
    "CDS by name, then an empty list: unsubscribed, not a wildcard (gRFC A46)": [
        (S1, []),
        (request("CDS", ["a"]), ["CDS v1 a #1"]),
        (request("CDS", [], nonce="1", version="v1"), [], ["ACK CDS v1"]),
        (snap("v2", CDS="a b c"), []),
        (request("CDS", ["c"], nonce="1", version="v1"), ["CDS v2 c #2"]),
    ],
    "an explicit * is a wildcard, and names after a legacy wildcard end it": [
        (S1, []),
        (request("CDS", ["*"]), ["CDS v1 a,b #1"]),
        (request("CDS", ["*"], nonce="1", version="v1"), []),
        (snap("v2", CDS="a b c"), ["CDS v2 a,b,c #2"]),
        (request("CDS", ["a"], nonce="2", version="v2"), []),
        (snap("v3", CDS="a@3 b@3"), ["CDS v3 a #3"]),
    ],
    "an empty first request for EDS subscribes to nothing": [
        (S1, []),
        (request("EDS"), []),
        (snap("v2", EDS="a b"), []),
    ],
    "several types due at once go out CDS, EDS, LDS, RDS, SDS": [
        (request("SDS", ["s"]), []),
        (request("RDS", ["r"]), []),
        (request("LDS"), []),
        (request("EDS", ["a"]), []),
        (request("CDS"), []),
        (S1, ["CDS v1 a,b #1", "EDS v1 a #2", "LDS v1 l #3", "RDS v1 r #4", "SDS v1 s #5"]),
    ],
    "removals last: a dropped cluster stays until the route that used it is ACKed": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (request("CDS", nonce="1", version="v1"), []),
        (request("RDS", ["r"]), ["RDS v1 r #2"]),
        (request("RDS", ["r"], nonce="2", version="v1"), []),
        (
            snap("v2", CDS="a", RDS="r@2"),
            ["CDS v2+retained a,b #3", "RDS v2 r #4"],
        ),
        (request("CDS", nonce="3", version="v2+retained"), []),
        (request("RDS", ["r"], nonce="4", version="v2"), ["CDS v2 a #5"]),
        (request("CDS", nonce="5", version="v2"), [], ["ACK CDS v2"]),
    ],
    "a dropped cluster with no referrer update is removed at once": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (request("CDS", nonce="1", version="v1"), []),
        (request("RDS", ["r"]), ["RDS v1 r #2"]),
        (request("RDS", ["r"], nonce="2", version="v1"), []),
        (snap(CDS=("v2", "a"), RDS=("v1", "r")), ["CDS v2 a #3"]),
    ],
    "reconnect: the first request is answered even when it names the current version": [
        (S1, []),
        (request("CDS", version="v1", nonce="17"), ["CDS v1 a,b #1"]),
    ],
    "an ACKed nonce repeated is a request again (Envoy warming a changed EDS cluster)": [
        (S1, []),
        (request("EDS", ["a"]), ["EDS v1 a #1"]),
        (request("EDS", ["a"], nonce="1", version="v1"), [], ["ACK EDS v1"]),
        (request("EDS", ["a"], nonce="1", version="v1"), ["EDS v1 a #2"], []),
        (request("EDS", ["a"], nonce="2", version="v1"), [], ["ACK EDS v1"]),
        (snap("v1", EDS="a b c"), []),
    ],
    "an ACKed nonce repeated while a newer response is on its way is stale": [
        (S1, []),
        (request("EDS", ["a"]), ["EDS v1 a #1"]),
        (request("EDS", ["a"], nonce="1", version="v1"), []),
        (snap("v2", EDS="a@2"), ["EDS v2 a #2"]),
        (request("EDS", ["a"], nonce="1", version="v1"), [], ["STALE EDS #1"]),
        (request("EDS", ["a"], nonce="2", version="v2"), [], ["ACK EDS v2"]),
    ],
    "an ACKed CDS nonce repeated gets every cluster, kept ones included": [
        (S1, []),
        (request("CDS"), ["CDS v1 a,b #1"]),
        (request("CDS", nonce="1", version="v1"), []),
        (request("RDS", ["r"]), ["RDS v1 r #2"]),
        (request("RDS", ["r"], nonce="2", version="v1"), []),
        (snap("v2", CDS="a", RDS="r@2"), ["CDS v2+retained a,b #3", "RDS v2 r #4"]),
        (request("CDS", nonce="3", version="v2+retained"), []),
        (request("CDS", nonce="3", version="v2+retained"), ["CDS v2+retained a,b #5"]),
    ],
    "after a NACK, a newly subscribed name is answered (not a resend loop)": [
        (S1, []),
        (request("EDS", ["a"]), ["EDS v1 a #1"]),
        (request("EDS", ["a"], nonce="1", error="no"), [], ["NACK EDS v1 a: no"]),
        (request("EDS", ["a"], nonce="1", error="no"), [], []),
        (request("EDS", ["a", "b"], nonce="1", error="no"), ["EDS v1 a,b #2"], []),
    ],
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_sotw_table(steps: list[tuple[Any, ...]]) -> None:
    stream = sotw.SotwStream()
    current: MappingSnapshot | None = None
    for number, step in enumerate(steps, 1):
        action, expected = step[0], step[1]
        events = []
        if isinstance(action, MappingSnapshot):
            current = action
        else:
            events = stream.receive(action)
        sent = [show(r) for r in stream.respond(current)]
        assert (number, sent) == (number, expected)
        if len(step) > 2:
            assert (number, [show_event(e) for e in events]) == (number, step[2])


def test_node_is_remembered_from_the_first_request_only() -> None:
    stream = sotw.SotwStream()
    stream.receive(request("CDS"))
    stream.receive(request("LDS", node=None))
    assert stream.node is not None and stream.node.id == "p1.sidecar.bookbuyer.bookbuyer"
    with pytest.raises(ProtocolError, match="node id changed"):
        stream.receive(request("LDS", node="p2.sidecar.bookbuyer.bookbuyer"))


def test_first_request_without_node_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="node"):
        sotw.SotwStream().receive(request("CDS", node=None))


def test_request_without_type_is_a_protocol_error() -> None:
    message = request("CDS")
    message.type_url = ""
    with pytest.raises(ProtocolError, match="type_url"):
        sotw.SotwStream().receive(message)


def test_acked_versions_and_watched_types() -> None:
    stream = sotw.SotwStream()
    stream.receive(request("CDS"))
    stream.receive(request("EDS", ["a"]))
    stream.respond(S1)
    stream.receive(request("CDS", nonce="1", version="v1"))
    assert stream.acked_versions() == {S1_CDS: "v1"}
    assert stream.type_urls == {S1_CDS, S1_EDS}


S1_CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
S1_EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
