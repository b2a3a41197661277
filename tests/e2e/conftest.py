"""Fixtures for the end-to-end tests: a Docker engine, free ports, process checks.

The engine comes from ``<repo>/../shared/tools/docker-engine.sh up`` when that script
is there and we are root (CI and the team's machines); otherwise an engine that is
already running is used. With no engine the docker tests FAIL when ``$CI`` is set
(CI must never skip them silently) and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = REPO.parent / "shared" / "tools" / "docker-engine.sh"


def _no_engine(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI needs a Docker engine for this test: {reason}", pytrace=False)
    pytest.skip(f"no Docker engine: {reason}")


def _engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine (started with the team's script when possible)."""
    if _engine_running():
        return
    if ENGINE_SCRIPT.is_file() and os.geteuid() == 0:
        result = subprocess.run(
            ["bash", str(ENGINE_SCRIPT), "up"], capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            _no_engine(f"{ENGINE_SCRIPT} up failed:\n{result.stdout}\n{result.stderr}")
        if _engine_running():
            return
        _no_engine(f"{ENGINE_SCRIPT} up ran but `docker info` still fails")
    _no_engine(
        "`docker info` fails (start Docker Desktop, or `sudo systemctl start docker`)"
        + ("" if ENGINE_SCRIPT.is_file() else f"; {ENGINE_SCRIPT} is not there")
    )
