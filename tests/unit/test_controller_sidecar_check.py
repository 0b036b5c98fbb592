"""The controller warns when a connecting sidecar is not the data plane its pod's
``osm-py.io/sidecar`` annotation names: its configuration was built for the other."""

from __future__ import annotations

import pytest

from osm.base.identity import DataPlane, Identity, ProxyKind
from osm.catalog.ids import ProxyId
from osm.catalog.policy import Proxy
from osm.controller import mesh
from osm.proxy import main


def proxy(sidecar: DataPlane, kind: ProxyKind = ProxyKind.SIDECAR) -> Proxy:
    return Proxy(ProxyId("a", "p-0"), Identity("a", "sa"), "10.0.0.1", (), (), kind, sidecar)


@pytest.mark.parametrize(
    ("annotated", "user_agent", "kind", "warning"),
    [
        pytest.param(
            DataPlane.PYTHON, "osm-py-sidecar", ProxyKind.SIDECAR, None, id="python, and says so"
        ),
        pytest.param(DataPlane.ENVOY, "envoy", ProxyKind.SIDECAR, None, id="envoy, and says so"),
        pytest.param(
            DataPlane.ENVOY,
            "",
            ProxyKind.SIDECAR,
            None,
            id="unmarked and anonymous: taken as Envoy",
        ),
        pytest.param(
            DataPlane.ENVOY,
            "osm-py-sidecar",
            ProxyKind.SIDECAR,
            "is the Python sidecar (user agent osm-py-sidecar) but its pod is not annotated",
            id="the Python sidecar in an unmarked pod",
        ),
        pytest.param(
            DataPlane.PYTHON,
            "envoy",
            ProxyKind.SIDECAR,
            'says it is "envoy": it gets the Python sidecar\'s configuration',
            id="Envoy in a pod marked python",
        ),
        pytest.param(
            DataPlane.ENVOY, "osm-py-sidecar", ProxyKind.GRPC, None, id="proxyless gRPC: no sidecar"
        ),
    ],
)
def test_a_sidecar_that_contradicts_its_pods_annotation_is_reported(
    annotated: str, user_agent: str, kind: str, warning: str | None
) -> None:
    problem = mesh.sidecar_mismatch(proxy(annotated, kind), user_agent)
    if warning is None:
        assert problem is None
    else:
        assert problem is not None and warning in problem


def test_the_controller_knows_the_sidecars_user_agent() -> None:
    assert mesh.PYTHON_SIDECAR_USER_AGENT == main.USER_AGENT
