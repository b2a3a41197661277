"""``labkit consumer-groups`` (``kafka-consumer-groups.sh``): list, describe, reset, delete.

Theory of operation: the options are checked first (``validate``); then a
``GroupsClient`` (``group_client.py``) asks the client library: ``KafkaAdminClient``'s
group methods (kafka-python's names) and a consumer without a group for log offsets. What
is printed is built by pure functions (``offset_rows``, ``table`` here, ``reset_offsets``
in ``group_reset.py``) that
follow Kafka's ConsumerGroupCommand: the same columns, the same messages
("Consumer group 'g' has no active members.", "Error: Assignments can only be
reset if the group 'g' is inactive, but the current state is Stable.").
``--reset-offsets`` without ``--execute`` only shows the plan, as in Kafka.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from labkit._clock import REAL_CLOCK, Clock
from labkit.cli._common import (
    UsageError,
    add_bootstrap_argument,
    bootstrap_servers,
    run_reporting,
)
from labkit.cli.group_client import EARLIEST, LATEST, TP, Group, GroupsClient, Member
from labkit.cli.group_reset import (
    RESET_SCOPES,
    GroupCommandError,
    parse_datetime,
    parse_duration,
    parse_topic_specs,
    reset_offsets,
)
from labkit.errors import GroupIdNotFoundError, NoError, NonEmptyGroupError

__all__ = [  # the tool's parts, also for tests (the reset plan and client live beside it)
    "OFFSET_HEADERS",
    "OFFSET_WIDTHS",
    "Group",
    "GroupCommandError",
    "GroupsClient",
    "Member",
    "add_arguments",
    "member_rows",
    "offset_rows",
    "parse_datetime",
    "parse_duration",
    "parse_topic_specs",
    "reset_offsets",
    "run",
    "table",
    "validate",
]

NAME = "consumer-groups"
HELP = "list, describe and reset consumer groups (kafka-consumer-groups.sh)"

INACTIVE = ("Empty", "Dead")


# -- pure helpers ----------------------------------------------------------------------


def table(
    headers: list[str], rows: list[list[Any]], fixed: dict[int, int] | None = None
) -> list[str]:
    """Kafka's left-aligned columns: each as wide as its widest cell (or ``fixed``), the
    last one unpadded. ``None`` cells print as ``-``."""
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = []
    for i, head in enumerate(headers):
        widest = max([len(head)] + [len(row[i]) for row in cells])
        widths.append(max(widest, (fixed or {}).get(i, 0)))

    def line(values: list[str]) -> str:
        padded = [v.ljust(widths[i]) for i, v in enumerate(values[:-1])]
        return " ".join([*padded, values[-1]]).rstrip()

    return [line(headers)] + [line(row) for row in cells]


def offset_rows(group: Group, offsets: dict[TP, tuple[int | None, int | None]]) -> list[list[Any]]:
    """``--describe`` rows: one per partition (owned or committed), then idle members.

    ``offsets`` maps a partition to (committed offset or None, log-end offset or None).
    """
    owner = {tp: m for m in group.members for tp in m.assignment}
    rows = []
    for tp in sorted(set(owner) | set(offsets)):
        current, end = offsets.get(tp, (None, None))
        lag = end - current if current is not None and end is not None else None
        m = owner.get(tp)
        rows.append(
            [
                group.group_id,
                tp[0],
                tp[1],
                current,
                end,
                lag,
                m.member_id if m else None,
                m.host if m else None,
                m.client_id if m else None,
            ]
        )
    for m in sorted(group.members, key=lambda m: m.member_id):
        if not m.assignment:  # idle: more consumers than partitions
            rows.append(
                [group.group_id, None, None, None, None, None, m.member_id, m.host, m.client_id]
            )
    return rows


OFFSET_HEADERS = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
]
OFFSET_WIDTHS = {2: 10, 3: 15, 4: 15, 5: 15}


def member_rows(group: Group, verbose: bool) -> list[list[Any]]:
    rows = []
    for m in sorted(group.members, key=lambda m: m.member_id):
        row = [group.group_id, m.member_id, m.host, m.client_id, len(m.assignment)]
        if verbose:
            by_topic: dict[str, list[int]] = {}
            for t, p in sorted(m.assignment):
                by_topic.setdefault(t, []).append(p)
            row.append(
                ", ".join(f"{t}({','.join(map(str, ps))})" for t, ps in by_topic.items()) or "-"
            )
        rows.append(row)
    return rows


# -- arguments ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_mutually_exclusive_group(required=True)
    actions.add_argument("--list", action="store_true", help="list the consumer groups")
    actions.add_argument(
        "--describe",
        action="store_true",
        help="show a group's partitions, offsets, lag and members",
    )
    actions.add_argument(
        "--reset-offsets",
        action="store_true",
        help="move a group's committed offsets (the group must be inactive)",
    )
    actions.add_argument(
        "--delete",
        action="store_true",
        help="delete a group and its committed offsets (must be inactive)",
    )
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="the consumer group (repeatable for --describe and --delete)",
    )
    parser.add_argument(
        "--all-groups", action="store_true", help="with --describe or --delete: every group"
    )
    parser.add_argument(
        "--members", action="store_true", help="with --describe: one line per member"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="with --describe --members: also each member's partitions",
    )
    parser.add_argument(
        "--state",
        nargs="?",
        const="",
        default=None,
        metavar="STATES",
        help="with --describe: the group's state; with --list: show states "
        "(optionally only these, comma-separated, e.g. Stable,Empty)",
    )
    parser.add_argument(
        "--offsets", action="store_true", help="with --describe: partitions and lag (the default)"
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="TOPIC[:P,...]",
        help="with --reset-offsets: the topic (and partitions) to reset",
    )
    parser.add_argument(
        "--all-topics",
        action="store_true",
        help="with --reset-offsets: every topic the group has offsets for",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--to-earliest", action="store_true", help="reset to the oldest offset")
    scope.add_argument("--to-latest", action="store_true", help="reset to the log end")
    scope.add_argument("--to-offset", type=int, metavar="N", help="reset to offset N")
    scope.add_argument(
        "--shift-by", type=int, metavar="N", help="move the committed offset by N (negative = back)"
    )
    scope.add_argument(
        "--to-datetime",
        metavar="YYYY-MM-DDTHH:mm:SS.sss",
        help="reset to the first record at or after this time",
    )
    scope.add_argument(
        "--by-duration",
        metavar="PnDTnHnMnS",
        help="reset to the first record at or after now minus this duration",
    )
    scope.add_argument(
        "--to-current", action="store_true", help="reset to the current committed offset"
    )
    run_mode = parser.add_mutually_exclusive_group()
    run_mode.add_argument(
        "--dry-run",
        action="store_true",
        help="show the new offsets without changing anything (default)",
    )
    run_mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    parser.add_argument(
        "--timeout", type=int, default=5000, metavar="MS", help="(accepted for compatibility)"
    )


def scope_of(args: argparse.Namespace) -> tuple[str, Any] | None:
    for name in RESET_SCOPES:
        value = getattr(args, name, None)
        if value not in (None, False):
            return name, value
    return None


def validate(args: argparse.Namespace) -> None:
    """Kafka's option rules. Raises UsageError."""
    needs_group = args.describe or args.reset_offsets or args.delete
    if needs_group and not args.group and not args.all_groups:
        raise UsageError("--group is required (or --all-groups), e.g. --group fraud-detection")
    if args.reset_offsets:
        if len(args.group) != 1 or args.all_groups:
            raise UsageError("--reset-offsets works on one --group at a time")
        if not args.topic and not args.all_topics:
            raise UsageError("--reset-offsets needs --topic TOPIC (or --all-topics)")
        if scope_of(args) is None:
            raise UsageError(
                "--reset-offsets needs one of --to-earliest, --to-latest, "
                "--to-offset N, --shift-by N, --to-datetime DT, --by-duration D, "
                "--to-current"
            )
        parse_topic_specs(args.topic)
    elif scope_of(args) is not None or args.dry_run or args.execute:
        raise UsageError(
            "--to-*/--shift-by/--by-duration/--dry-run/--execute go with --reset-offsets"
        )
    if (args.members or args.offsets) and not args.describe:
        raise UsageError("--members and --offsets go with --describe")
    if args.members and args.state is not None:
        raise UsageError("choose one of --members, --offsets and --state")


# -- actions ---------------------------------------------------------------------------------


def _print(lines: list[str], out: TextIO) -> None:
    for line in lines:
        print(line, file=out)


def _list(client: GroupsClient, args: argparse.Namespace, out: TextIO) -> None:
    if args.state is None:
        _print(client.group_ids(), out)
        return
    groups = client.list_groups()
    wanted = {s.strip().lower() for s in args.state.split(",") if s.strip()}
    rows = [[g, s] for g, s in groups if not wanted or s.lower() in wanted]
    _print(table(["GROUP", "STATE"], rows), out)


def _describe_one(
    client: GroupsClient, group_id: str, args: argparse.Namespace, out: TextIO
) -> None:
    group = client.describe(group_id)
    if not group.exists:
        raise GroupCommandError(
            f"Consumer group '{group_id}' does not exist.",
            "See the groups with `labkit consumer-groups --list`.",
        )
    if args.state is not None:
        print(file=out)
        _print(
            table(
                ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"],
                [
                    [
                        group_id,
                        client.coordinator(group_id),
                        group.assignor or None,
                        group.state,
                        len(group.members),
                    ]
                ],
            ),
            out,
        )
        return
    if not group.members:
        print(f"\nConsumer group '{group_id}' has no active members.", file=out)
    elif group.state != "Stable":
        print(f"\nWarning: Consumer group '{group_id}' is rebalancing.", file=out)
    if args.members:
        headers = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"]
        if args.verbose:
            headers.append("ASSIGNMENT")
        print(file=out)
        _print(table(headers, member_rows(group, args.verbose)), out)
        return
    owned = sorted({tp for m in group.members for tp in m.assignment})
    offsets = client.offsets(group_id, None)
    if owned:
        offsets.update(client.offsets(group_id, owned))
    print(file=out)
    _print(table(OFFSET_HEADERS, offset_rows(group, offsets), OFFSET_WIDTHS), out)


def _group_ids(client: GroupsClient, args: argparse.Namespace) -> list[str]:
    return client.group_ids() if args.all_groups else list(args.group)


def _describe(client: GroupsClient, args: argparse.Namespace, out: TextIO) -> None:
    for group_id in _group_ids(client, args):
        _describe_one(client, group_id, args, out)


def _reset_partitions(client: GroupsClient, group_id: str, args: argparse.Namespace) -> list[TP]:
    if args.all_topics:
        return sorted(client.offsets(group_id, None))
    specs = parse_topic_specs(args.topic)
    counts = client.partition_counts(sorted({t for t, _ in specs}))
    partitions: list[TP] = []
    for topic, chosen in specs:
        if topic not in counts:
            raise GroupCommandError(
                f"Topic '{topic}' does not exist.", "See the topics with `labkit topics --list`."
            )
        for p in range(counts[topic]) if chosen is None else chosen:
            if not 0 <= p < counts[topic]:
                raise GroupCommandError(
                    f"Partition {topic}-{p} does not exist "
                    f"({topic} has {counts[topic]} partitions)."
                )
            partitions.append((topic, p))
    return sorted(set(partitions))


def _reset(
    client: GroupsClient, args: argparse.Namespace, out: TextIO, clock: Clock = REAL_CLOCK
) -> None:
    group_id = args.group[0]
    group = client.describe(group_id)
    if group.state not in INACTIVE:
        raise GroupCommandError(
            f"Assignments can only be reset if the group '{group_id}' is inactive, but the "
            f"current state is {group.state}.",
            "Stop (close) the group's consumers, wait for their session to end, and try again.",
        )
    partitions = _reset_partitions(client, group_id, args)
    scope, value = scope_of(args)
    committed = {tp: c for tp, (c, _) in client.offsets(group_id, partitions).items()}
    earliest = client.list_offsets(partitions, EARLIEST)
    latest = client.list_offsets(partitions, LATEST)
    by_time = None
    if scope == "to_datetime":
        by_time = client.list_offsets(partitions, parse_datetime(value))
    elif scope == "by_duration":
        by_time = client.list_offsets(partitions, clock.time_ms() - parse_duration(value))
    targets = reset_offsets(scope, value, partitions, committed, earliest, latest, by_time)
    if not args.dry_run and not args.execute:
        print(
            "WARN: No action will be performed as the --execute option is missing. "
            "Add --dry-run to only see the plan, or --execute to apply it.",
            file=out,
        )
    if args.execute:
        client.commit(group_id, targets)
    print(file=out)
    _print(
        table(
            ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
            [[group_id, t, p, o] for (t, p), o in sorted(targets.items())],
            {2: 10, 3: 15},
        ),
        out,
    )


def _delete(client: GroupsClient, args: argparse.Namespace, out: TextIO) -> None:
    results = client.delete(_group_ids(client, args))
    failed = [(g, error) for g, error in results if error is not NoError]
    done = [g for g, error in results if error is NoError]
    if done:
        names = ", ".join(f"'{g}'" for g in done)
        print(f"Deletion of requested consumer groups ({names}) was successful.", file=out)
    if failed:
        lines = [
            f"* Group '{g}' could not be deleted due to: {error.__name__}: {error.description}"
            for g, error in failed
        ]
        hints = []
        if any(error is NonEmptyGroupError for _, error in failed):
            hints.append("A group can be deleted only when no consumer is in it.")
        if any(error is GroupIdNotFoundError for _, error in failed):
            hints.append("See the groups with `labkit consumer-groups --list`.")
        raise GroupCommandError(
            "Deletion of some consumer groups failed:\n" + "\n".join(lines), " ".join(hints)
        )


ACTIONS = {"list": _list, "describe": _describe, "reset_offsets": _reset, "delete": _delete}


def run(
    args: argparse.Namespace,
    client: GroupsClient | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    validate(args)
    out = out or sys.stdout
    own = client is None

    def act() -> None:
        nonlocal client
        if client is None:
            client = GroupsClient(bootstrap_servers(args.bootstrap_server))
        action = next(name for name in ACTIONS if getattr(args, name))
        ACTIONS[action](client, args, out)

    try:
        return run_reporting(act, prefix="Error: ", out=out, err=err)
    finally:
        if own and client is not None:
            client.close()
