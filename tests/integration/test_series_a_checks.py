"""Notebooks 00-05's checks against a real broker (issue 18): Kafka work is verified on the
broker, the cheating answers quoted in the issue FAIL, and for every exercise a re-run after
a wrong first attempt passes (with ``nb.reset`` where the FAIL line offers it).

Each test runs as a student of its own on the session's broker (``LABKIT_STUDENT``), so the
exercises' real topic names (``nb01-payments``...) get a prefix no other test uses.
"""

from __future__ import annotations

import itertools
import json

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition, nb
from labkit.course.exercises._ref import alert_line
from labkit.course.exercises.nb04 import _is_json

_students = itertools.count()


@pytest.fixture(autouse=True)
def student(monkeypatch, shared_broker):
    name = f"series-a-{next(_students)}"
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.setenv("LABKIT_STUDENT", name)
    monkeypatch.delenv("LABKIT_SHARED", raising=False)
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)
    return name


@pytest.fixture
def admin():
    with KafkaAdminClient(bootstrap_servers=nb.bootstrap_servers()) as client:
        yield client


def status(exercise_id, answer, **context):
    return nb.evaluate(exercise_id, answer, **context)


def passes(exercise_id, answer, **context):
    result = nb.evaluate(exercise_id, answer, **context)
    assert result.status == "PASS", result.line


def fails(exercise_id, answer, hint_part, **context):
    result = nb.evaluate(exercise_id, answer, **context)
    assert result.status == "FAIL", result.line
    assert hint_part in result.line, result.line
    return result.line


def reset(exercise_id, capsys):
    nb.reset(exercise_id)
    out = capsys.readouterr().out
    assert out.startswith(f"RESET {exercise_id}:"), out


def create(admin, name, partitions):
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])


def produce(topic, values, keys=None, **config):
    with KafkaProducer(bootstrap_servers=nb.bootstrap_servers(), **config) as producer:
        futures = [
            producer.send(topic, value=v, key=None if keys is None else keys[i])
            for i, v in enumerate(values)
        ]
        producer.flush()
        return [f.get(timeout=10) for f in futures]


def consume(topic, **config):
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=nb.bootstrap_servers(),
        auto_offset_reset="earliest",
        consumer_timeout_ms=1500,
        **config,
    )
    records = list(consumer)
    consumer.close()
    return records


# -- 00: pure checks; a re-run after a wrong answer passes ------------------------------


def test_00_a_rerun_after_a_wrong_answer_passes():
    fails("00.1", ["Warszawa", "Krakow", "Gdańsk", "Wrocław"], "spelling")
    passes("00.1", ["Warszawa", "Kraków", "Gdańsk", "Wrocław"])
    fails("00.2", lambda txs: txs[0], "compare the 'amount'")
    passes("00.2", lambda txs: max(txs, key=lambda tx: tx["amount"]))
    assert "nb.reset" not in status("00.2", lambda txs: txs[0]).line


# -- 01 ---------------------------------------------------------------------------------


LINES = ["jan:45", "ewa:50", "ola:12", "piotr:99", "jan:30", "ewa:7",
         "kasia:64", "jan:18", "marek:5", "ola:70", "ewa:33", "zofia:21"]  # fmt: skip


def send_lines(topic):
    keys = [line.split(":", 1)[0].encode() for line in LINES]
    produce(topic, [line.split(":", 1)[1].encode() for line in LINES], keys)


def counts_on(topic):
    consumer = KafkaConsumer(bootstrap_servers=nb.bootstrap_servers())
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
    consumer.close()
    return {tp.partition: end[tp] - begin[tp] for tp in tps}


def test_01_1_checks_the_topic_on_the_broker_and_a_rerun_after_reset_passes(admin, capsys):
    topic = nb.topic("nb01-payments")
    create(admin, topic, 3)  # the wrong first attempt
    described = admin.describe_topics([topic])[0]
    line = fails("01.1", described, "num_partitions=4", topic=topic, partitions=4)
    assert "nb.reset('01.1')" in line
    # a description written by hand does not make the broker's topic right
    forged = dict(described, partitions=[*described["partitions"], {"partition": 3}])
    fails("01.1", forged, "the broker's", topic=topic, partitions=4)
    with pytest.raises(Exception, match="already exists"):
        create(admin, topic, 4)  # the re-run trap: the cell cannot create it again
    reset("01.1", capsys)
    create(admin, topic, 4)
    passes("01.1", admin.describe_topics([topic])[0], topic=topic, partitions=4)
    passes("01.1", admin.describe_topics([topic]), topic="nb01-payments", partitions=4)


def test_01_2_counts_are_checked_against_the_broker_and_a_rerun_after_reset_passes(admin, capsys):
    topic = nb.topic("nb01-payments")
    create(admin, topic, 4)
    ctx = {"topic": topic, "lines": LINES, "num_partitions": 4}
    send_lines(topic)
    right = counts_on(topic)
    assert sum(1 for n in right.values() if n) >= 3
    passes("01.2", right, **ctx)
    as_tps = {TopicPartition(topic, p): n for p, n in right.items()}
    passes("01.2", as_tps, **ctx)
    passes("01.2", {p: n for p, n in right.items() if n}, **ctx)
    fails("01.2", {p: right[(p + 1) % 4] for p in range(4)}, "the broker holds", **ctx)
    fewer = dict(right)
    fewer[max(fewer, key=fewer.get)] -= 1
    fails("01.2", fewer, "add up to 11", **ctx)
    fails("01.2", {**right, 7: 0}, "does not exist", **ctx)
    fails("01.2", [3, 4, 5], "dict", **ctx)
    # the re-run trap: the sending cell ran twice; even the right count of 24 fails
    send_lines(topic)
    line = fails("01.2", counts_on(topic), "holds 24 records, but 12 lines", **ctx)
    assert "nb.reset('01.2')" in line
    reset("01.2", capsys)
    send_lines(topic)
    passes("01.2", counts_on(topic), **ctx)


def test_01_1_and_02_1_pass_with_prefixed_or_bare_names(admin, student):
    """On a shared broker the checks accept the student's prefixed names, also when called
    with the bare name (moved here from test_nb_names: a PASS needs the broker now)."""
    mine = nb.topic("nb01-payments")
    assert mine == f"{student}.nb01-payments"
    create(admin, mine, 4)
    described = admin.describe_topics([mine])[0]
    passes("01.1", described, topic=mine, partitions=4)
    passes("01.1", described, topic="nb01-payments")
    sent_to = nb.topic("nb02-transactions")
    create(admin, sent_to, 3)
    metadata = produce(sent_to, [b"{}"] * 20)
    passes("02.1", metadata, topic=sent_to, count=20)
    passes("02.1", metadata, topic="nb02-transactions")


def test_01_1_on_a_private_broker_the_names_are_used_as_written(admin, monkeypatch, unique_topic):
    monkeypatch.delenv("LABKIT_STUDENT")
    create(admin, unique_topic, 4)
    passes("01.1", admin.describe_topics([unique_topic])[0], topic=unique_topic)


def test_01_2_all_in_partition_0_points_at_exercise_01_1(admin):
    topic = nb.topic("nb01-payments")
    create(admin, topic, 1)
    send_lines(topic)
    fails(
        "01.2",
        {0: len(LINES)},
        "(exercise 01.1)",
        topic=topic,
        lines=LINES,
        num_partitions=4,
    )


# -- 02 ---------------------------------------------------------------------------------


def test_02_1_metadata_must_be_on_the_broker(admin):
    topic = nb.topic("nb02-transactions")
    create(admin, topic, 3)
    metadata = produce(
        topic, [json.dumps(tx).encode() for tx in nb.transactions(seed=21, count=20)]
    )
    passes("02.1", metadata, topic=topic, count=20)
    fails("02.1", metadata[:19], "expected 20 RecordMetadata", topic=topic, count=20)
    forged = [m._replace(offset=m.offset + 1000) for m in metadata]
    fails("02.1", forged, "the broker has no record", topic=topic, count=20)
    passes("02.1", metadata, topic=topic, count=20)  # the re-run after a wrong answer


def test_02_2_a_hard_coded_count_fails_while_the_records_wait_in_the_buffer(admin, capsys):
    """Issue 18.1's cheating answer: `in_topic = 30` typed in, without flush()."""
    topic = nb.topic("nb02-flush")
    create(admin, topic, 1)
    batch = [json.dumps(tx).encode() for tx in nb.transactions(seed=22, count=30)]
    slow = KafkaProducer(bootstrap_servers=nb.bootstrap_servers(), linger_ms=5000)
    for value in batch:
        slow.send(topic, value)
    line = fails("02.2", 30, "call producer.flush() before you count", topic=topic, sent=30)
    assert "nb.reset('02.2')" in line
    slow.flush()
    passes("02.2", 30, topic=topic, sent=30)
    fails("02.2", 29, "ask the broker", topic=topic, sent=30)
    fails("02.2", "30", "as an int", topic=topic, sent=30)
    fails("02.2", True, "as an int", topic=topic, sent=30)
    slow.close()


def test_02_2_a_rerun_after_a_wrong_first_attempt_passes_after_reset(admin, capsys):
    topic = nb.topic("nb02-flush")
    create(admin, topic, 1)
    batch = [json.dumps(tx).encode() for tx in nb.transactions(seed=22, count=30)]
    first = KafkaProducer(bootstrap_servers=nb.bootstrap_servers(), linger_ms=5000)
    for value in batch:
        first.send(topic, value)
    fails("02.2", 0, "still empty", topic=topic, sent=30)  # counted before flush()
    first.close()  # the buffered 30 arrive (a re-run would send 30 more)
    produce(topic, batch)
    fails("02.2", 60, "holds 60 records but 30 were sent", topic=topic, sent=30)
    reset("02.2", capsys)
    produce(topic, batch)
    passes("02.2", 30, topic=topic, sent=30)


# -- 03 ---------------------------------------------------------------------------------


def test_03_1_none_means_none_and_a_rerun_passes():
    def right(tx):
        if tx["amount"] > 3000:
            return alert_line(tx)
        return None

    def empty_string(tx):
        return right(tx) or ""

    def false(tx):
        return right(tx) or False

    fails("03.1", empty_string, "returned '': return None")
    fails("03.1", false, "returned False: return None")
    passes("03.1", right)


@pytest.fixture
def topic_03(admin):
    topic = nb.topic("nb03-transactions")
    create(admin, topic, 1)
    sent = list(nb.transactions(seed=33, count=200, suspicious_share=0.1))
    produce(topic, [json.dumps(tx).encode() for tx in sent])
    return topic, sent


def read_from(topic, start, **config):
    tp = TopicPartition(topic, 0)
    seeker = KafkaConsumer(
        bootstrap_servers=nb.bootstrap_servers(), consumer_timeout_ms=1500, **config
    )
    seeker.assign([tp])
    seeker.seek(tp, start)
    records = list(seeker)
    seeker.close()
    return records


def test_03_3_asks_for_records_that_are_on_the_broker(topic_03):
    """Issue 18.1's cheating answer `sent[150:]` FAILs; real records PASS, however decoded."""
    topic, sent = topic_03
    ctx = {"topic": topic, "start": 150}
    fails("03.3", sent[150:], "ConsumerRecords themselves", **ctx)
    fails("03.3", [tx["tx_id"] for tx in sent[150:]], "ConsumerRecords themselves", **ctx)
    records = read_from(topic, 150)
    passes("03.3", records, **ctx)
    passes("03.3", read_from(topic, 150, value_deserializer=json.loads), **ctx)
    passes("03.3", records, topic="nb03-transactions", start=150)
    fails(
        "03.3",
        [r._replace(value=json.dumps(sent[0]).encode()) for r in records],
        "not what the broker holds",
        **ctx,
    )
    fails("03.3", read_from(topic, 0), "you started at offset 0", **ctx)
    fails("03.3", read_from(topic, 151), "not 150", **ctx)
    fails("03.3", records[:40], "read 40 of the 50", **ctx)
    fails("03.3", records + records[-1:], "read twice", **ctx)
    fails("03.3", [], "nothing read", **ctx)
    fails("03.3", "TX0151", "not one string", **ctx)


def test_03_3_a_rerun_after_a_wrong_first_attempt_passes(topic_03):
    topic, _ = topic_03
    fails("03.3", read_from(topic, 0), "you started at offset 0", topic=topic, start=150)
    passes("03.3", read_from(topic, 150), topic=topic, start=150)


def test_03_2_a_rerun_after_a_wrong_first_attempt_passes(topic_03):
    topic, sent = topic_03
    lines = [
        alert_line(json.loads(r.value))
        for r in consume(topic)
        if json.loads(r.value)["amount"] > 3000
    ]
    fails("03.2", lines[1:], "1 alert missing", sent=sent)
    passes("03.2", lines, sent=sent)


# -- 04 ---------------------------------------------------------------------------------


def test_04_1_a_deserializer_that_catches_only_json_errors_fails():
    """Issue 18.4: the lesson is about UnicodeDecodeError too."""

    def json_errors_only(raw):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return None

    def decode_then_json_errors_only(raw):
        try:
            return json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError:
            return None

    def right(raw):
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            return None

    fails("04.1", json_errors_only, "UnicodeDecodeError")
    fails("04.1", decode_then_json_errors_only, "UnicodeDecodeError")
    passes("04.1", right)  # the re-run after the fix


def poison_messages():
    messages = [json.dumps(tx).encode() for tx in nb.transactions(seed=44, count=30)]
    for at, poison in [
        (4, b"{not json"),
        (11, b""),
        (19, b"\xff\xfe garbage"),
        (25, b'{"tx_id": "TX0026", "amount": '),
        (30, '{"store": "Kraków"}'.encode("latin-1")),
    ]:
        messages.insert(at, poison)
    return messages


def test_04_2_the_dead_letter_topic_is_read_on_the_broker_and_a_rerun_passes_after_reset(
    admin, capsys
):
    dlt = nb.topic("nb04-payments-dlt")
    create(admin, dlt, 1)
    sent = poison_messages()
    poison = [raw for raw in sent if not _is_json(raw)]
    assert len(poison) == 5
    ctx = {"topic": dlt, "sent": sent}
    # the cheating answer: the poison computed from `sent`, nothing sent to the DLT
    fails("04.2", poison, "holds 0 records", **ctx)
    # a wrong first attempt: everything went to the dead-letter topic
    produce(dlt, sent)
    line = fails("04.2", [r.value for r in consume(dlt)], "is valid JSON", **ctx)
    assert "nb.reset('04.2')" in line
    reset("04.2", capsys)
    produce(dlt, poison)
    dead = [r.value for r in consume(dlt)]
    passes("04.2", dead, **ctx)
    passes("04.2", consume(dlt), **ctx)
    fails("04.2", dead[1:], "your list has 4 values", **ctx)
    decoded = [raw.decode("utf-8", errors="replace") for raw in dead]
    fails("04.2", decoded, "raw bytes", **ctx)
    fails("04.2", b"{not json", "not one value", **ctx)
    produce(dlt, poison[:1])
    fails("04.2", [r.value for r in consume(dlt)], "2 times", **ctx)


# -- 05 ---------------------------------------------------------------------------------


def parts_of(metadata, users):
    parts: dict = {}
    for user, meta in zip(users, metadata, strict=True):
        parts.setdefault(user, set()).add(meta.partition)
    return parts


def test_05_1_the_partitions_are_checked_on_the_broker_and_a_rerun_passes_after_reset(
    admin, capsys
):
    topic = nb.topic("nb05-by-user")
    create(admin, topic, 3)
    txs = list(nb.transactions(seed=51, count=100))
    users = [tx["user_id"] for tx in txs]
    values = [json.dumps(tx).encode() for tx in txs]
    ctx = {"topic": topic, "num_partitions": 3}
    # a wrong first attempt: no keys
    unkeyed = parts_of(produce(topic, values), users)
    line = fails("05.1", unkeyed, "send with key=tx['user_id']", **ctx)
    assert "nb.reset('05.1')" in line
    # the keyed re-run alone still fails: the unkeyed records are still in the topic
    keyed = parts_of(produce(topic, values, [u.encode() for u in users]), users)
    fails("05.1", keyed, "records without a key", **ctx)
    reset("05.1", capsys)
    keyed = parts_of(produce(topic, values, [u.encode() for u in users]), users)
    passes("05.1", keyed, **ctx)
    passes("05.1", [(u, p) for u, ps in keyed.items() for p in ps] * 2, **ctx)
    # an answer written by hand: one partition per user, but not the broker's
    forged = {user: {(min(p) + 1) % 3} for user, p in keyed.items()}
    fails("05.1", forged, "on the broker", **ctx)
    fails("05.1", {"u01": {5}, "u02": {1}}, "does not exist", **ctx)
    fails("05.1", {u: {0} for u in keyed}, "same partition", **ctx)


def test_05_2_a_rerun_after_a_wrong_first_attempt_passes(admin):
    topic = nb.topic("nb05-transactions")
    create(admin, topic, 3)
    sent = list(nb.transactions(seed=55, count=120))
    produce(
        topic, [json.dumps(tx).encode() for tx in sent], [tx["user_id"].encode() for tx in sent]
    )
    records = consume(topic, value_deserializer=json.loads)
    by_tx_id = sorted(records, key=lambda r: r.value["tx_id"], reverse=True)
    wrong: dict = {}
    for record in by_tx_id:
        wrong.setdefault(record.value["user_id"], []).append(record.value["tx_id"])
    fails("05.2", wrong, "was sent before it", sent=sent)
    right: dict = {}
    for record in records:
        right.setdefault(record.value["user_id"], []).append(record.value["tx_id"])
    passes("05.2", right, sent=sent)
