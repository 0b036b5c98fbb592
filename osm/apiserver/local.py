"""Local mode's API server, started over a store: HTTPS with the API CA's server
certificate, and a kubeconfig per client written next to it.

`start` is what the controller runs in local mode, and what tests and benchmarks run to
get a real API (TLS, client certificates, Tables, OpenAPI) over any store. The API CA is
kept in ``<state dir>/apiserver`` (`osm.apiserver.auth`); kubeconfigs are written 0600.
Requests authenticate as kube-apiserver's do: a client certificate, or a service account
token bound to a ServiceAccount that still exists (`Authenticator`); `write_service_account`
writes what an in-cluster client reads (``token``, ``ca.crt``, ``namespace``), and the
server certificate carries the names in-cluster clients use (``kubernetes.default.svc``...).
With ``webhooks=True`` the given admission is wrapped by the webhook dispatcher
(`osm.apiserver.webhooks`), which calls what the stored webhook configurations name, as
kube-apiserver does; services resolve to their endpoints in the store unless a
``resolver`` says otherwise.
"""

from __future__ import annotations

import asyncio.sslproto
import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
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
from osm.ca.store import write_atomic
from osm.kube import config as kube_config
from osm.store import api as store_api

log = logging.getLogger(__name__)

ADMIN_USER = "osm-admin"
ADMIN_GROUPS = ("system:masters",)
IN_CLUSTER_HOSTS = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
"""The names of the API's Service in the default namespace, which in-cluster clients use."""
SERVER_HOSTS = ("localhost", *IN_CLUSTER_HOSTS)


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
    tokens: auth.ServiceAccountTokens
    """Signs and verifies the service account tokens."""
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

    async def service_account_token(
        self,
        namespace: str,
        name: str,
        expiration: timedelta = auth.TOKEN_EXPIRATION,
        *,
        audiences: Sequence[str] = (),
    ) -> str:
        """A token for the ServiceAccount ``namespace/name``, as a TokenRequest answers.
        Raise `osm.store.api.NotFound` if it does not exist, ValueError for an
        ``expiration`` outside [10 minutes, 2^32 s]."""
        account = await self.server.store.get(
            store_api.ObjectKey("ServiceAccount", namespace, name)
        )
        uid = str(account["metadata"].get("uid", ""))
        issued = self.tokens.issue(namespace, name, uid, audiences=audiences, expiration=expiration)
        return issued.token

    async def write_service_account(
        self,
        directory: Path,
        namespace: str,
        name: str,
        expiration: timedelta = auth.TOKEN_EXPIRATION,
    ) -> Path:
        """The in-cluster directory of ServiceAccount ``namespace/name`` (see
        `write_service_account`), with a new token."""
        token = await self.service_account_token(namespace, name, expiration)
        return write_service_account(
            directory, token=token, ca_pem=self.ca.cert_pem, namespace=namespace
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
    server_ips: Sequence[str] = (),
    clients: Sequence[Client] = (),
    settings: apiserver.Settings | None = None,
    webhooks: bool = False,
    resolver: webhooks_.ServiceResolver | None = None,
) -> LocalApi:
    """Serves ``store`` on ``host:port`` (0: any free port) and writes the admin's
    kubeconfig (`osm.paths.kubeconfig_path`) and one per ``clients``. The serving
    certificate names ``server_hosts`` and, besides loopback and ``host``, the IP
    addresses ``server_ips`` (where a relay brings in-cluster clients). Container logs
    are read from ``<state dir>/logs`` unless ``settings`` say otherwise. ``webhooks``:
    admission calls the stored webhook configurations around ``admission`` (the model's
    validation by default), their services found by ``resolver`` (default: the
    endpoints in the store, `osm.apiserver.webhooks.StoreResolver`)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    send_handshake_alerts()
    ca = auth.ApiCA.open(state_dir / "apiserver")
    tokens = auth.ServiceAccountTokens.open(state_dir / "apiserver")
    credentials = ca.issue_server(
        list(server_hosts), sorted({wellknown.LOCALHOST, host, *server_ips})
    )
    dispatcher = (
        webhooks_.WebhookAdmission(
            admission or apiserver.ModelAdmission(), resolver or webhooks_.StoreResolver(store)
        )
        if webhooks
        else None
    )
    server = apiserver.ApiServer(
        store,
        Authenticator(store, tokens),
        dispatcher or admission,
        settings or apiserver.Settings(logs_dir=state_dir / "logs"),
        apiserver.Metrics.create(registry),
        tables=table,
        openapi=document,
        tokens=tokens,
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
    local = LocalApi(
        server, runner, url, bound, ca, paths.kubeconfig_path(state_dir), tokens, dispatcher
    )
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
    user = certificate_identity(request)
    return user.name if user is not None else None


def certificate_identity(request: web.Request) -> auth.User | None:
    """The user and groups of the request's verified client certificate, if it sent one."""
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    return auth.identity_of(peercert)


class Authenticator:
    """kube-apiserver's authenticators, in its order: a verified client certificate
    (`certificate_user`), else an ``Authorization: Bearer`` service account token whose
    signature, issuer, audience and times hold and whose ServiceAccount still exists with
    the uid the token names (deleted, or deleted and created again: refused). Anything
    else is no user (401). Why a token is refused goes to the log, never to the client."""

    def __init__(self, store: store_api.Store, tokens: auth.ServiceAccountTokens) -> None:
        self.store = store
        self.tokens = tokens

    async def __call__(self, request: web.Request) -> str | None:
        user = await self.user(request)
        return user.name if user is not None else None

    async def user(self, request: web.Request) -> auth.User | None:
        user = certificate_identity(request)
        if user is not None:
            return user
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            claims = self.tokens.verify(token.strip())
            await self._check_bound(claims)
        except auth.InvalidToken as error:
            log.info("%s %s: bearer token refused: %s", request.method, request.path, error)
            return None
        return claims.user

    async def _check_bound(self, claims: auth.ServiceAccountClaims) -> None:
        key = store_api.ObjectKey("ServiceAccount", claims.namespace, claims.name)
        try:
            account = await self.store.get(key)
        except store_api.NotFound:
            raise auth.InvalidToken(
                f"the service account {claims.namespace}/{claims.name} does not exist"
            ) from None
        uid = account["metadata"].get("uid", "")
        if uid != claims.uid:
            raise auth.InvalidToken(
                f"the service account {claims.namespace}/{claims.name} has uid {uid!r}, "
                f"not the token's {claims.uid!r}"
            )


def write_service_account(directory: Path, *, token: str, ca_pem: bytes, namespace: str) -> Path:
    """Writes what the kubelet mounts at ``/var/run/secrets/kubernetes.io/serviceaccount``
    for an in-cluster client (lightkube's ``KubeConfig.from_service_account``): ``token``
    (0600), ``ca.crt`` (the API CA) and ``namespace``. Each file is replaced atomically,
    so a client re-reading the token (after a 401) reads a whole one. Returns
    ``directory`` (created 0700 if missing)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(directory / "ca.crt", ca_pem, 0o644)
    write_atomic(directory / "namespace", namespace.encode(), 0o644)
    write_atomic(directory / "token", token.encode(), 0o600)
    return directory


def table(resource: Resource, objects: Sequence[Mapping[str, Any]], rv: str) -> dict[str, Any]:
    return tables.table(resource, objects, now=datetime.now(UTC), resource_version=rv)


def document(path: str) -> dict[str, Any] | None:
    return openapi.v3_root() if not path else openapi.v3_document(path)
