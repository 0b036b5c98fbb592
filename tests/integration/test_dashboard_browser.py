"""The page of `osm dashboard` in Debian's headless chromium, against canned API answers.

A fixture server (tests/dashboard_fixture.py) serves osm/dashboard/static and the contract's
JSON for the bookstore demo in SMI mode; selenium drives /usr/bin/chromium through
/usr/bin/chromedriver (never a downloaded browser or driver). Each test checks what the
rendered page shows: cytoscape's state read through JS for the graph, the DOM for the rest,
and the browser's console for errors. Screenshots of each view go to
build/test-artifacts/dashboard/ for a person to look at.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import dashboard_fixture

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "dashboard"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (make deps installs them)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def chromium(profile: str, width: int = 1440, height: int = 900) -> Any:
    """Debian's chromium, headless, with nothing fetched from the network but the page."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", f"--window-size={width},{height}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def server() -> Iterator[dashboard_fixture.FixtureServer]:
    running = dashboard_fixture.FixtureServer(dashboard_fixture.bookstore())
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="osm-dashboard-chromium-")
    driver = chromium(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(browser: Any, script: str, timeout: float = 10) -> Any:
    """Waits until `script` (a JS expression) is truthy and returns its value."""
    return WebDriverWait(browser, timeout).until(lambda b: b.execute_script(f"return {script};"))


def by_testid(browser: Any, name: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f"[data-testid='{name}']")


def wait_by_testid(browser: Any, name: str, timeout: float = 10) -> Any:
    wait_for(browser, f"document.querySelector(\"[data-testid='{name}']\")", timeout)
    return by_testid(browser, name)


def screenshot(browser: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def console_errors(browser: Any) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def open_view(browser: Any, server: dashboard_fixture.FixtureServer, view: str) -> None:
    browser.get(f"{server.url}/#{view}")
    wait_for(browser, "document.querySelector(\"[data-testid='source-prometheus']\")")


def graph_state(browser: Any) -> dict[str, Any]:
    """Cytoscape's elements as the page holds them: node ids, edges by id with their data."""
    return browser.execute_script(  # type: ignore[no-any-return]
        """const cy = window.__osmCy;
        return {nodes: cy.nodes().map(n => n.id()),
                edges: Object.fromEntries(cy.edges().map(e => [e.id(), e.data()])),
                positions: Object.fromEntries(cy.nodes().map(n => [n.id(), n.position()])),
                zoom: cy.zoom(), selected: cy.$(':selected').map(e => e.id())};"""
    )


DENIED = "workload:bookthief/bookthief->service:bookstore/bookstore"
BOOKSTORE_NODES = [
    "workload:bookbuyer/bookbuyer",
    "workload:bookthief/bookthief",
    "service:bookstore/bookstore",
    "service:bookstore/bookstore-v1",
    "service:bookstore/bookstore-v2",
    "workload:bookstore/bookstore-v1",
    "workload:bookstore/bookstore-v2",
    "workload:bookwarehouse/bookwarehouse",
]


def test_the_graph_shows_the_bookstore_and_the_denied_edge_with_its_suggestion(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    open_view(browser, server, "graph")
    wait_for(browser, "window.__osmRendered")
    state = graph_state(browser)
    assert set(BOOKSTORE_NODES) <= set(state["nodes"])
    active = state["edges"]["workload:bookbuyer/bookbuyer->service:bookstore/bookstore-v1"]
    assert (active["state"], active["label"]) == ("active", "7.42 rps · 100% · p99 12 ms")
    assert state["edges"][DENIED]["state"] == "denied"
    screenshot(browser, "graph")

    browser.execute_script(f"window.__osmCy.getElementById({DENIED!r}).emit('tap')")
    panel = by_testid(browser, "side-panel")
    assert "denied" in by_testid(browser, "panel-state").text
    assert dashboard_fixture.DENIED_BY in by_testid(browser, "panel-policy").text
    suggestion = by_testid(browser, "policy-suggestion").text
    assert "kind: TrafficTarget" in suggestion and "name: bookthief" in suggestion
    assert "bookthief/bookthief → bookstore/bookstore" in panel.text
    screenshot(browser, "graph-denied-edge")
    assert console_errors(browser) == []


def test_a_refresh_keeps_the_selection_the_layout_and_the_zoom(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    open_view(browser, server, "graph")
    wait_for(browser, "window.__osmRendered")
    browser.execute_script(
        f"window.__osmCy.zoom(1.3); window.__osmCy.getElementById({DENIED!r}).emit('tap')"
    )
    before = graph_state(browser)
    served = len(server.requests)
    browser.execute_script("return window.__osm.tick()")  # a refresh, awaited
    assert any(path.startswith("/api/graph") for path in server.requests[served:])
    after = graph_state(browser)
    assert after["selected"] == [DENIED]
    assert after["positions"] == before["positions"]
    assert after["zoom"] == pytest.approx(before["zoom"])
    assert "policy-suggestion" in by_testid(browser, "side-panel").get_attribute("innerHTML")
    assert console_errors(browser) == []


def test_the_split_shows_configured_weights_beside_observed_shares(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    open_view(browser, server, "splits")
    wait_by_testid(browser, "split-bookstore-bookstore-split")
    rows = {
        backend: (
            by_testid(browser, f"split-backend-{backend}")
            .find_element(By.CSS_SELECTOR, "[data-testid=weight]")
            .text,
            by_testid(browser, f"split-backend-{backend}")
            .find_element(By.CSS_SELECTOR, "[data-testid=configured]")
            .text,
            by_testid(browser, f"split-backend-{backend}")
            .find_element(By.CSS_SELECTOR, "[data-testid=observed]")
            .text,
        )
        for backend in ("bookstore-v1", "bookstore-v2")
    }
    assert rows == {
        "bookstore-v1": ("75", "75.0%", "74.2%"),
        "bookstore-v2": ("25", "25.0%", "25.8%"),
    }
    screenshot(browser, "splits")
    assert console_errors(browser) == []


def test_a_trace_opens_as_a_waterfall_of_its_three_services(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    open_view(browser, server, "traces")
    row = wait_by_testid(browser, f"trace-row-{dashboard_fixture.TRACE_ID}")
    row.click()
    waterfall = wait_by_testid(browser, "waterfall")
    spans = waterfall.find_elements(By.CSS_SELECTOR, ".span-row[data-span]")
    assert [(s.get_attribute("data-service"), s.get_attribute("data-depth")) for s in spans] == [
        ("bookbuyer", "0"),
        ("bookstore", "1"),
        ("bookstore", "2"),
        ("bookwarehouse", "3"),
    ]
    spans[3].click()
    tags = by_testid(browser, "span-tags-c1")
    assert tags.is_displayed() and "http.status_code" in tags.text
    screenshot(browser, "traces")
    assert console_errors(browser) == []


def test_services_show_golden_signals_and_charts_over_time(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    open_view(browser, server, "services")
    wait_by_testid(browser, "service-row-bookstore-bookstore-v1").click()
    for chart in ("rps", "success", "latency"):
        wait_for(browser, f"document.querySelector('[data-testid=chart-{chart}] canvas')")
    screenshot(browser, "services")
    assert console_errors(browser) == []


def test_proxies_highlight_the_last_nack_and_say_when_certificates_expire(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    open_view(browser, server, "proxies")
    row = wait_by_testid(browser, "proxy-row-bookstore-bookstore-v2-58c9b7-m4n8t")
    assert "nacked" in row.get_attribute("class")
    assert "unknown cluster" in row.find_element(By.CSS_SELECTOR, "[data-testid=last-nack]").text
    expiring = by_testid(browser, "proxy-row-bookwarehouse-bookwarehouse-6c7d8e-p1r5s")
    assert expiring.find_element(By.CSS_SELECTOR, "[data-testid=cert-expiry]").text.startswith(
        "expires in 3"
    )
    screenshot(browser, "proxies")
    assert console_errors(browser) == []


def test_prometheus_not_installed_is_a_banner_and_the_graph_still_renders(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    server.scenario = dashboard_fixture.bookstore(prometheus="not-installed")
    open_view(browser, server, "graph")
    banner = wait_by_testid(browser, "banner-prometheus")
    assert banner.text.startswith("Prometheus not installed")
    assert "osm metrics enable" in banner.text
    assert by_testid(browser, "source-prometheus").get_attribute("data-state") == "not-installed"
    wait_for(browser, "window.__osmRendered")
    assert set(BOOKSTORE_NODES) <= set(graph_state(browser)["nodes"])
    screenshot(browser, "prometheus-not-installed")
    assert console_errors(browser) == []


def test_an_unreachable_dashboard_server_is_a_banner_not_a_blank_page(
    server: dashboard_fixture.FixtureServer, browser: Any
) -> None:
    open_view(browser, server, "splits")
    wait_by_testid(browser, "split-bookstore-bookstore-split")
    server.stop()
    browser.execute_script("return window.__osm.tick()")
    banner = wait_by_testid(browser, "banner-dashboard")
    assert "unreachable" in banner.text
    assert by_testid(browser, "split-bookstore-bookstore-split").is_displayed()
    screenshot(browser, "dashboard-unreachable")
