"""A tiny gRPC world for testing the controller with grpcio's own xDS client.

Two halves, one module so that both sides agree on the method name:

- `Backend`: a generic-handler gRPC server on 127.0.0.1 answering ``/test.Greeter/Who``
  with its own name (run in the test process, on gRPC's threads).
- the client (``python -m tests.integration.grpcxds_app TARGET``): opens ONE
  ``xds:///TARGET`` channel (``GRPC_XDS_BOOTSTRAP`` must be set in its environment, since
  the xDS client is process-global) and serves commands read from stdin, one per line,
  answering each with one JSON line on stdout:

  ``calls N``  -> ``{"greeter-v1": 812, "greeter-v2": 188}`` (errors as ``"!CODE"`` keys,
  and then ``"!details"``: the first message per code); calls wait for the channel to be
  ready unless the command ends with ``fail-fast``
  ``ready S``  -> ``{"ready": true|false}`` after waiting up to S seconds for the channel

The client keeps the same channel for its whole life, so a test can show that a new
configuration takes effect without reconnecting.
"""

from __future__ import annotations

import json
import sys
from concurrent import futures

import grpc

SERVICE = "test.Greeter"
METHOD = "Who"
PATH = f"/{SERVICE}/{METHOD}"
CALL_TIMEOUT = 5.0


class Backend:
    """A gRPC server that answers every call with ``name``; `port` is picked at start."""

    def __init__(self, name: str) -> None:
        self.name = name
        answer = name.encode()

        def who(request: bytes, context: grpc.ServicerContext) -> bytes:
            return answer

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.unary_unary_rpc_method_handler(
                    who, request_deserializer=None, response_serializer=None
                )
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler,))
        self.port: int = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def stop(self) -> None:
        self._server.stop(0).wait(5)


def run_client(target: str) -> None:
    channel = grpc.insecure_channel(f"xds:///{target}")
    channel.subscribe(lambda state: None, try_to_connect=True)  # resolve (fetch xDS) now
    who = channel.unary_unary(PATH)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "calls":
            count, _, mode = argument.partition(" ")
            counts: dict[str, int] = {}
            details: dict[str, str] = {}
            for _ in range(int(count)):
                try:
                    wait = mode != "fail-fast"
                    key = who(b"", timeout=CALL_TIMEOUT, wait_for_ready=wait).decode()
                except grpc.RpcError as error:
                    key = f"!{error.code().name}"
                    details.setdefault(key, error.details() or "")
                counts[key] = counts.get(key, 0) + 1
            print(json.dumps({**counts, **({"!details": details} if details else {})}), flush=True)
        elif command == "ready":
            try:
                grpc.channel_ready_future(channel).result(timeout=float(argument))
                ready = True
            except grpc.FutureTimeoutError:
                ready = False
            print(json.dumps({"ready": ready}), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    channel.close()


if __name__ == "__main__":
    run_client(sys.argv[1])
