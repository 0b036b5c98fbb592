"""Benchmark: user-space instructions per request of each proxy, counted by callgrind.

The same pods, proxies and config as bench/dataplane.py (client -> outbound proxy -> mTLS
-> inbound proxy -> server, HTTP/1.1 keep-alive, 1 KiB responses), but each proxy runs
under `valgrind --tool=callgrind`, which counts the instructions it executes in user space
(the kernel's share is not counted). Per case: a warm-up run, the counters zeroed, then
an open-loop run at a low fixed rate (the proxies run ~50x slower under valgrind); the
counts are dumped and divided by the requests answered.

Why: CPU time per request on a shared VM moves by 1.5x with the host's load and the
scheduler's placement, for every proxy alike; an instruction count does not. It is the
figure to compare two builds of the sidecar with (`--sidecar-variant DIR`), and it splits
the cost by binary: the interpreter, the mypyc-compiled sidecar, TLS (libssl/libcrypto),
the event loop (uvloop), libc. **Baseline:** the HAProxy pair in the same run. It does not
replace bench/dataplane.py: kernel time (syscalls, TCP, wakeups), cache misses and
latency are not in it.

Run (root; needs valgrind, haproxy, iptables, iproute2):
``.venv/bin/python bench/instructions.py [--rate 100] [--duration 10] [--top 25]
[--sidecar-variant DIR [--variant-python PYTHON]]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _callgrind
import _netns
import dataplane as dp

GROUPS = ("interpreter", "compiled", "tls", "loop", "http", "libc", "haproxy", "other")


def _callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


def measure(
    pods: _netns.Pods,
    proxies: dict[str, dp.Proxies],
    case: str,
    args: argparse.Namespace,
    out: Path,
) -> tuple[int, dict[str, _callgrind.Profile]]:
    """-> (requests answered, each role's profile) for one case's pair."""
    client_rules, server_rules = dp.nat_rules(case)
    pods.nat(pods.client, client_rules)
    pods.nat(pods.server, server_rules)
    run = argparse.Namespace(rate=args.rate, warmup=0.0, duration=args.warmup)
    dp.run_open_loop(pods, case, run, [], args.warmup)  # every path loaded and warm
    pids = proxies[case].pids
    for pid in pids.values():
        _callgrind_control("--zero", str(pid))
    run.duration = args.duration
    result = dp.run_open_loop(pods, case, run, [], args.duration)
    if result["errors"]:
        print(f"WARNING: {case}: {result['errors']} requests failed", file=sys.stderr)
    profiles = {}
    for role, pid in pids.items():
        before = set(out.glob(f"callgrind.{pid}.*"))
        _callgrind_control("--dump", str(pid))
        (dump,) = set(out.glob(f"callgrind.{pid}.*")) - before
        profiles[role] = _callgrind.read(dump)
    return result["count"], profiles


def report(
    figures: dict[str, tuple[int, dict[str, _callgrind.Profile]]], args: argparse.Namespace
) -> None:
    print()
    print(
        f"User-space instructions per request (callgrind Ir), {args.duration:g} s at "
        f"{args.rate:g} rps after {args.warmup:g} s of warm-up; the kernel is not counted."
    )
    shown = [
        group
        for group in GROUPS
        if any(
            profile.by_group()[group]
            for _, profiles in figures.values()
            for profile in profiles.values()
        )
    ]
    header = f"{'proxy':18} {'requests':>8} {'Ir/request':>11} {'x HAProxy':>9}"
    print(header + "".join(f" {group:>11}" for group in shown))
    for case, (count, profiles) in figures.items():
        for role, profile in profiles.items():
            per_request = profile.total / count
            base_count, base = figures["haproxy"]
            ratio = per_request / (base[role].total / base_count)
            groups = profile.by_group()
            print(
                f"{f'{case}/{role}':18} {count:>8} {per_request:>11,.0f} {ratio:>8.2f}x"
                + "".join(f" {groups[group] / count:>11,.0f}" for group in shown)
            )
    if args.top:
        for case in [case for case in figures if case != "haproxy"]:
            count, profiles = figures[case]
            for role, profile in profiles.items():
                print(f"\n{case}/{role}: the {args.top} functions with the most instructions")
                for function, cost in profile.by_function.most_common(args.top):
                    binary = profile.binary_of.get(function, "?").rsplit("/", 1)[-1]
                    print(f"  {cost / count:>9,.0f}  {function[:80]}  [{binary[:40]}]")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s")
    parser.add_argument("--duration", type=float, default=10.0, help="counted seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="uncounted seconds first")
    parser.add_argument(
        "--top", type=int, default=0, metavar="N", help="list each sidecar's N costliest functions"
    )
    parser.add_argument(
        "--cases",
        default="sidecar,variant,haproxy",
        help="which pairs to count, comma-separated (haproxy is the baseline: always counted)",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep callgrind's files in this directory"
    )
    parser.add_argument("--sidecar-variant", type=Path, metavar="DIR", help="as in dataplane.py")
    parser.add_argument("--variant-python", metavar="PYTHON", help="as in dataplane.py")
    args = parser.parse_args()
    wanted = set(args.cases.split(","))
    if wanted - {"sidecar", "variant", "haproxy"}:
        parser.error(f"--cases {args.cases}: the pairs are sidecar, variant, haproxy")
    explicit = args.cases != parser.get_default("cases")
    if explicit and "variant" in wanted and args.sidecar_variant is None:
        parser.error("--cases variant needs --sidecar-variant DIR")
    for tool in ("valgrind", "callgrind_control", "haproxy", "iptables-restore", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y valgrind haproxy iptables iproute2")
    dp.require_root()
    with tempfile.TemporaryDirectory(prefix="osm-instructions-") as tmp:
        workdir = Path(tmp)
        out = args.keep or workdir
        out.mkdir(parents=True, exist_ok=True)
        wrap = ["valgrind", "--tool=callgrind", "-q", f"--callgrind-out-file={out}/callgrind.%p"]
        with open(workdir / "children.log", "w+") as log:
            dp.make_certificates(workdir)
            dp.precompile(workdir, args.sidecar_variant, args.variant_python)
            try:
                with _netns.Pods() as pods:
                    proxies = dp.start_everything(
                        pods,
                        workdir,
                        log,
                        args.sidecar_variant,
                        args.variant_python,
                        wrap=wrap,
                        ready_timeout=300.0,
                    )
                    cases = [case for case in proxies if case in wanted | {"haproxy"}]
                    figures = {}
                    for case in cases:
                        print(f"  {case} ...", flush=True)
                        figures[case] = measure(pods, proxies, case, args, out)
            except BaseException:
                log.seek(0)
                print("--- children's stderr ---\n" + log.read(), file=sys.stderr)
                raise
    report(figures, args)


if __name__ == "__main__":
    main()
