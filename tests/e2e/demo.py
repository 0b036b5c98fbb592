"""What the e2e modules that run the bookstore demo share: choosing each Deployment's data
plane, the demo clients' counts over a time, and what a run left in the host's namespaces."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from osm.base import wellknown
from osm.demo.bookstore import counters
from osm.runtime import record
from tests.e2e import hostutil


def choose_planes(planes: dict[str, str]) -> Callable[[list[dict[str, Any]]], None]:
    """An edit that annotates the pod templates of the Deployments `planes` names."""

    def edit(objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            plane = planes.get(obj["metadata"]["name"]) if obj["kind"] == "Deployment" else None
            if plane is not None:
                meta = obj["spec"]["template"].setdefault("metadata", {})
                meta.setdefault("annotations", {})[wellknown.DATA_PLANE_ANNOTATION] = plane

    return edit


def counted(
    sample: Callable[[], counters.DemoCounters], seconds: float
) -> dict[str, counters.ClientCounters]:
    """Each client's counters accumulated over ``seconds`` (differences of two samples)."""
    first = {c.identity: c for c in sample().clients}
    time.sleep(seconds)
    second = {c.identity: c for c in sample().clients}
    result = {}
    for name, after in second.items():
        before = first.get(name) or counters.ClientCounters(name)
        by_identity = {k: v - before.by_identity.get(k, 0) for k, v in after.by_identity.items()}
        result[name] = counters.ClientCounters(
            name,
            requests=after.requests - before.requests,
            ok=after.ok - before.ok,
            denied=after.denied - before.denied,
            errors=after.errors - before.errors,
            by_identity=by_identity,
        )
    return result


def left_behind(prefix: str) -> dict[str, list[str]]:
    """The network namespaces and /etc/netns directories named with a run's ``prefix``."""
    etc = record.ETC_NETNS
    return {
        "netns": hostutil.netns_named(prefix),
        "etc": sorted(p.name for p in etc.iterdir() if p.name.startswith(prefix))
        if etc.exists()
        else [],
    }
