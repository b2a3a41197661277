"""``labkit generate transactions|sensors``: stream seeded events to a topic.

The events come from ``labkit.nb.generators`` (deterministic for a seed) and are
sent by an ``EventStream`` at ``--rate`` events/s (0 = as fast as possible) as JSON
values, optionally keyed by a field. A progress line goes to stderr about once a
second; the command ends after ``--count`` events or on Ctrl-C (exit 130), after
flushing what was sent. ``--dry-run`` prints the events as JSON lines instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

from labkit.cli._common import UsageError, add_bootstrap_argument, bootstrap_servers

NAME = "generate"
HELP = "stream generated events (card transactions, sensor readings) to a topic"
PROGRESS_EVERY_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=("transactions", "sensors"), help="what to generate")
    parser.add_argument("--topic", help="the topic to send to (default: the kind's name)")
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--rate",
        type=float,
        default=1.0,
        metavar="N",
        help="events per second; 0 = as fast as possible (default 1)",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        metavar="N",
        help="stop after N events (default: run until Ctrl-C)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--suspicious",
        type=float,
        default=0.05,
        metavar="SHARE",
        help="transactions: share of suspicious ones, 0..1 (default 0.05)",
    )
    parser.add_argument(
        "--late",
        type=float,
        default=0.1,
        metavar="SHARE",
        help="sensors: share of late, out-of-order readings, 0..1 (default 0.1)",
    )
    parser.add_argument(
        "--max-lateness",
        type=float,
        default=15,
        metavar="S",
        help="sensors: how late a late reading can be, in seconds (default 15)",
    )
    parser.add_argument(
        "--key", metavar="FIELD", help="key each record by this field, e.g. user_id or sensor_id"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the events as JSON lines instead of sending them",
    )


def _events(args: argparse.Namespace):
    from labkit import nb

    if args.kind == "transactions":
        return nb.transactions(seed=args.seed, suspicious_share=args.suspicious, count=args.count)
    return nb.sensors(
        seed=args.seed, late_share=args.late, max_lateness_s=args.max_lateness, count=args.count
    )


def _validate(args: argparse.Namespace) -> None:
    if args.rate < 0:
        raise UsageError("--rate must be >= 0 (0 = as fast as possible)")
    if args.count is not None and args.count < 0:
        raise UsageError("--count must be >= 0")
    fields = {"transactions": ("tx_id", "user_id", "store", "category"), "sensors": ("sensor_id",)}[
        args.kind
    ]
    if args.key is not None and args.key not in fields:
        raise UsageError(f"--key {args.key}: {args.kind} can be keyed by {', '.join(fields)}")


def run(args: argparse.Namespace, *, out=None, err=None) -> int:
    from labkit.nb.stream import EventStream

    out = out or sys.stdout
    err = err or sys.stderr
    _validate(args)
    events = _events(args)
    if args.dry_run:
        for event in itertools.islice(events, args.count if args.count is not None else 10):
            print(json.dumps(event, ensure_ascii=False), file=out)
        return 0
    topic = args.topic or args.kind
    servers = bootstrap_servers(args.bootstrap_server)
    rate = args.rate or None
    key = (lambda e, f=args.key: e[f].encode("utf-8")) if args.key else None
    total = f"/{args.count}" if args.count is not None else ""
    pace = f"{args.rate:g}/s" if rate else "as fast as possible"
    print(
        f"sending {args.kind} to {topic!r} at {', '.join(servers)} ({pace}, seed {args.seed}); "
        "Ctrl-C stops",
        file=err,
        flush=True,
    )
    stream = EventStream(servers, topic, events, rate=rate, key=key)
    stream.start()
    try:
        while not stream.join(timeout=PROGRESS_EVERY_S):
            print(f"sent {stream.sent}{total} to {topic}", file=err, flush=True)
    except KeyboardInterrupt:
        stream.stop()
        print(f"stopped: sent {stream.sent}{total} to {topic}", file=err, flush=True)
        raise
    print(f"done: sent {stream.sent} {args.kind} to {topic}", file=err, flush=True)
    return 0
