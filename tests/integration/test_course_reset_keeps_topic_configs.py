"""``nb.reset`` empties a declared topic and keeps the configs set on it, on labkit and on
Apache Kafka. Notebook 11 creates its alerts topic with ``retention.ms=-1`` because the
alerts carry the transactions' event time (March 2026): re-created with the default
retention (7 days), Kafka and labkit delete such records at the first retention check
after they are written (retention also deletes an expired active segment:
docs/storage.md), and 11.2 can never pass after a reset."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("kafka")

from labkit.client import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from labkit.course.checks import Exercise
from labkit.course.reset import reset_exercise

pytestmark = [pytest.mark.usefixtures("kafka_python_garbage"), pytest.mark.timeout(300)]

KEEP_FOREVER = {"retention.ms": "-1", "cleanup.policy": "delete"}


def _reset_keeps_the_topics_own_configs(bootstrap: str, monkeypatch) -> None:
    monkeypatch.delenv("LABKIT_STUDENT", raising=False)
    monkeypatch.delenv("LABKIT_SHARED", raising=False)
    topic = f"reset-keeps-configs-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)  # over kafka-python's on Kafka
    try:
        admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=KEEP_FOREVER)]
        )
        exercise = Exercise("99.2", 1, "reset keeps configs", lambda: None, topics={topic: 2})

        report = reset_exercise(exercise, bootstrap=bootstrap)

        assert report.emptied_topics == [topic]
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, list(KEEP_FOREVER))]
        )["topic"][topic]
        assert {key: described[key]["value"] for key in KEEP_FOREVER} == KEEP_FOREVER
        assert len(admin.describe_topics([topic])[0]["partitions"]) == 2  # as declared
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_reset_keeps_the_configs_set_on_the_topic_on_labkit(shared_broker, monkeypatch):
    _reset_keeps_the_topics_own_configs(shared_broker.bootstrap, monkeypatch)


def test_reset_keeps_the_configs_set_on_the_topic_on_apache_kafka(apache_kafka, monkeypatch):
    _reset_keeps_the_topics_own_configs(apache_kafka.bootstrap, monkeypatch)
