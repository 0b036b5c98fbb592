"""``python3 -m osm.tracing``: the trace store as a process (local mode's ``jaeger`` pod).

Usage: ``python3 -m osm.tracing --db PATH [--port N] [--host ADDR] [--max-spans N]
[--retention 1h]``. Bad arguments exit 2 with a message saying what is valid; SIGTERM and
SIGINT stop it cleanly (in-flight requests finish, the database is checkpointed and
closed). One log line says where it serves, once it does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from aiohttp import web

from osm.base import wellknown
from osm.tracing import server
from osm.tracing.store import Limits, TraceStore

log = logging.getLogger("osm.tracing")

UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def duration(text: str) -> float | None:
    """``90s``, ``30m``, ``1h``, ``7d``; ``0`` or ``off``: no age bound."""
    if text in ("0", "off"):
        return None
    found = DURATION.match(text.strip())
    if found is None or float(found[1]) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; valid: a positive number with a unit s, m, h or d "
            "(e.g. 90s, 30m, 1h, 7d), or 0/off for none"
        )
    return float(found[1]) * UNITS[found[2]]


def positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}; valid: a positive whole number")
    return int(text)


def port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}; valid: a port 0-65535 (0: any free port)")
    return int(text)


def parser() -> argparse.ArgumentParser:
    defaults = Limits()
    parse = argparse.ArgumentParser(
        prog="python3 -m osm.tracing",
        description="The mesh's trace store: Zipkin v2 collector and query API over SQLite.",
    )
    parse.add_argument("--db", type=Path, required=True, help="the SQLite file (created)")
    parse.add_argument("--port", type=port, default=wellknown.ZIPKIN_PORT)
    parse.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parse.add_argument(
        "--max-spans",
        type=positive,
        default=defaults.max_spans,
        help=f"spans kept at most (whole traces pruned, oldest first; {defaults.max_spans})",
    )
    parse.add_argument(
        "--retention",
        type=duration,
        default=defaults.retention_s,
        help="traces not written to for this long are deleted (24h; 0: never)",
    )
    return parse


async def serve(arguments: argparse.Namespace) -> int:
    if not arguments.db.parent.is_dir():
        log.error("--db %s: no directory %s; valid: a file in an existing directory",
                  arguments.db, arguments.db.parent)  # fmt: skip
        return 2
    try:
        store = await TraceStore.open(
            arguments.db, Limits(arguments.max_spans, arguments.retention)
        )
    except sqlite3.Error as error:
        log.error("--db %s: cannot open it as a trace store: %s", arguments.db, error)
        return 1
    runner = web.AppRunner(server.make_app(store), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, arguments.host, arguments.port)
        try:
            await site.start()
        except OSError as error:
            log.error("cannot listen on %s:%s: %s", arguments.host, arguments.port, error)
            return 1
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        addresses = [f"{address[0]}:{address[1]}" for address in runner.addresses]
        retention = "none" if arguments.retention is None else f"{arguments.retention:g}s"
        log.info(
            "osm.tracing: serving Zipkin v2 on %s (db %s, %d spans stored, max spans %d, "
            "retention %s)",
            ", ".join(addresses),
            arguments.db,
            store.stats().spans,
            arguments.max_spans,
            retention,
        )
        await stopping.wait()
        log.info("osm.tracing: stopping")
    finally:
        await runner.cleanup()
        await store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(serve(arguments))


if __name__ == "__main__":
    sys.exit(main())
