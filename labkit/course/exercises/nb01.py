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
from labkit.nb.names import prefix_hint, same_topic

EXERCISES = Registry()
exercise = EXERCISES.exercise


@exercise(
    "01.1",
    points=1,
    title="Create a topic with 4 partitions and describe it",
    topics={"nb01-payments": None},
)
def describe_new_topic(description, *, topic, partitions=4):
    """description: ``admin.describe_topics([topic])[0]`` (or the list it comes from)."""
    if isinstance(description, list | tuple) and len(description) == 1:
        description = description[0]
    expect(
        isinstance(description, Mapping),
        f"give the dict that admin.describe_topics([{topic!r}])[0] returns, "
        f"got {type(description).__name__}",
    )
    name = description.get("topic", description.get("name"))
    expect(
        same_topic(name, topic),
        f"this describes {name!r}, not {topic!r}: describe the topic "
        f"you created{prefix_hint(name, topic)}",
    )
    expect(
        not description.get("error_code"),
        f"the broker answered error_code {description.get('error_code')} for {topic!r} "
        "(the topic does not exist?): create it with admin.create_topics first",
    )
    parts = description.get("partitions") or []
    expect(
        len(parts) == partitions,
        f"{topic!r} has {counted(len(parts), 'partition')}, {partitions} wanted: delete it "
        f"(admin.delete_topics) and create it again with num_partitions={partitions}",
    )
    on_broker = broker_checks.end_offsets(broker_checks.full_topic(topic))
    expect(
        len(on_broker) == partitions,
        f"the broker's {topic!r} has {counted(len(on_broker), 'partition')}, not the "
        f"{partitions} your description shows: describe the topic as it is "
        "(admin.describe_topics), do not write the answer by hand",
    )


def _partition_of(key: bytes, num_partitions: int) -> int:
    from labkit.client.partitioner import murmur2  # the client's, bit for bit Kafka's

    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def _as_counts(answer) -> dict[int, object]:
    expect(
        isinstance(answer, Mapping),
        "give a dict {partition: number of records}, e.g. "
        f"{{0: 3, 1: 5, ...}}; got {type(answer).__name__}",
    )
    return {getattr(key, "partition", key): value for key, value in answer.items()}


@exercise(
    "01.2",
    points=2,
    title="Count the records in each partition from offsets",
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
        f"partition {bad[0] if bad else ''!r} does not exist: the topic has "
        f"partitions 0..{num_partitions - 1} (did you create it with "
        f"num_partitions={num_partitions}?)",
    )
    expect(
        all(isinstance(v, int) and not isinstance(v, bool) for v in got.values()),
        "each count must be an int: end_offsets()[tp] - beginning_offsets()[tp]",
    )
    records = broker_checks.read_topic(broker_checks.full_topic(topic))
    stored = Counter(r.partition for r in records)
    expect(
        len(records) == len(lines),
        f"the broker's {topic!r} holds {counted(len(records), 'record')}, but "
        f"{len(lines)} lines were sent: the sending cell ran more than once (or not at all)",
    )
    expect(
        set(stored) != {0} or set(want) == {0},
        f"all records are in partition 0: was the topic created with {num_partitions} "
        "partitions (exercise 01.1) before the records were sent?",
    )
    total = sum(got.values())
    expect(
        total == len(records),
        f"your counts add up to {total}, but the topic holds {len(records)}: a partition "
        "holds end offset - beginning offset records",
    )
    for partition in range(num_partitions):
        expect(
            got.get(partition, 0) == stored[partition],
            f"partition {partition}: the broker holds {counted(stored[partition], 'record')}, "
            f"you counted {got.get(partition, 0)}: take the offsets of every partition "
            "of the topic",
        )
