"""Notebook 08's event-driven exercise (08.2) against a real broker: the flagged records must
be the notebook's topic's own; a list made from `sent` without a consumer FAILs, and a
second attempt after a wrong one passes (the check keeps no state; the notebook's cell
makes a fresh consumer at the end offsets each run)."""

from __future__ import annotations

import itertools
import json
import time
from collections import namedtuple

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, NewTopic, TopicPartition, nb
from labkit.course.exercises.nb08 import is_suspicious_ref

COUNT = 200
_students = itertools.count()


@pytest.fixture
def sent(monkeypatch, shared_broker):
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.setenv("LABKIT_STUDENT", f"events{next(_students)}-{time.monotonic_ns()}")
    monkeypatch.delenv("LABKIT_SHARED", raising=False)
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)
    admin = KafkaAdminClient(bootstrap_servers=nb.bootstrap_servers())
    admin.create_topics(
        [NewTopic(nb.topic("nb08-transactions"), num_partitions=3, replication_factor=1)]
    )
    yield list(nb.transactions(seed=808, count=COUNT, suspicious_share=0.2))
    admin.delete_topics([nb.topic("nb08-transactions")])
    admin.close()


def event_driven_app(sent, rule) -> list:
    """The 08.2 cell: a consumer at the end offsets, the stream, the loop flagging records."""
    partitions = [TopicPartition(nb.topic("nb08-transactions"), p) for p in range(3)]
    consumer = KafkaConsumer(
        bootstrap_servers=nb.bootstrap_servers(), value_deserializer=json.loads
    )
    consumer.assign(partitions)
    for tp, offset in consumer.end_offsets(partitions).items():
        consumer.seek(tp, offset)
    stream = nb.EventStream(
        nb.bootstrap_servers(), nb.topic("nb08-transactions"), sent, rate=2000, key="user_id"
    ).start()
    flagged, seen, deadline = [], 0, time.monotonic() + 20
    while seen < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            for record in records:
                seen += 1
                if rule(record.value):
                    flagged.append(record)
    stream.join(10)
    consumer.close()
    return flagged


def test_the_consumer_loop_passes_and_answers_without_a_consumer_fail(sent):
    flagged = event_driven_app(sent, is_suspicious_ref)
    assert nb.evaluate("08.2", flagged, sent=sent).status == "PASS"
    from_the_list = [tx for tx in sent if is_suspicious_ref(tx)]
    result = nb.evaluate("08.2", from_the_list, sent=sent)
    assert result.status == "FAIL"
    assert "ConsumerRecords themselves" in result.line
    ids = nb.evaluate("08.2", [tx["tx_id"] for tx in from_the_list], sent=sent)
    assert ids.status == "FAIL"
    Record = namedtuple("Record", "topic partition offset key value")
    made_up = [
        Record(nb.topic("nb08-transactions"), 0, 10_000 + n, tx["user_id"], tx)
        for n, tx in enumerate(from_the_list)
    ]
    result = nb.evaluate("08.2", made_up, sent=sent)
    assert result.status == "FAIL"
    assert "there is no record at" in result.line


def test_a_rerun_after_a_wrong_first_attempt_passes(sent):
    wrong = event_driven_app(sent, lambda tx: tx["amount"] > 3000)
    first = nb.evaluate("08.2", wrong, sent=sent)
    assert first.status == "FAIL"
    assert "not flagged" in first.line
    right = event_driven_app(sent, is_suspicious_ref)  # the cell run again, fixed
    assert nb.evaluate("08.2", right, sent=sent).status == "PASS"
    assert "flagged 2 times" in nb.evaluate("08.2", right + right[:1], sent=sent).line
