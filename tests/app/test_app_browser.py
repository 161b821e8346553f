"""Real-browser check of the explorer: ``streamlit run app/streamlit_app.py`` in a subprocess,
Debian's chromium driven by Playwright; every page opens, one input changes, no exception or
error box appears. Screenshots go to ``$KVMODEL_APP_ARTIFACTS`` (default: pytest's tmp_path;
the path is printed). Skips without the ``playwright`` package or ``/usr/bin/chromium``
(``apt-get install -y chromium``; never ``playwright install``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "streamlit_app.py"),
         "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("streamlit did not start:\n" + proc.stdout.read().decode(errors="replace"))
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    d = Path(os.environ.get("KVMODEL_APP_ARTIFACTS") or tmp_path_factory.mktemp("app_screens"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"\napp screenshots: {d}")
    return d


def settle(page, timeout_s: float = 60) -> None:
    """Wait until the script run ended (the 'Running…' status widget stayed away)."""
    page.wait_for_selector("h1", timeout=timeout_s * 1000)
    quiet, deadline = 0, time.time() + timeout_s
    while quiet < 3:
        if time.time() > deadline:
            raise AssertionError("app still running after the timeout")
        busy = page.locator('[data-testid="stStatusWidget"]').count() or page.locator(
            '[data-testid="stSpinner"]').count()
        quiet = 0 if busy else quiet + 1
        page.wait_for_timeout(250)


def assert_clean(page, where: str) -> None:
    text = page.inner_text("body")
    assert page.locator('[data-testid="stException"]').count() == 0, where
    assert "Traceback" not in text, where
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{where}: " + " | ".join(errors.all_inner_texts())


def number(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def _toy_study(path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))),
                            study_name="toy", directions=["minimize", "maximize"],
                            sampler=optuna.samplers.RandomSampler(seed=0))
    s.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=12)


def change_estimate(page, tmp: Path) -> None:
    before = page.locator('[data-testid="stMetricValue"]').first.inner_text()
    number(page, "Input tokens", "8192")
    settle(page)
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() != before
    assert "input_len=8192" in page.url


def change_tiers(page, tmp: Path) -> None:
    number(page, "Curve points", "30")


def change_cluster(page, tmp: Path) -> None:
    number(page, "Instances", "2")


def change_search(page, tmp: Path) -> None:
    path = tmp / "toy.journal"
    _toy_study(path)
    box = page.get_by_role("textbox", name="Storage (file path, relative to the repository, or URL)")
    box.fill(str(path))
    box.press("Enter")
    settle(page)
    assert page.get_by_text("Pareto front").count() >= 1


def change_validation(page, tmp: Path) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Colour by").click()
    page.get_by_role("option", name="metric", exact=True).click()


def change_formulas(page, tmp: Path) -> None:
    page.get_by_role("tab", name="Queueing").click()
    page.wait_for_timeout(300)
    assert page.locator(".katex").count() > 3


def change_hardware(page, tmp: Path) -> None:
    page.locator('[data-testid="stRadio"]').filter(has_text="Section").get_by_text(
        "link", exact=True).click()


def test_deep_link_on_a_fresh_server(server, browser):
    """A shared link (page + query parameters) reproduces the view, even as the first request."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(f"{server}/cluster?c_src=synthetic&c_n=1000&instances=3&sharing=p2p")
        settle(page)
        assert page.locator("h1").first.inner_text().strip() == "Cluster"
        nav = page.locator('[data-testid="stSidebarNav"]')
        assert nav.get_by_text("Tiers & reuse").count() == 1  # st.navigation, not pages/ files
        box, deadline = page.get_by_label("Instances", exact=True), time.time() + 30
        while box.input_value() != "3" and time.time() < deadline:  # a slow first run
            page.wait_for_timeout(250)
        assert box.input_value() == "3"
        assert_clean(page, "Cluster deep link")
    finally:
        page.close()


PAGES = [("", "Estimate", change_estimate), ("tiers", "Tiers & reuse", change_tiers),
         ("cluster", "Cluster", change_cluster), ("search", "Search", change_search),
         ("validation", "Validation", change_validation), ("formulas", "Formulas", change_formulas),
         ("hardware", "Hardware", change_hardware)]


@pytest.mark.parametrize("path,title,change", PAGES, ids=[t for _, t, _ in PAGES])
def test_page_in_browser(server, browser, artifacts, tmp_path, path, title, change):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    try:
        page.goto(f"{server}/{path}")
        settle(page)
        assert page.locator("h1").first.inner_text().strip() == title
        assert_clean(page, f"{title} (opened)")
        name = title.lower().replace(" & ", "_").replace(" ", "_")
        page.screenshot(path=str(artifacts / f"{name}_0_open.png"))
        change(page, tmp_path)
        settle(page)
        assert_clean(page, f"{title} (after a change)")
        page.screenshot(path=str(artifacts / f"{name}_1_changed.png"))
    finally:
        page.close()
