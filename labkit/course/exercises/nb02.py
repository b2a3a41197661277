"""Notebook 02, the producer: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``02.1`` (2 points) Send 20 transactions and return their metadata
- ``02.2`` (1 points) Flush, then count what the broker stored

How the notebook calls them:

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 02.1 | ``nb.check("02.1", metadata, topic=T, count=20)``       | ``[future.get(timeout=10), ...]``       |
| 02.2 | ``nb.check("02.2", in_topic, topic=T, sent=30)``        | records the topic holds after flush()   |

Both ask the broker: every (partition, offset) of 02.1 must be stored, and 02.2's count
must be what the topic holds when the check runs (a number typed in while the records
still wait in the producer's buffer fails). ``nb.reset("02.2")`` empties its topic.
"""

from __future__ import annotations

from labkit.course import broker_checks
from labkit.course.checks import Registry, Wrong, counted, expect
from labkit.i18n import N_, _
from labkit.nb.names import prefix_hint, same_topic

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise("02.1", points=2, title=N_("Send 20 transactions and return their metadata"))
def send_and_collect(metadata, *, topic, count=20):
    """metadata: the RecordMetadata of each send, in send order (``future.get()``)."""
    expect(
        metadata is not None,
        _("your answer is None: collect future.get(timeout=10) of each send in a list"),
    )
    items = list(metadata)
    if items and hasattr(items[0], "get") and not hasattr(items[0], "offset"):
        raise Wrong(
            _(
                "these are futures, not metadata: call .get(timeout=10) on each future to wait for the broker's answer"
            )
        )
    expect(
        len(items) == count,
        _(
            "expected {count} RecordMetadata, got {n_items}: send {count} transactions and keep the metadata of each"
        ).format(count=count, n_items=len(items)),
    )
    for item in items:
        expect(
            all(hasattr(item, a) for a in ("topic", "partition", "offset")),
            _("{name} is not RecordMetadata: keep what future.get() returns").format(
                name=type(item).__name__
            ),
        )
    topics = {m.topic for m in items}
    found = topics.pop() if len(topics) == 1 else sorted(topics)
    expect(
        same_topic(found, topic),
        _(
            "the records went to {found!r}, not to {topic!r}: pass the notebook's topic name to send(){prefix_hint_found}"
        ).format(found=found, topic=topic, prefix_hint_found=prefix_hint(found, topic)),
    )
    places = [(m.partition, m.offset) for m in items]
    expect(
        all(isinstance(o, int) and o >= 0 for _, o in places),
        _("some offsets are not >= 0: use the metadata of acknowledged sends"),
    )
    expect(
        len(set(places)) == len(places),
        _(
            "the same (partition, offset) appears twice: send each transaction once and keep its own metadata"
        ),
    )
    ends = broker_checks.end_offsets(broker_checks.full_topic(topic))
    for partition, offset in places:
        expect(
            partition in ends and offset < ends[partition],
            _(
                "the broker has no record at partition {partition!r}, offset {offset} of {topic!r}: keep the RecordMetadata that future.get() returns, unchanged"
            ).format(partition=partition, offset=offset, topic=topic),
        )


@exercise(
    "02.2",
    points=1,
    title=N_("Flush, then count what the broker stored"),
    topics={"nb02-flush": 1},
)
def flushed_count(in_topic, *, topic, sent):
    """in_topic: how many records the topic holds (from end offsets) after flushing.

    The check counts the topic on the broker itself, at once: the answer must be that
    number, and the broker must hold every record sent.
    """
    expect(
        isinstance(in_topic, int) and not isinstance(in_topic, bool),
        _(
            "give the number of records as an int, got {name}: add up the end offsets of the topic's partitions"
        ).format(name=type(in_topic).__name__),
    )
    full = broker_checks.full_topic(topic)
    ends = broker_checks.end_offsets(full)
    stored = len(broker_checks.read_topic(full)) if any(ends.values()) else 0
    expect(
        stored != 0,
        _(
            "the broker's {topic!r} is still empty: the records wait in the producer's buffer; call producer.flush() before you count"
        ).format(topic=topic),
    )
    expect(
        stored >= sent,
        _(
            "the broker holds only {stored} of the {sent} records: call producer.flush() first (it waits until the broker has them all), then read the end offsets"
        ).format(stored=stored, sent=sent),
    )
    expect(
        stored == sent,
        _(
            "the broker's {topic!r} holds {counted} but {sent} were sent: the sending cell ran more than once"
        ).format(topic=topic, counted=counted(stored, "record", "records"), sent=sent),
    )
    expect(
        in_topic == stored,
        _(
            "the broker holds {stored} records, your answer says {in_topic}: ask the broker (the end offset of the partition), do not write the number yourself"
        ).format(stored=stored, in_topic=in_topic),
    )
