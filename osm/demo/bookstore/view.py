"""The demo's live terminal view: who buys, who is denied, and how the split divides sales.

`render` is a pure function from `counters.DemoCounters` to something rich can print, so
tests snapshot it; `watch` redraws it about twice a second from a ``sample()`` callable and
knows nothing of how the counters are fetched (HTTP, network namespaces, a test's fake).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from osm.demo.bookstore import counters

Sample = Callable[[], counters.DemoCounters]

# Shell lines the footer suggests; each was run against `osm controller` (see the tests).
SPLIT_ALL_TO_V2 = (
    "osm get ts bookstore-split -n bookstore -o yaml \\\n"
    "  | sed '/-v1$/{n;s/: .*/: 0/};/-v2$/{n;s/: .*/: 100/}' | osm apply -f -"
)
SMI_MODE = (
    "osm get mc osm-mesh-config -n osm-system -o yaml \\\n"
    "  | sed 's/PolicyMode: true/PolicyMode: false/' | osm apply -f -"
)


def _indent(lines: str) -> str:
    return "\n".join(f"    {line}" for line in lines.splitlines())


HINTS = "\n".join(
    (
        "Change the split: edit the weights in demo/bookstore/manifests/40-policy.yaml and",
        "  `osm apply -f` it, or, to send every buyer to v2:",
        _indent(SPLIT_ALL_TO_V2),
        "SMI mode (only TrafficTargets' sources get through): set the MeshConfig's",
        "  spec.traffic.enablePermissiveTrafficPolicyMode to false (true: permissive) and",
        "  `osm apply -f` it. bookthief's own sidecar then has no route to the bookstore:",
        "  its requests fail as connection errors. Or:",
        _indent(SMI_MODE),
        "Ctrl-C stops this view, not the mesh; `osm down` tears the mesh down.",
    )
)


def _short(identity: str) -> str:
    return identity.removeprefix("bookstore-")


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "-"


def _clients_table(clients: tuple[counters.ClientCounters, ...]) -> Table:
    table = Table(title="Clients", title_justify="left", expand=False)
    table.add_column("client")
    for name in ("req/s", "requests", "ok", "denied", "errors"):
        table.add_column(name, justify="right")
    table.add_column("served by")
    for client in clients:
        if client.problem:
            table.add_row(client.identity, *["?"] * 5, Text("unreachable", "red"))
            continue
        served = " · ".join(f"{_short(k)} {v}" for k, v in sorted(client.by_identity.items()))
        table.add_row(
            client.identity,
            f"{client.requests_per_second:.1f}",
            str(client.requests),
            Text(str(client.ok), "green" if client.ok else ""),
            Text(str(client.denied), "yellow" if client.denied else ""),
            Text(str(client.errors), "red" if client.errors else ""),
            served or "-",
        )
    return table


def _bookstores_table(bookstores: tuple[counters.BookstoreCounters, ...]) -> Table:
    table = Table(title="Bookstores", title_justify="left", expand=False)
    table.add_column("version")
    for name in ("sold", "share", "sold/s", "share now", "restocks", "failed"):
        table.add_column(name, justify="right")
    total = sum(b.books_sold for b in bookstores)
    total_rate = sum(b.sales_per_second for b in bookstores)
    for store in bookstores:
        if store.problem:
            table.add_row(store.identity, *["?"] * 5, Text("unreachable", "red"))
            continue
        table.add_row(
            store.identity,
            str(store.books_sold),
            _share(store.books_sold, total),
            f"{store.sales_per_second:.1f}",
            _share(store.sales_per_second, total_rate),
            str(store.restocks_ok),
            Text(str(store.restocks_failed), "red" if store.restocks_failed else ""),
        )
    return table


def _warehouse_lines(warehouses: tuple[counters.WarehouseCounters, ...]) -> Text:
    if not warehouses:
        return Text("bookwarehouse: not sampled", "dim")
    lines = Text()
    for number, warehouse in enumerate(warehouses):
        if number:
            lines.append("\n")
        if warehouse.problem:
            lines.append(f"{warehouse.identity}: unreachable", "red")
        else:
            lines.append(
                f"{warehouse.identity}: {warehouse.restocks} restocks"
                f" ({warehouse.books_restocked} books)"
            )
    return lines


def _problems(sample: counters.DemoCounters) -> Text:
    parts: list[counters.Part] = [*sample.clients, *sample.bookstores, *sample.warehouses]
    lines = [f"{part.identity}: {part.problem}" for part in parts if part.problem]
    return Text("\n".join(lines), "red")


def render(sample: counters.DemoCounters) -> Group:
    """The whole view for one sample of the counters; pure."""
    return Group(
        Text("OSM bookstore demo", "bold"),
        _clients_table(sample.clients),
        _bookstores_table(sample.bookstores),
        _warehouse_lines(sample.warehouses),
        _problems(sample),
        Text(HINTS, "dim"),
    )


def _frame(sample: Sample) -> Group:
    try:
        return render(sample())
    except Exception as error:  # the sampler's fault; keep the view up and say so
        problem = f"could not sample the counters: {type(error).__name__}: {error}"
        return Group(Text(problem, "red"), Text(HINTS, "dim"))


def watch(
    sample: Sample,
    *,
    interval: float = 0.5,
    console: Console | None = None,
    frames: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Redraws `render(sample())` every `interval` seconds until Ctrl-C (or `frames` drawn).

    A `sample` that raises shows its error in place of the tables; the view keeps going.
    """
    drawn = 1
    with Live(_frame(sample), console=console, auto_refresh=False) as live:
        try:
            while frames is None or drawn < frames:
                sleep(interval)
                live.update(_frame(sample), refresh=True)
                drawn += 1
        except KeyboardInterrupt:
            pass
