"""``labkit grade``: run students' notebooks under nbval and collect their check results.

Theory of operation
-------------------
Each notebook is graded alone, in its own temporary folder and its own process:

1. A copy with outputs and execution counts cleared is written to a fresh folder
   (so stale outputs cannot upset nbval, and files the notebook writes stay there).
2. ``python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=T`` runs
   it with ``LABKIT_GRADING=1`` (a failed check raises), ``LABKIT_BOOTSTRAP`` (the
   broker) and ``LABKIT_GRADE_LOG`` (a file where every ``nb.check`` appends one
   JSON line) -- no conftest, no cache, an empty ini, so the grader's own pytest
   settings never leak in. nbval interrupts a cell that runs longer than T and
   goes on with the next cells. The folder of the running interpreter (the
   venv's ``bin``) comes first on ``PATH``, so ``!labkit topics ...`` and
   ``!kafka-topics.sh`` in a notebook work even when the venv is not activated.
   With a fresh broker per notebook (``labkit grade --fresh-broker``) no notebook
   sees the records another one left behind.
3. A backstop kills the run (pytest, the kernel, their children) when the whole
   notebook takes longer than ``notebook_timeout``; it then counts what it logged.
4. The exercises a notebook should have are the ids of the ``check("...")`` calls in
   its code cells, united over every notebook of the same assignment (so a deleted
   check cell still costs its points). An expected exercise without a log line
   is ``NOT RUN`` (its cell never reached the check: an error before it, a
   timeout, a dead kernel). The last log line of an exercise counts.

Nothing here reads the clock for the results: the same notebooks against the
same broker give the same table.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from labkit.course import checks, exercises
from labkit.errors import IllegalArgumentError

NOT_RUN = "NOT RUN"
CHECK_CALL = re.compile(r"\bcheck\(\s*(['\"])([\w.\-]+)\1")
SHORT = {checks.PASS: "", checks.FAIL: " F", checks.NOT_ATTEMPTED: " NA", NOT_RUN: " NR"}
LEGEND = "F = failed, NA = not attempted, NR = the check never ran"
STARTUP_ALLOWANCE_S = 120


@dataclass
class ExerciseScore:
    exercise: str
    title: str
    status: str
    points: int
    max_points: int
    message: str = ""


@dataclass
class NotebookGrade:
    student: str
    notebook: str
    assignment: str
    status: str = "ok"
    detail: str = ""
    exercises: list[ExerciseScore] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> int:
        return sum(e.max_points for e in self.exercises)


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    assignment: str


# -- finding notebooks ---------------------------------------------------------------


def _notebooks_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def find_submissions(paths: Iterable[Path]) -> list[Submission]:
    """Notebooks to grade, with the student each belongs to.

    A notebook file: student = its stem. A folder: each notebook directly in it is
    a student (its stem); each subfolder is a student (its name) whose notebooks
    are all graded. Raises ``IllegalArgumentError`` for a missing path or no notebooks.
    """
    found: list[Submission] = []
    for path in paths:
        path = Path(path)
        if path.is_file() and path.suffix == ".ipynb":
            found.append(Submission(path.stem, path, ""))
        elif path.is_dir():
            for item in sorted(path.iterdir()):
                if item.is_file() and item.suffix == ".ipynb":
                    found.append(Submission(item.stem, item, ""))
                elif item.is_dir() and not item.name.startswith("."):
                    found.extend(
                        Submission(item.name, nb, nb.relative_to(item).as_posix())
                        for nb in _notebooks_in(item)
                    )
        else:
            raise IllegalArgumentError(
                f"{path} is neither a notebook (.ipynb) nor a folder; "
                "give notebooks or folders of submissions"
            )
    if not found:
        raise IllegalArgumentError("no notebooks (*.ipynb) found in the paths given")
    return found


def exercise_ids(notebook: nbformat.NotebookNode) -> list[str]:
    """Ids of the ``check("...")`` calls in the code cells, in order of appearance."""
    ids: list[str] = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for match in CHECK_CALL.finditer(cell.source):
                if match[2] not in ids:
                    ids.append(match[2])
    return ids


# -- running one notebook ------------------------------------------------------------


@dataclass
class RunResult:
    returncode: int | None
    output: str
    records: list[dict]
    killed: bool = False


def _sanitized(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    clean = nbformat.from_dict(notebook)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return clean


def _pytest_command(path: Path, ini: Path, cell_timeout: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(path),
        "-c",
        str(ini),
        "--rootdir",
        str(ini.parent),
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rf",
        "--nbval-lax",
        "--nbval-current-env",
        f"--nbval-cell-timeout={cell_timeout:g}",
        "--color=no",
    ]


def child_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    """``base`` plus ``extra``, with this interpreter's bin folder first on PATH (once).

    ``sys.executable`` is not resolved: in a venv it is ``<venv>/bin/python``, and
    that folder holds ``labkit`` and the ``kafka-*.sh`` commands.
    """
    env = dict(base, **extra)
    bin_dir = os.path.dirname(sys.executable)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    return env


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the pytest process, its process group and every descendant (the kernel has its own)."""
    victims = []
    try:
        import psutil

        victims = psutil.Process(proc.pid).children(recursive=True)
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - the process may be gone already (psutil.NoSuchProcess)
        victims = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
    for child in victims:
        try:
            child.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass


def run_notebook(
    notebook: nbformat.NotebookNode,
    *,
    bootstrap: str,
    cell_timeout: float,
    notebook_timeout: float,
    name: str = "notebook.ipynb",
) -> RunResult:
    """Run one notebook under nbval in grading mode; returns what its checks logged."""
    with tempfile.TemporaryDirectory(prefix="labkit-grade-") as tmp:
        work = Path(tmp)
        path = work / (Path(name).stem + ".ipynb")
        nbformat.write(_sanitized(notebook), str(path))
        ini = work / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        log = work / "grade-log.jsonl"
        env = child_env(
            dict(os.environ),
            LABKIT_GRADING="1",
            LABKIT_GRADE_LOG=str(log),
            LABKIT_BOOTSTRAP=bootstrap,
            MPLBACKEND="Agg",
            PYTHONUNBUFFERED="1",
        )
        env.pop("PYTEST_ADDOPTS", None)
        proc = subprocess.Popen(
            _pytest_command(path, ini, cell_timeout),
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        killed = False
        try:
            out, _ = proc.communicate(timeout=notebook_timeout)
        except subprocess.TimeoutExpired:
            killed = True
            _kill_tree(proc)
            out, _ = proc.communicate()
        records = []
        if log.exists():
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        text = out.decode("utf-8", errors="replace")
        return RunResult(None if killed else proc.returncode, text, records, killed)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SECTION = re.compile(r"^_{3,} .*::Cell (\d+) _{3,}$", re.M)


def cell_errors(output: str) -> dict[int, str]:
    """{code cell number (from 0): one line saying why it failed} from nbval's report."""
    text = _ANSI.sub("", output)
    marks = list(_SECTION.finditer(text))
    errors = {}
    ends = [m.start() for m in marks[1:]] + [len(text)] * bool(marks)
    for mark, end in zip(marks, ends, strict=True):
        section = text[mark.end() : end]
        section = section.split("\n=====", 1)[0]
        lines = [line.strip() for line in section.splitlines() if line.strip()]
        reason = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines
                if line.startswith(f"Cell {mark[1]}:")
            ),
            "",
        )
        last = lines[-1] if lines else ""
        if "Timeout" in reason or not last or last == "Traceback:":
            errors[int(mark[1])] = reason or "failed"
        else:
            errors[int(mark[1])] = last[:300]
    return errors


def _detail(run: RunResult, notebook_timeout: float) -> tuple[str, str]:
    if run.killed:
        return "timeout", f"stopped after {notebook_timeout:g} s for the whole notebook"
    text = run.output
    if run.returncode == 0:
        return "ok", ""
    if "Kernel died" in text or "Kernel dead" in text or "Failed to interrupt kernel" in text:
        return "crashed", "the kernel died or could not be interrupted; later cells did not run"
    if "Timeout of" in text:
        cells = sorted({int(n) for n in re.findall(r"::Cell (\d+)", text)})
        return "timeout", "a cell ran too long and was interrupted" + (
            f" (failing cells: {', '.join(map(str, cells))})" if cells else ""
        )
    if run.returncode == 1:
        return "errors", "some cells raised (failed checks count here too)"
    tail = " ".join(text.strip().splitlines()[-3:])[-300:]
    return "crashed", f"pytest exited with code {run.returncode}: {tail}"


# -- grading ------------------------------------------------------------------------


def _score(
    course: checks.Registry, ex_id: str, records: list[dict], why_not_run: str = ""
) -> ExerciseScore:
    mine = [r for r in records if r.get("exercise") == ex_id]
    try:
        known = course.get(ex_id)
        title, max_points = known.title, known.points
    except IllegalArgumentError:
        title, max_points = "(unknown exercise)", 0
    if not mine:
        why = (
            f"the cell stopped before nb.check: {why_not_run}"
            if why_not_run
            else "the check cell never reached nb.check"
        )
        return ExerciseScore(ex_id, title, NOT_RUN, 0, max_points, f"{NOT_RUN} {ex_id}: {why}")
    last = mine[-1]
    status = str(last.get("status", checks.FAIL))
    points = int(last.get("points", 0)) if status == checks.PASS else 0
    if max_points:
        points = min(points, max_points)
    else:
        max_points = int(last.get("max_points", 0))
    return ExerciseScore(
        ex_id,
        str(last.get("title", title)),
        status,
        points,
        max_points,
        str(last.get("message", "")),
    )


def grade(
    paths: Iterable[Path],
    *,
    bootstrap: str,
    cell_timeout: float = 60.0,
    notebook_timeout: float | None = None,
    progress=None,
    fresh_broker: Callable[[], AbstractContextManager[str]] | None = None,
    course: checks.Registry | None = None,
) -> list[NotebookGrade]:
    """Grade every notebook found in ``paths``; one result per notebook, in order.

    ``progress(grade)`` is called after each notebook. With ``fresh_broker`` (a
    factory of context managers that yield a bootstrap address) each notebook gets
    its own broker instead of ``bootstrap``. ``course`` (default: the series') gives the
    points and titles of the exercises a notebook never logged. Raises ``IllegalArgumentError`` when no
    notebook is found or one cannot be read as a notebook.
    """
    course = exercises.load() if course is None else course
    submissions = find_submissions(paths)
    loaded = []
    for sub in submissions:
        try:
            loaded.append((sub, nbformat.read(str(sub.path), as_version=4)))
        except (OSError, ValueError) as exc:
            raise IllegalArgumentError(f"{sub.path} is not a readable notebook ({exc})") from None
    expected: dict[str, list[str]] = {}
    for sub, notebook in loaded:
        ids = expected.setdefault(sub.assignment, [])
        ids.extend(i for i in exercise_ids(notebook) if i not in ids)
    results = []
    for sub, notebook in loaded:
        code_cells = sum(1 for c in notebook.cells if c.cell_type == "code")
        limit = notebook_timeout or cell_timeout * max(code_cells, 1) + STARTUP_ALLOWANCE_S
        with fresh_broker() if fresh_broker else nullcontext(bootstrap) as address:
            run = run_notebook(
                notebook,
                bootstrap=address,
                cell_timeout=cell_timeout,
                notebook_timeout=limit,
                name=sub.path.name,
            )
        status, detail = _detail(run, limit)
        ids = list(expected[sub.assignment])
        ids.extend(
            r["exercise"] for r in run.records if r.get("exercise") and r["exercise"] not in ids
        )
        errors = cell_errors(run.output)
        why = {}
        code = [c.source for c in notebook.cells if c.cell_type == "code"]
        for number, source in enumerate(code):
            for match in CHECK_CALL.finditer(source):
                why.setdefault(match[2], errors.get(number, ""))
        result = NotebookGrade(
            sub.student,
            str(sub.path),
            sub.assignment,
            status,
            detail,
            [_score(course, i, run.records, why.get(i, "")) for i in sorted(ids)],
        )
        results.append(result)
        if progress is not None:
            progress(result)
    return results


# -- reports --------------------------------------------------------------------------


def by_student(grades: list[NotebookGrade]) -> dict[str, dict[str, ExerciseScore]]:
    """{student: {exercise id: best score over that student's notebooks}}."""
    table: dict[str, dict[str, ExerciseScore]] = {}
    for g in grades:
        row = table.setdefault(g.student, {})
        for e in g.exercises:
            if e.exercise not in row or e.points > row[e.exercise].points:
                row[e.exercise] = e
    return table


def _columns(grades: list[NotebookGrade]) -> list[str]:
    return sorted({e.exercise for g in grades for e in g.exercises})


def table(grades: list[NotebookGrade]) -> str:
    """The score table: one row per student, one column per exercise, then the total."""
    rows = by_student(grades)
    columns = _columns(grades)
    header = ["student", *columns, "total"]
    body = []
    for student, scores in rows.items():
        cells = []
        for ex in columns:
            s = scores.get(ex)
            cells.append(
                "-" if s is None else f"{s.points}/{s.max_points}{SHORT.get(s.status, ' ?')}"
            )
        got = sum(s.points for s in scores.values())
        most = sum(s.max_points for s in scores.values())
        body.append([student, *cells, f"{got}/{most}"])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    ]
    notes = [
        f"{g.student}: {Path(g.notebook).name}: {g.status}: {g.detail}"
        for g in grades
        if g.status not in ("ok", "errors")
    ]
    return "\n".join([*lines, "", LEGEND, *notes])


def write_csv(grades: list[NotebookGrade], path: Path) -> None:
    """A gradebook CSV: one row per student, points per exercise, total and maximum."""
    rows = by_student(grades)
    columns = _columns(grades)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["student", *columns, "total", "max_total"])
        for student, scores in rows.items():
            writer.writerow(
                [
                    student,
                    *(scores[c].points if c in scores else "" for c in columns),
                    sum(s.points for s in scores.values()),
                    sum(s.max_points for s in scores.values()),
                ]
            )


def write_json(grades: list[NotebookGrade], path: Path) -> None:
    """Every notebook's result with each exercise's status and message."""
    data = {
        "notebooks": [dict(asdict(g), points=g.points, max_points=g.max_points) for g in grades]
    }
    path.write_text(
        json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
