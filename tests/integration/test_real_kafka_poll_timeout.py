"""A group member slower than ``max_poll_interval_ms`` on Apache Kafka 4.1.1, through
labkit's client classes (delegation to kafka-python): as with Kafka's Java consumer, it is
out of the group, its commit is refused with CommitFailedError, and its next poll() joins
again and reads the batch it could not commit once more (notebook 06b shows this).

Java's heartbeat thread looks at the poll timer every ``retry_backoff_ms`` (100 ms);
kafka-python 3.0.12's only when the next heartbeat is due. A long
``heartbeat_interval_ms`` makes that gap certain here instead of likely (it is at most
3 s with the default).
"""

from __future__ import annotations

import time

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic
from labkit.errors import CommitFailedError

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("kafka_python_garbage")]
WAIT_S = 60  # group joins on a loaded machine
MAX_POLL_INTERVAL_MS = 1000


def test_a_commit_after_max_poll_interval_is_refused_and_poll_rejoins(apache_kafka, unique_topic):
    bootstrap = apache_kafka.bootstrap
    group = f"{unique_topic}-slow"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(unique_topic, 3, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(30):
        producer.send(unique_topic, key=str(i).encode(), value=b"tx")
    producer.flush()
    producer.close()
    slow = KafkaConsumer(
        unique_topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        max_poll_records=10,
        session_timeout_ms=30000,
        heartbeat_interval_ms=10000,
    )
    try:
        batch, deadline = [], time.monotonic() + WAIT_S
        while not batch and time.monotonic() < deadline:
            batch = [r for rs in slow.poll(timeout_ms=200).values() for r in rs]
        assert batch, "the consumer never got records"
        time.sleep(2 * MAX_POLL_INTERVAL_MS / 1000)  # "processing", without poll()

        with pytest.raises(CommitFailedError):
            slow.commit()
        assert admin.list_consumer_group_offsets(group) == {}  # nothing was committed

        wanted = {(r.partition, r.offset) for r in batch}
        seen, deadline = set(), time.monotonic() + WAIT_S
        while not wanted <= seen and time.monotonic() < deadline:  # poll() joins again
            for records in slow.poll(timeout_ms=200).values():
                seen.update((r.partition, r.offset) for r in records)
        assert wanted <= seen, wanted - seen
        slow.commit()  # a member again: its commit goes through
        assert admin.list_consumer_group_offsets(group)
    finally:
        slow.close()
        admin.delete_topics([unique_topic])
        admin.close()
