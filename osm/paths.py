"""Where the mesh keeps its state on this machine, and where the controller listens.

One place decides these defaults so that the controller, the CLI and the CA agree.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_API_ADDRESS = "127.0.0.1:9091"
"""The controller's HTTP API (apply/get/list/delete/watch, health, metrics): OSM's 9091."""


def default_state_dir() -> Path:
    """``$OSM_STATE_DIR``; else ``/var/lib/osm`` for root; else the XDG state directory."""
    explicit = os.environ.get("OSM_STATE_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/var/lib/osm")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "osm"


def default_server() -> str:
    """The controller URL the CLI talks to: ``$OSM_SERVER`` or the local default."""
    return os.environ.get("OSM_SERVER", f"http://{DEFAULT_API_ADDRESS}")
