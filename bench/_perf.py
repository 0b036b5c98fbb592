"""Where processes' CPU goes, from `perf record -e cpu-clock` samples (Debian's linux-perf).

Three parts: user space; the kernel's scheduling (context switches and wakeups and, on a
VM, paravirtual lock waits, halts and kicks of another vCPU); the rest of the kernel
(syscalls, TCP, netfilter). cpu-clock is a timer: it cannot fire while interrupts are off,
so time spent with them off is charged to where they come back on, which for scheduling is
the end of a context switch (`finish_task_switch`) or of a wakeup
(`_raw_spin_unlock_irqrestore`). On a shared VM the scheduling part follows the host's
load and where the scheduler puts the processes, alike for every proxy: it is the part of
"CPU per request" that the proxy's code does not decide.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

FREQUENCY = 997  # Hz: at 10 kHz the sampling itself costs a VM enough to move the figures
KERNEL_START = 0xFFFF800000000000  # x86-64: kernel addresses are the upper half
SCHEDULING = frozenset(
    {
        "finish_task_switch",
        "finish_task_switch.isra.0",
        "__schedule",
        "schedule",
        "try_to_wake_up",
        "_raw_spin_unlock_irqrestore",
        "_raw_spin_unlock_irq",
        "__pv_queued_spin_lock_slowpath",
        "native_queued_spin_lock_slowpath",
        "pv_native_safe_halt",
        "native_safe_halt",
        "kvm_kick_cpu",
        "kvm_wait",
    }
)
PARTS = ("user", "scheduling", "kernel")


class Sampler:
    """`perf record` on some pids while the `with` block runs; `shares()` after it."""

    def __init__(self, pids: Iterable[int], output: Path) -> None:
        self.pids = list(pids)
        self.output = output
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sampler:
        argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQUENCY)]
        argv += ["-o", str(self.output), "-p", ",".join(map(str, self.pids))]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        self._process.wait(30)

    def shares(self) -> dict[int, tuple[float, float, float]]:
        """-> each pid's fractions of its samples: (user, scheduling, rest of the kernel)."""
        text = subprocess.run(
            ["perf", "script", "-i", str(self.output), "-F", "pid,ip,sym"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        return classify(text.splitlines(), self.pids)


def classify(lines: Iterable[str], pids: Iterable[int]) -> dict[int, tuple[float, float, float]]:
    """Fractions per pid from `perf script -F pid,ip,sym` lines ("PID IP [SYMBOL]")."""
    counts: dict[int, Counter[str]] = {pid: Counter() for pid in pids}
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        counter = counts.get(int(fields[0]))
        if counter is None:
            continue
        if int(fields[1], 16) < KERNEL_START:
            counter["user"] += 1
        elif len(fields) > 2 and fields[2] in SCHEDULING:
            counter["scheduling"] += 1
        else:
            counter["kernel"] += 1
    result = {}
    for pid, counter in counts.items():
        total = sum(counter.values()) or 1
        user, scheduling, kernel = (counter[part] / total for part in PARTS)
        result[pid] = (user, scheduling, kernel)
    return result
