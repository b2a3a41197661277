"""A poison message: what labkit's consumer (and its delegation to kafka-python) adds to
the exception a deserializer raised, so a student sees where it happened and how to
move on. One wording for both paths."""

from __future__ import annotations

from typing import Any


def annotate_poison(error: BaseException, tp: Any, offset: int, what: str, stays: str) -> None:
    """Add labkit's note and kafka-python's attributes (``topic_partition``, ``offset``,
    ``what``) to ``error``, raised by the ``what`` deserializer on the record at
    ``offset`` of ``tp``; ``stays`` says where the consumer now is."""
    error.add_note(
        f"labkit: the {what}_deserializer raised this on the record at offset {offset} "
        f"of topic '{tp.topic}' partition {tp.partition} (a poison message). {stays} Skip it "
        f"with consumer.seek(TopicPartition('{tp.topic}', {tp.partition}), {offset + 1}), "
        f"or make the {what}_deserializer return None for input it cannot read."
    )
    try:
        error.topic_partition, error.offset, error.what = tp, offset, what  # type: ignore[attr-defined]
    except AttributeError:
        pass  # an exception type with __slots__: the note still says it all
