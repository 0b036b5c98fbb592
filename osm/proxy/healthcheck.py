"""``python -m osm.proxy.healthcheck``: OSM's osm-healthcheck, for rewritten tcpSocket probes.

One idea: with every inbound connection redirected to the sidecar, a tcpSocket probe would
connect whether or not the app listens, so the injector turns it into an httpGet of
``/osm-healthcheck`` on 15904 carrying the original port in ``Original-Tcp-Port``, and this
program (in its own container, as UID 1500, whose connections the interception rules leave
alone) answers it by dialing that port on the pod's loopback:

- ``GET /osm-healthcheck`` (any method; the query is ignored) with ``Original-Tcp-Port: N``:
  200 when 127.0.0.1:N accepts a connection within `DIAL_TIMEOUT`, else 503 (OSM's says
  404; any status from 400 fails the probe alike);
- a missing header, or one that is not a port number 1-65535: 400;
- another path: 404; a malformed request: 400. One request per connection.

It is not part of the sidecar process and imports none of it but `http1` and the ground
floor, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Final

from osm.base import wellknown
from osm.proxy import http1, options

log = logging.getLogger(__name__)

ANY_ADDRESS: Final = "0.0.0.0"
DIAL_TIMEOUT: Final = 1.0
"""Seconds the app's port has to accept the connection."""
HEADER_TIMEOUT: Final = 10.0
"""Seconds a client has to send its request (OSM's ``ReadHeaderTimeout``)."""
PORT_HEADER: Final = wellknown.ORIGINAL_TCP_PORT_HEADER.lower()


async def answer(head: http1.RequestHead, host: str = wellknown.LOCALHOST) -> tuple[int, str]:
    """The status and body for one request: dial `host` at the port the request names."""
    path = head.target.partition("?")[0]
    if path != wellknown.HEALTHCHECK_PATH:
        return 404, "404 page not found\n"
    value = head.header(PORT_HEADER)
    if value is None:
        return 400, f"Header {wellknown.ORIGINAL_TCP_PORT_HEADER} not found in request"
    text = value.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        return 400, (
            f"Header {wellknown.ORIGINAL_TCP_PORT_HEADER} is {value!r}, not a port number 1-65535"
        )
    port = int(text)
    address = f"{host}:{port}"
    try:
        async with asyncio.timeout(DIAL_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as error:
        log.info("no connection to %s: %s", address, error or "timed out")
        return 503, f"Failed to establish connection to {address}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    log.debug("connected to %s", address)
    return 200, f"Successfully established connection to {address}"


class Healthcheck:
    """The server. `await start(host, port)`, then `await close()`; `dial_host` is where
    the ports it checks are (the pod's loopback)."""

    def __init__(self, dial_host: str = wellknown.LOCALHOST) -> None:
        self.dial_host = dial_host
        self.server: asyncio.Server | None = None
        self.address = ("", 0)

    async def start(self, host: str = ANY_ADDRESS, port: int = wellknown.HEALTHCHECK_PORT) -> None:
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        sockname = self.server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = http1.RequestParser()
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                head: http1.RequestHead | None = None
                while head is None:
                    data = await reader.read(65536)
                    if not data:
                        return
                    for event in parser.feed(data):
                        if isinstance(event, http1.RequestHead):
                            head = event
            status, body = await answer(head, self.dial_host)
            writer.write(_reply(status, body, head.method))
            await writer.drain()
        except http1.ProtocolError as error:
            writer.write(http1.local_reply(error.status, error.message, False))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def _reply(status: int, body: str, method: str) -> bytes:
    payload = body.encode()
    headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(payload))),
        ("connection", "close"),
    ]
    return http1.response_head(status, headers) + (b"" if method == "HEAD" else payload)


async def serve(port: int) -> None:
    """Serve on 0.0.0.0:`port` until SIGTERM or SIGINT."""
    healthcheck = Healthcheck()
    await healthcheck.start(ANY_ADDRESS, port)
    log.info("osm-healthcheck on %s:%d", *healthcheck.address)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await healthcheck.close()


# ---------------------------------------------------------------------------------------------
# The command line

LOG_LEVELS = ("debug", "info", "warning", "error")
USAGE = "usage: python -m osm.proxy.healthcheck [--port N] [--verbosity LEVEL]"
HELP = f"""{USAGE}

Answer rewritten tcpSocket probes: GET {wellknown.HEALTHCHECK_PATH} with header
{wellknown.ORIGINAL_TCP_PORT_HEADER}: N is 200 when 127.0.0.1:N accepts a connection, else 503.

options:
  --port N           the port to serve on (default: {wellknown.HEALTHCHECK_PORT})
  --verbosity LEVEL  {", ".join(LOG_LEVELS)} (default: info)
  -h, --help         show this message and exit
"""


def parse_arguments(argv: Sequence[str]) -> tuple[int, str] | None:
    """``[--port N] [--verbosity LEVEL]`` (also ``--name=value``) -> (port, level); None
    for ``--help``. Raises `UsageError`."""
    values = options.parse(argv, ("--port", "--verbosity"))
    if values is None:
        return None
    port_text = values.get("--port", str(wellknown.HEALTHCHECK_PORT))
    if not (port_text.isdigit() and 0 <= int(port_text) <= 65535):
        raise options.UsageError(f"--port must be a port number 0-65535, got {port_text!r}")
    level = values.get("--verbosity", "info")
    if level not in LOG_LEVELS:
        raise options.UsageError(
            f"--verbosity must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    return int(port_text), level


def command(argv: Sequence[str]) -> int:
    """``python -m osm.proxy.healthcheck ARGS``; -> the exit status (2: a usage error, 1:
    the port cannot be served)."""
    try:
        arguments = parse_arguments(argv)
    except options.UsageError as error:
        print(f"{USAGE}\nerror: {error}", file=sys.stderr)
        return 2
    if arguments is None:
        print(HELP, end="")
        return 0
    port, level = arguments
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(port))
    except OSError as error:
        print(
            f"error: cannot serve on {ANY_ADDRESS}:{port}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(command(sys.argv[1:]))
