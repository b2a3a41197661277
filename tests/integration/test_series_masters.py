"""The graded notebook series, end to end: every master in instructor/masters/ runs under
nbval against a real broker with every check passing (full marks), its committed student
version in notebooks/ runs without an error with every check NOT ATTEMPTED (zero points),
neither leaves a topic behind, and `labkit notebooks check` finds nothing out of date.

How it runs: one module fixture runs all notebooks against the session's shared broker, two
at a time (the machine has two cores); each worker runs one notebook's master and then its
student version, so the two never share the broker's topics at the same moment, while
different notebooks use different topic names. Each run is `pytest --nbval-lax` in its own
process (as `labkit grade` does), with `LABKIT_GRADE_LOG` collecting every check's result;
the masters run with `LABKIT_GRADING=1`, so a check that does not pass fails its cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbval")

from labkit import KafkaAdminClient  # noqa: E402
from labkit.course import authoring, grading  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MASTERS = ROOT / "instructor" / "masters"
STUDENTS = ROOT / "notebooks"
# English masters, then their Polish versions (instructor/masters/pl/, docs/languages.md):
# names are paths under masters/ without .ipynb ("02_producer", "pl/02_producer").
MASTER_PATHS = sorted(
    (p for p in MASTERS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts),
    key=lambda p: (len(p.relative_to(MASTERS).parts), p.as_posix()),
)
NAMES = [p.relative_to(MASTERS).with_suffix("").as_posix() for p in MASTER_PATHS]
CELL_TIMEOUT_S = 60
RUN_TIMEOUT_S = 420
WORKERS = 2

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass
class Run:
    returncode: int | None
    output: str
    records: list[dict]
    seconds: float
    topics_left: list[str] = field(default_factory=list)

    def statuses(self) -> dict[str, str]:
        """{exercise: status of its last check}."""
        return {r["exercise"]: r["status"] for r in self.records}

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.strip().splitlines()[-lines:])


def _topics(bootstrap: str) -> set[str]:
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        return {t for t in admin.list_topics() if not t.startswith("__")}


def run_notebook(path: Path, bootstrap: str, *, grading_mode: bool) -> Run:
    """Run one notebook under nbval in a temporary folder; collect its checks' log lines."""
    with tempfile.TemporaryDirectory(prefix="labkit-series-") as tmp:
        work = Path(tmp)
        copy = work / path.name
        copy.write_bytes(path.read_bytes())
        (work / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        log = work / "grade-log.jsonl"
        env = dict(
            os.environ,
            LABKIT_BOOTSTRAP=bootstrap,
            LABKIT_GRADE_LOG=str(log),
            MPLBACKEND="Agg",
            PYTHONUNBUFFERED="1",
            # no venv bin/ on PATH: `!labkit ...` cells must work however Jupyter was
            # started (`from labkit import nb` puts the console tools on the kernel's PATH)
            PATH=os.pathsep.join(
                p
                for p in os.environ.get("PATH", "").split(os.pathsep)
                if p and Path(p).resolve() != Path(sys.executable).parent.resolve()
            ),
        )
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTEST_ADDOPTS", None)
        # the kernel gives feedback in the notebook's language, as under `labkit grade`
        env.update(grading.notebook_language_env(nbformat.read(str(path), as_version=4)))
        if grading_mode:
            env["LABKIT_GRADING"] = "1"
        else:
            env.pop("LABKIT_GRADING", None)
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(copy),
            "-c",
            str(work / "pytest.ini"),
            "--rootdir",
            str(work),
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval-lax",
            "--nbval-current-env",
            f"--nbval-cell-timeout={CELL_TIMEOUT_S}",
            "--color=no",
        ]
        started = time.monotonic()
        try:
            done = subprocess.run(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
            )
            returncode, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            returncode, output = None, f"killed after {RUN_TIMEOUT_S} s\n{exc.stdout or ''}"
        records = (
            [
                json.loads(line)
                for line in log.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            if log.exists()
            else []
        )
        return Run(returncode, output, records, time.monotonic() - started)


def run_pair(name: str, bootstrap: str) -> dict[str, Run]:
    """The master, then the committed student version, of one notebook."""
    runs = {}
    for kind, path, grading_mode in (
        ("master", MASTERS / f"{name}.ipynb", True),
        ("student", STUDENTS / f"{name}.ipynb", False),
    ):
        if not path.exists():
            continue
        run = run_notebook(path, bootstrap, grading_mode=grading_mode)
        runs[kind] = run
    return runs


def run_languages(names: list[str], bootstrap: str) -> dict[str, dict[str, Run]]:
    """One notebook in each of its languages, one after the other: they use the same
    topic names, so they must not run at the same moment."""
    return {name: run_pair(name, bootstrap) for name in names}


def _same_notebook(names: list[str]) -> dict[str, list[str]]:
    """{"02_producer": ["02_producer", "pl/02_producer"]}: the languages of each notebook."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(Path(name).name, []).append(name)
    return groups


def _selected(request) -> list[str]:
    """The notebooks the selected tests of this module need (all if none is named)."""
    names = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is request.module and "name" in params:
            names.add(params["name"])
    return [name for name in NAMES if name in names] or NAMES


@pytest.fixture(scope="module")
def series(shared_broker, request):
    """{notebook name: {"master": Run, "student": Run}}, plus the topics the runs left."""
    bootstrap = shared_broker.bootstrap
    before = _topics(bootstrap)
    names = _selected(request)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [
            pool.submit(run_languages, group, bootstrap) for group in _same_notebook(names).values()
        ]
        results = {name: runs for future in futures for name, runs in future.result().items()}
    left = sorted(_topics(bootstrap) - before)
    print(
        "\nseconds per run:",
        ", ".join(
            f"{name} {kind} {run.seconds:.0f}"
            for name, runs in results.items()
            for kind, run in runs.items()
        ),
    )
    return results, left


def expected_exercises(name: str) -> list[str]:
    return grading.exercise_ids(nbformat.read(str(MASTERS / f"{name}.ipynb"), as_version=4))


@pytest.mark.parametrize("name", NAMES)
def test_the_master_runs_clean_and_passes_every_check(series, name):
    results, _ = series
    run = results[name]["master"]
    assert run.returncode == 0, f"{name} master failed under nbval:\n{run.tail()}"
    wanted = expected_exercises(name)
    assert wanted, f"{name} has no nb.check(...) cell"
    statuses = run.statuses()
    assert {ex: statuses.get(ex, "NOT RUN") for ex in wanted} == dict.fromkeys(wanted, "PASS")
    assert all(r["points"] == r["max_points"] > 0 for r in run.records)


@pytest.mark.parametrize("name", NAMES)
def test_the_student_version_runs_and_scores_zero(series, name):
    results, _ = series
    assert "student" in results[name], (
        f"notebooks/{name}.ipynb is missing: run `labkit notebooks build` and commit it"
    )
    run = results[name]["student"]
    assert run.returncode == 0, f"{name} student version raised under nbval:\n{run.tail()}"
    wanted = expected_exercises(name)
    statuses = run.statuses()
    assert {ex: statuses.get(ex, "NOT RUN") for ex in wanted} == dict.fromkeys(
        wanted, "NOT ATTEMPTED"
    )
    assert sum(r["points"] for r in run.records) == 0


def test_the_notebooks_leave_no_topics_behind(series):
    _, left = series
    assert left == [], f"topics left on the broker after the series ran: {left}"


def test_the_committed_student_versions_are_up_to_date():
    stale = authoring.stale(MASTERS, STUDENTS)
    assert stale == [], f"run `labkit notebooks build` and commit: {stale}"


def test_labkit_notebooks_check_passes():
    done = subprocess.run(
        [sys.executable, "-m", "labkit", "notebooks", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_each_notebook_checks_the_broker_first_and_ends_with_a_summary(name):
    nb = nbformat.read(str(MASTERS / f"{name}.ipynb"), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name}: one of the first two code cells should call nb.doctor(...)"
    assert any("nb.doctor(" in source for source in code[:2]), (
        f"{name}: one of the first two code cells should call nb.doctor(...)"
    )
    markdown = [c.source.lower() for c in nb.cells if c.cell_type == "markdown"]
    assert any("## summary" in text or "## podsumowanie" in text for text in markdown[-3:]), (
        f"{name}: the notebook should end with a '## Summary' (and what comes next), "
        "at most a clean-up section after it"
    )
