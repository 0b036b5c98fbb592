"""Helpers for the ADS tests: tiny resources, snapshots with readable versions, requests,
and one-line renderings of responses and events for table-driven assertions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message

from osm.ads import resources
from osm.ads.protocol import Ack, Event, Nack, Stale
from osm.ads.resources import MappingSnapshot
from osm.base import wellknown
from osm.base.wellknown import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE

CDS, EDS, LDS, RDS, SDS = CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE
BY_SHORT = {"CDS": CDS, "EDS": EDS, "LDS": LDS, "RDS": RDS, "SDS": SDS}
NODE_ID = "p1.sidecar.bookbuyer.bookbuyer"


def resource(type_url: str, spec: str) -> tuple[str, Message]:
    """``"a"`` or ``"a@2"`` (name a, content variant 2) as a minimal resource of the type."""
    name, _, variant = spec.partition("@")
    tag = f"variant-{variant or '1'}"
    message: Message
    if type_url == CDS:
        message = cluster_pb2.Cluster(name=name, alt_stat_name=tag)
    elif type_url == EDS:
        message = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        message.policy.overprovisioning_factor.value = int(variant or "1")
    elif type_url == LDS:
        message = listener_pb2.Listener(name=name, stat_prefix=tag)
    elif type_url == RDS:
        message = route_pb2.RouteConfiguration(name=name)
        message.virtual_hosts.add(name=tag, domains=["*"])
    else:
        message = secret_pb2.Secret(name=name)
        message.generic_secret.secret.inline_string = tag
    return name, message


def snap(version: str | None = None, **types: str | tuple[str, str]) -> MappingSnapshot:
    """``snap("v1", CDS="a b@2", EDS=("v7", "a"))``: resources by short type name, each type
    versioned `version` unless a (version, specs) pair pins its own."""
    contents: dict[str, Mapping[str, Message]] = {}
    versions: dict[str, str] = {}
    for short, value in types.items():
        type_version, specs = value if isinstance(value, tuple) else (version, value)
        type_url = BY_SHORT[short]
        contents[type_url] = dict(resource(type_url, s) for s in specs.split())
        if type_version is not None:
            versions[type_url] = type_version
    return MappingSnapshot(contents, versions)


def version_of(type_url: str, spec: str) -> str:
    return resources.content_version(resource(type_url, spec)[1])


def request(
    short: str,
    names: Iterable[str] = (),
    nonce: str = "",
    version: str = "",
    error: str | None = None,
    node: str | None = NODE_ID,
) -> discovery_pb2.DiscoveryRequest:
    message = discovery_pb2.DiscoveryRequest(
        type_url=BY_SHORT[short],
        resource_names=list(names),
        response_nonce=nonce,
        version_info=version,
    )
    if node is not None:
        message.node.CopyFrom(base_pb2.Node(id=node))
    if error is not None:
        message.error_detail.code = 3
        message.error_detail.message = error
    return message


def delta_request(
    short: str,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    nonce: str = "",
    error: str | None = None,
    initial: Mapping[str, str] | None = None,
    node: str | None = NODE_ID,
) -> discovery_pb2.DeltaDiscoveryRequest:
    message = discovery_pb2.DeltaDiscoveryRequest(
        type_url=BY_SHORT[short],
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        initial_resource_versions=dict(initial or {}),
    )
    if node is not None:
        message.node.CopyFrom(base_pb2.Node(id=node))
    if error is not None:
        message.error_detail.code = 3
        message.error_detail.message = error
    return message


def resource_names(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    names = []
    for packed in response.resources:
        type_url = packed.type_url
        _, message = resource(type_url, "x")
        packed.Unpack(message)
        names.append(getattr(message, "name", "") or getattr(message, "cluster_name", ""))
    return names


def show(response: discovery_pb2.DiscoveryResponse) -> str:
    """``"CDS v1 a,b #1"``: type, version_info, resource names, nonce."""
    names = ",".join(resource_names(response)) or "-"
    short = wellknown.short_name(response.type_url)
    return f"{short} {response.version_info} {names} #{response.nonce}"


def show_delta(response: discovery_pb2.DeltaDiscoveryResponse) -> str:
    """``"CDS v1 +a,b -c #1"``: type, system version, updated names, removed names, nonce."""
    updated = ",".join(r.name for r in response.resources)
    removed = ",".join(response.removed_resources)
    short = wellknown.short_name(response.type_url)
    return f"{short} {response.system_version_info} +{updated} -{removed} #{response.nonce}"


def show_event(event: Event) -> str:
    short = wellknown.short_name(event.type_url)
    if isinstance(event, Ack):
        return f"ACK {short} {event.version}"
    if isinstance(event, Nack):
        return f"NACK {short} {event.version} {','.join(event.resource_names)}: {event.message}"
    assert isinstance(event, Stale)
    return f"STALE {short} #{event.nonce}"
