"""``osm xds dump``: offline JSON of one proxy's resources, and clear errors."""

from __future__ import annotations

import json

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
