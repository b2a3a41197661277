"""``labkit grade PATH...``: run students' notebooks against a broker and score their checks.

Each notebook runs under nbval in its own process and temporary folder (see
``labkit.course.grading``); a notebook that hangs or crashes costs only that notebook.
``--fresh-broker`` gives each notebook its own throwaway broker, so no notebook
sees the records of the one graded before it.
The score table goes to stdout, one progress line per notebook to stderr, and
``--csv`` / ``--json`` write a gradebook (one row per student) and the full detail.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.cli._common import UsageError, add_bootstrap_argument, bootstrap_servers

NAME = "grade"
HELP = "grade notebooks (files or folders of submissions) and print the score table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="a notebook (student = file name), or a folder of submissions: "
        "notebooks in it (student = file name) or one subfolder per "
        "student (student = folder name)",
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
        "--csv", type=Path, metavar="FILE", help="write a gradebook CSV: one row per student"
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="write every notebook's result, with each check's message, as JSON",
    )


def _progress(result) -> None:
    note = f" ({result.status}: {result.detail})" if result.status not in ("ok", "errors") else ""
    print(
        f"graded {result.student} / {Path(result.notebook).name}: "
        f"{result.points}/{result.max_points} points{note}",
        file=sys.stderr,
        flush=True,
    )


@contextmanager
def _fresh_broker() -> Iterator[str]:
    from labkit.testing import BrokerProcess

    with BrokerProcess() as broker:
        yield broker.bootstrap


def run(args: argparse.Namespace) -> int:
    from labkit.course import grading

    if args.timeout_per_cell <= 0:
        raise UsageError("--timeout-per-cell must be > 0 seconds")
    if args.timeout_per_notebook is not None and args.timeout_per_notebook <= 0:
        raise UsageError("--timeout-per-notebook must be > 0 seconds")
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
    )
    print(grading.table(results))
    if args.csv:
        grading.write_csv(results, args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.json:
        grading.write_json(results, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
