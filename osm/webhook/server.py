"""The HTTPS server of the admission webhooks, with its certificate from the mesh CA,
renewed in place, and health and metrics on a separate plain-HTTP port.

One idea: the server owns everything that is not a rule. It reads the body (bounded in
size and time), decodes it (`review.decode`), runs the handler its path names and encodes
the answer; every failure on the way (too large, too slow, not an AdmissionReview, a
handler that raised) is still an AdmissionReview with ``allowed: false`` and HTTP 200, so
the API server reports the reason instead of "failed calling webhook".

Its serving certificate (`ServingCertificate`) is a leaf of the mesh CA for the Service's
DNS names (``<service>.<ns>.svc`` and ``.svc.cluster.local``: the API server verifies the
first against the configuration's caBundle, the mesh root). It is renewed at half its
life by loading the new chain into the same ``SSLContext``: OpenSSL copies a context's
certificate into each connection when it is created, so new handshakes get the new one,
established connections keep theirs, and nothing restarts.

Health (``/health/ready``: 503 until `set_ready`; ``/health/alive``) and Prometheus
``/metrics`` (OSM's ``osm_admission_webhook_response_total{kind,success}``) are served on
their own port without TLS, for the kubelet's probes and scrapers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from osm.base import wellknown
from osm.ca.errors import CAError
from osm.ca.issuer import IssuedCertificate, Issuer
from osm.ca.tls import load_cert_chain
from osm.webhook import certificates, review

log = logging.getLogger(__name__)

Handler = Callable[[review.Request], Awaitable[review.Response]]
"""An admission rule behind a path: a decoded request in, the answer out."""

MAX_BODY = 3 * 1024 * 1024
"""Bytes a request may carry: an AdmissionReview holds the object and the old object,
each at most etcd's 1.5 MiB."""
REQUEST_TIMEOUT = 10.0
"""Seconds to read, decide and answer; kube-apiserver's default webhook timeout is 10 s
(at most 30), after which it applies the failurePolicy anyway."""
RETRY_AFTER_FAILURE = timedelta(seconds=30)
"""A renewal the CA refused is tried again after this long (the old leaf still serves)."""
MINIMUM_RENEWAL = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where the server listens and who it is: the webhook port (HTTPS) and the health
    port (HTTP; None: none, the process serves health elsewhere), 0 for any free port,
    and the Service whose DNS names its certificate carries."""

    service: str
    namespace: str = wellknown.CONTROL_PLANE_NAMESPACE
    host: str = "0.0.0.0"
    port: int = wellknown.INJECTOR_WEBHOOK_PORT
    health_host: str = "0.0.0.0"
    health_port: int | None = wellknown.CONTROLLER_HTTP_PORT
    certificate_validity: timedelta = certificates.SERVING_VALIDITY
    max_body: int = MAX_BODY
    request_timeout: float = REQUEST_TIMEOUT


class Metrics:
    """OSM's admission metric, in a registry of the server's own (one per process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.responses = Counter(
            "osm_admission_webhook_response",
            "Admission webhook responses, by the request's kind and whether it was allowed",
            ("kind", "success"),
            registry=self.registry,
        )

    def count(self, kind: str, response: review.Response) -> None:
        self.responses.labels(kind or "unknown", "true" if response.allowed else "false").inc()


class ServingCertificate:
    """The server's TLS context and the leaf in it, renewed in place (`renew`)."""

    def __init__(
        self,
        issuer: Issuer,
        clock: Callable[[], datetime],
        service: str,
        namespace: str,
        validity: timedelta = certificates.SERVING_VALIDITY,
    ) -> None:
        self._issuer = issuer
        self._clock = clock
        self._request = certificates.serving_request(service, namespace, validity)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.current: IssuedCertificate | None = None
        self.renew_at: datetime | None = None

    def renew(self) -> IssuedCertificate:
        """Issue a new leaf and load it into the context (new handshakes get it); renew
        again at half the new leaf's life. Raises `CAError` when the CA cannot issue."""
        now = self._clock()
        issued = self._issuer.issue(self._request, now)
        load_cert_chain(self.context, issued.cert_pem, issued.key_pem)
        self.current = issued
        # Half the life from now, not from not_before (backdated by a minute).
        self.renew_at = now + max((issued.not_after - now) / 2, MINIMUM_RENEWAL)
        log.info(
            "webhook serving certificate for %s, serial %x, valid until %s",
            self._request.dns_names[0],
            issued.serial,
            issued.not_after.isoformat(),
        )
        return issued

    async def keep_renewed(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Renew whenever due, until cancelled; a refused renewal is logged and retried
        (the current leaf serves until it expires)."""
        while True:
            due = self.renew_at or self._clock()
            await sleep(max((due - self._clock()).total_seconds(), 0.0))
            try:
                self.renew()
            except CAError as error:
                log.error("cannot renew the webhook serving certificate: %s", error)
                self.renew_at = self._clock() + RETRY_AFTER_FAILURE


class WebhookServer:
    """Serves `handlers` (path -> `Handler`) over HTTPS and health over HTTP. `start`
    issues the first certificate and binds both ports; `stop` closes them. One event
    loop; handlers run concurrently."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        issuer: Issuer,
        clock: Callable[[], datetime],
        settings: ServerSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.handlers = dict(handlers)
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.certificate = ServingCertificate(
            issuer, clock, settings.service, settings.namespace, settings.certificate_validity
        )
        self.ready = False
        self.port = 0
        self.health_port = 0
        self._runners: list[web.AppRunner] = []
        self._renewal: asyncio.Task[None] | None = None

    def set_ready(self, ready: bool = True) -> None:
        """What ``/health/ready`` answers (the caller knows when its handlers can work)."""
        self.ready = ready

    async def start(self) -> None:
        """Issue the serving certificate, bind the webhook and health ports, and keep the
        certificate renewed. Raises `CAError` if the CA cannot issue, OSError if a port
        is taken."""
        self.certificate.renew()
        try:
            webhook = web.Application(client_max_size=self.settings.max_body)
            for path in self.handlers:
                webhook.router.add_post(path, self._serve)
            self.port = await self._listen(
                webhook, self.settings.host, self.settings.port, self.certificate.context
            )
            if self.settings.health_port is not None:
                health = web.Application()
                health.router.add_get("/health/ready", self._ready)
                health.router.add_get("/health/alive", self._alive)
                health.router.add_get("/metrics", self._metrics)
                self.health_port = await self._listen(
                    health, self.settings.health_host, self.settings.health_port, None
                )
        except BaseException:
            await self.stop()
            raise
        self._renewal = asyncio.create_task(self.certificate.keep_renewed())

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
            self._renewal = None
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def _listen(
        self, app: web.Application, host: str, port: int, context: ssl.SSLContext | None
    ) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
        server = site._server  # the bound port, when 0 asked for any
        sockets = getattr(server, "sockets", None) or ()
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def _serve(self, http: web.Request) -> web.Response:
        handler = self.handlers[http.path]
        kind, uid = "", ""
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                try:
                    body = await http.read()
                except web.HTTPRequestEntityTooLarge:
                    raise review.Malformed(
                        f"the body is larger than {self.settings.max_body} bytes"
                    ) from None
                request = review.decode(body)
                kind, uid = request.kind.kind, request.uid
                response = await handler(request)
        except review.Malformed as error:
            response = review.malformed(error)
        except TimeoutError:
            log.error("admission %s timed out after %ss", http.path, self.settings.request_timeout)
            response = review.Response(
                uid,
                False,
                review.INTERNAL_ERROR,
                f"the webhook did not decide within {self.settings.request_timeout} s",
            )
        except Exception as error:  # a handler's bug must still answer an AdmissionReview
            log.exception("admission %s failed", http.path)
            response = review.Response(
                uid, False, review.INTERNAL_ERROR, f"the webhook failed: {error}"
            )
        self.metrics.count(kind, response)
        return web.Response(body=response.encode(), content_type="application/json")

    async def _ready(self, _: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def _alive(self, _: web.Request) -> web.Response:
        return web.Response(text="alive\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
