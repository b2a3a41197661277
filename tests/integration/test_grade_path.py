"""`labkit grade` runs notebooks with the grader's venv bin first on PATH: a notebook
that calls `!labkit ...` (or the kafka-*.sh aliases) works even when the venv is not
activated and PATH holds only the system folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from labkit.course import grading

BIN = str(Path(sys.executable).parent)
CITIES = '["Gdańsk", "Kraków", "Warszawa", "Wrocław"]'


def shell_notebook():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        new_code_cell(
            "import os, shutil, subprocess\n"
            "assert shutil.which('labkit'), os.environ['PATH']\n"
            f"assert os.environ['PATH'].split(os.pathsep)[0] == {BIN!r}"
        ),
        new_code_cell("!labkit --version > version.txt"),
        new_code_cell(
            "assert open('version.txt').read().startswith('labkit'), 'no labkit on PATH'\n"
            "done = subprocess.run(['labkit', '--version'], capture_output=True, "
            "text=True, check=True)\n"
            "print(done.stdout)"
        ),
        new_code_cell(f"from labkit import nb\nnb.check('00.1', {CITIES})"),
    ]
    return nb


def test_a_notebook_finds_the_labkit_command_without_an_activated_venv(tmp_path, monkeypatch):
    assert BIN not in ("/usr/bin", "/bin"), "run the tests from the project's venv"
    path = tmp_path / "shell.ipynb"
    nbformat.write(shell_notebook(), str(path))
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    [result] = grading.grade([path], bootstrap="127.0.0.1:1", cell_timeout=60)
    assert (result.status, result.detail) == ("ok", "")
    assert [(e.exercise, e.status) for e in result.exercises] == [("00.1", "PASS")]
