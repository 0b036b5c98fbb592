"""50 clients read-modify-write the same few objects through the real API at once.

Each client, over its own HTTPS connection to a controller process, repeatedly reads one
of a few ConfigMaps, appends a token of its own to the object's ``tokens`` list and writes
it back with the resourceVersion it read: half the time a PUT, half the time a JSON merge
patch carrying ``metadata.resourceVersion``. Optimistic concurrency must hold as in
Kubernetes: every write that lost the race is a 409 Conflict with kube-apiserver's
message and nothing else fails; no update is lost (each object's final list is exactly
the tokens of its successful writes, in resourceVersion order, and each success answered
the list as of that write); and a watcher hears each successful write once, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import pytest

from osm.kube.client import KubeClient
from osm.kube.errors import ApiError
from tests import controllers, kubeapi
from tests.unit.injector.injector_support import namespace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLIENTS = 50
OBJECTS = 3
WRITES_EACH = 6
"""Successful writes each client makes (it retries after each 409 until it succeeds)."""
NS = "race"
CONFLICT = (
    'Operation cannot be fulfilled on configmaps "{name}": the object has been modified; '
    "please apply your changes to the latest version and try again"
)


def counter(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"tokens": ""},
    }


def tokens_of(obj: dict[str, Any]) -> list[str]:
    text = obj["data"].get("tokens", "")
    return text.split(",") if text else []


@dataclasses.dataclass(frozen=True, slots=True)
class Success:
    name: str
    token: str
    resource_version: int
    tokens: tuple[str, ...]
    """The object's list as this write stored it."""


@dataclasses.dataclass
class Tally:
    successes: list[Success] = dataclasses.field(default_factory=list)
    conflicts: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


async def writer(kubeconfig: Path, index: int, tally: Tally, seed: int) -> None:
    """One client: `WRITES_EACH` successful read-modify-writes, retrying each conflict."""
    rng = random.Random(seed)
    async with KubeClient.from_kubeconfig(kubeconfig) as client:
        for sequence in range(WRITES_EACH):
            name = f"counter-{rng.randrange(OBJECTS)}"
            token = f"c{index}-{sequence}"
            patching = (index + sequence) % 2 == 1
            while True:
                current = await client.get("ConfigMap", NS, name)
                rv = current["metadata"]["resourceVersion"]
                wanted = ",".join([*tokens_of(current), token])
                try:
                    if patching:
                        stored = await client.patch(
                            "ConfigMap",
                            NS,
                            name,
                            {"metadata": {"resourceVersion": rv}, "data": {"tokens": wanted}},
                        )
                    else:
                        current["data"]["tokens"] = wanted
                        stored = await client.replace(current)
                except ApiError as error:
                    if (error.code, error.reason, error.message) == (
                        409,
                        "Conflict",
                        CONFLICT.format(name=name),
                    ):
                        tally.conflicts += 1
                        await asyncio.sleep(rng.uniform(0, 0.01))
                        continue
                    tally.errors.append(f"client {index}: {error.code} {error}")
                    return
                except Exception as error:
                    tally.errors.append(f"client {index}: {type(error).__name__}: {error}")
                    return
                tally.successes.append(
                    Success(
                        name,
                        token,
                        int(stored["metadata"]["resourceVersion"]),
                        tuple(tokens_of(stored)),
                    )
                )
                break


async def heard(
    client: KubeClient, since: str, until: int
) -> dict[str, list[tuple[int, tuple[str, ...]]]]:
    """Per object, the (resourceVersion, tokens) of every MODIFIED event up to ``until``."""
    events: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
    async with asyncio.timeout(60):
        async for kind, obj in client.watch("ConfigMap", NS, since):
            rv = int(obj["metadata"]["resourceVersion"])
            if kind == "MODIFIED":
                events.setdefault(obj["metadata"]["name"], []).append((rv, tuple(tokens_of(obj))))
            if rv >= until:
                return events
    return events


async def test_fifty_clients_racing_on_the_same_objects_lose_no_update(tmp_path: Path) -> None:
    controller = controllers.ControllerProcess.start(tmp_path / "state")
    tally = Tally()
    try:
        async with KubeClient.from_kubeconfig(controller.kubeconfig) as client:
            await kubeapi.apply(client, namespace(NS, monitored=None, injection=None))
            for index in range(OBJECTS):
                await client.create(counter(f"counter-{index}"))
            _, since = await client.list("ConfigMap", NS)

            started = time.perf_counter()
            await asyncio.gather(
                *(writer(controller.kubeconfig, i, tally, seed=i) for i in range(CLIENTS))
            )
            seconds = time.perf_counter() - started

            assert tally.errors == [], "a lost race is a 409 Conflict, nothing else"
            assert len(tally.successes) == CLIENTS * WRITES_EACH
            items, _ = await client.list("ConfigMap", NS)
            final = {item["metadata"]["name"]: item for item in items}
            newest = max(success.resource_version for success in tally.successes)
            events = await heard(client, since, newest)
    finally:
        controller.stop()

    for name, obj in final.items():
        mine = sorted(
            (s for s in tally.successes if s.name == name), key=lambda s: s.resource_version
        )
        in_order = [success.token for success in mine]
        assert tokens_of(obj) == in_order, f"{name}: an update is lost or out of order"
        for position, success in enumerate(mine):
            assert list(success.tokens) == in_order[: position + 1], f"{name}: {success}"
        if mine:
            assert int(obj["metadata"]["resourceVersion"]) == mine[-1].resource_version
            assert list(mine[-1].tokens) == tokens_of(obj), "the last write is the state"
        assert events.get(name, []) == [(s.resource_version, s.tokens) for s in mine], (
            f"{name}: the watch hears each successful write once, in order"
        )
    writes = len(tally.successes)
    print(
        f"{CLIENTS} clients, {OBJECTS} objects: {writes} writes, {tally.conflicts} 409s, "
        f"{seconds:.1f} s ({writes / seconds:.0f} writes/s, "
        f"{(writes + tally.conflicts) / seconds:.0f} attempts/s)"
    )
