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


class _Namespaces:
    """A client whose osm-system Namespace has ``annotations``."""

    def __init__(self, annotations: dict[str, str]) -> None:
        self.annotations = annotations

    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, object]:
        return {"metadata": {"name": name, "annotations": self.annotations}}


@pytest.mark.parametrize(
    ("annotated", "beside_a_mesh", "local"),
    [
        (True, False, True),
        (False, True, True),  # the demo's manifest replaced the Namespace, annotation gone
        (False, False, False),
    ],
)
async def test_local_mode_is_the_annotation_or_an_osm_up_kubeconfig(
    tmp_path: Path, annotated: bool, beside_a_mesh: bool, local: bool
) -> None:
    if beside_a_mesh:
        daemon.MeshSettings(tmp_path).save()
    client = _Namespaces({wellknown.LOCAL_MODE_ANNOTATION: "yes"} if annotated else {})
    found = await dashboard._local_mode(client, tmp_path / "kubeconfig")  # type: ignore[arg-type]
    assert found is local
