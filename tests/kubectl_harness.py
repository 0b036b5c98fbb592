"""The real API server in the test's event loop, and the real kubectl against it.

One idea: a test gets what a user of local mode gets, a `LocalApi` (HTTPS, client
certificates, Tables, OpenAPI) over a `SqliteStore` in its temporary directory, with the
controller's admission chain (the sidecar injector, then the model's validation), and runs
the machine's kubectl as a user would: default flags, only ``--kubeconfig``. kubectl runs
as a subprocess of the test's loop (the server shares that loop, so nothing may block it),
with its own ``HOME``, so its discovery cache never outlives the test.

What a test reads is what a user reads: `Run` keeps the exit code, stdout and stderr.
`Cluster.run` takes the command as a user types it (``get ts -n bookstore -o wide``).
`Watching` is a long-running kubectl (``get -w``, ``logs -f``): read its lines as they
come, then `stop` it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from osm.apiserver import local
from osm.ca import builtin
from osm.controller import admission
from osm.injector import admission as rules
from osm.store import SqliteStore
from osm.webhook import certificates

KUBECTL = shutil.which("kubectl")
OPENAPI_V3_MINOR = 27
"""kubectl reads OpenAPI v3 from 1.27 (1.32 on these machines). Debian's kubectl 1.20
asks for OpenAPI v2 in protobuf, which the server does not serve: its default apply and
explain cannot work, so the kubectl tests skip there, saying why."""


def kubectl_minor() -> int:
    """The installed kubectl's minor version (0 when there is none or it does not say)."""
    if KUBECTL is None:
        return 0
    try:
        found = subprocess.run(
            [KUBECTL, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        minor = json.loads(found.stdout)["clientVersion"]["minor"]
        return int(re.sub(r"\D.*", "", str(minor)) or 0)
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return 0


needs_kubectl = pytest.mark.skipif(
    kubectl_minor() < OPENAPI_V3_MINOR,
    reason=f"needs kubectl >= 1.{OPENAPI_V3_MINOR} (OpenAPI v3); found "
    f"{'none' if KUBECTL is None else f'1.{kubectl_minor()}'}",
)
TIMEOUT = 60.0
"""Seconds one kubectl command may take (a loaded CI machine is slow to schedule)."""
AGE = re.compile(r"(?<![\w.:/-])\d+(?:s|m|h|d)(?:\d+s)?(?![\w.:/-])")


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One finished kubectl command, as its user saw it."""

    code: int
    out: str
    err: str

    def ok(self) -> str:
        """stdout, after checking that the command succeeded and printed no error."""
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return self.out


class Watching:
    """A kubectl that runs until stopped; its stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def line(self, timeout: float = 10.0) -> str:
        """The next line of stdout (without its newline); fails after ``timeout`` s."""
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert raw, f"kubectl ended: {await self._stderr()}"
        text = raw.decode().rstrip("\n")
        self.lines.append(text)
        return text

    async def stop(self) -> Run:
        """Interrupt it (as Ctrl-C does) and collect what is left."""
        if self.process.returncode is None:
            self.process.terminate()
        out, err = await asyncio.wait_for(self.process.communicate(), TIMEOUT)
        assert self.process.returncode is not None
        return Run(self.process.returncode, out.decode(), err.decode())

    async def _stderr(self) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
        if self.process.stderr is None:
            return ""
        return (await self.process.stderr.read()).decode()


@dataclasses.dataclass(frozen=True, slots=True)
class Kubectl:
    """The machine's kubectl, configured by one kubeconfig and nothing else."""

    kubeconfig: Path
    home: Path

    def _argv(self, args: tuple[str, ...], kubeconfig: Path | None) -> list[str]:
        assert KUBECTL is not None, "kubectl is not installed"
        return [KUBECTL, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(self.home)
        return env

    async def __call__(
        self,
        *args: str,
        stdin: str = "",
        kubeconfig: Path | None = None,
        timeout: float = TIMEOUT,
    ) -> Run:
        process = await asyncio.create_subprocess_exec(
            *self._argv(args, kubeconfig),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(),
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"kubectl {' '.join(args)} took over {timeout} s") from None
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())

    async def start(self, *args: str) -> Watching:
        """Start a kubectl that runs until stopped (``get -w``, ``logs -f``)."""
        process = await asyncio.create_subprocess_exec(
            *self._argv(args, None),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(),
        )
        return Watching(process)


@dataclasses.dataclass(frozen=True, slots=True)
class Cluster:
    """A running local API: its store, its state directory (logs under ``logs/``) and a
    kubectl with the admin's kubeconfig."""

    api: local.LocalApi
    store: SqliteStore
    state_dir: Path
    kubectl: Kubectl

    async def run(
        self,
        command: str,
        *,
        stdin: str = "",
        kubeconfig: Path | None = None,
        timeout: float = TIMEOUT,
    ) -> Run:
        """``kubectl <command>``, the command split as a shell would (no shell runs)."""
        return await self.kubectl(
            *shlex.split(command), stdin=stdin, kubeconfig=kubeconfig, timeout=timeout
        )

    async def start(self, command: str) -> Watching:
        """``kubectl <command>`` left running (``get -w``, ``logs -f``)."""
        return await self.kubectl.start(*shlex.split(command))

    def write_log(self, namespace: str, pod: str, container: str, text: str) -> Path:
        """A container's log where the local kubelet writes it."""
        path = self.state_dir / "logs" / namespace / pod / f"{container}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def pod_admission(state_dir: Path) -> admission.ServerAdmission:
    """The controller's admission chain, with a mesh CA of its own under ``state_dir``."""
    ca = builtin.BuiltinCA.open(state_dir / "ca", builtin.utc_now())
    pods = admission.PodAdmission(
        rules.AdmissionSettings(), certificates.issuing(ca, builtin.utc_now)
    )
    return admission.ServerAdmission(pods)


@contextlib.asynccontextmanager
async def cluster(directory: Path, *, history: int = 100_000) -> AsyncIterator[Cluster]:
    """A local API over a new SQLite store in ``directory``, with the injector; stopped and
    closed on exit."""
    state_dir = directory / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    store = await SqliteStore.open(state_dir / "store.db", history=history)
    try:
        api = await local.start(store, state_dir, port=0, admission=pod_admission(state_dir))
        try:
            home = directory / "home"
            home.mkdir(exist_ok=True)
            yield Cluster(api, store, state_dir, Kubectl(api.kubeconfig, home))
        finally:
            await api.stop()
    finally:
        await store.close()


def ages_hidden(text: str) -> str:
    """A table with every AGE cell (``0s``, ``5m2s``, ``3d``) written ``<age>``."""
    return AGE.sub("<age>", text)


def columns(text: str) -> list[list[str]]:
    """A table's rows split at runs of blanks (kubectl pads its columns with spaces)."""
    return [re.split(r"\s{2,}|\t", line.strip()) for line in text.splitlines() if line.strip()]
