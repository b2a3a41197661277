"""What a student sees: the URL `labkit lab` prints, opened in a real (headless) chromium.

It lands on README.ipynb; Run All shows the doctor's verdict and the dashboard; a
JupyterLab terminal runs the console tools against the broker. Screenshots go to
``$LABKIT_SCREENSHOTS`` (``LABKIT_SCREENSHOTS=docs/img`` refreshes the README's
pictures) or the test's temporary folder. Chromium is Debian's (never downloaded):
missing, the test FAILS under CI and is skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from e2e_helpers import REPO, free_port, lab_argv, processes_mentioning, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(400)]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
UI_TIMEOUT_MS = 60_000


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- CI must provide it (.ci/run installs chromium)", pytrace=False)
    pytest.skip(reason)


def _chromium() -> str:
    for candidate in (
        os.environ.get("LABKIT_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _missing("chromium is not installed (apt-get install chromium)")


@pytest.fixture
def lab(tmp_path: Path):
    """`labkit lab` on free ports, on a copy of notebooks/, with its own Jupyter dirs."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_*"))
    settings = tmp_path / "jupyter" / "settings"
    quiet = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    quiet.parent.mkdir(parents=True)
    quiet.write_text(json.dumps({"checkForUpdates": False, "fetchNews": "false"}))
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter" / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter" / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "jupyter" / "workspaces"),
        IPYTHONDIR=str(tmp_path / "jupyter" / "ipython"),
        SHELL="/bin/bash",
    )
    env.pop("LABKIT_GRADING", None)
    env.pop("JUPYTER_TOKEN", None)  # labkit lab makes a random one and prints it
    port, lab_port = free_port(), free_port()
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            lab_argv(port, lab_port, tmp_path / "data", notebooks),
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        pattern = re.compile(rf"http://localhost:{lab_port}/\S+\?token=\w+")
        match = wait_until(
            lambda: proc.poll() is None and pattern.search(log_path.read_text()),
            120,
            what="the URL in labkit lab's output",
        )
        yield match.group(0), f"localhost:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(60)
        wait_until(lambda: not processes_mentioning(str(tmp_path)), 15, what="the lab to stop")


def test_student_opens_the_printed_url(lab, tmp_path: Path):
    url, bootstrap = lab
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package 'playwright' is not installed (pip install -e '.[test]')")
    shots = Path(os.environ.get("LABKIT_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=_chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(url.replace("localhost", "127.0.0.1"))
            # The landing page opens by itself, with a kernel.
            page.get_by_role("tab", name="README.ipynb").wait_for()
            page.wait_for_selector(
                ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']"
            )
            page.get_by_role("heading", name="Welcome to the labkit lab").first.wait_for()
            page.screenshot(path=str(shots / "lab-start.png"))

            _run_all(page)
            page.get_by_text("all checks passed").first.wait_for()
            page.get_by_text(f"answers at {bootstrap}").first.wait_for()
            page.screenshot(path=str(shots / "lab-doctor.png"))

            # A terminal: the console tools are on PATH and LABKIT_BOOTSTRAP is set.
            page.get_by_role("menuitem", name="File", exact=True).click()
            page.locator(".lm-Menu").get_by_text("New Launcher", exact=True).click()
            page.locator(".jp-LauncherCard", has_text="Terminal").first.click()
            terminal = page.locator(".jp-Terminal").first
            terminal.wait_for()
            page.wait_for_timeout(1500)  # the shell prompt
            terminal.click()
            page.keyboard.type(
                "labkit topics --create --topic from-the-terminal "
                "--bootstrap-server $LABKIT_BOOTSTRAP\n"
            )
            wait_until(
                lambda: _topic_exists(bootstrap, "from-the-terminal"),
                60,
                what="the topic created from the JupyterLab terminal",
            )
            page.keyboard.type("kafka-topics.sh --list --bootstrap-server $LABKIT_BOOTSTRAP\n")
            page.wait_for_timeout(2000)
            page.screenshot(path=str(shots / "lab-terminal.png"))
        except BaseException:  # pytest.fail too: keep a picture of the page
            page.screenshot(path=str(shots / "failure.png"))
            raise
        finally:
            context.close()


def _run_all(page) -> None:
    """Run > Run All Cells; again if the click was lost while the page was settling."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # optional: lazy

    for _ in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator("li[data-command='runmenu:run-all']").click()
        try:
            page.locator(".jp-InputPrompt", has_text="[1]").first.wait_for(timeout=15_000)
            return
        except PlaywrightTimeout:  # the click was lost: try the menu again
            page.keyboard.press("Escape")
    pytest.fail("Run > Run All Cells did not start the notebook", pytrace=False)


def _topic_exists(bootstrap: str, topic: str) -> bool:
    from labkit import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        return topic in admin.list_topics()
    finally:
        admin.close()
