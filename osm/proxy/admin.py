"""The admin interface on 127.0.0.1:15000: /stats, /stats/prometheus, /ready, /config_dump,
/clusters, /listeners, /server_info - the endpoints (and output shapes) of Envoy's admin
that tools use. /server_info also says whether the data plane runs compiled (mypyc).

The one idea: the admin reads the proxy's state at request time and never changes it;
`/config_dump` is Envoy's ConfigDump proto built from the raw resources we applied (private
keys redacted) and rendered with `MessageToDict`, so it reads exactly like Envoy's. Its
protos are imported by the first `/config_dump`, so they cost a sidecar nothing at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, timestamp_pb2

import osm
from osm.base import wellknown
from osm.proxy import compiled, http1
from osm.proxy.server import Sidecar


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def config_dump(proxy: Sidecar, include_eds: bool = False) -> dict[str, Any]:
    """Envoy's /config_dump as a dict (dynamic resources only: everything comes from xDS).

    The admin protos (``config_dump_pb2`` pulls in Envoy's whole bootstrap tree) are
    imported here, on the first dump, not on the sidecar's start path."""
    from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2
    from envoy.extensions.filters.listener.http_inspector.v3 import (  # noqa: F401
        http_inspector_pb2,  # `translate.lds` tells listener filters by type URL; rendering an Any
    )
    from envoy.extensions.filters.listener.original_dst.v3 import (  # noqa: F401
        original_dst_pb2,
    )
    from envoy.extensions.filters.listener.tls_inspector.v3 import (  # noqa: F401
        tls_inspector_pb2,
    )
    from google.protobuf import json_format

    cfg = proxy.current_config
    versions = cfg.versions
    stamps = proxy.updated_at

    def stamp(type_url: str, name: str) -> timestamp_pb2.Timestamp:
        return _timestamp(stamps.get((type_url, name), 0.0))

    clusters = config_dump_shared_pb2.ClustersConfigDump(
        version_info=versions.get(wellknown.CLUSTER_TYPE, "")
    )
    for name, message in sorted(cfg.raw.get(wellknown.CLUSTER_TYPE, {}).items()):
        clusters.dynamic_active_clusters.add(
            version_info=versions.get(wellknown.CLUSTER_TYPE, ""),
            cluster=_pack(message),
            last_updated=stamp(wellknown.CLUSTER_TYPE, name),
        )
    listeners = config_dump_shared_pb2.ListenersConfigDump(
        version_info=versions.get(wellknown.LISTENER_TYPE, "")
    )
    for name, message in sorted(cfg.raw.get(wellknown.LISTENER_TYPE, {}).items()):
        entry = listeners.dynamic_listeners.add(name=name)
        entry.active_state.version_info = versions.get(wellknown.LISTENER_TYPE, "")
        entry.active_state.listener.CopyFrom(_pack(message))
        entry.active_state.last_updated.CopyFrom(stamp(wellknown.LISTENER_TYPE, name))
    routes = config_dump_shared_pb2.RoutesConfigDump()
    for name, message in sorted(cfg.raw.get(wellknown.ROUTE_TYPE, {}).items()):
        routes.dynamic_route_configs.add(
            version_info=versions.get(wellknown.ROUTE_TYPE, ""),
            route_config=_pack(message),
            last_updated=stamp(wellknown.ROUTE_TYPE, name),
        )
    secrets = config_dump_pb2.SecretsConfigDump()
    for name, message in sorted(cfg.raw.get(wellknown.SECRET_TYPE, {}).items()):
        redacted = secret_pb2.Secret()
        redacted.CopyFrom(message)
        if redacted.HasField("tls_certificate"):
            redacted.tls_certificate.private_key.Clear()
            redacted.tls_certificate.private_key.inline_string = "[redacted]"
        secrets.dynamic_active_secrets.add(
            name=name,
            version_info=versions.get(wellknown.SECRET_TYPE, ""),
            secret=_pack(redacted),
            last_updated=stamp(wellknown.SECRET_TYPE, name),
        )
    dump = config_dump_pb2.ConfigDump()
    parts: list[Any] = [clusters, listeners, routes, secrets]
    if include_eds:
        endpoints = config_dump_shared_pb2.EndpointsConfigDump()
        for name, message in sorted(cfg.raw.get(wellknown.ENDPOINT_TYPE, {}).items()):
            endpoints.dynamic_endpoint_configs.add(
                version_info=versions.get(wellknown.ENDPOINT_TYPE, ""),
                endpoint_config=_pack(message),
                last_updated=stamp(wellknown.ENDPOINT_TYPE, name),
            )
        parts.append(endpoints)
    for part in parts:
        dump.configs.add().CopyFrom(_pack(part))
    result: dict[str, Any] = json_format.MessageToDict(dump)
    return result


def clusters_text(proxy: Sidecar) -> str:
    """Envoy's /clusters text form (the lines tools grep for)."""
    lines: list[str] = []
    for name in sorted(proxy.runtime.clusters):
        runtime = proxy.runtime.clusters[name]
        breakers = runtime.cluster.circuit_breakers
        lines.append(f"{name}::observability_name::{runtime.cluster.stat_name}")
        for key, value in (
            ("max_connections", breakers.max_connections),
            ("max_pending_requests", breakers.max_pending_requests),
            ("max_requests", breakers.max_requests),
            ("max_retries", breakers.max_retries),
        ):
            lines.append(f"{name}::default_priority::{key}::{value}")
        now = proxy.options.clock()
        for host in runtime.hosts:
            prefix = f"{name}::{host.label}"
            lines.append(f"{prefix}::cx_active::{host.cx_active}")
            lines.append(f"{prefix}::rq_active::{host.active_requests}")
            health = "/failed_outlier_check" if host.ejected_until > now else "healthy"
            lines.append(f"{prefix}::health_flags::{health}")
            lines.append(f"{prefix}::weight::{host.weight}")
    return "\n".join(lines) + "\n"


class Admin:
    """The admin HTTP server (Connection: close per request; not on the data path)."""

    def __init__(self, proxy: Sidecar):
        self.proxy = proxy
        self.server: asyncio.Server | None = None
        self.address = ("", 0)
        self._routes: dict[str, Callable[[dict[str, list[str]]], tuple[int, str, str]]] = {
            "/stats": lambda q: (200, "text/plain", self._stats(q)),
            "/stats/prometheus": lambda q: (
                200,
                "text/plain; version=0.0.4",
                proxy.stats.prometheus(),
            ),
            "/ready": lambda q: self._ready(),
            "/config_dump": lambda q: (
                200,
                "application/json",
                json.dumps(config_dump(proxy, "include_eds" in q), indent=2),
            ),
            "/clusters": lambda q: (200, "text/plain", clusters_text(proxy)),
            "/listeners": lambda q: (200, "text/plain", self._listeners()),
            "/server_info": lambda q: (200, "application/json", self._server_info()),
        }

    def _stats(self, query: dict[str, list[str]]) -> str:
        text = self.proxy.stats.text()
        if "filter" in query:
            pattern = re.compile(query["filter"][0])
            text = "".join(line + "\n" for line in text.splitlines() if pattern.search(line))
        return text

    def _ready(self) -> tuple[int, str, str]:
        if self.proxy.initialized:
            return 200, "text/plain", "LIVE\n"
        return 503, "text/plain", "PRE_INITIALIZING\n"

    def _server_info(self) -> str:
        """Envoy's ServerInfo fields that apply, plus the modules that run compiled."""
        info = {
            "version": f"osm-py/{osm.__version__}/{'mypyc' if compiled() else 'pure'}",
            "state": "LIVE" if self.proxy.initialized else "PRE_INITIALIZING",
            "compiled_modules": list(compiled()),
        }
        return json.dumps(info, indent=2) + "\n"

    def _listeners(self) -> str:
        return "".join(
            f"{name}::{runtime.address[0]}:{runtime.address[1]}\n"
            for name, runtime in sorted(self.proxy.listeners.items())
        )

    async def start(
        self, host: str = wellknown.LOCALHOST, port: int = wellknown.PROXY_ADMIN_PORT
    ) -> None:
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        sockname = self.server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    def answer(self, head: http1.RequestHead) -> bytes:
        parts = urlsplit(head.target)
        handler = self._routes.get(parts.path)
        if handler is None:
            body, status, kind = "invalid path\n", 404, "text/plain"
        else:
            status, kind, body = handler(parse_qs(parts.query, keep_blank_values=True))
        payload = body.encode()
        headers = [
            ("content-type", kind),
            ("content-length", str(len(payload))),
            ("connection", "close"),
        ]
        return http1.response_head(status, headers) + (b"" if head.method == "HEAD" else payload)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = http1.RequestParser()
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), 10.0)
                if not data:
                    return
                events = parser.feed(data)
                heads = [event for event in events if isinstance(event, http1.RequestHead)]
                if heads:
                    writer.write(self.answer(heads[0]))
                    await writer.drain()
                    return
        except http1.ProtocolError as error:
            writer.write(http1.local_reply(error.status, error.message, False))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
