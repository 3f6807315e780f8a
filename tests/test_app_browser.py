"""Every app page in a real browser: headless Chromium (the system package) driven by Playwright.

Starts the app with ``workbench.commands.app.launch`` (what ``workbench app`` runs) on
a tiny generated runs root, visits each page through the sidebar, checks that it
rendered its title, its charts and no exception, and saves a full-page screenshot
under the test's temporary folder (or ``$RESID_SCREENSHOTS`` when set).

Needs ``apt-get install -y chromium`` and ``pip install playwright``; skipped otherwise.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _runfixture import build_runs_root
from workbench.commands.app import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install -y chromium)")

REPO = Path(__file__).resolve().parents[1]
#: url path -> page title
PAGES = {
    "": "Runs",
    "sid_tree": "SID tree",
    "code_quality": "Prefix entropy & code quality",
    "embeddings": "Embeddings",
    "attention": "FAMAE attention",
    "proxy_metrics": "Proxy metrics",
    "ablations": "Ablations",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("browser")
    runs = build_runs_root(folder)
    port = free_port(8600)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    launch = f"from workbench.commands.app import launch; launch({str(runs)!r}, {port}, headless=True)"
    log = folder / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", launch], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start:\n{log.read_text()}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    """One browser tab on the app; tests move between pages with the sidebar, as a user does."""
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        tab = chromium.new_page(viewport={"width": 1400, "height": 900})
        tab.goto(f"{server}/sid_tree", wait_until="domcontentloaded")  # a page opened by its URL first
        yield tab
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ["RESID_SCREENSHOTS"]) if os.environ.get("RESID_SCREENSHOTS") else \
        tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_rendered(page, title: str, timeout_s: float = 150.0) -> None:
    """Wait until the page shows ``title``, its script run has finished and every plotly chart has drawn."""
    page.wait_for_function("title => document.querySelector('h1')?.innerText.trim() === title", arg=title,
                           timeout=timeout_s * 1000)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_s * 1000)
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                 .every(chart => chart.querySelector('.main-svg'))""", timeout=timeout_s * 1000)
    page.wait_for_timeout(800)


def screenshot(page, target: Path) -> None:
    """The whole page: Streamlit scrolls an inner container, so grow the viewport to its height first."""
    height = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]') || document.body;
        return Math.max(main.scrollHeight, document.body.scrollHeight);
    }""")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 12_000)})
    page.wait_for_timeout(600)
    page.screenshot(path=str(target), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})


@pytest.mark.parametrize("path, title", list(PAGES.items()), ids=[p or "runs" for p in PAGES])
def test_page_renders_in_chromium(page, shots, path, title):
    page.locator('[data-testid="stSidebarNavLink"]', has=page.get_by_text(title, exact=True)).click()
    wait_rendered(page, title)
    target = shots / f"{path or 'runs'}.png"
    screenshot(page, target)
    assert target.stat().st_size > 10_000
    assert page.url.rstrip("/").endswith(path) or not path
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    nav = page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
    assert [text.split("\n")[-1] for text in nav] == list(PAGES.values())
