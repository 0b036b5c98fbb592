"""The end-to-end tests' view of a running mesh's API: the `osm` CLI's Kubernetes client
(`osm.cli.client.Api`) with the admin kubeconfig `osm up` wrote, and the controller's
``/debug/proxies``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from osm.cli import apply as cli_apply
from osm.cli import proxy as cli_proxy
from osm.cli.client import Api
from osm.runtime import daemon


class MeshApi:
    def __init__(self, settings: daemon.MeshSettings) -> None:
        self.settings = settings
        self.api = Api.connect(settings.kubeconfig)

    def apply(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """Create or replace each object; any refusal fails the test, with its Status."""
        failed = [o for o in cli_apply.apply(self.api, objects) if o.error is not None]
        assert not failed, [f"{o.ref}: {o.error}" for o in failed]

    def items(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        found, _ = self.api.list(kind, namespace=namespace)
        return list(found)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.api.get(kind, namespace, name))

    def delete(self, objects: Sequence[Mapping[str, Any]]) -> None:
        for obj in objects:
            meta = obj["metadata"]
            self.api.delete(obj["kind"], meta.get("namespace"), meta["name"])

    def proxies(self) -> list[dict[str, Any]]:
        return cli_proxy.fetch_proxies(f"127.0.0.1:{self.settings.http_port}")

    def close(self) -> None:
        self.api.close()
