"""A topic that keeps nothing (``retention.ms=0``) under a steady produce: every retention
check (every 100 ms, the cleaner's floor) finds the active segment expired, rolls a new
one and deletes the rest. The broker keeps accepting and serving, a consumer never sees
an offset twice or out of order, and offsets never go backwards, not even across a
kill -9 that leaves a log with no records at all."""

from __future__ import annotations

import time

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition

BATCHES, PER_BATCH = 40, 25
WAIT_S = 60.0  # generous bound: "does not hang", not a timing


def test_a_topic_that_keeps_nothing_under_produce(broker, unique_topic):
    tp = TopicPartition(unique_topic, 0)
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        admin.create_topics([NewTopic(unique_topic, 1, 1, topic_configs={"retention.ms": "0"})])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    consumer.assign([tp])
    seen: list[int] = []
    try:
        for b in range(BATCHES):
            futures = [
                producer.send(unique_topic, b"%d" % i, partition=0) for i in range(PER_BATCH)
            ]
            producer.flush(timeout=30)
            assert [f.get(timeout=30).offset for f in futures] == list(
                range(b * PER_BATCH, (b + 1) * PER_BATCH)
            )
            for records in consumer.poll(timeout_ms=50).values():
                seen += [r.offset for r in records]
            time.sleep(0.05)
        end = BATCHES * PER_BATCH
        deadline = time.monotonic() + WAIT_S
        while consumer.beginning_offsets([tp])[tp] < end and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]) == (end, end)
    finally:
        consumer.close()
        producer.close()
    # whatever retention took before the consumer got there, it never went back or repeated
    assert seen == sorted(set(seen))
    assert all(0 <= offset < end for offset in seen)
    broker.kill()
    broker.restart()
    with KafkaProducer(bootstrap_servers=broker.bootstrap) as producer:
        assert producer.send(unique_topic, b"after", partition=0).get(timeout=30).offset == end
