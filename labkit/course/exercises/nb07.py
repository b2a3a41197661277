"""Notebook 07, retention and replay: the checks of its exercises (rules in ``labkit.course.exercises``).

07.1-07.4 are judged on the broker (``labkit.course.broker_checks``): the records handed in
must be the topic's records, and what the student predicts or writes is compared with what
the broker holds. 07.5 is a function, checked on records of its own.

| id   | check call                                                   | answer                         |
|------|--------------------------------------------------------------|--------------------------------|
| 07.1 | ``nb.check("07.1", replayed, topic=T, earlier=first)``       | the ConsumerRecords read again |
|      |                                                              | after ``seek_to_beginning()``  |
| 07.2 | ``nb.check("07.2", since, topic=T, since_ms=MS, earlier=..)``| the records from the offset    |
|      |                                                              | ``offsets_for_times`` gives    |
| 07.3 | ``nb.check("07.3", predicted, topic=T)``                     | ``{"earliest": offset,         |
|      |                                                              | "latest": offset}`` after an   |
|      |                                                              | out-of-range reset             |
| 07.4 | ``nb.check("07.4", json_or_tombstone, topic=T, key=b"u03")`` | a value serializer that keeps  |
|      |                                                              | None (a real tombstone)        |
| 07.5 | ``nb.check("07.5", to_table)``                               | ``to_table(records)`` ->       |
|      |                                                              | ``{key: latest value}``        |

``earlier`` (optional) is a list of records read before: handing those in again is not a
replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from labkit.course.checks import Registry, Wrong, call, counted, expect
from labkit.i18n import N_, _

EXERCISES = Registry()
exercise = EXERCISES.exercise


def _not_earlier(records: Iterable[Any], earlier: Iterable[Any], what: str) -> None:
    """Wrong when ``records`` hands in record objects from an earlier read."""
    seen = {id(r) for r in earlier or ()}
    if any(id(r) in seen for r in records):
        raise Wrong(
            _(
                "these are the records of the first read (first), not {what}: move the consumer and read again into a new list"
            ).format(what=what)
        )


def _positions(records: Iterable[Any]) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for r in records}


@exercise("07.1", points=1, title=N_("Replay a topic from the beginning"))
def replay(answer, *, topic, earlier=()):
    """answer: the ConsumerRecords read again after seek_to_beginning()."""
    from labkit.course.broker_checks import read_topic, verify_records

    got = _positions(verify_records(answer, topic=topic))
    _not_earlier(answer, earlier, "a replay")
    want = _positions(read_topic(topic))
    missing = want - got
    expect(
        not missing,
        _(
            "{n_missing} of {counted} not replayed: call seek_to_beginning(tp) on the consumer, then read until the loop ends"
        ).format(n_missing=len(missing), counted=counted(len(want), "record", "records")),
    )


def _first_at_or_after(records: Iterable[Any], since_ms: int) -> dict[int, int]:
    """{partition: first offset whose timestamp >= since_ms}: what offsets_for_times gives."""
    first: dict[int, int] = {}
    for r in records:
        if r.timestamp >= since_ms and (r.partition not in first or r.offset < first[r.partition]):
            first[r.partition] = r.offset
    return first


@exercise("07.2", points=1, title=N_("Replay from a moment in time (offsets_for_times)"))
def replay_since(answer, *, topic, since_ms, earlier=()):
    """answer: the records read after seeking to offsets_for_times({tp: since_ms})."""
    from labkit.course.broker_checks import read_topic, verify_records

    got = _positions(verify_records(answer, topic=topic))
    _not_earlier(answer, earlier, _("a replay from since_ms"))
    on_broker = read_topic(topic)
    starts = _first_at_or_after(on_broker, since_ms)
    expect(
        bool(starts),
        _("no record on the broker is as new as since_ms: run the cells from the send cell again"),
    )
    want = {(r.partition, r.offset) for r in on_broker if r.offset >= starts.get(r.partition, -1)}
    want = {(p, o) for p, o in want if p in starts}
    for partition, start in sorted(starts.items()):
        mine = sorted(o for p, o in got if p == partition)
        expect(
            bool(mine),
            _(
                "nothing read from partition {partition}: seek to the offset offsets_for_times gives and read to the end"
            ).format(partition=partition),
        )
        expect(
            mine[0] >= start,
            _(
                "your replay starts at offset {mine_0}, before since_ms: the first record at or after since_ms is at offset {start}; ask consumer.offsets_for_times({{tp: since_ms}}) and seek() to its .offset"
            ).format(mine_0=mine[0], start=start),
        )
        expect(
            mine[0] == start,
            _(
                "your replay starts at offset {mine_0} and misses offset {start}, the first record at or after since_ms: ask consumer.offsets_for_times({{tp: since_ms}}) and seek() to its .offset"
            ).format(mine_0=mine[0], start=start),
        )
    missing = want - got
    expect(
        not missing,
        _("{counted} after since_ms not read: read until the loop ends").format(
            counted=counted(len(missing), "record", "records")
        ),
    )


# -- 07.3 where an out-of-range consumer continues -------------------------------------------


def _offset(value: Any, policy: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Wrong(
            _("predicted[{policy!r}]: give an offset (an int), got {value!r}").format(
                policy=policy, value=value
            )
        )
    return value


@exercise("07.3", points=1, title=N_("Predict the position after an out-of-range reset"))
def predict_reset(answer, *, topic):
    """answer: {"earliest": offset, "latest": offset} where each consumer continues."""
    from labkit.course.broker_checks import end_offsets, read_topic

    expect(
        isinstance(answer, Mapping) and {"earliest", "latest"} <= set(answer),
        _('give a dict {"earliest": offset, "latest": offset}'),
    )
    ends = end_offsets(topic)
    expect(
        len(ends) == 1,
        _("{topic!r} should have one partition: run its cells again").format(topic=topic),
    )
    (end,) = ends.values()
    stored = [r.offset for r in read_topic(topic)]
    start = stored[0] if stored else end
    earliest = _offset(answer["earliest"], "earliest")
    latest = _offset(answer["latest"], "latest")
    if earliest != start:
        if earliest == 0 and start > 0:
            raise Wrong(
                _(
                    "'earliest' cannot continue at offset 0: that record is gone (that is why the reset happens); it continues at the log start offset, the first one still stored (consumer.beginning_offsets(), LogStartOffset)"
                )
            )
        raise Wrong(
            _(
                "'earliest' continues at the log start offset, {start} now, not {earliest}: see consumer.beginning_offsets() or LogStartOffset"
            ).format(start=start, earliest=earliest)
        )
    if latest != end:
        hint = (
            _("the offset of the last record; 'latest' waits for the next one")
            if latest == end - 1
            else _("not {latest}").format(latest=latest)
        )
        raise Wrong(
            _(
                "'latest' continues at the log end offset, the offset the next record will get ({end} now), {hint}: see consumer.end_offsets()"
            ).format(end=end, hint=hint)
        )


# -- 07.4 a real tombstone -------------------------------------------------------------------

ROW = {"spent": 1234.5, "last_tx": "TX0042"}


@exercise("07.4", points=1, title=N_("Delete a row with a real tombstone"))
def tombstone(fn, *, topic, key):
    """fn: a value serializer (None -> None, else JSON bytes); the key's latest record on the
    broker must be a tombstone (a null value)."""
    from labkit.course.broker_checks import read_topic

    got = call(fn, None)
    expect(
        got is None,
        _(
            "json_or_tombstone(None) returned {got!r}: a tombstone has no value at all; return None for None (json.dumps(None) is the 4 bytes b'null', an ordinary value)"
        ).format(got=got),
    )
    data = call(fn, dict(ROW))
    expect(
        isinstance(data, bytes),
        _(
            "json_or_tombstone({row!r}) returned {name}: a serializer returns bytes (json.dumps(value).encode('utf-8'))"
        ).format(row=ROW, name=type(data).__name__),
    )
    try:
        back = json.loads(data)
    except ValueError:
        back = None
    expect(
        back == ROW,
        _("json_or_tombstone({row!r}) should be that dict as JSON, got {data!r}").format(
            row=ROW, data=data
        ),
    )
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    latest = [r for r in read_topic(topic) if r.key == key_bytes]
    expect(
        bool(latest),
        _(
            "{topic!r} holds no record with the key {key_bytes!r}: send the tombstone (run the whole cell)"
        ).format(topic=topic, key_bytes=key_bytes),
    )
    value = latest[-1].value
    expect(
        value is None,
        _(
            "the latest record of key {key_bytes!r} on the broker has the value {value!r}, not a null value: send it through a producer whose value_serializer returns None for None"
        ).format(key_bytes=key_bytes, value=value),
    )


# -- 07.5 a compacted topic as a table ---------------------------------------------------------


def _record(offset: int, key: str, value: Any) -> Any:
    from labkit.client.structs import ConsumerRecord  # the client (and zmq) only when checked

    return ConsumerRecord(
        "nb07-card-spending",
        0,
        -1,
        offset,
        1_772_438_400_000 + offset,
        0,
        key,
        value,
        [],
        None,
        -1,
        -1 if value is None else 30,
        -1,
    )


def table_cases() -> list[tuple[list[Any], dict[str, Any], str]]:
    """(records in offset order, the table they give, what the case tests)."""
    history = [
        ("u01", {"spent": 120.0}),
        ("u02", {"spent": 80.0}),
        ("u01", {"spent": 450.0}),
        ("u03", {"spent": 60.0}),
        ("u02", {"spent": 95.0}),
        ("u03", None),
        ("u05", None),
        ("u04", {"spent": 10.0}),
        ("u04", None),
        ("u04", {"spent": 33.0}),
    ]
    records = [_record(offset, key, value) for offset, (key, value) in enumerate(history)]
    table = {"u01": {"spent": 450.0}, "u02": {"spent": 95.0}, "u04": {"spent": 33.0}}
    return [
        (records, table, N_("updates, tombstones, and a key written again after its tombstone")),
        (records[:3], {"u01": {"spent": 450.0}, "u02": {"spent": 80.0}}, N_("three updates")),
        ([], {}, N_("no records")),
    ]


def _table_hint(got: Mapping, want: Mapping, what: str) -> str:
    extra = sorted(set(got) - set(want), key=str)
    if extra:
        return _(
            "{what}: {extra_0!r} should not be in the table: its latest record is a tombstone (value None), which deletes the key"
        ).format(what=what, extra_0=extra[0])
    missing = sorted(set(want) - set(got), key=str)
    if missing:
        return _(
            "{what}: {missing_0!r} is missing: a key written again after its tombstone is back in the table, with its newest value"
        ).format(what=what, missing_0=missing[0])
    stale = sorted((k for k in want if got[k] != want[k]), key=str)
    return _(
        "{what}: {stale_0!r} should be {want_item!r}, got {got_item!r}: a later record of a key replaces the earlier one (key the table by record.key, the value is record.value)"
    ).format(what=what, stale_0=stale[0], want_item=want[stale[0]], got_item=got[stale[0]])


@exercise("07.5", points=2, title=N_("A compacted topic as a table"))
def to_table(fn):
    """fn(records) -> {key: latest value}; a tombstone (value None) deletes its key."""
    for records, want, case in table_cases():
        what = _(case)
        got = call(fn, list(records))
        if not records and got in (None, [], ()):
            raise Wrong(_("{what}: return an empty dict").format(what=what))
        expect(
            isinstance(got, Mapping),
            _("{what}: return a dict {{key: value}}, got {name}").format(
                what=what, name=type(got).__name__
            ),
        )
        if dict(got) != want:
            raise Wrong(_table_hint(got, want, what))
