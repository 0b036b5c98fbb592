"""Runs one bookstore demo app: ``python -m osm.demo.bookstore ROLE`` (see ``--help``).

Configuration comes from the environment, with the names the demo manifests use (IDENTITY,
PORT, BOOKSTORE_URL, WAREHOUSE_URL, ...); a flag overrides its variable. Only the chosen
role's modules are imported, so that an app starts in about a tenth of a second.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Mapping, Sequence

from osm.demo.arguments import number

PROG = "python -m osm.demo.bookstore"


_port = number(int, 0, "a port number (0-65535)")
_positive_int = number(int, 1, "a whole number of at least 1")
_positive = number(float, 0.001, "a positive number")
_seconds = number(float, 0, "a number of seconds (0 or more)")


def _target(text: str) -> tuple[str, str]:
    role, equals, url = text.partition("=")
    if not equals or role not in ("client", "bookstore", "bookwarehouse") or not url:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected ROLE=URL with ROLE client, bookstore or bookwarehouse,"
            " e.g. client=http://127.0.0.1:14002/metrics"
        )
    return role, url


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The command line; defaults come from `environ`, so each flag names its variable."""

    def env(name: str, default: str) -> str:
        return environ.get(name, default)

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The bookstore demo's apps, after OSM's: bookbuyer and bookthief (both"
        " `client`) buy from bookstore-v1/v2, which restock from bookwarehouse.",
    )
    roles = parser.add_subparsers(dest="role", required=True, metavar="ROLE")

    def server(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = roles.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--identity",
            default=env("IDENTITY", name),
            help="name in logs and the identity"
            " response header (env IDENTITY; default %(default)s)",
        )
        sub.add_argument("--host", default=env("HOST", "0.0.0.0"), help="listen address (env HOST)")
        sub.add_argument(
            "--port", type=_port, default=env("PORT", "14001"), help="listen port (env PORT)"
        )
        return sub

    store = server(
        "bookstore",
        "Serve GET /buy-a-book/new, /books-bought, /ready, /metrics and /; restock from the"
        " warehouse every few sales.",
    )
    store.add_argument(
        "--warehouse-url",
        default=env("WAREHOUSE_URL", ""),
        help="base URL of bookwarehouse; empty: no restocks (env WAREHOUSE_URL)",
    )
    store.add_argument(
        "--restock-every",
        type=_positive_int,
        default=env("RESTOCK_EVERY", "5"),
        help="sales between restocks (env RESTOCK_EVERY; default %(default)s)",
    )
    store.add_argument(
        "--timeout",
        type=_positive,
        default=env("TIMEOUT", "1.5"),
        help="seconds a restock may take (env TIMEOUT; default %(default)s)",
    )
    store.add_argument(
        "--report-every",
        type=_seconds,
        default=env("REPORT_EVERY", "10"),
        help="seconds between summary lines, 0 for none (env REPORT_EVERY)",
    )

    warehouse = server(
        "bookwarehouse", "Serve POST /restock-books, GET /ready and /metrics; count restocks."
    )
    warehouse.add_argument(
        "--report-every",
        type=_seconds,
        default=env("REPORT_EVERY", "10"),
        help="seconds between summary lines, 0 for none (env REPORT_EVERY)",
    )

    client = roles.add_parser(
        "client",
        help="Buy books forever (bookbuyer, bookthief) and count the outcomes.",
        description="Call GET /buy-a-book/new and /books-bought on the bookstore at a steady"
        " rate, count outcomes per responding identity and status, and serve the counters"
        " as JSON at /metrics on an admin port. SIGTERM stops it.",
    )
    client.add_argument(
        "--identity", default=env("IDENTITY", "client"), help="name in logs (env IDENTITY)"
    )
    client.add_argument(
        "--bookstore-url",
        default=env("BOOKSTORE_URL", "http://bookstore.bookstore:14001"),
        help="base URL of the bookstore (env BOOKSTORE_URL; default %(default)s)",
    )
    client.add_argument(
        "--rate",
        type=_positive,
        default=env("RATE", "5"),
        help="requests per second (env RATE; default %(default)s)",
    )
    client.add_argument(
        "--timeout",
        type=_positive,
        default=env("TIMEOUT", "1.5"),
        help="seconds per request (env TIMEOUT; default %(default)s)",
    )
    client.add_argument(
        "--host", default=env("HOST", "0.0.0.0"), help="admin listen address (env HOST)"
    )
    client.add_argument(
        "--metrics-port",
        type=_port,
        default=env("METRICS_PORT", "14002"),
        help="admin port serving /metrics (env METRICS_PORT; default %(default)s)",
    )
    client.add_argument(
        "--report-every",
        type=_seconds,
        default=env("REPORT_EVERY", "5"),
        help="seconds between summary lines; 0 logs every request (env REPORT_EVERY)",
    )

    view = roles.add_parser(
        "view",
        help="Show the apps' counters live in the terminal.",
        description="Fetch each app's /metrics over HTTP and show them live; Ctrl-C stops.",
    )
    view.add_argument(
        "--target",
        dest="targets",
        type=_target,
        action="append",
        required=True,
        metavar="ROLE=URL",
        help="an app's metrics, e.g. client=http://127.0.0.1:14002/metrics; repeatable",
    )
    view.add_argument("--interval", type=_positive, default="0.5", help="seconds per redraw")
    view.add_argument("--once", action="store_true", help="print one frame and exit")
    return parser


def _view(args: argparse.Namespace) -> int:
    from rich.console import Console

    from osm.demo.bookstore import counters, view

    targets: list[tuple[str, str]] = args.targets
    if args.once:
        Console().print(view.render(counters.fetch(targets)))
    else:
        view.watch(lambda: counters.fetch(targets), interval=args.interval)
    return 0


def _app(args: argparse.Namespace) -> int:
    from osm.demo.bookstore import process

    app: process.Main
    if args.role == "bookstore":
        from osm.demo.bookstore import bookstore

        store = bookstore.Settings(
            identity=args.identity,
            host=args.host,
            port=args.port,
            warehouse_url=args.warehouse_url,
            restock_every=args.restock_every,
            timeout=args.timeout,
            report_every=args.report_every,
        )
        app = functools.partial(bookstore.main, store)
    elif args.role == "bookwarehouse":
        from osm.demo.bookstore import bookwarehouse

        warehouse = bookwarehouse.Settings(
            identity=args.identity, host=args.host, port=args.port, report_every=args.report_every
        )
        app = functools.partial(bookwarehouse.main, warehouse)
    else:
        from osm.demo.bookstore import client

        buyer = client.Settings(
            identity=args.identity,
            bookstore_url=args.bookstore_url,
            rate=args.rate,
            timeout=args.timeout,
            host=args.host,
            metrics_port=args.metrics_port,
            report_every=args.report_every,
        )
        app = functools.partial(client.main, buyer)
    try:
        process.run(app)
    except OSError as error:
        print(f"{args.identity}: cannot start: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser(os.environ if environ is None else environ).parse_args(argv)
    return _view(args) if args.role == "view" else _app(args)


if __name__ == "__main__":
    sys.exit(main())
