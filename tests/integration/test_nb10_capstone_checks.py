"""Notebook 10's broker-checked exercises (10.2 the scorer, 10.4 the enrichment consumer) against a real broker (issue 18.1, 18.3): it passes
only when the alerts topic, the transactions topic and the scoring group's committed
offsets on the broker say the pipeline ran; answers that never touch the broker FAIL; a
re-run after a wrong first attempt passes once nb.reset("10.2") cleared what it left."""

from __future__ import annotations

import itertools
import json
import time
from collections import namedtuple

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, nb
from labkit.course.exercises._ref import enrich_ref, fraud_score

COUNT = 120
_students = itertools.count()


@pytest.fixture
def lab(monkeypatch, shared_broker):
    """A student of their own on the shared test broker (prefixed names), with the
    pipeline's transactions topic filled as notebook 10 fills it; returns what was sent."""
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.setenv("LABKIT_STUDENT", f"capstone{next(_students)}-{time.monotonic_ns()}")
    monkeypatch.delenv("LABKIT_SHARED", raising=False)
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)
    sent = list(nb.transactions(seed=10, suspicious_share=0.3, count=COUNT))
    admin = KafkaAdminClient(bootstrap_servers=nb.bootstrap_servers())
    admin.create_topics(
        [
            NewTopic(nb.topic("nb10-transactions"), num_partitions=3, replication_factor=1),
            NewTopic(nb.topic("nb10-alerts"), num_partitions=3, replication_factor=1),
            NewTopic(nb.topic("nb10-enriched"), num_partitions=3, replication_factor=1),
        ]
    )
    producer = KafkaProducer(
        bootstrap_servers=nb.bootstrap_servers(),
        value_serializer=nb.json_serializer,
        key_serializer=str.encode,
    )
    for tx in sent:
        producer.send(nb.topic("nb10-transactions"), key=tx["user_id"], value=tx)
    producer.close()
    yield sent
    mine = {nb.group("nb10-scoring-group"), nb.group("nb10-enrichment-group")}
    groups = [g for g, _ in admin.list_consumer_groups() if g in mine]
    if groups:
        admin.delete_consumer_groups(groups)
    admin.delete_topics(
        [nb.topic("nb10-transactions"), nb.topic("nb10-alerts"), nb.topic("nb10-enriched")]
    )
    admin.close()


def run_scorer(threshold: int = 3, deadline_s: float = 15) -> int:
    """The notebook's scoring consumer (its master's solution), flagging score >= threshold."""
    scorer = KafkaConsumer(
        nb.topic("nb10-transactions"),
        bootstrap_servers=nb.bootstrap_servers(),
        group_id=nb.group("nb10-scoring-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        value_deserializer=json.loads,
    )
    producer = KafkaProducer(
        bootstrap_servers=nb.bootstrap_servers(),
        value_serializer=nb.json_serializer,
        key_serializer=str.encode,
    )
    scored, deadline = 0, time.monotonic() + deadline_s
    while scored < COUNT and time.monotonic() < deadline:
        batch = scorer.poll(timeout_ms=200)
        for records in batch.values():
            for record in records:
                tx = record.value
                if fraud_score(tx) >= threshold:
                    producer.send(
                        nb.topic("nb10-alerts"),
                        key=tx["user_id"],
                        value={**tx, "score": fraud_score(tx)},
                    )
                scored += 1
        if batch:
            producer.flush()
            scorer.commit()
    scorer.close()
    producer.close()
    return scored


def read_alerts(topic: str = "nb10-alerts") -> list:
    reader = KafkaConsumer(
        nb.topic(topic),
        bootstrap_servers=nb.bootstrap_servers(),
        auto_offset_reset="earliest",
        value_deserializer=json.loads,
        consumer_timeout_ms=1500,
    )
    alerts = list(reader)
    reader.close()
    return alerts


def test_the_pipeline_passes(lab):
    assert run_scorer() == COUNT
    result = nb.evaluate("10.2", read_alerts())
    assert result.status == "PASS", result.line


def test_the_issues_cheating_answer_fails_without_touching_the_broker(lab):
    """`nb.evaluate("10.2", [dict(tx, score=score(tx)) for tx in s10 if score(tx) >= 3],
    sent=s10)` passed 3/3 before: the list of what was sent is not the alerts topic."""
    sent = lab
    cheat = [dict(tx, score=fraud_score(tx)) for tx in sent if fraud_score(tx) >= 3]
    assert nb.evaluate("10.2", cheat, sent=sent).status == "FAIL"
    result = nb.evaluate("10.2", cheat)
    assert result.status == "FAIL"
    assert "give the ConsumerRecords themselves" in result.line


def test_records_made_up_by_hand_fail(lab):
    sent = lab
    Record = namedtuple("Record", "topic partition offset key value")
    fake = [
        Record(nb.topic("nb10-alerts"), 0, n, tx["user_id"], dict(tx, score=fraud_score(tx)))
        for n, tx in enumerate(tx for tx in sent if fraud_score(tx) >= 3)
    ]
    result = nb.evaluate("10.2", fake)
    assert result.status == "FAIL"
    assert "there is no record at" in result.line


def test_alerts_written_straight_from_the_sent_list_fail_on_the_groups_offsets(lab):
    """Real records on the real topic, but no scoring consumer ever read the transactions."""
    sent = lab
    producer = KafkaProducer(
        bootstrap_servers=nb.bootstrap_servers(),
        value_serializer=nb.json_serializer,
        key_serializer=str.encode,
    )
    for tx in sent:
        if fraud_score(tx) >= 3:
            producer.send(nb.topic("nb10-alerts"), key=tx["user_id"], value=dict(tx, score=9))
            producer.send(nb.topic("nb10-alerts"), key=tx["user_id"], value=dict(tx, score=9))
    producer.close()
    assert "2 times" in nb.evaluate("10.2", read_alerts()).line
    nb.reset("10.2")
    producer = KafkaProducer(
        bootstrap_servers=nb.bootstrap_servers(),
        value_serializer=nb.json_serializer,
        key_serializer=str.encode,
    )
    for tx in sent:
        if fraud_score(tx) >= 3:
            producer.send(
                nb.topic("nb10-alerts"), key=tx["user_id"], value=dict(tx, score=fraud_score(tx))
            )
    producer.close()
    result = nb.evaluate("10.2", read_alerts())
    assert result.status == "FAIL"
    assert "has committed no offset" in result.line


def test_half_the_alerts_handed_in_fail(lab):
    run_scorer()
    alerts = read_alerts()
    result = nb.evaluate("10.2", alerts[: len(alerts) // 2])
    assert result.status == "FAIL"
    assert "read it from the beginning of every partition" in result.line


def test_a_rerun_after_a_wrong_first_attempt_passes_after_nb_reset(lab, capsys):
    run_scorer(threshold=2)  # wrong: flags score 2 too, and commits every transaction
    first = nb.evaluate("10.2", read_alerts())
    assert first.status == "FAIL"
    assert "flag only score >= 3" in first.line
    assert "nb.reset('10.2')" in first.line
    # the trap: fixed code, run again as it is, reads nothing new and the old alerts stay
    assert run_scorer(deadline_s=3) == 0
    assert nb.evaluate("10.2", read_alerts()).status == "FAIL"
    nb.reset("10.2")
    assert "RESET 10.2" in capsys.readouterr().out
    assert run_scorer() == COUNT
    result = nb.evaluate("10.2", read_alerts())
    assert result.status == "PASS", result.line


# -- 10.4 the enrichment consumer --------------------------------------------------------


def run_enricher(
    group: str = "nb10-enrichment-group", only_flagged: bool = False, deadline_s: float = 15
) -> int:
    """Notebook 10's enrichment consumer (its master's solution)."""
    consumer = KafkaConsumer(
        nb.topic("nb10-transactions"),
        bootstrap_servers=nb.bootstrap_servers(),
        group_id=nb.group(group),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        value_deserializer=json.loads,
    )
    producer = KafkaProducer(
        bootstrap_servers=nb.bootstrap_servers(),
        value_serializer=nb.json_serializer,
        key_serializer=str.encode,
    )
    done, deadline = 0, time.monotonic() + deadline_s
    while done < COUNT and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200)
        for records in batch.values():
            for record in records:
                tx = record.value
                if not only_flagged or fraud_score(tx) >= 3:
                    producer.send(
                        nb.topic("nb10-enriched"), key=tx["user_id"], value=enrich_ref(tx)
                    )
                done += 1
        if batch:
            producer.flush()
            consumer.commit()
    consumer.close()
    producer.close()
    return done


def test_10_4_the_enrichment_consumer_passes_next_to_the_scorer(lab):
    run_scorer()
    assert run_enricher() == COUNT  # its own group: every transaction, though the scorer read all
    result = nb.evaluate("10.4", read_alerts("nb10-enriched"))
    assert result.status == "PASS", result.line
    assert nb.evaluate("10.2", read_alerts()).status == "PASS"


def test_10_4_enriched_values_made_from_the_sent_list_fail(lab):
    sent = lab
    assert "ConsumerRecords themselves" in nb.evaluate("10.4", [enrich_ref(tx) for tx in sent]).line


def test_10_4_the_scorers_group_id_is_not_the_enrichment_group(lab):
    run_enricher(group="nb10-scoring-group")
    result = nb.evaluate("10.4", read_alerts("nb10-enriched"))
    assert result.status == "FAIL"
    assert "nb10-enrichment-group'" in result.line
    assert "committed no offset" in result.line


def test_10_4_a_rerun_after_a_wrong_first_attempt_passes_after_nb_reset(lab):
    run_enricher(only_flagged=True)  # wrong: enriches the flagged transactions only
    first = nb.evaluate("10.4", read_alerts("nb10-enriched"))
    assert first.status == "FAIL"
    assert "missing from the enriched topic" in first.line
    assert "nb.reset('10.4')" in first.line
    assert run_enricher(deadline_s=3) == 0  # the trap: the group's offsets are at the end
    nb.reset("10.4")
    assert run_enricher() == COUNT
    result = nb.evaluate("10.4", read_alerts("nb10-enriched"))
    assert result.status == "PASS", result.line
