"""Node ids and proxy authentication by the client certificate's SPIFFE ID."""

from __future__ import annotations

import pytest

from osm.ads import auth
from osm.base.identity import Identity, InvalidNodeId, NodeId, ProxyKind


@pytest.mark.parametrize(
    ("text", "proxy_id", "kind", "identity"),
    [
        ("p1.sidecar.bookbuyer.bookbuyer", "p1", "sidecar", "bookbuyer/bookbuyer"),
        (
            "0b6d1a3e-9c1e-4f7e-8f62-1b2c3d4e5f60.grpc.default.app",
            "0b6d1a3e-9c1e-4f7e-8f62-1b2c3d4e5f60",
            "grpc",
            "app/default",
        ),
        ("pod-1.sidecar.svc.account.with.dots.ns", "pod-1", "sidecar", "ns/svc.account.with.dots"),
    ],
)
def test_node_ids_parse_and_print_back(text: str, proxy_id: str, kind: str, identity: str) -> None:
    parsed = NodeId.parse(text)
    assert (parsed.proxy_id, parsed.kind.value, str(parsed.identity)) == (
        proxy_id,
        kind,
        identity,
    )
    assert str(parsed) == text
    assert NodeId.of(proxy_id, Identity.parse(identity), ProxyKind(kind)) == parsed


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "proxy id ''"),
        ("p1", "proxy kind ''"),
        ("p1.envoy.sa.ns", "unknown proxy kind 'envoy'"),
        ("p1.sidecar.ns", "invalid service account ''"),
        ("P1.sidecar.sa.ns", "proxy id 'P1'"),
        ("p1.sidecar.sa.Ns", "invalid namespace 'Ns'"),
    ],
)
def test_bad_node_ids_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(InvalidNodeId, match="expected <proxy-id>") as caught:
        NodeId.parse(text)
    assert complaint in str(caught.value)


def _peer(*spiffe_ids: str) -> auth.Peer:
    values = [s.encode() for s in spiffe_ids] + [b"dns.example"]
    return auth.Peer.from_auth_context({"x509_subject_alternative_name": values})


def test_a_matching_spiffe_id_authenticates_the_node() -> None:
    node_id = NodeId.parse("p1.sidecar.bookbuyer.bookbuyer")
    peer = _peer("spiffe://cluster.local/ns/bookbuyer/sa/bookbuyer")
    assert auth.authenticate(peer, node_id, "cluster.local") == node_id.identity


@pytest.mark.parametrize(
    "spiffe_ids",
    [
        ("spiffe://cluster.local/ns/bookstore/sa/bookbuyer",),
        ("spiffe://cluster.local/ns/bookbuyer/sa/bookstore",),
        ("spiffe://other.domain/ns/bookbuyer/sa/bookbuyer",),
        ("spiffe://cluster.local/bookbuyer/bookbuyer",),
        (),
    ],
)
def test_any_other_identity_is_refused(spiffe_ids: tuple[str, ...]) -> None:
    node_id = NodeId.parse("p1.sidecar.bookbuyer.bookbuyer")
    with pytest.raises(auth.AuthenticationError, match="claims identity bookbuyer/bookbuyer"):
        auth.authenticate(_peer(*spiffe_ids), node_id, "cluster.local")
