"""``osm xds dump``: offline JSON of one proxy's resources, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from osm.cli.xds import xds
from tests.unit.xds import xds_support

DEMO = str(xds_support.BOOKSTORE)


def test_dump_by_deployment_name_and_type() -> None:
    result = CliRunner().invoke(
        xds, ["dump", "-f", DEMO, "--proxy", "bookstore/bookstore-v1", "--type", "cds"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["proxy"] == "bookstore/bookstore-v1-0"
    (only,) = data["resources"].values()
    names = [c["name"] for c in only["resources"]]
    assert "bookwarehouse/bookwarehouse|14001" in names
    assert "bookstore/bookstore-v1|14001|local" in names


def test_dump_all_types_marks_placeholder_secrets() -> None:
    result = CliRunner().invoke(xds, ["dump", "-f", DEMO, "--proxy", "bookbuyer/bookbuyer-0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["resources"]) == 5
    assert "PLACEHOLDER" in result.output or "UExBQ0VIT0xERVI" in result.output


def test_unknown_proxy_lists_the_valid_ones() -> None:
    result = CliRunner().invoke(xds, ["dump", "-f", DEMO, "--proxy", "bookstore/nope"])
    assert result.exit_code != 0
    assert 'no proxy "bookstore/nope"' in result.output
    assert "bookbuyer/bookbuyer-0" in result.output


def test_bad_proxy_syntax() -> None:
    result = CliRunner().invoke(xds, ["dump", "-f", DEMO, "--proxy", "nope"])
    assert result.exit_code != 0
    assert "NAMESPACE/NAME" in result.output


GRPC_MESH = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {openservicemesh.io/sidecar-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: books, namespace: shop}
spec:
  selector: {app: books}
  ports: [{name: grpc, port: 9090, appProtocol: grpc}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: books, namespace: shop}
spec:
  selector: {matchLabels: {app: books}}
  template:
    metadata: {labels: {app: books}}
    spec: {serviceAccountName: books, containers: [{name: app, image: app}]}
"""


def test_dump_shows_either_data_plane(tmp_path: Path) -> None:
    """Envoy by default; ``--sidecar python`` is local mode, where gRPC ports are TCP."""
    path = tmp_path / "mesh.yaml"
    path.write_text(GRPC_MESH)
    chains = {}
    for sidecar in ("envoy", "python"):
        arguments = ["dump", "-f", str(path), "--proxy", "shop/books", "--type", "lds"]
        result = CliRunner().invoke(xds, [*arguments, "--sidecar", sidecar])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["sidecar"] == sidecar
        (only,) = data["resources"].values()
        (inbound,) = [r for r in only["resources"] if r["name"] == "inbound-listener"]
        chains[sidecar] = [c["name"] for c in inbound["filterChains"]]
    assert chains == {
        "envoy": ["inbound_shop/books_9090_grpc"],
        "python": ["inbound_shop/books_9090_tcp"],
    }
