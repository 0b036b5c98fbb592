"""``osm get -w`` lists, then prints a row per change after the list, with the event's
type, until interrupted (here: after the changes the test makes)."""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from osm.cli import main
from osm.cli.client import Api
from tests.unit.cli.local_api import RunningApi

main.register(main.cli)

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
SPLIT = (
    "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\n"
    "metadata: {{name: web, namespace: shop}}\n"
    "spec:\n  service: web\n  backends: [{{service: web-v1, weight: {weight}}}]\n"
)


def osm(api: RunningApi, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main.cli, ["--kubeconfig", str(api.kubeconfig), *args], obj={}, input=stdin
    )


def test_get_watch_prints_each_change_after_the_list(
    api: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        osm(api, "apply", "-f", "-", stdin=NAMESPACE + "---\n" + SPLIT.format(weight=1)).exit_code
        == 0
    )
    watching = threading.Event()
    real_watch = Api.watch

    def two_events(self: Api, *args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        events = real_watch(self, *args, **kwargs)
        watching.set()
        try:
            for _ in range(2):
                yield next(events)
        finally:
            events.close()

    monkeypatch.setattr(Api, "watch", two_events)
    results: list[Result] = []
    watcher = threading.Thread(
        target=lambda: results.append(osm(api, "get", "ts", "-n", "shop", "-w"))
    )
    watcher.start()
    assert watching.wait(10), "listed: the changes below come after the list's version"
    with Api.connect(api.kubeconfig) as client:
        split = client.get("TrafficSplit", "shop", "web")
        split["spec"]["backends"][0]["weight"] = 2
        client.replace(split)
        client.delete("TrafficSplit", "shop", "web")
    watcher.join(10)
    assert not watcher.is_alive()
    lines = results[0].output.splitlines()
    assert lines[0].split() == ["NAME", "SERVICE", "BACKENDS", "AGE"]
    assert lines[1].split()[:3] == ["web", "web", "web-v1:1"]
    assert lines[2].split()[:3] == ["web", "web", "web-v1:2"]
    assert lines[2].endswith("MODIFIED")
    assert lines[3].endswith("DELETED")
    assert len(lines) == 4
