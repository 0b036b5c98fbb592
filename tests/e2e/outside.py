"""A test host outside the mesh: a network namespace on the mesh bridge, not meshed.

`OutsideHost` makes namespace ``<prefix>-<name>`` with an ``eth0`` whose peer is a port
of the mesh bridge (in the mesh's namespace, as a pod's is) and an address of the pod
subnet, so pods reach it on-link and it reaches pods' IPs; it has no sidecar and no
iptables. Its address is chosen far above what the runtime's pool hands out (the lowest
free address first), and the test checks no pod has it.

Its servers run in the test's process, on sockets created inside the namespace
(`osm.runtime.network.listen_in_netns`), on one event loop thread: `policy_app.App`'s
HTTP on each of ``http_ports``, HTTPS (a self-signed certificate for `tls_name`, made
here with ``cryptography``) on ``https_port``, and a TCP echo on ``echo_port``.
`stop` closes everything and removes the namespace (and with it the veth pair); it is
safe to call after a failed `start` and more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from osm.runtime import network
from tests.e2e.policy_app import App


def self_signed(name: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for DNS name ``name`` signed by its own key: (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _ip(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["ip", *argv], input=stdin, capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


class OutsideHost:
    """One host outside the mesh. Without ports it only makes requests (``run``)."""

    def __init__(
        self,
        mesh: network.MeshNetworkConfig,
        prefix: str,
        name: str,
        ip: ipaddress.IPv4Address,
        *,
        http_ports: Sequence[int] = (),
        https_port: int | None = None,
        echo_port: int | None = None,
        tls_name: str = "",
        workdir: Path | None = None,
    ) -> None:
        self.mesh = mesh
        self.netns = f"{prefix}-{name}"
        self.ip = ip
        self.app = App(name)
        self.http_ports = tuple(http_ports)
        self.https_port = https_port
        self.echo_port = echo_port
        self.tls_name = tls_name
        self.workdir = workdir
        self.cert: Path | None = None
        self.veth = network.veth_name(self.netns)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []

    def start(self) -> None:
        assert self.ip in self.mesh.subnet, (self.ip, self.mesh.subnet)
        _ip("netns", "add", self.netns)
        _ip(
            "-n",
            self.mesh.netns,
            "-batch",
            "-",
            stdin=f"link add {self.veth} type veth peer name eth0 netns {self.netns}\n"
            f"link set {self.veth} master {self.mesh.bridge} up\n",
        )
        _ip(
            "-n",
            self.netns,
            "-batch",
            "-",
            stdin="link set lo up\n"
            f"addr add {self.ip}/{self.mesh.subnet.prefixlen} dev eth0\n"
            "link set eth0 up\n",
        )
        sockets: list[tuple[int, ssl.SSLContext | None]] = [(p, None) for p in self.http_ports]
        if self.https_port is not None:
            assert self.workdir is not None and self.tls_name
            self.cert, key = self_signed(self.tls_name, self.workdir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, key)
            sockets.append((self.https_port, context))
        listening = [
            (network.listen_in_netns(self.netns, "0.0.0.0", port), context)
            for port, context in sockets
        ]
        echo = (
            network.listen_in_netns(self.netns, "0.0.0.0", self.echo_port)
            if self.echo_port is not None
            else None
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"outside-{self.netns}", daemon=True
        )
        self._thread.start()

        async def listen() -> None:
            for sock, context in listening:
                self._servers.append(
                    await asyncio.start_server(self.app.http, sock=sock, ssl=context)
                )
            if echo is not None:
                self._servers.append(await asyncio.start_server(self.app.echo, sock=echo))

        asyncio.run_coroutine_threadsafe(listen(), self._loop).result(timeout=10)

    def stop(self) -> None:
        loop = self._loop
        if loop is not None:

            async def close() -> None:
                for server in self._servers:
                    server.close()
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)
            if not loop.is_running():
                loop.close()
            self._loop = None
        if network.netns_exists(self.netns):
            subprocess.run(["ip", "netns", "delete", self.netns], timeout=10, check=False)
        # The bridge-side veth goes with its peer's namespace; make sure of it.
        if network.netns_exists(self.mesh.netns):
            subprocess.run(
                ["ip", "-n", self.mesh.netns, "link", "del", self.veth],
                capture_output=True,
                timeout=10,
                check=False,
            )

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``argv`` in this host's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
