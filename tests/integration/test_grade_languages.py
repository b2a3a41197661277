"""`labkit grade` across languages: a Polish and an English submission of the same notebook
get the same statuses and points, each student's hints come in their notebook's language
(its metadata, passed to the kernel as LABKIT_LANG), and the score table is in the
instructor's language (`--language`), whatever the students wrote in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CITIES = '["Gdańsk", "Kraków", "Warszawa", "Wrocław"]'


def submission(language: str | None) -> nbformat.NotebookNode:
    """Notebook 00's two exercises: 00.1 right, 00.2 wrong (a number, not the transaction)."""
    polish = language == "pl"
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if language:
        nb.metadata["labkit"] = {"language": language}
    nb.cells = [
        new_markdown_cell("## Ćwiczenie 00.1" if polish else "## Exercise 00.1"),
        new_code_cell(
            ("# miasta sieci sklepów\n" if polish else "# the shop network's cities\n")
            + f"from labkit import nb\nnb.check('00.1', {CITIES})"
        ),
        new_code_cell(
            ("# największa transakcja\n" if polish else "# the biggest transaction\n")
            + "def biggest(txs):\n    return max(tx['amount'] for tx in txs)\n"
            + "nb.check('00.2', biggest)"
        ),
    ]
    return nb


def test_a_polish_and_an_english_submission_grade_the_same(tmp_path):
    for student, language in (("anna", "pl"), ("ben", None)):
        folder = tmp_path / "submitted" / student
        folder.mkdir(parents=True)
        nbformat.write(submission(language), str(folder / "00_start_here.ipynb"))
    detail = tmp_path / "grades.json"
    instructor = tmp_path / "grading.ipynb"
    nbformat.write(submission("en"), str(instructor))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit",
            "grade",
            str(tmp_path / "submitted"),
            "--fresh-broker",
            "--language",
            "pl",
            "--json",
            str(detail),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # the instructor grades from a notebook of their own (`!labkit grade ...`): its
        # path must not reach the students' kernels
        env={**os.environ, "LABKIT_LANG": "en", "JPY_SESSION_NAME": str(instructor)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    notebooks = {g["student"]: g for g in json.loads(detail.read_text())["notebooks"]}
    scores = {
        student: [
            (e["exercise"], e["status"], e["points"], e["max_points"]) for e in g["exercises"]
        ]
        for student, g in notebooks.items()
    }
    assert scores["anna"] == scores["ben"] == [("00.1", "PASS", 1, 1), ("00.2", "FAIL", 0, 1)]
    hints = {student: g["exercises"][1]["message"] for student, g in notebooks.items()}
    assert hints["anna"].startswith("NIEZALICZONE 00.2 (0/1 pkt): zwrócono liczbę")
    assert hints["ben"].startswith("FAIL 00.2 (0/1 points): you returned the number")
    header = done.stdout.splitlines()[0].split()
    assert header == ["student", "00.1", "00.2", "suma"]  # the instructor asked for Polish
    assert "F = niezaliczone" in done.stdout
