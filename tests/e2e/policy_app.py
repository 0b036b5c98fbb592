"""The policy end-to-end tests' app and client: standard library only, so a meshed pod
runs this file's text as ``python3 -c`` and the test host outside the mesh imports it.

Server (``serve``): HTTP/1.1 with keep-alive on each ``--http`` port (and, given a
certificate, HTTPS on ``--https``), a TCP echo on each ``--echo`` port. Every request
is answered with JSON naming the server and the path, except:

- ``/flaky``: every other request (the first, third, ...) fails with 503, so exactly half
  fail and a retry of a failed one succeeds (deterministic, unlike a coin: with numRetries
  5 a fair coin would still fail 1 request in 64);
- ``/slow``: answered after `SLOW_SECONDS` (requests held open, for circuit breakers).

The server records what it saw (`App.seen`: port and path of each request, peer and
bytes of each echo), so a test tells "denied" (never arrived) from "answered".

Client (``call``, ``load``, ``burst``): one-shot commands run in a pod's network
namespace (intercepted as the pod's own traffic); each prints one JSON line of outcomes,
never a traceback: a refused or reset connection is a result.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from typing import Any

FLAKY = "/flaky"
SLOW = "/slow"
SLOW_SECONDS = 1.0
HEAD_LIMIT = 65536


class App:
    """One server's handlers and what they saw."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.flaky_calls = 0
        self.seen: list[tuple[int, str]] = []

    def saw(self, fragment: str) -> bool:
        return any(fragment in what for _, what in self.seen)

    async def http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > HEAD_LIMIT:
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or "0")
                if length:
                    await reader.readexactly(length)
                self.seen.append((port, target))
                status, body = await self.answer(method, target)
                data = json.dumps(body).encode()
                closing = headers.get("connection", "").lower() == "close"
                writer.write(
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
                    f"x-served-by: {self.name}\r\n"
                    f"{'connection: close' + chr(13) + chr(10) if closing else ''}\r\n".encode()
                    + data
                )
                await writer.drain()
                if closing:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, method: str, target: str) -> tuple[int, dict[str, Any]]:
        path = target.split("?", 1)[0]
        body = {"server": self.name, "method": method, "path": target}
        if path == FLAKY:
            self.flaky_calls += 1
            if self.flaky_calls % 2 == 1:
                return 503, {**body, "flaky": self.flaky_calls}
        if path == SLOW:
            await asyncio.sleep(SLOW_SECONDS)
        return 200, body

    async def echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        try:
            while data := await reader.read(65536):
                self.seen.append((port, data.decode(errors="replace")))
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


# -- the client ------------------------------------------------------------------------------
def request(
    url: str,
    *,
    cafile: str = "",
    timeout: float = 5.0,
    connection: http.client.HTTPConnection | None = None,
) -> dict[str, Any]:
    """One GET: ``{"status", "headers", "body"}``, or ``{"error"}`` naming what failed."""
    scheme, _, rest = url.partition("://")
    hostport, _, path = rest.partition("/")
    host, _, port_text = hostport.partition(":")
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    try:
        if connection is None:
            if scheme == "https":
                context = ssl.create_default_context(cafile=cafile or None)
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=context
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.request("GET", "/" + path)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        headers = {k.lower(): v for k, v in response.getheaders()}
        return {"status": response.status, "headers": headers, "body": body}
    except (OSError, http.client.HTTPException) as error:
        if connection is not None:
            connection.close()
        return {"error": f"{type(error).__name__}: {error}"}


def load(url: str, count: int, timeout: float) -> dict[str, Any]:
    """``count`` requests one after another on a kept-alive connection (a new one after a
    failure): how many got each status, the headers of the first response of each, and
    the errors."""
    rest = url.partition("://")[2]
    hostport = rest.partition("/")[0]
    host, _, port_text = hostport.partition(":")
    statuses: collections.Counter[str] = collections.Counter()
    samples: dict[str, dict[str, str]] = {}
    errors: list[str] = []
    connection = http.client.HTTPConnection(host, int(port_text or "80"), timeout=timeout)
    for _ in range(count):
        outcome = request(url, connection=connection, timeout=timeout)
        if "error" in outcome:
            statuses["error"] += 1
            errors.append(outcome["error"])
            connection = http.client.HTTPConnection(host, int(port_text or "80"), timeout=timeout)
        else:
            statuses[str(outcome["status"])] += 1
            samples.setdefault(str(outcome["status"]), outcome["headers"])
    return {"statuses": dict(statuses), "headers": samples, "errors": errors[:5]}


def burst(url: str, count: int, timeout: float) -> dict[str, Any]:
    """``count`` requests at once, each on its own connection: every outcome."""
    outcomes: list[dict[str, Any]] = [{} for _ in range(count)]
    start = threading.Barrier(count)

    def one(index: int) -> None:
        start.wait()
        outcomes[index] = request(url, timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"outcomes": outcomes}


def echo_call(host: str, port: int, message: str, timeout: float) -> dict[str, Any]:
    """Sends ``message`` and reads it back: ``{"received"}`` or ``{"error"}``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(message.encode())
            received = b""
            while len(received) < len(message.encode()):
                data = sock.recv(65536)
                if not data:
                    break
                received += data
            return {"received": received.decode(errors="replace")}
    except OSError as error:
        return {"error": f"{type(error).__name__}: {error}"}


# -- the server ------------------------------------------------------------------------------
async def serve(app: App, http_ports: list[int], echo_ports: list[int]) -> None:
    servers = [await asyncio.start_server(app.http, "0.0.0.0", port) for port in http_ports]
    servers += [await asyncio.start_server(app.echo, "0.0.0.0", port) for port in echo_ports]
    print(f"{app.name}: http {http_ports} echo {echo_ports}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="policy_app")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve")
    server.add_argument("--name", required=True)
    server.add_argument("--http", type=int, action="append", default=[])
    server.add_argument("--echo", type=int, action="append", default=[])
    for name in ("call", "load", "burst"):
        command = commands.add_parser(name)
        command.add_argument("url")
        command.add_argument("--count", type=int, default=1)
        command.add_argument("--cafile", default="")
        command.add_argument("--timeout", type=float, default=5.0)
    echo = commands.add_parser("echo")
    echo.add_argument("host")
    echo.add_argument("port", type=int)
    echo.add_argument("message")
    echo.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve(App(args.name), args.http, args.echo))
        return 0
    started = time.monotonic()
    if args.command == "call":
        result = request(args.url, cafile=args.cafile, timeout=args.timeout)
    elif args.command == "load":
        result = load(args.url, args.count, args.timeout)
    elif args.command == "burst":
        result = burst(args.url, args.count, args.timeout)
    else:
        result = echo_call(args.host, args.port, args.message, args.timeout)
    result["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
