"""Checks that look at the broker: what a topic really holds, what a group really committed,
whether the records a student hands in really are on the broker.

Theory of operation
-------------------
A check of a Kafka exercise must not trust the notebook's own lists (``sent``, a count
typed in by hand): it asks the broker. The helpers here open short-lived clients of
their own (no consumer group, nothing committed, raw bytes without deserializers), read
what they need and close them. Every failure a student can cause becomes ``Wrong`` with a
hint that says what to do (a missing topic, a group that committed nothing, a record that
is not where it claims to be); a broker that cannot be reached becomes ``Wrong`` too,
naming the address and ``nb.doctor()``.

The broker's address is the lab's usual one: ``bootstrap=None`` means
``$LABKIT_BOOTSTRAP``, else ``localhost:9092`` (``labkit._address.bootstrap_list``), which
is what the notebooks' own clients use, so ``nb.check`` passes nothing. Topic and group
names are used as given: pass the full names (``nb.topic("nb03-tx")`` gives
``anna.nb03-tx`` on a shared broker); ``full_topic``/``full_group`` add this student's
prefix to a bare name (they are idempotent).

- ``read_topic(topic)``: every record of every partition, from the beginning to the end
  offsets taken when the read starts, ordered by (partition, offset).
- ``end_offsets(topic)``, ``group_offsets(group, topic)``, ``expect_group_done(group,
  topic)``: a group's committed offsets against the end offsets.
- ``verify_records(records, topic=)``: each ``ConsumerRecord`` is on the broker at its
  topic/partition/offset with the same key and value.

Not thread-safe per call (each call owns its clients); calls may run in parallel.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from labkit._address import bootstrap_list
from labkit.course.checks import Wrong, counted
from labkit.i18n import _
from labkit.nb.names import naming

__all__ = [
    "GroupOffsets",
    "end_offsets",
    "expect_group_done",
    "full_group",
    "full_topic",
    "group_offsets",
    "read_topic",
    "verify_records",
]

READ_TIMEOUT_S = 15.0
"""How long ``read_topic`` may take before it reports the broker as too slow."""
_RECORD_FIELDS = ("topic", "partition", "offset", "key", "value")


def full_topic(name: str) -> str:
    """``name`` with this student's prefix on a shared broker (unchanged otherwise)."""
    return naming().topic(name)


def full_group(name: str) -> str:
    """A consumer group id with this student's prefix on a shared broker."""
    return naming().group(name)


def _unreachable(exc: BaseException, bootstrap: str | list[str] | None) -> Wrong:
    where = ",".join(bootstrap_list(bootstrap))
    text = " ".join(str(exc).split()) or type(exc).__name__
    return Wrong(
        _(
            "the check could not ask the broker at {where} ({text}): is it running? Run nb.doctor() to see what is wrong, then run this cell again"
        ).format(where=where, text=text)
    )


@contextmanager
def _client(kind: str, bootstrap: str | list[str] | None):
    # labkit's clients (over kafka-python's when the lab points at another Kafka)
    from labkit.client import KafkaAdminClient, KafkaConsumer
    from labkit.nb._connect import client_errors

    servers = bootstrap_list(bootstrap)
    errors = client_errors()
    try:
        if kind == "admin":
            client = KafkaAdminClient(bootstrap_servers=servers, client_id="labkit-check")
        else:
            client = KafkaConsumer(
                bootstrap_servers=servers,
                client_id="labkit-check",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
    except errors as exc:
        raise _unreachable(exc, bootstrap) from None
    try:
        yield client
    except errors as exc:
        raise _unreachable(exc, bootstrap) from None
    finally:
        try:
            client.close()
        except errors:  # closing must not hide the check's result
            pass


def _partitions(consumer: Any, topic: str) -> list:
    from labkit.client import TopicPartition

    parts = sorted(consumer.partitions_for_topic(topic) or ())  # kafka-python: None
    if not parts:
        raise Wrong(
            _(
                "the topic {topic!r} does not exist on the broker: run the cells that create it and write to it (from the top of the notebook), then this check again"
            ).format(topic=topic)
        )
    return [TopicPartition(topic, p) for p in parts]


def end_offsets(topic: str, *, bootstrap: str | list[str] | None = None) -> dict[int, int]:
    """``{partition: end offset}`` of ``topic`` (the offset its next record will get).

    Raises ``Wrong`` when the topic does not exist or the broker cannot be reached.
    """
    with _client("consumer", bootstrap) as consumer:
        parts = _partitions(consumer, topic)
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}


def read_topic(
    topic: str,
    *,
    bootstrap: str | list[str] | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> list:
    """Every record of ``topic`` (all partitions, earliest to the end offsets when called).

    Returns raw ``ConsumerRecord``s (key and value are bytes or None) ordered by
    (partition, offset). Raises ``Wrong`` for a missing topic, an unreachable broker,
    or a read that does not reach the end offsets within ``timeout_s``.
    """
    with _client("consumer", bootstrap) as consumer:
        parts = _partitions(consumer, topic)
        ends = consumer.end_offsets(parts)
        return _read_until(consumer, ends, {}, timeout_s)


def _read_until(consumer: Any, ends: Mapping, starts: Mapping, timeout_s: float) -> list:
    """Read ``[starts.get(tp, beginning), ends[tp])`` of each partition."""
    from labkit._clock import REAL_CLOCK

    wanted = {tp: end for tp, end in ends.items() if end > starts.get(tp, 0)}
    if not wanted:
        return []
    consumer.assign(list(wanted))
    beginnings = consumer.beginning_offsets(list(wanted))
    for tp in wanted:
        consumer.seek(tp, max(starts.get(tp, 0), beginnings[tp]))
    records: list = []
    deadline = REAL_CLOCK.monotonic() + timeout_s
    while any(consumer.position(tp) < end for tp, end in wanted.items()):
        if REAL_CLOCK.monotonic() > deadline:
            raise Wrong(
                _(
                    "the broker did not return the records of {sorted_value} within {timeout_s:.0f} s: it may be overloaded; run this check again"
                ).format(sorted_value=sorted({tp.topic for tp in wanted}), timeout_s=timeout_s)
            )
        for tp, batch in consumer.poll(timeout_ms=200).items():
            records.extend(r for r in batch if r.offset < wanted[tp])
    return sorted(records, key=lambda r: (r.partition, r.offset))


@dataclass(frozen=True)
class GroupOffsets:
    """One partition of a group: what it committed (None: nothing) and the end offset."""

    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        """Records not committed yet (all of them when nothing was committed)."""
        return self.end - (self.committed or 0)


def group_offsets(
    group: str, topic: str, *, bootstrap: str | list[str] | None = None
) -> list[GroupOffsets]:
    """The group's committed offset and the end offset of each partition of ``topic``.

    Raises ``Wrong`` when the topic does not exist or the broker cannot be reached.
    """
    ends = end_offsets(topic, bootstrap=bootstrap)
    with _client("admin", bootstrap) as admin:
        from labkit.client import TopicPartition

        asked = [TopicPartition(topic, p) for p in sorted(ends)]
        committed = admin.list_consumer_group_offsets(group, partitions=asked)
    rows = []
    for tp in asked:
        meta = committed.get(tp)
        offset = None if meta is None or meta.offset < 0 else meta.offset
        rows.append(GroupOffsets(tp.partition, offset, ends[tp.partition]))
    return rows


def expect_group_done(group: str, topic: str, *, bootstrap: str | list[str] | None = None) -> None:
    """Raise ``Wrong`` unless ``group`` committed the end offset of every partition of ``topic``.

    The hint names the first partition that is behind, and why that usually happens.
    """
    rows = group_offsets(group, topic, bootstrap=bootstrap)
    if all(row.committed is None for row in rows) and any(row.end for row in rows):
        raise Wrong(
            _(
                "the group {group!r} has committed no offset of {topic!r}: give the consumer group_id={group!r} and commit (consumer.commit(), or close() it with enable_auto_commit) after processing"
            ).format(group=group, topic=topic)
        )
    for row in rows:
        if row.committed is not None and row.committed > row.end:
            raise Wrong(
                _(
                    "the group {group!r} committed offset {committed} on partition {partition} of {topic!r}, past its end ({end}): commit the positions the consumer reached, not numbers of your own"
                ).format(
                    group=group,
                    committed=row.committed,
                    partition=row.partition,
                    topic=topic,
                    end=row.end,
                )
            )
        if row.lag:
            raise Wrong(
                _(
                    "the group {group!r} is {counted} behind on partition {partition} of {topic!r} (committed {committed}, end {end}): process every record, then commit"
                ).format(
                    group=group,
                    counted=counted(row.lag, "record", "records"),
                    partition=row.partition,
                    topic=topic,
                    committed=row.committed,
                    end=row.end,
                )
            )


# -- records handed in by the student ---------------------------------------------------


def _decoded(raw: bytes | None) -> list:
    """What a student's deserializer may have turned ``raw`` into: bytes, str or JSON."""
    if raw is None:
        return [None]
    forms: list = [raw]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return forms
    forms.append(text)
    try:
        forms.append(json.loads(text))
    except ValueError:
        pass
    return forms


def _matches(mine: object, raw: bytes | None, decode: Callable | None) -> bool:
    if decode is not None and raw is not None:
        return mine == decode(raw)
    if isinstance(mine, bytearray):
        mine = bytes(mine)
    return any(mine == form and type(mine) is type(form) for form in _decoded(raw))


def _as_records(records: object) -> list:
    if isinstance(records, Mapping):  # what poll() returns: {TopicPartition: [records]}
        records = [r for batch in records.values() for r in batch]
    if isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise Wrong(
            _("give a list of the ConsumerRecords your consumer returned, got {name}").format(
                name=type(records).__name__
            )
        )
    items = list(records)
    for item in items:
        if isinstance(item, Mapping) or not all(hasattr(item, f) for f in _RECORD_FIELDS):
            raise Wrong(
                _(
                    "give the ConsumerRecords themselves (they carry topic, partition and offset), not {name}s: e.g. records = [record for record in consumer]; you can still use record.value"
                ).format(name=type(item).__name__)
            )
    return items


def verify_records(
    records: object,
    *,
    topic: str | None = None,
    bootstrap: str | list[str] | None = None,
    decode: Callable[[bytes], Any] | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> list:
    """Check that every record is on the broker; return the broker's raw records, same order.

    ``records`` are ``ConsumerRecord``s (or poll()'s ``{TopicPartition: [...]}``). Each must
    exist at its topic/partition/offset with the same key and value: equal as bytes, or
    as the str or JSON those bytes decode to (a deserializer's result), or equal to
    ``decode(raw)`` when ``decode`` is given. With ``topic`` every record must come from it
    (the bare name is fine on a shared broker). Raises ``Wrong`` naming the first record
    that does not match and what to do.
    """
    items = _as_records(records)
    if topic is not None:
        wanted = full_topic(topic)
        for item in items:
            if item.topic != wanted and item.topic != topic:
                raise Wrong(
                    _(
                        "a record comes from {topic!r}, not from {wanted!r}: read the notebook's topic"
                    ).format(topic=item.topic, wanted=wanted)
                )
    by_partition: dict[tuple[str, int], list] = {}
    for item in items:
        ok = isinstance(item.partition, int) and isinstance(item.offset, int) and item.offset >= 0
        if not ok:
            raise Wrong(
                _(
                    "a record has partition {partition!r} and offset {offset!r}: hand in the records as the consumer returned them, unchanged"
                ).format(partition=item.partition, offset=item.offset)
            )
        by_partition.setdefault((item.topic, item.partition), []).append(item.offset)
    found = _fetch(by_partition, bootstrap, timeout_s)
    result = []
    for item in items:
        raw = found.get((item.topic, item.partition, item.offset))
        where = _("{topic!r} partition {partition} offset {offset}").format(
            topic=item.topic, partition=item.partition, offset=item.offset
        )
        if raw is None:
            raise Wrong(
                _(
                    "there is no record at {where} on the broker: hand in the records the consumer returned, not records you made yourself"
                ).format(where=where)
            )
        if not _matches(item.key, raw.key, None) or not _matches(item.value, raw.value, decode):
            raise Wrong(
                _(
                    "your record at {where} is not what the broker holds there (value {short_value}): hand in the records unchanged"
                ).format(where=where, short_value=_short(raw.value))
            )
        result.append(raw)
    return result


def _fetch(
    wanted: Mapping[tuple[str, int], list[int]],
    bootstrap: str | list[str] | None,
    timeout_s: float,
) -> dict[tuple[str, int, int], Any]:
    """The broker's records at the offsets asked for: ``{(topic, partition, offset): record}``."""
    from labkit.client import TopicPartition

    if not wanted:
        return {}
    with _client("consumer", bootstrap) as consumer:
        starts, ends = {}, {}
        for (topic, partition), offsets in wanted.items():
            if partition not in (consumer.partitions_for_topic(topic) or ()):
                raise Wrong(
                    _(
                        "there is no partition {partition} of {topic!r} on the broker: hand in the records the consumer returned (and do not delete the topic before the check)"
                    ).format(partition=partition, topic=topic)
                )
            tp = TopicPartition(topic, partition)
            starts[tp], ends[tp] = min(offsets), max(offsets) + 1
        log_ends = consumer.end_offsets(list(ends))
        ends = {tp: min(end, log_ends[tp]) for tp, end in ends.items()}
        records = _read_until(consumer, ends, starts, timeout_s)
    return {(r.topic, r.partition, r.offset): r for r in records}


def _short(value: bytes | None) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
