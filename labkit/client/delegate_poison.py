"""Poison messages on a Kafka broker that is not labkit: labkit's semantics over kafka-python.

Theory of operation
-------------------
kafka-python 3.0 runs the deserializers inside its fetcher's record iterator; one that
raises ends that generator, and the next ``poll()`` or ``next()`` then spins forever in
``Fetcher.fetched_records`` (the partition's buffer is neither drained nor advanced), so
``for record in consumer`` never returns, whatever ``consumer_timeout_ms`` says.

So the deserializer labkit hands to kafka-python never raises: ``guarded`` catches the
error and returns a ``Poison`` marker in the record instead. ``DelegatingConsumer`` looks
for markers in what kafka-python returns (``first_poison``) and does what labkit's own
consumer does (docs/client.md, "Poison messages"): ``poll()`` returns the records of a
partition before the bad one, seeks the partition back to it and raises the
deserializer's own exception at the next call; iteration raises it at once. The position
stays at the bad record (it is fetched, and raises, again) until the application seeks
past it. Stateless: the consumer holds the one pending error.
"""

from __future__ import annotations

from typing import Any

from labkit.client.poison import annotate_poison
from labkit.client.structs import TopicPartition


class Poison:
    """What a guarded deserializer returns for input the user's deserializer raised on."""

    __slots__ = ("error", "what")

    def __init__(self, error: Exception, what: str):
        self.error, self.what = error, what


def guarded(function: Any, what: str) -> Any:
    """``function`` (a deserializer) returning a ``Poison`` instead of raising."""

    def deserialize(data: Any) -> Any:
        try:
            return function(data)
        except Exception as exc:  # noqa: BLE001 - the user's deserializer: any error is poison
            return Poison(exc, what)

    return deserialize


def poison_of(record: Any) -> Poison | None:
    for part in (record.key, record.value):
        if isinstance(part, Poison):
            return part
    return None


def poison_error(record: Any, poison: Poison) -> tuple[TopicPartition, Exception]:
    """The user's exception with labkit's note and attributes, and the record's partition."""
    tp = TopicPartition(record.topic, record.partition)
    error = poison.error
    annotate_poison(error, tp, record.offset, poison.what, "The consumer stays at this record.")
    return tp, error


def split_poll(result: dict) -> tuple[dict, list[tuple[TopicPartition, int, Exception]]]:
    """``poll()``'s {tp: records} cut before each partition's first poison record, and
    (partition, offset, error) for each partition cut."""
    good: dict = {}
    cuts = []
    for tp, records in result.items():
        for index, record in enumerate(records):
            poison = poison_of(record)
            if poison is not None:
                _, error = poison_error(record, poison)
                cuts.append((tp, record.offset, error))
                records = records[:index]
                break
        if records:
            good[tp] = records
    return good, cuts
