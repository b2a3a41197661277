"""Time retention takes the active segment too, as Apache Kafka's does (docs/storage.md,
"Retention"): records stamped longer ago than ``retention.ms`` go at the next retention
check even when no segment rolled, the log start offset moves to the log end offset, and
it stays there across a kill -9. Consumers at the log end keep waiting for records and
get the new ones; a consumer from the beginning sees only what came after.

The last test runs the same scenario with kafka-python on Apache Kafka 4.1.1 and on the
labkit broker (through its Kafka port) and compares what a consumer from earliest sees.
"""

from __future__ import annotations

import time

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition
from labkit.testing import BrokerProcess

HOUR_MS = 3600_000
CHECK_EVERY = {"log.retention.check.interval.ms": "1000"}  # Kafka's name on both brokers
WAIT_S = 60.0  # generous: retention checks every second; this is only "does not hang"


@pytest.fixture
def fast_retention_broker(tmp_path):
    with BrokerProcess(data_dir=tmp_path / "data", config=CHECK_EVERY) as proc:
        yield proc


def wait_for_log_start(consumer, tp: TopicPartition, offset: int, poll=None) -> int:
    """The log start offset once it reached ``offset`` (or where it is after WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    start = consumer.beginning_offsets([tp])[tp]
    while start < offset and time.monotonic() < deadline:
        if poll is not None:
            poll()
        time.sleep(0.2)
        start = consumer.beginning_offsets([tp])[tp]
    return start


def read_from_earliest(bootstrap: str, tp: TopicPartition) -> list[tuple[int, bytes]]:
    reader = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=2000
    )
    try:
        reader.assign([tp])
        reader.seek(tp, 0)  # below the log start: OFFSET_OUT_OF_RANGE, then earliest
        return [(record.offset, record.value) for record in reader]
    finally:
        reader.close()


def test_old_records_in_the_active_segment_go_and_consumers_carry_on(
    fast_retention_broker, unique_topic
):
    bootstrap = fast_retention_broker.bootstrap
    tp = TopicPartition(unique_topic, 0)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [NewTopic(unique_topic, 1, 1, topic_configs={"retention.ms": str(HOUR_MS)})]
    )
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    two_hours_ago = int(time.time() * 1000) - 2 * HOUR_MS
    for i in range(3):
        producer.send(unique_topic, b"old-%d" % i, partition=0, timestamp_ms=two_hours_ago)
    producer.flush()
    live = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=500)
    live.assign([tp])
    live.seek(tp, 3)  # caught up: its fetches wait at the log end across the roll
    try:
        assert live.poll(timeout_ms=200) == {}
        start = wait_for_log_start(live, tp, 3, poll=lambda: live.poll(timeout_ms=100))
        assert (start, live.end_offsets([tp])[tp]) == (3, 3)
        assert read_from_earliest(bootstrap, tp) == []
        for i in range(2):
            producer.send(unique_topic, b"new-%d" % i, partition=0)
        producer.flush()
        got = []
        deadline = time.monotonic() + WAIT_S
        while len(got) < 2 and time.monotonic() < deadline:
            for batch in live.poll(timeout_ms=500).values():
                got += [(r.offset, r.value) for r in batch]
        assert got == [(3, b"new-0"), (4, b"new-1")]
        assert read_from_earliest(bootstrap, tp) == got
    finally:
        live.close()
        producer.close()
    fast_retention_broker.kill()  # kill -9: the log start offset must not come back to 0
    fast_retention_broker.restart()
    reader = KafkaConsumer(bootstrap_servers=fast_retention_broker.bootstrap)
    try:
        offsets = reader.beginning_offsets([tp])[tp], reader.end_offsets([tp])[tp]
    finally:
        reader.close()
    assert offsets == (3, 5)
    assert read_from_earliest(fast_retention_broker.bootstrap, tp) == got


# -- the same scenario on Apache Kafka 4.1.1 ---------------------------------------------------


def kafka_python_scenario(bootstrap: str, topic: str) -> dict:
    """Three records stamped two hours ago into a topic that keeps one hour, a retention
    check, two fresh records; what the log and a consumer from earliest then show."""
    import kafka  # kafka-python, the same client on both brokers

    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [kafka.admin.NewTopic(topic, 1, 1, topic_configs={"retention.ms": str(HOUR_MS)})]
    )
    admin.close()
    tp = kafka.TopicPartition(topic, 0)
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap)
    watcher = kafka.KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        two_hours_ago = int(time.time() * 1000) - 2 * HOUR_MS
        for i in range(3):
            producer.send(topic, b"old-%d" % i, partition=0, timestamp_ms=two_hours_ago)
        producer.flush()
        start = wait_for_log_start(watcher, tp, 3)
        for i in range(2):
            producer.send(topic, b"new-%d" % i, partition=0)
        producer.flush()
        reader = kafka.KafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
        )
        reader.assign([tp])
        seen = [(record.offset, record.value) for record in reader]
        reader.close()
        return {
            "log start after the check": start,
            "log start, log end": (
                watcher.beginning_offsets([tp])[tp],
                watcher.end_offsets([tp])[tp],
            ),
            "from earliest": seen,
        }
    finally:
        watcher.close()
        producer.close()


@pytest.mark.slow
@pytest.mark.usefixtures("kafka_python_garbage")
def test_a_consumer_from_earliest_sees_the_same_on_apache_kafka_and_labkit(
    fast_retention_broker, unique_topic
):
    from labkit.testing.apache_kafka import ApacheKafka, ApacheKafkaMissing

    # Kafka's first retention check waits log.initial.task.delay.ms (30 s) after start
    try:
        apache = ApacheKafka(config={**CHECK_EVERY, "log.initial.task.delay.ms": "0"}).start()
    except ApacheKafkaMissing as exc:
        pytest.fail(str(exc))
    try:
        on_kafka = kafka_python_scenario(apache.bootstrap, unique_topic)
    finally:
        apache.stop()
    on_labkit = kafka_python_scenario(fast_retention_broker.bootstrap, unique_topic)
    assert on_labkit == on_kafka
    assert on_kafka == {
        "log start after the check": 3,
        "log start, log end": (3, 5),
        "from earliest": [(3, b"new-0"), (4, b"new-1")],
    }
