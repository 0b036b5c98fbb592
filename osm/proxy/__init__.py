"""The Python sidecar: the subset of Envoy that our control plane emits, driven by xDS.

Layers, bottom up: `model` (the frozen configuration every request reads), `translate`
(protos -> model, one module per xDS type, with an allow-list that refuses what is not
implemented) and `assembly` (a consistent set -> one `model.ProxyConfig`), `http1` (sans-IO
HTTP/1.1), `router`, `rbac`, `filter_chain` and `retry` (pure decisions), `http_rewrite`
(pure header and framing rules), `tls`, `inbox`, `upstream`, `tcp_relay`, `http_session`,
`listeners` and `server` (the asyncio runtime), `stats` and `admin`; beside them, `health`
(the app's rewritten probes) and `healthcheck` (OSM's osm-healthcheck, a program of its own).

An installed build may run the data-plane hot modules compiled by mypyc (``setup.py``
says which and when); `compiled` tells which ones this process runs that way.
"""

from __future__ import annotations

import importlib.machinery
import sys


def compiled() -> tuple[str, ...]:
    """The names of this package's imported modules that run compiled (C extensions built
    by mypyc from their sources), judged by each module's file suffix; () if pure Python."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    prefix = __name__ + "."
    return tuple(
        sorted(
            name.removeprefix(prefix)
            for name, module in list(sys.modules.items())
            if name.startswith(prefix) and str(getattr(module, "__file__", "")).endswith(suffixes)
        )
    )


def build_flavour() -> str:
    """How this process runs the sidecar's data plane, for its start log and admin."""
    modules = compiled()
    return f"compiled by mypyc ({', '.join(modules)})" if modules else "pure Python"
