"""Fixtures for the browser tests: Debian's chromium driven by Playwright, and a real
JupyterLab server on a free port serving a temporary copy of the notebooks.

Never downloads a browser: Playwright launches the system chromium
(``$LABKIT_CHROMIUM``, else ``chromium`` on PATH, else /usr/bin/chromium). When it is
missing the tests FAIL under CI (``$CI`` set: CI installs chromium) and are skipped
with the reason elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from labkit.testing.broker import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
LAB_START_TIMEOUT_S = 90.0


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} -- CI must provide it (.ci/run installs chromium with apt)")
    pytest.skip(f"{reason}; CI runs this test")


def chromium_path() -> str | None:
    """``$LABKIT_CHROMIUM`` when set (and only it), else chromium on PATH or /usr/bin."""
    chosen = os.environ.get("LABKIT_CHROMIUM")
    candidates = [chosen] if chosen else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def browser_context(tmp_path):
    """A Playwright browser context on system chromium with a fresh profile."""
    exe = chromium_path()
    if exe is None:
        _missing("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package 'playwright' is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=exe,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1400},
        )
        try:
            yield context
        finally:
            context.close()


class JupyterLab:
    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root = root
        self.port = port
        self.token = token
        self.proc = proc
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def api(self, path: str):
        with urllib.request.urlopen(f"{self.url}/api/{path}?token={self.token}", timeout=5) as r:
            return json.loads(r.read())

    def wait_for_connected_kernel(self, timeout_s: float = 90.0) -> None:
        """Until a kernel runs, is idle, and a browser tab holds a websocket to it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            kernels = self.api("kernels")
            if any(
                k.get("connections", 0) >= 1 and k.get("execution_state") == "idle" for k in kernels
            ):
                return
            time.sleep(0.3)
        raise TimeoutError(f"no kernel connected within {timeout_s:.0f} s:\n{self.output()}")


def _wait_until_up(lab: JupyterLab) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {lab.proc.returncode}:\n{lab.output()}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"jupyter lab did not answer within {LAB_START_TIMEOUT_S:.0f} s:\n{lab.output()}"
    )


def _quiet_settings(settings_dir: Path) -> None:
    """No news/update pop-ups over the notebook (as docker/overrides.json does)."""
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"checkForUpdates": False, "fetchNews": "false"}))


@pytest.fixture
def jupyter_lab(tmp_path, shared_broker):
    """JupyterLab on a free port, serving a copy of notebooks/, kernels pointed at the broker."""
    root = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", root)
    home = tmp_path / "home"
    for sub in ("config", "runtime", "settings", "workspaces", "ipython"):
        (home / sub).mkdir(parents=True)
    _quiet_settings(home / "settings")
    port = free_port()
    token = uuid.uuid4().hex
    env = dict(
        os.environ,
        LABKIT_BOOTSTRAP=shared_broker.bootstrap,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("LABKIT_GRADING", None)
    log = tmp_path / "jupyter-lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.news_url=",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI and containers run as root
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    lab = JupyterLab(root, port, token, proc, log)
    try:
        _wait_until_up(lab)
        yield lab
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
