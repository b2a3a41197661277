"""Notebook 01, topics and the console tools: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``01.1`` (1 points) Create a topic with 4 partitions and describe it
- ``01.2`` (2 points) Count the records in each partition from offsets

How the notebook calls them:

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 01.1 | ``nb.check("01.1", description, topic=T, partitions=4)`` | ``admin.describe_topics([T])[0]``       |
| 01.2 | ``nb.check("01.2", counts, topic=T, lines=L, num_partitions=4)`` | ``{partition: records}`` from offsets |

Both also ask the broker: the topic must exist with 4 partitions (01.1), and hold the
counted records (01.2). ``nb.reset`` deletes the topic (01.1) or empties it (01.2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from labkit.course import broker_checks
from labkit.course.checks import Registry, counted, expect
from labkit.i18n import N_, _
from labkit.nb.names import prefix_hint, same_topic

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise(
    "01.1",
    points=1,
    title=N_("Create a topic with 4 partitions and describe it"),
    topics={"nb01-payments": None},
)
def describe_new_topic(description, *, topic, partitions=4):
    """description: ``admin.describe_topics([topic])[0]`` (or the list it comes from)."""
    if isinstance(description, list | tuple) and len(description) == 1:
        description = description[0]
    expect(
        isinstance(description, Mapping),
        _("give the dict that admin.describe_topics([{topic!r}])[0] returns, got {name}").format(
            topic=topic, name=type(description).__name__
        ),
    )
    name = description.get("topic", description.get("name"))
    expect(
        same_topic(name, topic),
        _(
            "this describes {name!r}, not {topic!r}: describe the topic you created{prefix_hint_name}"
        ).format(name=name, topic=topic, prefix_hint_name=prefix_hint(name, topic)),
    )
    expect(
        not description.get("error_code"),
        _(
            "the broker answered error_code {description_get} for {topic!r} (the topic does not exist?): create it with admin.create_topics first"
        ).format(description_get=description.get("error_code"), topic=topic),
    )
    parts = description.get("partitions") or []
    expect(
        len(parts) == partitions,
        _(
            "{topic!r} has {counted}, {partitions} wanted: delete it (admin.delete_topics) and create it again with num_partitions={partitions}"
        ).format(
            topic=topic,
            counted=counted(len(parts), "partition", "partitions"),
            partitions=partitions,
        ),
    )
    on_broker = broker_checks.end_offsets(broker_checks.full_topic(topic))
    expect(
        len(on_broker) == partitions,
        _(
            "the broker's {topic!r} has {counted}, not the {partitions} your description shows: describe the topic as it is (admin.describe_topics), do not write the answer by hand"
        ).format(
            topic=topic,
            counted=counted(len(on_broker), "partition", "partitions"),
            partitions=partitions,
        ),
    )


def _partition_of(key: bytes, num_partitions: int) -> int:
    from labkit.client.partitioner import murmur2  # the client's, bit for bit Kafka's

    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def _as_counts(answer) -> dict[int, object]:
    expect(
        isinstance(answer, Mapping),
        _(
            "give a dict {{partition: number of records}}, e.g. {{0: 3, 1: 5, ...}}; got {name}"
        ).format(name=type(answer).__name__),
    )
    return {getattr(key, "partition", key): value for key, value in answer.items()}


@exercise(
    "01.2",
    points=2,
    title=N_("Count the records in each partition from offsets"),
    topics={"nb01-payments": 4},
)
def records_per_partition(answer, *, topic, lines, num_partitions):
    """answer: {partition: end offset - beginning offset}; lines: the key:value lines sent.

    The broker's topic must hold exactly the records of ``lines`` (where their keys put
    them), and the answer must be what it holds.
    """
    want = Counter(
        _partition_of(line.split(":", 1)[0].encode("utf-8"), num_partitions) for line in lines
    )
    got = _as_counts(answer)
    bad = sorted((p for p in got if not (isinstance(p, int) and 0 <= p < num_partitions)), key=str)
    expect(
        not bad,
        _(
            "partition {value!r} does not exist: the topic has partitions 0..{value2} (did you create it with num_partitions={num_partitions}?)"
        ).format(
            value=bad[0] if bad else "", value2=num_partitions - 1, num_partitions=num_partitions
        ),
    )
    expect(
        all(isinstance(v, int) and not isinstance(v, bool) for v in got.values()),
        _("each count must be an int: end_offsets()[tp] - beginning_offsets()[tp]"),
    )
    records = broker_checks.read_topic(broker_checks.full_topic(topic))
    stored = Counter(r.partition for r in records)
    expect(
        len(records) == len(lines),
        _(
            "the broker's {topic!r} holds {counted}, but {n_lines} lines were sent: the sending cell ran more than once (or not at all)"
        ).format(
            topic=topic, counted=counted(len(records), "record", "records"), n_lines=len(lines)
        ),
    )
    expect(
        set(stored) != {0} or set(want) == {0},
        _(
            "all records are in partition 0: was the topic created with {num_partitions} partitions (exercise 01.1) before the records were sent?"
        ).format(num_partitions=num_partitions),
    )
    total = sum(got.values())
    expect(
        total == len(records),
        _(
            "your counts add up to {total}, but the topic holds {n_records}: a partition holds end offset - beginning offset records"
        ).format(total=total, n_records=len(records)),
    )
    for partition in range(num_partitions):
        expect(
            got.get(partition, 0) == stored[partition],
            _(
                "partition {partition}: the broker holds {counted}, you counted {got_get}: take the offsets of every partition of the topic"
            ).format(
                partition=partition,
                counted=counted(stored[partition], "record", "records"),
                got_get=got.get(partition, 0),
            ),
        )
