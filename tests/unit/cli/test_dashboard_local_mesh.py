"""`osm dashboard` in local mode reaches the mesh that wrote its kubeconfig: the network
namespace and controller port ``osm up --prefix/--http-port`` recorded beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from osm.base import wellknown
from osm.cli import dashboard
from osm.runtime import daemon


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (None, ("osm-mesh", wellknown.CONTROLLER_HTTP_PORT)),
        (("osm", wellknown.CONTROLLER_HTTP_PORT), ("osm-mesh", wellknown.CONTROLLER_HTTP_PORT)),
        (("osmx1", 40123), ("osmx1-mesh", 40123)),
    ],
)
def test_the_mesh_beside_the_kubeconfig(
    tmp_path: Path, recorded: tuple[str, int] | None, expected: tuple[str, int]
) -> None:
    if recorded is not None:
        prefix, http_port = recorded
        daemon.MeshSettings(tmp_path, prefix=prefix, http_port=http_port).save()
    assert dashboard.local_mesh(tmp_path / "kubeconfig") == expected


def test_no_kubeconfig_is_osms_defaults() -> None:
    assert dashboard.local_mesh(None) == ("osm-mesh", wellknown.CONTROLLER_HTTP_PORT)
