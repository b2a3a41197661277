"""The consumer-groups tool's pure parts: rows, columns, reset plans, option rules."""

from __future__ import annotations

import argparse

import pytest

from labkit.cli._common import UsageError
from labkit.cli.consumer_groups import (
    OFFSET_HEADERS,
    OFFSET_WIDTHS,
    Group,
    GroupCommandError,
    Member,
    add_arguments,
    offset_rows,
    parse_datetime,
    parse_duration,
    parse_topic_specs,
    reset_offsets,
    table,
    validate,
)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    validate(args)
    return args


GROUP = Group(
    "fraud",
    "Stable",
    "range",
    (
        Member("m-1", "c1", "/127.0.0.1", (("t", 0), ("t", 1))),
        Member("m-2", "c2", "/127.0.0.1", ()),
    ),
)


def test_offset_rows_cover_owned_committed_and_idle():
    rows = offset_rows(GROUP, {("t", 0): (5, 10), ("t", 1): (None, 7), ("old", 0): (3, 3)})
    assert rows == [
        ["fraud", "old", 0, 3, 3, 0, None, None, None],  # committed, nobody reads it
        ["fraud", "t", 0, 5, 10, 5, "m-1", "/127.0.0.1", "c1"],
        ["fraud", "t", 1, None, 7, None, "m-1", "/127.0.0.1", "c1"],
        ["fraud", None, None, None, None, None, "m-2", "/127.0.0.1", "c2"],  # idle member
    ]


def test_table_has_kafkas_columns_and_dashes():
    lines = table(OFFSET_HEADERS, offset_rows(GROUP, {("t", 0): (5, 10)}), OFFSET_WIDTHS)
    assert lines[0].split() == [
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
    assert lines[1].split() == ["fraud", "t", "0", "5", "10", "5", "m-1", "/127.0.0.1", "c1"]
    assert lines[3].split() == ["fraud", "-", "-", "-", "-", "-", "m-2", "/127.0.0.1", "c2"]
    starts = [lines[0].index(h) for h in ("TOPIC", "PARTITION", "CURRENT-OFFSET")]
    assert [lines[1].index(v, s) for v, s in zip(("t", "0", "5"), starts, strict=True)] == starts


def test_topic_specs():
    assert parse_topic_specs(["t", "u:2,0"]) == [("t", None), ("u", [0, 2])]
    with pytest.raises(UsageError, match="numbers"):
        parse_topic_specs(["u:x"])


def test_durations_and_datetimes():
    assert parse_duration("PT15M") == 15 * 60_000
    assert parse_duration("P1DT2H") == 26 * 3_600_000
    assert parse_duration("pt1.5s") == 1500
    with pytest.raises(UsageError):
        parse_duration("15 minutes")
    assert parse_datetime("2024-03-01T12:00:00.000+00:00") == 1709294400000
    with pytest.raises(UsageError, match="YYYY"):
        parse_datetime("yesterday")


PARTS = [("t", 0), ("t", 1)]
LOW = {("t", 0): 10, ("t", 1): 0}
HIGH = {("t", 0): 100, ("t", 1): 50}


@pytest.mark.parametrize(
    ("scope", "value", "expected"),
    [
        ("to_earliest", True, [10, 0]),
        ("to_latest", True, [100, 50]),
        ("to_offset", 60, [60, 50]),  # clamped to the log end
        ("to_offset", 0, [10, 0]),  # clamped to the log start
        ("shift_by", -30, [10, 10]),
        ("to_current", True, [20, 50]),  # nothing committed for t-1: the log end
    ],
)
def test_reset_plans(scope, value, expected):
    committed = {("t", 0): 20, ("t", 1): 40 if scope == "shift_by" else None}
    plan = reset_offsets(scope, value, PARTS, committed, LOW, HIGH)
    assert [plan[tp] for tp in PARTS] == expected


def test_reset_by_time_falls_back_to_the_log_end():
    plan = reset_offsets("to_datetime", "x", PARTS, {}, LOW, HIGH, {("t", 0): 42, ("t", 1): -1})
    assert plan == {("t", 0): 42, ("t", 1): 50}


def test_shift_without_a_committed_offset_is_an_error():
    with pytest.raises(GroupCommandError, match="no current committed offset"):
        reset_offsets("shift_by", 1, PARTS, {}, LOW, HIGH)


def test_option_rules():
    assert parse("--list").list
    assert parse("--describe", "--group", "g", "--members").members
    assert parse("--describe", "--group", "g", "--state").state == ""
    assert parse("--list", "--state", "Stable,Empty").state == "Stable,Empty"
    for argv, message in [
        (["--describe"], "--group is required"),
        (["--reset-offsets", "--group", "g", "--to-earliest"], "--topic"),
        (["--reset-offsets", "--group", "g", "--topic", "t"], "--to-earliest"),
        (["--list", "--execute"], "go with --reset-offsets"),
        (["--list", "--members"], "go with --describe"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse(*argv)
    with pytest.raises(SystemExit):
        parse("--reset-offsets", "--group", "g", "--topic", "t", "--to-earliest", "--to-latest")
