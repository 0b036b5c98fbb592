"""Where the mesh keeps its state on this machine, and the kubeconfigs local mode writes.

One place decides these paths so that the controller, the kubelet and the CLI agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$OSM_STATE_DIR``, else ``/var/lib/osm`` for root, else ``$XDG_STATE_HOME/osm``
    (``~/.local/state/osm`` when XDG_STATE_HOME is unset)."""
    env = os.environ if environ is None else environ
    if env.get("OSM_STATE_DIR"):
        return Path(env["OSM_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/osm")
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "osm"


def kubeconfig_path(state_dir: Path | None = None) -> Path:
    """Local mode's kubeconfig (the API's address, its CA and an admin client certificate):
    ``<state dir>/kubeconfig``, the state dir being `default_state_dir` unless given."""
    return (state_dir if state_dir is not None else default_state_dir()) / "kubeconfig"


def kubelet_kubeconfig_path(state_dir: Path) -> Path:
    """Local mode's kubelet's kubeconfig (its own client certificate)."""
    return state_dir / "kubelet.kubeconfig"


def controller_kubeconfig_path(state_dir: Path) -> Path:
    """Local mode's controller's kubeconfig (the push loop reads the API through it)."""
    return state_dir / "controller.kubeconfig"
