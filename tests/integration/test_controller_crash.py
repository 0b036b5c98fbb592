"""`kill -9` of the controller while clients write through its Kubernetes API over HTTPS.

Each request's objects are stored in one store transaction before the API answers, so
after a restart: every object is at the version before or after the write in flight on it,
never a part of one; every write that was answered is there; an injected Pod has its
bootstrap Secret and no bootstrap Secret is left without its Pod (admission stores the two
in one write); the store file is intact and resourceVersions go on from where they were;
and a watcher that resumes from the last resourceVersion it saw (or lists again on 410
Expired) converges on exactly the stored state.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from osm.base import wellknown
from osm.kube.client import KubeClient
from osm.kube.errors import ApiError, KubeError
from tests import controllers, kubeapi
from tests.unit.injector.injector_support import namespace, pod

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

LOAD = "load"
MESH = "mesh"
COUNT = 400
PODS = 40
ROUNDS = 5
IN_FLIGHT = 8
PAYLOAD = 2000


def config_map(index: int, generation: str) -> dict[str, Any]:
    """A ConfigMap that says its generation three times: a part of one write would show."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cm-{index:04d}", "namespace": LOAD, "labels": {"gen": generation}},
        "data": {"gen": generation, "payload": f"{generation}-{index}-" + "x" * PAYLOAD},
    }


def generation_of(obj: dict[str, Any]) -> str:
    """The object's generation; fails if its parts disagree."""
    name = obj["metadata"]["name"]
    generation = obj["metadata"]["labels"]["gen"]
    index = int(name.removeprefix("cm-"))
    expected = config_map(index, generation)
    assert obj["data"] == expected["data"], f"{name} is partly {generation}"
    return str(generation)


class Writer:
    """Writes objects, `IN_FLIGHT` requests at a time, and records which were answered;
    stops quietly when the connection goes (the controller was killed)."""

    def __init__(self) -> None:
        self.answered: set[tuple[str, str]] = set()
        self.newest = 0
        """The highest resourceVersion of an answer."""
        self.failed: list[str] = []

    async def write(self, client: KubeClient, objects: list[dict[str, Any]]) -> None:
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def one(obj: dict[str, Any]) -> None:
            async with limit:
                if self.failed:
                    return
                try:
                    stored = await kubeapi.apply_one(client, obj)
                except (KubeError, OSError) as error:
                    self.failed.append(str(error))
                    return
                self.answered.add((obj["kind"], obj["metadata"]["name"]))
                self.newest = max(self.newest, int(stored["metadata"]["resourceVersion"]))

        await asyncio.gather(*(one(obj) for obj in objects))


async def catch_up(client: KubeClient, view: dict[str, str], since: str, target: int) -> str:
    """Applies ConfigMap events after `since` to `view` (name -> generation) until the
    resourceVersion `target`; lists again if the watch's version has expired."""
    if int(since) >= target:
        return since
    try:
        async with asyncio.timeout(30):
            async for event_type, obj in client.watch("ConfigMap", LOAD, since):
                rv = obj["metadata"]["resourceVersion"]
                if event_type in ("ADDED", "MODIFIED"):
                    view[obj["metadata"]["name"]] = generation_of(obj)
                elif event_type == "DELETED":
                    view.pop(obj["metadata"]["name"], None)
                since = rv
                if int(rv) >= target:
                    return since
    except ApiError as error:
        if not error.expired:
            raise
        items, version = await client.list("ConfigMap", LOAD)
        view.clear()
        view.update({item["metadata"]["name"]: generation_of(item) for item in items})
        return version
    raise AssertionError("the watch ended before the stored resourceVersion")


def check_store_file(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()


async def check_pods(client: KubeClient, answered: set[tuple[str, str]]) -> int:
    """Every injected Pod has its bootstrap Secret and every bootstrap Secret its Pod; every
    answered Pod is there. Returns how many Pods there are."""
    pods, _ = await client.list("Pod", MESH)
    secrets, _ = await client.list("Secret", MESH)
    wanted = {
        wellknown.BOOTSTRAP_SECRET_PREFIX + p["metadata"]["labels"][wellknown.PROXY_UUID_LABEL]
        for p in pods
    }
    assert {s["metadata"]["name"] for s in secrets} == wanted, "a Pod and its Secret are one write"
    names = {p["metadata"]["name"] for p in pods}
    assert {name for kind, name in answered if kind == "Pod"} <= names, "an answered Pod is lost"
    return len(names)


async def test_kill_9_mid_writes_leaves_each_object_old_or_new_and_watchers_resume(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    controller = controllers.ControllerProcess.start(state)
    rng = random.Random(7)
    outcomes: list[str] = []
    try:
        async with KubeClient.from_kubeconfig(controller.kubeconfig) as client:
            await kubeapi.apply(
                client, namespace(LOAD, monitored=None, injection=None), namespace(MESH)
            )
            await Writer().write(client, [config_map(i, "warm-up") for i in range(COUNT)])
            started = time.perf_counter()
            await Writer().write(client, [config_map(i, "g0") for i in range(COUNT)])
            duration = time.perf_counter() - started  # kills land from early to after the end
            items, seen = await client.list("ConfigMap", LOAD)
        view = {item["metadata"]["name"]: generation_of(item) for item in items}

        for attempt in range(1, ROUNDS + 1):
            generation = f"g{attempt}"
            before = dict(view)
            writes = [config_map(i, generation) for i in range(COUNT)]
            writes += [pod(f"r{attempt}-{i}", ns=MESH) for i in range(PODS)]
            rng.shuffle(writes)
            writer = Writer()
            async with KubeClient.from_kubeconfig(controller.kubeconfig) as client:
                writing = asyncio.create_task(writer.write(client, writes))
                await asyncio.sleep(rng.uniform(0.1, 1.2) * duration)
                controller.kill()
                async with asyncio.timeout(60):
                    await writing
            check_store_file(state / "store.db")
            controller = controller.restart()

            async with KubeClient.from_kubeconfig(controller.kubeconfig) as client:
                items, _ = await client.list("ConfigMap", LOAD)
                after = {item["metadata"]["name"]: generation_of(item) for item in items}
                assert after.keys() == before.keys()
                for name, found in after.items():
                    assert found in (before[name], generation), f"{name}: {found}"
                answered = {name for kind, name in writer.answered if kind == "ConfigMap"}
                assert all(after[name] == generation for name in answered), "an answer is lost"
                new = sum(found == generation for found in after.values())
                pods = await check_pods(client, writer.answered)
                outcomes.append(f"{new}/{COUNT} new, {pods} pods")

                newest = max(int(item["metadata"]["resourceVersion"]) for item in items)
                marker = await client.create(config_map(COUNT, generation))
                marker_rv = int(marker["metadata"]["resourceVersion"])
                assert marker_rv > max(newest, writer.newest), "resourceVersions go on"
                await client.delete("ConfigMap", LOAD, marker["metadata"]["name"])
                seen = await catch_up(client, view, seen, newest)
                assert view == after
    finally:
        controller.stop()
    print("outcomes:", outcomes)
