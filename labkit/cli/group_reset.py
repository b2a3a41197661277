"""``labkit consumer-groups --reset-offsets``: the options' values and the reset plan.

Pure functions, as Kafka's ConsumerGroupCommand computes them: ``parse_topic_specs``
(``--topic t`` / ``t:0,2``), ``parse_datetime`` (``--to-datetime``), ``parse_duration``
(``--by-duration``, ISO-8601) and ``reset_offsets`` (the new offset of each partition for
one scope, clamped to [log start, log end]). No I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from labkit.cli._common import CommandError, UsageError
from labkit.cli.group_client import TP

RESET_SCOPES = (
    "to_earliest",
    "to_latest",
    "to_offset",
    "shift_by",
    "to_datetime",
    "by_duration",
    "to_current",
)


class GroupCommandError(CommandError):
    """A failure printed as ``Error: <message>`` plus a hint; exit code 1."""


def parse_topic_specs(values: list[str]) -> list[tuple[str, list[int] | None]]:
    """``["t", "u:0,2"]`` -> ``[("t", None), ("u", [0, 2])]``. Raises UsageError."""
    specs = []
    for value in values:
        topic, sep, parts = value.partition(":")
        if not topic:
            raise UsageError(f"--topic {value!r} has no topic name; use TOPIC or TOPIC:0,1")
        if not sep:
            specs.append((topic, None))
            continue
        try:
            specs.append((topic, sorted({int(p) for p in parts.split(",") if p.strip()})))
        except ValueError:
            raise UsageError(
                f"--topic {value!r}: partitions must be numbers, e.g. {topic}:0,1"
            ) from None
    return specs


def parse_datetime(text: str) -> int:
    """Kafka's ``--to-datetime`` (``YYYY-MM-DDTHH:mm:SS.sss``, optional zone; local time
    without one) as ms since the epoch. Raises UsageError."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--to-datetime {text!r} is not a date-time; use "
            "YYYY-MM-DDTHH:mm:SS.sss, e.g. 2024-03-01T12:00:00.000"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp() * 1000)


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> int:
    """An ISO-8601 duration (``PT15M``, ``P1DT2H``) in ms. Raises UsageError."""
    match = _DURATION.match(text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT"):
        raise UsageError(
            f"--by-duration {text!r} is not a duration; use e.g. PT15M "
            "(15 minutes) or P1DT2H (1 day 2 hours)"
        )
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return int(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000)


def reset_offsets(
    scope: str,
    value: Any,
    partitions: list[TP],
    committed: dict[TP, int | None],
    earliest: dict[TP, int],
    latest: dict[TP, int],
    by_time: dict[TP, int] | None = None,
) -> dict[TP, int]:
    """The new offset of each partition for one ``--reset-offsets`` scope, clamped to
    [log start, log end] as Kafka does. Raises GroupCommandError."""
    result = {}
    for tp in partitions:
        low, high = earliest[tp], latest[tp]
        if scope == "to_earliest":
            target = low
        elif scope == "to_latest":
            target = high
        elif scope == "to_offset":
            target = value
        elif scope == "shift_by":
            if committed.get(tp) is None:
                raise GroupCommandError(
                    f"Cannot shift offset for partition {tp[0]}-{tp[1]} since there is no "
                    "current committed offset",
                    "Use --to-earliest, --to-latest or --to-offset for it first.",
                )
            target = committed[tp] + value
        elif scope in ("to_datetime", "by_duration"):
            found = (by_time or {}).get(tp, -1)
            target = high if found is None or found < 0 else found
        else:  # to_current
            current = committed.get(tp)
            target = high if current is None else current
        result[tp] = min(max(target, low), high)
    return result
