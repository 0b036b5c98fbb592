"""``python images/check.py``: runs each built image with podman and checks it is what it claims.

The one idea: the check starts from the OCI archives `build.py` wrote (``images.json``), pulled
into a podman storage of its own, so it proves what a user would push, and it runs every
container with ``--network none`` (never the host's iptables). Per image (`CHECKS`):

- ``init``: OSM's interception script (`osm.interception.rules.init_container_script`) exits
  0 as root with NET_ADMIN and ``iptables-save`` in that container shows its chains; without
  NET_ADMIN it fails, as it must;
- ``sidecar``: runs as the proxy's UID; ``python -m osm.proxy.healthcheck`` answers
  ``/osm-healthcheck`` on its port (200 for a port that accepts, 503 for one that does not);
  every ``osm.proxy`` module imports, and the compiled ones are exactly setup.py's `COMPILED`;
- ``osm-controller`` and ``osm-injector``: their ``--help`` runs; each process as its
  Deployment runs it (``osm controller --kubernetes``, ``osm injector``), as the non-root
  user and configured as in a pod (no kubeconfig: its service account's token and the
  API's CA at ``/var/run/secrets/kubernetes.io/serviceaccount``, ``KUBERNETES_SERVICE_*``
  in the environment), against a stand-in cluster in the same container (local mode's API
  server over a memory store, `CLUSTER_API`), answers ``/health/ready`` and has put the
  mesh root in the ``osm-ca-bundle`` Secret.

Prints one line per image (build seconds, size, archive size, the result) and exits 1 if any
check failed; ``--json FILE`` writes the results.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import spec

from osm.base import wellknown
from osm.interception import rules

START_TIMEOUT = 60.0
"""Seconds a server in a container has to answer its health check."""

# An HTTP GET from inside a container (its python), printing the status: argv url [header=value].
HTTP_GET = """
import sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1])
for item in sys.argv[2:]:
    name, _, value = item.partition("=")
    request.add_header(name, value)
try:
    with urllib.request.urlopen(request, timeout=2) as response:
        print(response.status, response.read().decode().strip())
except urllib.error.HTTPError as error:
    print(error.code, error.read().decode().strip())
"""

# Imports every module of osm.proxy and prints which run compiled.
PROXY_IMPORTS = """
import importlib, json, pkgutil, osm.proxy
names = [m.name for m in pkgutil.walk_packages(osm.proxy.__path__, "osm.proxy.")]
for name in names:
    if not name.endswith("__main__"):
        importlib.import_module(name)
print(json.dumps({"imported": len(names), "compiled": list(osm.proxy.compiled())}))
"""


class CheckFailed(Exception):
    pass


@dataclass
class Result:
    name: str
    ok: bool = False
    build_seconds: float = 0.0
    size_bytes: int = 0
    archive_bytes: int = 0
    detail: list[str] = field(default_factory=list)


class Podman:
    def __init__(self, work: Path) -> None:
        self.env = spec.tool_environment(work)

    def run(self, *args: str, check: bool = True, timeout: float = 120.0) -> str:
        result = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CheckFailed(
                f"podman {' '.join(args)[:200]} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-800:]}"
            )
        return result.stdout.strip()

    def status(self, *args: str) -> tuple[int, str]:
        result = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return result.returncode, (result.stdout + result.stderr).strip()

    def pull(self, archive: str) -> str:
        """Loads an OCI archive; -> the image id."""
        return self.run("pull", "-q", f"oci-archive:{archive}").splitlines()[-1]

    def serve(
        self,
        image: str,
        command: Sequence[str],
        probe: Callable[[str], str],
        options: Sequence[str] = (),
    ) -> str:
        """Starts `command` in a detached container (``podman run`` `options` added),
        waits until `probe(container)` returns without raising, and removes the
        container; -> what the probe returned."""
        container = self.run("run", "-d", "--network", "none", *options, image, *command)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    return probe(container)
                except CheckFailed as error:
                    running = self.run("inspect", "--format", "{{.State.Running}}", container)
                    if running != "true" or time.monotonic() > deadline:
                        logs = self.run("logs", container, check=False)
                        raise CheckFailed(f"{error}; container logs:\n{logs[-1500:]}") from None
                    time.sleep(0.5)
        finally:
            self.run("rm", "-f", "-t", "2", container, check=False)

    def get(self, container: str, url: str, *headers: str) -> tuple[int, str]:
        out = self.run("exec", container, "python", "-c", HTTP_GET, url, *headers)
        status, _, body = out.partition(" ")
        return int(status), body


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def check_init(podman: Podman, image: str) -> list[str]:
    script = rules.init_container_script(rules.InterceptionConfig())
    chains = [line[1:].split()[0] for line in script.splitlines() if line.startswith(":")]
    code, out = podman.status(
        "run",
        "--rm",
        "--network",
        "none",
        "--cap-add",
        "NET_ADMIN",
        image,
        "/bin/sh",
        "-c",
        f"{script}iptables-save -t nat",
    )
    _expect(code == 0, f"the init script exited {code}: {out[-800:]}")
    missing = [chain for chain in chains if f":{chain} " not in out]
    _expect(not missing, f"iptables-save lacks {missing}:\n{out}")
    redirects = [line for line in out.splitlines() if "REDIRECT --to-ports" in line]
    _expect(len(redirects) == 2, f"expected the two REDIRECT rules, got {redirects}")
    code, out = podman.status("run", "--rm", "--network", "none", image, "/bin/sh", "-c", script)
    _expect(code != 0, "without NET_ADMIN the script succeeded")
    return [
        f"rules took: chains {', '.join(chains)}; {'; '.join(redirects)}",
        f"without NET_ADMIN refused ({out.splitlines()[-1] if out else code})",
    ]


def check_sidecar(podman: Podman, image: str) -> list[str]:
    uid = podman.run("run", "--rm", "--network", "none", image, "id", "-u")
    _expect(uid == str(wellknown.PROXY_UID), f"runs as UID {uid}, not {wellknown.PROXY_UID}")
    podman.run("run", "--rm", "--network", "none", image, "python", "-m", "osm.proxy", "--help")
    port = wellknown.HEALTHCHECK_PORT
    url = f"http://127.0.0.1:{port}{wellknown.HEALTHCHECK_PATH}"
    header = wellknown.ORIGINAL_TCP_PORT_HEADER

    def probe(container: str) -> str:
        try:
            accepting = podman.get(container, url, f"{header}={port}")
        except CheckFailed as error:
            raise CheckFailed(f"no answer on {port}: {error}") from None
        closed = podman.get(container, url, f"{header}=1")
        _expect(
            accepting[0] == 200 and closed[0] == 503,
            f"healthcheck answered {accepting} and {closed}",
        )
        return f"healthcheck on {port}: {accepting[0]} (port {port}), {closed[0]} (port 1)"

    answered = podman.serve(image, ["python", "-m", "osm.proxy.healthcheck"], probe)
    imports = json.loads(
        podman.run(
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "OSM_REQUIRE_COMPILED=1",
            image,
            "python",
            "-c",
            PROXY_IMPORTS,
        )
    )
    expected = sorted(Path(path).stem for path in _setup_compiled())
    _expect(
        sorted(imports["compiled"]) == expected,
        f"compiled modules {imports['compiled']}, setup.py compiles {expected}",
    )
    return [
        f"UID {uid}",
        answered,
        f"{imports['imported']} osm.proxy modules import; compiled by mypyc: "
        f"{len(expected)} of them, as setup.py says",
    ]


CLUSTER_API = """
import asyncio, pathlib, sys
from osm.apiserver import local
from osm.controller import install
from osm.store.memory import MemoryStore

async def main():
    store = MemoryStore()
    await install.ensure(store)
    account = sys.argv[1]
    await store.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": account, "namespace": "osm-system"}}])
    api = await local.start(store, pathlib.Path("/tmp/api"), port=6443)
    await api.write_service_account(
        pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount"), "osm-system", account)
    await asyncio.Event().wait()

asyncio.run(main())
"""
"""A stand-in cluster inside the container (network none): local mode's API server over
a memory store with the control plane's namespace, its admin kubeconfig in /tmp/api, and
the token directory of the ServiceAccount named by its argument where a kubelet mounts it."""
KUBECONFIG = "/tmp/api/kubeconfig"


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _in_cluster(command: str, account: str) -> list[str]:
    """`command` started as in a pod of ServiceAccount ``osm-system/<account>``, once the
    stand-in API answers beside it in one container and has written its token."""
    script = (
        f"python -c '{CLUSTER_API}' {account} & "
        f"until [ -s {SERVICE_ACCOUNT_DIR}/token ]; do sleep 0.2; done; exec {command}"
    )
    return ["/bin/sh", "-c", script]


IN_CLUSTER = (
    "--tmpfs",
    f"{SERVICE_ACCOUNT_DIR}:rw,mode=1777",  # podman sets no owner: the API (non-root) writes it
    "-e",
    f"KUBERNETES_SERVICE_HOST={wellknown.LOCALHOST}",
    "-e",
    f"KUBERNETES_SERVICE_PORT={wellknown.API_PORT}",
)
"""What the kubelet gives a pod: the service account's directory and the API's address."""


def _ready_probe(podman: Podman, what: str) -> Callable[[str], str]:
    port = wellknown.CONTROLLER_HTTP_PORT

    def probe(container: str) -> str:
        uid = podman.run("exec", container, "id", "-u")
        status, body = podman.get(container, f"http://127.0.0.1:{port}/health/ready")
        _expect(status == 200, f"/health/ready answered {status} {body}")
        secret = podman.run(
            "exec",
            container,
            "osm",
            "--kubeconfig",
            KUBECONFIG,
            "get",
            "secret",
            "-n",
            wellknown.CONTROL_PLANE_NAMESPACE,
            "-o",
            "name",
        )
        _expect(wellknown.CA_BUNDLE_SECRET_NAME in secret, f"no CA bundle Secret: {secret}")
        return f"{what} (UID {uid}) against an API server: /health/ready on {port}: {status}"

    return probe


def check_controller(podman: Podman, image: str) -> list[str]:
    podman.run("run", "--rm", "--network", "none", image, "osm", "controller", "--help")
    command = _in_cluster("osm controller --kubernetes", "osm-controller")
    probe = _ready_probe(podman, "osm controller --kubernetes (in-cluster configuration)")
    answered = podman.serve(image, command, probe, IN_CLUSTER)
    return ["osm controller --help runs", answered + ", osm-ca-bundle created"]


def check_injector(podman: Podman, image: str) -> list[str]:
    podman.run("run", "--rm", "--network", "none", image, "osm", "injector", "--help")
    command = _in_cluster("osm injector", "osm-injector")
    probe = _ready_probe(podman, "osm injector (in-cluster configuration)")
    answered = podman.serve(image, command, probe, IN_CLUSTER)
    return ["osm injector --help runs", answered + ", osm-ca-bundle created"]


CHECKS: dict[str, Callable[[Podman, str], list[str]]] = {
    "init": check_init,
    "sidecar": check_sidecar,
    "osm-controller": check_controller,
    "osm-injector": check_injector,
}


def _setup_compiled() -> list[str]:
    """setup.py's `COMPILED`, read without running setup.py."""
    tree = ast.parse((spec.ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMPILED" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise CheckFailed("setup.py has no COMPILED")


def check(out: Path, work: Path, names: Sequence[str]) -> list[Result]:
    report = json.loads((out / spec.REPORT).read_text())
    built = {entry["name"]: entry for entry in report["images"]}
    podman = Podman(work)
    results = []
    for name in names or list(built):
        result = Result(name)
        results.append(result)
        if name not in built:
            result.detail.append(f"not built (no {name} in {out / spec.REPORT})")
            continue
        entry = built[name]
        result.build_seconds = entry["build_seconds"]
        result.size_bytes = entry["size_bytes"]
        result.archive_bytes = entry["archive_bytes"]
        try:
            image = podman.pull(entry["archive"])
            result.detail = CHECKS[name](podman, image)
            result.ok = True
        except (CheckFailed, subprocess.TimeoutExpired) as error:
            result.detail.append(f"FAILED: {error}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the built images and check them.")
    parser.add_argument("--out", type=Path, default=spec.ROOT / "dist" / "images")
    parser.add_argument("--work", type=Path, default=spec.ROOT / "build" / "images" / "check")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args(argv)
    results = check(args.out, args.work, args.names)
    for result in results:
        print(
            f"{result.name:15} {'ok' if result.ok else 'FAILED':6} built in "
            f"{result.build_seconds:5.1f} s, {result.size_bytes / 1e6:4.0f} MB "
            f"({result.archive_bytes / 1e6:3.0f} MB archive)"
        )
        for line in result.detail:
            print(f"{'':17}{line}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if results and all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
