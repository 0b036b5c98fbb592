"""Real Envoy accepts what the builders make for the meshes of the golden files.

Each case builds every proxy's resources and has ``envoy --mode validate`` load them as a
static bootstrap (`envoy_validate.envoy_rejects`); a refusal is a failure, with Envoy's
message. The control case proves the judge can say no.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

from osm.catalog.state import MeshState
from osm.xds.generator import build_snapshots
from tests.unit.xds import envoy_validate, xds_support

pytestmark = pytest.mark.skipif(envoy_validate.ENVOY is None, reason=envoy_validate.SKIP_REASON)

MESHES: dict[str, Callable[[], MeshState]] = {
    "bookstore-permissive": lambda: xds_support.bookstore(permissive=True),
    "bookstore-smi-egress": lambda: xds_support.bookstore(permissive=False, egress=True),
    "grpc-envoy-smi": lambda: xds_support.grpc_mesh(permissive=False, sidecar=None),
    "grpc-envoy-permissive": lambda: xds_support.grpc_mesh(permissive=True, sidecar=None),
    "traffic-settings": xds_support.traffic_mesh,
    "egress-smi": xds_support.egress_mesh,
    "tracing-smi": xds_support.tracing_mesh,
    "tracing-egress": lambda: xds_support.traced(xds_support.egress_mesh(), sampling=0.5)[0],
    # The backend's UpstreamTrafficSetting limits its ingress chains too.
    "ingress-rate-limited": lambda: xds_support.ingress_mesh(permissive=False, limited=True),
}


@pytest.mark.parametrize("mesh", sorted(MESHES))
def test_envoy_accepts_every_proxy(mesh: str, tmp_path: Path) -> None:
    built = build_snapshots(MESHES[mesh]())
    assert not built.errors
    assert envoy_validate.envoy_rejects(built, tmp_path) == []


def test_the_judge_refuses_a_broken_listener(tmp_path: Path) -> None:
    """Two filter chains with the same match: Envoy refuses the listener."""
    built = build_snapshots(xds_support.bookstore(permissive=True))
    snapshot = next(iter(built.snapshots.values()))
    bootstrap = envoy_validate.static_bootstrap(snapshot)
    listener = next(item for item in bootstrap.static_resources.listeners if item.filter_chains)
    duplicate = listener_pb2.Listener()
    duplicate.CopyFrom(listener)
    duplicate.filter_chains.append(duplicate.filter_chains[0])
    del bootstrap.static_resources.listeners[:]
    bootstrap.static_resources.listeners.append(duplicate)
    path = tmp_path / "broken.json"
    path.write_text(json_format.MessageToJson(bootstrap))
    verdict = envoy_validate.validate("broken", path)
    assert verdict.startswith("broken: ")
    assert "duplicate matcher" in verdict
