"""The MeshConfig's ``osmLogLevel`` sets the controller's log level, as OSM's controller
follows it: a change applies at the next build; the value found at start leaves the
level the process was started with (``--log-level``) alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from osm.base import wellknown
from osm.controller import mesh
from osm.kube.client import KubeClient
from osm.model import config
from tests import controllers

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("trace", logging.DEBUG),
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warn", logging.WARNING),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
        ("critical", logging.CRITICAL),
        ("fatal", logging.CRITICAL),
        ("panic", logging.CRITICAL),
        ("off", logging.CRITICAL + 10),
        ("disabled", logging.CRITICAL + 10),
    ],
)
def test_each_of_the_mesh_configs_levels_is_a_logging_level(level: str, expected: int) -> None:
    assert mesh.python_log_level(level) == expected


def test_every_level_the_model_accepts_is_mapped() -> None:
    assert set(config.LOG_LEVELS) == set(mesh._LOG_LEVELS)


@pytest.fixture
def osm_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("osm")
    before = logger.level
    try:
        yield logger
    finally:
        logger.setLevel(before)


async def test_a_changed_osm_log_level_sets_the_controllers_level(
    tmp_path: Path, osm_logger: logging.Logger
) -> None:
    osm_logger.setLevel(logging.INFO)
    async with controllers.running(tmp_path) as controller:
        assert osm_logger.level == logging.INFO  # the MeshConfig at start: no change
        async with KubeClient.from_kubeconfig(controller.kubeconfig) as client:
            await client.patch(
                "MeshConfig",
                wellknown.CONTROL_PLANE_NAMESPACE,
                wellknown.MESH_CONFIG_NAME,
                {"spec": {"observability": {"osmLogLevel": "debug"}}},
            )
            async with asyncio.timeout(10):
                while osm_logger.level != logging.DEBUG:
                    await asyncio.sleep(0.02)
            await client.patch(
                "MeshConfig",
                wellknown.CONTROL_PLANE_NAMESPACE,
                wellknown.MESH_CONFIG_NAME,
                {"spec": {"observability": {"osmLogLevel": "error"}}},
            )
            async with asyncio.timeout(10):
                while osm_logger.level != logging.ERROR:
                    await asyncio.sleep(0.02)
