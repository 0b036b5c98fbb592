"""A real Kubernetes API for CLI tests: `osm.apiserver.local` over a memory store, in a
thread of its own, with the control plane's objects ``osm install`` creates.

One idea: the CLI is a synchronous program (click's runner calls it in the test's
thread), so the API it talks to runs its event loop in another thread; the CLI reaches it
over HTTPS with client certificates, through the kubeconfig `local.start` wrote, exactly
as it reaches local mode or a cluster.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from osm.apiserver import local
from osm.apiserver import server as apiserver
from osm.controller import install
from osm.store.memory import MemoryStore

T = TypeVar("T")
CALL_TIMEOUT = 30.0


@dataclass
class RunningApi:
    """The API's URL, its admin kubeconfig, its state dir (pods' logs are read from
    ``<state_dir>/logs/<namespace>/<pod>/<container>.log``) and a way to run a coroutine
    on its loop (to read the store directly)."""

    url: str
    kubeconfig: Path
    state_dir: Path
    store: MemoryStore
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_TIMEOUT)

    def log_file(self, namespace: str, pod: str, container: str) -> Path:
        return self.state_dir / "logs" / namespace / pod / f"{container}.log"


@contextmanager
def running_api(
    state_dir: Path,
    *,
    control_plane: bool = True,
    admission: apiserver.Admission | None = None,
) -> Iterator[RunningApi]:
    """Serve a fresh store on a free port: with local mode's ``osm-system`` and its
    MeshConfig (`control_plane`), or empty as a new cluster; `admission` as
    `osm.apiserver.local.start` takes it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api", daemon=True)
    thread.start()

    def call(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(CALL_TIMEOUT)

    async def make_store() -> MemoryStore:
        return MemoryStore()

    store = call(make_store())
    try:
        if control_plane:
            call(install.ensure(store))
        api = call(local.start(store, state_dir, port=0, admission=admission))
        try:
            yield RunningApi(api.url, api.kubeconfig, state_dir, store, loop)
        finally:
            call(api.stop())
    finally:
        call(store.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT)
        loop.close()
