"""Writing a network address: ``host:port``, with an IPv6 host in brackets.

One idea: every process names addresses the same way (bootstrap files, gRPC targets,
Envoy's bootstrap), so the one rule, as Go's ``net.JoinHostPort`` has it, lives here.
"""

from __future__ import annotations


def join_host_port(host: str, port: int) -> str:
    """``127.0.0.1:15128``, ``[::1]:15128``, ``osm-controller:15128``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
