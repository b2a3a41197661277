"""The pure parts of `labkit grade`: finding submissions, expected exercises, scoring log
records, nbval's failure report, the table and the gradebook CSV."""

import csv
import os
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.course import exercises, grading
from labkit.course.grading import (
    ExerciseScore,
    NotebookGrade,
    _score,
    cell_errors,
    exercise_ids,
    find_submissions,
    table,
    write_csv,
)
from labkit.errors import IllegalArgumentError

COURSE = exercises.load()


def touch_notebook(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(), str(path))
    return path


def test_students_are_file_stems_or_folder_names(tmp_path):
    subs = tmp_path / "subs"
    touch_notebook(subs / "anna.ipynb")
    touch_notebook(subs / "bartek" / "03_consumer.ipynb")
    touch_notebook(subs / "bartek" / "part2" / "10_fraud.ipynb")
    touch_notebook(subs / "bartek" / ".ipynb_checkpoints" / "03_consumer-checkpoint.ipynb")
    single = touch_notebook(tmp_path / "celina.ipynb")
    found = find_submissions([subs, single])
    assert [(s.student, s.path.name, s.assignment) for s in found] == [
        ("anna", "anna.ipynb", ""),
        ("bartek", "03_consumer.ipynb", "03_consumer.ipynb"),
        ("bartek", "10_fraud.ipynb", "part2/10_fraud.ipynb"),
        ("celina", "celina.ipynb", ""),
    ]


def test_no_notebooks_is_an_error(tmp_path):
    with pytest.raises(IllegalArgumentError, match="no notebooks"):
        find_submissions([tmp_path])
    with pytest.raises(IllegalArgumentError, match="neither a notebook"):
        find_submissions([tmp_path / "missing.txt"])


def test_exercise_ids_come_from_check_calls_in_code_cells():
    nb = new_notebook(
        cells=[
            new_markdown_cell('nb.check("99.9", x) in text does not count'),
            new_code_cell('nb.check("03.1", format_alert)\ncheck( "03.2", lines, sent=sent)'),
            new_code_cell("nb.check('03.1', again)"),
        ]
    )
    assert exercise_ids(nb) == ["03.1", "03.2"]


def test_the_last_record_of_an_exercise_counts():
    records = [
        {
            "exercise": "10.1",
            "status": "FAIL",
            "points": 0,
            "max_points": 3,
            "message": "FAIL 10.1",
        },
        {
            "exercise": "10.1",
            "status": "PASS",
            "points": 3,
            "max_points": 3,
            "message": "PASS 10.1",
        },
    ]
    assert _score(COURSE, "10.1", records).points == 3
    assert _score(COURSE, "10.1", records[::-1]).status == "FAIL"
    missing = _score(COURSE, "03.1", records, "NameError: name 'producer' is not defined")
    assert (missing.status, missing.points, missing.max_points) == ("NOT RUN", 0, 2)
    assert missing.message.endswith(
        "the cell stopped before nb.check: NameError: name 'producer' is not defined"
    )


def test_points_never_exceed_the_registered_maximum():
    forged = [{"exercise": "00.1", "status": "PASS", "points": 50, "max_points": 50}]
    assert (_score(COURSE, "00.1", forged).points, _score(COURSE, "00.1", forged).max_points) == (
        1,
        1,
    )


NBVAL_REPORT = """\
FF.                                                                      [100%]
=================================== FAILURES ===================================
__________________________ demo.ipynb::Cell 1 __________________________
Notebook cell execution failed
Cell 1: Cell execution caused an exception

Input:
nb.check("02.1", metadata, topic=TOPIC)

Traceback:
\x1b[31mNameError\x1b[39m: name 'metadata' is not defined

__________________________ demo.ipynb::Cell 2 __________________________
Notebook cell execution failed
Cell 2: Timeout of 6 seconds exceeded executing cell

Input:
while True: pass

Traceback:
KeyboardInterrupt:

=========================== short test summary info ============================
FAILED demo.ipynb::Cell 1 - Notebook cell execution failed
"""


def test_cell_errors_reads_nbvals_report():
    assert cell_errors(NBVAL_REPORT) == {
        1: "NameError: name 'metadata' is not defined",
        2: "Timeout of 6 seconds exceeded executing cell",
    }
    assert cell_errors("..") == {}


def grades():
    def nb(student, statuses, status="errors", detail=""):
        points = {"00.1": 1, "10.1": 3}
        return NotebookGrade(
            student,
            f"subs/{student}.ipynb",
            "",
            status,
            detail,
            [
                ExerciseScore(ex, "", st, points[ex] if st == "PASS" else 0, points[ex])
                for ex, st in zip(points, statuses, strict=True)
            ],
        )

    return [
        nb("anna", ["PASS", "PASS"], "ok"),
        nb("bartek", ["PASS", "FAIL"]),
        nb("celina", ["NOT RUN", "NOT ATTEMPTED"], "timeout", "stopped after 60 s"),
    ]


def test_table_has_one_row_per_student_and_notes():
    assert table(grades()).splitlines() == [
        "student  00.1    10.1    total",
        "anna     1/1     3/3     4/4",
        "bartek   1/1     0/3 F   1/4",
        "celina   0/1 NR  0/3 NA  0/4",
        "",
        "F = failed, NA = not attempted, NR = the check never ran",
        "celina: celina.ipynb: timeout: stopped after 60 s",
    ]


def test_gradebook_csv(tmp_path):
    write_csv(grades(), tmp_path / "g.csv")
    with open(tmp_path / "g.csv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["student", "00.1", "10.1", "total", "max_total"],
        ["anna", "1", "3", "4", "4"],
        ["bartek", "1", "0", "1", "4"],
        ["celina", "0", "0", "0", "4"],
    ]


def test_children_get_the_venv_bin_first_on_path_once():
    bin_dir = os.path.dirname(sys.executable)
    env = grading.child_env({"PATH": os.pathsep.join(["/usr/bin", bin_dir, "/bin"])}, X="1")
    assert env["PATH"].split(os.pathsep) == [bin_dir, "/usr/bin", "/bin"]
    assert env["X"] == "1"
    assert grading.child_env({})["PATH"] == bin_dir
