"""The MeshConfig ``osm install`` writes: every field spelt out, and it means OSM's defaults."""

from __future__ import annotations

import pytest

from osm.base import wellknown
from osm.model import config, kinds


def test_the_default_manifest_parses_to_the_default_mesh_config() -> None:
    resource, problems = kinds.parse(config.default_manifest())
    assert problems == []
    assert resource == config.default_mesh_config()
    assert resource.ref.namespace == wellknown.CONTROL_PLANE_NAMESPACE
    assert resource.ref.name == wellknown.MESH_CONFIG_NAME


def test_the_default_manifest_spells_out_every_section_osm_presets() -> None:
    spec = config.default_manifest()["spec"]
    assert sorted(spec) == ["certificate", "featureFlags", "observability", "sidecar", "traffic"]
    assert spec["certificate"]["serviceCertValidityDuration"] == "24h"
    assert spec["traffic"]["enablePermissiveTrafficPolicyMode"] is True
    assert spec["sidecar"]["logLevel"] == "error"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (1, "1s"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m"), (86400, "24h")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert config.go_duration(seconds) == text
