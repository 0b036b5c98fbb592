"""Two throw-away network namespaces joined by a veth pair, for the data-plane benchmark.

One idea: everything the benchmark creates lives inside namespaces that it made and names
after its own pid (``osmbench-<pid>-client`` / ``-server``); the host namespace's links,
routes and iptables are never touched (the veth pair is created inside the client
namespace and its peer moved straight into the server one). `Pods.close` ends every process
it started, by pid, then deletes both namespaces, which removes the veth pair and every
iptables rule with them. Namespaces left by a run that was killed are removed by
`remove_stale` (only those whose owning pid is gone).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Sequence
from typing import IO

PREFIX = "osmbench-"
SUBNET_PREFIX = 24
CLIENT_IP = "10.250.0.1"
SERVER_IP = "10.250.0.2"
_STALE = re.compile(rf"^{PREFIX}(\d+)-(client|server)\b")
_PR_SET_PDEATHSIG = 1


class NetnsError(RuntimeError):
    """A command that sets up the namespaces failed; the message has its stderr."""


def _run(argv: Sequence[str], stdin: str | None = None, timeout: float = 20.0) -> str:
    result = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the benchmark dies without cleaning up."""
    import ctypes  # here: the sidecar children import this module; keep ctypes out of them

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def remove_stale() -> list[str]:
    """Delete namespaces of earlier runs whose process is gone; -> their names."""
    removed: list[str] = []
    for line in _run(["ip", "netns", "list"]).splitlines():
        match = _STALE.match(line)
        if match is None or os.path.exists(f"/proc/{match.group(1)}"):
            continue
        name = line.split()[0]
        with contextlib.suppress(NetnsError):
            _run(["ip", "netns", "del", name])
            removed.append(name)
    return removed


class Pods:
    """A client and a server namespace on one veth link. Use as a context manager."""

    def __init__(self) -> None:
        self.client = f"{PREFIX}{os.getpid()}-client"
        self.server = f"{PREFIX}{os.getpid()}-server"
        self._processes: list[subprocess.Popen[str]] = []
        self._created: list[str] = []

    def __enter__(self) -> Pods:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _create(self) -> None:
        for name in (self.client, self.server):
            _run(["ip", "netns", "add", name])
            self._created.append(name)
            _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(
            [
                "ip",
                "-n",
                self.client,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.server,
            ]
        )
        for name, ip in ((self.client, CLIENT_IP), (self.server, SERVER_IP)):
            _run(["ip", "-n", name, "addr", "add", f"{ip}/{SUBNET_PREFIX}", "dev", "eth0"])
            _run(["ip", "-n", name, "link", "set", "eth0", "up"])

    def add_address(self, netns: str, ip: str) -> None:
        """Give the veth end of `netns` (one of ours) a second address on the same subnet."""
        if netns not in (self.client, self.server):
            raise ValueError(f"{netns} is not one of this benchmark's namespaces")
        _run(["ip", "-n", netns, "addr", "add", f"{ip}/{SUBNET_PREFIX}", "dev", "eth0"])

    def nat(self, netns: str, rules: Sequence[str]) -> None:
        """Replace the nat table of `netns` (one of ours) with `rules` (``-A ...`` lines)."""
        if netns not in (self.client, self.server):
            raise ValueError(f"{netns} is not one of this benchmark's namespaces")
        chains = "".join(
            f":{chain} ACCEPT [0:0]\n" for chain in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
        )
        body = "".join(rule + "\n" for rule in rules)
        _run(["ip", "netns", "exec", netns, "iptables-restore"], f"*nat\n{chains}{body}COMMIT\n")

    def run(self, netns: str, argv: Sequence[str], timeout: float) -> str:
        """Run a bounded command inside `netns`; -> its stdout (raises NetnsError on failure)."""
        return _run(["ip", "netns", "exec", netns, *argv], timeout=timeout)

    def spawn(
        self, netns: str, argv: Sequence[str], log: IO[str], stdout: int = subprocess.PIPE
    ) -> subprocess.Popen[str]:
        """Start a long-running process in `netns` (ended by `close`); stdout is a pipe
        unless `stdout` says otherwise (`subprocess.DEVNULL` for one that writes there
        and is never read).

        `ip netns exec` execs the command in place, so the pid is the command's own.
        """
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv],
            stdout=stdout,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C reaches only us; we end the children in order
            preexec_fn=_die_with_parent,
        )
        self._processes.append(process)
        return process

    def close(self) -> None:
        """End our processes (TERM, then KILL after 3 s) and delete our namespaces."""
        for process in self._processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in self._processes:
            try:
                process.wait(3.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(3.0)
            if process.stdout is not None:
                process.stdout.close()
        self._processes.clear()
        for name in reversed(self._created):
            with contextlib.suppress(NetnsError, subprocess.TimeoutExpired):
                _run(["ip", "netns", "del", name])
        self._created.clear()
