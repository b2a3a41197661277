"""Notebook 11's homework (11.2) against a real broker: the quixstreams app of the master
passes; apps that are wrong in the ways students get it wrong FAIL with a hint that
names the mistake: a count of 3 alerted, tumbling instead of sliding windows (misses a
burst across a minute's border), the Kafka timestamp instead of event time, alerts
without the user's key; a list made up by hand is not the topic; nb.reset("11.2") lets a
re-run pass after a wrong one."""

from __future__ import annotations

import itertools
import json
import tempfile
import time
import warnings
from datetime import datetime, timedelta

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, nb
from labkit.ecosystem.quix_transactions import event_time_ms

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib (under quixstreams) warns about httpx on import
    from quixstreams import Application

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The httpx module is deprecated"),
]

_students = itertools.count()
T0 = datetime(2026, 3, 2, 8, 0, 0)
# (user, seconds after 08:00:00): u01 4 within 60 s inside one minute; u02 4 within 60 s
# across 08:01:00 (2 + 2: tumbling windows miss it); u03 exactly 3; u04 4 within 61 s.
ROWS = sorted(
    [("u01", s) for s in (5, 15, 25, 35)]
    + [("u02", s) for s in (40, 50, 70, 80)]
    + [("u03", s) for s in (0, 10, 20)]
    + [("u04", s) for s in (100, 120, 140, 161)],
    key=lambda row: row[1],
)
FLAGGED = {"u01", "u02"}


@pytest.fixture
def lab(monkeypatch, shared_broker):
    """A student of their own on the shared test broker, with notebook 11's transactions
    topic filled (in time order, keyed by user) and an empty alerts topic."""
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.setenv("LABKIT_STUDENT", f"streams{next(_students)}-{time.monotonic_ns()}")
    monkeypatch.delenv("LABKIT_SHARED", raising=False)
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)
    topics = [nb.topic("nb11-transactions"), nb.topic("nb11-user-alerts")]
    admin = KafkaAdminClient(bootstrap_servers=nb.bootstrap_servers())
    # as the notebook (KEEP): its alerts carry event time from March, which a broker's
    # time retention deletes at its next check (Kafka's rule; labkit follows it)
    keep = {"retention.ms": "-1"}
    admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1, topic_configs=keep) for t in topics]
    )
    producer = KafkaProducer(
        bootstrap_servers=nb.bootstrap_servers(),
        value_serializer=nb.json_serializer,
        key_serializer=str.encode,
    )
    for n, (user, seconds) in enumerate(ROWS):
        moment = (T0 + timedelta(seconds=seconds)).isoformat()
        tx = {"tx_id": f"TX{n:04d}", "user_id": user, "amount": 10.0, "timestamp": moment}
        producer.send(topics[0], key=user, value=tx)
    producer.close()
    yield
    group = nb.group("nb11-homework")
    if any(g == group for g, _ in admin.list_consumer_groups()):
        admin.delete_consumer_groups([group])
    internal = [t for t in admin.list_topics() if t.startswith(f"changelog__{group}--")]
    admin.delete_topics(topics + internal)
    admin.close()


def run_homework(
    *, limit=3, window="sliding", extractor=event_time_ms, keyed=True, fresh_group=False
):
    """The master's homework app (limit, window kind, timestamps, key as given); returns
    the user-alerts topic's records read back as the notebook reads them."""
    group = nb.group("nb11-homework")
    if fresh_group:  # what new_app() does in the notebook
        admin = KafkaAdminClient(bootstrap_servers=nb.bootstrap_servers())
        if any(g == group for g, _ in admin.list_consumer_groups()):
            admin.delete_consumer_groups([group])
        admin.delete_topics(
            [t for t in admin.list_topics() if t.startswith(f"changelog__{group}--")]
        )
        admin.close()
    with tempfile.TemporaryDirectory(prefix="nb11-test-state-") as state:
        app = Application(
            broker_address=nb.bootstrap_servers(),
            consumer_group=group,
            auto_offset_reset="earliest",
            loglevel="WARNING",
            state_dir=state,
        )
        topic = app.topic(
            nb.topic("nb11-transactions"), value_deserializer="json", timestamp_extractor=extractor
        )
        sdf = app.dataframe(topic)
        if window == "sliding":
            sdf = sdf.sliding_window(duration_ms=60_000, grace_ms=5_000).count().current()
        else:
            sdf = sdf.tumbling_window(duration_ms=60_000, grace_ms=5_000).count().current()
        sdf = sdf.filter(lambda w: w["value"] > limit)
        sdf = sdf.apply(
            lambda w, key, timestamp, headers: {"user_id": key.decode(), "count": w["value"]},
            metadata=True,
        )
        if not keyed:
            sdf = sdf.to_topic(
                app.topic(nb.topic("nb11-user-alerts"), value_serializer="json"),
                key=lambda value: "all",
            )
        else:
            sdf = sdf.to_topic(app.topic(nb.topic("nb11-user-alerts"), value_serializer="json"))
        app.run(timeout=2)
    reader = KafkaConsumer(
        nb.topic("nb11-user-alerts"),
        bootstrap_servers=nb.bootstrap_servers(),
        auto_offset_reset="earliest",
        value_deserializer=json.loads,
        consumer_timeout_ms=1000,
    )
    alerts = list(reader)
    reader.close()
    return alerts


def test_the_masters_app_passes(lab):
    alerts = run_homework()
    assert {r.value["user_id"] for r in alerts} == FLAGGED
    result = nb.evaluate("11.2", alerts)
    assert result.status == "PASS", result.line


def test_alerting_a_count_of_3_fails_and_says_more_than_3(lab):
    result = nb.evaluate("11.2", run_homework(limit=2))
    assert result.status == "FAIL"
    assert "more than 3" in result.line


def test_tumbling_windows_miss_the_burst_across_a_minute(lab):
    result = nb.evaluate("11.2", run_homework(window="tumbling"))
    assert result.status == "FAIL"
    assert "missing, e.g. u02" in result.line


def test_the_kafka_timestamp_instead_of_event_time_fails(lab):
    # every record was produced within a second: by Kafka time all of them are "in 60 s"
    result = nb.evaluate("11.2", run_homework(extractor=None))
    assert result.status == "FAIL"
    assert "never makes 4 transactions within 60 s" in result.line


def test_alerts_not_keyed_by_the_user_fail(lab):
    result = nb.evaluate("11.2", run_homework(keyed=False))
    assert result.status == "FAIL"
    assert "has key 'all'" in result.line


def test_a_list_made_up_by_hand_is_not_the_topic(lab):
    run_homework()
    made_up = [{"user_id": user, "count": 4} for user in sorted(FLAGGED)]
    result = nb.evaluate("11.2", made_up)
    assert result.status == "FAIL"
    assert "ConsumerRecords" in result.line


def test_a_rerun_after_a_wrong_attempt_passes_once_reset(lab):
    assert nb.evaluate("11.2", run_homework(limit=2)).status == "FAIL"
    nb.reset("11.2")
    result = nb.evaluate("11.2", run_homework(fresh_group=True))
    assert result.status == "PASS", result.line
