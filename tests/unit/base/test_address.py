"""``host:port`` as every process writes it: IPv6 hosts in brackets."""

from __future__ import annotations

import pytest

from osm.base.address import join_host_port


@pytest.mark.parametrize(
    ("host", "port", "written"),
    [
        ("127.0.0.1", 15128, "127.0.0.1:15128"),
        ("::1", 15128, "[::1]:15128"),
        ("fd00::10", 80, "[fd00::10]:80"),
        ("osm-controller.osm-system.svc", 15128, "osm-controller.osm-system.svc:15128"),
    ],
)
def test_join_host_port(host: str, port: int, written: str) -> None:
    assert join_host_port(host, port) == written
