"""``osm up``'s wiring to the API: the runtime gets its own kubeconfig, ``osm up`` waits
for an authenticated read through the user's, and says where that kubeconfig is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from osm import paths
from osm.base import wellknown
from osm.cli import apply as applying
from osm.cli import runtime as runtime_cli
from osm.cli.client import Api
from osm.install import observability
from osm.runtime import daemon
from tests.conftest import free_port
from tests.unit.cli.local_api import RunningApi


def test_the_runtime_reads_the_api_with_its_own_kubeconfig(tmp_path: Path) -> None:
    argv = daemon.runtime_argv(daemon.MeshSettings(tmp_path), tmp_path / "venv")
    assert argv[argv.index("--kubeconfig") + 1] == str(paths.kubelet_kubeconfig_path(tmp_path))
    assert "--server" not in argv


def test_the_runtime_relays_the_controllers_metrics_port_it_was_started_with(
    tmp_path: Path,
) -> None:
    """Pods (Prometheus) reach the controller's metrics at the gateway's well-known port,
    whatever loopback port ``osm up --http-port`` gave the controller."""
    settings = daemon.MeshSettings(tmp_path, http_port=19091)
    argv = daemon.runtime_argv(settings, tmp_path / "venv")
    assert argv[argv.index("--http-port") + 1] == "19091"


def test_settings_name_the_api_and_its_kubeconfig(tmp_path: Path) -> None:
    settings = daemon.MeshSettings(tmp_path, api_port=16443, http_port=19091)
    assert settings.server == "https://127.0.0.1:16443"
    assert settings.kubeconfig == tmp_path / "kubeconfig"
    settings.save()
    assert daemon.MeshSettings.load(tmp_path) == settings


def test_settings_saved_before_the_http_port_existed_load_with_osms(tmp_path: Path) -> None:
    old = {"api_port": 1, "xds_port": 2, "prefix": "osm", "pod_python": "/opt/osm/venv"}
    (tmp_path / daemon.MESH_FILE).write_text(json.dumps(old))
    loaded = daemon.MeshSettings.load(tmp_path)
    assert loaded is not None
    assert loaded.http_port == wellknown.CONTROLLER_HTTP_PORT


def test_the_api_answers_through_the_users_kubeconfig(api: RunningApi, tmp_path: Path) -> None:
    assert daemon.api_answers(api.kubeconfig)
    assert not daemon.api_answers(tmp_path / "not-written-yet")
    config = yaml.safe_load(api.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    stale = tmp_path / "stale.kubeconfig"
    stale.write_text(yaml.safe_dump(config))
    assert not daemon.api_answers(stale)


@pytest.mark.parametrize(
    ("default_state", "osm_finds_it"),
    [(True, "osm finds it by itself"), (False, "osm finds it with --kubeconfig")],
    ids=["default state dir", "another state dir"],
)
def test_up_says_where_the_kubeconfig_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_state: bool, osm_finds_it: str
) -> None:
    monkeypatch.setenv("OSM_STATE_DIR", str(tmp_path if default_state else tmp_path / "other"))
    hint = runtime_cli.kubeconfig_hint(tmp_path / "kubeconfig")
    assert osm_finds_it in hint
    assert hint.splitlines()[-1].strip() == f"export KUBECONFIG={tmp_path / 'kubeconfig'}"


def test_up_deploys_the_observability_stack_once(api: RunningApi) -> None:
    with Api.connect(api.kubeconfig) as client:
        changed, errors = runtime_cli.deploy_observability(client)
        assert errors == []
        assert changed == [
            f"{applying.Ref.of(applied)} created" for applied in observability.render(local=True)
        ]
        again, errors = runtime_cli.deploy_observability(client)
        assert (again, errors) == ([], []), "a second osm up changes nothing"
        service = client.get(
            "Service", wellknown.CONTROL_PLANE_NAMESPACE, wellknown.PROMETHEUS_SERVICE
        )
        assert service["spec"]["clusterIP"] == "None"
