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

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from labkit.course import checks, exercises
from labkit.course.nbval_output import cell_errors, run_status
from labkit.errors import IllegalArgumentError

NOT_RUN = "NOT RUN"
CHECK_CALL = re.compile(r"\bcheck\(\s*(['\"])([\w.\-]+)\1")
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


def _no_warning(message: str) -> None:
    pass


def _has_notebooks(folder: Path) -> bool:
    return any(True for _ in _notebooks_in(folder))


def find_submissions(
    paths: Iterable[Path], *, warn: Callable[[str], None] = _no_warning
) -> list[Submission]:
    """Notebooks to grade, with the student each belongs to (see the layout below).

    - A *class folder* holds one folder per student: ``submissions/anna/03_consumer.ipynb``,
      or nbgrader's ``submitted/anna/ps1/03_consumer.ipynb``. Every notebook under a
      student's folder is theirs; its path inside that folder is the assignment.
    - A *student folder* holds that student's notebooks directly: ``labkit grade
      submissions/anna submissions/bartek``; the student is the folder's name.
    - A notebook file: the student is the name of the folder it is in.

    Anything else is warned about through ``warn``: notebooks lying loose in a class
    folder are skipped (whose are they?), two folders of the same student name are both
    graded as that student, a notebook reached twice is graded once. Raises ``IllegalArgumentError`` for a missing path or no notebooks.
    """
    found: list[Submission] = []
    seen: dict[str, Path] = {}

    def student(name: str, where: Path) -> str:
        if name in seen and seen[name] != where:
            warn(f"student {name!r} appears twice ({seen[name]} and {where}); both are graded")
        seen.setdefault(name, where)
        return name

    for path in paths:
        path = Path(path)
        if path.is_file() and path.suffix == ".ipynb":
            folder = path.resolve().parent
            found.append(Submission(student(folder.name, folder), path, path.name))
        elif path.is_dir():
            loose = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".ipynb")
            students = sorted(
                p
                for p in path.iterdir()
                if p.is_dir() and not p.name.startswith(".") and _has_notebooks(p)
            )
            if loose and not students:
                name = student(path.resolve().name, path)
                found.extend(Submission(name, nb, nb.name) for nb in loose)
                continue
            for nb in loose:
                warn(
                    f"skipped {nb}: a notebook directly in a class folder belongs to no "
                    "student; put it in a folder named after its student"
                )
            for folder in students:
                name = student(folder.name, folder)
                found.extend(
                    Submission(name, nb, nb.relative_to(folder).as_posix())
                    for nb in _notebooks_in(folder)
                )
        else:
            raise IllegalArgumentError(
                f"{path} is neither a notebook (.ipynb) nor a folder; "
                "give a class folder (one folder per student) or students' folders"
            )
    unique: dict[Path, Submission] = {}
    for sub in found:
        key = sub.path.resolve()
        if key in unique:
            warn(f"{sub.path} was given twice; it is graded once")
        else:
            unique[key] = sub
    found = list(unique.values())
    if not found:
        raise IllegalArgumentError(
            "no notebooks (*.ipynb) found in the paths given; expected a class folder "
            "with one folder per student (submissions/anna/03_consumer.ipynb)"
        )
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


def notebook_language_env(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """``{"LABKIT_LANG": "pl"}`` for a notebook whose metadata says Polish: the kernel that
    runs it (under nbval, not JupyterLab, so it cannot read the notebook itself) then gives
    the student's feedback in the notebook's language. Empty when the metadata names none."""
    from labkit import i18n

    meta = notebook.get("metadata", {}).get("labkit", {})
    lang = i18n.normalize(meta.get("language")) if isinstance(meta, dict) else None
    return {i18n.LANG_ENV: lang} if lang else {}


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


class _Stopped(Exception):
    """The grading was interrupted before this notebook started."""


class _Runs:
    """The notebook processes of one ``grade`` call, so that an interrupt stops them all:
    with ``--jobs`` the KeyboardInterrupt reaches only the main thread, and the pool's
    threads would otherwise wait for their notebooks to finish."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self._stopped = False

    def start(self, argv: list[str], **options: Any) -> subprocess.Popen:
        with self._lock:
            if self._stopped:
                raise _Stopped("the grading was interrupted")
            proc = subprocess.Popen(argv, **options)
            self._procs.add(proc)
            return proc

    def finished(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop_all(self) -> None:
        """Start no more runs; kill the process tree of every run in progress."""
        with self._lock:
            self._stopped = True
            running = list(self._procs)
        for proc in running:
            _kill_tree(proc)


def run_notebook(
    notebook: nbformat.NotebookNode,
    *,
    bootstrap: str,
    cell_timeout: float,
    notebook_timeout: float,
    name: str = "notebook.ipynb",
    extra_env: dict[str, str] | None = None,
    runs: _Runs | None = None,
) -> RunResult:
    """Run one notebook under nbval in grading mode; returns what its checks logged.
    An exception while it runs (KeyboardInterrupt) kills its process tree first.
    ``runs``: the group of runs it belongs to (``grade`` stops them together)."""
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
            **notebook_language_env(notebook),
            **(extra_env or {}),
        )
        env.pop("PYTEST_ADDOPTS", None)
        # `!labkit grade` in a notebook: the kernels must not think they run that notebook
        # (labkit.i18n reads the language of the notebook JPY_SESSION_NAME names)
        env.pop("JPY_SESSION_NAME", None)
        runs = _Runs() if runs is None else runs
        proc = runs.start(
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
        except BaseException:
            # Ctrl-C reaches only `labkit grade`: the run is in a session of its own, so
            # without this its kernel would go on running the notebook, unwatched
            _kill_tree(proc)
            proc.wait()
            raise
        finally:
            runs.finished(proc)
        records = []
        if log.exists():
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        text = out.decode("utf-8", errors="replace")
        return RunResult(None if killed else proc.returncode, text, records, killed)


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
    jobs: int = 1,
    warn: Callable[[str], None] = _no_warning,
) -> list[NotebookGrade]:
    """Grade every notebook found in ``paths``; one result per notebook, in order.

    ``progress(grade)`` is called after each notebook. With ``fresh_broker`` (a
    factory of context managers that yield a bootstrap address) each notebook gets
    its own broker instead of ``bootstrap``. ``course`` (default: the series') gives the
    points and titles of the exercises a notebook never logged. ``jobs`` notebooks run
    at once (each is its own process and kernel); when they share one broker each run
    gets a student prefix of its own (``LABKIT_STUDENT=grade-<n>``, see
    ``labkit.nb.names``) so that two notebooks of the same assignment never use the same
    topics and groups. ``warn`` hears about submissions outside the documented layout.
    Raises ``IllegalArgumentError`` when no notebook is found or one cannot be read.
    """
    if jobs < 1:
        raise IllegalArgumentError(f"jobs must be >= 1, got {jobs}")
    course = exercises.load() if course is None else course
    submissions = find_submissions(paths, warn=warn)
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
    lock = threading.Lock()
    runs = _Runs()

    def grade_one(index: int, sub: Submission, notebook: nbformat.NotebookNode) -> NotebookGrade:
        code_cells = sum(1 for c in notebook.cells if c.cell_type == "code")
        limit = notebook_timeout or cell_timeout * max(code_cells, 1) + STARTUP_ALLOWANCE_S
        private = (
            {}
            if fresh_broker or jobs == 1
            else {"LABKIT_STUDENT": f"grade-{index}", "LABKIT_SHARED": "1"}
        )
        with fresh_broker() if fresh_broker else nullcontext(bootstrap) as address:
            run = run_notebook(
                notebook,
                bootstrap=address,
                cell_timeout=cell_timeout,
                notebook_timeout=limit,
                name=sub.path.name,
                extra_env=private,
                runs=runs,
            )
        status, detail = run_status(run.output, run.returncode, run.killed, limit)
        ids = list(expected[sub.assignment])
        ids.extend(
            r["exercise"] for r in run.records if r.get("exercise") and r["exercise"] not in ids
        )
        errors = cell_errors(run.output)
        why: dict[str, str] = {}
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
        if progress is not None:
            with lock:
                progress(result)
        return result

    if jobs == 1:
        return [grade_one(n, sub, nb) for n, (sub, nb) in enumerate(loaded)]
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="labkit-grade")
    try:
        futures = [pool.submit(grade_one, n, sub, nb) for n, (sub, nb) in enumerate(loaded)]
        return [f.result() for f in futures]
    except BaseException:
        runs.stop_all()  # the threads' notebooks end now, so the shutdown below is quick
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
