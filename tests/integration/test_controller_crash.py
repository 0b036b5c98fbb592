"""`kill -9` of the controller during a 10,000-object apply.

The apply is one store transaction, so after a restart the store holds the old or the
new state, never a mix; resourceVersions continue, and a watcher that resumes from the
last resourceVersion it saw converges on exactly the stored state.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

from osm.cli.client import ApiError, Client
from tests.conftest import start_controller

COUNT = 10_000


def accounts(generation: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": f"sa-{i:05d}", "namespace": "load", "labels": {"gen": generation}},
        }
        for i in range(COUNT)
    ]


def catch_up(api: Client, view: dict[str, str], since: int, target: int) -> int:
    """Applies watch events from `since` until `target` to `view` (name -> gen label)."""
    if target <= since:
        return since
    events = api.watch(since=since, kinds=["ServiceAccount"])
    try:
        for event in events:
            if event["type"] == "RESYNC":
                view.clear()
                view.update(
                    {
                        o["metadata"]["name"]: o["metadata"]["labels"]["gen"]
                        for o in event["objects"]
                    }
                )
            elif event["type"] in ("ADDED", "MODIFIED"):
                obj = event["object"]
                view[obj["metadata"]["name"]] = obj["metadata"]["labels"]["gen"]
            elif event["type"] == "DELETED":
                view.pop(event["object"]["metadata"]["name"], None)
            since = event["resourceVersion"]
            if since >= target:
                return since
    finally:
        events.close()
    raise AssertionError("the watch ended before reaching the store's resourceVersion")


def test_kill_9_mid_apply_leaves_old_or_new_state_and_watchers_resume(tmp_path: Path) -> None:
    state = tmp_path / "state"
    controller = start_controller(state)
    api = Client(controller.url, timeout=120)
    api.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "load"}}])
    api.apply(accounts("warm-up"))
    started = time.perf_counter()
    api.apply(accounts("g0"))
    duration = time.perf_counter() - started  # kills land from early to just after commit
    listed = api.list("sa", namespace="load")
    view = {o["metadata"]["name"]: o["metadata"]["labels"]["gen"] for o in listed["items"]}
    seen_rv = listed["resourceVersion"]
    rng = random.Random(7)
    outcomes: list[str] = []
    try:
        for attempt in range(1, 6):
            generation = f"g{attempt}"
            previous = {v for v in view.values()}
            writer = threading.Thread(target=_apply_quietly, args=(api, accounts(generation)))
            writer.start()
            time.sleep(rng.uniform(0.5, 1.3) * duration)
            controller.stop(signal.SIGKILL)
            writer.join(timeout=120)
            controller = start_controller(state, port=controller.port, xds_port=controller.xds_port)

            after = api.list("sa", namespace="load")
            generations = {o["metadata"]["labels"]["gen"] for o in after["items"]}
            assert len(after["items"]) == COUNT
            assert len(generations) == 1, f"a mix of generations: {generations}"
            assert generations <= previous | {generation}
            outcomes.append("new" if generations == {generation} else "old")
            if outcomes[-1] == "old":
                api.apply(accounts(generation))  # the next round starts from `generation`
                after = api.list("sa", namespace="load")

            seen_rv = catch_up(api, view, seen_rv, after["resourceVersion"])
            assert view == {
                o["metadata"]["name"]: o["metadata"]["labels"]["gen"] for o in after["items"]
            }
    finally:
        controller.stop()
    print("outcomes:", outcomes)


def _apply_quietly(api: Client, objects: list[dict[str, Any]]) -> None:
    with contextlib.suppress(ApiError):  # the controller is killed under it
        api.apply(objects)
