"""``osm get pods`` reads like kubectl's: READY counts ready containers out of the pod's
containers (an injected pod has its sidecar among them), RESTARTS sums their restarts."""

from __future__ import annotations

from typing import Any

import pytest

from osm.cli import output
from osm.model import kinds
from osm.model.core import Pod


def pod(statuses: list[dict[str, Any]] | None) -> Pod:
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {
            "containers": [
                {"name": "app", "command": ["app"]},
                {"name": "envoy", "command": ["envoy"]},
            ]
        },
    }
    if statuses is not None:
        manifest["status"] = {"phase": "Running", "containerStatuses": statuses}
    resource = kinds.decode(manifest)
    assert isinstance(resource, Pod)
    return resource


@pytest.mark.parametrize(
    ("statuses", "ready", "restarts"),
    [
        pytest.param(None, "0/2", "0", id="no status yet"),
        pytest.param(
            [{"name": "app", "ready": True, "restartCount": 1}, {"name": "envoy", "ready": False}],
            "1/2",
            "1",
            id="the sidecar not ready yet",
        ),
        pytest.param(
            [
                {"name": "app", "ready": True, "restartCount": 2},
                {"name": "envoy", "ready": True, "restartCount": 1},
            ],
            "2/2",
            "3",
            id="both ready, restarts summed",
        ),
    ],
)
def test_ready_and_restarts_columns(
    statuses: list[dict[str, Any]] | None, ready: str, restarts: str
) -> None:
    header, row = output.table([pod(statuses)]).splitlines()
    columns = dict(zip(header.split(), row.split(), strict=True))
    assert (columns["READY"], columns["RESTARTS"]) == (ready, restarts)
