"""`!labkit` / `!kafka-*.sh` cells: the console tools on the kernel's PATH however Jupyter
was started (issue 18.3), and nb.doctor() saying so when they are not."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from labkit.nb import doctor_checks as d
from labkit.nb import tools_path

SCRIPTS = str(Path(sys.executable).parent)  # the venv's bin/, where pip put the tools
BARE_PATH = os.pathsep.join(p for p in ("/usr/bin", "/bin") if os.path.isdir(p))


def test_the_tools_are_found_in_this_pythons_scripts_folder():
    assert tools_path.scripts_dir() == SCRIPTS


def test_ensure_on_path_puts_the_scripts_folder_first_once():
    env = {"PATH": BARE_PATH}
    assert tools_path.missing_tools(env) == list(tools_path.TOOLS)
    assert tools_path.ensure_on_path(env) is True
    assert env["PATH"] == SCRIPTS + os.pathsep + BARE_PATH
    assert tools_path.missing_tools(env) == []
    assert tools_path.ensure_on_path(env) is False  # already there: PATH unchanged
    assert env["PATH"] == SCRIPTS + os.pathsep + BARE_PATH


def test_ensure_on_path_leaves_path_alone_when_the_tools_are_not_installed(tmp_path):
    env = {"PATH": BARE_PATH}
    assert tools_path.scripts_dir([str(tmp_path)]) is None
    assert tools_path.ensure_on_path(env, candidates=[str(tmp_path)]) is False
    assert env == {"PATH": BARE_PATH}


def test_importing_nb_makes_bang_labkit_work_without_an_activated_venv(tmp_path):
    """A kernel started as `.venv/bin/jupyter lab` (nothing activated): PATH lacks the venv's
    bin/. After `from labkit import nb`, a shell started by the kernel (what `!labkit` does)
    finds labkit and kafka-topics.sh."""
    code = (
        "import subprocess\n"
        "from labkit import nb\n"
        "for command in ('labkit --help', 'kafka-topics.sh --help'):\n"
        "    done = subprocess.run(command, shell=True, capture_output=True, text=True)\n"
        "    print(command.split()[0], done.returncode)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = BARE_PATH
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["labkit", "0", "kafka-topics.sh", "0"], done.stdout


def test_doctor_fails_when_the_tools_are_not_on_the_kernels_path(monkeypatch):
    monkeypatch.setenv("PATH", BARE_PATH)
    out = io.StringIO()
    report = d.doctor("localhost:1", roundtrip=False, timeout_s=0.5, file=out)
    line = report["console tools"]
    assert line.status == d.FAIL
    assert "labkit" in line.detail
    assert SCRIPTS in line.fix
    assert "restart the kernel" in line.fix
    assert "console tools" in out.getvalue()


def test_doctor_passes_when_the_tools_are_on_path(monkeypatch):
    monkeypatch.setenv("PATH", SCRIPTS + os.pathsep + BARE_PATH)
    assert d.tools_result().status == d.OK


def test_doctor_says_install_when_this_python_has_no_tools():
    result = d.tools_result({"PATH": BARE_PATH}, installed_in=None)
    assert result.status == d.FAIL
    assert "pip install" in result.fix
    assert sys.executable in result.fix
