"""Local mode's API server, started over a store: HTTPS with the API CA's server
certificate, and a kubeconfig per client written next to it.

`start` is what the controller runs in local mode, and what tests and benchmarks run to
get a real API (TLS, client certificates, Tables, OpenAPI) over any store. The API CA is
kept in ``<state dir>/apiserver`` (`osm.apiserver.auth`); kubeconfigs are written 0600.
With ``webhooks=True`` the given admission is wrapped by the webhook dispatcher
(`osm.apiserver.webhooks`), which calls what the stored webhook configurations name, as
kube-apiserver does; services resolve to their endpoints in the store unless a
``resolver`` says otherwise.
"""

from __future__ import annotations

import asyncio.sslproto
import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from osm import paths
from osm.apiserver import auth, openapi, tables
from osm.apiserver import server as apiserver
from osm.apiserver import webhooks as webhooks_
from osm.apiserver.resources import Resource
from osm.base import wellknown
from osm.kube import config as kube_config
from osm.store import api as store_api

ADMIN_USER = "osm-admin"
ADMIN_GROUPS = ("system:masters",)
SERVER_HOSTS = ("localhost",)


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    """A kubeconfig to write: where, for which user and groups."""

    path: Path
    user: str
    groups: tuple[str, ...] = ()


class ApiUnavailable(Exception):
    """The API cannot listen (the message says where and what to do)."""


@dataclasses.dataclass(slots=True)
class LocalApi:
    """A running API server; `stop` it."""

    server: apiserver.ApiServer
    runner: web.AppRunner
    url: str
    port: int
    ca: auth.ApiCA
    kubeconfig: Path
    """The admin user's kubeconfig."""
    webhooks: webhooks_.WebhookAdmission | None = None
    """The webhook dispatcher, when the API calls webhooks."""

    async def stop(self) -> None:
        await self.runner.cleanup()
        if self.webhooks is not None:
            await self.webhooks.close()

    def write_kubeconfig(self, client: Client) -> Path:
        """A kubeconfig with a new client certificate for ``client.user``."""
        credentials = self.ca.issue_client(client.user, client.groups)
        return kube_config.write_kubeconfig(
            client.path,
            server=self.url,
            ca_pem=credentials.ca_pem,
            cert_pem=credentials.cert_pem,
            key_pem=credentials.key_pem,
            user=client.user,
        )


async def start(
    store: store_api.Store,
    state_dir: Path,
    *,
    host: str = wellknown.LOCALHOST,
    port: int = wellknown.API_PORT,
    admission: apiserver.Admission | None = None,
    registry: CollectorRegistry | None = None,
    server_hosts: Sequence[str] = SERVER_HOSTS,
    clients: Sequence[Client] = (),
    settings: apiserver.Settings | None = None,
    webhooks: bool = False,
    resolver: webhooks_.ServiceResolver | None = None,
) -> LocalApi:
    """Serves ``store`` on ``host:port`` (0: any free port) and writes the admin's
    kubeconfig (`osm.paths.kubeconfig_path`) and one per ``clients``. Container logs
    are read from ``<state dir>/logs`` unless ``settings`` say otherwise. ``webhooks``:
    admission calls the stored webhook configurations around ``admission`` (the model's
    validation by default), their services found by ``resolver`` (default: the
    endpoints in the store, `osm.apiserver.webhooks.StoreResolver`)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    send_handshake_alerts()
    ca = auth.ApiCA.open(state_dir / "apiserver")
    credentials = ca.issue_server(list(server_hosts), sorted({wellknown.LOCALHOST, host}))
    dispatcher = (
        webhooks_.WebhookAdmission(
            admission or apiserver.ModelAdmission(), resolver or webhooks_.StoreResolver(store)
        )
        if webhooks
        else None
    )
    server = apiserver.ApiServer(
        store,
        certificate_user,
        dispatcher or admission,
        settings or apiserver.Settings(logs_dir=state_dir / "logs"),
        apiserver.Metrics.create(registry),
        tables=table,
        openapi=document,
    )
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=auth.server_ssl_context(credentials))
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        if dispatcher is not None:
            await dispatcher.close()
        raise ApiUnavailable(
            f"the API cannot listen on {host}:{port}: {error.strerror} (is another mesh "
            "running? use --port)"
        ) from error
    bound = bound_port(site, port)
    url = f"https://{host}:{bound}"
    local = LocalApi(server, runner, url, bound, ca, paths.kubeconfig_path(state_dir), dispatcher)
    local.write_kubeconfig(Client(local.kubeconfig, ADMIN_USER, ADMIN_GROUPS))
    for client in clients:
        local.write_kubeconfig(client)
    return local


def send_handshake_alerts() -> None:
    """Makes asyncio's TLS servers send the alert OpenSSL wrote when a handshake fails.

    asyncio (CPython 3.11-3.13, `asyncio.sslproto.SSLProtocol`) closes the connection on a
    failed handshake without flushing what OpenSSL put in its outgoing buffer, so a client
    whose certificate is refused (another CA) sees a bare EOF: kubectl then retries for
    about a minute and says only "Unable to connect to the server: EOF". Flushing first,
    kubectl says at once "remote error: tls: unknown certificate authority", as against
    kube-apiserver. Idempotent; does nothing where asyncio lacks the methods it wraps."""
    protocol = asyncio.sslproto.SSLProtocol
    complete = getattr(protocol, "_on_handshake_complete", None)
    flush = getattr(protocol, "_process_outgoing", None)
    if complete is None or flush is None or getattr(complete, "_osm_flushes", False):
        return

    def on_handshake_complete(self: Any, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            with contextlib.suppress(Exception):
                flush(self)
        complete(self, handshake_exc)

    on_handshake_complete._osm_flushes = True  # type: ignore[attr-defined]
    protocol._on_handshake_complete = on_handshake_complete  # type: ignore[method-assign]


def bound_port(site: web.TCPSite, asked: int) -> int:
    """The port a site listens on (the one the OS chose when asked for 0)."""
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else asked


def certificate_user(request: web.Request) -> str | None:
    """The request's user: its verified client certificate's CN (`osm.apiserver.auth`)."""
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    user = auth.identity_of(peercert)
    return user.name if user is not None else None


def table(resource: Resource, objects: Sequence[Mapping[str, Any]], rv: str) -> dict[str, Any]:
    return tables.table(resource, objects, now=datetime.now(UTC), resource_version=rv)


def document(path: str) -> dict[str, Any] | None:
    return openapi.v3_root() if not path else openapi.v3_document(path)
