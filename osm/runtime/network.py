"""The local mesh network: a bridge in a namespace of its own, and one namespace per pod.

The one idea: nothing of the mesh is in the host's (root) network namespace. The
bridge ``osmbr0`` lives in network namespace ``osm-mesh`` together with the gateway
address (``10.233.0.1/16``); each pod is a namespace with ``lo``, an ``eth0`` (one end
of a veth pair whose other end is a port of the bridge) carrying the pod IP/16, and a
default route via the gateway. The mesh namespace has no other interface and IP
forwarding off, so a packet for any address outside the mesh subnet dies there: nothing
can be routed or NATed off the machine.

How pods reach the controller (which runs in the root namespace): the controller opens
a listening socket *inside* the mesh namespace (`socket_in_netns`: a short-lived thread
enters the namespace with setns(2), creates the socket, and the socket stays bound to
that namespace). `osm.runtime.relay` relays connections from that socket to the
controller's loopback port. There is no link between the root namespace and the mesh,
so the only way across is that userspace relay, for the one address and port it serves.

Every namespace, link and hosts directory is recorded in the `Journal` before it is
created (see `osm.runtime.record`). Commands are iproute2's ``ip``; one pod takes a
handful of short ``ip`` runs (batch mode where one namespace takes several commands).
"""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from osm.base.identity import CLUSTER_DOMAIN
from osm.base.ipam import DEFAULT_POD_SUBNET, gateway_address
from osm.runtime import record

CLONE_NEWNET = 0x40000000
_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class NetworkError(RuntimeError):
    """An ``ip`` command failed, or a name is taken by something the runtime did not make."""


def mesh_netns(prefix: str) -> str:
    """The mesh's namespace of an ``osm up --prefix PREFIX`` (``osm-mesh`` by default)."""
    return f"{prefix}-mesh"


@dataclass(frozen=True, slots=True)
class MeshNetworkConfig:
    """Where the mesh lives. Tests use a unique ``netns`` so parallel runs don't collide;
    the bridge and veth names only need to be unique inside that namespace."""

    netns: str = "osm-mesh"
    bridge: str = "osmbr0"
    subnet: ipaddress.IPv4Network = DEFAULT_POD_SUBNET

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return gateway_address(self.subnet)


@dataclass(frozen=True, slots=True)
class PodNetwork:
    """A pod's network as created: its namespace, address and the bridge-side veth."""

    netns: str
    ip: ipaddress.IPv4Address
    veth: str
    interface: str = "eth0"


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One line of a hosts file: an address and the names that resolve to it."""

    ip: str
    names: tuple[str, ...]


def service_hostnames(
    service: str, namespace: str, *, cluster_domain: str = CLUSTER_DOMAIN, short: bool = True
) -> tuple[str, ...]:
    """The names a Service answers to: ``svc`` (only within its own namespace, so pass
    ``short=False`` for other namespaces' pods), ``svc.ns``, ``svc.ns.svc`` and
    ``svc.ns.svc.<cluster domain>``."""
    names = (f"{service}.{namespace}", f"{service}.{namespace}.svc")
    full = (f"{service}.{namespace}.svc.{cluster_domain}",)
    return ((service,) if short else ()) + names + full


def hosts_file(entries: Iterable[HostEntry]) -> str:
    """The text of ``/etc/hosts`` for a pod: localhost first, then ``entries`` in order."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{entry.ip}\t{' '.join(entry.names)}" for entry in entries if entry.names]
    return "\n".join(lines) + "\n"


# Pods resolve names only from /etc/hosts: no nameserver, so a missing name fails fast
# (glibc then asks 127.0.0.1:53 in the pod, which refuses) instead of leaving the machine.
RESOLV_CONF = "# osm local mode: names come from /etc/hosts only\noptions attempts:1 timeout:1\n"


class MeshNetwork:
    """Creates and removes the mesh's namespaces. Methods block (they run ``ip``);
    call them from a worker thread in asyncio code. Safe to call from several threads
    for different pods; `write_hosts` also for one pod (it is serialized)."""

    def __init__(self, config: MeshNetworkConfig, journal: record.Journal) -> None:
        self.config = config
        self.journal = journal
        self._hosts_lock = threading.Lock()

    # -- the bridge namespace --------------------------------------------------------------
    def create(self) -> None:
        """Creates the mesh namespace, its bridge and gateway address (idempotent when
        this runtime's journal already has them)."""
        name = self.config.netns
        if self.journal.get(record.NETNS, name) and netns_exists(name):
            return
        self._claim(name)
        with record.creating(self.journal, record.NETNS, name):
            _ip("netns", "add", name)
            _ip_batch(
                name,
                [
                    "link set lo up",
                    f"link add {self.config.bridge} type bridge",
                    f"addr add {self.config.gateway}/{self.config.subnet.prefixlen} "
                    f"dev {self.config.bridge}",
                    f"link set {self.config.bridge} up",
                ],
            )
            # A new namespace starts with forwarding off; state it, as the safety rests on it.
            _run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=0"])

    def remove(self) -> None:
        """Removes the mesh namespace (and with it the bridge and every bridge-side veth)."""
        self._remove_netns(self.config.netns)

    # -- pods ------------------------------------------------------------------------------
    def add_pod(
        self, netns: str, ip: ipaddress.IPv4Address, hosts: Sequence[HostEntry] = ()
    ) -> PodNetwork:
        """Creates pod namespace ``netns`` with ``eth0`` = ``ip``/prefix on the bridge,
        ``lo`` up, a default route via the gateway, and ``/etc/netns/<netns>/hosts``.

        Raises `NetworkError` if ``netns`` exists and was not created by this runtime,
        or if ``ip`` is not a pod address of the mesh subnet.
        """
        subnet = self.config.subnet
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise NetworkError(f"{ip} is not a host address of the mesh subnet {subnet}")
        if ip == self.config.gateway:
            raise NetworkError(f"{ip} is the mesh gateway's address")
        self._claim(netns)
        veth = veth_name(netns)
        with record.creating(self.journal, record.NETNS, netns):
            _ip("netns", "add", netns)
        key = f"{self.config.netns}/{veth}"
        with record.creating(self.journal, record.LINK, key, netns=self.config.netns, name=veth):
            _ip_batch(
                self.config.netns,
                [
                    f"link add {veth} type veth peer name eth0 netns {netns}",
                    f"link set {veth} master {self.config.bridge} up",
                ],
            )
        _ip_batch(
            netns,
            [
                "link set lo up",
                f"addr add {ip}/{subnet.prefixlen} dev eth0",
                "link set eth0 up",
                f"route add default via {self.config.gateway} dev eth0",
            ],
        )
        self.write_hosts(netns, hosts)
        return PodNetwork(netns, ip, veth)

    def remove_pod(self, netns: str) -> None:
        """Kills the pod's processes, removes its namespace, veth pair and hosts
        directory. Idempotent; does nothing for names this runtime did not create."""
        veth = veth_name(netns)
        key = f"{self.config.netns}/{veth}"
        entry = self.journal.get(record.LINK, key)
        if entry is not None:
            if netns_exists(self.config.netns):
                subprocess.run(
                    ["ip", "-n", self.config.netns, "link", "del", veth],
                    capture_output=True,
                    timeout=10,
                    check=False,
                )
            self.journal.removed(record.LINK, key)
        self._remove_netns(netns)
        hosts = self.journal.get(record.HOSTS, netns)
        if hosts is not None:
            record.teardown_entry(hosts)
            self.journal.removed(record.HOSTS, netns)

    def write_hosts(self, netns: str, entries: Sequence[HostEntry]) -> None:
        """Writes the pod's ``/etc/hosts`` (``ip netns exec`` bind-mounts it over
        ``/etc/hosts``) and a ``resolv.conf`` without nameservers.

        The hosts file is rewritten in place, not replaced: a bind mount pins the inode,
        so processes already running in the pod see the new names on their next lookup.

        Calls are serialized: two threads writing one pod's file at once (one of them
        creating its directory) must not both create it, nor one remove what the other made.
        """
        with self._hosts_lock:
            self._write_hosts(netns, entries)

    def _write_hosts(self, netns: str, entries: Sequence[HostEntry]) -> None:
        if self.journal.get(record.NETNS, netns) is None:
            raise NetworkError(f'network namespace "{netns}" was not created by this runtime')
        directory = record.ETC_NETNS / netns
        if self.journal.get(record.HOSTS, netns) is None:
            if not record.ETC_NETNS.exists():
                with record.creating(self.journal, record.ETC_DIR, str(record.ETC_NETNS)):
                    record.ETC_NETNS.mkdir(mode=0o755, exist_ok=True)
            if directory.exists():
                raise NetworkError(f"{directory} exists and was not created by this runtime")
            with record.creating(self.journal, record.HOSTS, netns):
                directory.mkdir(mode=0o755)
                _write_in_place(directory / "resolv.conf", RESOLV_CONF)
                _write_in_place(directory / "hosts", hosts_file(entries))
            return
        _write_in_place(directory / "hosts", hosts_file(entries))

    # -- helpers -----------------------------------------------------------------------------
    def _claim(self, netns: str) -> None:
        if not _NETNS_NAME.match(netns):
            raise NetworkError(
                f'"{netns}" is not a usable namespace name (letters, digits, "_.-", at most 63)'
            )
        if netns_exists(netns) and self.journal.get(record.NETNS, netns) is None:
            raise NetworkError(
                f'network namespace "{netns}" already exists and was not created by this '
                "runtime; remove it (ip netns delete) or choose another name"
            )
        if netns_exists(netns):
            raise NetworkError(f'network namespace "{netns}" exists already')

    def _remove_netns(self, netns: str) -> None:
        entry = self.journal.get(record.NETNS, netns)
        if entry is None:
            return
        record.teardown_entry(entry)
        self.journal.removed(record.NETNS, netns)


def netns_exists(netns: str) -> bool:
    return (record.NETNS_DIR / netns).exists()


def veth_name(netns: str) -> str:
    """The bridge-side veth of a pod: ``osm`` + 10 hex digits of its namespace's name
    (IFNAMSIZ allows 15 characters; the pod side is always ``eth0``)."""
    return "osm" + hashlib.sha256(netns.encode()).hexdigest()[:10]


def socket_in_netns(
    netns: str,
    family: socket.AddressFamily = socket.AF_INET,
    kind: socket.SocketKind = socket.SOCK_STREAM,
) -> socket.socket:
    """A new socket that belongs to network namespace ``netns`` (for the rest of its
    life, whichever namespace its user is in). Needs CAP_SYS_ADMIN.

    The calling thread is not touched: a short-lived thread enters the namespace with
    setns(2), creates the socket and ends.
    """
    created: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_create() -> None:
        try:
            fd = os.open(record.NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            created.append(socket.socket(family, kind))
        except BaseException as error:  # handed to the caller's thread
            failed.append(error)

    thread = threading.Thread(target=enter_and_create, name=f"setns-{netns}")
    thread.start()
    thread.join()
    if failed:
        raise NetworkError(f'cannot create a socket in network namespace "{netns}": {failed[0]}')
    return created[0]


def listen_in_netns(netns: str, host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A non-blocking TCP socket listening on ``host:port`` inside ``netns``."""
    sock = socket_in_netns(netns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _setns(fd: int, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if int(libc.setns(fd, nstype)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _write_in_place(path: Path, text: str) -> None:
    """Rewrites ``path`` in place (a bind mount pins its inode) without ever leaving it
    empty: the new bytes go over the old from the start, then the file is cut to their
    length, so a lookup in the pod meanwhile finds its names. Unchanged, it is not
    written at all (a restarted runtime rewriting every pod's hosts file made a lookup
    fail)."""
    data = text.encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.pread(fd, len(data) + 1, 0) == data:
            return
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def _run(argv: list[str], stdin: str | None = None) -> None:
    try:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError:
        raise NetworkError(
            f"{argv[0]} is not installed (Debian: apt-get install iproute2)"
        ) from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{' '.join(argv)} did not finish in 10s") from None
    if result.returncode != 0:
        detail = result.stderr.strip() or result.stdout.strip()
        raise NetworkError(f"{' '.join(argv)} failed (exit {result.returncode}): {detail}")


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _ip_batch(netns: str, commands: Sequence[str]) -> None:
    """Runs ``commands`` in one ``ip -n <netns> -batch -`` (one process, one setns)."""
    _run(["ip", "-n", netns, "-batch", "-"], stdin="\n".join(commands) + "\n")
