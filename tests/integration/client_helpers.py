"""Helpers the client integration tests share: make a topic with labkit's admin client,
read a topic back with the real consumer (not a test module)."""

from __future__ import annotations

from labkit import KafkaAdminClient, KafkaConsumer, NewTopic


def create_topic(broker, name: str, partitions: int = 1) -> None:
    """Create ``name`` with ``partitions`` on ``broker`` (a BrokerProcess) over ZeroMQ."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def read_all(bootstrap, topic, expected, timeout_s=10.0, **configs):
    """Every record of ``topic`` from the beginning (stops once ``expected`` arrived,
    or after ``timeout_s`` without a new record)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(timeout_s * 1000),
        **configs,
    )
    out = []
    try:
        for record in consumer:
            out.append(record)
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out
