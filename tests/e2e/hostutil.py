"""What the end-to-end modules ask of the host: a free port, a command's output, the
network namespaces a run made, and the host's iptables rules (which a mesh must leave as
they were)."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A TCP port free on loopback now (for a mesh's API, xDS and HTTP ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def output(*argv: str) -> str:
    """The standard output of a command (bounded: 10 s), whatever its exit status."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout


def netns_named(prefix: str) -> list[str]:
    """The network namespaces whose name starts with ``prefix``, sorted."""
    return sorted(n for n in output("ip", "netns", "list").split() if n.startswith(prefix))


def host_iptables() -> str:
    """The host's rules without iptables-save's comment lines (counters and dates)."""
    return "\n".join(line for line in output("iptables-save").splitlines() if line[:1] != "#")
