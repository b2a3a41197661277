"""notebooks/demo_helpers.ipynb in a real JupyterLab, in headless chromium, on a real broker.

Opens the notebook, runs every cell through the menu (Run > Run All Cells), and checks
what a student would see: the check lines, the doctor's verdict, and live plots whose
pictures change while the data streams in. Screenshots go to ``$LABKIT_SCREENSHOTS``
(e.g. docs/img to refresh the README picture) or the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the browser_context fixture reports the missing package
    PlaywrightTimeout = TimeoutError

NOTEBOOK = "demo_helpers.ipynb"
RUN_TIMEOUT_MS = 180_000


def _screenshot_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("LABKIT_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def _open_notebook(page, lab) -> None:
    page.goto(lab.notebook_url(NOTEBOOK))
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=90_000)
    lab.wait_for_connected_kernel()


def _run_all(page) -> None:
    """Run > Run All Cells; again if no cell started (a click can race the kernel's start)."""
    started = page.locator(".jp-Cell .jp-InputArea-prompt").filter(
        has_text=re.compile(r"\[(\*|\d+)\]")
    )
    for _attempt in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator("li[data-command='runmenu:run-all']").click()
        try:
            started.first.wait_for(timeout=15_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError("Run All Cells did not start any cell")


def _frames_while_running(plot, page, until: re.Pattern, max_s: float = 90.0) -> list[bytes]:
    """Screenshots of one plot every 0.4 s until text matching ``until`` shows (or ``max_s``)."""
    frames = []
    deadline = time.monotonic() + max_s
    done = page.get_by_text(until)
    while time.monotonic() < deadline:
        frames.append(plot.screenshot())
        if done.count():
            break
        time.sleep(0.4)
    frames.append(plot.screenshot())
    return frames


def test_demo_notebook_runs_in_jupyterlab_and_plots_update(browser_context, jupyter_lab, tmp_path):
    shots = _screenshot_dir(tmp_path)
    page = browser_context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    _open_notebook(page, jupyter_lab)
    _run_all(page)

    # the check cells print their PASS lines
    page.get_by_text("PASS 00.1 (1/1 points)").wait_for()
    page.get_by_text("PASS 09.1 (1/1 points)").wait_for()
    assert page.get_by_text("all checks passed").count() == 1

    # the second live plot (line, fed by the consumer loop in its cell) changes in place
    plots = page.locator(".labkit-liveplot img")
    plots.nth(1).wait_for(state="visible")
    line_plot = plots.nth(1)
    line_plot.scroll_into_view_if_needed()
    frames = _frames_while_running(line_plot, page, re.compile(r"read \d+ transactions"))
    (shots / "liveplot-first.png").write_bytes(frames[0])
    (shots / "liveplot-last.png").write_bytes(frames[-1])
    assert len(set(frames)) >= 2, (
        f"the live plot never changed over {len(frames)} screenshots: "
        f"see {shots / 'liveplot-first.png'}"
    )

    page.get_by_text(re.compile(r"stopped: \d+ background helpers")).wait_for()
    assert page.locator(".labkit-liveplot").count() == 3
    assert page.locator(".labkit-dashboard").count() == 1
    assert (
        page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        .filter(has_text="Traceback")
        .count()
        == 0
    )
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()

    # a picture of the plots for the README
    plots.nth(1).scroll_into_view_if_needed()
    page.locator("#jp-main-dock-panel").screenshot(path=str(shots / "jupyterlab-demo.png"))
    assert (shots / "jupyterlab-demo.png").stat().st_size > 10_000
