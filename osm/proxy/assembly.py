"""Assembly: a set of xDS resources, by type URL -> one consistent `model.ProxyConfig`.

The one idea: resources are translated one at a time (`translate`, by the translator module
of their type), but applied only as a whole: `assemble` checks that every name a resource
refers to (route configuration, cluster, load assignment, secret) is in the set, and raises
`MissingReference` if not, so the runtime switches from one complete configuration to the
next in a single step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2

from osm.base import wellknown
from osm.proxy import model
from osm.proxy.translate import ConfigError, MissingReference, cds, eds, lds, rds, sds

_TRANSLATORS: dict[str, tuple[type[Any], Callable[[Any], Any], Callable[[Any], str]]] = {
    wellknown.LISTENER_TYPE: (listener_pb2.Listener, lds.translate, lambda m: m.name),
    wellknown.ROUTE_TYPE: (route_pb2.RouteConfiguration, rds.translate, lambda m: m.name),
    wellknown.CLUSTER_TYPE: (cluster_pb2.Cluster, cds.translate, lambda m: m.name),
    wellknown.ENDPOINT_TYPE: (
        endpoint_pb2.ClusterLoadAssignment,
        eds.translate,
        lambda m: m.cluster_name,
    ),
    wellknown.SECRET_TYPE: (secret_pb2.Secret, sds.translate, lambda m: m.name),
}


def resource_name(type_url: str, message: Any) -> str:
    """The name Envoy keys a resource by (cluster_name for load assignments)."""
    return _TRANSLATORS[type_url][2](message)


def translate(type_url: str, message: Any) -> Any:
    """Translate one resource of `type_url`; raises ConfigError (also for an unknown type)."""
    entry = _TRANSLATORS.get(type_url)
    if entry is None:
        raise ConfigError(
            type_url, "", "", f"resource type not supported ({', '.join(wellknown.PUSH_ORDER)})"
        )
    if not isinstance(message, entry[0]):
        raise ConfigError(type_url, "", "", f"expected {entry[0].DESCRIPTOR.full_name}")
    return entry[1](message)


def unpack_resource(type_url: str, resource: any_pb2.Any) -> Any:
    """An `Any` from a DiscoveryResponse -> the typed proto; raises ConfigError."""
    entry = _TRANSLATORS.get(type_url)
    if entry is None or resource.type_url != type_url:
        raise ConfigError(type_url, "", "", f"unexpected resource type {resource.type_url}")
    message = entry[0]()
    try:
        resource.Unpack(message)
    except Exception as error:  # DecodeError
        raise ConfigError(type_url, "", "", f"cannot decode: {error}") from None
    return message


def _chains(listener: model.Listener) -> Iterable[model.FilterChain]:
    yield from listener.filter_chains
    if listener.default_filter_chain is not None:
        yield listener.default_filter_chain


def assemble(
    raw: Mapping[str, Mapping[str, Any]],
    versions: Mapping[str, str] | None = None,
    translated: Mapping[str, Mapping[str, Any]] | None = None,
) -> model.ProxyConfig:
    """Translate (or reuse `translated`) and cross-check a full set; -> ProxyConfig.

    `raw[type_url][name]` are the protos. Raises ConfigError for an invalid resource and
    MissingReference when one names a route config, cluster, load assignment or secret
    that the set does not contain.
    """
    models: dict[str, dict[str, Any]] = {}
    for type_url in wellknown.PUSH_ORDER:
        cached = (translated or {}).get(type_url, {})
        models[type_url] = {
            name: cached[name] if name in cached else translate(type_url, message)
            for name, message in raw.get(type_url, {}).items()
        }
    config = model.ProxyConfig(
        listeners=models[wellknown.LISTENER_TYPE],
        route_configs=models[wellknown.ROUTE_TYPE],
        clusters=models[wellknown.CLUSTER_TYPE],
        load_assignments=models[wellknown.ENDPOINT_TYPE],
        secrets=models[wellknown.SECRET_TYPE],
        raw={type_url: dict(raw.get(type_url, {})) for type_url in wellknown.PUSH_ORDER},
        versions=dict(versions or {}),
    )
    check_consistency(config)
    return config


def check_consistency(config: model.ProxyConfig) -> None:
    """Every name a resource refers to exists; raises MissingReference otherwise."""

    def need(
        kind: str, name: str, holder: str, holder_name: str, what: str, pool: Mapping[str, Any]
    ) -> None:
        if name not in pool:
            raise MissingReference(holder, holder_name, what, f"{kind} {name!r} does not exist")

    def route_clusters(route_config: model.RouteConfig, holder: str, holder_name: str) -> None:
        for vhost in route_config.virtual_hosts:
            for route in vhost.routes:
                for target in route.action.targets:
                    need(
                        "cluster",
                        target.cluster,
                        holder,
                        holder_name,
                        f"virtual_hosts[{vhost.name!r}].routes[{route.name!r}]",
                        config.clusters,
                    )

    for listener in config.listeners.values():
        for chain in _chains(listener):
            where = f"filter_chains[{chain.name!r}]"
            if chain.tls is not None:
                need(
                    "secret",
                    chain.tls.cert_secret,
                    "Listener",
                    listener.name,
                    where,
                    config.secrets,
                )
                if chain.tls.validation_secret:
                    need(
                        "secret",
                        chain.tls.validation_secret,
                        "Listener",
                        listener.name,
                        where,
                        config.secrets,
                    )
            terminal = chain.terminal
            if isinstance(terminal, model.TcpProxy):
                for target in terminal.targets:
                    need(
                        "cluster", target.cluster, "Listener", listener.name, where, config.clusters
                    )
            elif terminal.rds_name is not None:
                need(
                    "route configuration",
                    terminal.rds_name,
                    "Listener",
                    listener.name,
                    where,
                    config.route_configs,
                )
            elif terminal.route_config is not None:
                route_clusters(terminal.route_config, "Listener", listener.name)
    for route_config in config.route_configs.values():
        route_clusters(route_config, "RouteConfiguration", route_config.name)
    for cluster in config.clusters.values():
        if cluster.kind == "EDS":
            need(
                "load assignment",
                cluster.eds_service_name or cluster.name,
                "Cluster",
                cluster.name,
                "eds_cluster_config",
                config.load_assignments,
            )
        if cluster.tls is not None:
            for secret in (cluster.tls.cert_secret, cluster.tls.validation_secret):
                if secret:
                    need(
                        "secret",
                        secret,
                        "Cluster",
                        cluster.name,
                        "transport_socket",
                        config.secrets,
                    )
