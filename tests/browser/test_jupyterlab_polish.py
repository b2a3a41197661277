"""The lab in Polish, in a real JupyterLab and a real browser: `labkit lab --language pl`
opens the Polish landing page, JupyterLab's own menus are Polish (the language pack of the
lab extras, selected through the run's settings overrides), and a Polish notebook's check
prints Polish feedback -- its kernel reads the notebook's metadata through the path
JupyterLab gives it (JPY_SESSION_NAME), even with LABKIT_LANG=en in its environment.

Needs Debian's chromium and ``jupyterlab-language-pack-pl-PL`` (in the lab extras): when
either is missing the test FAILS under CI and is skipped elsewhere, like the other
browser tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.testing.broker import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(400)]

UI_TIMEOUT_MS = 90_000
CHECK_CELL = (
    "from labkit import nb\n\n# jedno miasto zamiast czterech\nnb.check('00.1', ['Kraków'])"
)


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- CI must provide it", pytrace=False)
    pytest.skip(f"{reason}; CI runs this test")


def _polish_notebook() -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "id": "md", "metadata": {}, "source": "## Ćwiczenie 00.1"},
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "check",
                "metadata": {},
                "outputs": [],
                "source": CHECK_CELL,
            },
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "labkit": {"language": "pl"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture
def polish_lab(tmp_path: Path):
    """`labkit lab --language pl` on a copy of notebooks/ plus a small Polish notebook."""
    if importlib.util.find_spec("jupyterlab_language_pack_pl_PL") is None:
        _missing("jupyterlab-language-pack-pl-PL is not installed (pip install -e '.[lab]')")
    notebooks = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_*"))
    (notebooks / "pl" / "sprawdzenie.ipynb").write_text(json.dumps(_polish_notebook()))
    jupyter = tmp_path / "jupyter"
    quiet = jupyter / "settings" / "@jupyterlab" / "apputils-extension"
    quiet.mkdir(parents=True)  # no news pop-up over the notebook (docker/overrides.json's)
    (quiet / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false"})
    )
    env = dict(
        os.environ,
        LABKIT_LANG="en",  # the kernels' environment says English: the metadata must win
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "workspaces"),
        IPYTHONDIR=str(jupyter / "ipython"),
    )
    for name in ("LABKIT_GRADING", "JUPYTER_TOKEN", "JPY_SESSION_NAME"):
        env.pop(name, None)
    port, lab_port = free_port(), free_port()
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labkit",
                "lab",
                "--no-browser",
                "--language",
                "pl",
                "--port",
                str(port),
                "--lab-port",
                str(lab_port),
                "--data-dir",
                str(tmp_path / "data"),
                "--notebooks",
                str(notebooks),
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pattern = re.compile(rf"http://localhost:{lab_port}/\S+\?token=\w+")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            match = pattern.search(log_path.read_text(errors="replace"))
            if match or proc.poll() is not None:
                break
            time.sleep(0.25)
        assert match, log_path.read_text(errors="replace")[-4000:]
        yield match.group(0).replace("localhost", "127.0.0.1"), log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(60)


def test_the_polish_lab_speaks_polish(polish_lab, browser_context, tmp_path):
    url, log_path = polish_lab
    assert "/lab/tree/pl/README.ipynb?" in url  # the Polish series opens by default
    page = browser_context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page.goto(url)
        page.get_by_role("heading", name="Witaj w laboratorium labkit").first.wait_for()
        page.get_by_role("link", name="../README.ipynb").first.wait_for()  # the English series
        # JupyterLab's own menus come from the Polish language pack
        page.get_by_role("menuitem", name="Plik", exact=True).wait_for()
        page.get_by_role("menuitem", name="Uruchom", exact=True).wait_for()

        page.goto(url.replace("pl/README.ipynb", "pl/sprawdzenie.ipynb"))
        page.get_by_role("tab", name="sprawdzenie.ipynb").wait_for()
        page.locator(  # this notebook's kernel (the landing page's panel is hidden behind)
            ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle'] >> visible=true"
        ).first.wait_for()
        for _ in range(3):  # Uruchom > Uruchom wszystkie komórki (a click lost while settling)
            page.get_by_role("menuitem", name="Uruchom", exact=True).click()
            page.locator("li[data-command='runmenu:run-all']").click()
            try:
                page.locator(".jp-InputPrompt >> visible=true", has_text="[1]").first.wait_for(
                    timeout=20_000
                )
                break
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: try the menu again
                page.keyboard.press("Escape")
        page.get_by_text(
            "NIEZALICZONE 00.1 (0/1 pkt): brakuje: 3 miasta; zajrzyj do pola 'store' transakcji"
        ).first.wait_for()
        page.screenshot(path=str(tmp_path / "lab-polish.png"))
    except BaseException:
        page.screenshot(path=str(tmp_path / "failure.png"))
        print(log_path.read_text(errors="replace")[-4000:])
        raise
