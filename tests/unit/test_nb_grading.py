"""The pure parts of `labkit grade`: finding submissions, expected exercises, scoring log
records, nbval's failure report, the table and the gradebook CSV."""

import csv
import json
import os
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.course import exercises, grade_report, grading
from labkit.course.grade_report import table, write_csv
from labkit.course.grading import (
    ExerciseScore,
    NotebookGrade,
    _score,
    exercise_ids,
    find_submissions,
)
from labkit.course.nbval_output import cell_errors
from labkit.errors import IllegalArgumentError

COURSE = exercises.load()


def touch_notebook(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(), str(path))
    return path


def test_a_class_folder_holds_one_folder_per_student(tmp_path):
    subs = tmp_path / "subs"
    touch_notebook(subs / "anna" / "03_consumer.ipynb")
    touch_notebook(subs / "anna" / "10_fraud.ipynb")
    touch_notebook(subs / "bartek" / "part2" / "10_fraud.ipynb")
    touch_notebook(subs / "bartek" / ".ipynb_checkpoints" / "03_consumer-checkpoint.ipynb")
    (subs / "empty").mkdir()
    warnings = []
    found = find_submissions([subs], warn=warnings.append)
    assert [(s.student, s.path.name, s.assignment) for s in found] == [
        ("anna", "03_consumer.ipynb", "03_consumer.ipynb"),
        ("anna", "10_fraud.ipynb", "10_fraud.ipynb"),
        ("bartek", "10_fraud.ipynb", "part2/10_fraud.ipynb"),
    ]
    assert warnings == []


def test_nbgrader_submitted_layout(tmp_path):
    submitted = tmp_path / "submitted"
    touch_notebook(submitted / "anna" / "ps1" / "03_consumer.ipynb")
    touch_notebook(submitted / "bartek" / "ps1" / "03_consumer.ipynb")
    found = find_submissions([submitted])
    assert [(s.student, s.assignment) for s in found] == [
        ("anna", "ps1/03_consumer.ipynb"),
        ("bartek", "ps1/03_consumer.ipynb"),
    ]


def test_students_folders_name_the_student_not_each_notebook(tmp_path):
    # `labkit grade subs/anna subs/bartek`: each folder is one student (issue 18.5)
    for who in ("anna", "bartek"):
        for name in ("00_start_here.ipynb", "03_consumer.ipynb"):
            touch_notebook(tmp_path / "subs" / who / name)
    found = find_submissions([tmp_path / "subs" / "anna", tmp_path / "subs" / "bartek"])
    assert [(s.student, s.assignment) for s in found] == [
        ("anna", "00_start_here.ipynb"),
        ("anna", "03_consumer.ipynb"),
        ("bartek", "00_start_here.ipynb"),
        ("bartek", "03_consumer.ipynb"),
    ]


def test_a_notebook_file_belongs_to_the_folder_it_is_in(tmp_path):
    path = touch_notebook(tmp_path / "celina" / "03_consumer.ipynb")
    [found] = find_submissions([path])
    assert (found.student, found.assignment) == ("celina", "03_consumer.ipynb")


def test_anything_else_is_warned_about(tmp_path):
    subs = tmp_path / "subs"
    touch_notebook(subs / "anna" / "03_consumer.ipynb")
    loose = touch_notebook(subs / "03_consumer.ipynb")
    touch_notebook(tmp_path / "late" / "anna" / "10_fraud.ipynb")
    warnings = []
    found = find_submissions([subs, tmp_path / "late", subs / "anna"], warn=warnings.append)
    assert [(s.student, s.assignment) for s in found] == [
        ("anna", "03_consumer.ipynb"),
        ("anna", "10_fraud.ipynb"),
    ]
    assert warnings[0].startswith(f"skipped {loose}: a notebook directly in a class folder")
    assert "student 'anna' appears twice" in warnings[1]
    assert warnings[2].endswith("03_consumer.ipynb was given twice; it is graded once")
    assert len(warnings) == 3


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
        "F = failed, NA = not attempted, NR = the check never ran, "
        "M = missing (no notebook with this exercise handed in)",
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


def two_notebook_class():
    """anna hands in 00 and 10; bartek only 10 (his 00 is missing); celina fails 10.1."""

    def nb(student, name, scores):
        return NotebookGrade(
            student,
            f"subs/{student}/{name}",
            name,
            "ok",
            "",
            [
                ExerciseScore(ex, f"title {ex}", st, pts, most, msg)
                for ex, st, pts, most, msg in scores
            ],
        )

    passed = ("10.1", "PASS", 3, 3, "PASS 10.1 (3/3 points)")
    wrong = ("10.1", "FAIL", 0, 3, "FAIL 10.1 (0/3 points): amount exactly 3000.00 is not > 3000")
    return [
        nb("anna", "00.ipynb", [("00.1", "PASS", 1, 1, "PASS 00.1 (1/1 points)")]),
        nb("anna", "10.ipynb", [passed]),
        nb("bartek", "10.ipynb", [wrong]),
        nb("celina", "00.ipynb", [("00.1", "PASS", 1, 1, "PASS 00.1 (1/1 points)")]),
        nb("celina", "10.ipynb", [wrong]),
    ]


def test_a_missing_notebook_costs_its_points_instead_of_shrinking_the_maximum(tmp_path):
    lines = table(two_notebook_class()).splitlines()
    assert lines[:4] == [
        "student  00.1   10.1   total",
        "anna     1/1    3/3    4/4",
        "bartek   0/1 M  0/3 F  0/4",
        "celina   1/1    0/3 F  1/4",
    ]
    write_csv(two_notebook_class(), tmp_path / "g.csv")
    with open(tmp_path / "g.csv", encoding="utf-8") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert (rows["bartek"]["00.1"], rows["bartek"]["max_total"]) == ("0", "4")
    grade_report.write_json(two_notebook_class(), tmp_path / "g.json")
    students = json.loads((tmp_path / "g.json").read_text(encoding="utf-8"))["students"]
    assert students["bartek"] == {"points": 0, "max_points": 4, "missing": ["00.1"]}


def test_the_class_report_gives_pass_rates_frequent_hints_and_students():
    summary = {e["exercise"]: e for e in grade_report.exercise_summary(two_notebook_class())}
    assert (summary["10.1"]["passed"], summary["10.1"]["students"]) == (1, 3)
    assert summary["10.1"]["top_hints"] == [("amount exactly 3000.00 is not > 3000", 2)]
    assert summary["00.1"]["status"] == {"PASS": 2, "MISSING": 1}
    page = grade_report.class_report(two_notebook_class())
    assert "33%" in page
    assert "67%" in page
    assert "amount exactly 3000.00 is not &gt; 3000 <b>(2&times;)</b>" in page
    assert "<td>bartek</td><td>0/4</td>" in page
    assert page.count("<tr><td>") == 2 + 3  # two exercises, three students
