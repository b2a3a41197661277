"""notebooks/README.ipynb, the page the lab opens on: it runs top to bottom against a
real broker, its doctor cell passes, and the dashboard cell shows the dashboard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from e2e_helpers import REPO, broker_answers, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LANDING = REPO / "notebooks" / "README.ipynb"


@pytest.fixture
def broker_address(tmp_path: Path):
    port = free_port()
    log_path = tmp_path / "broker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labkit",
                "broker",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: proc.poll() is not None or broker_answers(f"127.0.0.1:{port}", 500),
            30,
            what="the broker",
        )
        assert proc.poll() is None, log_path.read_text()
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def _outputs(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)


def test_landing_page_runs_against_the_broker(broker_address: str, monkeypatch):
    monkeypatch.setenv("LABKIT_BOOTSTRAP", broker_address)
    notebook = nbformat.read(LANDING, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the landing page without outputs"
    )
    nbclient.NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(LANDING.parent)}},
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    doctor = next(cell for cell in code if "nb.doctor()" in cell.source)
    assert "all checks passed" in _outputs(doctor)
    assert f"answers at {broker_address}" in _outputs(doctor)
    dashboard = next(cell for cell in code if "nb.dashboard()" in cell.source)
    assert f"Dashboard {broker_address}" in _outputs(dashboard)
    assert os.environ["LABKIT_BOOTSTRAP"] == broker_address
