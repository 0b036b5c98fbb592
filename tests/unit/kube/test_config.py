"""Kubeconfig files: what `write_kubeconfig` writes is private from its first byte, and
lightkube and kubectl both read back exactly what was written; `find_kubeconfig` searches
in kubectl's order with local mode's file before the user's own."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import lightkube
import pytest

from osm import paths
from osm.kube import config
from osm.kube.errors import KubeConfigError

SERVER = "https://127.0.0.1:6443"
CA, CERT, KEY = b"-----CA-----\n", b"-----CERT-----\n", b"-----KEY-----\n"


def _write(path: Path, **overrides: str) -> Path:
    return config.write_kubeconfig(
        path, server=SERVER, ca_pem=CA, cert_pem=CERT, key_pem=KEY, user="admin", **overrides
    )


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_the_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = _write(tmp_path / "new" / "kubeconfig")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_rewriting_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    _write(path, context="second")
    assert path.stat().st_mode & 0o777 == 0o600
    assert lightkube.KubeConfig.from_file(path).current_context == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["kubeconfig"]


def test_lightkube_reads_back_what_was_written(tmp_path: Path) -> None:
    loaded = lightkube.KubeConfig.from_file(_write(tmp_path / "kubeconfig")).get()
    assert loaded is not None and loaded.user is not None
    assert (loaded.context_name, loaded.context.cluster, loaded.context.user) == (
        "osm-local",
        "osm-local",
        "admin",
    )
    assert loaded.cluster.server == SERVER
    embedded = (
        loaded.cluster.certificate_auth_data,
        loaded.user.client_cert_data,
        loaded.user.client_key_data,
    )
    assert tuple(base64.b64decode(value or "") for value in embedded) == (CA, CERT, KEY)


def test_kubectl_shows_what_was_written(tmp_path: Path) -> None:
    path = _write(tmp_path / "kubeconfig", cluster="c1", context="ctx")
    shown = subprocess.run(
        ["kubectl", "config", "view", "--kubeconfig", str(path), "--raw", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    view = json.loads(shown.stdout)
    assert view["current-context"] == "ctx"
    assert view["contexts"] == [{"name": "ctx", "context": {"cluster": "c1", "user": "admin"}}]
    assert view["clusters"] == [
        {
            "name": "c1",
            "cluster": {
                "server": SERVER,
                "certificate-authority-data": base64.b64encode(CA).decode(),
            },
        }
    ]
    assert view["users"] == [
        {
            "name": "admin",
            "user": {
                "client-certificate-data": base64.b64encode(CERT).decode(),
                "client-key-data": base64.b64encode(KEY).decode(),
            },
        }
    ]


def test_local_modes_kubeconfig_is_in_the_state_directory(tmp_path: Path) -> None:
    assert paths.kubeconfig_path(tmp_path) == tmp_path / "kubeconfig"


# Files that exist in each case of the search: "explicit", "env1" and "env2" (the two
# entries of $KUBECONFIG), "state" (local mode's), "home" (~/.kube/config).
SEARCH = [
    ("the explicit flag wins", {"explicit", "env1", "state", "home"}, True, "explicit"),
    ("then $KUBECONFIG", {"env1", "env2", "state", "home"}, False, "env1"),
    ("its first entry that exists", {"env2", "state", "home"}, False, "env2"),
    ("then local mode's", {"state", "home"}, False, "state"),
    ("then the user's own", {"home"}, False, "home"),
    ("or none", set(), False, None),
]


@pytest.mark.parametrize(
    ("existing", "flag", "found"),
    [pytest.param(e, f, w, id=name) for name, e, f, w in SEARCH],
)
def test_find_kubeconfig_search_order(
    tmp_path: Path, existing: set[str], flag: bool, found: str | None
) -> None:
    state, home = tmp_path / "state", tmp_path / "home"
    places = {
        "explicit": tmp_path / "flag.yaml",
        "env1": tmp_path / "env1.yaml",
        "env2": tmp_path / "env2.yaml",
        "state": paths.kubeconfig_path(state),
        "home": home / ".kube" / "config",
    }
    for name in existing:
        places[name].parent.mkdir(parents=True, exist_ok=True)
        places[name].write_text("{}")
    environ = {"OSM_STATE_DIR": str(state), "KUBECONFIG": f"{places['env1']}:{places['env2']}"}
    result = config.find_kubeconfig(
        str(places["explicit"]) if flag else None, environ=environ, home=home
    )
    assert result == (places[found] if found else None)


def test_an_explicit_kubeconfig_must_exist(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"missing\.yaml \(given explicitly\) does not exist"):
        config.find_kubeconfig(str(tmp_path / "missing.yaml"), environ={}, home=tmp_path)
