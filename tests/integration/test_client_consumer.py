"""KafkaConsumer (no group) against the real broker process: poll, iteration, offsets,
seeking, resets, pause/resume, deserializers, metadata queries, a broker restart."""

from __future__ import annotations

import json
import time

import pytest

from labkit import (
    IllegalStateError,
    KafkaAdminClient,
    KafkaConfigurationError,
    KafkaConsumer,
    KafkaProducer,
    NewTopic,
    OffsetAndTimestamp,
    OffsetOutOfRangeError,
    TopicPartition,
)


def fill(bootstrap, topic, count, partitions=1, start_ts=None, **send):
    """Create ``topic`` and write ``count`` records ``b"0".. b"count-1"`` round-robin."""
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    with KafkaProducer(bootstrap_servers=bootstrap) as producer:
        for i in range(count):
            ts = None if start_ts is None else start_ts + i
            producer.send(topic, b"%d" % i, partition=i % partitions, timestamp_ms=ts, **send)
        producer.flush(timeout=10)


def drain(consumer, expected, timeout_s=10.0):
    out = {}
    deadline = time.monotonic() + timeout_s
    while sum(map(len, out.values())) < expected and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200).items():
            out.setdefault(tp, []).extend(records)
    return out


@pytest.fixture
def consumer_factory(shared_broker):
    made = []

    def make(*topics, **configs):
        configs.setdefault("bootstrap_servers", shared_broker.bootstrap)
        consumer = KafkaConsumer(*topics, **configs)
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        consumer.close()


def test_poll_returns_every_partition_and_respects_max_records(
    shared_broker, unique_topic, consumer_factory
):
    fill(shared_broker.bootstrap, unique_topic, 300, partitions=3)
    consumer = consumer_factory(unique_topic, auto_offset_reset="earliest")
    first = {}
    while not first:
        first = consumer.poll(timeout_ms=2000, max_records=7)
    assert sum(map(len, first.values())) <= 7
    rest = drain(consumer, 300 - sum(map(len, first.values())))
    got = {tp: first.get(tp, []) + rest.get(tp, []) for tp in set(first) | set(rest)}
    assert set(got) == {TopicPartition(unique_topic, p) for p in range(3)}
    for tp, records in got.items():
        assert [r.offset for r in records] == list(range(100))
        assert [int(r.value) for r in records] == list(range(tp.partition, 300, 3))
    assert consumer.assignment() == set(got)
    assert consumer.subscription() == {unique_topic}


def test_iteration_stops_after_consumer_timeout_ms(shared_broker, unique_topic, consumer_factory):
    fill(shared_broker.bootstrap, unique_topic, 50)
    consumer = consumer_factory(
        unique_topic, auto_offset_reset="earliest", consumer_timeout_ms=1000
    )
    started = time.monotonic()
    values = [int(r.value) for r in consumer]
    assert values == list(range(50))
    assert time.monotonic() - started < 15
    assert consumer.position(TopicPartition(unique_topic, 0)) == 50
    assert list(consumer) == []  # a second loop times out again


def test_latest_reads_only_new_records_and_earliest_reads_all(
    shared_broker, unique_topic, consumer_factory
):
    fill(shared_broker.bootstrap, unique_topic, 5)
    latest = consumer_factory(unique_topic)  # auto_offset_reset='latest' is the default
    earliest = consumer_factory(unique_topic, auto_offset_reset="earliest")
    assert latest.poll(timeout_ms=300) == {}
    assert latest.position(TopicPartition(unique_topic, 0)) == 5
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        producer.send(unique_topic, b"new")
    got = drain(latest, 1)
    assert [r.value for r in got[TopicPartition(unique_topic, 0)]] == [b"new"]
    assert len(drain(earliest, 6)[TopicPartition(unique_topic, 0)]) == 6


def test_reset_none_raises_without_a_position(shared_broker, unique_topic, consumer_factory):
    fill(shared_broker.bootstrap, unique_topic, 3)
    consumer = consumer_factory(auto_offset_reset="none")
    tp = TopicPartition(unique_topic, 0)
    consumer.assign([tp])
    with pytest.raises(OffsetOutOfRangeError):
        consumer.poll(timeout_ms=100)
    consumer.seek(tp, 1)
    assert [r.value for r in drain(consumer, 2)[tp]] == [b"1", b"2"]
    consumer.seek(tp, 100)
    with pytest.raises(OffsetOutOfRangeError):  # noqa: PT012 - polls until the error arrives
        for _ in range(20):
            consumer.poll(timeout_ms=100)


def test_out_of_range_position_resets_by_policy(shared_broker, unique_topic, consumer_factory):
    fill(shared_broker.bootstrap, unique_topic, 4)
    tp = TopicPartition(unique_topic, 0)
    consumer = consumer_factory(auto_offset_reset="earliest")
    consumer.assign([tp])
    consumer.seek(tp, 1000)
    assert [r.offset for r in drain(consumer, 4)[tp]] == [0, 1, 2, 3]


def test_seek_position_and_offsets(shared_broker, unique_topic, consumer_factory):
    fill(shared_broker.bootstrap, unique_topic, 20)
    tp = TopicPartition(unique_topic, 0)
    consumer = consumer_factory()
    consumer.assign([tp])
    assert consumer.assignment() == {tp}
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 20}
    consumer.seek_to_beginning()
    assert consumer.position(tp) == 0
    consumer.seek(tp, 15)
    assert consumer.position(tp) == 15
    assert [r.offset for r in drain(consumer, 5)[tp]] == [15, 16, 17, 18, 19]
    consumer.seek_to_beginning(tp)
    assert drain(consumer, 20)[tp][0].offset == 0
    consumer.seek_to_end(tp)
    assert consumer.position(tp) == 20
    assert consumer.highwater(tp) == 20
    with pytest.raises(ValueError, match="Unassigned partition"):
        consumer.seek(TopicPartition(unique_topic, 9), 0)
    with pytest.raises(ValueError, match="Offset must be int >= 0"):
        consumer.seek(tp, -1)
    with pytest.raises(IllegalStateError):
        consumer.position(TopicPartition("elsewhere", 0))


def test_seek_while_iterating_restarts_from_the_new_offset(
    shared_broker, unique_topic, consumer_factory
):
    fill(shared_broker.bootstrap, unique_topic, 30)
    tp = TopicPartition(unique_topic, 0)
    consumer = consumer_factory(auto_offset_reset="earliest", consumer_timeout_ms=1000)
    consumer.assign([tp])
    it = iter(consumer)
    assert [next(it).offset for _ in range(3)] == [0, 1, 2]
    consumer.seek(tp, 25)
    assert [r.offset for r in it] == [25, 26, 27, 28, 29]


def test_offsets_for_times(shared_broker, unique_topic, consumer_factory):
    # recent stamps: records older than retention.ms (7 days) go at the next retention
    # check, the active segment too (as on Kafka), and the shared broker checks often
    start = int(time.time() * 1000) - 60_000
    fill(shared_broker.bootstrap, unique_topic, 10, start_ts=start)
    tp = TopicPartition(unique_topic, 0)
    consumer = consumer_factory()
    found = consumer.offsets_for_times({tp: start + 4})
    assert found == {tp: OffsetAndTimestamp(4, start + 4, -1)}
    assert consumer.offsets_for_times({tp: 0})[tp].offset == 0
    assert consumer.offsets_for_times({tp: 9_999_999_999_999}) == {tp: None}
    with pytest.raises(ValueError, match="cannot be negative"):
        consumer.offsets_for_times({tp: -5})


def test_pause_and_resume(shared_broker, unique_topic, consumer_factory):
    fill(shared_broker.bootstrap, unique_topic, 20, partitions=2)
    a, b = TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)
    consumer = consumer_factory(auto_offset_reset="earliest")
    consumer.assign([a, b])
    consumer.pause(a)
    assert consumer.paused() == {a}
    got = drain(consumer, 10)
    assert set(got) == {b}
    assert consumer.poll(timeout_ms=300) == {}
    consumer.resume(a)
    assert [r.offset for r in drain(consumer, 10)[a]] == list(range(10))


def test_deserializers(shared_broker, unique_topic, consumer_factory):
    with KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap,
        key_serializer=str.encode,
        value_serializer=lambda v: json.dumps(v).encode(),
    ) as producer:
        producer.send(unique_topic, {"id": 1}, key="a")
        producer.send(unique_topic, None, key="gone")
    consumer = consumer_factory(
        unique_topic,
        auto_offset_reset="earliest",
        key_deserializer=bytes.decode,
        value_deserializer=lambda b: json.loads(b.decode()),
    )
    records = drain(consumer, 2)[TopicPartition(unique_topic, 0)]
    assert [(r.key, r.value) for r in records] == [("a", {"id": 1}), ("gone", None)]


def test_topics_and_partitions(shared_broker, unique_topic, consumer_factory):
    fill(shared_broker.bootstrap, unique_topic, 1, partitions=4)
    consumer = consumer_factory()
    assert unique_topic in consumer.topics()
    assert consumer.partitions_for_topic(unique_topic) == {0, 1, 2, 3}
    assert consumer.partitions_for_topic("no-such-topic-here") == set()


def test_subscribing_before_the_topic_exists(shared_broker, unique_topic, consumer_factory):
    consumer = consumer_factory(unique_topic)
    assert consumer.poll(timeout_ms=300) == {}
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        producer.send(unique_topic, b"first")
    assert [r.value for r in drain(consumer, 1)[TopicPartition(unique_topic, 0)]] == [b"first"]


def test_pattern_subscription(shared_broker, unique_topic, consumer_factory):
    fill(shared_broker.bootstrap, unique_topic + "-a", 2)
    fill(shared_broker.bootstrap, unique_topic + "-b", 3)
    consumer = consumer_factory(auto_offset_reset="earliest")
    consumer.subscribe(pattern=unique_topic + "-.*")
    got = drain(consumer, 5)
    assert {tp.topic for tp in got} == {unique_topic + "-a", unique_topic + "-b"}


def test_argument_errors(shared_broker, consumer_factory):
    consumer = consumer_factory()
    with pytest.raises(ValueError, match="Timeout must not be negative"):
        consumer.poll(timeout_ms=-1)
    with pytest.raises(ValueError, match="max_records must be positive"):
        consumer.poll(max_records=0)
    consumer.subscribe(["x"])
    with pytest.raises(IllegalStateError):
        consumer.assign([TopicPartition("x", 0)])
    with pytest.raises(KafkaConfigurationError, match="auto_offset_reset"):
        KafkaConsumer(bootstrap_servers=shared_broker.bootstrap, auto_offset_reset="begin")
    with pytest.raises(KafkaConfigurationError, match="did you mean 'group_id'"):
        KafkaConsumer(bootstrap_servers=shared_broker.bootstrap, groupid="g")
    consumer.close()
    with pytest.raises(IllegalStateError):
        consumer.poll()


def test_consumer_keeps_reading_across_a_broker_restart(broker, unique_topic):
    fill(broker.bootstrap, unique_topic, 3)
    tp = TopicPartition(unique_topic, 0)
    with KafkaConsumer(
        unique_topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
    ) as consumer:
        assert len(drain(consumer, 3)[tp]) == 3
        broker.restart()
        with KafkaProducer(bootstrap_servers=broker.bootstrap) as producer:
            producer.send(unique_topic, b"after restart").get(timeout=10)
        assert [r.value for r in drain(consumer, 1, timeout_s=20)[tp]] == [b"after restart"]
