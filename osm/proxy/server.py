"""The sidecar process's core: apply a consistent config, run its listeners and admin.

The one idea: `Sidecar.apply(ProxyConfig)` binds any new listener first (a bind failure
is a `ConfigError`, so nothing changes), then switches the runtime in one synchronous
step, then updates, replaces (drain old, serve new) or drains the listeners. Everything
else - the xDS client, a test, a static file - just builds `ProxyConfig`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from osm.proxy import listeners, model, stats, translate
from osm.proxy.runtime import Options, Runtime


def install_uvloop() -> bool:
    """Use uvloop for new event loops when it is installed; -> whether it is."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class Sidecar:
    """A running sidecar. Create, `await apply(cfg)`, `await close()`. Event-loop only."""

    def __init__(
        self,
        options: Options | None = None,
        registry: stats.Stats | None = None,
        access_log: stats.AccessLog | None = None,
    ):
        self.options = options or Options()
        self.stats = registry or stats.Stats()
        self.runtime = Runtime(self.options, self.stats, access_log or stats.AccessLog(None))
        self.listeners: dict[str, listeners.ListenerRuntime] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self.initialized = False
        self._live = self.stats.gauge("server.live")  # Envoy's: 1 once configured, 0 draining
        self.updated_at: dict[tuple[str, str], float] = {}
        self.last_error: str = ""

    @property
    def current_config(self) -> model.ProxyConfig:
        return self.runtime.config

    def listener_address(self, name: str) -> tuple[str, int]:
        """Where listener `name` is actually bound (useful with port 0)."""
        return self.listeners[name].address

    def _bind_address(self, listener: model.Listener) -> tuple[str, int]:
        return self.options.bind_overrides.get(listener.name, (listener.host, listener.port))

    async def apply(self, new: model.ProxyConfig) -> None:
        """Switch to `new`; raises ConfigError (and changes nothing) if a listener cannot bind."""
        started: dict[str, listeners.ListenerRuntime] = {}
        replaced: list[listeners.ListenerRuntime] = []
        for name, listener in new.listeners.items():
            current = self.listeners.get(name)
            if current is not None and (
                self._bind_address(current.listener) == self._bind_address(listener)
            ):
                continue
            runtime_listener = listeners.ListenerRuntime(self.runtime, listener)
            host, port = self._bind_address(listener)
            try:
                await runtime_listener.start(host, port)
            except OSError as error:
                for item in started.values():
                    await item.drain(0)
                raise translate.ConfigError(
                    "Listener", name, "address", f"cannot listen on {host}:{port}: {error}"
                ) from None
            started[name] = runtime_listener
            if current is not None:
                replaced.append(current)
        self.runtime.apply(new)
        self._stamp(new)
        for name, listener in new.listeners.items():
            if name in started:
                self.listeners[name] = started[name]
            else:
                self.listeners[name].update(listener)
        for name in list(self.listeners):
            if name not in new.listeners:
                replaced.append(self.listeners.pop(name))
        for old in replaced:
            task = asyncio.get_running_loop().create_task(old.drain(self.options.drain_timeout))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        self.initialized = True
        self._live.value = 1

    def _stamp(self, new: model.ProxyConfig) -> None:
        now = time.time()
        stamps: dict[tuple[str, str], float] = {}
        old_raw = getattr(self, "_raw", {})
        for type_url, resources in new.raw.items():
            for name, message in resources.items():
                key = (type_url, name)
                previous = old_raw.get(type_url, {}).get(name)
                stamps[key] = (
                    self.updated_at.get(key, now)
                    if previous is not None and previous == message
                    else now
                )
        self.updated_at = stamps
        self._raw: Mapping[str, Mapping[str, Any]] = new.raw

    async def close(self, grace: float = 0.1) -> None:
        """Stop listening, let connections finish for up to `grace` seconds (all listeners
        drain at once), close the rest, drop idle upstreams."""
        self._live.value = 0
        await asyncio.gather(*(listener.drain(grace) for listener in self.listeners.values()))
        self.listeners.clear()
        for task in list(self._draining):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for cluster in self.runtime.clusters.values():
            cluster.close_idle()
