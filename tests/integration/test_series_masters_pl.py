"""The Polish series (instructor/masters/pl/ -> notebooks/pl/), run as the English one is in
test_series_masters.py: every Polish master runs under nbval against a real broker with every
check passing, its committed student version runs with every check NOT ATTEMPTED (zero
points), and no topic is left behind. That each Polish master mirrors its English one (cells,
exercises, code) is tests/unit/test_nb_masters_pl_mirror.py.

The runs reuse test_series_masters.run_notebook (`pytest --nbval-lax` in its own process);
notebooks run one pair at a time here, to keep a shared machine quiet. Select some with
``-k 03_consumer``: the module fixture runs only the notebooks the selected tests need.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbval")

from test_series_masters import _topics, run_notebook  # noqa: E402

from labkit.course import grading  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MASTERS = ROOT / "instructor" / "masters"
PL_MASTERS = MASTERS / "pl"
PL_STUDENTS = ROOT / "notebooks" / "pl"
NAMES = [p.stem for p in sorted(PL_MASTERS.glob("*.ipynb"))]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _selected(request) -> list[str]:
    names = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is request.module and "name" in params:
            names.add(params["name"])
    return [name for name in NAMES if name in names] or NAMES


@pytest.fixture(scope="module")
def series_pl(shared_broker, request):
    """{notebook name: {"master": Run, "student": Run}}, plus the topics the runs left."""
    bootstrap = shared_broker.bootstrap
    before = _topics(bootstrap)
    results = {}
    for name in _selected(request):
        results[name] = {
            "master": run_notebook(PL_MASTERS / f"{name}.ipynb", bootstrap, grading_mode=True)
        }
        student = PL_STUDENTS / f"{name}.ipynb"
        if student.exists():
            results[name]["student"] = run_notebook(student, bootstrap, grading_mode=False)
    left = sorted(_topics(bootstrap) - before)
    print(
        "\nseconds per run:",
        ", ".join(
            f"pl/{name} {kind} {run.seconds:.0f}"
            for name, runs in results.items()
            for kind, run in runs.items()
        ),
    )
    return results, left


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


def expected_exercises(name: str) -> list[str]:
    return grading.exercise_ids(_read(PL_MASTERS / f"{name}.ipynb"))


def test_there_are_polish_masters():
    assert NAMES, f"no Polish masters in {PL_MASTERS}"


@pytest.mark.parametrize("name", NAMES)
def test_the_polish_master_runs_clean_and_passes_every_check(series_pl, name):
    results, _ = series_pl
    run = results[name]["master"]
    assert run.returncode == 0, f"pl/{name} master failed under nbval:\n{run.tail()}"
    wanted = expected_exercises(name)
    assert wanted, f"pl/{name} has no nb.check(...) cell"
    statuses = run.statuses()
    assert {ex: statuses.get(ex, "NOT RUN") for ex in wanted} == dict.fromkeys(wanted, "PASS")
    assert all(r["points"] == r["max_points"] > 0 for r in run.records)


@pytest.mark.parametrize("name", NAMES)
def test_the_polish_student_version_runs_and_scores_zero(series_pl, name):
    results, _ = series_pl
    assert "student" in results[name], (
        f"notebooks/pl/{name}.ipynb is missing: run `labkit notebooks build` and commit it"
    )
    run = results[name]["student"]
    assert run.returncode == 0, f"pl/{name} student version raised under nbval:\n{run.tail()}"
    wanted = expected_exercises(name)
    statuses = run.statuses()
    assert {ex: statuses.get(ex, "NOT RUN") for ex in wanted} == dict.fromkeys(
        wanted, "NOT ATTEMPTED"
    )
    assert sum(r["points"] for r in run.records) == 0


def test_the_polish_notebooks_leave_no_topics_behind(series_pl):
    _, left = series_pl
    assert left == [], f"topics left on the broker after the Polish series ran: {left}"
