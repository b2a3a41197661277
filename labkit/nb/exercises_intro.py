"""Extra exercises of the first notebooks (00-05), next to the course's in ``exercises.py``.

One decorated check per exercise, registered when ``labkit.nb.exercises`` imports this
module. The same rules hold as there: the first argument is the student's answer, the
keyword arguments are the context the notebook passes, checks are pure (no broker, no
clock) and a wrong answer raises ``Wrong`` with a hint that says what to look at.

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 00.2 | ``nb.check("00.2", biggest)``                           | ``biggest(txs)``: the largest transaction |
| 01.1 | ``nb.check("01.1", description, topic=T, partitions=4)`` | ``admin.describe_topics([T])[0]``       |
| 01.2 | ``nb.check("01.2", counts, lines=L, num_partitions=4)`` | ``{partition: records}`` from offsets   |
| 02.2 | ``nb.check("02.2", in_topic, sent=30)``                 | records the topic holds after flush()   |
| 03.3 | ``nb.check("03.3", read, sent=sent, start=150)``        | what was read after ``seek(tp, 150)``   |
| 04.2 | ``nb.check("04.2", dead, sent=messages)``               | raw values read from the dead-letter topic |
| 05.2 | ``nb.check("05.2", per_user, sent=sent)``               | ``{user_id: tx_ids in read order}``     |
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping

from labkit.nb.checks import Wrong, call, counted, exercise, expect
from labkit.nb.exercises_ref import tx_ids
from labkit.nb.generators import transactions

# -- 00 start here -------------------------------------------------------------------


def _biggest_cases() -> list[list[dict]]:
    return [list(transactions(seed=seed, count=count, suspicious_share=0.1))
            for seed, count in ((2001, 250), (2002, 40))]


@exercise("00.2", points=1, title="Warm-up: find the biggest transaction")
def biggest_transaction(fn):
    """fn(transactions) -> the transaction (dict) with the largest amount, or its tx_id."""
    for data in _biggest_cases():
        want = max(data, key=lambda tx: tx["amount"])
        got = call(fn, [dict(tx) for tx in data])
        if isinstance(got, int | float) and not isinstance(got, bool):
            raise Wrong(f"you returned the number {got!r}: return the whole transaction (the "
                        "dict), e.g. max(transactions, key=lambda tx: tx['amount'])")
        got_id = got.get("tx_id") if isinstance(got, Mapping) else got
        if not isinstance(got_id, str):
            raise Wrong(f"return one transaction (a dict with 'tx_id'), got {type(got).__name__}")
        if got_id == want["tx_id"]:
            continue
        smallest = min(data, key=lambda tx: tx["amount"])
        expect(got_id != smallest["tx_id"], f"{got_id} has the smallest amount "
                                            f"({smallest['amount']:.2f} PLN): look for the largest")
        amounts = {tx["tx_id"]: tx["amount"] for tx in data}
        shown = f" ({amounts[got_id]:.2f} PLN)" if got_id in amounts else ""
        raise Wrong(f"expected {want['tx_id']} ({want['amount']:.2f} PLN), got {got_id}{shown}: "
                    "compare the 'amount' field of every transaction")


# -- 01 topics and console -----------------------------------------------------------


@exercise("01.1", points=1, title="Create a topic with 4 partitions and describe it")
def describe_new_topic(description, *, topic, partitions=4):
    """description: ``admin.describe_topics([topic])[0]`` (or the list it comes from)."""
    if isinstance(description, list | tuple) and len(description) == 1:
        description = description[0]
    expect(isinstance(description, Mapping),
           f"give the dict that admin.describe_topics([{topic!r}])[0] returns, "
           f"got {type(description).__name__}")
    name = description.get("topic", description.get("name"))
    expect(name == topic, f"this describes {name!r}, not {topic!r}: describe the topic you created")
    expect(not description.get("error_code"),
           f"the broker answered error_code {description.get('error_code')} for {topic!r} "
           "(the topic does not exist?): create it with admin.create_topics first")
    parts = description.get("partitions") or []
    expect(len(parts) == partitions,
           f"{topic!r} has {counted(len(parts), 'partition')}, {partitions} wanted: delete it "
           f"(admin.delete_topics) and create it again with num_partitions={partitions}")


def _partition_of(key: bytes, num_partitions: int) -> int:
    from labkit.client.partitioner import murmur2  # the client's, bit for bit Kafka's

    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def _as_counts(answer) -> dict[int, object]:
    expect(isinstance(answer, Mapping), "give a dict {partition: number of records}, e.g. "
                                        f"{{0: 3, 1: 5, ...}}; got {type(answer).__name__}")
    return {getattr(key, "partition", key): value for key, value in answer.items()}


@exercise("01.2", points=2, title="Count the records in each partition from offsets")
def records_per_partition(answer, *, lines, num_partitions):
    """answer: {partition: end offset - beginning offset}; lines: the key:value lines sent."""
    want = Counter(_partition_of(line.split(":", 1)[0].encode("utf-8"), num_partitions)
                   for line in lines)
    got = _as_counts(answer)
    bad = sorted((p for p in got if not (isinstance(p, int) and 0 <= p < num_partitions)), key=str)
    expect(not bad, f"partition {bad[0] if bad else ''!r} does not exist: the topic has "
                    f"partitions 0..{num_partitions - 1} (did you create it with "
                    f"num_partitions={num_partitions}?)")
    expect(all(isinstance(v, int) and not isinstance(v, bool) for v in got.values()),
           "each count must be an int: end_offsets()[tp] - beginning_offsets()[tp]")
    total = sum(got.values())
    how_many = counted(len(lines), "record") + (" was" if len(lines) == 1 else " were")
    expect(total == len(lines), f"your counts add up to {total}, but {how_many} sent: a partition "
                                "holds end offset - beginning offset records")
    used = {p for p, n in got.items() if n}
    expect(used != {0} or set(want) == {0},
           f"all records are in partition 0: was the topic created with {num_partitions} "
           "partitions (exercise 01.1) before the records were sent?")
    for partition in range(num_partitions):
        expect(got.get(partition, 0) == want[partition],
               f"partition {partition}: expected {counted(want[partition], 'record')}, got "
               f"{got.get(partition, 0)}: take the offsets of every partition of the topic")


# -- 02 producer ---------------------------------------------------------------------


@exercise("02.2", points=1, title="Flush, then count what the broker stored")
def flushed_count(in_topic, *, sent):
    """in_topic: how many records the topic holds (from end offsets) after flushing."""
    expect(isinstance(in_topic, int) and not isinstance(in_topic, bool),
           f"give the number of records as an int, got {type(in_topic).__name__}: add up "
           "the end offsets of the topic's partitions")
    expect(in_topic != 0, "the topic is still empty: the records wait in the producer's buffer; "
                          "call producer.flush() before you count")
    expect(in_topic >= sent, f"only {in_topic} of {sent} records are stored: call "
                             "producer.flush() first, then read the end offsets")
    expect(in_topic == sent, f"the topic holds {in_topic} records but {sent} were sent: count "
                             "only this topic (run the notebook from the top; its first cell "
                             "empties the topic)")


# -- 03 consumer ---------------------------------------------------------------------


@exercise("03.3", points=2, title="Seek to an offset and read from there")
def read_from_offset(read, *, sent, start):
    """read: the transactions (values, records or tx_ids) read after ``seek(tp, start)``."""
    if isinstance(read, str):
        raise Wrong("give a list of what you read (transactions or tx_ids), not one string")
    got = tx_ids(read)
    want = tx_ids(sent)[start:]
    expect(got, f"nothing read: after consumer.seek(tp, {start}) read with poll() or a for "
                "loop (with consumer_timeout_ms so it ends)")
    all_ids = tx_ids(sent)
    if got[0] in all_ids and all_ids.index(got[0]) < start:
        raise Wrong(f"you started at offset {all_ids.index(got[0])} ({got[0]}): call "
                    f"consumer.seek(tp, {start}) after assign() and before reading")
    twice = sorted(k for k, n in Counter(got).items() if n > 1)
    expect(not twice, f"{twice[0] if twice else ''} was read twice: keep each record once")
    expect(got[0] == want[0], f"the record at offset {start} is {want[0]}, but you started "
                              f"with {got[0]}: seek to offset {start} of partition 0")
    expect(len(got) >= len(want), f"read {len(got)} of the {len(want)} records from offset "
                                  f"{start} on: keep reading until no more records come")
    expect(got == want, f"expected {len(want)} records from {want[0]} to {want[-1]}, in "
                        "offset order: read only the notebook's topic")


# -- 04 serializers ------------------------------------------------------------------


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
    except ValueError:
        return False
    return True


def _raw_values(answer) -> list[bytes]:
    if isinstance(answer, bytes | str):
        raise Wrong("give a list of the dead letters (one per record), not one value")
    result = []
    for item in answer:
        value = item.value if hasattr(item, "value") and not isinstance(item, Mapping) else item
        if isinstance(value, bytearray):
            value = bytes(value)
        if not isinstance(value, bytes):
            raise Wrong(f"the dead-letter topic keeps the raw bytes, got {type(value).__name__} "
                        f"{value!r:.40}: send record.value unchanged and read it back without "
                        "a value_deserializer")
        result.append(value)
    return result


@exercise("04.2", points=2, title="Send poison messages to a dead-letter topic")
def dead_letters(answer, *, sent):
    """answer: raw values read back from the dead-letter topic; sent: raw values sent."""
    got = Counter(_raw_values(answer))
    want = Counter(raw for raw in sent if not _is_json(raw))
    expect(got or not want, "the dead-letter topic is empty, "
                            f"{counted(sum(want.values()), 'poison message')} expected: send "
                            "each value your deserializer rejects to it, and flush() before "
                            "reading it")
    valid = sorted(raw for raw in got if _is_json(raw))
    expect(not valid, f"{valid[0] if valid else b''!r} is valid JSON: only messages that "
                      "cannot be decoded go to the dead-letter topic")
    unknown = sorted(raw for raw in got if raw not in want)
    expect(not unknown, f"{unknown[0] if unknown else b''!r} was never sent to the input "
                        "topic: read the dead letters of this notebook's topics only")
    extra, missing = got - want, want - got
    expect(not extra, f"{min(extra) if extra else b''!r} is in the dead-letter topic "
                      f"{got[min(extra)] if extra else 0} times: send each poison message once "
                      "(run the notebook from the top)")
    expect(not missing, f"{counted(sum(missing.values()), 'poison message')} missing, e.g. "
                        f"{min(missing) if missing else b''!r}: read the input topic to the "
                        "end and send every rejected value")


# -- 05 partitions and keys ----------------------------------------------------------


@exercise("05.2", points=2, title="Per-key order: each user's transactions in send order")
def per_key_order(answer, *, sent):
    """answer: {user_id: that user's tx_ids (or transactions) in the order they were read}."""
    expect(isinstance(answer, Mapping), "give a dict {user_id: list of tx_ids in read order}, "
                                        f"got {type(answer).__name__}")
    want: dict[str, list[str]] = {}
    for tx in sent:
        want.setdefault(tx["user_id"], []).append(tx["tx_id"])
    got = {str(user): tx_ids(items) for user, items in answer.items()}
    missing = sorted(set(want) - set(got))
    expect(not missing, f"{counted(len(missing), 'user')} missing, e.g. {missing[0] if missing else ''}: "
                        "read every partition of the topic from the beginning")
    for user in sorted(want):
        mine, theirs = got[user], want[user]
        expect(sorted(mine) == sorted(theirs),
               f"{user}: expected {counted(len(theirs), 'transaction')}, got {len(mine)}: append each "
               "record's tx_id to the list of its user_id, once")
        if mine != theirs:
            first = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
            raise Wrong(f"{user}'s transaction number {first + 1} was {mine[first]}, but "
                        f"{theirs[first]} was sent before it: keep the order in which the "
                        "records were read (and read a topic keyed by user_id)")
