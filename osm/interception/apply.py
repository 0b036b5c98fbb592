"""Applies interception rules inside a pod's network namespace.

The one idea: the rules text from `osm.interception.rules.render` goes unchanged to
``ip netns exec <netns> iptables-restore --noflush``, so the rules a pod gets in local
mode are byte for byte those of OSM's init container. Nothing here touches the
caller's own network namespace: the namespace name is required and must exist.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from osm.interception.rules import POD_IP_PLACEHOLDER

NETNS_DIR = Path("/run/netns")


class InterceptionError(RuntimeError):
    """iptables is missing, the namespace does not exist, or iptables-restore failed."""


def iptables_restore_path() -> str | None:
    """The ``iptables-restore`` executable, or None when iptables is not installed."""
    return shutil.which("iptables-restore") or next(
        (
            str(p)
            for p in (Path("/usr/sbin/iptables-restore"), Path("/sbin/iptables-restore"))
            if p.exists()
        ),
        None,
    )


def apply_rules(netns: str, rules: str, *, timeout: float = 10.0) -> None:
    """Runs ``iptables-restore --noflush`` with ``rules`` inside network namespace ``netns``.

    The rules are added to what the namespace's nat table already holds (``--noflush``,
    as OSM does): apply once per pod. Raises `InterceptionError` with iptables' own
    message when it refuses, and a clear message when iptables is not installed, the
    namespace does not exist, or the rules still hold the ``$POD_IP`` placeholder.
    """
    if not netns or "/" in netns or netns in (".", ".."):
        raise InterceptionError(f'"{netns}" is not a network namespace name')
    if POD_IP_PLACEHOLDER in rules:
        raise InterceptionError(
            "the rules use PodIP mode but carry no pod IP; build the InterceptionConfig with "
            "pod_ip set"
        )
    restore = iptables_restore_path()
    if restore is None:
        raise InterceptionError(
            "iptables-restore was not found; install iptables (Debian: apt-get install -y "
            "iptables) to intercept pod traffic"
        )
    ip = shutil.which("ip") or "/usr/sbin/ip"
    if not (NETNS_DIR / netns).exists():
        raise InterceptionError(f'network namespace "{netns}" does not exist')
    try:
        result = subprocess.run(
            [ip, "netns", "exec", netns, restore, "--noflush"],
            input=rules.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InterceptionError(
            f'iptables-restore in network namespace "{netns}" did not finish in {timeout:g}s'
        ) from None
    except FileNotFoundError as error:
        raise InterceptionError(f"cannot run {error.filename}: not installed") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise InterceptionError(
            f'iptables-restore in network namespace "{netns}" failed '
            f"(exit {result.returncode}): {message}"
        )


def saved_rules(netns: str, *, timeout: float = 10.0) -> str:
    """The namespace's nat table as ``iptables-save -t nat`` prints it (for diagnostics)."""
    save = shutil.which("iptables-save")
    if save is None:
        raise InterceptionError("iptables-save was not found; install iptables")
    result = subprocess.run(
        ["ip", "netns", "exec", netns, save, "-t", "nat"],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise InterceptionError(
            f'iptables-save in network namespace "{netns}" failed: '
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout.decode()
