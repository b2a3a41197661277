"""Student versions of master notebooks: stubs, hidden tests, determinism, marker errors,
and the `labkit notebooks build|check` command."""

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit.cli.main import main as labkit_main
from labkit.course._stubnames import bound_names
from labkit.course.authoring import MarkerError, Where, build, stale, strip_source, student_notebook
from labkit.course.checks import is_placeholder

ROOT = Path(__file__).resolve().parents[2]
W = Where("demo.ipynb", 3, "abc")


def strip(source, **kw):
    return strip_source(source, W, **kw)


def test_solution_becomes_an_indented_stub_that_runs():
    master = (
        "def format_alert(tx):\n"
        "    ### BEGIN SOLUTION\n"
        "    if tx['amount'] > 3000:\n"
        "        return 'ALERT'\n"
        "    ### END SOLUTION\n"
        "\n"
        "print('ok')"
    )
    student = strip(master)
    assert student == ("def format_alert(tx):\n    # YOUR CODE HERE\n    ...\n\nprint('ok')")
    namespace = {}
    exec(student, namespace)
    assert is_placeholder(namespace["format_alert"])


def test_assigned_names_used_later_get_placeholder_values():
    master = (
        "### BEGIN SOLUTION\n"
        "futures = [send(tx) for tx in txs]\n"
        "metadata = [f.get(timeout=10) for f in futures]\n"
        "### END SOLUTION\n"
        "nb.check('02.1', metadata, topic=TOPIC)"
    )
    assert strip(master) == (
        "# YOUR CODE HERE\nmetadata = ...\nnb.check('02.1', metadata, topic=TOPIC)"
    )


def test_names_used_only_in_later_cells_count_too():
    assert (
        strip(
            "### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION",
            later_text="nb.check('00.1', answer)",
        )
        == "# YOUR CODE HERE\nanswer = ..."
    )


def test_locals_of_a_function_are_not_stubbed_for_a_later_cell_using_the_same_name():
    master = (
        "def detect(transactions):\n"
        "    ### BEGIN SOLUTION\n"
        "    flagged = set()\n"
        "    for tx in transactions:\n"
        "        now = tx['time']\n"
        "        flagged.add(now)\n"
        "    return flagged\n"
        "    ### END SOLUTION\n"
    )
    later = (
        "flagged = detect(txs)\nprint(len(flagged), datetime.now(), tx)\nnb.check('09.1', detect)"
    )
    student = strip(master, later_text=later)
    assert student == ("def detect(transactions):\n    # YOUR CODE HERE\n    ...\n")
    namespace = {}
    exec(student, namespace)
    assert is_placeholder(namespace["detect"])


def test_a_local_read_later_in_the_same_function_keeps_a_placeholder():
    master = (
        "def total(txs):\n"
        "    ### BEGIN SOLUTION\n"
        "    amount = sum(tx['amount'] for tx in txs)\n"
        "    helper = 1\n"
        "    ### END SOLUTION\n"
        "    return amount\n"
        "\n"
        "helper = 2\n"
        "print(helper)"
    )
    student = strip(master, later_text="print(helper)")
    assert student == (
        "def total(txs):\n"
        "    # YOUR CODE HERE\n"
        "    amount = ...\n"
        "    return amount\n"
        "\n"
        "helper = 2\n"
        "print(helper)"
    )
    namespace = {}
    exec(student, namespace)
    assert namespace["total"]([]) is Ellipsis


def test_a_top_level_region_stubs_only_names_the_later_code_reads_first():
    master = (
        "counts = {}\n"
        "### BEGIN SOLUTION\n"
        "with open_consumer() as consumer:\n"
        "    records = list(consumer)\n"
        "for record in records:\n"
        "    counts[record.key] = counts.get(record.key, 0) + 1\n"
        "    report.total = len(records)\n"
        "    last = record\n"
        "### END SOLUTION\n"
        "nb.check('05.2', counts, records)\n"
        "print('last', report.last, 'record')  # last record"
    )
    later = "for record in more:\n    print(record)\nlast = None"
    student = strip(master, later_text=later)
    assert student == (
        "counts = {}\n"
        "# YOUR CODE HERE\n"
        "records = ...\n"
        "nb.check('05.2', counts, records)\n"
        "print('last', report.last, 'record')  # last record"
    )


def test_a_name_read_only_inside_a_later_function_or_comprehension_counts():
    master = "### BEGIN SOLUTION\nlimit = 3000\nrate = 2\nx = 1\n### END SOLUTION"
    later = (
        "def big(tx):\n    return tx['amount'] > limit\n"
        "ok = [x for x in range(rate)]\n%time print(1)\n!labkit topics --list"
    )
    assert strip(master, later_text=later) == "# YOUR CODE HERE\nlimit = ...\nrate = ..."


def test_a_later_cell_that_does_not_parse_is_searched_as_text():
    master = "### BEGIN SOLUTION\nanswer = 42\nother = 1\n### END SOLUTION"
    assert strip(master, later_text="print(answer\n") == "# YOUR CODE HERE\nanswer = ..."


def test_a_whole_function_keeps_its_signature_and_docstring():
    master = (
        "### BEGIN SOLUTION\n"
        "def score(tx: dict) -> int:\n"
        "    '''Rules R1-R3.'''\n"
        "    return 3 if tx['amount'] > 3000 else 0\n"
        "### END SOLUTION\n"
    )
    student = strip(master)
    assert "3000" not in student
    assert "def score(tx: dict) -> int:" in student
    assert "Rules R1-R3." in student
    namespace = {}
    exec(student, namespace)
    assert is_placeholder(namespace["score"])


def test_inside_brackets_the_stub_keeps_the_expression_valid():
    master = "answer = (\n    ### BEGIN SOLUTION\n    6 * 7\n    ### END SOLUTION\n)"
    student = strip(master)
    namespace = {}
    exec(student, namespace)
    assert namespace["answer"] is Ellipsis


def test_hidden_tests_are_removed_and_markdown_gets_a_stub():
    assert (
        strip("x = 1\n### BEGIN HIDDEN TESTS\nassert x == 1\n### END HIDDEN TESTS\ny = 2")
        == "x = 1\ny = 2"
    )
    assert (
        strip("Answer:\n### BEGIN SOLUTION\nKafka is a log.\n### END SOLUTION", markdown=True)
        == "Answer:\nYOUR ANSWER HERE"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\nx\n### END SOLUTION\n### END SOLUTION",
            "line 2: '### BEGIN SOLUTION' inside the SOLUTION region that starts on line 1",
        ),
        ("x = 1\n### END SOLUTION", "line 2: '### END SOLUTION' without a '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\nx = 1", "line 1: '### BEGIN SOLUTION' is never closed"),
        (
            "### BEGIN SOLUTION\nx = 1\n### END HIDDEN TESTS",
            "line 3: '### END HIDDEN TESTS' closes the SOLUTION region",
        ),
        ("x = 1  ### BEGIN SOLUTION", "line 1: a marker must be alone on its line"),
    ],
)
def test_malformed_markers_name_the_notebook_cell_and_line(source, message):
    with pytest.raises(MarkerError) as error:
        strip(source)
    assert str(error.value).startswith("MarkerError: demo.ipynb: cell 3 (id abc), " + message)


def master_notebook():
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": "3.11.9"},
        "nbgrader": {"x": 1},
    }
    first = new_markdown_cell("# Demo")
    code = new_code_cell(
        "### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nprint(answer)",
        metadata={"tags": ["keep"], "nbgrader": {"solution": True}},
    )
    code.outputs = [new_output("stream", name="stdout", text="42\n")]
    code.execution_count = 7
    hidden = new_code_cell("### BEGIN HIDDEN TESTS\nassert answer == 42\n### END HIDDEN TESTS")
    note = new_markdown_cell("Grading notes", metadata={"tags": ["instructor"]})
    nb.cells = [first, code, hidden, note]
    return nb


def test_student_notebook_clears_outputs_drops_hidden_cells_and_volatile_metadata():
    student = student_notebook(master_notebook(), "demo.ipynb")
    assert [c.cell_type for c in student.cells] == ["markdown", "code"]
    code = student.cells[1]
    assert code.source == "# YOUR CODE HERE\nanswer = ...\nprint(answer)"
    assert code.outputs == []
    assert code.execution_count is None
    assert code.metadata == {"tags": ["keep"]}
    assert student.metadata == {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(student)


def test_a_student_cell_that_is_not_valid_python_is_refused():
    nb = new_notebook()
    nb.cells = [new_code_cell("if True:\n### BEGIN SOLUTION\n    y = 2\n### END SOLUTION")]
    with pytest.raises(MarkerError, match=r"cell 1.*would not be valid Python"):
        student_notebook(nb, "bad.ipynb")


def write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_build_is_deterministic_and_check_finds_stale_versions(tmp_path):
    masters, out = tmp_path / "masters", tmp_path / "student"
    write(masters / "01_demo.ipynb", master_notebook())
    write(masters / "part2" / "02_more.ipynb", master_notebook())
    assert stale(masters, out) == [
        (out / "01_demo.ipynb", "missing"),
        (out / "part2" / "02_more.ipynb", "missing"),
    ]
    assert len(build(masters, out)) == 2
    first = (out / "01_demo.ipynb").read_bytes()
    written = nbformat.reads(first.decode("utf-8"), as_version=4)
    assert all("42" not in c.source and not c.get("outputs") for c in written.cells)
    assert build(masters, out) == []
    assert stale(masters, out) == []
    assert (out / "01_demo.ipynb").read_bytes() == first
    (out / "01_demo.ipynb").write_text("{}")
    assert stale(masters, out) == [(out / "01_demo.ipynb", "out of date")]


def test_cli_build_and_check(tmp_path, capsys):
    masters, out = tmp_path / "m", tmp_path / "s"
    write(masters / "demo.ipynb", master_notebook())
    args = ["notebooks", "check", "--masters", str(masters), "--out", str(out)]
    assert labkit_main(args) == 1
    assert f"{out / 'demo.ipynb'}: missing" in capsys.readouterr().err
    assert labkit_main(["notebooks", "build", "--masters", str(masters), "--out", str(out)]) == 0
    assert f"wrote {out / 'demo.ipynb'}" in capsys.readouterr().out
    assert labkit_main(args) == 0


def test_cli_reports_a_marker_error_in_one_line(tmp_path, capsys):
    nb = new_notebook()
    nb.cells = [new_code_cell("### BEGIN SOLUTION\nx = 1")]
    write(tmp_path / "m" / "broken.ipynb", nb)
    code = labkit_main(
        ["notebooks", "build", "--masters", str(tmp_path / "m"), "--out", str(tmp_path / "s")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.ipynb: cell 1" in err
    assert "never closed" in err
    assert "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_cli_refuses_to_overwrite_the_masters(tmp_path, capsys):
    write(tmp_path / "m" / "demo.ipynb", master_notebook())
    code = labkit_main(
        ["notebooks", "build", "--masters", str(tmp_path / "m"), "--out", str(tmp_path / "m")]
    )
    assert code == 1
    assert "overwrite the solutions" in capsys.readouterr().err


def test_committed_student_notebooks_are_in_sync_with_the_masters():
    masters = ROOT / "instructor" / "masters"
    if not masters.is_dir():
        pytest.skip("no instructor/masters in this checkout")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit",
            "notebooks",
            "check",
            "--masters",
            str(masters),
            "--out",
            str(ROOT / "notebooks"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_demo_master_builds():
    demo = ROOT / "instructor" / "examples" / "demo_grading.ipynb"
    student = student_notebook(nbformat.read(str(demo), as_version=4), demo.name)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text
    assert "YOUR CODE HERE" in text


def test_bound_names_cover_unpacking_and_walrus_but_not_nested_scopes():
    tree = ast.parse(
        "a, (b, *c) = f()\n"
        "if (d := g()):\n"
        "    e: int = 1\n"
        "    e += 1\n"
        "def h():\n    hidden = 1\n"
        "class K:\n    attr = 1\n"
        "sq = [inner for inner in range(3)]\n"
        "obj.field = 1\nobj[key] = 2"
    )
    assert bound_names(tree.body) == ["a", "b", "c", "d", "e", "sq"]


def test_labkit_help_says_what_notebooks_build_and_check_do(capsys):
    try:
        code = labkit_main(["--help"])
    except SystemExit as done:
        code = done.code
    assert code in (0, None)
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("notebooks ")]
    assert "build: write student notebooks from instructor masters" in line
    assert "check: exit 1 if any is stale" in line
    assert "copy" not in line
