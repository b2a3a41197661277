"""``labkit grade PATH...``: run students' notebooks against a broker and score their checks.

Each notebook runs under nbval in its own process and temporary folder (see
``labkit.course.grading``); a notebook that hangs or crashes costs only that notebook.
``--fresh-broker`` gives each notebook its own throwaway broker, so no notebook
sees the records of the one graded before it.
The score table goes to stdout, one progress line per notebook to stderr, and
``--csv`` / ``--json`` / ``--report`` write a gradebook (one row per student), the full
detail and an HTML class report; ``--jobs N`` grades N notebooks at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.cli._common import UsageError, add_bootstrap_argument, bootstrap_servers
from labkit.i18n import _

NAME = "grade"
HELP = "grade notebooks (files or folders of submissions) and print the score table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="a class folder with one folder per student (submissions/anna/03_consumer.ipynb, "
        "or nbgrader's submitted/anna/ps1/03_consumer.ipynb), a student's folder "
        "(student = folder name), or a notebook (student = the folder it is in)",
    )
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--fresh-broker",
        action="store_true",
        help="start a throwaway broker for each notebook (on a free port, "
        "temporary data) instead of using --bootstrap-server",
    )
    parser.add_argument(
        "--timeout-per-cell",
        type=float,
        default=60.0,
        metavar="S",
        help="interrupt a cell that runs longer than S seconds (default 60)",
    )
    parser.add_argument(
        "--timeout-per-notebook",
        type=float,
        default=None,
        metavar="S",
        help="stop a whole notebook after S seconds (default: cells x per-cell timeout + 120)",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="grade N notebooks at once (default 1; each runs its own kernel, so N up to "
        "the number of CPUs; with --fresh-broker each also runs its own broker)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write a class report (HTML): pass rate and most frequent hints per exercise, "
        "and a summary per student",
    )
    parser.add_argument(
        "--csv", type=Path, metavar="FILE", help="write a gradebook CSV: one row per student"
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="write every notebook's result, with each check's message, as JSON",
    )
    parser.add_argument(
        "--language",
        metavar="LANG",
        help="the language of the score table and the reports: en or pl (default: "
        "LABKIT_LANG, else the locale); each student's hints stay in their notebook's language",
    )


def _progress(result) -> None:
    note = f" ({result.status}: {result.detail})" if result.status not in ("ok", "errors") else ""
    print(
        _("graded {student} / {notebook}: {points}/{max_points} points{note}").format(
            student=result.student,
            notebook=Path(result.notebook).name,
            points=result.points,
            max_points=result.max_points,
            note=note,
        ),
        file=sys.stderr,
        flush=True,
    )


@contextmanager
def _fresh_broker() -> Iterator[str]:
    from labkit.launch.broker import BrokerProcess

    with BrokerProcess() as broker:
        yield broker.bootstrap


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from labkit import i18n
    from labkit.course import grade_report, grading

    if args.language:
        try:
            i18n.set_language(args.language)
        except ValueError as exc:
            raise UsageError(f"--language: {exc}") from None
    if args.timeout_per_cell <= 0:
        raise UsageError("--timeout-per-cell must be > 0 seconds")
    if args.timeout_per_notebook is not None and args.timeout_per_notebook <= 0:
        raise UsageError("--timeout-per-notebook must be > 0 seconds")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    bootstrap = ",".join(bootstrap_servers(args.bootstrap_server))
    if args.fresh_broker and args.bootstrap_server:
        raise UsageError("give either --fresh-broker or --bootstrap-server, not both")
    results = grading.grade(
        args.paths,
        bootstrap=bootstrap,
        cell_timeout=args.timeout_per_cell,
        notebook_timeout=args.timeout_per_notebook,
        progress=_progress,
        fresh_broker=_fresh_broker if args.fresh_broker else None,
        jobs=args.jobs,
        warn=_warn,
    )
    print(grade_report.table(results))
    for flag, write in (
        (args.csv, grade_report.write_csv),
        (args.json, grade_report.write_json),
        (args.report, grade_report.write_html),
    ):
        if flag:
            write(results, flag)
            print(_("wrote {path}").format(path=flag), file=sys.stderr)
    return 0
