"""notebooks/README.ipynb and notebooks/pl/README.ipynb, the pages the lab opens on (English,
Polish): each runs top to bottom against a real broker, its doctor cell passes and speaks
the page's language, the dashboard cell shows the dashboard, and each links to the other."""

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
# page, its language, what its doctor says when all is well, the link to the other language
LANDINGS = [
    (LANDING, "en", ["all checks passed", "answers at"], "pl/README.ipynb"),
    (
        REPO / "notebooks" / "pl" / "README.ipynb",
        "pl",
        ["wszystkie sprawdzenia zaliczone", "odpowiada pod"],
        "../README.ipynb",
    ),
]


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


@pytest.mark.parametrize(("landing", "language", "verdict", "other"), LANDINGS)
def test_landing_page_runs_against_the_broker(
    broker_address: str, monkeypatch, landing, language, verdict, other
):
    monkeypatch.setenv("LABKIT_BOOTSTRAP", broker_address)
    notebook = nbformat.read(landing, as_version=4)
    assert notebook.metadata["labkit"] == {"language": language}
    assert f"]({other})" in notebook.cells[0].source  # a visible link to the other series
    # nbclient's kernel is not JupyterLab's: it gets the language as `labkit grade` does
    monkeypatch.setenv("LABKIT_LANG", language)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the landing page without outputs"
    )
    nbclient.NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(landing.parent)}},
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    doctor = next(cell for cell in code if "nb.doctor()" in cell.source)
    assert verdict[0] in _outputs(doctor)
    assert f"{verdict[1]} {broker_address}" in _outputs(doctor)
    dashboard = next(cell for cell in code if "nb.dashboard()" in cell.source)
    assert f"Dashboard {broker_address}" in _outputs(dashboard)
    assert os.environ["LABKIT_BOOTSTRAP"] == broker_address
