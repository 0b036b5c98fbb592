"""The `osm` command's Kubernetes client: the async `KubeClient`, called synchronously.

One idea: a command makes one `Api` from a kubeconfig (``--kubeconfig`` and
``--context``, else `osm.kube.config.find_kubeconfig`'s search: ``$KUBECONFIG``, local
mode's ``<state dir>/kubeconfig``, ``~/.kube/config``) and every call runs the async
client on the event loop the `Api` owns (`asyncio.Runner`), so the calls of one command
share one connection pool. Nothing here knows local mode: any cluster's kubeconfig works.

Errors leave as `osm.kube.errors`; `describe` words them as kubectl does
(``Error from server (NotFound): ...``, a 422's causes one per line), and says what to do
when there is no kubeconfig or no server answers (``osm up``, ``KUBECONFIG``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from osm import paths
from osm.kube import config as kube_config
from osm.kube.client import KubeClient, Manifest, PatchKind
from osm.kube.errors import ApiError, ConnectionFailed, KubeConfigError, KubeError

T = TypeVar("T")
HOW_TO_CONNECT = (
    "start local mode with `osm up` (it writes {kubeconfig}, which osm finds by itself), "
    "or point KUBECONFIG or --kubeconfig at a cluster's kubeconfig"
)


class Api:
    """One command's connection to the API; `close` it (or use it as a context manager)."""

    def __init__(self, client: KubeClient, *, kubeconfig: Path | None = None) -> None:
        self._client = client
        self._runner = asyncio.Runner()
        self.kubeconfig = kubeconfig
        """The kubeconfig in use (None: the in-cluster service account)."""

    @classmethod
    def connect(cls, kubeconfig: str | Path | None = None, *, context: str | None = None) -> Api:
        """An `Api` for `kubeconfig` (else the one `find_kubeconfig` finds) and its current
        context (or `context`). Raises `KubeConfigError` whose message says what to do."""
        path = kube_config.find_kubeconfig(str(kubeconfig) if kubeconfig else None)
        if path is None and not kube_config.in_a_pod():
            raise KubeConfigError(
                "no kubeconfig found ($KUBECONFIG, "
                f"{paths.kubeconfig_path()}, ~/.kube/config): "
                + HOW_TO_CONNECT.format(kubeconfig=paths.kubeconfig_path())
            )
        client = KubeClient.from_kubeconfig(path, context=context)
        return cls(client, kubeconfig=path)

    @property
    def server(self) -> str:
        return self._client.server

    def close(self) -> None:
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- calls: `KubeClient`'s, synchronous ------------------------------------------------
    def get(
        self, kind: str, namespace: str | None, name: str, *, api_version: str | None = None
    ) -> Manifest:
        """The object (at `api_version`, default the kind's preferred one)."""
        return self._run(self._client.get(kind, namespace, name, api_version=api_version))

    def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Manifest], str]:
        """Objects of `kind` (all namespaces when `namespace` is None) and the list's
        resourceVersion."""
        return self._run(self._client.list(kind, namespace, label_selector))

    def create(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Manifest:
        return self._run(self._client.create(obj, dry_run=dry_run))

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Manifest:
        return self._run(self._client.replace(obj, dry_run=dry_run))

    def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        patch_type: PatchKind = "merge",
    ) -> Manifest:
        return self._run(self._client.patch(kind, namespace, name, patch, patch_type))

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        self._run(self._client.delete(kind, namespace, name))

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Generator[tuple[str, Manifest], None, None]:
        """Events ``(type, object)`` after `resource_version` (ADDED, MODIFIED, DELETED),
        until the caller stops iterating (or Ctrl-C)."""
        return self._iterate(
            self._client.watch(
                kind,
                namespace,
                resource_version,
                label_selector=label_selector,
                field_selector=field_selector,
                bookmarks=False,
            )
        )

    def logs(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        follow: bool = False,
    ) -> Generator[bytes, None, None]:
        """A container's output, in chunks (see `KubeClient.logs`)."""
        return self._iterate(
            self._client.logs(
                namespace, pod, container=container, tail_lines=tail_lines, follow=follow
            )
        )

    # -- plumbing ----------------------------------------------------------------------------
    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(call)

    def _iterate(self, stream: AsyncIterator[T]) -> Generator[T, None, None]:
        try:
            while True:
                more, item = self._runner.run(_next(stream))
                if not more:
                    return
                yield item  # type: ignore[misc]  # `more` says it is a T
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None and not self._runner.get_loop().is_closed():
                self._runner.run(aclose())


async def _next(stream: AsyncIterator[T]) -> tuple[bool, T | None]:
    """The next item, as (True, item), or (False, None) at the end: a StopAsyncIteration
    must not escape a task."""
    try:
        return True, await anext(stream)
    except StopAsyncIteration:
        return False, None


def describe(error: KubeError | ValueError, server: str = "", *, context: str = "") -> str:
    """The message for the user, as kubectl prints it: ``Error from server (Reason):
    [context: ]message``; for 422 Invalid ``The Kind "name" is invalid:`` and each cause
    ``field: message``; for a server that does not answer or a missing kubeconfig, what
    to do about it. `context` says what was being done (``error when applying ...``)."""
    if isinstance(error, ApiError):
        return _api_error_text(error, context)
    if isinstance(error, ConnectionFailed):
        where = f" at {server}" if server else ""
        return (
            f"error: the Kubernetes API{where} does not answer: {error} (is the mesh "
            "running? " + HOW_TO_CONNECT.format(kubeconfig=paths.kubeconfig_path()) + ")"
        )
    return f"error: {context}: {error}" if context else f"error: {error}"


def _api_error_text(error: ApiError, context: str) -> str:
    if error.code == 401 or error.reason == "Unauthorized":
        return f"error: You must be logged in to the server ({error.message or 'Unauthorized'})"
    if error.reason == "Invalid" and error.causes:
        kind = str(error.details.get("kind") or "")
        name = str(error.details.get("name") or "")
        head = (
            f"The {kind} {_quoted(name)} is invalid" if kind or name else "The request is invalid"
        )
        causes = [f"{c.field}: {c.message}" if c.field else c.message for c in error.causes]
        if len(causes) == 1:
            return f"{head}: {causes[0]}"
        return f"{head}: \n" + "\n".join(f"* {cause}" for cause in causes)
    message = f"{context}: {error.message}" if context else error.message
    if error.reason:
        return f"Error from server ({error.reason}): {message}"
    return f"Error from server: {message or error.code}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
