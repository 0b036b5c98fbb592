"""Golden files: the bookstore demo's xDS, every proxy, in permissive and SMI mode; a
small mesh with a gRPC service, in the Python sidecar's flavour and in Envoy's; and a
small mesh admitting an ingress controller (IngressBackend).

Run with ``UPDATE_GOLDEN=1`` to rewrite the files after an intended change, then read
the diff: the golden files are the reviewed description of what proxies receive.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osm.xds.generator import build_snapshots
from osm.xds.snapshot import Snapshots
from tests.unit import golden
from tests.unit.xds import xds_support

GOLDEN = xds_support.ROOT / "tests" / "golden" / "xds"
ENVOY_ONLY = xds_support.ROOT / "tests" / "golden" / "xds-envoy"
"""Golden files of configuration only Envoy is given (the Python sidecar would NACK it)."""
UPDATE = golden.UPDATE


@pytest.mark.parametrize(
    ("mode", "permissive", "egress"),
    [("bookstore-permissive", True, False), ("bookstore-smi", False, True)],
)
def test_bookstore_golden(mode: str, permissive: bool, egress: bool) -> None:
    _check(
        GOLDEN / mode, build_snapshots(xds_support.bookstore(permissive=permissive, egress=egress))
    )


@pytest.mark.parametrize(
    ("directory", "permissive", "sidecar"),
    [
        # Python sidecars: the gRPC port is TCP (tcp_proxy, no HTTP/2 options), and in
        # SMI mode only `batch` (a TCPRoute) may connect to it; `auditor` (one method)
        # and `client` (every path `/.*`, which is not every request: not OPTIONS *) are
        # denied, with warnings.
        (GOLDEN / "grpc-python-smi", False, "python"),
        (GOLDEN / "grpc-python-permissive", True, "python"),
        # Envoy: the gRPC port is HTTP/2 with routes and HTTP RBAC, as in OSM. Not under
        # GOLDEN, whose files the Python sidecar must accept (tests/unit/proxy).
        (ENVOY_ONLY / "grpc-smi", False, None),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else None,
)
def test_grpc_mesh_golden(directory: Path, permissive: bool, sidecar: str | None) -> None:
    _check(
        directory, build_snapshots(xds_support.grpc_mesh(permissive=permissive, sidecar=sidecar))
    )


@pytest.mark.parametrize(
    ("directory", "permissive"),
    [(GOLDEN / "ingress-permissive", True), (GOLDEN / "ingress-smi", False)],
    ids=lambda value: value.name if isinstance(value, Path) else None,
)
def test_ingress_mesh_golden(directory: Path, permissive: bool) -> None:
    """IngressBackends: an http chain (raw_buffer, source ranges) and an https chain (TLS
    ended, SNI hosts, client certificate validated) beside the mesh's chains, whose
    chain on the https port also matches ALPN ``osm`` (they share a server name)."""
    _check(directory, build_snapshots(xds_support.ingress_mesh(permissive=permissive)))


def test_traffic_settings_golden() -> None:
    """A Retry and an UpstreamTrafficSetting (circuit breaking, TCP and HTTP local rate
    limits, one per-route limit) on a small SMI mesh of Python sidecars."""
    _check(GOLDEN / "traffic-settings", build_snapshots(xds_support.traffic_mesh()))


def test_tracing_mesh_golden() -> None:
    """Tracing on (OSM's default collector, 1% sampling) in the SMI ingress mesh: every
    HCM (inbound, outbound, ingress) carries the Zipkin tracer, every sidecar the tracing
    cluster. The Python sidecar accepts all of it."""
    _check(GOLDEN / "tracing-smi", build_snapshots(xds_support.tracing_mesh()))


def test_egress_mesh_golden() -> None:
    """Egress objects (mesh-wide egress off): ``web``'s outbound listener gets the egress
    chains and the inspectors, ``rds-egress.<port>`` and the egress clusters; the other
    proxies are as without them. The Python sidecar accepts all of it."""
    _check(GOLDEN / "egress-smi", build_snapshots(xds_support.egress_mesh()))


def _check(directory: Path, built: Snapshots) -> None:
    assert not built.errors
    expected_files = set()
    for proxy_id, snapshot in sorted(built.snapshots.items()):
        path = directory / f"{proxy_id.namespace}_{proxy_id.name}.json"
        expected_files.add(path)
        text = json.dumps(xds_support.as_json(snapshot), indent=1, sort_keys=True) + "\n"
        golden.compare(path, text)
    warnings = "".join(f"{w}\n" for w in built.warnings)
    golden.compare(directory / "warnings.txt", warnings)
    expected_files.add(directory / "warnings.txt")
    if UPDATE:
        for stale in set(directory.glob("*")) - expected_files:
            stale.unlink()
    assert set(directory.glob("*")) == expected_files
