"""``labkit doctor``: check Python, labkit, the broker and the notebook packages.

Prints one ✔/✘ line per check and, under each failure, what to do. Exit code 0
when everything passed, 1 otherwise. The checks live in ``labkit.nb.doctor_checks``
(the broker's in ``doctor_broker``; also ``nb.doctor()`` in a notebook).
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli._common import add_bootstrap_argument, bootstrap_servers

NAME = "doctor"
HELP = "check this machine and the broker connection, and say how to fix what is wrong"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--no-roundtrip",
        action="store_true",
        help="do not send a test record through a temporary topic",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the broker in each check (default 5)",
    )


def run(args: argparse.Namespace) -> int:
    from labkit.nb.doctor_checks import doctor

    report = doctor(
        bootstrap_servers(args.bootstrap_server),
        roundtrip=not args.no_roundtrip,
        timeout_s=args.timeout,
        file=sys.stdout,
    )
    return 0 if report.ok else 1
