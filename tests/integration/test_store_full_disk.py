"""The controller (its API server over the SQLite store) on a state directory whose
filesystem fills up: a tmpfs of a few MB, filled by a filler file.

While it is full, every write through the real HTTPS API (create, update with a
resourceVersion, merge patch, delete, an injected Pod, ``kubectl apply``) is refused with
the contract's 507 InsufficientStorage Status, and no trace of it is anywhere: reads and
watches go on and show exactly the writes that succeeded. Once the filler is deleted the
same writes succeed, without a restart; the file is intact; and a restarted controller
serves exactly what was written. The controller's own log is on the full filesystem too,
and the process lives through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from osm.kube.client import KubeClient
from osm.store import InsufficientStorage, SqliteStore
from tests import controllers, kubeapi
from tests.unit.injector.injector_support import namespace, pod

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

SIZE = "12m"
NS = "disk"
MESH = "mesh"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
REFUSED = "nothing was written; free space and retry"
SPILL_LIMIT = 5_000
"""Writes tried after filling before one must be refused (the WAL's room may take some)."""


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@contextlib.contextmanager
def filled(directory: Path) -> Iterator[Path]:
    """A filler file that takes every free byte of ``directory``'s filesystem, removed on
    exit."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    try:
        yield filler
    finally:
        filler.unlink()


def config_map(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"payload": "p" * 2000, **data},
    }


async def request(
    session: aiohttp.ClientSession, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    async with session.request(method, path, json=body, headers=headers) as response:
        return response.status, await response.json()


def refusal(verb: str, kind: str, name: str, db: Path, namespace: str = NS) -> dict[str, Any]:
    """The contract's Status of a write refused for a full store."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 507,
        "reason": "InsufficientStorage",
        "message": f"{verb} {kind} {namespace}/{name}: the store's filesystem is full ({db}): "
        + REFUSED,
        "details": {"kind": kind, "name": name},
    }


class Watcher:
    """Every ConfigMap event of ``NS`` from ``since`` on: (type, name, resourceVersion)."""

    def __init__(self, client: KubeClient, since: str) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.task = asyncio.create_task(self._run(client, since))

    async def _run(self, client: KubeClient, since: str) -> None:
        async for kind, obj in client.watch("ConfigMap", NS, since, bookmarks=False):
            meta = obj["metadata"]
            self.events.append((kind, meta["name"], meta["resourceVersion"]))

    async def until(self, count: int) -> list[tuple[str, str, str]]:
        async with asyncio.timeout(10):
            while len(self.events) < count:
                await asyncio.sleep(0.02)
        return self.events

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def controller(small_filesystem: Path) -> AsyncIterator[controllers.ControllerProcess]:
    process = controllers.ControllerProcess.start(small_filesystem / "state")
    try:
        yield process
    finally:
        process.stop()


async def test_a_full_store_refuses_writes_with_507_keeps_reads_and_recovers_without_restart(
    controller: controllers.ControllerProcess, small_filesystem: Path, tmp_path: Path
) -> None:
    db = controller.state_dir / "store.db"
    assert controller.log.parent == small_filesystem, "the controller's log fills up too"
    written: dict[str, str] = {}  # ConfigMap name -> the rv of its last successful write
    async with (
        KubeClient.from_kubeconfig(controller.kubeconfig) as client,
        kubeapi.https(controller.kubeconfig) as session,
        contextlib.AsyncExitStack() as cleanup,
    ):
        await kubeapi.apply(client, namespace(NS, monitored=None, injection=None), namespace(MESH))
        for index in range(4):
            created = await client.create(config_map(f"cm-{index}"))
            written[f"cm-{index}"] = created["metadata"]["resourceVersion"]
        _, since = await client.list("ConfigMap", NS)
        watcher = Watcher(client, since)
        cleanup.push_async_callback(watcher.stop)
        successes: list[tuple[str, str, str]] = []

        with filled(small_filesystem):
            # The WAL's room may take a few writes still; the first refused is the mark.
            for attempt in range(SPILL_LIMIT):
                status, body = await request(
                    session, "POST", CONFIGMAPS, config_map(f"spill-{attempt}")
                )
                if status == 507:
                    assert body == refusal("create", "ConfigMap", f"spill-{attempt}", db)
                    break
                assert status == 201, body
                written[f"spill-{attempt}"] = body["metadata"]["resourceVersion"]
                successes.append(("ADDED", f"spill-{attempt}", written[f"spill-{attempt}"]))
            else:
                pytest.fail(f"{SPILL_LIMIT} writes on a full filesystem, none refused")

            cm0 = await client.get("ConfigMap", NS, "cm-0")
            cm0["data"]["more"] = "x" * 3000
            merge = {"metadata": {"resourceVersion": written["cm-1"]}, "data": {"more": "y"}}
            writes: list[tuple[str, str, str, Any, dict[str, str], dict[str, Any]]] = [
                (
                    "POST", CONFIGMAPS, "create", config_map("new"), {},
                    refusal("create", "ConfigMap", "new", db),
                ),
                (
                    "PUT", f"{CONFIGMAPS}/cm-0", "update", cm0, {},
                    refusal("update", "ConfigMap", "cm-0", db),
                ),
                (
                    "PATCH", f"{CONFIGMAPS}/cm-1", "patch", merge,
                    {"Content-Type": "application/merge-patch+json"},
                    refusal("patch", "ConfigMap", "cm-1", db),
                ),
                (
                    "DELETE", f"{CONFIGMAPS}/cm-2", "delete", None, {},
                    refusal("delete", "ConfigMap", "cm-2", db),
                ),
            ]  # fmt: skip
            for method, path, _, body, headers, expected in writes:
                assert await request(session, method, path, body, **headers) == (507, expected)
            status, refused_pod = await request(
                session, "POST", f"/api/v1/namespaces/{MESH}/pods", pod("web-0", ns=MESH)
            )
            assert (status, refused_pod["reason"]) == (507, "InsufficientStorage")
            # The store's file, or the CA's should it need to write its state now.
            assert refused_pod["message"].startswith("create Pod mesh/web-0: the ")
            assert f" is full ({db}): {REFUSED}" in refused_pod["message"] or refused_pod[
                "message"
            ].endswith(f" is full: {REFUSED}")
            kubectl = kubectl_apply(controller.kubeconfig, config_map("by-kubectl"), tmp_path)
            assert kubectl.returncode == 1, kubectl
            assert kubectl.stderr.strip() == (
                'Error from server (InsufficientStorage): error when creating "STDIN": '
                + refusal("create", "ConfigMap", "by-kubectl", db)["message"]
            )

            items, _ = await client.list("ConfigMap", NS)
            assert versions(items) == written, "reads answer, with what was written only"
            assert (await client.get("ConfigMap", NS, "cm-0"))["data"] == config_map("cm-0")["data"]
            assert await watcher.until(len(successes)) == successes, "nothing refused is heard"
            assert controller.process.poll() is None, "the controller lives"

        # Room again: the same writes succeed, without a restart.
        for method, path, verb, body, headers, _ in writes:
            status, answer = await request(session, method, path, body, **headers)
            assert status in (200, 201), (verb, answer)
            name = answer["metadata"]["name"]
            if verb == "delete":
                del written[name]
                successes.append(("DELETED", name, ""))
            else:
                written[name] = answer["metadata"]["resourceVersion"]
                successes.append(("ADDED" if verb == "create" else "MODIFIED", name, written[name]))
        status, _ = await request(
            session, "POST", f"/api/v1/namespaces/{MESH}/pods", pod("web-0", ns=MESH)
        )
        assert status == 201
        heard = await watcher.until(len(successes))
        assert [event[:2] for event in heard] == [success[:2] for success in successes]
        rvs = [int(event[2]) for event in heard]
        assert rvs == sorted(rvs)
        assert [event for event in heard if event[0] != "DELETED"] == [
            success for success in successes if success[0] != "DELETED"
        ]
        items, _ = await client.list("ConfigMap", NS)
        assert versions(items) == written

    controller.stop()
    check_file(db)
    restarted = controller.restart()
    try:
        async with KubeClient.from_kubeconfig(restarted.kubeconfig) as client:
            items, _ = await client.list("ConfigMap", NS)
            assert versions(items) == written, "a restart serves exactly what was written"
            pods, _ = await client.list("Pod", MESH)
            assert [p["metadata"]["name"] for p in pods] == ["web-0"]
    finally:
        restarted.stop()


def versions(items: list[dict[str, Any]]) -> dict[str, str]:
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in items}


def kubectl_apply(
    kubeconfig: Path, obj: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(tmp_path / "kubectl-cache"),
            "apply",
            "-f",
            "-",
        ],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_file(db: Path) -> None:
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()


async def test_a_store_whose_checkpoints_fail_for_want_of_room_recovers_its_writes(
    small_filesystem: Path,
) -> None:
    """The store alone, its WAL grown past a checkpoint first: on the full filesystem some
    writes still fit in the WAL's room, then the first that needs a new block is refused
    and the checkpoint cannot grow the database; that wedges nothing once room returns."""
    path = small_filesystem / "store.db"
    expected: dict[str, str] = {}
    async with await SqliteStore.open(path) as store:
        for index in range(400):  # over 1,000 pages of WAL: an automatic checkpoint ran
            [stored] = await store.apply([config_map(f"warm-{index % 100}", n=str(index))])
            expected[stored["metadata"]["name"]] = stored["metadata"]["resourceVersion"]
        events = store.watch()
        fitted = refused = 0
        with filled(small_filesystem):
            for index in range(SPILL_LIMIT):
                try:
                    [stored] = await store.apply([config_map(f"spill-{index}")])
                except InsufficientStorage as error:
                    assert error.path == str(path)
                    refused += 1
                    if refused == 20:
                        break
                    continue
                assert refused == 0, "a refused write is followed by refused writes only"
                fitted += 1
                expected[stored["metadata"]["name"]] = stored["metadata"]["resourceVersion"]
            assert refused == 20
            rv = store.resource_version
            assert rv == max(map(int, expected.values()))
            items, listed_rv = await store.list("ConfigMap")
            assert (versions(items), listed_rv) == (expected, rv)
            heard = [(await anext(events)).resource_version for _ in range(fitted)]
            assert heard == list(range(rv - fitted + 1, rv + 1))
        for index in range(300):  # enough for another checkpoint
            [stored] = await store.apply([config_map(f"after-{index}")])
            expected[stored["metadata"]["name"]] = stored["metadata"]["resourceVersion"]
        assert (await anext(events)).resource_version == rv + 1, "no rv was consumed"
    check_file(path)
    async with await SqliteStore.open(path) as store:
        items, _ = await store.list("ConfigMap")
        assert versions(items) == expected
    print(f"{fitted} writes fitted in the WAL's room before the first refusal")
