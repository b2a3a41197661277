"""The course's lab without Docker: `labkit kafka-bin` makes ~/kafka/bin, and the
course-style scripts of examples/course/ run with kafka-python against a real labkit
broker process, unchanged but for the port (tests/integration/course_lab.py does the
lab; the Docker lab runs the same in tests/e2e/test_docker_compose.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COURSE_LAB = Path(__file__).with_name("course_lab.py")


def test_course_lab_runs_as_printed(broker, tmp_path):
    home = tmp_path / "home"
    made = subprocess.run(
        [str(BIN / "labkit"), "kafka-bin", str(home / "kafka" / "bin")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made
    result = subprocess.run(
        [
            *(sys.executable, str(COURSE_LAB), "--server", f"localhost:{broker.port}"),
            *("--scripts", str(REPO / "examples" / "course"), "--home", str(home)),
            *("--work", str(tmp_path / "work")),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "LABKIT_BOOTSTRAP"},
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{broker.output()}"
    print(result.stdout)  # each step's time
    assert "COURSE-LAB-OK" in result.stdout
