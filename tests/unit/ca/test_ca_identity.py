"""Identity names and request constructors: what each certificate kind says."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from osm.base.identity import Identity, InvalidIdentity
from osm.ca.errors import CAError, InvalidKeySpec
from osm.ca.issuer import LeafRequest
from osm.ca.keys import KeySpec


def test_names_of_an_identity() -> None:
    identity = Identity.parse("bookstore/bookbuyer")
    assert identity == Identity("bookstore", "bookbuyer")
    assert identity.spiffe_id() == "spiffe://cluster.local/ns/bookstore/sa/bookbuyer"
    assert identity.dns_name() == "bookbuyer.bookstore.cluster.local"
    assert identity.spiffe_id("example.org") == "spiffe://example.org/ns/bookstore/sa/bookbuyer"
    assert str(identity) == "bookstore/bookbuyer"


@pytest.mark.parametrize(
    "text",
    ["bookstore", "/sa", "ns/", "a/b/c", "Book/sa", "ns/SA", "ns/-sa", "n_s/sa", "x" * 64 + "/sa"],
)
def test_invalid_identities_are_refused(text: str) -> None:
    with pytest.raises(InvalidIdentity, match="invalid"):
        Identity.parse(text)


_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


@given(_label, st.lists(_label, min_size=1, max_size=3).map(".".join))
def test_parse_round_trips(namespace: str, service_account: str) -> None:
    identity = Identity(namespace, service_account)
    assert Identity.parse(str(identity)) == identity


def test_workload_request() -> None:
    request = LeafRequest.workload(Identity("ns", "sa"), timedelta(hours=1), "example.org")
    assert request.common_name == "sa.ns.example.org"
    assert request.dns_names == ("sa.ns.example.org",)
    assert request.uris == ("spiffe://example.org/ns/ns/sa/sa",)
    with pytest.raises(InvalidIdentity, match="trust domain"):
        LeafRequest.workload(Identity("ns", "sa"), trust_domain="Bad Domain")


def test_bootstrap_request_uses_osm_common_name_and_spiffe_uri() -> None:
    proxy = uuid.UUID("6f0c2f1e-0000-4000-8000-000000000001")
    request = LeafRequest.bootstrap(Identity("bookstore", "bookbuyer"), proxy)
    assert request.common_name == f"{proxy}.sidecar.bookbuyer.bookstore.cluster.local"
    assert request.uris == ("spiffe://cluster.local/ns/bookstore/sa/bookbuyer",)
    assert request.dns_names == ()


def test_xds_server_request() -> None:
    ip = ipaddress.IPv4Address("127.0.0.1")
    request = LeafRequest.xds_server(("osm-controller.osm-system.svc", "localhost"), (ip,))
    assert request.common_name == "osm-controller.osm-system.svc"
    assert request.ip_addresses == (ip,)
    with pytest.raises(CAError):
        LeafRequest.xds_server(())
    with pytest.raises(CAError, match="printable ASCII"):
        LeafRequest.xds_server(("bücher.example",))


def test_validity_must_be_positive() -> None:
    with pytest.raises(CAError, match="positive"):
        LeafRequest.workload(Identity("ns", "sa"), timedelta(0))


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("ecdsa-p256", KeySpec()),
        ("ECDSA", KeySpec()),
        ("rsa", KeySpec("rsa", 2048)),
        ("rsa-4096", KeySpec("rsa", 4096)),
    ],
)
def test_key_specs(text: str, spec: KeySpec) -> None:
    assert KeySpec.parse(text) == spec
    assert KeySpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["rsa-1024", "rsa-8192", "ed25519", "rsa-x"])
def test_bad_key_specs(text: str) -> None:
    with pytest.raises(InvalidKeySpec):
        KeySpec.parse(text)
