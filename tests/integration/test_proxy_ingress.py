"""A Python sidecar runs the control plane's IngressBackend config: clients outside the mesh
reach the app only through the ingress chains, as the IngressBackends say.

The config is what `osm.xds` builds for ``b/server-0`` of `xds_support.ingress_mesh`
(Python sidecar flavour), with the sources narrowed to 127.0.0.1, real certificates in
place of the placeholders and the local clusters pointed at the test's app. The sidecar
is told every connection's original destination (8080 or 8443), as iptables would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from osm.base.wellknown import CLUSTER_TYPE, PUSH_ORDER, SECRET_TYPE
from osm.catalog.ids import ProxyId
from osm.proxy import assembly, server
from osm.proxy.runtime import Options
from osm.xds import names
from osm.xds.generator import build_snapshots
from tests.integration import proxymesh
from tests.unit.catalog import meshes as m
from tests.unit.xds import xds_support

pytestmark = pytest.mark.timeout(60)

FQDN = "server.b.svc.cluster.local"
LOOPBACK = "127.0.0.1/32"


def resources(app_port: int, pki: proxymesh.Pki) -> dict[str, dict[str, object]]:
    state = xds_support.ingress_mesh(permissive=True, sidecar="python")
    narrowed = [
        m.ingress_backend(
            "b",
            "server-http",
            [{"name": "server", "port": {"number": 8080, "protocol": "http"}}],
            [{"kind": "IPRange", "name": LOOPBACK}],
            matches=("ingress-routes",),
        ),
        m.ingress_backend(
            "b",
            "server-https",
            [
                {
                    "name": "server",
                    "port": {"number": 8443, "protocol": "https"},
                    "tls": {"skipClientCertValidation": False, "sniHosts": [FQDN]},
                }
            ],
            [
                {"kind": "IPRange", "name": LOOPBACK},
                {"kind": "AuthenticatedPrincipal", "name": xds_support.INGRESS_PRINCIPAL},
            ],
        ),
    ]
    state = state.with_changes(upserts=m.parse(*narrowed))[0]
    snapshot = build_snapshots(state).snapshots[ProxyId("b", "server-0")]
    raw: dict[str, dict[str, object]] = {
        url: {name: built.message for name, built in snapshot.of_type(url).items()}
        for url in PUSH_ORDER
    }
    for name, cluster in raw[CLUSTER_TYPE].items():
        if name.endswith("|local"):
            socket_address = cluster.load_assignment.endpoints[0].lb_endpoints[0]  # type: ignore[attr-defined]
            socket_address.endpoint.address.socket_address.port_value = app_port
    cert, key, _ = pki.leaf("spiffe://cluster.local/ns/b/sa/server", FQDN)
    raw[SECRET_TYPE][names.SERVICE_CERT] = proxymesh.cert_secret(names.SERVICE_CERT, cert, key)
    raw[SECRET_TYPE][names.ROOT_CERT_INBOUND] = proxymesh.root_secret(
        names.ROOT_CERT_INBOUND, pki.ca_pem
    )
    return raw


@dataclass
class Ingress:
    pki: proxymesh.Pki
    sidecar: server.Sidecar
    destination: list[object]

    @property
    def port(self) -> int:
        return self.sidecar.listener_address(names.INBOUND_LISTENER)[1]

    async def get(
        self,
        target: int,
        path: str,
        *,
        source: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> int | None:
        """The status of ``GET path`` sent as if to ``target``; None: no answer."""
        self.destination[1] = target
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                self.port,
                local_addr=(source, 0),
                ssl=tls,
                server_hostname=FQDN if tls else None,
            )
        except (ssl.SSLError, ConnectionError):
            return None
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readline(), 5)
        except (ssl.SSLError, ConnectionError):
            return None
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return int(head.split()[1]) if head else None

    def client_tls(self, dns: str, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cadata=self.pki.ca_pem.decode())
        cert, key, _ = self.pki.leaf(f"spiffe://ingress.example/{dns}", dns)
        load_chain(context, cert, key)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def load_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    import os
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as handle:
        handle.write(cert + key)
    try:
        context.load_cert_chain(handle.name)
    finally:
        os.unlink(handle.name)


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[Ingress]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    app_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    pki = proxymesh.Pki.create()
    destination: list[object] = ["127.0.0.1", 8080]
    sidecar = server.Sidecar(
        Options(
            original_destination=lambda sock: (str(destination[0]), int(str(destination[1]))),
            bind_overrides={
                names.INBOUND_LISTENER: ("127.0.0.1", 0),
                names.OUTBOUND_LISTENER: ("127.0.0.1", 0),
                names.PROMETHEUS_LISTENER: ("127.0.0.1", 0),
            },
        )
    )
    await sidecar.apply(assembly.assemble(resources(app_port, pki)))
    try:
        yield Ingress(pki, sidecar, destination)
    finally:
        await sidecar.close()
        await runner.cleanup()


async def test_plaintext_ingress_from_its_sources_for_its_routes_only() -> None:
    async with running() as ingress:
        assert await ingress.get(8080, "/books/1") == 200
        assert await ingress.get(8080, "/health") == 200
        assert await ingress.get(8080, "/admin") == 404  # not in the HTTPRouteGroup
        assert await ingress.get(8080, "/books/1", source="127.0.0.2") is None  # not a source


async def test_tls_ingress_checks_the_client_certificate_name() -> None:
    async with running() as ingress:
        allowed = ingress.client_tls(xds_support.INGRESS_PRINCIPAL)
        assert await ingress.get(8443, "/anything", tls=allowed) == 200
        other = ingress.client_tls("intruder.example.com")
        assert await ingress.get(8443, "/anything", tls=other) == 403
        assert await ingress.get(8443, "/anything", source="127.0.0.2", tls=allowed) is None
