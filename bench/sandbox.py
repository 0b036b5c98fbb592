"""Benchmark (root): what a pod sandbox costs, to make and on every container start.

Makes one network namespace (``osmbench-sbx-<pid>``, with a hosts directory as the runtime
writes it) and, in a temporary state directory, sandboxes shaped like an injected pod: a
sidecar container with its bootstrap Secret read-only at a path missing on the host (as
``/etc/envoy`` is: an overlay), an app container with a ConfigMap below /etc, and an init
container without mounts. Measured: `PodSandbox.create` and `remove`, and the wall time
from spawn to exit of ``true`` as UID 1500 started three ways, interleaved:
``setpriv`` alone (the baseline), ``ip netns exec`` (what `osm.runtime.process.pod_command`
runs) and ``nsenter`` into the sandbox (`PodSandbox.command`). Everything it makes is
removed at the end, also on failure (the journal's teardown).

Run: ``sudo .venv/bin/python bench/sandbox.py [--pods 50] [--execs 300]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from osm.base import wellknown  # noqa: E402
from osm.runtime import process, record  # noqa: E402
from osm.runtime.sandbox import Mount, PodSandbox, VolumeFile  # noqa: E402

BOOTSTRAP = [
    VolumeFile("bootstrap.yaml", b"x" * 4096, 0o644),
    VolumeFile("ca.pem", b"c" * 1200),
    VolumeFile("key.pem", b"k" * 300, 0o600),
]
APP_CONFIG = [VolumeFile("app.yaml", b"a" * 500)]


def _milliseconds(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1] if len(ordered) >= 10 else ordered[-1]
    return f"median {statistics.median(ordered) * 1e3:6.2f} ms  p90 {p90 * 1e3:6.2f} ms"


def _time(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50, help="sandboxes made and removed")
    parser.add_argument("--execs", type=int, default=300, help="starts of `true` per way")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, mounts)")
    netns = f"osmbench-sbx-{os.getpid()}"
    missing = f"/etc/osmbench-sbx-{secrets.token_hex(4)}/envoy"
    etc = record.ETC_NETNS / netns
    etc_existed = record.ETC_NETNS.exists()
    state_dir = Path(tempfile.mkdtemp(prefix="osmbench-sbx-"))
    subprocess.run(["ip", "netns", "add", netns], check=True)
    journal = record.Journal.open(state_dir)
    try:
        etc.mkdir(parents=True)
        (etc / "hosts").write_text("127.0.0.1\tlocalhost\n")
        (etc / "resolv.conf").write_text("options attempts:1\n")
        volumes = {"bootstrap": BOOTSTRAP, "app-config": APP_CONFIG}
        containers = {
            "init": [],
            "sidecar": [Mount("bootstrap", missing, read_only=True)],
            "app": [Mount("app-config", "/etc/osmbench-app.yaml", sub_path="app.yaml")],
        }
        base = state_dir / "sandboxes"
        creates, removes = [], []
        for index in range(args.pods):
            start = time.perf_counter()
            sandbox = PodSandbox.create(journal, base, f"pod-{index}", netns, volumes, containers)
            creates.append(time.perf_counter() - start)
            if index < args.pods - 1:
                removes.append(_time(sandbox.remove))
        print(
            f"create ({len(containers)} containers, 2 volumes, 1 overlay): {_milliseconds(creates)}"
        )
        print(f"remove:                                        {_milliseconds(removes)}")

        uid = wellknown.PROXY_UID
        ways = {
            "setpriv (baseline)": process.as_user(["true"], uid=uid, gid=uid),
            "ip netns exec": process.pod_command(netns, ["true"], uid=uid, gid=uid),
            "nsenter (sandbox)": sandbox.command("sidecar", ["true"], uid=uid, gid=uid),
        }
        samples: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.execs):
            for way, argv in ways.items():
                samples[way].append(_time(lambda argv=argv: subprocess.run(argv, check=True)))
        baseline = statistics.median(samples["setpriv (baseline)"])
        for way, measured in samples.items():
            extra = (statistics.median(measured) - baseline) * 1e3
            print(f"exec {way:20} {_milliseconds(measured)}  (+{extra:.2f} ms over setpriv)")
        sandbox.remove()
    finally:
        report = record.teardown(state_dir, journal=journal)
        journal.close()
        subprocess.run(["ip", "netns", "delete", netns], check=False)
        shutil.rmtree(etc, ignore_errors=True)
        if not etc_existed:
            with contextlib.suppress(OSError):
                record.ETC_NETNS.rmdir()
        shutil.rmtree(state_dir, ignore_errors=True)
        if not report.ok:
            print("teardown failed:", report.failed, file=sys.stderr)


if __name__ == "__main__":
    main()
