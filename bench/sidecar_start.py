"""Benchmark: the real sidecar process, from exec to `/ready` 200, and its memory.

One controller process (this tree, `tests.controllers.ControllerProcess`: mTLS xDS, its
own ports and state directory) gets a small mesh through its Kubernetes API (the
bookbuyer/bookstore pods of tests/integration/test_sidecar_controller.py); a
bootstrap is issued for ``bookbuyer-0`` from the controller's CA, with its listeners moved
to loopback port 0 (no network namespace needed). The sidecar is then exec'ed as the local
runtime does (the pod interpreter, ``/opt/osm/venv`` by default, from ``/``), once per
variant and repetition, interleaved. Measured per run: exec -> admin answering (imports and
start), exec -> ``/ready`` 200 (plus the first configuration over xDS), and VmRSS / VmHWM
half a second after ready.

Variants are source trees put first on ``PYTHONPATH``: this tree, and with ``--baseline
DIR`` another one (e.g. ``git archive HEAD osm | tar -x -C DIR``). A tree with
``osm/proxy/__main__.py`` is started as ``python -m osm.proxy``, an older one through
``osm sidecar``'s click command.

Run: ``.venv/bin/python bench/sidecar_start.py [--repeat 5] [--baseline DIR] [--python PY]``
Goals (issue: pod start <= 1 s, sidecar RSS <= 40 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osm.base.identity import Identity  # noqa: E402
from osm.ca import builtin  # noqa: E402
from osm.runtime import bootstrap  # noqa: E402
from tests import kubeapi  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.controllers import ControllerProcess  # noqa: E402
from tests.integration.test_sidecar_controller import APEX_IP, mesh, ready_status  # noqa: E402

OLD_MAIN = "from osm.cli.proxy import sidecar; sidecar(prog_name='osm sidecar')"
LOOPBACK_ANY = ("127.0.0.1", 0)


def command(tree: Path, python: str, boot: Path) -> list[str]:
    if (tree / "osm" / "proxy" / "__main__.py").exists():
        return [python, "-m", "osm.proxy", "--bootstrap", str(boot)]
    return [python, "-c", OLD_MAIN, "--bootstrap", str(boot)]


def memory(pid: int) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def run_once(argv: list[str], tree: Path, admin_port: int, log: Path) -> dict[str, float]:
    env = {
        "PATH": f"{Path(argv[0]).parent}:/usr/bin:/bin",
        "HOME": "/",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(tree),
    }
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd="/", stdout=out, stderr=subprocess.STDOUT)
    try:
        answered = ready = 0.0
        deadline = started + 30
        while time.perf_counter() < deadline:
            code = ready_status(admin_port)
            now = time.perf_counter() - started
            if code and not answered:
                answered = now
            if code == 200:
                ready = now
                break
            if process.poll() is not None:
                raise RuntimeError(f"the sidecar exited: {log.read_text()[-2000:]}")
            time.sleep(0.002)
        if not ready:
            raise RuntimeError(f"not ready in 30 s: {log.read_text()[-2000:]}")
        time.sleep(0.5)
        return {"answered": answered, "ready": ready, **memory(process.pid)}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--python", default="/opt/osm/venv/bin/python3")
    args = parser.parse_args()
    variants = {"this tree": ROOT}
    if args.baseline is not None:
        variants = {"baseline": args.baseline.resolve(), **variants}
    with tempfile.TemporaryDirectory(prefix="osm-sidecar-bench-") as temporary:
        work = Path(temporary)
        controller = ControllerProcess.start(work / "state")
        try:
            objects = mesh(free_port())
            kubeapi.run(controller.kubeconfig, lambda client: kubeapi.apply(client, *objects))
            admin_port = free_port()
            ca = builtin.BuiltinCA.open(controller.state_dir / "ca", builtin.utc_now())
            written = bootstrap.write(
                work / "boot",
                proxy_id="bookbuyer-0",
                identity=Identity("bookbuyer", "bookbuyer"),
                xds_address=f"127.0.0.1:{controller.xds_port}",
                issuer=ca,
                now=builtin.utc_now(),
                admin=("127.0.0.1", admin_port),
                listeners={
                    "outbound-listener": LOOPBACK_ANY,
                    "inbound-prometheus-listener": LOOPBACK_ANY,
                    "inbound-listener": LOOPBACK_ANY,
                },
            )
            os.chmod(work, 0o755)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
            for tree in variants.values():  # warm-up: bytecode caches, page cache
                run_once(command(tree, args.python, written.path), tree, admin_port, work / "w")
            for _ in range(args.repeat):
                for name, tree in variants.items():
                    argv = command(tree, args.python, written.path)
                    results[name].append(run_once(argv, tree, admin_port, work / f"{name}.log"))
        finally:
            controller.stop()
    print(f"apex {APEX_IP}; {args.repeat} runs each, interleaved; median [min-max]")
    print(f"{'variant':<10} {'admin up s':>20} {'ready s':>20} {'VmRSS MB':>18} {'VmHWM MB':>18}")
    for name, runs in results.items():
        cells = []
        for key, digits in (("answered", 3), ("ready", 3), ("VmRSS", 1), ("VmHWM", 1)):
            values = [run[key] for run in runs]
            cells.append(
                f"{statistics.median(values):.{digits}f} "
                f"[{min(values):.{digits}f}-{max(values):.{digits}f}]"
            )
        print(f"{name:<10} {cells[0]:>20} {cells[1]:>20} {cells[2]:>18} {cells[3]:>18}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
