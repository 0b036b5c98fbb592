"""A proxy's node id starts with the injector's ``osm-proxy-uuid`` label, as in OSM; a pod
that was not injected (no label) is named by its pod name. Proxies that differ only in
UUID share one configuration class."""

from __future__ import annotations

import pytest

from osm.base import wellknown
from osm.catalog.catalog import Catalog
from osm.catalog.ids import ProxyId
from osm.controller.mesh import node_id
from tests.unit.catalog import meshes as m

UUID = "6f1c1a8e-3b52-4a4e-9f4b-2d3c8f5e7a10"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "web", wellknown.PROXY_UUID_LABEL: UUID}, f"{UUID}.sidecar.web.a"),
        ({"app": "web"}, "web-0.sidecar.web.a"),
    ],
    ids=["injected: the uuid label", "not injected: the pod name"],
)
def test_node_id(labels: dict[str, str], expected: str) -> None:
    catalog = Catalog(m.state(m.namespace("a"), m.pod("a", "web-0", labels, "web", "10.0.0.1")))
    proxy = catalog.proxy(ProxyId("a", "web-0"))
    assert proxy is not None
    assert node_id(proxy) == expected


def test_the_uuid_is_not_part_of_the_class_key() -> None:
    catalog = Catalog(
        m.state(
            m.namespace("a"),
            m.pod(
                "a", "web-0", {"app": "web", wellknown.PROXY_UUID_LABEL: UUID}, "web", "10.0.0.1"
            ),
            m.pod("a", "web-1", {"app": "web"}, "web", "10.0.0.2"),
        )
    )
    first, second = catalog.proxy(ProxyId("a", "web-0")), catalog.proxy(ProxyId("a", "web-1"))
    assert first is not None and second is not None
    assert first.uuid == UUID and second.uuid == ""
    assert first.class_key == second.class_key
