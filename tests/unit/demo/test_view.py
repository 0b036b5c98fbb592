"""The live view: `render` of known counters, `watch` around a sampler, fetching over HTTP."""

from __future__ import annotations

import pytest
from rich.console import Console

from osm.demo.bookstore import counters, view
from tests.unit.demo.demotesting import Apps

pytestmark = pytest.mark.timeout(30)

KNOWN = counters.DemoCounters(
    clients=(
        counters.ClientCounters(
            "bookbuyer", 120, 5.0, 118, 0, 2, {"bookstore-v1": 88, "bookstore-v2": 30}
        ),
        counters.ClientCounters("bookthief", 117, 4.9, 0, 117, 0),
    ),
    bookstores=(
        counters.BookstoreCounters("bookstore-v1", 45, 2.0, 9, 0),
        counters.BookstoreCounters("bookstore-v2", 15, 0.5, 3, 1),
    ),
    warehouses=(counters.WarehouseCounters("bookwarehouse", 12, 60),),
)


def export(renderable: object) -> str:
    console = Console(record=True, width=100, color_system=None)
    console.print(renderable)
    return console.export_text()


def row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if f" {name} " in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def test_render_shows_clients_versions_and_the_warehouse() -> None:
    text = export(view.render(KNOWN))

    assert row(text, "bookbuyer") == ["bookbuyer", "5.0", "120", "118", "0", "2", "v1 88 · v2 30"]
    assert row(text, "bookthief") == ["bookthief", "4.9", "117", "0", "117", "0", "-"]
    assert row(text, "bookstore-v1") == ["bookstore-v1", "45", "75%", "2.0", "80%", "9", "0"]
    assert row(text, "bookstore-v2") == ["bookstore-v2", "15", "25%", "0.5", "20%", "3", "1"]
    assert "bookwarehouse: 12 restocks (60 books)" in text
    assert view.SPLIT_ALL_TO_V2.splitlines()[1] in text
    assert view.SMI_MODE.splitlines()[1] in text
    assert "enablePermissiveTrafficPolicyMode" in text
    assert "Ctrl-C stops this view, not the mesh; `osm down` tears the mesh down." in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_render_marks_unreachable_apps_and_says_why() -> None:
    sample = counters.assemble(
        [
            counters.unreachable("client", "10.0.0.9:14002", "connection refused"),
            counters.unreachable("bookwarehouse", "10.0.0.7:14001", "no answer within 1 s"),
        ]
    )

    text = export(view.render(sample))

    assert row(text, "10.0.0.9:14002")[-1] == "unreachable"
    assert "10.0.0.9:14002: connection refused" in text
    assert "10.0.0.7:14001: no answer within 1 s" in text


def test_watch_redraws_and_survives_a_failing_sampler() -> None:
    calls: list[int] = []

    def sample() -> counters.DemoCounters:
        calls.append(1)
        if len(calls) == 3:  # the last frame is the one a non-terminal console keeps
            raise RuntimeError("namespace gone")
        return KNOWN

    console = Console(record=True, width=100, color_system=None, force_terminal=False)
    view.watch(sample, console=console, frames=3, sleep=lambda _: None)

    assert len(calls) == 3
    assert "could not sample the counters: RuntimeError: namespace gone" in console.export_text()


def test_parse_tolerates_missing_and_malformed_fields() -> None:
    part = counters.parse({"role": "client", "identity": "bookbuyer", "ok": "many", "denied": 3})

    assert part == counters.ClientCounters("bookbuyer", denied=3)
    with pytest.raises(ValueError, match="valid roles"):
        counters.parse({"role": "bookthief"})


def test_fetch_reads_the_apps_metrics_over_http(apps: Apps) -> None:
    warehouse = apps.start("bookwarehouse", {"IDENTITY": "bookwarehouse"})
    store = apps.start("bookstore", {"IDENTITY": "bookstore-v1", "WAREHOUSE_URL": warehouse.url})
    dead = "http://127.0.0.1:9/metrics"

    sample = counters.fetch(
        [
            ("bookstore", f"{store.url}/metrics"),
            ("bookwarehouse", f"{warehouse.url}/metrics"),
            ("client", dead),
        ]
    )

    assert sample.bookstores == (counters.BookstoreCounters("bookstore-v1"),)
    assert sample.warehouses == (counters.WarehouseCounters("bookwarehouse"),)
    assert sample.clients[0].identity == "127.0.0.1:9" and sample.clients[0].problem
