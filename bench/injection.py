"""Injection benchmark: a Pod admission through the mutating webhook, as in a cluster.

    python bench/injection.py [--n 300] [--concurrency 1,4] [--block 50] [--warmup 20]
                              [--quick] [--dir DIR]

Each measured operation is one ``POST /api/v1/namespaces/<ns>/pods`` of a demo-like Pod
(one container with a port), over HTTPS with the admin's client certificate (aiohttp,
keep-alive connections), timed from the send to the 201's body having arrived. Three
processes, as in a cluster: the API servers, each a child process serving a new
`SqliteStore` (``synchronous=FULL``, local mode's default; `osm.apiserver.local.start`);
the injector, a child process (`osm.webhook.run.start_injector`, a `KubeClient` from a
kubeconfig the API wrote, the mesh CA from `osm.ca.builtin`, Namespaces and MeshConfig
from watches as `osm injector` reads them: `osm.webhook.view.ClusterView`); and the
clients, here.

Cases, each N pods per concurrency level:

- **webhook**: a namespace as ``osm namespace add`` leaves it, on an API server with
  ``webhooks=True`` holding the MutatingWebhookConfiguration ``osm install`` renders
  (`osm.install.manifests.render`), its caBundle set to the mesh root
  (`osm.webhook.cabundle.keep_ca_bundle`), its service resolved to the injector's
  127.0.0.1 port. The 201 includes the API's HTTPS call to the injector, which reads the
  Namespace and the MeshConfig through the API, issues the bootstrap certificate, creates
  the bootstrap Secret through the API and answers the patch; then the API's patch,
  validation and store write.
- **unmonitored** (the baseline): the same API server, a namespace without the label:
  the namespaceSelector does not match, so no webhook is called.
- **built-in**: local mode's admission (`osm.controller.admission.ServerAdmission` around
  `PodAdmission`: the injector inside the API server, the Secret and the Pod in one store
  write), a second API server without webhooks, the namespace as for **webhook**.

The cases take turns every ``--block`` pods (the first case of each turn rotates), so all
meet the same disk and the same neighbours. Each turn runs ``c`` requests in flight.
Prints, per case and concurrency, p50, p90, p99 and max (nearest rank, ms), pods/s (pods
over the wall time of the case's turns), and the ratios against **unmonitored** at the
same concurrency; then the goal of issue #16 (webhook p99 <= 50 ms). Before measuring,
``--warmup`` pods per case are created and not counted; every answer is checked to be
injected or not as its case says (a wrong setup stops the run). ``--quick``: N = 100. Not
run by CI; nothing here is a pass/fail threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import math
import os
import pathlib
import platform
import signal
import sqlite3
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from _report import print_table

import osm
from osm.apiserver import local, webhooks
from osm.base import wellknown
from osm.ca import builtin
from osm.cli import namespace as namespace_cli
from osm.controller import admission
from osm.controller import install as control_plane
from osm.injector import admission as rules
from osm.install import manifests, values
from osm.kube.client import KubeClient
from osm.store import SqliteStore
from osm.webhook import cabundle, certificates
from osm.webhook import run as webhook_run
from osm.webhook.view import ClusterView

MESH = rules.DEFAULT_MESH_NAME
TIMEOUT = 60.0
"""Seconds a child may take to start, or to stop, before the run is abandoned."""
GOAL_P99_MS = 50.0
DEFAULT_N = 300
QUICK_N = 100
INJECTOR_USER = f"system:serviceaccount:{wellknown.CONTROL_PLANE_NAMESPACE}:osm-injector"
PORT_FILE = "injector.port"
"""In the webhook API's state directory: the injector's port, once it listens."""
INJECTOR_KUBECONFIG = "injector.kubeconfig"
MESH_CA = "mesh-ca"
APP_PORT = 14001
"""The bookstore's port in OSM's demo."""


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    name: str
    namespace: str
    injected: bool
    """Whether its pods come back with the sidecar (checked on every answer)."""


WEBHOOK = Case("webhook", "bookstore", injected=True)
UNMONITORED = Case("unmonitored", "plain", injected=False)
BUILTIN = Case("built-in", "bookstore", injected=True)
CASES = (WEBHOOK, UNMONITORED, BUILTIN)
BASELINE = UNMONITORED


def demo_pod(name: str, namespace: str) -> dict[str, Any]:
    """A pod as the bookstore demo's Deployment makes them: one container, one port."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "bookstore", "version": "v1"},
        },
        "spec": {
            "serviceAccountName": "bookstore",
            "containers": [
                {
                    "name": "bookstore",
                    "image": "openservicemesh/bookstore:v1.2.4",
                    "ports": [{"name": "web", "containerPort": APP_PORT}],
                }
            ],
        },
    }


def namespace_manifest(name: str, *, monitored: bool) -> dict[str, Any]:
    """A Namespace, as ``osm namespace add`` leaves it when `monitored`."""
    metadata: dict[str, Any] = {"name": name}
    if monitored:
        metadata.update(namespace_cli.add_patch(MESH, sidecar_injection=True)["metadata"])
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def mutating_configuration() -> dict[str, Any]:
    """The MutatingWebhookConfiguration as ``osm install`` renders it (no caBundle)."""
    name = manifests.mutating_webhook_name(MESH)
    for obj in manifests.render(
        values.Values(), MESH, wellknown.CONTROL_PLANE_NAMESPACE, osm.__version__
    ):
        if obj["kind"] == "MutatingWebhookConfiguration" and obj["metadata"]["name"] == name:
            return dict(obj)
    raise RuntimeError(f"osm install renders no MutatingWebhookConfiguration {name}")


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank `q` percentile (0 < q <= 100) of `ordered` (ascending)."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    p50: float
    p90: float
    p99: float
    max: float
    """ms"""
    rate: float
    """pods/s"""

    @classmethod
    def of(cls, samples: Sequence[float], seconds: float) -> Summary:
        """`samples`: each pod's latency in s; `seconds`: the wall time they took."""
        ordered = sorted(samples)
        p50, p90, p99, top = (percentile(ordered, q) * 1e3 for q in (50, 90, 99, 100))
        return cls(p50, p90, p99, top, len(ordered) / seconds)


def schedule(n: int, block: int, cases: Sequence[Case]) -> Iterator[tuple[Case, range]]:
    """The turns: every case gets pods ``[first, first + block)`` before the next block;
    the case that goes first rotates from one block to the next."""
    for turn, first in enumerate(range(0, n, block)):
        indices = range(first, min(n, first + block))
        for k in range(len(cases)):
            yield cases[(turn + k) % len(cases)], indices


# -- the children: API servers and the injector -------------------------------------------------
async def until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), closed.set)
    loop.add_signal_handler(signal.SIGTERM, closed.set)
    await closed.wait()


def port_file_resolver(directory: pathlib.Path) -> webhooks.ServiceResolver:
    """The injector's Service is 127.0.0.1 at the port the parent writes to `PORT_FILE`
    (read once); other services do not exist."""
    found: list[int] = []

    async def resolve(namespace: str, name: str, port: int) -> tuple[str, int]:
        if (namespace, name) != (wellknown.CONTROL_PLANE_NAMESPACE, webhook_run.INJECTOR_SERVICE):
            raise webhooks.ResolveError(f'service "{name}" not found')
        if not found:
            found.append(int((directory / PORT_FILE).read_text()))
        return wellknown.LOCALHOST, found[0]

    return resolve


async def serve_api(directory: pathlib.Path, mode: str) -> None:
    """An API child over a new store in `directory`: with webhooks (``webhook``) or local
    mode's built-in injection (``built-in``). Prints the admin's kubeconfig path; serves
    until its stdin closes."""
    store = await SqliteStore.open(directory / "store.db")
    await control_plane.ensure(store)  # osm-system and its MeshConfig, as install makes
    if mode == "webhook":
        api = await local.start(
            store,
            directory / "state",
            port=0,
            webhooks=True,
            resolver=port_file_resolver(directory),
            clients=[local.Client(directory / INJECTOR_KUBECONFIG, INJECTOR_USER)],
        )
    else:
        ca = builtin.BuiltinCA.open(directory / MESH_CA, builtin.utc_now())
        chain = admission.ServerAdmission(
            admission.PodAdmission(
                rules.AdmissionSettings(), certificates.issuing(ca, builtin.utc_now)
            )
        )
        api = await local.start(store, directory / "state", port=0, admission=chain)
    print(api.kubeconfig, flush=True)
    await until_stdin_closes()
    await api.stop()
    await store.close()


async def serve_injector(directory: pathlib.Path) -> None:
    """The injector child, a client of the webhook API whose state is in `directory`
    (its kubeconfig, the mesh CA). Prints its webhook port; serves until stdin closes."""
    async with KubeClient.from_kubeconfig(directory / INJECTOR_KUBECONFIG) as client:
        ca = builtin.BuiltinCA.open(directory / MESH_CA, builtin.utc_now())
        settings = webhook_run.InjectorSettings(
            host=wellknown.LOCALHOST, webhook_port=0, http_port=0
        )
        view = ClusterView(client, settings.osm_namespace)
        following = asyncio.create_task(view.run())
        webhook = await webhook_run.start_injector(client, ca, settings, view=view)
        await view.wait_synced()
        webhook.set_ready()
        print(webhook.port, flush=True)
        await until_stdin_closes()
        await webhook.stop()
        following.cancel()


def serve_main(role: str, directory: str) -> None:
    path = pathlib.Path(directory)
    asyncio.run(serve_injector(path) if role == "injector" else serve_api(path, role))


@contextlib.asynccontextmanager
async def child(role: str, directory: pathlib.Path) -> AsyncIterator[str]:
    """This script as a child process in `role`; yields the first line it prints."""
    directory.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        role,
        str(directory),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        if not line:
            raise RuntimeError(f"the {role} child did not start (see its output above)")
        yield line.decode().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclasses.dataclass
class Api:
    """An API child's URL and a TLS context with the admin's certificate."""

    url: str
    ssl: ssl.SSLContext

    @classmethod
    def of(cls, kubeconfig: pathlib.Path) -> Api:
        document = yaml.safe_load(kubeconfig.read_text())
        cluster = document["clusters"][0]["cluster"]
        user = document["users"][0]["user"]
        directory = kubeconfig.parent
        files = {}
        for name, field in (
            ("ca.pem", cluster["certificate-authority-data"]),
            ("cert.pem", user["client-certificate-data"]),
            ("key.pem", user["client-key-data"]),
        ):
            path = directory / f"bench-{name}"
            path.write_bytes(base64.b64decode(field))
            os.chmod(path, 0o600)
            files[name] = str(path)
        context = ssl.create_default_context(cafile=files["ca.pem"])
        context.load_cert_chain(files["cert.pem"], files["key.pem"])
        return cls(cluster["server"], context)

    def session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.ssl, limit=0, force_close=False)
        return aiohttp.ClientSession(
            self.url, connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
        )


# -- measurements ---------------------------------------------------------------------------
async def create_pod(session: aiohttp.ClientSession, case: Case, name: str) -> float:
    """POSTs one pod of `case`; the seconds from the send to the 201's body. Raises
    RuntimeError if the answer is not a 201 or is injected when it should not be (or not
    when it should)."""
    start = time.perf_counter()
    async with session.post(
        f"/api/v1/namespaces/{case.namespace}/pods", json=demo_pod(name, case.namespace)
    ) as response:
        body = await response.read()
    seconds = time.perf_counter() - start
    if response.status != 201:
        raise RuntimeError(f"{case.name} pod {name}: {response.status} {body[:500]!r}")
    containers = [c["name"] for c in json.loads(body)["spec"]["containers"]]
    if (wellknown.ENVOY_CONTAINER_NAME in containers) != case.injected:
        raise RuntimeError(f"{case.name} pod {name}: containers {containers}")
    return seconds


async def in_flight(
    session: aiohttp.ClientSession, case: Case, names: Sequence[str], concurrency: int
) -> tuple[list[float], float]:
    """Creates the pods `names`, `concurrency` at a time; each one's latency and the wall
    time of them all."""
    pending = iter(names)
    samples: list[float] = []

    async def worker() -> None:
        for name in pending:
            samples.append(await create_pod(session, case, name))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - start


async def set_up_webhook_api(kubeconfig: pathlib.Path, ca: builtin.BuiltinCA) -> None:
    """The namespaces and the MutatingWebhookConfiguration, through the API."""
    async with KubeClient.from_kubeconfig(kubeconfig) as client:
        await client.create(namespace_manifest(WEBHOOK.namespace, monitored=True))
        await client.create(namespace_manifest(UNMONITORED.namespace, monitored=False))
        configuration = mutating_configuration()
        await client.create(configuration)
        await cabundle.keep_ca_bundle(
            client,
            "MutatingWebhookConfiguration",
            configuration["metadata"]["name"],
            ca.trust_bundle().pem,
        )


async def measure(
    apis: dict[str, Api], n: int, block: int, concurrency: Sequence[int], warmup: int
) -> dict[tuple[str, int], Summary]:
    """Every case at every concurrency, the cases taking turns every `block` pods."""
    sessions = {case.name: apis[case.name].session() for case in CASES}
    results: dict[tuple[str, int], Summary] = {}
    try:
        for case in CASES:
            names = [f"warm-{case.name}-{i:05}" for i in range(warmup)]
            await in_flight(sessions[case.name], case, names, max(concurrency))
        for c in concurrency:
            print(f"{n:,} pods per case, {c} in flight, turns of {block}", flush=True)
            samples: dict[str, list[float]] = {case.name: [] for case in CASES}
            seconds = dict.fromkeys(samples, 0.0)
            for case, indices in schedule(n, block, CASES):
                names = [f"{case.name}-c{c}-{i:05}" for i in indices]
                got, took = await in_flight(sessions[case.name], case, names, c)
                samples[case.name] += got
                seconds[case.name] += took
            for case in CASES:
                results[(case.name, c)] = Summary.of(samples[case.name], seconds[case.name])
    finally:
        for session in sessions.values():
            await session.close()
    return results


@contextlib.contextmanager
def working_directory(parent: str | None) -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(dir=parent, prefix="osm-bench-injection-") as directory:
        yield pathlib.Path(directory)


async def run(args: argparse.Namespace) -> dict[tuple[str, int], Summary]:
    with working_directory(args.dir) as directory:
        webhook_dir = directory / "webhook-api"
        builtin_dir = directory / "builtin-api"
        async with contextlib.AsyncExitStack() as children:
            webhook_kubeconfig = pathlib.Path(
                await children.enter_async_context(child("webhook", webhook_dir))
            )
            # The mesh root, made here before the injector opens it (the Secret's part).
            ca = builtin.BuiltinCA.open(webhook_dir / MESH_CA, builtin.utc_now())
            port = await children.enter_async_context(child("injector", webhook_dir))
            (webhook_dir / PORT_FILE).write_text(port)
            webhook_api = Api.of(webhook_kubeconfig)
            await set_up_webhook_api(webhook_kubeconfig, ca)
            builtin_kubeconfig = pathlib.Path(
                await children.enter_async_context(child("built-in", builtin_dir))
            )
            async with KubeClient.from_kubeconfig(builtin_kubeconfig) as client:
                await client.create(namespace_manifest(BUILTIN.namespace, monitored=True))
            apis = {
                WEBHOOK.name: webhook_api,
                UNMONITORED.name: webhook_api,
                BUILTIN.name: Api.of(builtin_kubeconfig),
            }
            return await measure(apis, args.n, args.block, args.concurrency, args.warmup)


def report(
    args: argparse.Namespace, results: dict[tuple[str, int], Summary], seconds: float
) -> None:
    print(
        f"\nPython {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; N = {args.n:,} pods per case and "
        f"concurrency, turns of {args.block}; {seconds:.0f} s in all. "
        f"x = the figure / {BASELINE.name}'s at the same concurrency."
    )
    header = ["pod create (ms)", "in flight", "p50", "p90", "p99", "max", "pods/s"]
    header += ["p50 x", "p99 x", "pods/s x"]
    rows = [header]
    for c in args.concurrency:
        base = results[(BASELINE.name, c)]
        for case in CASES:
            s = results[(case.name, c)]
            rows.append(
                [
                    case.name,
                    str(c),
                    f"{s.p50:.2f}",
                    f"{s.p90:.2f}",
                    f"{s.p99:.2f}",
                    f"{s.max:.2f}",
                    f"{s.rate:,.0f}",
                    f"{s.p50 / base.p50:.2f}",
                    f"{s.p99 / base.p99:.2f}",
                    f"{s.rate / base.rate:.2f}",
                ]
            )
    print()
    print_table(rows)
    print("\nGoal (issue #16):")
    for c in args.concurrency:
        p99 = results[(WEBHOOK.name, c)].p99
        verdict = "met" if p99 <= GOAL_P99_MS else "MISSED"
        print(
            f"  pod admission through the webhook, {c} in flight: p99 <= {GOAL_P99_MS:.0f} ms: "
            f"{p99:.1f} ms -- {verdict}"
        )


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="pods per case and concurrency (300)")
    parser.add_argument(
        "--concurrency", type=numbers, default=[1, 4], help="pod creates in flight (1,4)"
    )
    parser.add_argument("--block", type=int, default=50, help="pods per turn (50)")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted pods per case (20)")
    parser.add_argument("--quick", action="store_true", help="N = 100 unless --n says")
    parser.add_argument("--dir", default=None, help="where the SQLite files go (a real disk)")
    parser.add_argument("--serve", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = QUICK_N if args.quick else DEFAULT_N
    return args


def main() -> None:
    args = parse_args()
    if args.serve:
        serve_main(*args.serve)
        return
    started = time.perf_counter()
    results = asyncio.run(run(args))
    report(args, results, time.perf_counter() - started)


if __name__ == "__main__":
    main()
