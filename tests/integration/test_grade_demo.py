"""`labkit grade` end to end on a mock class (a folder per student): the demo master, its
student version, a wrong answer, a hanging notebook and a student who handed in another
notebook only, graded two at a time in one run, each against its own real broker process."""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from labkit.course import grading
from labkit.course.authoring import student_notebook

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "instructor" / "examples" / "demo_grading.ipynb"
FULL = {"00.1": 1, "02.1": 2, "03.1": 2, "10.1": 3}


def demo():
    return nbformat.read(str(DEMO), as_version=4)


def replace_in_cell(nb, cell_id, old, new):
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    assert old in cell.source
    cell.source = cell.source.replace(old, new)
    return nb


def write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    master = demo()
    name = DEMO.name
    write(folder / "solution" / name, master)
    write(folder / "student" / name, student_notebook(master, DEMO.name))
    write(
        folder / "wrong" / name,
        replace_in_cell(master, "ex-10-1", 'tx["amount"] > 3000', 'tx["amount"] >= 3000'),
    )
    hang = replace_in_cell(
        master,
        "ex-03-1",
        'if tx["amount"] > 3000:',
        'import time\n    while True:\n        time.sleep(0.1)\n    if tx["amount"] > 3000:',
    )
    write(folder / "hang" / name, hang)
    # ewa handed in a different notebook only: the demo's exercises count 0 for her
    intro = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from labkit import nb"),
            nbformat.v4.new_code_cell(
                'nb.check("00.1", ["Warszawa", "Kraków", "Gdańsk", "Wrocław"])'
            ),
        ]
    )
    write(folder / "ewa" / "intro.ipynb", intro)
    out = tmp_path_factory.mktemp("out")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("LABKIT_GRADING", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit",
            "grade",
            str(folder),
            "--fresh-broker",
            "--jobs",
            "2",
            "--timeout-per-cell",
            "6",
            "--report",
            str(out / "class.html"),
            "--csv",
            str(out / "grades.csv"),
            "--json",
            str(out / "grades.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "grades.json").read_text(encoding="utf-8"))
    by_student = {nb["student"]: nb for nb in data["notebooks"] if nb["assignment"] == name}
    return result, by_student, out


def scores(notebook):
    return {e["exercise"]: (e["status"], e["points"]) for e in notebook["exercises"]}


def test_the_solution_scores_full_marks(graded):
    _, by_student, _ = graded
    solution = by_student["solution"]
    assert scores(solution) == {ex: ("PASS", pts) for ex, pts in FULL.items()}
    assert (solution["points"], solution["max_points"]) == (8, 8)
    assert solution["status"] == "ok"


def test_the_student_version_scores_zero_with_every_check_not_attempted(graded):
    _, by_student, _ = graded
    student = by_student["student"]
    assert scores(student) == {ex: ("NOT ATTEMPTED", 0) for ex in FULL}
    assert student["max_points"] == 8
    messages = [e["message"] for e in student["exercises"]]
    assert all(m.endswith("replace the ... with your answer") for m in messages)


def test_a_wrong_answer_loses_exactly_that_exercises_points(graded):
    _, by_student, _ = graded
    wrong = by_student["wrong"]
    expected = {ex: ("PASS", pts) for ex, pts in FULL.items()}
    expected["10.1"] = ("FAIL", 0)
    assert scores(wrong) == expected
    message = next(e["message"] for e in wrong["exercises"] if e["exercise"] == "10.1")
    assert message.startswith("FAIL 10.1 (0/3 points): amount exactly 3000.00")


def test_a_hanging_cell_is_cut_and_the_rest_is_still_graded(graded):
    _, by_student, _ = graded
    hang = by_student["hang"]
    expected = {ex: ("PASS", pts) for ex, pts in FULL.items()}
    expected["03.1"] = ("NOT RUN", 0)
    assert scores(hang) == expected
    assert hang["status"] == "timeout"
    note = next(e["message"] for e in hang["exercises"] if e["exercise"] == "03.1")
    assert "Timeout" in note


def test_table_and_gradebook_csv(graded):
    result, _, out = graded
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["student", "00.1", "02.1", "03.1", "10.1", "total"]
    rows = {line.split()[0]: line for line in lines[1:6]}
    assert rows["solution"].split() == ["solution", "1/1", "2/2", "2/2", "3/3", "8/8"]
    assert rows["student"].split()[-1] == "0/8"
    assert "NA" in rows["student"]
    assert rows["wrong"].split()[-1] == "5/8"
    assert "0/3 F" in rows["wrong"]
    assert rows["hang"].split()[-1] == "6/8"
    assert "0/2 NR" in rows["hang"]
    assert f"hang: {DEMO.name}: timeout" in result.stdout
    with open(out / "grades.csv", encoding="utf-8") as handle:
        table = {row["student"]: row for row in csv.DictReader(handle)}
    assert table["solution"] == {
        "student": "solution",
        "00.1": "1",
        "02.1": "2",
        "03.1": "2",
        "10.1": "3",
        "total": "8",
        "max_total": "8",
    }
    assert (table["wrong"]["10.1"], table["wrong"]["total"]) == ("0", "5")
    assert f"graded solution / {DEMO.name}: 8/8 points" in result.stderr
    assert "warning" not in result.stderr


def test_a_student_without_the_notebook_gets_zero_of_the_same_maximum(graded):
    result, _, out = graded
    row = next(line for line in result.stdout.splitlines() if line.startswith("ewa "))
    assert row.split() == ["ewa", "1/1", "0/2", "M", "0/2", "M", "0/3", "M", "1/8"]
    students = json.loads((out / "grades.json").read_text(encoding="utf-8"))["students"]
    assert students["ewa"] == {"points": 1, "max_points": 8, "missing": ["02.1", "03.1", "10.1"]}
    assert {s["max_points"] for s in students.values()} == {8}


def test_the_class_report_shows_pass_rates_and_the_hints_students_saw(graded):
    _, _, out = graded
    page = (out / "class.html").read_text(encoding="utf-8")
    # 10.1: solution and hang pass; student (NA), wrong (F) and ewa (M) do not -> 2 of 5
    assert "<td>2/5</td>" in page
    assert "40%" in page
    assert "amount exactly 3000.00" in page
    assert page.count("<td>ewa</td><td>1/8</td>") == 1


def test_a_notebook_that_ignores_interrupts_is_killed_and_counts_what_it_logged(
    shared_broker, tmp_path
):
    pid_file = tmp_path / "kernel.pid"
    stuck = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from labkit import nb"),
            nbformat.v4.new_code_cell(
                'nb.check("00.1", ["Warszawa", "Kraków", "Gdańsk", "Wrocław"])'
            ),
            nbformat.v4.new_code_cell(
                "import os, signal, time\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                "time.sleep(600)"
            ),
            nbformat.v4.new_code_cell('nb.check("10.1", lambda tx: 0)'),
        ]
    )
    path = write(tmp_path / "subs" / "stuck.ipynb", stuck)
    [result] = grading.grade(
        [path], bootstrap=shared_broker.bootstrap, cell_timeout=120, notebook_timeout=40
    )
    assert result.status == "timeout"
    assert "whole notebook" in result.detail
    assert {e.exercise: e.status for e in result.exercises} == {"00.1": "PASS", "10.1": "NOT RUN"}
    pid = int(pid_file.read_text())
    for _ in range(200):
        if not alive(pid):
            break
        time.sleep(0.05)
    assert not alive(pid), "the stuck kernel was left running"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_labkit_grade_and_the_kernels_it_started(shared_broker, tmp_path, jobs):
    """The notebooks run in sessions of their own, so a terminal's Ctrl-C reaches only
    `labkit grade`: it must kill its runs (with --jobs too), not leave kernels behind."""
    pid_files = [tmp_path / f"kernel-{n}.pid" for n in range(jobs)]
    for n, pid_file in enumerate(pid_files):
        sleeper = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell(
                    f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                    "time.sleep(600)"
                )
            ]
        )
        write(tmp_path / "subs" / f"student{n}" / "sleeper.ipynb", sleeper)
    argv = [sys.executable, "-m", "labkit", "grade", str(tmp_path / "subs"), "--jobs", str(jobs)]
    grade = subprocess.Popen(
        [*argv, "--bootstrap-server", shared_broker.bootstrap, "--timeout-per-cell", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not all(p.exists() and p.read_text() for p in pid_files):
            assert grade.poll() is None, grade.communicate()[0]
            assert time.monotonic() < deadline, "the kernels did not start within 90 s"
            time.sleep(0.1)
        kernels = [int(p.read_text()) for p in pid_files]
        grade.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        output, _ = grade.communicate(timeout=30)
    finally:
        grade.kill()
    assert grade.returncode == 130, output
    for _ in range(200):
        if not any(alive(pid) for pid in kernels):
            break
        time.sleep(0.05)
    assert not any(alive(pid) for pid in kernels), "a kernel was left running after Ctrl-C"
