"""The port-forward from the host's loopback into a network namespace, against servers
listening on the loopback of a throwaway namespace that the host cannot otherwise reach."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest

from osm.runtime import portforward
from osm.runtime.network import listen_in_netns

pytestmark = [pytest.mark.root, pytest.mark.timeout(30)]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"osm-pf-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(b"echo:" + data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def echo_servers(netns: str) -> AsyncIterator[list[int]]:
    """Two echo servers on the namespace's 127.0.0.1, by port."""
    servers = []
    for _ in range(2):
        sock = listen_in_netns(netns, "127.0.0.1", 0)
        servers.append(await asyncio.start_server(_echo, sock=sock))
    yield [int(s.sockets[0].getsockname()[1]) for s in servers]
    for server in servers:
        server.close()
        await server.wait_closed()


async def _roundtrip(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(message)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1024), 5)
    finally:
        writer.close()


async def test_forwards_to_a_server_inside_the_namespace(
    netns: str, echo_servers: list[int]
) -> None:
    forward = portforward.PortForward(netns, portforward.fixed(("127.0.0.1", echo_servers[0])))
    port = await forward.start()
    try:
        assert forward.url == f"http://127.0.0.1:{port}"
        assert await _roundtrip(port, b"hello") == b"echo:hello"
        answers = await asyncio.gather(*(_roundtrip(port, b"%d" % i) for i in range(10)))
        assert answers == [b"echo:%d" % i for i in range(10)]
    finally:
        await forward.close()


async def test_asks_the_resolver_for_each_connection(netns: str, echo_servers: list[int]) -> None:
    """A forward to a Service's endpoint follows its pod to a new address."""
    targets = [("127.0.0.1", echo_servers[0]), ("127.0.0.1", echo_servers[1])]
    asked: list[int] = []

    async def resolve() -> tuple[str, int]:
        target = targets[len(asked) % 2]
        asked.append(target[1])
        return target

    forward = portforward.PortForward(netns, resolve)
    port = await forward.start()
    try:
        assert await _roundtrip(port, b"a") == b"echo:a"
        assert await _roundtrip(port, b"b") == b"echo:b"
        assert asked == echo_servers
    finally:
        await forward.close()


@pytest.mark.parametrize("target", ["none", "refusing"])
async def test_no_target_closes_the_connection(
    netns: str, echo_servers: list[int], target: str
) -> None:
    async def resolve() -> tuple[str, int] | None:
        return None if target == "none" else ("127.0.0.1", 1)

    forward = portforward.PortForward(netns, resolve)
    port = await forward.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(1024), 5) == b""
        writer.close()
    finally:
        await forward.close()
