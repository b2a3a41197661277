"""benchmarks/classroom.py end to end: 2 students for a few seconds against a real broker.

The harness starts its own broker process, the student processes (the probe alone,
the other student in a process of its own), an idle consumer and console-consumer
subprocesses, all on loopback; this checks that the report it writes has a value in
every column and that every acknowledged record reached every consumer group.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402


def test_two_students_for_a_few_seconds_lose_nothing_and_fill_every_column(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "classroom.py"),
            "--sizes",
            "2",
            "--ramp-s",
            "4",
            "--window-s",
            "6",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=str(ROOT),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "RESULTS.md").exists()  # no results.json there: left alone
    data = json.loads((tmp_path / "classroom.json").read_text())
    [row] = data["rows"]

    assert row["students"] == 2
    assert row["consumers"] == 4
    assert row["processes"] == 2
    assert row["errors"] == {}, row["errors"]
    assert row["produced"] >= 2 * 6  # about one record a second per student
    assert row["delivered"] > 0
    assert (row["lost"], row["duplicates"], row["unread"]) == (0, 0, 0), row["lost_examples"]
    assert row["broker_peak_rss_mb"] > 0

    lines = report.classroom_table(data["rows"], data["meta"]["machine"]["cpus"])
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert len(cells) == len(header) == 12
    empty = [name for name, cell in zip(header, cells, strict=True) if "—" in cell]
    assert not empty, f"columns without a value: {empty}\n{lines}"
    assert "## Classroom" in done.stdout
