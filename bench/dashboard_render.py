"""Dashboard render benchmark: the page of `osm dashboard` with a large mesh's data.

    python bench/dashboard_render.py [--services 100] [--proxies 5000] [--repeat 5]

The page (osm/dashboard/static) and canned API answers (tests/dashboard_fixture.py:
`scaled(services, proxies)`: a workload behind each service, two calls out of each, some
idle and denied; `proxies` proxies) are served from a thread; Debian's headless chromium
(/usr/bin/chromium through /usr/bin/chromedriver, selenium; nothing downloaded) opens the
page. Measured, in ms from the navigation's start (the page's `performance.now()`):
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
import pathlib
import shutil
import statistics
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from _report import print_table
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

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


def measure(scenario: dashboard_fixture.Scenario, repeat: int) -> list[dict[str, float]]:
    server = dashboard_fixture.FixtureServer(scenario)
    url = server.start()
    runs = []
    try:
        for _ in range(repeat):
            profile = tempfile.mkdtemp(prefix="osm-dashboard-bench-")
            driver = browser(profile)
            try:
                response, cold = graph_render(driver, url)
                _, warm = graph_render(driver, url)
                proxies = proxies_render(driver, url)
            finally:
                driver.quit()
                shutil.rmtree(profile, ignore_errors=True)
            runs.append({"response": response, "cold": cold, "warm": warm, "proxies": proxies})
    finally:
        server.stop()
    return runs


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
    cases = {
        "bookstore (baseline)": measure(dashboard_fixture.bookstore(), args.repeat),
        f"{args.services} services, {args.proxies} proxies": measure(scaled, args.repeat),
    }
    print(f"graph of the large mesh: {nodes} nodes, {edges} edges; ms from navigation start")
    rows = [["case", "run", "/api/graph done", "graph cold", "graph warm", "proxies view"]]
    for case, runs in cases.items():
        for number, run in enumerate(runs, 1):
            rows.append(
                [case, str(number)]
                + [f"{run[k]:.0f}" for k in ("response", "cold", "warm", "proxies")]
            )
        rows.append(
            [case, "median"]
            + [
                f"{statistics.median(r[k] for r in runs):.0f}"
                for k in ("response", "cold", "warm", "proxies")
            ]
        )
    print_table(rows)
    base = statistics.median(r["cold"] for r in next(iter(cases.values())))
    large = statistics.median(r["cold"] for r in list(cases.values())[1])
    worst = max(r["cold"] for r in list(cases.values())[1])
    print(
        f"\nfirst render, large mesh: median {large:.0f} ms ({large / base:.2f}x the bookstore's), "
        f"worst {worst:.0f} ms; goal <= {GOAL_MS:.0f} ms: {'met' if worst <= GOAL_MS else 'missed'}"
    )


if __name__ == "__main__":
    main()
