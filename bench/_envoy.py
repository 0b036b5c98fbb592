"""The Envoy pairs of bench/dataplane.py: the mesh they serve, their bootstraps, and the
configuration our controller serves them made static.

One idea: ``envoy-xds`` is configured by our control plane exactly as a pod is (the
bootstrap from `osm.injector.envoy_bootstrap.build`, ADS over mTLS with a bootstrap
certificate from the controller's CA, everything else from `osm.controller.server.Controller`
serving the manifests of `mesh_manifests`), and ``envoy-static`` is given the very
resources that controller served, turned into ``static_resources`` by `static_bootstrap`.
The two pairs differ only in how the configuration arrived, and in the static pair's own
ports (`static_ports`), moved so that both pairs live in the same two pods.

The mesh is in SMI mode: a TrafficTarget with an HTTPRouteGroup lets the client's service
account GET any path of the server's Service, so the inbound Envoy runs the network and
HTTP RBAC filters on the client's SPIFFE identity, as the Python sidecar pair does.

Node ids are the injector's (``<proxy uuid>.sidecar.<sa>.<ns>``): each pod carries its
``osm-proxy-uuid`` label, by which the controller finds it, as for an injected pod.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, descriptor, descriptor_pool, message_factory
from google.protobuf.message import Message

from osm.base import wellknown
from osm.base.identity import Identity, NodeId

log = logging.getLogger(__name__)

CONTROLLER_IP = "10.250.0.3"
"""The ADS server's address: a second address of the server pod's veth end, so both pods
reach it and nothing is routed off the machine."""
CLIENT_POD, SERVER_POD = "bookbuyer-bench", "bookstore-bench"
BUYER, STORE = Identity("bookbuyer", "bookbuyer"), Identity("bookstore", "bookstore")
PROXY_UUIDS: Mapping[str, uuid.UUID] = {
    pod: uuid.uuid5(uuid.NAMESPACE_DNS, f"{pod}.osm-py.bench") for pod in (CLIENT_POD, SERVER_POD)
}
"""The pods' ``osm-proxy-uuid`` labels, as the injector would have drawn them."""
NODES: Mapping[str, NodeId] = {
    "outbound": NodeId.of(str(PROXY_UUIDS[CLIENT_POD]), BUYER),
    "inbound": NodeId.of(str(PROXY_UUIDS[SERVER_POD]), STORE),
}
"""The proxy of each role: the client pod's Envoy is the outbound one, the server's inbound."""
PODS: Mapping[str, str] = {"outbound": CLIENT_POD, "inbound": SERVER_POD}
OWN_PORTS = (
    wellknown.PROXY_ADMIN_PORT,
    wellknown.PROXY_OUTBOUND_PORT,
    wellknown.PROXY_INBOUND_PORT,
    wellknown.PROXY_PROMETHEUS_PORT,
)
"""The ports an Envoy of the mesh binds: the static pair moves them (`static_ports`), the
xDS pair keeps OSM's, which its generated listeners name."""
_LOOPBACK_OR_ANY = frozenset({wellknown.LOCALHOST, "0.0.0.0"})


@dataclass(frozen=True, slots=True)
class Topology:
    """The bench's pods and Service: what the manifests must say for the generated
    configuration to carry the bench's traffic."""

    service_ip: str
    service_port: int
    app_port: int
    client_ip: str
    server_ip: str


def static_ports(offset: int) -> dict[int, int]:
    """Each of `OWN_PORTS` -> itself plus `offset`: the static pair's ports."""
    return {port: port + offset for port in OWN_PORTS}


# -- the mesh -------------------------------------------------------------------------------
def mesh_manifests(topology: Topology) -> list[dict[str, Any]]:
    """The mesh as manifests: two mesh namespaces with a service account and a pod each
    (status Running, Ready, the bench's pod IPs), the server's Service (ClusterIP = the
    bench's VIP) and Endpoints, SMI mode with a TrafficTarget allowing the client."""
    injected = {wellknown.SIDECAR_INJECTION_ANNOTATION: "enabled"}
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": wellknown.CONTROL_PLANE_NAMESPACE},
        },
        {
            "apiVersion": "config.openservicemesh.io/v1alpha2",
            "kind": "MeshConfig",
            "metadata": {
                "name": wellknown.MESH_CONFIG_NAME,
                "namespace": wellknown.CONTROL_PLANE_NAMESPACE,
            },
            "spec": {"traffic": {"enablePermissiveTrafficPolicyMode": False}},
        },
    ]
    pods = ((CLIENT_POD, BUYER, topology.client_ip), (SERVER_POD, STORE, topology.server_ip))
    for pod, identity, ip in pods:
        namespace, account = identity.namespace, identity.service_account
        documents += [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "annotations": injected},
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": namespace},
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod,
                    "namespace": namespace,
                    "labels": {
                        "app": account,
                        wellknown.PROXY_UUID_LABEL: str(PROXY_UUIDS[pod]),
                    },
                },
                "spec": {
                    "serviceAccountName": account,
                    "containers": [
                        {
                            "name": "app",
                            "image": "app",
                            "ports": [{"name": "http", "containerPort": topology.app_port}],
                        }
                    ],
                },
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            },
        ]
    store = {"name": STORE.service_account, "namespace": STORE.namespace}
    documents += [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": store,
            "spec": {
                "clusterIP": topology.service_ip,
                "selector": {"app": STORE.service_account},
                "ports": [
                    {
                        "name": "http",
                        "port": topology.service_port,
                        "targetPort": topology.app_port,
                        "appProtocol": "http",
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": store,
            "subsets": [
                {
                    "addresses": [{"ip": topology.server_ip}],
                    "ports": [{"name": "http", "port": topology.app_port}],
                }
            ],
        },
        {
            "apiVersion": "specs.smi-spec.io/v1alpha4",
            "kind": "HTTPRouteGroup",
            "metadata": {"name": "bookstore-routes", "namespace": STORE.namespace},
            "spec": {"matches": [{"name": "everything", "pathRegex": ".*", "methods": ["GET"]}]},
        },
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": {"name": "bookbuyer-access-bookstore", "namespace": STORE.namespace},
            "spec": {
                "destination": {"kind": "ServiceAccount", **store},
                "rules": [
                    {
                        "kind": "HTTPRouteGroup",
                        "name": "bookstore-routes",
                        "matches": ["everything"],
                    }
                ],
                "sources": [
                    {
                        "kind": "ServiceAccount",
                        "name": BUYER.service_account,
                        "namespace": BUYER.namespace,
                    }
                ],
            },
        },
    ]
    return documents


# -- the control plane (a child process in the server pod) ----------------------------------
async def serve_control_plane(state_dir: Path, topology: Topology, dump_dir: Path) -> None:
    """Our controller (CA in `state_dir`/ca, SQLite store, push loop, ADS server over mTLS on
    `CONTROLLER_IP`), started on a store that already holds the mesh, so its first build
    is complete. Once both proxies have a snapshot, writes what it serves each one to
    `dump_dir` (`write_resources`), prints "ready" and serves until SIGTERM."""
    from osm.controller import server
    from osm.model import manifest
    from osm.store import open_store

    documents = mesh_manifests(topology)
    loaded = manifest.load_objects(documents)
    if loaded.errors:
        raise RuntimeError(
            "the bench's mesh does not validate: " + "; ".join(map(str, loaded.errors))
        )
    store_url = f"sqlite:///{state_dir / 'store.db'}"
    store = await open_store(store_url)
    await store.apply(documents)
    await store.close()
    settings = server.Settings(
        state_dir=state_dir,
        store_url=store_url,
        api_host=wellknown.LOCALHOST,
        api_port=0,
        xds_host=CONTROLLER_IP,
        xds_port=wellknown.XDS_PORT,
    )
    controller = server.Controller(settings)
    await controller.start()
    try:
        assert controller.pusher is not None
        cache = controller.pusher.cache
        deadline = time.monotonic() + 30.0
        while any(cache.get(str(node)) is None for node in NODES.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no snapshot for {sorted(map(str, NODES.values()))} in 30 s")
            await asyncio.sleep(0.05)
        for role, node in NODES.items():
            snapshot = cache.get(str(node))
            assert snapshot is not None
            served = {
                type_url: {
                    name: snapshot.packed(type_url, name)
                    for name in snapshot.resource_versions(type_url)
                }
                for type_url in wellknown.PUSH_ORDER
            }
            write_resources(dump_dir / f"served-{role}.json", served)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        print("ready", flush=True)
        await stop.wait()
    finally:
        await controller.stop()


def write_resources(path: Path, served: Mapping[str, Mapping[str, any_pb2.Any]]) -> None:
    """The resources served to one proxy, by type URL and name, as serialized `Any`s in
    JSON (mode 0600: the secrets hold the proxy's private key)."""
    document = {
        type_url: {
            name: base64.b64encode(packed.SerializeToString()).decode()
            for name, packed in items.items()
        }
        for type_url, items in served.items()
    }
    descriptor_ = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor_, "w") as file:
        json.dump(document, file)


def read_resources(path: Path) -> dict[str, dict[str, Message]]:
    """What `write_resources` wrote, unpacked into their Envoy messages."""
    from osm.xds import generator  # noqa: F401  (loads every type the builders pack into Anys)

    document = json.loads(path.read_text())
    resources: dict[str, dict[str, Message]] = {}
    for type_url, items in document.items():
        resources[type_url] = {}
        for name, text in items.items():
            packed = any_pb2.Any.FromString(base64.b64decode(text))
            resources[type_url][name] = _unpack(packed)
    return resources


# -- bootstraps ------------------------------------------------------------------------------
def xds_bootstraps(ca_dir: Path) -> dict[str, bootstrap_pb2.Bootstrap]:
    """Each role's bootstrap as the injector makes it (`envoy_bootstrap.build`), with a
    bootstrap certificate (`LeafRequest.bootstrap`, a fresh proxy UUID) from the CA in
    `ca_dir`, the controller's, and the ADS server at `CONTROLLER_IP`."""
    from osm.ca import builtin
    from osm.ca.issuer import LeafRequest
    from osm.injector import envoy_bootstrap
    from osm.injector.probes import HealthProbes
    from osm.injector.values import BootstrapCertificate, XdsServer
    from osm.model.config import default_mesh_config

    now = builtin.utc_now()
    authority = builtin.BuiltinCA.open(ca_dir, now)
    xds = XdsServer(CONTROLLER_IP, wellknown.XDS_SERVER_NAME, wellknown.XDS_PORT)
    bootstraps = {}
    for role, node in NODES.items():
        proxy_uuid = uuid.UUID(node.proxy_id)
        issued = authority.issue(LeafRequest.bootstrap(node.identity, proxy_uuid), now)
        certificate = BootstrapCertificate(issued.cert_pem, issued.key_pem, issued.trust_bundle_pem)
        bootstraps[role] = envoy_bootstrap.build(
            node=node,
            xds=xds,
            certificate=certificate,
            sidecar=default_mesh_config().sidecar,
            probes=HealthProbes(),
        )
    return bootstraps


def static_bootstrap(
    dynamic: bootstrap_pb2.Bootstrap,
    resources: Mapping[str, Mapping[str, Message]],
    ports: Mapping[int, int],
) -> bootstrap_pb2.Bootstrap:
    """`dynamic` (a bootstrap that fetches everything over ADS) with `resources` (what ADS
    served it, by type URL and name) as ``static_resources`` instead:

    - no ``dynamic_resources`` and no cluster to the controller;
    - listeners and clusters as served, secrets as static secrets (every SDS reference
      keeps its name and loses its ``sds_config``, so Envoy looks it up among them);
    - an HTTP connection manager's RDS becomes its ``route_config``, the route
      configuration of that name; an EDS cluster becomes STATIC with the load assignment
      of its name;
    - the proxy's own ports move by `ports`: the admin's, the listeners', and those of
      clusters' loopback endpoints (the metrics cluster reaches the admin).

    Raises ValueError when a reference names a resource that was not served, when an
    `Any` holds a type this process has not loaded, or when any config source is left."""
    routes = _typed(resources, wellknown.ROUTE_TYPE, route_pb2.RouteConfiguration)
    assignments = _typed(resources, wellknown.ENDPOINT_TYPE, endpoint_pb2.ClusterLoadAssignment)

    def inline(message: Message) -> None:
        if isinstance(message, secret_pb2.SdsSecretConfig):
            message.ClearField("sds_config")
        elif isinstance(message, hcm_pb2.HttpConnectionManager) and message.HasField("rds"):
            name = message.rds.route_config_name
            if name not in routes:
                raise ValueError(f"RDS names route configuration {name!r}, which was not served")
            message.route_config.CopyFrom(routes[name])
        elif isinstance(message, cluster_pb2.Cluster) and message.type == cluster_pb2.Cluster.EDS:
            name = message.eds_cluster_config.service_name or message.name
            if name not in assignments:
                raise ValueError(f"cluster {message.name!r}: no load assignment {name!r} served")
            message.ClearField("eds_cluster_config")
            message.type = cluster_pb2.Cluster.STATIC
            message.load_assignment.CopyFrom(assignments[name])

    static = bootstrap_pb2.Bootstrap()
    static.CopyFrom(dynamic)
    static.ClearField("dynamic_resources")
    kept = [c for c in static.static_resources.clusters if c.name != wellknown.XDS_CLUSTER_NAME]
    static.static_resources.ClearField("clusters")
    static.static_resources.clusters.extend(kept)
    for listener in _typed(resources, wellknown.LISTENER_TYPE, listener_pb2.Listener).values():
        static.static_resources.listeners.append(listener)
    for cluster in _typed(resources, wellknown.CLUSTER_TYPE, cluster_pb2.Cluster).values():
        static.static_resources.clusters.append(cluster)
    for secret in _typed(resources, wellknown.SECRET_TYPE, secret_pb2.Secret).values():
        static.static_resources.secrets.append(secret)
    _walk(static, inline)
    _move(static.admin.address, ports)
    for listener in static.static_resources.listeners:
        _move(listener.address, ports)
    for cluster in static.static_resources.clusters:
        for locality in cluster.load_assignment.endpoints:
            for endpoint in locality.lb_endpoints:
                _move(endpoint.endpoint.address, ports)
    left = config_sources(static)
    if left:
        raise ValueError(f"config sources left in the static bootstrap: {', '.join(left)}")
    return static


def config_sources(message: Message) -> list[str]:
    """The paths of every `ConfigSource` in `message`, `Any`s unpacked (none is left in a
    static bootstrap)."""
    found: list[str] = []

    def visit(item: Message, path: str) -> None:
        if isinstance(item, config_source_pb2.ConfigSource):
            found.append(path)

    _walk(_copy(message), lambda item: None, visit)  # a copy: `_walk` packs Anys again
    return found


def _typed(
    resources: Mapping[str, Mapping[str, Message]], type_url: str, cls: type[Any]
) -> dict[str, Any]:
    items = dict(resources.get(type_url, {}))
    for name, item in items.items():
        if not isinstance(item, cls):
            raise ValueError(f"{type_url} {name!r} is a {type(item).__name__}")
    return {name: _copy(item) for name, item in items.items()}


def _copy(message: Message) -> Message:
    copied = type(message)()
    copied.CopyFrom(message)
    return copied


def _move(address: address_pb2.Address, ports: Mapping[int, int]) -> None:
    socket = address.socket_address
    if socket.address in _LOOPBACK_OR_ANY and socket.port_value in ports:
        socket.port_value = ports[socket.port_value]


def _unpack(packed: any_pb2.Any) -> Message:
    name = packed.TypeName()
    try:
        found = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        raise ValueError(f"an Any holds {name}, a type this process has not loaded") from None
    message = message_factory.GetMessageClass(found)()
    if not packed.Unpack(message):
        raise ValueError(f"cannot unpack {name}")
    return message


def _walk(
    message: Message,
    after: Callable[[Message], None],
    before: Callable[[Message, str], None] | None = None,
    path: str = "",
) -> None:
    """Depth-first over every message field (map values and `Any`s included: an `Any` is
    unpacked, walked and packed again), calling `before` on the way down and `after` on
    the way up, so `after` sees its children already changed."""
    if isinstance(message, any_pb2.Any):
        inner = _unpack(message)
        _walk(inner, after, before, f"{path}<{message.TypeName()}>")
        message.Pack(inner)
        return
    if before is not None:
        before(message, path)
    for field, value in message.ListFields():
        if field.type != descriptor.FieldDescriptor.TYPE_MESSAGE:
            continue
        items: Iterable[tuple[str, Message]]
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type != field.TYPE_MESSAGE:
                continue
            items = ((f"[{key!r}]", item) for key, item in value.items())
        elif field.is_repeated:
            items = ((f"[{index}]", item) for index, item in enumerate(value))
        else:
            items = (("", value),)
        for suffix, item in items:
            _walk(item, after, before, f"{path}.{field.name}{suffix}")
    after(message)


# -- checking a running Envoy ---------------------------------------------------------------
def parse_stats(text: str) -> dict[str, int]:
    """Envoy's admin ``/stats`` (``name: value`` lines) -> its counters and gauges;
    histogram lines are left out."""
    stats: dict[str, int] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(": ")
        if colon and value.strip().isdigit():
            stats[name.strip()] = int(value)
    return stats


def config_updates(stats: Mapping[str, int]) -> int:
    """How many configuration updates the Envoy has taken or refused, over every xDS
    subscription (``*.update_success`` and ``*.update_rejected``); 0 for a static one."""
    return sum(
        value
        for name, value in stats.items()
        if name.endswith((".update_success", ".update_rejected"))
    )


def stats_problems(
    stats: Mapping[str, int], *, listeners: int, clusters: int, xds: bool
) -> list[str]:
    """Why an Envoy has not taken its configuration, from its ``/stats``: any update
    rejected, a listener that failed or still warms, fewer `listeners` active or
    `clusters` known than it was given, and (with `xds`) no ADS connection or no LDS/CDS
    update accepted. Empty when it took it."""
    problems = [
        f"{name} = {value}"
        for name, value in sorted(stats.items())
        if name.endswith("update_rejected") and value
    ]
    wanted = {
        "listener_manager.total_listeners_active": listeners,
        "cluster_manager.active_clusters": clusters,
    }
    if xds:
        wanted |= {
            "control_plane.connected_state": 1,
            "listener_manager.lds.update_success": 1,
            "cluster_manager.cds.update_success": 1,
        }
    for name, least in wanted.items():
        if stats.get(name, 0) < least:
            problems.append(f"{name} = {stats.get(name, 0)}, expected >= {least}")
    for name in (
        "listener_manager.listener_create_failure",
        "listener_manager.total_listeners_warming",
    ):
        if stats.get(name, 0):
            problems.append(f"{name} = {stats[name]}")
    return problems
