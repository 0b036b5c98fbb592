"""Demo apps for the protocols besides plain HTTP/1.1: a gRPC service, a TCP echo and an
HTTP service for HTTP/2 clients, with one-shot clients that print what happened.

Run one with ``python -m osm.demo.protocols ROLE`` (see ``--help``). Servers run until
SIGTERM: ``http-server`` answers every request with JSON naming its identity, method and
path (it speaks HTTP/1.1 only, so an HTTP/2 client that gets an answer shows that a proxy
translated); ``grpc-server`` serves `GRPC_SERVICE` with the unary methods `GRPC_METHODS`,
whose messages are raw bytes (generic handlers: no generated code), so that a route
policy can allow one method and not the other; ``tcp-echo`` sends back every byte it
reads. The clients, ``grpc-call`` and ``tcp-call``, make one call and print its outcome
as one JSON line, exiting 0 only when the call succeeded: a call the mesh refuses is a
result to report (its gRPC status code; for TCP, what became of the bytes), not a crash.

Like the bookstore's, these apps know nothing of the mesh; only the sidecars do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from osm.demo.arguments import number

PROG = "python -m osm.demo.protocols"
GRPC_SERVICE = "osm.demo.Greeter"
GRPC_METHODS = ("SayHello", "SayGoodbye")
DEFAULT_PORTS = {"http-server": "14011", "grpc-server": "14051", "tcp-echo": "14071"}
"""Different ports, so that the three servers can share a pod."""
READ_SIZE = 65536

Result = dict[str, Any]
"""What a one-shot client prints: ``ok`` and what it saw."""


def grpc_path(method: str) -> str:
    """The HTTP/2 path of a call to ``method`` of `GRPC_SERVICE`, as route policies name it."""
    return f"/{GRPC_SERVICE}/{method}"


def greeting(identity: str, method: str, message: bytes) -> bytes:
    """A gRPC server's reply: who answered which method, and what it was sent."""
    payload = {"identity": identity, "method": method, "message": message.decode(errors="replace")}
    return json.dumps(payload, sort_keys=True).encode()


@dataclass(frozen=True)
class Settings:
    """A server's configuration."""

    identity: str
    host: str
    port: int


# -- servers -----------------------------------------------------------------------------
async def serve_http(settings: Settings, stopped: asyncio.Event) -> None:
    from osm.demo.bookstore import process, wire

    async def answer(request: wire.Request) -> wire.Response:
        payload = {"identity": settings.identity, "method": request.method, "path": request.path}
        return wire.json_response(payload, headers={"identity": settings.identity})

    server = await wire.Server.start(answer, settings.host, settings.port)
    process.log(settings.identity, f"HTTP on {settings.host}:{server.port}")
    try:
        await stopped.wait()
    finally:
        await server.close()


async def serve_grpc(settings: Settings, stopped: asyncio.Event) -> None:
    import grpc

    from osm.demo.bookstore import process

    def handler(method: str) -> grpc.RpcMethodHandler:
        async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return greeting(settings.identity, method, request)

        return grpc.unary_unary_rpc_method_handler(call)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                GRPC_SERVICE, {method: handler(method) for method in GRPC_METHODS}
            ),
        )
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    process.log(settings.identity, f"gRPC {GRPC_SERVICE} on {settings.host}:{port}")
    try:
        await stopped.wait()
    finally:
        await server.stop(grace=1.0)


async def serve_tcp_echo(settings: Settings, stopped: asyncio.Event) -> None:
    from osm.demo.bookstore import process

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, settings.host, settings.port)
    port = server.sockets[0].getsockname()[1]
    process.log(settings.identity, f"TCP echo on {settings.host}:{port}")
    try:
        await stopped.wait()
    finally:
        server.close()


SERVERS = {"http-server": serve_http, "grpc-server": serve_grpc, "tcp-echo": serve_tcp_echo}


# -- one-shot clients ---------------------------------------------------------------------
def grpc_call(target: str, method: str, message: str, timeout: float) -> Result:
    """Calls ``method`` of `GRPC_SERVICE` at ``target`` (``host:port``) once, in plaintext
    (a sidecar adds mTLS): ``code`` is the gRPC status's name, ``reply`` the server's JSON."""
    # getaddrinfo, not c-ares: a pod's names are in its hosts file, which every program
    # reads through the C library.
    os.environ.setdefault("GRPC_DNS_RESOLVER", "native")
    import grpc

    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(grpc_path(method))
        try:
            response = call(message.encode(), timeout=timeout)
        except grpc.RpcError as error:
            return {"ok": False, "code": error.code().name, "details": error.details()}
    return {"ok": True, "code": "OK", "details": "", "reply": json.loads(response)}


def tcp_call(host: str, port: int, message: str, timeout: float) -> Result:
    """Connects, sends ``message`` and reads until as many bytes came back, the peer closed
    or ``timeout`` passed. ``outcome``: ``echoed``; ``closed`` (an orderly close first),
    ``reset``, ``refused`` (no connection), ``timeout``, or ``error`` (``details`` says)."""
    sent = message.encode()
    received = b""
    outcome = "echoed"
    details = ""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(sent)
            while len(received) < len(sent):
                chunk = sock.recv(READ_SIZE)
                if not chunk:
                    outcome = "closed"
                    break
                received += chunk
    except ConnectionRefusedError:
        outcome = "refused"
    except ConnectionResetError:
        outcome = "reset"
    except TimeoutError:
        outcome = "timeout"
    except OSError as error:
        outcome, details = "error", str(error)
    ok = outcome == "echoed" and received == sent
    result: Result = {"ok": ok, "outcome": outcome, "received": received.decode(errors="replace")}
    if details:
        result["details"] = details
    return result


# -- command line ------------------------------------------------------------------------


_port = number(int, 0, "a port number (0-65535)")
_positive = number(float, 0.001, "a positive number of seconds")


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. echo.demo:14071")
    return host, int(port)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The command line; servers' defaults come from `environ` (IDENTITY, HOST, PORT)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Demo apps for HTTP/2, gRPC and TCP in the mesh: servers, and one-shot"
        " clients that print their outcome as JSON.",
    )
    roles = parser.add_subparsers(dest="role", required=True, metavar="ROLE")
    helps = {
        "http-server": "Answer every HTTP/1.1 request with JSON: identity, method, path.",
        "grpc-server": f"Serve gRPC {GRPC_SERVICE}: {', '.join(GRPC_METHODS)} (raw bytes).",
        "tcp-echo": "Send back every byte received.",
    }
    for role, text in helps.items():
        sub = roles.add_parser(role, help=text, description=text)
        sub.add_argument(
            "--identity",
            default=environ.get("IDENTITY", role),
            help="name in logs and replies (env IDENTITY; default %(default)s)",
        )
        sub.add_argument(
            "--host",
            default=environ.get("HOST", "0.0.0.0"),
            help="listen address (env HOST; default %(default)s)",
        )
        sub.add_argument(
            "--port",
            type=_port,
            default=environ.get("PORT", DEFAULT_PORTS[role]),
            help="listen port (env PORT; default %(default)s)",
        )

    def client(role: str, text: str, target_help: str) -> argparse.ArgumentParser:
        sub = roles.add_parser(role, help=text, description=text)
        sub.add_argument("target", type=_address, metavar="HOST:PORT", help=target_help)
        sub.add_argument("--message", default="hello", help="what to send (%(default)s)")
        sub.add_argument(
            "--timeout", type=_positive, default="3", help="seconds for the call (%(default)s)"
        )
        return sub

    call = client(
        "grpc-call",
        f"Call a method of {GRPC_SERVICE} once; print the status code and the reply as JSON.",
        "the gRPC server, e.g. greeter.demo:14051",
    )
    call.add_argument(
        "method", help=f"the method: {' or '.join(GRPC_METHODS)}, or another to see it fail"
    )
    client(
        "tcp-call",
        "Send a message once and print whether it came back as JSON.",
        "the echo server, e.g. echo.demo:14071",
    )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser(os.environ if environ is None else environ).parse_args(argv)
    if args.role in SERVERS:
        from osm.demo.bookstore import process

        settings = Settings(args.identity, args.host, args.port)
        serve = SERVERS[args.role]
        try:
            process.run(lambda stopped: serve(settings, stopped))
        except OSError as error:
            print(f"{args.identity}: cannot start: {error}", file=sys.stderr)
            return 1
        return 0
    host, port = args.target
    if args.role == "grpc-call":
        result = grpc_call(f"{host}:{port}", args.method, args.message, args.timeout)
    else:
        result = tcp_call(host, port, args.message, args.timeout)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
