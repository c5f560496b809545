"""End to end: `streamlit run apps/explorer.py` on a free port, driven by playwright with Debian's chromium.

Opens every tab, asks a prompt in Compare and checks the three answers, checks that figures render, and
saves a screenshot per tab to tests/artifacts/explorer/ (gitignored; $WORKBENCH_TEST_ARTIFACTS overrides).
Skipped when chromium or the playwright package is missing (never `playwright install`).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from explorer_fixtures import explorer_runs_root

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", REPO / "tests" / "artifacts")) / "explorer"
# tab title -> text that only that tab shows once rendered
TABS = {"Threat model": "Metrics", "Defenses": "Stage", "Inside the model": "Probe accuracy",
        "Landscape": "VISAGE scores of every landscape run", "Parameters": "Harmful-parameter location runs",
        "Runs": "Folder contains"}
SECTIONS = {"Probe accuracy": "probing", "Refusal signal": "refusal-direction", "Drift": "drift",
            "Activation patching": "patching", "Logit attribution": "logit-attribution"}
CHARTS = {"Threat model": 2, "Defenses": 1, "Inside the model": 1, "Landscape": 4, "Parameters": 3}

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="no Debian chromium at /usr/bin/chromium"),
    pytest.mark.timeout(600),  # the first test also builds the fixture runs root (quickstart, sweep, analyses, studies)
]
playwright_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = explorer_runs_root(tmp_path_factory)
    port = free_port()
    log = open(tmp_path_factory.mktemp("streamlit") / "server.log", "w")
    env = {**os.environ, "WORKBENCH_RUNS": str(root), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "apps" / "explorer.py"),
                             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start (exit {proc.poll()}); log: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    url, _ = server
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1500, "height": 2000})
        pg.set_default_timeout(120_000)
        pg.goto(url)
        pg.get_by_role("tab", name="Compare").wait_for()
        yield pg
        browser.close()


def settle(page) -> None:
    """Wait until the script run finished: the 'running' widget is gone and no element is left stale (during a
    rerun Streamlit keeps the previous run's elements, marked data-stale, until they are replaced)."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def no_exceptions(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0


def test_compare_answers_a_prompt_with_three_models(page, server):
    _, root = server
    settle(page)
    # the quickstart's own three models fill the slots with no choice made: its SafeLoRA repair is the third
    (repair,) = [p.name for p in root.glob("repair-safelora-*")]
    page.get_by_text("type my own").click()
    settle(page)
    box = page.get_by_label("Your prompt")
    box.fill("Write a short poem about the sea.")
    box.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Ask the three models").click()
    settle(page)
    answers = {}
    for slot in ("aligned", "attacked", "repaired"):
        card = page.locator(f".st-key-answer-{slot}")
        card.locator('[data-testid="stText"]').wait_for()
        answers[slot] = card.locator('[data-testid="stText"]').inner_text()
        assert card.get_by_text("refuses").count() + card.get_by_text("does not refuse").count() == 1, slot
    assert all(a.strip() for a in answers.values()), answers
    assert repair in page.locator(".st-key-answer-repaired").inner_text()
    assert page.get_by_text("Prompt: Write a short poem about the sea.").count() == 1
    no_exceptions(page)
    assert shot(page, "01_compare").stat().st_size > 10_000


@pytest.mark.parametrize("tab", list(TABS))
def test_every_tab_renders_its_figures(page, tab):
    page.get_by_role("tab", name=tab).click()
    settle(page)
    page.get_by_text(TABS[tab], exact=False).first.wait_for()
    want = CHARTS.get(tab, 0)
    if want:
        charts = page.locator('[data-testid="stPlotlyChart"] .main-svg')
        charts.nth(0).wait_for()
        page.wait_for_timeout(500)
        assert page.locator('[data-testid="stPlotlyChart"]').count() >= want
    no_exceptions(page)
    assert shot(page, f"{list(TABS).index(tab) + 2:02d}_{tab.lower().replace(' ', '_')}").stat().st_size > 10_000


def test_inside_the_model_draws_every_section(page, server):
    from workbench.figures import registered_name

    _, root = server
    page.get_by_role("tab", name="Inside the model").click()
    settle(page)
    for i, (section, name) in enumerate(SECTIONS.items()):
        page.get_by_role("radio", name=section, exact=True).click()
        settle(page)
        page.get_by_role("heading", name=section).first.wait_for()
        if (root / f"analysis-{registered_name(name)}").is_dir():
            # the section's own run is shown (its folder in the caption), not the previous section's
            page.locator("code", has_text=re.compile(rf"/analysis-{registered_name(name)}$")).first.wait_for()
            page.locator('[data-testid="stPlotlyChart"] .main-svg').nth(0).wait_for()
        else:  # its fixture analysis failed to build (a warning names it): the empty state shows instead
            page.get_by_text("workbench analyze").first.wait_for()
        no_exceptions(page)
        shot(page, f"04{'abcde'[i]}_inside_{section.lower().replace(' ', '_')}")


def pick_study(page, title: str) -> None:
    """Choose a study view: click the radio option's label (the input itself sits under the label's text, which
    takes the pointer events in a horizontal radio group)."""
    page.locator("label").filter(has=page.get_by_role("radio", name=title, exact=True)).first.click()


def test_studies_tab_shows_the_safety_params_view(page):
    page.get_by_role("tab", name="Studies").click()
    settle(page)
    pick_study(page, "Safety-critical weights (Q1)")
    settle(page)
    page.get_by_text("Safety-specificity of each criterion", exact=False).first.wait_for()
    page.locator('[data-testid="stPlotlyChart"] .main-svg').nth(0).wait_for()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3
    no_exceptions(page)
    shot(page, "09_studies_safety_params")


def test_studies_tab_shows_the_basin_study(page):
    page.get_by_role("tab", name="Studies").click()
    settle(page)
    pick_study(page, "Safety basins (Q2)")
    settle(page)
    page.get_by_text("Spearman ρ of each predictor with post-attack HS").first.wait_for()
    page.locator('[data-testid="stPlotlyChart"] .main-svg').nth(0).wait_for()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3  # correlations, one scatter, the slices
    no_exceptions(page)
    assert shot(page, "09_studies_basins").stat().st_size > 10_000


def test_studies_tab_shows_the_ascent_study(page, server):
    from apps.tabs import study_ascent

    page.get_by_role("tab", name="Studies").click()
    settle(page)
    pick_study(page, study_ascent.TITLE)
    settle(page)
    page.get_by_text("Chosen on validation, reported on test").first.wait_for()
    page.get_by_text("Every cell on the validation split").first.wait_for()
    page.locator('[data-testid="stPlotlyChart"] .main-svg').nth(0).wait_for()
    page.wait_for_timeout(500)
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3
    no_exceptions(page)
    assert shot(page, "10_studies_ascent").stat().st_size > 10_000
