"""Dashboard render benchmark: the page of `osm dashboard` with a large mesh's data.

    python bench/dashboard_render.py [--services 100] [--proxies 5000] [--repeat 5]

Three cases, the same run. **canned**: the page (osm/dashboard/static) and canned API
answers (tests/dashboard_fixture.py: `scaled(services, proxies)`: a workload behind each
service, two calls out of each, some idle and denied; `proxies` proxies) served from a
thread: the page's own cost. **real backend**: the real `osm dashboard` server
(`osm.dashboard.server`, a new one per repetition: nothing cached, the mesh state built on
first use) over bench/dashboard.py's synthetic mesh (``--services`` services of
``--proxies``/``--services`` pods, three calls out of each, a fake Prometheus, the
controller's real HTTP app in a process of its own): navigation to graph drawn with the
backend's computation included, on a server that has computed nothing yet, and on one that
has prepared the mesh's topology as `osm dashboard` does before it prints the URL (the
first page's graph then only folds in Prometheus's answers). **bookstore**: the baseline.
Debian's headless chromium (/usr/bin/chromium through /usr/bin/chromedriver, selenium;
nothing downloaded) opens the page. Measured, in ms from the navigation's start (the
page's `performance.now()`):
**graph** until `window.__osmRendered`, which the page sets in the first animation frame
after the graph's first layout (dagre), with `/api/graph`'s response end beside it; then
**proxies**, a navigation to #proxies until the mark `osm-view-rendered:proxies` (the
table drawn from all the proxies). Each repetition starts a new browser with an empty
profile (a cold cache, as a first `osm dashboard`); **warm** is a reload in the same
browser. **Baseline:** the bookstore demo's data (9 nodes, 5 proxies), the same run.
The goal of issue #18: the first render <= 1 s. Not run by CI; nothing here is a pass/fail
threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import pathlib
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from _report import print_table
from aiohttp.test_utils import TestServer
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from bench import dashboard as backend
from osm.base import wellknown
from osm.dashboard import server
from osm.model.core import Pod
from tests import dashboard_fixture

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
GOAL_MS = 1000.0


def browser(profile: str) -> Any:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1440,900",
    ):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(driver: Any, script: str) -> Any:
    return WebDriverWait(driver, 30, poll_frequency=0.02).until(
        lambda d: d.execute_script(f"return {script};")
    )


def graph_render(driver: Any, url: str) -> tuple[float, float]:
    """(graph response end, graph rendered), ms since the navigation's start."""
    driver.get(url)
    rendered = float(_wait(driver, "window.__osmRendered"))
    response = driver.execute_script(
        "const r = performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/api/graph'));"
        "return r.length ? r[0].responseEnd : null;"
    )
    return float(response or 0.0), rendered


def proxies_render(driver: Any, url: str) -> float:
    driver.get("about:blank")
    driver.get(f"{url}/#proxies")
    return float(
        _wait(
            driver,
            "performance.getEntriesByName('osm-view-rendered:proxies')[0]?.startTime",
        )
    )


def one_run(url: str) -> dict[str, float]:
    """A new browser with an empty profile: cold graph, warm graph, the proxies view."""
    profile = tempfile.mkdtemp(prefix="osm-dashboard-bench-")
    driver = browser(profile)
    try:
        response, cold = graph_render(driver, url)
        _, warm = graph_render(driver, url)
        proxies = proxies_render(driver, url)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {"response": response, "cold": cold, "warm": warm, "proxies": proxies}


def measure(scenario: dashboard_fixture.Scenario, repeat: int) -> list[dict[str, float]]:
    server = dashboard_fixture.FixtureServer(scenario)
    url = server.start()
    try:
        return [one_run(url) for _ in range(repeat)]
    finally:
        server.stop()


class RealBackend:
    """bench/dashboard.py's synthetic mesh behind the real dashboard server, on an event
    loop in a thread; `fresh` starts a new dashboard (nothing cached) and answers its URL."""

    def __init__(self, services: int, proxies: int) -> None:
        replicas = max(1, proxies // services)
        self.objects = backend.mesh_objects(services, replicas, 3)
        pods = [
            (backend.uuid_of(r), r.namespace, r.spec.service_account_name)
            for r in self.objects
            if isinstance(r, Pod)
        ]
        self.answers = backend.prometheus_answers(services, 3)
        with socket.socket() as sock:
            sock.bind((wellknown.LOCALHOST, 0))
            port = sock.getsockname()[1]
        context = multiprocessing.get_context("fork")  # before any thread
        ready = context.Event()
        self.controller = context.Process(
            target=backend.controller_main, args=(port, pods, ready), daemon=True
        )
        self.controller.start()
        ready.wait(30)
        self.controller_url = f"http://{wellknown.LOCALHOST}:{port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[TestServer] = []
        self.prometheus = TestServer(backend.fake_prometheus(self.answers))
        self._call(self.prometheus.start_server())
        time.sleep(0.5)  # the controller listens

    def _call(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(60)

    def fresh(self, prepared: bool = False) -> str:
        dashboard = backend.make_dashboard(
            backend.LazyMesh(self.objects),
            str(self.prometheus.make_url("")),
            self.controller_url,
            [time.monotonic()],
        )
        if prepared:  # as `osm dashboard` does before it prints the URL
            self._call(dashboard.prepare())
        app_server = TestServer(server.make_app(dashboard))
        self._call(app_server.start_server())
        self.servers.append(app_server)
        return str(app_server.make_url("")).rstrip("/")

    def stop(self) -> None:
        for each in [*self.servers, self.prometheus]:
            self._call(each.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.controller.terminate()
        self.controller.join(10)


def measure_real(
    services: int, proxies: int, repeat: int
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """(unprepared, prepared) runs, alternating, each on a new dashboard server."""
    real = RealBackend(services, proxies)
    try:
        cold: list[dict[str, float]] = []
        prepared: list[dict[str, float]] = []
        for _ in range(repeat):
            cold.append(one_run(real.fresh()))
            prepared.append(one_run(real.fresh(prepared=True)))
        return cold, prepared
    finally:
        real.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--proxies", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for path in (CHROMIUM, CHROMEDRIVER):
        if not pathlib.Path(path).exists():
            sys.exit(
                f"{path} is missing: install Debian's chromium and chromium-driver (make deps)"
            )
    scaled = dashboard_fixture.scaled(args.services, args.proxies)
    nodes, edges = len(scaled.graph["nodes"]), len(scaled.graph["edges"])
    large = f"{args.services} services, {args.proxies} proxies"
    real_cold, real_prepared = measure_real(args.services, args.proxies, args.repeat)
    cases = {
        "bookstore (baseline)": measure(dashboard_fixture.bookstore(), args.repeat),
        f"{large}, canned": measure(scaled, args.repeat),
        f"{large}, real backend, nothing computed": real_cold,
        f"{large}, real backend, prepared as osm dashboard starts": real_prepared,
    }
    print(
        f"canned graph: {nodes} nodes, {edges} edges; real backend: bench/dashboard.py's mesh; "
        f"ms from navigation start, median [min-max] of {args.repeat} (a new browser each)"
    )
    keys = ("response", "cold", "warm", "proxies")
    rows = [["case", "/api/graph done", "graph cold", "graph warm", "proxies view"]]
    for case, runs in cases.items():
        rows.append([case] + [spread([r[k] for r in runs]) for k in keys])
    print_table(rows)
    for case, runs in list(cases.items())[1:]:
        median = statistics.median(r["cold"] for r in runs)
        worst = max(r["cold"] for r in runs)
        verdict = "met" if worst <= GOAL_MS else "missed"
        print(
            f"first render, {case}: median {median:.0f} ms, worst {worst:.0f} ms; "
            f"goal <= {GOAL_MS:.0f} ms: {verdict}"
        )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


if __name__ == "__main__":
    main()
