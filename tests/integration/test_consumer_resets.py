"""KafkaConsumer after an OFFSET_OUT_OF_RANGE answer (real broker): the position is
reset by auto_offset_reset and re-resolved in the same poll(), which then returns
the records at the new position without waiting out its timeout."""

from __future__ import annotations

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition


def fill(bootstrap, topic, count):
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, 1, 1)])
    with KafkaProducer(bootstrap_servers=bootstrap) as producer:
        for i in range(count):
            producer.send(topic, b"%d" % i)
        producer.flush(timeout=10)


def test_poll_after_a_reset_returns_the_records_at_the_new_position(shared_broker, unique_topic):
    fill(shared_broker.bootstrap, unique_topic, 4)
    tp = TopicPartition(unique_topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=shared_broker.bootstrap, auto_offset_reset="earliest"
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 1000)  # beyond the end: the broker answers OFFSET_OUT_OF_RANGE
        # one poll() must reset and fetch: a poll that only reset would sit out its
        # timeout and return {} (the next poll would fetch), so the records are the proof
        got = consumer.poll(timeout_ms=10_000)
        assert [r.offset for r in got.get(tp, [])] == [0, 1, 2, 3]
        assert consumer.position(tp) == 4
    finally:
        consumer.close()


def test_reset_to_latest_in_the_same_poll_then_new_records_arrive(shared_broker, unique_topic):
    fill(shared_broker.bootstrap, unique_topic, 3)
    tp = TopicPartition(unique_topic, 0)
    consumer = KafkaConsumer(
        bootstrap_servers=shared_broker.bootstrap, auto_offset_reset="latest", fetch_max_wait_ms=100
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 500)
        assert consumer.poll(timeout_ms=500) == {}
        # that poll reset the position to the end (offset 3): a record written now is read
        with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
            producer.send(unique_topic, b"new").get(timeout=10)
        got = consumer.poll(timeout_ms=5_000)
        assert [(r.offset, r.value) for r in got.get(tp, [])] == [(3, b"new")]
    finally:
        consumer.close()
