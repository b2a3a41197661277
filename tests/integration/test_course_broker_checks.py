"""Checks that ask the broker (issue 18.1) and nb.reset (18.3), against a real broker process:
read a topic, a group's committed offsets against the end offsets, ConsumerRecords that
must really be on the broker, and a reset that clears only this student's state."""

from __future__ import annotations

import json

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, nb
from labkit.course import broker_checks as bc
from labkit.course.checks import Registry, Wrong
from labkit.course.reset import reset_exercise
from labkit.errors import IllegalStateError


@pytest.fixture(autouse=True)
def _lab(monkeypatch, shared_broker):
    """The lab's usual resolver points at the test broker; a private lab (no prefix)."""
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.delenv("LABKIT_STUDENT", raising=False)
    monkeypatch.delenv("LABKIT_SHARED", raising=False)
    monkeypatch.delenv("LABKIT_GRADING", raising=False)


def _fill(topic: str, values: list[dict], partitions: int = 3) -> None:
    with KafkaAdminClient(bootstrap_servers=nb.bootstrap_servers()) as admin:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    producer = KafkaProducer(
        bootstrap_servers=nb.bootstrap_servers(), value_serializer=nb.json_serializer
    )
    for value in values:
        producer.send(topic, key=value["k"].encode(), value=value)
    producer.flush()
    producer.close()


def _consume(topic: str, group: str | None = None, commit: bool = False, **config) -> list:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=nb.bootstrap_servers(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
        **config,
    )
    records = list(consumer)
    if commit:
        consumer.commit()
    consumer.close()
    return records


VALUES = [{"k": f"u{i % 5}", "n": i} for i in range(40)]


def test_read_topic_returns_every_record_of_every_partition(unique_topic):
    _fill(unique_topic, VALUES)
    records = bc.read_topic(unique_topic)
    assert sorted(json.loads(r.value)["n"] for r in records) == list(range(40))
    assert {r.partition for r in records} == {0, 1, 2}
    assert records == sorted(records, key=lambda r: (r.partition, r.offset))
    assert sum(bc.end_offsets(unique_topic).values()) == 40


def test_a_missing_topic_is_a_wrong_answer_that_says_create_it(unique_topic):
    with pytest.raises(Wrong, match="does not exist on the broker: run the cells that create"):
        bc.read_topic(unique_topic)


def test_an_unreachable_broker_is_a_wrong_answer_naming_the_doctor(monkeypatch):
    monkeypatch.setenv("LABKIT_BOOTSTRAP", "localhost:1")
    with pytest.raises(Wrong, match=r"localhost:1 .*nb\.doctor\(\)"):
        bc.end_offsets("anything")


def test_group_offsets_and_expect_group_done(unique_topic):
    _fill(unique_topic, VALUES)
    group = f"{unique_topic}-g"
    with pytest.raises(Wrong, match="has committed no offset"):
        bc.expect_group_done(group, unique_topic)
    _consume(unique_topic, group, commit=True)
    assert all(
        row.lag == 0 and row.committed == row.end for row in bc.group_offsets(group, unique_topic)
    )
    bc.expect_group_done(group, unique_topic)
    _fill_more = KafkaProducer(bootstrap_servers=nb.bootstrap_servers())
    _fill_more.send(unique_topic, key=b"u1", value=b"{}", partition=1)
    _fill_more.flush()
    _fill_more.close()
    with pytest.raises(Wrong, match="is 1 record behind on partition 1"):
        bc.expect_group_done(group, unique_topic)


def test_verify_records_accepts_real_records_in_raw_and_deserialized_form(unique_topic):
    _fill(unique_topic, VALUES)
    raw = _consume(unique_topic)
    decoded = _consume(unique_topic, value_deserializer=lambda b: json.loads(b.decode()))
    assert len(bc.verify_records(raw, topic=unique_topic)) == 40
    assert [r.offset for r in bc.verify_records(decoded[5:9])] == [r.offset for r in decoded[5:9]]


def test_verify_records_rejects_made_up_moved_or_changed_records(unique_topic):
    _fill(unique_topic, VALUES)
    records = _consume(unique_topic)
    with pytest.raises(Wrong, match="ConsumerRecords themselves"):
        bc.verify_records([json.loads(r.value) for r in records])
    with pytest.raises(Wrong, match="no record at"):
        bc.verify_records([records[0]._replace(offset=10_000)])
    with pytest.raises(Wrong, match="not what the broker holds"):
        bc.verify_records([records[0]._replace(value=b'{"k": "u0", "n": 999}')])
    with pytest.raises(Wrong, match="not what the broker holds"):
        bc.verify_records([records[0]._replace(key=b"someone-else")])
    with pytest.raises(Wrong, match="no partition 7"):
        bc.verify_records([records[0]._replace(partition=7)])
    with pytest.raises(Wrong, match="not from"):
        bc.verify_records(records, topic=unique_topic + "-other")


def test_checks_use_the_students_prefixed_names(unique_topic, monkeypatch):
    monkeypatch.setenv("LABKIT_STUDENT", "anna")
    full = nb.topic(unique_topic)
    assert full == f"anna.{unique_topic}"
    _fill(full, VALUES)
    assert len(bc.read_topic(bc.full_topic(unique_topic))) == 40
    assert len(bc.verify_records(_consume(full), topic=unique_topic)) == 40


def _stateful(topic: str, group: str) -> Registry:
    registry = Registry()

    @registry.exercise("t.9", points=1, title="Alerts", topics={topic: 2}, groups=(group,))
    def _check(answer):
        bc.expect_group_done(bc.full_group(group), bc.full_topic(topic))

    return registry


def test_reset_empties_the_topics_and_deletes_the_group_of_this_student_only(
    unique_topic, monkeypatch
):
    group = f"{unique_topic}-g"
    _fill(f"bob.{unique_topic}", VALUES)  # another student's topic and group: untouched
    _consume(f"bob.{unique_topic}", f"bob.{group}", commit=True)
    monkeypatch.setenv("LABKIT_STUDENT", "anna")
    mine = nb.topic(unique_topic)
    _fill(mine, VALUES)
    _consume(mine, nb.group(group), commit=True)
    registry = _stateful(unique_topic, group)

    report = reset_exercise(registry.get("t.9"))

    assert report.emptied_topics == [mine]
    assert report.deleted_groups == [nb.group(group)]
    assert bc.read_topic(mine) == []
    assert sorted(bc.end_offsets(mine)) == [0, 1]
    assert all(row.committed is None for row in bc.group_offsets(nb.group(group), mine))
    assert len(bc.read_topic(f"bob.{unique_topic}")) == 40
    assert all(row.lag == 0 for row in bc.group_offsets(f"bob.{group}", f"bob.{unique_topic}"))


def test_reset_refuses_while_a_consumer_of_the_group_is_open(unique_topic):
    group = f"{unique_topic}-g"
    _fill(unique_topic, VALUES)
    consumer = KafkaConsumer(
        unique_topic,
        bootstrap_servers=nb.bootstrap_servers(),
        group_id=group,
        auto_offset_reset="earliest",
    )
    try:
        consumer.poll(timeout_ms=3000)
        with pytest.raises(IllegalStateError, match="still has consumers: close them first"):
            reset_exercise(_stateful(unique_topic, group).get("t.9"))
    finally:
        consumer.close()
    assert reset_exercise(_stateful(unique_topic, group).get("t.9")).deleted_groups == [group]


def test_the_fail_line_offers_reset_and_after_reset_a_rerun_passes(unique_topic, capsys):
    """The re-run trap: a wrong first run commits past the records; reset, re-run, PASS."""
    group = f"{unique_topic}-g"
    registry = _stateful(unique_topic, group)
    _fill(unique_topic, VALUES[:10], partitions=2)
    _consume(unique_topic, group)  # first attempt forgot to commit
    line = registry.evaluate("t.9", True).line
    assert line.startswith("FAIL t.9")
    assert "nb.reset('t.9')" in line
    reset_exercise(registry.get("t.9"))
    producer = KafkaProducer(bootstrap_servers=nb.bootstrap_servers())
    for i in range(10):
        producer.send(unique_topic, key=str(i).encode(), value=b"{}")
    producer.flush()
    producer.close()
    _consume(unique_topic, group, commit=True)
    assert registry.evaluate("t.9", True).line == "PASS t.9 (1/1 points)"
