"""Helpers that run inside a test's network namespace for `test_probes_envoy`.

``serve --http PORT --echo PORT``: an app whose HTTP answer is chosen by the request's path
(``fail`` 500, ``slow`` after 2 s, ``close`` closes without an answer, ``garbage`` is not
HTTP, else 200; the body says which target the app saw), and a TCP echo server standing
for an HTTPS app (a pass-through cannot tell).

``sidecar BOOTSTRAP SECONDS``: the Python sidecar (`osm.proxy.main.Sidecar`, as
``python -m osm.proxy`` runs it) with its probe ports listening after SECONDS without xDS
instead of Envoy's default 30 (the test gives Envoy the same by its initial fetch timeouts).

``ask``: reads ``{"wait": [ports], "requests": [[port, text], ...]}`` (text as latin-1) on
stdin, waits until every port in ``wait`` accepts a connection, sends each request on a
connection of its own (half-closing it unless it is HTTP, which Envoy would take for the
end of the connection) and prints, for each, ``{"refused": bool, "answer": text}``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

HTTP_METHODS = ("GET ", "HEAD ", "POST ")


async def _app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        if "close" in path:
            return
        if "garbage" in path:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            return
        if "slow" in path:
            await asyncio.sleep(2)
        status = 500 if "fail" in path else 200
        body = f"app saw {path}".encode()
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(b"echo:" + data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _until_terminated() -> None:
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
    await stopping.wait()


async def serve(http_port: int, echo_port: int) -> None:
    await asyncio.start_server(_app, "127.0.0.1", http_port)
    await asyncio.start_server(_echo, "127.0.0.1", echo_port)
    print("serving", flush=True)
    await _until_terminated()


async def sidecar(path: Path, seconds: float) -> None:
    from osm.proxy import bootstrap, main

    proxy = main.Sidecar(bootstrap.load(path), probes_without_xds=seconds)
    await proxy.start()
    try:
        await _until_terminated()
    finally:
        await proxy.stop(grace=0)


async def _ask_one(port: int, text: str, half_close: bool) -> dict[str, object]:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return {"refused": True, "answer": ""}
    try:
        writer.write(text.encode("latin-1"))
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(10):
            answer = await reader.read()
    except OSError:  # closed by the other side first
        answer = b""
    writer.close()
    return {"refused": False, "answer": answer.decode("latin-1")}


async def ask(spec: dict[str, Any]) -> list[dict[str, object]]:
    async with asyncio.timeout(30):
        for port in spec.get("wait", []):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
    return [
        await _ask_one(int(port), str(text), not text.startswith(HTTP_METHODS))
        for port, text in spec.get("requests", [])
    ]


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "serve":
        asyncio.run(serve(int(argv[2]), int(argv[4])))
    elif command == "sidecar":
        asyncio.run(sidecar(Path(argv[1]), float(argv[2])))
    elif command == "ask":
        print(json.dumps(asyncio.run(ask(json.load(sys.stdin)))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
