"""``nb.doctor()`` and ``labkit doctor``: is this machine ready for the lab, and if not, why.

Theory of operation
-------------------
``run_checks()`` runs a fixed list of checks and returns a ``Report`` of ``Result`` lines
(doctor_report.py): Python, labkit, the broker at the lab's address (which kind answers
there, or why none does: doctor_broker.py), the student whose prefix names this
notebook's topics on a shared broker (``labkit.nb.names``), a round trip of one record
through a temporary topic (doctor_broker.py), the console tools on the kernel's PATH and
the notebook packages. Each failure carries ``fix``: the exact next step for a student.
Every check returns its line and never raises; ``doctor()`` prints the report.

Nothing here imports ipywidgets or Jupyter (the packages are only looked up), so
``labkit doctor`` works in a bare terminal. Output is plain text: ✔/✘/! lines, or
OK/FAIL/WARN where the console cannot print those symbols.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

import labkit
from labkit._clock import REAL_CLOCK, Clock
from labkit.i18n import _
from labkit.nb._connect import bootstrap_servers, explain
from labkit.nb.doctor_broker import LOCAL_HOSTS, broker_result, roundtrip_result
from labkit.nb.doctor_report import FAIL, OK, SKIP, WARN, Report, Result
from labkit.nb.names import STUDENT_ENV, Naming, naming

__all__ = ["doctor", "run_checks"]

MIN_PYTHON = (3, 11)
NOTEBOOK_PACKAGES = ("jupyterlab", "ipywidgets", "matplotlib", "nbformat", "tqdm")


def python_result(version: tuple[int, ...]) -> Result:
    text = ".".join(map(str, version[:3]))
    if tuple(version[:2]) >= MIN_PYTHON:
        return Result("Python", OK, text)
    need = ".".join(map(str, MIN_PYTHON))
    return Result(
        "Python",
        FAIL,
        _("{text} is too old").format(text=text),
        _(
            "labkit needs Python {need} or newer: install it (python.org or your package manager), then recreate the environment: `make venv`."
        ).format(need=need),
    )


def student_result(servers: list[str], read: Callable[[], Naming] = naming) -> Result:
    """Who the student is on a shared broker (their prefix), or that the broker is private.

    A private lab pointed at another machine gets a warning: if a class shares that
    broker, the notebooks' clean-up would delete other students' topics.
    """
    name = "student"
    try:
        current = read()
    except Exception as exc:  # noqa: BLE001 - a bad LABKIT_SHARED / no user name: say how to fix it
        return Result(
            name,
            FAIL,
            explain(exc),
            _(
                "Set {student_env} to your name, e.g. {student_env}=anna, then restart the kernel."
            ).format(student_env=STUDENT_ENV),
        )
    if current.shared:
        return Result(name, OK, current.describe())
    hosts = {s.strip().rpartition(":")[0].strip("[]") or s.strip() for s in servers}
    remote = sorted(h for h in hosts if h not in LOCAL_HOSTS and h != "broker")
    if remote:
        return Result(
            name,
            WARN,
            current.describe(),
            _(
                "The broker runs on {remote_0}: if your class shares it, set {student_env}=<your name> before starting Jupyter, so that your topics and groups get your prefix (see docs/classroom.md)."
            ).format(remote_0=remote[0], student_env=STUDENT_ENV),
        )
    return Result(name, OK, current.describe())


def tools_result(
    environ: Mapping[str, str] | None = None, installed_in: str | bool | None = False
) -> Result:
    """Can a ``!labkit ...`` / ``!kafka-topics.sh ...`` cell find the console tools?

    Looks them up on ``environ``'s PATH (default: this kernel's), as the shell of a ``!``
    cell does. ``installed_in``: the folder holding this Python's scripts (False: find it).
    """
    from labkit.nb import tools_path

    name = "console tools"
    missing = tools_path.missing_tools(environ)
    if not missing:
        return Result(name, OK, _("!labkit and !kafka-*.sh cells find them on PATH"))
    folder = tools_path.scripts_dir() if installed_in is False else installed_in
    shown = ", ".join(missing[:2]) + (", ..." if len(missing) > 2 else "")
    if folder is None:
        fix = _(
            "This Python ({executable}) has no console tools: install labkit into it (in a labkit checkout: `pip install -e '.[lab]'` or `make venv`), then restart the kernel."
        ).format(executable=sys.executable)
    else:
        fix = _(
            "They are in {folder}, which is not on this kernel's PATH: restart the kernel and run `from labkit import nb` first (it adds that folder), or start JupyterLab with `labkit lab` (or after activating the virtualenv)."
        ).format(folder=folder)
    return Result(name, FAIL, _("`!` cells cannot find {shown}").format(shown=shown), fix)


def packages_result(
    find: Callable[[str], bool] | None = None, version: Callable[[str], str] | None = None
) -> Result:
    find = find or (lambda m: importlib.util.find_spec(m) is not None)
    version = version or _version
    missing = [p for p in NOTEBOOK_PACKAGES if not find(p)]
    found = ", ".join(f"{p} {version(p)}" for p in NOTEBOOK_PACKAGES if p not in missing)
    if missing:
        return Result(
            "notebook packages",
            FAIL,
            _("missing: {packages}").format(packages=", ".join(missing)),
            _(
                "Install the lab extras: `pip install 'labkit-streaming[lab]'` (in a labkit checkout: `pip install -e '.[lab]'` or `make venv`), then restart JupyterLab."
            ),
        )
    return Result("notebook packages", OK, found)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def run_checks(
    bootstrap: str | list[str] | None = None,
    *,
    roundtrip: bool = True,
    timeout_s: float = 5.0,
    clock: Clock = REAL_CLOCK,
) -> Report:
    """Run every check (never raises for a failed check) and return the report."""
    servers = bootstrap_servers(bootstrap)
    report = Report()
    report.results.append(python_result(tuple(sys.version_info[:3])))
    report.results.append(
        Result(
            "labkit",
            OK,
            _("{version} ({path_dirname})").format(
                version=labkit.__version__, path_dirname=os.path.dirname(labkit.__file__)
            ),
        )
    )
    broker = broker_result(servers, min(timeout_s, 3.0))
    report.results.append(broker)
    report.results.append(student_result(servers))
    if roundtrip and broker.status == FAIL:
        report.results.append(Result("round trip", SKIP, _("skipped: no broker to talk to")))
    elif roundtrip:
        report.results.append(roundtrip_result(servers, timeout_s, clock))
    report.results.append(tools_result())
    report.results.append(packages_result())
    return report


def can_print(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None)
    if not encoding:  # an in-memory text stream holds any text
        return True
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def doctor(
    bootstrap: str | list[str] | None = None,
    *,
    roundtrip: bool = True,
    timeout_s: float = 5.0,
    file: TextIO | None = None,
) -> Report:
    """Check Python, labkit, the broker and the notebook packages; print ✔/✘ lines.

    Each failed line is followed by what to do about it. Returns the ``Report``
    (``report.ok`` is False when something failed). Never raises for a failed check.
    """
    out = file or sys.stdout
    report = run_checks(bootstrap, roundtrip=roundtrip, timeout_s=timeout_s)
    text = report.format()
    print(text if can_print(out, text) else report.format(ascii_only=True), file=out)
    return report
