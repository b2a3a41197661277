"""``labkit notebooks build|check``: student versions of the instructor's master notebooks.

``build`` writes ``<out>/<name>.ipynb`` for every master (solutions replaced by
stubs, hidden tests removed, outputs cleared; see ``labkit.course.authoring``), in every
language: the Polish masters in ``instructor/masters/pl/`` become ``notebooks/pl/``
(docs/languages.md). ``check`` writes nothing and exits 1 naming every student version
that is missing or differs from what ``build`` would write, and every translated master
that drifted from its English master (``labkit.course.translations``) -- CI runs it so
the committed student notebooks never fall behind their masters, nor one language
behind the other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labkit.cli._common import UsageError

NAME = "notebooks"
HELP = "build the student notebooks from the instructor's masters, or check they are in sync"

DEFAULT_MASTERS = Path("instructor") / "masters"
DEFAULT_OUT = Path("notebooks")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("build", "check"),
        help="build: write the student versions; check: exit 1 if any is out of date",
    )
    parser.add_argument(
        "--masters",
        type=Path,
        default=DEFAULT_MASTERS,
        metavar="DIR",
        help=f"folder (or one .ipynb) of master notebooks (default: {DEFAULT_MASTERS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder of the student notebooks (default: {DEFAULT_OUT})",
    )


def run(args: argparse.Namespace) -> int:
    from labkit.course import authoring, translations

    if not args.masters.exists():
        raise UsageError(
            f"no masters at {args.masters}: run this from the top of the labkit "
            "checkout, or pass --masters DIR"
        )
    masters = authoring.master_files(args.masters)
    if not masters:
        print(f"no master notebooks (*.ipynb) under {args.masters}; nothing to do")
        return 0
    if args.action == "build":
        written = authoring.build(args.masters, args.out)
        for path in written:
            print(f"wrote {path}")
        print(
            f"{len(masters)} master(s), {len(written)} student version(s) written, "
            f"{len(masters) - len(written)} already up to date"
        )
        return 0
    problems = authoring.stale(args.masters, args.out)
    for path, reason in problems:
        print(f"{path}: {reason}", file=sys.stderr)
    drift = translations.drift(args.masters)
    for problem in drift:
        print(problem, file=sys.stderr)
    if drift:
        print(
            f"{len(drift)} difference(s) between the languages' masters beyond comments and "
            "text: a translation changes only what a student reads (docs/languages.md)",
            file=sys.stderr,
        )
    if problems:
        print(
            f"{len(problems)} student notebook(s) out of sync with {args.masters}: run "
            f"`labkit notebooks build --masters {args.masters} --out {args.out}` and commit "
            "the result",
            file=sys.stderr,
        )
        return 1
    if drift:
        return 1
    print(f"{len(masters)} student notebook(s) in {args.out} are up to date")
    return 0
